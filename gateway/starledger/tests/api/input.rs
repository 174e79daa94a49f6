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
        (
            "/v1/users/5001/recharges",
            "{\"amount\":".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "/v1/users/5001/recharges",
            "".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "/v1/users/5001/recharges",
            "[]".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "/v1/users/5001/recharges",
            "{\"amount\":10}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "/v1/users/5001/recharges",
            "{\"amount\":\"10\",\"extra\":1}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "/v1/users/5001/recharges",
            "{\"amount\":\"-5\"}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
        ),
        (
            "/v1/users/5001/recharges",
            "{\"amount\":\"0\"}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
        ),
        (
            "/v1/users/5001/recharges",
            "{\"amount\":\"1e9999\"}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
        ),
        (
            "/v1/users/5001/recharges",
            "{\"amount\":\"99999999999999999999999\"}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
        ),
        (
            "/v1/users/5001/recharges",
            "{\"amount\":\"0.0000000001\"}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
        ),
        (
            "/v1/users/5001/recharges",
            "{\"amount\":\"NaN\"}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
        ),
        (
            "/v1/users/5001/recharges",
            "{\"amount\":\"1; DROP TABLE events\"}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
        ),
        (
            "/v1/users/5001/recharges",
            "{\"amount\":\"١٠\"}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
        ),
        (
            "/v1/users/5001/recharges",
            format!("{{\"amount\":\"{}\"}}", "9".repeat(100_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "/v1/users/abc/recharges",
            "{\"amount\":\"1\"}".into(),
            StatusCode::BAD_REQUEST,
            "invalid_user_id",
        ),
        (
            "/v1/users/-5/recharges",
            "{\"amount\":\"1\"}".into(),
            StatusCode::BAD_REQUEST,
            "invalid_user_id",
        ),
        (
            "/v1/users/99999999999999999999/recharges",
            "{\"amount\":\"1\"}".into(),
            StatusCode::BAD_REQUEST,
            "invalid_user_id",
        ),
        (
            "/v1/users",
            "{\"user_id\":0}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_user_id",
        ),
        (
            "/v1/users",
            "{\"user_id\":\"5\"}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "/v1/users",
            format!("{{\"user_id\":5002,\"username\":\"{}\"}}", "é".repeat(100)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_text",
        ),
    ];
    for (path, body, status, code) in cases {
        let response = raw(path, &body).send().await.unwrap();
        let shown: String = body.chars().take(60).collect();
        assert_eq!(
            error_code(response).await,
            (status, code.into()),
            "{path} {shown}"
        );
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
    for query in ["limit=abc", "cursor=-1", "min_position=x"] {
        let response = app
            .get(&format!("/v1/users/5001/transactions?{query}"), SERVICE_KEY)
            .await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, "invalid_query".into()),
            "{query}"
        );
    }
    let bad_time = app
        .get("/v1/audit/balances?at=yesterday", AUDITOR_KEY)
        .await;
    assert_eq!(
        error_code(bad_time).await,
        (StatusCode::BAD_REQUEST, "invalid_time".into())
    );
    assert_eq!(app.log_length().await, before, "nothing was appended");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn positions_past_the_logs_range_are_refused_not_wrapped() {
    let app = spawn_app().await;
    app.register(5101).await;
    // i64::MAX + 1 and u64::MAX: bound as BIGINT they would wrap to negative positions and
    // read the log (or wait for the projections) from the start.
    for position in ["9223372036854775808", "18446744073709551615"] {
        for (path, key) in [
            (format!("/v1/audit/events?from={position}"), AUDITOR_KEY),
            (
                format!("/v1/users/5101/balance?min_position={position}"),
                SERVICE_KEY,
            ),
            (
                format!("/v1/users/5101/transactions?min_position={position}"),
                SERVICE_KEY,
            ),
        ] {
            let response = app.get(&path, key).await;
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_position")),
                "{path}: {body}"
            );
        }
    }
    // The largest real position is still a position: nothing after it, not an error.
    let last = app
        .get("/v1/audit/events?from=9223372036854775807", AUDITOR_KEY)
        .await;
    assert_eq!(last.status(), StatusCode::OK);
    assert_eq!(last.text().await.unwrap(), "");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_min_position_past_the_logs_head_is_a_client_error_at_once() {
    let app = spawn_app().await;
    app.register(5102).await;
    let head = app.log_length().await;
    // Within the log: answered. Past its head: no write has that position, so waiting (and
    // a 503 the client would retry forever) makes no sense.
    for (position, expected) in [
        (head, StatusCode::OK),
        (head + 1, StatusCode::BAD_REQUEST),
        (head + 1_000_000, StatusCode::BAD_REQUEST),
    ] {
        for path in [
            format!("/v1/users/5102/balance?min_position={position}"),
            format!("/v1/users/5102/transactions?min_position={position}"),
        ] {
            let response = app.get(&path, SERVICE_KEY).await;
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            assert_eq!(status, expected, "{path}: {body}");
            if expected == StatusCode::BAD_REQUEST {
                assert_eq!(body["error"]["code"], "invalid_position", "{body}");
            }
        }
    }
    app.stop().await;
}
