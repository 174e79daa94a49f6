//! The operators' web console (`/console`) in a real browser: Debian's Chromium, driven by
//! `tests/console/console.test.mjs` (node's own test runner and playwright-core), against the
//! built `starledger serve` on SQLite with the sandbox Fragment.
//!
//! This file seeds the deployment through the HTTP API: a funded user and three gifts to
//! recipients named `hang…`, which the sandbox Fragment takes payment for and never confirms,
//! so each stays `sent`, waiting for an operator (docs/fulfilment.md). In the browser an admin
//! delivers one, fails another (refused without force, then forced), rebuilds the projections,
//! verifies the ledger and checks an event's hash; an auditor sees the third and can change
//! nothing; forged and cross-role forms are refused. Afterwards the API must show the first
//! `completed`, the second `refunded`, the third still `sent`, the balance must add up, and
//! `audit verify` must pass.
//!
//! Needs `node`, Chromium (`$CHROMIUM`, else `/usr/bin/chromium`) and
//! `npm ci --prefix tests/console`; without them it says why and passes, except under CI,
//! where it fails. `CONSOLE_SCREENSHOTS=DIR` keeps the screenshots (overview.png, user.png)
//! in DIR (relative to the repository root), as the README's are made.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use starledger_e2e::{
    wait_for_projections, Deployment, Server, ADMIN_KEY, AUDITOR_KEY, SERVICE_KEY,
};

const USER: i64 = 61_001;
const USERNAME: &str = "console_alice";
/// How long the browser run may take before it is killed (each step has its own, shorter
/// limit inside; this only stops a hung browser from hanging the suite).
const BROWSER_RUN_LIMIT: Duration = Duration::from_secs(600);

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Whether the browser tooling is there: `node` on PATH, Chromium (its path is returned) and
/// the driver. `None` (after saying what is missing) when something is not; under CI that
/// fails the test instead, as `starledger_ledger::testing::server_url` does for a missing
/// server.
fn browser_tooling(root: &Path) -> Option<PathBuf> {
    let mut missing = Vec::new();
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|status| status.success()) {
        missing.push("`node` is not on PATH (install Node.js 20 or later)".to_owned());
    }
    let chromium = std::env::var_os("CHROMIUM")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        missing.push(format!(
            "no Chromium at {} (apt-get install chromium, or set CHROMIUM)",
            chromium.display()
        ));
    }
    let driver = root.join("tests/console/node_modules/playwright-core/package.json");
    if !driver.is_file() {
        missing.push(format!(
            "{} is missing (run `npm ci --prefix tests/console`)",
            driver.display()
        ));
    }
    if missing.is_empty() {
        return Some(chromium);
    }
    let why = missing.join("; ");
    if starledger_ledger::testing::under_ci() {
        panic!("the console's browser tests cannot run: {why}; under CI they may not be skipped (.ci/run installs all three)");
    }
    eprintln!("the console's browser tests are skipped: {why}");
    None
}

