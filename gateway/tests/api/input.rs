//! Malformed input gets a clear 4xx and appends nothing.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    app.register(5001).await;
    let before = app.log_length().await;
    let raw = |path: &str, body: &str| {
        app.http
            .post(app.url(path))
            .bearer_auth(SERVICE_KEY)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", "input-test")
            .body(body.to_owned())
    };
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        ("/v1/users/5001/recharges", "{\"amount\":".into(), StatusCode::BAD_REQUEST, "malformed_json"),
        ("/v1/users/5001/recharges", "".into(), StatusCode::BAD_REQUEST, "malformed_json"),
        ("/v1/users/5001/recharges", "[]".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("/v1/users/5001/recharges", "{\"amount\":10}".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("/v1/users/5001/recharges", "{\"amount\":\"10\",\"extra\":1}".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("/v1/users/5001/recharges", "{\"amount\":\"-5\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount"),
        ("/v1/users/5001/recharges", "{\"amount\":\"0\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount"),
        ("/v1/users/5001/recharges", "{\"amount\":\"1e9999\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount"),
        ("/v1/users/5001/recharges", "{\"amount\":\"99999999999999999999999\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount"),
        ("/v1/users/5001/recharges", "{\"amount\":\"0.0000000001\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount"),
        ("/v1/users/5001/recharges", "{\"amount\":\"NaN\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount"),
        ("/v1/users/5001/recharges", "{\"amount\":\"1; DROP TABLE events\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount"),
        ("/v1/users/5001/recharges", "{\"amount\":\"١٠\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount"),
        ("/v1/users/5001/recharges", format!("{{\"amount\":\"{}\"}}", "9".repeat(100_000)), StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        ("/v1/users/abc/recharges", "{\"amount\":\"1\"}".into(), StatusCode::BAD_REQUEST, "invalid_user_id"),
        ("/v1/users/-5/recharges", "{\"amount\":\"1\"}".into(), StatusCode::BAD_REQUEST, "invalid_user_id"),
        ("/v1/users/99999999999999999999/recharges", "{\"amount\":\"1\"}".into(), StatusCode::BAD_REQUEST, "invalid_user_id"),
        ("/v1/users", "{\"user_id\":0}".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_user_id"),
        ("/v1/users", "{\"user_id\":\"5\"}".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("/v1/users", format!("{{\"user_id\":5002,\"username\":\"{}\"}}", "é".repeat(100)), StatusCode::UNPROCESSABLE_ENTITY, "invalid_text"),
    ];
    for (path, body, status, code) in cases {
        let response = raw(path, &body).send().await.unwrap();
        let shown: String = body.chars().take(60).collect();
        assert_eq!(error_code(response).await, (status, code.into()), "{path} {shown}");
    }
    let bad_key = app
        .http
        .post(app.url("/v1/users/5001/purchases"))
        .bearer_auth(SERVICE_KEY)
        .header("Idempotency-Key", "has spaces in it")
        .json(&json!({"stars": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(bad_key).await,
        (StatusCode::BAD_REQUEST, "invalid_idempotency_key".into())
    );
    let bad_limit = app
        .get("/v1/users/5001/transactions?limit=100000", SERVICE_KEY)
        .await;
    assert_eq!(bad_limit.status(), StatusCode::BAD_REQUEST);
    let bad_time = app.get("/v1/audit/balances?at=yesterday", AUDITOR_KEY).await;
    assert_eq!(
        error_code(bad_time).await,
        (StatusCode::BAD_REQUEST, "invalid_time".into())
    );
    assert_eq!(app.log_length().await, before, "nothing was appended");
    app.stop().await;
}
