//! `POST /v1/users/{id}/purchases`: reservations that never overdraw, idempotent retries.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_purchases_never_overdraw() {
    let app = spawn_app().await;
    // 100 stars cost 0.495 at the default price: 5 TON buys exactly 10 of them.
    app.funded_user(3001, "4.95").await;
    let attempts = (0..40).map(|n| {
        app.post_with_key(
            "/v1/users/3001/purchases",
            SERVICE_KEY,
            &format!("buy-{n}"),
            &json!({"stars": 100}),
        )
    });
    let mut bought = 0;
    let mut refused = 0;
    for response in join_all(attempts).await {
        match response.status() {
            StatusCode::CREATED => bought += 1,
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(error_code(response).await.1, "insufficient_funds");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((bought, refused), (10, 30));
    let head = app.log_length().await;
    let balance = app.balance_at_least(3001, head).await;
    assert_eq!(balance["available"], "0");
    assert_eq!(balance["reserved"], "4.95");
    assert_eq!(balance["total"], "4.95");
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_purchase_buys_once() {
    let app = spawn_app().await;
    app.funded_user(3002, "10").await;
    let buy = || {
        app.post_with_key(
            "/v1/users/3002/purchases",
            SERVICE_KEY,
            "order-77",
            &json!({"stars": 250, "recipient": "@gift_friend"}),
        )
    };
    let first = buy().await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["price"], "1.2375");
    assert_eq!(first["recipient"], "@gift_friend");
    assert_eq!(first["status"], "reserved");
    assert_eq!(first["balance"]["available"], "8.7625");
    let second = buy().await;
    assert_eq!(second.headers()["Idempotent-Replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["purchase_id"], second["purchase_id"]);
    let position = first["position"].as_u64().unwrap();
    assert_eq!(
        app.balance_at_least(3002, position).await["reserved"],
        "1.2375"
    );

    // The same key with a different order is refused, not silently merged.
    let different = app
        .post_with_key(
            "/v1/users/3002/purchases",
            SERVICE_KEY,
            "order-77",
            &json!({"stars": 500}),
        )
        .await;
    assert_eq!(
        error_code(different).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused".into()
        )
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_purchases_are_refused_with_a_reason() {
    let app = spawn_app().await;
    app.funded_user(3003, "1").await;
    let before = app.log_length().await;
    let missing_key = app
        .post(
            "/v1/users/3003/purchases",
            SERVICE_KEY,
            &json!({"stars": 100}),
        )
        .await;
    assert_eq!(
        error_code(missing_key).await,
        (StatusCode::BAD_REQUEST, "missing_idempotency_key".into())
    );
    let cases = [
        (json!({"stars": 49}), "invalid_stars"),
        (json!({"stars": 0}), "invalid_stars"),
        (json!({"stars": -100}), "invalid_stars"),
        (json!({"stars": 1_000_001}), "invalid_stars"),
        (json!({"stars": "100"}), "invalid_request"),
        (json!({"stars": 100.5}), "invalid_request"),
        (
            json!({"stars": 100, "recipient": "@x"}),
            "invalid_recipient",
        ),
        (
            json!({"stars": 100, "recipient": "'; DROP TABLE events; --"}),
            "invalid_recipient",
        ),
        (json!({"stars": 100, "price": "0.01"}), "invalid_request"),
        (json!({"stars": 5000}), "insufficient_funds"),
    ];
    for (n, (body, code)) in cases.into_iter().enumerate() {
        let response = app
            .post_with_key(
                "/v1/users/3003/purchases",
                SERVICE_KEY,
                &format!("bad-{n}"),
                &body,
            )
            .await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::UNPROCESSABLE_ENTITY, code.into()),
            "{body}"
        );
    }
    let unknown = app
        .post_with_key(
            "/v1/users/999999/purchases",
            SERVICE_KEY,
            "k",
            &json!({"stars": 100}),
        )
        .await;
    assert_eq!(
        error_code(unknown).await,
        (StatusCode::NOT_FOUND, "unknown_user".into())
    );
    assert_eq!(app.log_length().await, before, "nothing was appended");
    app.stop().await;
}
