//! What a recharge credits, through the HTTP API with real PostgreSQL: signed webhooks in
//! Heleket's full shape (`payer_currency`, `payer_amount`, `payment_amount`,
//! `merchant_amount`, `convert`, `is_final`) against a local Heleket that keeps each invoice's
//! state and answers `payment/info` from it, as the real one does.
//!
//! Credit only what arrived, in our coin, within the tolerance, once `payment/info` agrees;
//! everything else is held or reviewed, never guessed; a refund after the credit reverses it
//! and what was spent becomes a debt.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use starledger_heleket::sign::request_signature;
use starledger_shop::reconciler::Reconciler;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::*;
use crate::live_heleket::{live_app, MERCHANT};

/// A local Heleket: invoices created by signed `POST /v1/payment`, their state changed by the
/// test, `payment/info` answered from that state (or 503 while "down").
struct Heleket {
    server: MockServer,
    invoices: Arc<Mutex<HashMap<String, Value>>>,
    down: Arc<AtomicBool>,
    /// Every `POST /v1/payment` body, as sent.
    created: Arc<Mutex<Vec<Value>>>,
}

fn signed_by_us(request: &Request) -> bool {
    let sign = request.headers.get("sign").and_then(|v| v.to_str().ok());
    let merchant = request
        .headers
        .get("merchant")
        .and_then(|v| v.to_str().ok());
    sign == Some(&request_signature(&request.body, HELEKET_KEY)) && merchant == Some(MERCHANT)
}

impl Heleket {
    async fn start() -> Self {
        let heleket = Self {
            server: MockServer::start().await,
            invoices: Arc::default(),
            down: Arc::default(),
            created: Arc::default(),
        };
        let (invoices, created) = (heleket.invoices.clone(), heleket.created.clone());
        Mock::given(method("POST"))
            .and(path("/v1/payment"))
            .respond_with(move |request: &Request| {
                if !signed_by_us(request) {
                    return ResponseTemplate::new(401)
                        .set_body_json(json!({"state": 1, "message": "bad sign"}));
                }
                let body: Value = serde_json::from_slice(&request.body).unwrap();
                created.lock().unwrap().push(body.clone());
                let order = body["order_id"].as_str().unwrap().to_owned();
                let uuid =
                    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, order.as_bytes()).to_string();
                let result = invoices
                    .lock()
                    .unwrap()
                    .entry(uuid.clone())
                    .or_insert_with(|| {
                        json!({
                            "uuid": uuid, "order_id": order, "amount": body["amount"],
                            "payment_amount": null, "payer_amount": null, "payer_currency": null,
                            "currency": body["currency"], "merchant_amount": null,
                            "network": "ton", "address": "UQinvoiceaddress", "from": null,
                            "txid": null, "payment_status": "check", "status": "check",
                            "url": format!("https://pay.heleket.com/pay/{uuid}"),
                            "expired_at": Utc::now().timestamp() + 3600, "is_final": false,
                            "additional_data": null, "commission": null,
                        })
                    })
                    .clone();
                ResponseTemplate::new(200).set_body_json(json!({"state": 0, "result": result}))
            })
            .mount(&heleket.server)
            .await;
        let (invoices, down) = (heleket.invoices.clone(), heleket.down.clone());
        Mock::given(method("POST"))
            .and(path("/v1/payment/info"))
            .respond_with(move |request: &Request| {
                if down.load(Ordering::SeqCst) {
                    return ResponseTemplate::new(503);
                }
                if !signed_by_us(request) {
                    return ResponseTemplate::new(401)
                        .set_body_json(json!({"state": 1, "message": "bad sign"}));
                }
                let asked: Value = serde_json::from_slice(&request.body).unwrap();
                let invoices = invoices.lock().unwrap();
                let found = match asked["uuid"].as_str() {
                    Some(uuid) => invoices.get(uuid),
                    None => invoices
                        .values()
                        .find(|i| i["order_id"] == asked["order_id"]),
                };
                match found {
                    Some(result) => ResponseTemplate::new(200)
                        .set_body_json(json!({"state": 0, "result": result})),
                    None => ResponseTemplate::new(404)
                        .set_body_json(json!({"state": 1, "message": "Payment not found"})),
                }
            })
            .mount(&heleket.server)
            .await;
        heleket
    }

    /// Heleket's record of the invoice moves to `status`, paid with `amount` of `coin`.
    fn pay(&self, uuid: &str, status: &str, coin: &str, amount: &str) {
        let mut invoices = self.invoices.lock().unwrap();
        let invoice = invoices.get_mut(uuid).expect("a known invoice");
        invoice["status"] = json!(status);
        invoice["payment_status"] = json!(status);
        invoice["payer_currency"] = json!(coin);
        invoice["payment_amount"] = json!(amount);
        invoice["payer_amount"] = json!(amount);
        invoice["merchant_amount"] = json!(amount);
        invoice["is_final"] = json!(!matches!(status, "check" | "locked" | "process"));
        invoice["txid"] = json!(format!("tx-{uuid}-{status}"));
    }

    /// The webhook Heleket sends for the invoice as it stands, in its full shape.
    fn webhook(&self, uuid: &str) -> Value {
        let invoices = self.invoices.lock().unwrap();
        let i = &invoices[uuid];
        json!({
            "type": "payment", "uuid": i["uuid"], "order_id": i["order_id"],
            "amount": i["amount"], "payment_amount": i["payment_amount"],
            "payment_amount_usd": "1.00", "merchant_amount": i["merchant_amount"],
            "commission": "0.01", "is_final": i["is_final"], "status": i["status"],
            "from": "UQpayerwallet", "wallet_address_uuid": null, "network": i["network"],
            "currency": i["currency"], "payer_currency": i["payer_currency"],
            "payer_amount": i["payer_amount"], "additional_data": null,
            "convert": {"to_currency": "USDT", "commission": null, "rate": "5.1", "amount": "1"},
            "txid": i["txid"],
        })
    }
}