/// A `sent` purchase: paid through the sandbox Fragment, which never confirms it.
struct Stuck {
    id: String,
    price: Decimal,
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> Value {
    let mut request = http
        .post(format!("{base}{path}"))
        .bearer_auth(SERVICE_KEY)
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let answer = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {path}: {error}"));
    let status = answer.status();
    let body: Value = answer
        .json()
        .await
        .unwrap_or_else(|error| panic!("POST {path} answered {status}, not JSON: {error}"));
    assert!(status.is_success(), "POST {path} answered {status}: {body}");
    body
}

async fn get(http: &reqwest::Client, base: &str, path: &str, key: &str) -> Value {
    let answer = http
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {path}: {error}"));
    assert_eq!(answer.status(), StatusCode::OK, "GET {path}");
    answer.json().await.expect("a JSON answer")
}

fn decimal(value: &Value, what: &str) -> Decimal {
    value
        .as_str()
        .and_then(|text| Decimal::from_str(text).ok())
        .unwrap_or_else(|| panic!("{what} is not a decimal string: {value}"))
}

/// Registers the user, tops the balance up by 100 and buys three gifts for `hang…`
/// recipients; waits until the worker has paid all three (status `sent`).
async fn seed(http: &reqwest::Client, base: &str, server: &mut Server) -> Vec<Stuck> {
    post(
        http,
        base,
        "/v1/users",
        None,
        json!({"user_id": USER, "username": USERNAME}),
    )
    .await;
    let recharge = post(
        http,
        base,
        &format!("/v1/users/{USER}/recharges"),
        None,
        json!({"amount": "100"}),
    )
    .await;
    let invoice = recharge["invoice_uuid"].as_str().expect("invoice_uuid");
    // No amount and no coin: paid in full, in the ledger currency.
    let paid = post(
        http,
        base,
        &format!("/sandbox/heleket/invoices/{invoice}/pay"),
        None,
        json!({"status": "paid"}),
    )
    .await;
    assert_eq!(paid["endpoint_status"], 200, "the sandbox payment: {paid}");
    let funded = Instant::now() + Duration::from_secs(30);
    loop {
        let balance = get(http, base, &format!("/v1/users/{USER}/balance"), ADMIN_KEY).await;
        if balance["available"] == "100" {
            break;
        }
        assert!(
            Instant::now() < funded,
            "the paid recharge did not show within 30 s: {balance}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut stuck = Vec::new();
    for recipient in ["hang_one", "hang_two", "hang_three"] {
        let purchase = post(
            http,
            base,
            &format!("/v1/users/{USER}/purchases"),
            Some(&format!("console-{recipient}")),
            json!({"stars": 50, "recipient": recipient}),
        )
        .await;
        stuck.push(Stuck {
            id: purchase["purchase_id"]
                .as_str()
                .expect("purchase_id")
                .to_owned(),
            price: decimal(&purchase["price"], "the purchase's price"),
        });
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = get(http, base, "/v1/admin/purchases?limit=500", ADMIN_KEY).await;
        let status = |id: &str| {
            open["purchases"]
                .as_array()
                .expect("purchases")
                .iter()
                .find(|row| row["purchase"]["id"] == id)
                .map(|row| row["purchase"]["status"].clone())
        };
        if stuck
            .iter()
            .all(|purchase| status(&purchase.id) == Some(json!("sent")))
        {
            break;
        }
        server.assert_running();
        assert!(
            Instant::now() < deadline,
            "the sandbox worker did not pay all three gifts (status `sent`) within 30 s: {open}\nserve's stderr:\n{}",
            server.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_projections(http, base).await;
    stuck
}

/// Runs the browser suite to its end (killed after [`BROWSER_RUN_LIMIT`]): its exit status
/// and what it printed.
async fn run_browser(
    root: &Path,
    env: &[(&str, String)],
    output_dir: &Path,
) -> (Option<std::process::ExitStatus>, String) {
    let stdout = output_dir.join("node.stdout");
    let stderr = output_dir.join("node.stderr");
    let mut node = Command::new("node");
    node.args([
        "--test",
        "--test-reporter=spec",
        "tests/console/console.test.mjs",
    ])
    .current_dir(root)
    .env("NO_COLOR", "1")
    .env("FORCE_COLOR", "0")
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&stdout).expect("create node's stdout file"))
    .stderr(std::fs::File::create(&stderr).expect("create node's stderr file"));
    for (variable, value) in env {
        node.env(variable, value);
    }
    let mut child = node.spawn().expect("start node");
    let deadline = Instant::now() + BROWSER_RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let printed = format!(
        "{}{}",
        std::fs::read_to_string(&stdout).unwrap_or_default(),
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    (status, printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_use_the_console_in_a_browser() {
    let root = repository_root();
    let Some(chromium) = browser_tooling(&root) else {
        return;
    };
    let started = Instant::now();
    let deployment = Deployment::sqlite().with("FRAGMENT_MODE", "sandbox");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = deployment.base();
    let mut server = Server::start_healthy(&deployment, &http).await;
    let stuck = seed(&http, &base, &mut server).await;
    let (deliver, fail, hold) = (&stuck[0], &stuck[1], &stuck[2]);

    let scratch = tempfile::tempdir().expect("a temp dir");
    let screenshots = match std::env::var_os("CONSOLE_SCREENSHOTS").filter(|v| !v.is_empty()) {
        Some(dir) => root.join(dir),
        None => scratch.path().join("screenshots"),
    };
    let failures = scratch.path().join("failures");
    let env = [
        ("CONSOLE_BASE", base.clone()),
        ("ADMIN_KEY", ADMIN_KEY.to_owned()),
        ("AUDITOR_KEY", AUDITOR_KEY.to_owned()),
        ("SERVICE_KEY", SERVICE_KEY.to_owned()),
        ("USER_ID", USER.to_string()),
        ("USERNAME", USERNAME.to_owned()),
        ("DELIVER_ID", deliver.id.clone()),
        ("FAIL_ID", fail.id.clone()),
        ("HOLD_ID", hold.id.clone()),
        ("SCREENSHOTS", screenshots.display().to_string()),
        ("FAILURES", failures.display().to_string()),
        ("CHROMIUM", chromium.display().to_string()),
    ];
    let browsing = Instant::now();
    let (status, printed) = run_browser(&root, &env, scratch.path()).await;
    println!(
        "the browser suite ran for {:.1} s:\n{printed}",
        browsing.elapsed().as_secs_f64()
    );
    if status.is_none_or(|status| !status.success()) {
        let kept = scratch.keep();
        panic!(
            "the console's browser tests failed ({}); node printed:\n{printed}\n\
             screenshots of the failed steps: {}\nserve's stderr:\n{}",
            status.map_or_else(
                || format!("killed after {} s", BROWSER_RUN_LIMIT.as_secs()),
                |status| status.to_string()
            ),
            kept.join("failures").display(),
            server.stderr_tail()
        );
    }
    server.assert_running();

    // What the browser did, as the API sees it.
    wait_for_projections(&http, &base).await;
    let history = get(
        &http,
        &base,
        &format!("/v1/users/{USER}/transactions?limit=50"),
        ADMIN_KEY,
    )
    .await;
    let status_of = |id: &str| {
        history["transactions"]
            .as_array()
            .expect("transactions")
            .iter()
            .find(|t| t["id"] == id)
            .map(|t| t["status"].clone())
            .unwrap_or_else(|| panic!("purchase {id} is not in the history: {history}"))
    };
    assert_eq!(
        status_of(&deliver.id),
        "completed",
        "the delivered purchase"
    );
    assert_eq!(status_of(&fail.id), "refunded", "the failed purchase");
    assert_eq!(status_of(&hold.id), "sent", "the purchase nobody decided");
    // Delivered: captured; failed: released; the third: still reserved.
    let balance = get(
        &http,
        &base,
        &format!("/v1/users/{USER}/balance"),
        ADMIN_KEY,
    )
    .await;
    let hundred = Decimal::from(100);
    assert_eq!(
        decimal(&balance["available"], "available"),
        hundred - deliver.price - hold.price,
        "{balance}"
    );
    assert_eq!(
        decimal(&balance["reserved"], "reserved"),
        hold.price,
        "{balance}"
    );

    server.stop().await;
    deployment.verify();
    println!(
        "the console test took {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}
