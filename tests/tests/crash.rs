//! Crash safety of `starledger serve`: under a mixed load (registrations, recharges, signed
//! `paid` webhooks, some delivered twice, and purchases) the server is killed with SIGKILL at
//! a random moment and started again on the same ledger, several times. The clients keep
//! going and retry what failed with the same idempotency keys, as a real bot and Heleket
//! would. Afterwards every request that got a 2xx must have its event in the log, nothing may
//! be recorded twice, no balance may be negative, and `starledger audit verify` must find the
//! log and every projection sound.
//!
//! Run on PostgreSQL (`TEST_DATABASE_URL`, with Redis when `TEST_REDIS_URL` is set; without
//! it that half says why and passes, except under CI, where it fails) and on the embedded
//! SQLite file (always).
//! `STARLEDGER_CRASH_ROUNDS` raises the number of kills (3 by default) for a soak.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{json, Value};
use starledger_e2e::{
    audit_result, order_id, random_below, sign_webhook, soak, wait_for_projections, Deployment,
    Server, HELEKET_KEY, SERVICE_KEY,
};

const CLIENTS: i64 = 6;
const RECHARGE_AMOUNT: &str = "10";
/// The smallest purchase: many of them fit in one recharge, so none is refused for funds.
const STARS: i64 = 50;
/// How long one request may keep failing (the server being down or starting) before the
/// test gives up: far longer than a restart takes.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);

/// What the clients saw, shared by all of them.
#[derive(Default)]
struct Tally {
    /// Attempts that got no answer (connection refused or reset, body cut off).
    connection_errors: AtomicU64,
    /// Attempts answered 5xx (the database or the server not ready).
    server_errors: AtomicU64,
    /// 2xx answers that came only after an earlier attempt of the same request failed.
    acknowledged_after_retry: AtomicU64,
}

/// One request's final answer.
struct Answer {
    status: StatusCode,
    replayed: bool,
    body: Value,
}

/// What one client was told: each 2xx answer and the event it proves is in the log.
#[derive(Default)]
struct Acknowledged {
    users: Vec<i64>,
    /// Idempotency key → recharge id.
    recharges: Vec<(String, String)>,
    /// A signed webhook body (as sent) and the recharge id it settles.
    settlements: Vec<(Value, String)>,
    /// Idempotency key, user, purchase id.
    purchases: Vec<(String, i64, String)>,
    recharge_keys_tried: usize,
    purchase_keys_tried: usize,
    /// Anything but the answer the request should get, described for the failure message.
    unexpected: Vec<String>,
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    tally: Arc<Tally>,
}

