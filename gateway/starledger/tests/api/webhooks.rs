//! `POST /webhooks/heleket`: duplicates credit once; forged, tampered, unsigned and
//! malformed webhooks change nothing.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// A paid webhook for the recharge in `recharge`, shaped as Heleket sends it.
fn paid_webhook(recharge: &Value, user: i64, amount: &str) -> Value {
    let recharge_id = recharge["recharge_id"].as_str().unwrap().replace('-', "");
    json!({
        "type": "payment",
        "uuid": recharge["invoice_uuid"],
        "order_id": format!("sl_{user}_{recharge_id}"),
        "amount": recharge["amount"],
        "payment_amount": amount,
        "merchant_amount": amount,
        "is_final": true,
        "status": "paid",
        "currency": "TON",
        "payer_currency": "TON",
        "payer_amount": amount,
        "network": "ton",
        "additional_data": "https://shop.example/r/1",
        "txid": "tx-1"
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn one_webhook_delivered_many_times_at_once_credits_once() {
    let app = spawn_app().await;
    app.register(2001).await;
    let recharge = app.recharge(2001, "7.5").await;
    let body = sign(paid_webhook(&recharge, 2001, "7.5"));
    let deliveries = (0..40).map(|_| app.webhook_raw(body.clone()));
    let answers = join_all(deliveries).await;
    let mut recorded = 0;
    for answer in answers {
        assert_eq!(answer.status(), StatusCode::OK);
        let answer: Value = answer.json().await.unwrap();
        match answer["result"].as_str() {
            Some("recorded") => recorded += 1,
            Some("duplicate") => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(recorded, 1);
    assert_eq!(app.log_length().await, 3);
    let head = app.log_length().await;
    assert_eq!(app.balance_at_least(2001, head).await["available"], "7.5");
    app.assert_sound().await;
    app.stop().await;
}

fn sign(body: Value) -> String {
    starledger_heleket::sign::sign_webhook(body, HELEKET_KEY).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_tampered_unsigned_and_malformed_webhooks_change_nothing() {
    let app = spawn_app().await;
    app.register(2002).await;
    let recharge = app.recharge(2002, "1").await;
    let genuine = paid_webhook(&recharge, 2002, "1");
    let before = app.log_length().await;

    // Signed with another key.
    let forged = app.webhook(genuine.clone(), "not-the-merchant-key").await;
    assert_eq!(
        error_code(forged).await,
        (StatusCode::UNAUTHORIZED, "invalid_signature".into())
    );
    // Signed correctly, then the amount raised.
    let mut tampered: Value = serde_json::from_str(&sign(genuine.clone())).unwrap();
    tampered["payment_amount"] = json!("1000");
    let response = app.webhook_raw(tampered.to_string()).await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::UNAUTHORIZED, "invalid_signature".into())
    );
    // No sign at all, a sign that is not a digest, and a sign of the wrong type.
    for body in [
        genuine.clone(),
        {
            let mut b = genuine.clone();
            b["sign"] = json!("zz");
            b
        },
        {
            let mut b = genuine.clone();
            b["sign"] = json!(12345);
            b
        },
    ] {
        let response = app.webhook_raw(body.to_string()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Not JSON, not an object, empty.
    for body in ["{\"uuid\":", "[1,2,3]", "", "null"] {
        let response = app.webhook_raw(body.to_owned()).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, "malformed_json".into()),
            "{body:?}"
        );
    }
    // Larger than the body limit, refused before it is read.
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(200_000));
    let response = app.webhook_raw(huge).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Signed, but without the fields a webhook must have.
    for field in ["uuid", "order_id", "status", "currency"] {
        let mut incomplete = genuine.clone();
        incomplete.as_object_mut().unwrap().remove(field);
        let response = app.webhook(incomplete, HELEKET_KEY).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_webhook".into()),
            "{field}"
        );
    }

    assert_eq!(app.log_length().await, before, "nothing was appended");
    assert_eq!(app.balance(2002).await["available"], "0");

    // The genuine one still works afterwards.
    let response = app.webhook(genuine, HELEKET_KEY).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.log_length().await, before + 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_invoice_whose_recharge_was_never_recorded_is_adopted_and_credited() {
    let app = spawn_app().await;
    app.register(2003).await;
    // An order id of ours for a recharge the ledger never recorded (the append after the
    // invoice creation failed): the money arrived, so it must be credited.
    let recharge = json!({
        "recharge_id": uuid::Uuid::new_v4().to_string(),
        "invoice_uuid": "lost-invoice-1",
        "amount": "4",
    });
    let response = app
        .webhook(paid_webhook(&recharge, 2003, "4"), HELEKET_KEY)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let head = app.log_length().await;
    assert_eq!(head, 3, "registered, adopted recharge, settled");
    assert_eq!(app.balance_at_least(2003, head).await["available"], "4");
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_order_ids_are_acknowledged_and_ignored() {
    let app = spawn_app().await;
    let body = json!({"type": "payment", "uuid": "u-9", "order_id": "shop-b-42",
        "amount": "1", "payment_amount": "1", "status": "paid", "currency": "TON"});
    let response = app.webhook(body, HELEKET_KEY).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["result"], "ignored");
    assert_eq!(app.log_length().await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sender_allowlist_refuses_other_addresses() {
    let app = spawn_app_with(Options {
        vars: vec![("HELEKET_ALLOWED_IPS", "31.133.220.8".into())],
    })
    .await;
    app.register(2004).await;
    let recharge = app.recharge(2004, "1").await;
    let response = app
        .webhook(paid_webhook(&recharge, 2004, "1"), HELEKET_KEY)
        .await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::FORBIDDEN, "forbidden_sender".into())
    );
    // A spoofed X-Forwarded-For is not believed unless TRUST_PROXY_HEADERS is on.
    let response = app
        .http
        .post(app.url("/webhooks/heleket"))
        .header("X-Forwarded-For", "31.133.220.8")
        .body(sign(paid_webhook(&recharge, 2004, "1")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.log_length().await, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_webhook_for_an_unregistered_user_is_acknowledged_as_orphaned() {
    let app = spawn_app().await;
    let recharge = json!({
        "recharge_id": uuid::Uuid::new_v4().to_string(),
        "invoice_uuid": "orphan-1",
        "amount": "1",
    });
    let response = app
        .webhook(paid_webhook(&recharge, 2099, "1"), HELEKET_KEY)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["result"], "orphaned");
    assert_eq!(app.log_length().await, 0);
    // A bad signature is not an API-key problem: no Bearer challenge.
    let forged = app
        .webhook(paid_webhook(&recharge, 2099, "1"), "other-key")
        .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert!(forged.headers().get("WWW-Authenticate").is_none());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn what_was_acknowledged_is_what_a_plain_read_here_shows() {
    let app = spawn_app().await;
    app.register(5301).await;
    // Read (and cached) before anything is paid.
    assert_eq!(app.balance(5301).await["available"], "0");
    for round in 1..=4 {
        app.top_up(5301, "2").await;
        // Heleket was answered 200: a plain read (no min_position) here shows the credit.
        let balance = app.balance(5301).await;
        assert_eq!(balance["available"], (2 * round).to_string(), "{balance}");
    }
    // The same for a purchase acknowledged with 201.
    let response = app
        .post_with_key(
            "/v1/users/5301/purchases",
            SERVICE_KEY,
            "visible-buy-1",
            &json!({"stars": 50, "recipient": "@friend_x"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let balance = app.balance(5301).await;
    assert_ne!(balance["reserved"], "0", "{balance}");
    app.stop().await;
}
