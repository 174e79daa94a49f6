//! Three `starledger serve` instances behind Debian's nginx running `deploy/nginx/nginx.conf`,
//! the file users deploy, with its ports and upstream substituted (issue 15, point 4): a mixed
//! load (top-ups with signed Heleket webhooks, Stars purchases fulfilled by the sandbox, plain
//! balance reads) runs through nginx, and one instance is killed with `kill -9` in the middle.
//! Afterwards nothing acknowledged is lost, every order is delivered, webhooks kept landing,
//! and `audit verify` is sound. Then the instance holding the fulfilment lease is killed too,
//! and the last one takes the lease over and delivers the next orders.
//!
//! Why the lease holder is not the one killed mid-load: the sandbox Fragment and chain live in
//! each process's memory, so a payment the dead holder had in flight is unknown to the
//! survivor's sandbox, and the survivor rightly neither pays the order again nor refunds it
//! (it may be paid): it leaves it to an operator. With the real Fragment and chain, which
//! every instance shares, the survivor finds that payment; `gateway/tests/fulfilment_wire.rs`
//! covers a worker crashing between any two steps.
//!
//! Debian's nginx (1.22) predates `server … resolve`, so the upstream's Docker DNS entry is
//! replaced by the three instances' loopback addresses; everything else is the file as
//! shipped. Skipped without PostgreSQL or nginx, except under CI, where nginx missing fails.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use starledger_e2e::{
    free_port, order_id, sign_webhook, wait_for_projections, Deployment, Server, ADMIN_KEY,
    HELEKET_KEY, SERVICE_KEY,
};