impl Client {
    /// Sends the request `build` makes until it gets an answer that is not a 5xx: while the
    /// server is down or starting, the same request (same idempotency key) is sent again.
    async fn until_answered(&self, what: &str, build: impl Fn() -> RequestBuilder) -> Answer {
        let deadline = Instant::now() + REQUEST_DEADLINE;
        let mut failed_before = false;
        loop {
            match build().send().await {
                Ok(response) if response.status().is_server_error() => {
                    self.tally.server_errors.fetch_add(1, Ordering::Relaxed);
                }
                Ok(response) => {
                    let status = response.status();
                    let replayed = response.headers().contains_key("Idempotent-Replayed");
                    // A body cut off by the kill is no answer: the request is sent again.
                    if let Ok(body) = response.json::<Value>().await {
                        if failed_before && status.is_success() {
                            self.tally
                                .acknowledged_after_retry
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        return Answer {
                            status,
                            replayed,
                            body,
                        };
                    }
                    self.tally.connection_errors.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.tally.connection_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            failed_before = true;
            assert!(
                Instant::now() < deadline,
                "{what} got no answer within {REQUEST_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn post(&self, path: &str, body: &Value, idempotency_key: Option<&str>) -> RequestBuilder {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(SERVICE_KEY)
            .json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request
    }

    fn webhook(&self, signed: &Value) -> RequestBuilder {
        self.http
            .post(format!("{}/webhooks/heleket", self.base))
            .header("Content-Type", "application/json")
            .body(signed.to_string())
    }
}

/// A `paid` webhook for `recharge` as Heleket sends it, signed with the test's API key.
fn paid_webhook(recharge: &Value, user: i64) -> Value {
    let order_id = order_id(user, recharge);
    sign_webhook(
        json!({
            "type": "payment",
            "uuid": recharge["invoice_uuid"],
            "order_id": order_id,
            "amount": recharge["amount"],
            "payment_amount": RECHARGE_AMOUNT,
            "merchant_amount": RECHARGE_AMOUNT,
            "is_final": true,
            "status": "paid",
            "currency": "TON",
            "payer_currency": "TON",
            "payer_amount": RECHARGE_AMOUNT,
            "network": "ton",
            "additional_data": "crash test",
            "txid": format!("tx-{order_id}")
        }),
        HELEKET_KEY,
    )
}

/// One client: registers its user, then repeats recharge → paid webhook (every other one
/// delivered twice at once) → purchase until `stop`, checking it between operations only,
/// so a request in flight is always carried to its answer.
async fn run_client(client: Client, user: i64, stop: Arc<AtomicBool>) -> Acknowledged {
    let mut seen = Acknowledged::default();
    let registration =
        json!({"user_id": user, "username": format!("crash_{user}"), "language": "en"});
    let answer = client
        .until_answered("register", || client.post("/v1/users", &registration, None))
        .await;
    if answer.status.is_success() {
        seen.users.push(user);
    } else {
        seen.unexpected.push(format!(
            "register {user}: {} {}",
            answer.status, answer.body
        ));
        return seen;
    }
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let key = format!("crash-{user}-recharge-{round}");
        seen.recharge_keys_tried += 1;
        let path = format!("/v1/users/{user}/recharges");
        let body = json!({"amount": RECHARGE_AMOUNT});
        let answer = client
            .until_answered(&key, || client.post(&path, &body, Some(&key)))
            .await;
        if answer.status != StatusCode::CREATED {
            seen.unexpected
                .push(format!("recharge {key}: {} {}", answer.status, answer.body));
            continue;
        }
        let recharge = answer.body;
        let recharge_id = recharge["recharge_id"].as_str().unwrap().to_owned();
        seen.recharges.push((key, recharge_id.clone()));

        let signed = paid_webhook(&recharge, user);
        let deliveries = if round % 2 == 0 { 2 } else { 1 };
        let answers = futures::future::join_all(
            (0..deliveries).map(|_| client.until_answered("webhook", || client.webhook(&signed))),
        )
        .await;
        for answer in answers {
            let result = answer.body["result"].as_str();
            if answer.status == StatusCode::OK && matches!(result, Some("recorded" | "duplicate")) {
                seen.settlements.push((signed.clone(), recharge_id.clone()));
            } else {
                seen.unexpected.push(format!(
                    "webhook for {recharge_id}: {} {}",
                    answer.status, answer.body
                ));
            }
        }

        let key = format!("crash-{user}-purchase-{round}");
        seen.purchase_keys_tried += 1;
        let path = format!("/v1/users/{user}/purchases");
        let body = json!({"stars": STARS, "recipient": "@friend_one"});
        let answer = client
            .until_answered(&key, || client.post(&path, &body, Some(&key)))
            .await;
        if answer.status == StatusCode::CREATED {
            let purchase_id = answer.body["purchase_id"].as_str().unwrap().to_owned();
            seen.purchases.push((key, user, purchase_id));
        } else {
            seen.unexpected
                .push(format!("purchase {key}: {} {}", answer.status, answer.body));
        }
    }
    seen
}

fn merge(all: Vec<Acknowledged>) -> Acknowledged {
    let mut total = Acknowledged::default();
    for one in all {
        total.users.extend(one.users);
        total.recharges.extend(one.recharges);
        total.settlements.extend(one.settlements);
        total.purchases.extend(one.purchases);
        total.recharge_keys_tried += one.recharge_keys_tried;
        total.purchase_keys_tried += one.purchase_keys_tried;
        total.unexpected.extend(one.unexpected);
    }
    total
}

/// Sends every acknowledged purchase and webhook once more with the same key: each must be
/// answered as a repeat of the first, with the same id, and append nothing.
async fn replay_acknowledged(client: &Client, seen: &Acknowledged) {
    for (key, user, purchase_id) in &seen.purchases {
        let path = format!("/v1/users/{user}/purchases");
        let body = json!({"stars": STARS, "recipient": "@friend_one"});
        let answer = client
            .until_answered(key, || client.post(&path, &body, Some(key)))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{key}: {}", answer.body);
        assert!(answer.replayed, "{key} was not answered as a repeat");
        assert_eq!(answer.body["purchase_id"], purchase_id.as_str(), "{key}");
    }
    for (signed, recharge_id) in &seen.settlements {
        let answer = client
            .until_answered("webhook replay", || client.webhook(signed))
            .await;
        assert_eq!(
            answer.body["result"], "duplicate",
            "the paid webhook for {recharge_id} was not a duplicate: {}",
            answer.body
        );
    }
}

/// How often each id (`data.<field>`) occurs in events of `event_type`.
fn occurrences(log: &[Value], event_type: &str, field: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for event in log.iter().filter(|e| e["event_type"] == event_type) {
        let id = event["data"][field]
            .as_str()
            .unwrap_or_else(|| panic!("{event_type} without data.{field}: {event}"));
        *counts.entry(id.to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Every acknowledged id is in `counts` exactly once.
fn assert_once(counts: &HashMap<String, usize>, ids: &BTreeSet<&str>, what: &str) {
    for id in ids {
        assert_eq!(
            counts.get(*id).copied().unwrap_or(0),
            1,
            "acknowledged {what} {id} is not in the log exactly once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_server_keeps_every_acknowledged_request_and_duplicates_nothing() {
    if let Some(deployment) = Deployment::postgres("the crash test").await {
        crash_under_load(deployment).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_server_on_the_embedded_sqlite_file_keeps_every_acknowledged_request() {
    crash_under_load(Deployment::sqlite()).await;
}

/// The scenario, on any backend: every restart reuses the deployment's port, so the
/// clients keep one address.
async fn crash_under_load(setup: Deployment) {
    let rounds = soak("STARLEDGER_CRASH_ROUNDS", 3);
    eprintln!("crash test on {}", setup.name());
    let client = Client {
        // Bounded, so a request to a server that stopped answering fails and is retried.
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("an HTTP client"),
        base: setup.base(),
        tally: Arc::new(Tally::default()),
    };
    let mut server = Server::start(&setup, 0);
    server.wait_healthy(&client.http, &setup.base()).await;

    let stop = Arc::new(AtomicBool::new(false));
    // Fresh database: any user ids do; distinct per client, so clients never share an account.
    let clients: Vec<_> = (1..=CLIENTS)
        .map(|n| tokio::spawn(run_client(client.clone(), 7000 + n, stop.clone())))
        .collect();

    for generation in 1..=rounds as u32 {
        let delay = 100 + random_below(1400);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let status = server.signal_and_wait("KILL").await;
        eprintln!("crash {generation}/{rounds}: killed after {delay} ms ({status})");
        server = Server::start(&setup, generation);
        server.wait_healthy(&client.http, &setup.base()).await;
    }
    // Let the clients' retries land on the last server, and some new requests after them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut reports = Vec::new();
    for task in clients {
        let report = tokio::time::timeout(Duration::from_secs(90), task)
            .await
            .expect("a client did not finish within 90 s of being stopped")
            .expect("a client panicked");
        reports.push(report);
    }
    let seen = merge(reports);
    let tally = &client.tally;
    eprintln!(
        "{rounds} crashes; acknowledged: {} users, {} recharges, {} webhooks, {} purchases; \
         {} connection errors, {} 5xx, {} acknowledged only after a retry",
        seen.users.len(),
        seen.recharges.len(),
        seen.settlements.len(),
        seen.purchases.len(),
        tally.connection_errors.load(Ordering::Relaxed),
        tally.server_errors.load(Ordering::Relaxed),
        tally.acknowledged_after_retry.load(Ordering::Relaxed),
    );
    assert!(
        seen.unexpected.is_empty(),
        "unexpected answers:\n{}\nlast stderr:\n{}",
        seen.unexpected.join("\n"),
        server.stderr_tail()
    );
    assert_eq!(seen.users.len(), CLIENTS as usize, "every user registered");
    assert!(
        !seen.purchases.is_empty(),
        "the load acknowledged no purchase: nothing was tested"
    );

    wait_for_projections(&client.http, &client.base).await;
    replay_acknowledged(&client, &seen).await;
    let balances = audit_result(&client.http, &client.base, "/v1/audit/balances").await;
    server.stop().await;
    setup.verify();
    let log = setup.export();
    let requested = occurrences(&log, "RechargeRequested", "recharge_id");
    let settled = occurrences(&log, "RechargeSettled", "recharge_id");
    let purchased = occurrences(&log, "PurchaseRequested", "purchase_id");
    let recharge_ids: BTreeSet<&str> = seen.recharges.iter().map(|(_, id)| id.as_str()).collect();
    let settled_ids: BTreeSet<&str> = seen.settlements.iter().map(|(_, id)| id.as_str()).collect();
    let purchase_ids: BTreeSet<&str> = seen
        .purchases
        .iter()
        .map(|(_, _, id)| id.as_str())
        .collect();
    assert_once(&requested, &recharge_ids, "recharge");
    assert_once(&settled, &settled_ids, "settlement of recharge");
    assert_once(&purchased, &purchase_ids, "purchase");
    // Each idempotency key is one recharge or purchase however often it was retried, so the
    // log holds at most one event per key a client tried (an unanswered last try may add one).
    assert_eq!(
        recharge_ids.len(),
        seen.recharges.len(),
        "two recharge keys were answered with one recharge id"
    );
    assert!(
        requested.len() <= seen.recharge_keys_tried,
        "{} recharges in the log from {} keys",
        requested.len(),
        seen.recharge_keys_tried
    );
    assert!(
        purchased.len() <= seen.purchase_keys_tried,
        "{} purchases in the log from {} keys",
        purchased.len(),
        seen.purchase_keys_tried
    );
    for (id, count) in &settled {
        assert_eq!(*count, 1, "recharge {id} was settled {count} times");
    }
    for row in balances["balances"].as_array().expect("balances") {
        for field in ["available", "reserved", "total"] {
            let amount = row[field].as_str().expect("a decimal string");
            assert!(!amount.starts_with('-'), "negative {field} balance: {row}");
        }
    }
    eprintln!(
        "log: {} events, {} recharges, {} settled, {} purchases; audit verify: sound",
        log.len(),
        requested.len(),
        settled.len(),
        purchased.len()
    );
}
