//! `HELEKET_MODE=live` against a local server that speaks Heleket's API (signed requests,
//! `{"state":0,"result":…}` answers): invoice creation, an outage, and the reconciler.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use starledger_heleket::sign::request_signature;
use starledger_shop::reconciler::Reconciler;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::*;

pub const MERCHANT: &str = "8b2c5a4e-0000-4000-8000-000000000001";

pub async fn live_app(heleket: &MockServer) -> TestApp {
    spawn_app_with(Options {
        vars: vec![
            ("HELEKET_MODE", "live".into()),
            ("MERCHANT_UUID", MERCHANT.into()),
            ("HELEKET_API_URL", heleket.uri()),
            (
                "HELEKET_CALLBACK_URL",
                "https://shop.example/webhooks/heleket".into(),
            ),
            ("HELEKET_TIMEOUT", "2".into()),
        ],
    })
    .await
}

/// Answers `POST /v1/payment` as Heleket does, after checking the request's signature.
fn invoice_answer(request: &Request) -> ResponseTemplate {
    let signed = request.headers.get("sign").and_then(|v| v.to_str().ok());
    let merchant = request
        .headers
        .get("merchant")
        .and_then(|v| v.to_str().ok());
    if signed != Some(&request_signature(&request.body, HELEKET_KEY)) || merchant != Some(MERCHANT)
    {
        return ResponseTemplate::new(401)
            .set_body_json(json!({"state": 1, "message": "bad sign"}));
    }
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let order = body["order_id"].as_str().unwrap();
    let uuid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, order.as_bytes()).to_string();
    ResponseTemplate::new(200).set_body_json(json!({"state": 0, "result": {
        "uuid": uuid, "order_id": order, "amount": body["amount"], "payment_amount": null,
        "currency": body["currency"], "url": format!("https://pay.heleket.com/pay/{uuid}"),
        "expired_at": Utc::now().timestamp() + 3600, "status": "check",
        "payment_status": "check", "is_final": false,
    }}))
}

/// Makes `heleket` create invoices as Heleket does.
async fn mount_invoices(heleket: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/payment"))
        .respond_with(invoice_answer)
        .mount(heleket)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_recharge_creates_a_signed_invoice_at_heleket() {
    let heleket = MockServer::start().await;
    mount_invoices(&heleket).await;
    let app = live_app(&heleket).await;
    app.register(7001).await;
    let recharge = app.recharge(7001, "10.5").await;
    assert!(recharge["payment_url"]
        .as_str()
        .unwrap()
        .starts_with("https://pay.heleket.com/pay/"));
    let sent = heleket.received_requests().await.unwrap();
    assert_eq!(sent.len(), 1);
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["amount"], "10.5");
    assert_eq!(body["currency"], "TON");
    assert_eq!(
        body["url_callback"],
        "https://shop.example/webhooks/heleket"
    );
    let recharge_id = recharge["recharge_id"].as_str().unwrap().replace('-', "");
    assert_eq!(body["order_id"], format!("sl_7001_{recharge_id}"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn when_heleket_is_down_a_recharge_fails_cleanly_and_records_nothing() {
    let heleket = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&heleket)
        .await;
    let app = live_app(&heleket).await;
    app.register(7002).await;
    let before = app.log_length().await;
    let response = app
        .post(
            "/v1/users/7002/recharges",
            SERVICE_KEY,
            &json!({"amount": "1"}),
        )
        .await;
    assert_eq!(response.headers()["Retry-After"], "1");
    assert_eq!(
        error_code(response).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "payment_provider_unavailable".into()
        )
    );
    assert_eq!(app.log_length().await, before);
    app.stop().await;
}

/// A pending recharge in the read model, created through the live path.
async fn pending_recharge(app: &TestApp, user: i64) -> Value {
    app.register(user).await;
    let recharge = app.recharge(user, "2.5").await;
    let position = recharge["position"].as_u64().unwrap();
    app.balance_at_least(user, position).await;
    recharge
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reconciler_settles_a_paid_invoice_whose_webhook_was_lost() {
    let heleket = MockServer::start().await;
    mount_invoices(&heleket).await;
    let app = live_app(&heleket).await;
    let recharge = pending_recharge(&app, 7003).await;
    let uuid = recharge["invoice_uuid"].as_str().unwrap().to_owned();
    let recharge_id = recharge["recharge_id"].as_str().unwrap().replace('-', "");
    let order = format!("sl_7003_{recharge_id}");
    let paid = json!({"state": 0, "result": {
        "uuid": uuid, "order_id": order, "amount": "2.5", "payment_amount": "2.6",
        "payer_amount": "2.6", "payer_currency": "TON", "network": "ton",
        "currency": "TON", "url": "https://pay.heleket.com/pay/x", "payment_status": "paid_over",
        "status": "paid_over", "is_final": true, "txid": "abc", "expired_at": null,
    }});
    Mock::given(method("POST"))
        .and(path("/v1/payment/info"))
        .respond_with(ResponseTemplate::new(200).set_body_json(paid))
        .mount(&heleket)
        .await;
    let reconciler = Reconciler {
        settlement: app.state.settlement.clone(),
        read: app.state.read.clone(),
    };
    // Not expired yet: left alone.
    let early = reconciler.round(Utc::now()).await.unwrap();
    assert_eq!(early.examined, 0);
    let later = Utc::now() + chrono::Duration::hours(2);
    let round = reconciler.round(later).await.unwrap();
    assert_eq!((round.examined, round.settled), (1, 1));
    let asked = heleket.received_requests().await.unwrap();
    let info: Value = serde_json::from_slice(&asked.last().unwrap().body).unwrap();
    assert_eq!(info["order_id"], order.as_str());

    // The webhook turns up after all: same key, nothing recorded twice.
    let webhook = json!({"type": "payment", "uuid": uuid, "order_id": order, "amount": "2.5",
        "payment_amount": "2.6", "payer_amount": "2.6", "payer_currency": "TON",
        "network": "ton", "status": "paid_over", "currency": "TON", "is_final": true,
        "txid": "abc"});
    let answer: Value = app
        .webhook(webhook, HELEKET_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"], "duplicate");
    let head = app.log_length().await;
    assert_eq!(app.balance_at_least(7003, head).await["available"], "2.6");
    // Settled rows are no longer pending: the next round has nothing to do.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(reconciler.round(later).await.unwrap().examined, 0);
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reconciler_fails_an_invoice_heleket_does_not_know() {
    let heleket = MockServer::start().await;
    mount_invoices(&heleket).await;
    Mock::given(method("POST"))
        .and(path("/v1/payment/info"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"state": 1, "message": "Payment not found"})),
        )
        .mount(&heleket)
        .await;
    let app = live_app(&heleket).await;
    pending_recharge(&app, 7004).await;
    let reconciler = Reconciler {
        settlement: app.state.settlement.clone(),
        read: app.state.read.clone(),
    };
    let round = reconciler
        .round(Utc::now() + chrono::Duration::hours(2))
        .await
        .unwrap();
    assert_eq!((round.examined, round.failed), (1, 1));
    let head = app.log_length().await;
    assert_eq!(app.latest_transaction(7004, head).await["status"], "failed");
    assert_eq!(app.balance(7004).await["available"], "0");
    app.stop().await;
}
