//! Top-ups through the sandbox Heleket, end to end.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_recharge_credits_what_was_paid_once() {
    let app = spawn_app().await;
    app.register(1001).await;
    let recharge = app.recharge(1001, "10.5").await;
    assert_eq!(recharge["amount"], "10.5");
    assert_eq!(recharge["status"], "pending");
    let invoice = recharge["invoice_uuid"].as_str().unwrap().to_owned();
    assert!(recharge["payment_url"].as_str().unwrap().contains(&invoice));

    // The payer sends more than asked: paid_over credits what actually arrived.
    let paid = app.pay(&invoice, "paid_over", Some("12.25")).await;
    assert_eq!(paid["endpoint_status"], 200);
    assert_eq!(paid["endpoint_answer"]["result"], "recorded");
    let position = paid["endpoint_answer"]["detail"]["position"].as_u64().unwrap();

    // Heleket retries: the same webhook again records nothing.
    let again = app.pay(&invoice, "paid_over", Some("12.25")).await;
    assert_eq!(again["endpoint_answer"]["result"], "duplicate");

    let balance = app.balance_at_least(1001, position).await;
    assert_eq!(balance["available"], "12.25");
    assert_eq!(balance["reserved"], "0");
    assert_eq!(balance["currency"], "TON");

    let history: Value = app
        .get("/v1/users/1001/transactions", SERVICE_KEY)
        .await
        .json()
        .await
        .unwrap();
    let first = &history["transactions"][0];
    assert_eq!(first["kind"], "recharge");
    assert_eq!(first["status"], "completed");
    assert_eq!(first["external_id"], invoice.as_str());
    assert_eq!(app.log_length().await, 3, "registered, requested, settled");
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_recharge_returns_the_same_invoice() {
    let app = spawn_app().await;
    app.register(1002).await;
    let send = || {
        app.post_with_key(
            "/v1/users/1002/recharges",
            SERVICE_KEY,
            "topup-1",
            &json!({"amount": "3"}),
        )
    };
    let first = send().await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("Idempotent-Replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let second = send().await;
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(second.headers()["Idempotent-Replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["recharge_id"], second["recharge_id"]);
    assert_eq!(first["invoice_uuid"], second["invoice_uuid"]);
    assert_eq!(app.log_length().await, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_invoice_fails_the_recharge_and_a_late_payment_still_counts() {
    let app = spawn_app().await;
    app.register(1003).await;
    let recharge = app.recharge(1003, "5").await;
    let invoice = recharge["invoice_uuid"].as_str().unwrap();
    let cancelled = app.pay(invoice, "cancel", None).await;
    assert_eq!(cancelled["endpoint_answer"]["result"], "recorded");
    let position = &cancelled["endpoint_answer"]["detail"]["position"];
    let history: Value = app
        .get(
            &format!("/v1/users/1003/transactions?min_position={position}"),
            SERVICE_KEY,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["transactions"][0]["status"], "failed");

    // The money arrived after all: it is credited, not lost.
    let paid = app.pay(invoice, "paid", None).await;
    assert_eq!(paid["endpoint_answer"]["result"], "recorded");
    let position = paid["endpoint_answer"]["detail"]["position"].as_u64().unwrap();
    assert_eq!(app.balance_at_least(1003, position).await["available"], "5");
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn interim_statuses_and_failures_after_payment_change_nothing() {
    let app = spawn_app().await;
    app.register(1004).await;
    let recharge = app.recharge(1004, "2").await;
    let invoice = recharge["invoice_uuid"].as_str().unwrap();
    let check = app.pay(invoice, "check", None).await;
    assert_eq!(check["endpoint_answer"]["result"], "ignored");
    app.pay(invoice, "paid", None).await;
    let length = app.log_length().await;
    // A refund or cancellation after the credit needs a person, not an automatic debit.
    for status in ["cancel", "refund_paid", "fail"] {
        let late = app.pay(invoice, status, None).await;
        assert_eq!(late["endpoint_status"], 200, "{late}");
        assert_eq!(late["endpoint_answer"]["result"], "ignored", "{late}");
    }
    assert_eq!(app.log_length().await, length);
    assert_eq!(app.balance(1004).await["available"], "2");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_invoice_is_created_for_an_unknown_user() {
    let app = spawn_app().await;
    let response = app
        .post("/v1/users/777/recharges", SERVICE_KEY, &json!({"amount": "1"}))
        .await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "unknown_user".into())
    );
    assert_eq!(app.log_length().await, 0);
    app.stop().await;
}