/// nginx on `deploy/nginx/nginx.conf`, listening on a free port.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(upstreams: &[u16]) -> Option<Nginx> {
        let found = Command::new("nginx").arg("-v").output().is_ok();
        if !found {
            assert!(
                !starledger_ledger::testing::under_ci(),
                "nginx is not installed; .ci/run installs it (package nginx)"
            );
            eprintln!("nginx not installed: skipping the three-instance test");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        let (port, internal) = (free_port(), free_port());
        let shipped = include_str!("../../deploy/nginx/nginx.conf");
        let servers: String = upstreams
            .iter()
            .map(|p| format!("server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;\n        "))
            .collect();
        let logs = dir.path().display().to_string();
        let config: String = shipped
            .lines()
            .filter(|line| !line.trim_start().starts_with("resolver"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace(
                "server app:8001 resolve max_fails=3 fail_timeout=10s;",
                &servers,
            )
            .replace("pid /var/run/nginx.pid;", &format!("pid {logs}/nginx.pid;"))
            .replace("/var/log/nginx/", &format!("{logs}/"))
            .replace(
                "listen 80 default_server;",
                &format!("listen 127.0.0.1:{port} default_server;"),
            )
            .replace("listen 8081;", &format!("listen 127.0.0.1:{internal};"));
        assert!(
            config.contains("server 127.0.0.1:"),
            "the upstream was not substituted"
        );
        let file = dir.path().join("nginx.conf");
        std::fs::write(&file, config).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&file)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        Some(Nginx {
            child,
            port,
            _dir: dir,
        })
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: nginx's master then stops its workers (killed outright, it
        // would leave them running, still listening).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Sends a request until an answer other than a transient one (connection error, 429, 502,
/// 503, 504): what a client with retries (Heleket, the bot) does. The request carries its
/// idempotency key or is a read, so repeating it is safe.
async fn until_answered(request: impl Fn() -> reqwest::RequestBuilder) -> (StatusCode, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = request().send().await {
            let status = response.status();
            let transient = matches!(status.as_u16(), 429 | 502 | 503 | 504);
            if !transient {
                let body = response.json().await.unwrap_or(Value::Null);
                return (status, body);
            }
        }
        assert!(Instant::now() < deadline, "no answer within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One user's round: a top-up paid by a signed webhook, an order, a plain balance read, all
/// through nginx. Returns the recharge id and the purchase id, both acknowledged.
async fn round_of(http: &reqwest::Client, base: &str, user: i64, key: &str) -> (String, String) {
    let (status, recharge) = until_answered(|| {
        http.post(format!("{base}/v1/users/{user}/recharges"))
            .bearer_auth(SERVICE_KEY)
            .header("Idempotency-Key", format!("{key}-recharge"))
            .json(&json!({"amount": "2"}))
    })
    .await;
    assert_eq!(status, StatusCode::CREATED, "{recharge}");
    let webhook = sign_webhook(
        json!({
            "type": "payment",
            "uuid": recharge["invoice_uuid"],
            "order_id": order_id(user, &recharge),
            "amount": "2",
            "payment_amount": "2",
            "payer_amount": "2",
            "merchant_amount": "2",
            "network": "ton",
            "currency": "TON",
            "payer_currency": "TON",
            "status": "paid",
            "is_final": true,
            "txid": format!("tx-{key}"),
        }),
        HELEKET_KEY,
    );
    let (status, answer) = until_answered(|| {
        http.post(format!("{base}/webhooks/heleket"))
            .header("Content-Type", "application/json")
            .body(webhook.to_string())
    })
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, bought) = until_answered(|| {
        http.post(format!("{base}/v1/users/{user}/purchases"))
            .bearer_auth(SERVICE_KEY)
            .header("Idempotency-Key", format!("{key}-buy"))
            .json(&json!({"stars": 50, "recipient": "@friend_ok"}))
    })
    .await;
    assert_eq!(status, StatusCode::CREATED, "{bought}");
    let (status, _) = until_answered(|| {
        http.get(format!("{base}/v1/users/{user}/balance"))
            .bearer_auth(SERVICE_KEY)
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    (
        recharge["recharge_id"].as_str().unwrap().to_owned(),
        bought["purchase_id"].as_str().unwrap().to_owned(),
    )
}

/// Waits until every one of `credited` and `purchases` is in the users' history and every
/// purchase is delivered.
async fn all_there_and_delivered(
    http: &reqwest::Client,
    base: &str,
    users: &[i64],
    credited: &BTreeSet<String>,
    purchases: &BTreeSet<String>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut seen = BTreeSet::new();
        let mut completed = BTreeSet::new();
        let mut statuses = std::collections::BTreeMap::<String, usize>::new();
        for user in users {
            let (_, page) = until_answered(|| {
                http.get(format!("{base}/v1/users/{user}/transactions?limit=100"))
                    .bearer_auth(SERVICE_KEY)
            })
            .await;
            for row in page["transactions"].as_array().unwrap() {
                let id = row["id"].as_str().unwrap().to_owned();
                if row["kind"] == "purchase" {
                    *statuses
                        .entry(row["status"].as_str().unwrap_or("?").to_owned())
                        .or_default() += 1;
                }
                if row["status"] == "completed" {
                    completed.insert(id.clone());
                }
                seen.insert(id);
            }
        }
        assert!(credited.is_subset(&seen), "a credited top-up is missing");
        assert!(purchases.is_subset(&seen), "a placed order is missing");
        if purchases.is_subset(&completed) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "orders not delivered within 60 s: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An operator signs in to the console through nginx and keeps their session over many
/// requests: sessions live in one instance's memory, and the console's upstream sends a
/// client to the same instance every time (with `least_conn` over three, most would land
/// where the session is unknown and be sent back to sign in).
async fn console_sessions_stick_to_their_instance(base: &str) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {name} cookie"))
    };
    let form = http
        .get(format!("{base}/console/sign-in"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    assert!(form.headers().contains_key("content-security-policy"));
    let sign_in = cookie(&form, "starledger_console_sign_in");
    let page = form.text().await.unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("the sign-in form's token") + marker.len();
    let csrf = &page[start..start + 64];
    let signed = http
        .post(format!("{base}/console/sign-in"))
        .header("Cookie", sign_in)
        .form(&[("key", ADMIN_KEY), ("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let session = cookie(&signed, "starledger_console");
    for _ in 0..12 {
        let overview = http
            .get(format!("{base}/console/overview"))
            .header("Cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(overview.status(), StatusCode::OK, "the session was lost");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_behind_nginx_lose_nothing_when_one_is_killed() {
    let Some(mut deployment) = Deployment::postgres("the nginx test").await else {
        return;
    };
    deployment = deployment
        .with("FRAGMENT_MODE", "sandbox")
        .with("TRUST_PROXY_HEADERS", "true");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let mut servers = Vec::new();
    for (n, port) in ports.iter().enumerate() {
        deployment.port = *port;
        let mut server = Server::start(&deployment, n as u32);
        server
            .wait_healthy(&http, &format!("http://127.0.0.1:{port}"))
            .await;
        servers.push(server);
    }
    let Some(nginx) = Nginx::start(&ports) else {
        for server in &mut servers {
            server.stop().await;
        }
        return;
    };
    let base = nginx.base();
    let started = Instant::now();
    while !http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nginx did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let users = [6101i64, 6102, 6103];
    for user in users {
        let (status, _) = until_answered(|| {
            http.post(format!("{base}/v1/users"))
                .bearer_auth(SERVICE_KEY)
                .json(&json!({"user_id": user, "username": format!("buyer_{user}")}))
        })
        .await;
        assert!(status.is_success(), "register: {status}");
    }
    console_sessions_stick_to_their_instance(&base).await;
    // Which instance holds the fulfilment lease (its log says so).
    let started = Instant::now();
    let holder = loop {
        if let Some(n) = (0..3).find(|n| servers[*n].logged(&["lease acquired", "fulfilment"])) {
            break n;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nobody took the fulfilment lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let bystander = (holder + 1) % 3;
    let last = (holder + 2) % 3;

    let (mut credited, mut purchases) = (BTreeSet::new(), BTreeSet::new());
    for round in 0..8 {
        if round == 3 {
            // Mid-load: an instance dies without a goodbye.
            servers[bystander].signal_and_wait("KILL").await;
        }
        for user in users {
            let (recharge, purchase) =
                round_of(&http, &base, user, &format!("nginx-{user}-{round}")).await;
            credited.insert(recharge);
            purchases.insert(purchase);
        }
    }
    // Asked of a survivor directly: nginx's per-IP limit on /v1/ would answer this poll 429.
    let survivor = format!("http://127.0.0.1:{}", ports[last]);
    wait_for_projections(&http, &survivor).await;
    all_there_and_delivered(&http, &base, &users, &credited, &purchases).await;

    // Now the lease holder dies, nothing in flight: the last instance takes the lease over.
    servers[holder].signal_and_wait("KILL").await;
    for user in users {
        let (recharge, purchase) =
            round_of(&http, &base, user, &format!("nginx-{user}-after")).await;
        credited.insert(recharge);
        purchases.insert(purchase);
    }
    wait_for_projections(&http, &survivor).await;
    all_there_and_delivered(&http, &base, &users, &credited, &purchases).await;
    assert!(servers[last].logged(&["lease acquired", "fulfilment"]));

    servers[last].stop().await;
    drop(nginx);
    deployment.verify();
}
