//! An operator settles, from a shell, what the ledger would not credit by itself: a payment
//! in another coin arrives through the built `starledger serve` (sandbox Heleket, signed
//! webhook), waits in review, and `starledger recharges review|credit|reject` lists it and
//! decides it, as `admin:NAME`. Then `starledger audit verify` passes.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use starledger_e2e::{wait_for_projections, Deployment, Server, SERVICE_KEY};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn operator_settles_a_review_from_the_shell(deployment: Deployment) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = deployment.base();
    let mut server = Server::start_healthy(&deployment, &http).await;
    let post = |path: String, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(SERVICE_KEY)
            .json(&body)
            .send()
    };
    let registered = post(
        "/v1/users".into(),
        json!({"user_id": 52_001, "username": "reviewed_one"}),
    )
    .await
    .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let mut invoices = Vec::new();
    for _ in 0..2 {
        let recharge: Value = post("/v1/users/52001/recharges".into(), json!({"amount": "10"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let uuid = recharge["invoice_uuid"].as_str().unwrap().to_owned();
        let paid: Value = post(
            format!("/sandbox/heleket/invoices/{uuid}/pay"),
            json!({"status": "paid", "amount": "30", "payer_currency": "USDT"}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(
            paid["endpoint_answer"]["detail"]["outcome"], "needs_review",
            "{paid}"
        );
        invoices.push(recharge["recharge_id"].as_str().unwrap().to_owned());
    }
    wait_for_projections(&http, &base).await;

    let listed = deployment.run(&["recharges", "review"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let rows: Vec<Value> = stdout(&listed)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["status"] == "needs_review"));
    assert_eq!(rows[0]["metadata"]["review_reason"], "foreign_coin");

    let credited = deployment.run(&[
        "recharges",
        "credit",
        &invoices[0],
        "--amount",
        "9.5",
        "--reason",
        "Heleket support converted the USDT",
        "--admin",
        "ops_dana",
    ]);
    assert!(
        credited.status.success(),
        "{}",
        String::from_utf8_lossy(&credited.stderr)
    );
    assert!(
        stdout(&credited).contains("credited 9.5 TON by admin:ops_dana"),
        "{}",
        stdout(&credited)
    );
    let rejected = deployment.run(&[
        "recharges",
        "reject",
        &invoices[1],
        "--reason",
        "refunded to the payer",
        "--admin",
        "ops_dana",
    ]);
    assert!(
        rejected.status.success(),
        "{}",
        String::from_utf8_lossy(&rejected.stderr)
    );
    // A second, different decision is refused and records nothing.
    let again = deployment.run(&[
        "recharges",
        "credit",
        &invoices[1],
        "--amount",
        "1",
        "--reason",
        "x",
        "--admin",
        "ops_dana",
    ]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("needs review or is on hold"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    wait_for_projections(&http, &base).await;
    let balance: Value = http
        .get(format!("{base}/v1/users/52001/balance?min_position=1"))
        .bearer_auth(SERVICE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The CLI wrote to the log; the server's projectors follow it.
    let mut available = balance["available"].clone();
    for _ in 0..50 {
        if available == "9.5" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        available = http
            .get(format!("{base}/v1/users/52001/balance"))
            .bearer_auth(SERVICE_KEY)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["available"]
            .clone();
    }
    assert_eq!(available, "9.5");
    let exported = deployment.export();
    let actors: Vec<&str> = exported
        .iter()
        .filter(|e| e["event_type"] == "RechargeSettled" || e["event_type"] == "RechargeFailed")
        .map(|e| e["metadata"]["actor"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(actors, ["admin:ops_dana", "admin:ops_dana"]);
    server.stop().await;
    deployment.verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_settles_a_review_from_the_shell_on_postgres() {
    if let Some(deployment) = Deployment::postgres("the review CLI").await {
        operator_settles_a_review_from_the_shell(deployment).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_settles_a_review_from_the_shell_on_sqlite() {
    operator_settles_a_review_from_the_shell(Deployment::sqlite()).await;
}
