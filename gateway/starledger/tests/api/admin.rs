//! Admin and audit API: adjustments with a reason and the admin's name, projection status
//! and rebuild, the event stream, balances at a moment.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn adjustments_need_a_reason_and_record_the_admin() {
    let app = spawn_app().await;
    app.funded_user(6001, "2").await;
    let path = "/v1/admin/users/6001/adjustments";
    let no_reason = app
        .post_with_key(
            path,
            ADMIN_KEY,
            "adj-0",
            &json!({"amount": "1", "reason": "  "}),
        )
        .await;
    assert_eq!(
        error_code(no_reason).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_text".into())
    );
    let overdraw = app
        .post_with_key(
            path,
            ADMIN_KEY,
            "adj-1",
            &json!({"amount": "-3", "reason": "fix"}),
        )
        .await;
    assert_eq!(
        error_code(overdraw).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "adjustment_would_overdraw".into()
        )
    );
    let missing_key = app
        .post(
            path,
            ADMIN_KEY,
            &json!({"amount": "1", "reason": "goodwill"}),
        )
        .await;
    assert_eq!(missing_key.status(), StatusCode::BAD_REQUEST);
    let done = app
        .post_with_key(
            path,
            ADMIN_KEY,
            "adj-2",
            &json!({"amount": "-0.5", "reason": "duplicate top-up refunded by hand"}),
        )
        .await;
    assert_eq!(done.status(), StatusCode::CREATED);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["admin"], "alice");
    assert_eq!(done["amount"], "-0.5");
    let position = done["position"].as_u64().unwrap();
    assert_eq!(
        app.balance_at_least(6001, position).await["available"],
        "1.5"
    );

    let events = app
        .get(
            &format!("/v1/audit/events?from={}", position - 1),
            AUDITOR_KEY,
        )
        .await;
    assert_eq!(events.headers()["content-type"], "application/x-ndjson");
    let text = events.text().await.unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["event_type"], "BalanceAdjusted");
    assert_eq!(last["metadata"]["actor"], "admin:alice");
    assert_eq!(last["hash"].as_str().unwrap().len(), 64);
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_pages_by_position() {
    let app = spawn_app().await;
    for user in 6101..6106 {
        app.register(user).await;
    }
    let first = app.get("/v1/audit/events?limit=2", AUDITOR_KEY).await;
    assert_eq!(first.headers()["Next-From"], "2");
    assert_eq!(first.text().await.unwrap().lines().count(), 2);
    let last = app
        .get("/v1/audit/events?from=4&limit=2", AUDITOR_KEY)
        .await;
    assert!(last.headers().get("Next-From").is_none());
    let line: Value =
        serde_json::from_str(last.text().await.unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(line["position"], 5);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn balances_at_a_past_moment_come_from_the_log() {
    let app = spawn_app().await;
    app.funded_user(6201, "3").await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let recharge = app.recharge(6201, "4").await;
    app.pay(recharge["invoice_uuid"].as_str().unwrap(), "paid", None)
        .await;
    let at = |t: chrono::DateTime<chrono::Utc>| {
        format!(
            "/v1/audit/balances?at={}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        )
    };
    let then = app.audit_result(&at(between)).await;
    assert_eq!(then["balances"][0]["available"], "3");
    let now = app.audit_result(&at(chrono::Utc::now())).await;
    assert_eq!(now["balances"][0]["available"], "7");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn projections_can_be_inspected_and_rebuilt_while_serving() {
    let app = spawn_app().await;
    app.funded_user(6301, "5").await;
    let status: Value = app
        .get("/v1/admin/projections", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["head"], 3);
    let names: Vec<&str> = status["projectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["users", "balances", "transactions", "cache"]);

    let unknown = app
        .post(
            "/v1/admin/projections/rebuild",
            ADMIN_KEY,
            &json!({"projection": "ledgers"}),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let started = app
        .post(
            "/v1/admin/projections/rebuild",
            ADMIN_KEY,
            &json!({"projection": "all"}),
        )
        .await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let mut finished = Value::Null;
    for _ in 0..200 {
        let progress: Value = app
            .get("/v1/admin/projections/rebuild", ADMIN_KEY)
            .await
            .json()
            .await
            .unwrap();
        if progress["state"] != "running" {
            finished = progress;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(finished["state"], "done", "{finished}");
    assert_eq!(finished["position"], 3);
    assert_eq!(finished["started_by"], "alice");
    // Reads keep working and agree with the log after the swap.
    assert_eq!(app.balance_at_least(6301, 3).await["available"], "5");
    app.assert_sound().await;
    app.stop().await;
}
