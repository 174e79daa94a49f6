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

    // The payer sends more than asked (within the 10% tolerance): paid_over credits what
    // actually arrived.
    let paid = app.pay(&invoice, "paid_over", Some("11.25")).await;
    assert_eq!(paid["endpoint_status"], 200);
    assert_eq!(paid["endpoint_answer"]["result"], "recorded");
    let position = paid["endpoint_answer"]["detail"]["position"]
        .as_u64()
        .unwrap();

    // Heleket retries: the same webhook again records nothing.
    let again = app.pay(&invoice, "paid_over", Some("11.25")).await;
    assert_eq!(again["endpoint_answer"]["result"], "duplicate");

    let balance = app.balance_at_least(1001, position).await;
    assert_eq!(balance["available"], "11.25");
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
    let position = cancelled["endpoint_answer"]["detail"]["position"]
        .as_u64()
        .unwrap();
    assert_eq!(
        app.latest_transaction(1003, position).await["status"],
        "failed"
    );

    // The money arrived after all: it is credited, not lost.
    let paid = app.pay(invoice, "paid", None).await;
    assert_eq!(paid["endpoint_answer"]["result"], "recorded");
    let position = paid["endpoint_answer"]["detail"]["position"]
        .as_u64()
        .unwrap();
    assert_eq!(app.balance_at_least(1003, position).await["available"], "5");
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn interim_statuses_change_nothing_and_a_failure_after_payment_reverses_it_once() {
    let app = spawn_app().await;
    app.register(1004).await;
    let recharge = app.recharge(1004, "2").await;
    let invoice = recharge["invoice_uuid"].as_str().unwrap();
    let check = app.pay(invoice, "check", None).await;
    assert_eq!(check["endpoint_answer"]["result"], "ignored");
    app.pay(invoice, "paid", None).await;
    let length = app.log_length().await;
    assert_eq!(app.balance_at_least(1004, length).await["available"], "2");
    // The money went back after the credit: the credit is taken back, once.
    let cancelled = app.pay(invoice, "cancel", None).await;
    assert_eq!(
        cancelled["endpoint_answer"]["detail"]["outcome"], "reversed",
        "{cancelled}"
    );
    for status in ["refund_paid", "fail", "cancel"] {
        let late = app.pay(invoice, status, None).await;
        assert_eq!(late["endpoint_status"], 200, "{late}");
        assert!(
            matches!(
                late["endpoint_answer"]["result"].as_str(),
                Some("ignored" | "duplicate")
            ),
            "{late}"
        );
    }
    assert_eq!(app.log_length().await, length + 1);
    let balance = app.balance_at_least(1004, length + 1).await;
    assert_eq!(
        (balance["available"].as_str(), balance["debt"].as_str()),
        (Some("0"), Some("0"))
    );
    assert_eq!(
        app.latest_transaction(1004, length + 1).await["status"],
        "reversed"
    );
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_twice_returns_the_first_registration() {
    let app = spawn_app().await;
    let register = |name: &str| {
        app.post(
            "/v1/users",
            SERVICE_KEY,
            &json!({"user_id": 1005, "username": name, "language": "ru"}),
        )
    };
    let first = register("first_name").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let again = register("second_name").await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["Idempotent-Replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["username"], "first_name");
    assert_eq!(app.log_length().await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_invoice_is_created_for_an_unknown_user() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/v1/users/777/recharges",
            SERVICE_KEY,
            &json!({"amount": "1"}),
        )
        .await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "unknown_user".into())
    );
    assert_eq!(app.log_length().await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_confirmation_on_the_sandbox_confirms_its_own_payments_and_nothing_else() {
    let app = spawn_app_with(Options {
        vars: vec![("HELEKET_CONFIRM_WEBHOOKS", "true".into())],
    })
    .await;
    app.register(1005).await;
    let recharge = app.recharge(1005, "3").await;
    let invoice = recharge["invoice_uuid"].as_str().unwrap();
    let before = app.log_length().await;
    // Signed with the right key, but the sandbox (like Heleket) has the invoice unpaid.
    let recharge_id = recharge["recharge_id"].as_str().unwrap().replace('-', "");
    let claimed = json!({"type": "payment", "uuid": invoice,
        "order_id": format!("sl_1005_{recharge_id}"), "amount": "3", "payment_amount": "3",
        "payer_amount": "3", "payer_currency": "TON", "currency": "TON", "network": "ton",
        "status": "paid", "is_final": true});
    let answer: Value = app
        .webhook(claimed, HELEKET_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"], "unconfirmed", "{answer}");
    assert_eq!(app.log_length().await, before);
    // The sandbox's own payment is confirmed by its payment/info and credited.
    let paid = app.pay(invoice, "paid", None).await;
    assert_eq!(
        paid["endpoint_answer"]["detail"]["outcome"], "settled",
        "{paid}"
    );
    app.stop().await;
}