/// Registers `user` and opens a live recharge of `amount`; returns the invoice uuid and the
/// recharge id.
async fn invoice(app: &TestApp, user: i64, amount: &str) -> (String, String) {
    app.register(user).await;
    let recharge = app.recharge(user, amount).await;
    (
        recharge["invoice_uuid"].as_str().unwrap().to_owned(),
        recharge["recharge_id"].as_str().unwrap().to_owned(),
    )
}

/// Sends Heleket's webhook for `uuid` and returns the answer's status and body.
async fn deliver(app: &TestApp, heleket: &Heleket, uuid: &str) -> (StatusCode, Value) {
    let response = app.webhook(heleket.webhook(uuid), HELEKET_KEY).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Heleket moves the invoice to `status`, paid with `amount` of `coin`, and sends its webhook;
/// returns what the ledger recorded.
async fn outcome(
    app: &TestApp,
    heleket: &Heleket,
    uuid: &str,
    status: &str,
    coin: &str,
    amount: &str,
) -> Value {
    heleket.pay(uuid, status, coin, amount);
    let (status, answer) = deliver(app, heleket, uuid).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["detail"]["outcome"].clone()
}

async fn settled_balance(app: &TestApp, user: i64) -> Value {
    let head = app.log_length().await;
    app.balance_at_least(user, head).await
}

#[tokio::test(flavor = "multi_thread")]
async fn invoices_accept_only_the_ledger_coin_on_its_network() {
    let heleket = Heleket::start().await;
    let app = live_app(&heleket.server).await;
    invoice(&app, 8001, "10").await;
    let created = heleket.created.lock().unwrap().clone();
    assert_eq!(
        created[0]["currencies"],
        json!([{"currency": "TON", "network": "ton"}])
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ton_invoice_paid_in_usdt_is_reviewed_and_credits_nothing_until_an_operator_decides() {
    let heleket = Heleket::start().await;
    let app = live_app(&heleket.server).await;
    let (uuid, recharge_id) = invoice(&app, 8002, "10").await;
    heleket.pay(&uuid, "paid", "USDT", "30");

    let (status, answer) = deliver(&app, &heleket, &uuid).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["result"], "recorded");
    assert_eq!(answer["detail"]["outcome"], "needs_review");
    let balance = settled_balance(&app, 8002).await;
    assert_eq!(
        (balance["available"].as_str(), balance["total"].as_str()),
        (Some("0"), Some("0"))
    );
    let row = app.latest_transaction(8002, app.log_length().await).await;
    assert_eq!(row["status"], "needs_review");
    assert_eq!(row["metadata"]["review_reason"], "foreign_coin");
    assert_eq!(row["metadata"]["facts"]["payer_currency"], "USDT");
    // Heleket delivers it again: still nothing credited.
    let (_, again) = deliver(&app, &heleket, &uuid).await;
    assert_eq!(again["result"], "duplicate");

    // Operators see it, and decide.
    let listed: Value = app
        .get("/v1/admin/recharges", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["recharges"][0]["recharge"]["id"],
        recharge_id.as_str()
    );
    assert_eq!(listed["recharges"][0]["user_id"], 8002);
    let refused = app
        .post(
            &format!("/v1/admin/recharges/{recharge_id}/credit"),
            SERVICE_KEY,
            &json!({"amount": "9.5", "reason": "x"}),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let credit = json!({"amount": "9.5", "reason": "USDT converted at 0.3166 by Heleket support"});
    let decided = app
        .post(
            &format!("/v1/admin/recharges/{recharge_id}/credit"),
            ADMIN_KEY,
            &credit,
        )
        .await;
    assert_eq!(decided.status(), StatusCode::CREATED);
    let decided: Value = decided.json().await.unwrap();
    assert_eq!(
        (decided["status"].as_str(), decided["admin"].as_str()),
        (Some("partial"), Some("alice"))
    );
    let repeated = app
        .post(
            &format!("/v1/admin/recharges/{recharge_id}/credit"),
            ADMIN_KEY,
            &credit,
        )
        .await;
    assert_eq!(repeated.headers()["Idempotent-Replayed"], "true");
    let other = app
        .post(
            &format!("/v1/admin/recharges/{recharge_id}/reject"),
            ADMIN_KEY,
            &json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(
        error_code(other).await,
        (
            StatusCode::CONFLICT,
            "recharge_not_awaiting_decision".into()
        )
    );
    assert_eq!(settled_balance(&app, 8002).await["available"], "9.5");
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_webhook_that_payment_info_does_not_confirm_credits_nothing() {
    let heleket = Heleket::start().await;
    let app = live_app(&heleket.server).await;
    let (uuid, _) = invoice(&app, 8003, "10").await;
    let before = app.log_length().await;
    // Heleket's test-webhook API (or a leaked key) signs a `paid` body for a real invoice
    // that Heleket itself still has as `check`.
    let mut test_webhook = heleket.webhook(&uuid);
    for (field, value) in [
        ("status", json!("paid")),
        ("payer_currency", json!("TON")),
        ("payment_amount", json!("10")),
        ("is_final", json!(true)),
    ] {
        test_webhook[field] = value;
    }
    let response = app.webhook(test_webhook.clone(), HELEKET_KEY).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["result"], "unconfirmed", "{answer}");
    assert_eq!(app.log_length().await, before, "nothing recorded");
    assert_eq!(app.balance(8003).await["available"], "0");

    // Paid for real, but the webhook claims more than arrived: not confirmed either.
    heleket.pay(&uuid, "paid", "TON", "10");
    test_webhook["payment_amount"] = json!("10.9");
    let answer: Value = app
        .webhook(test_webhook, HELEKET_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"], "unconfirmed");
    assert_eq!(app.log_length().await, before);

    // The real webhook is.
    let (_, answer) = deliver(&app, &heleket, &uuid).await;
    assert_eq!(answer["detail"]["outcome"], "settled", "{answer}");
    assert_eq!(settled_balance(&app, 8003).await["available"], "10");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn when_heleket_cannot_confirm_the_webhook_is_answered_503_and_the_reconciler_finishes_it() {
    let heleket = Heleket::start().await;
    let app = live_app(&heleket.server).await;
    let (uuid, _) = invoice(&app, 8004, "4").await;
    heleket.pay(&uuid, "paid", "TON", "4");
    let before = app.log_length().await;
    heleket.down.store(true, Ordering::SeqCst);
    let response = app.webhook(heleket.webhook(&uuid), HELEKET_KEY).await;
    assert_eq!(
        error_code(response).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "payment_provider_unavailable".into()
        )
    );
    assert_eq!(
        app.log_length().await,
        before,
        "nothing recorded unconfirmed"
    );

    heleket.down.store(false, Ordering::SeqCst);
    let reconciler = Reconciler {
        settlement: app.state.settlement.clone(),
        read: app.state.read.clone(),
    };
    let round = reconciler
        .round(Utc::now() + chrono::Duration::hours(2))
        .await
        .unwrap();
    assert_eq!((round.examined, round.settled), (1, 1));
    assert_eq!(settled_balance(&app, 8004).await["available"], "4");
    // Heleket's retry of the webhook then records nothing new.
    let (_, answer) = deliver(&app, &heleket, &uuid).await;
    assert_eq!(answer["result"], "duplicate");
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confirmed_refund_after_the_credit_was_spent_leaves_a_debt_that_the_next_recharge_pays() {
    let heleket = Heleket::start().await;
    let app = live_app(&heleket.server).await;
    let (uuid, _) = invoice(&app, 8005, "10").await;
    assert_eq!(
        outcome(&app, &heleket, &uuid, "paid", "TON", "10").await,
        "settled"
    );

    // Spend most of it on Stars, delivered.
    let bought = app
        .post_with_key(
            "/v1/users/8005/purchases",
            SERVICE_KEY,
            "buy-1",
            &json!({"stars": 1000}),
        )
        .await;
    assert_eq!(bought.status(), StatusCode::CREATED);
    let bought: Value = bought.json().await.unwrap();
    let price: rust_decimal::Decimal = bought["price"].as_str().unwrap().parse().unwrap();
    let purchase_id = bought["purchase_id"].as_str().unwrap().to_owned();
    settled_balance(&app, 8005).await;
    let delivered = app
        .post(
            &format!("/v1/admin/purchases/{purchase_id}/deliver"),
            ADMIN_KEY,
            &json!({}),
        )
        .await;
    assert_eq!(delivered.status(), StatusCode::CREATED);

    // The payment is refunded to the payer.
    heleket.pay(&uuid, "refund_paid", "TON", "10");
    let (status, answer) = deliver(&app, &heleket, &uuid).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["detail"]["outcome"], "reversed", "{answer}");
    let balance = settled_balance(&app, 8005).await;
    assert_eq!(balance["available"], "0", "{balance}");
    assert_eq!(balance["debt"], price.normalize().to_string(), "{balance}");

    // While it is owed, nothing can be bought.
    let refused = app
        .post_with_key(
            "/v1/users/8005/purchases",
            SERVICE_KEY,
            "buy-2",
            &json!({"stars": 50}),
        )
        .await;
    assert_eq!(
        error_code(refused).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "account_in_debt".into())
    );

    // The next top-up pays the debt first.
    let next = app.recharge(8005, "5").await;
    let next_uuid = next["invoice_uuid"].as_str().unwrap();
    assert_eq!(
        outcome(&app, &heleket, next_uuid, "paid", "TON", "5").await,
        "settled"
    );
    let balance = settled_balance(&app, 8005).await;
    assert_eq!(balance["debt"], "0");
    assert_eq!(
        balance["available"],
        (rust_decimal::Decimal::from(5) - price)
            .normalize()
            .to_string()
    );
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn overpayments_within_the_tolerance_are_credited_and_beyond_it_reviewed() {
    let heleket = Heleket::start().await;
    let app = live_app(&heleket.server).await;
    let (within, _) = invoice(&app, 8006, "10").await;
    assert_eq!(
        outcome(&app, &heleket, &within, "paid_over", "TON", "11").await,
        "settled"
    );
    let beyond = app.recharge(8006, "10").await;
    let beyond = beyond["invoice_uuid"].as_str().unwrap();
    assert_eq!(
        outcome(&app, &heleket, beyond, "paid_over", "TON", "11.5").await,
        "needs_review"
    );
    assert_eq!(settled_balance(&app, 8006).await["available"], "11");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_underpayment_credits_what_arrived_and_a_hold_waits_for_the_final_status() {
    let heleket = Heleket::start().await;
    let app = live_app(&heleket.server).await;
    let (under, _) = invoice(&app, 8007, "10").await;
    assert_eq!(
        outcome(&app, &heleket, &under, "wrong_amount", "TON", "6.25").await,
        "partial"
    );
    let row = app.latest_transaction(8007, app.log_length().await).await;
    assert_eq!(
        (row["status"].as_str(), row["amount"].as_str()),
        (Some("partial"), Some("6.25"))
    );

    let held = app.recharge(8007, "3").await;
    let (held_uuid, held_id) = (
        held["invoice_uuid"].as_str().unwrap(),
        held["recharge_id"].as_str().unwrap(),
    );
    assert_eq!(
        outcome(&app, &heleket, held_uuid, "locked", "TON", "3").await,
        "on_hold"
    );
    assert_eq!(settled_balance(&app, 8007).await["available"], "6.25");
    let listed: Value = app
        .get("/v1/admin/recharges", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["recharges"][0]["recharge"]["id"], held_id);
    assert_eq!(listed["recharges"][0]["recharge"]["status"], "on_hold");
    assert_eq!(
        outcome(&app, &heleket, held_uuid, "paid", "TON", "3").await,
        "settled"
    );
    assert_eq!(settled_balance(&app, 8007).await["available"], "9.25");
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_rejects_a_review_and_bad_decisions_change_nothing() {
    let heleket = Heleket::start().await;
    let app = live_app(&heleket.server).await;
    let (uuid, recharge_id) = invoice(&app, 8008, "2").await;
    assert_eq!(
        outcome(&app, &heleket, &uuid, "paid", "BTC", "0.001").await,
        "needs_review"
    );
    settled_balance(&app, 8008).await;
    let before = app.log_length().await;
    for (route, body, expected) in [
        (
            "credit",
            json!({"amount": "-1", "reason": "x"}),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount"),
        ),
        (
            "credit",
            json!({"amount": "1"}),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ),
        (
            "reject",
            json!({"reason": "   "}),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_text"),
        ),
        (
            "reject",
            json!({"reason": "bidi \u{202E} trick"}),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_text"),
        ),
    ] {
        let response = app
            .post(
                &format!("/v1/admin/recharges/{recharge_id}/{route}"),
                ADMIN_KEY,
                &body,
            )
            .await;
        assert_eq!(
            error_code(response).await,
            (expected.0, expected.1.to_owned()),
            "{body}"
        );
    }
    let unknown = app
        .post(
            &format!("/v1/admin/recharges/{}/reject", uuid::Uuid::new_v4()),
            ADMIN_KEY,
            &json!({"reason": "x"}),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.log_length().await, before, "nothing appended");
    let rejected = app
        .post(
            &format!("/v1/admin/recharges/{recharge_id}/reject"),
            ADMIN_KEY,
            &json!({"reason": "paid in BTC; refunded by Heleket support"}),
        )
        .await;
    assert_eq!(rejected.status(), StatusCode::CREATED);
    let row = app.latest_transaction(8008, app.log_length().await).await;
    assert_eq!(row["status"], "failed");
    assert_eq!(settled_balance(&app, 8008).await["available"], "0");
    app.stop().await;
}
