//! Every operation that needs a key refuses a missing or unknown key (401) and a key of the
//! wrong role (403), and lets the right roles through. The operations and their roles come
//! from the generated API document (`starledger_http::openapi`), which is gathered from the
//! same registrations the server serves: a route added with a role table that lies, or
//! without one, fails here.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const SERVICE: &str = "service";
const ADMIN: &str = "admin";
const AUDITOR: &str = "auditor";

fn key(role: &str) -> &'static str {
    match role {
        SERVICE => SERVICE_KEY,
        ADMIN => ADMIN_KEY,
        _ => AUDITOR_KEY,
    }
}

/// (method, path with its parameters filled in, roles allowed) of every operation whose
/// security requirement names roles, from the generated document.
fn secured_operations() -> Vec<(Method, String, Vec<String>)> {
    let doc = starledger_http::openapi::document().expect("the API document generates");
    let doc = serde_json::to_value(&doc).expect("the API document serializes");
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        // A user id that parses, an id that is no UUID: both refused only after the role.
        let path = path.replace("{id}", "4001").replace("{uuid}", "x");
        for (method, operation) in item.as_object().expect("a path item") {
            let roles: Vec<String> = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|requirement| requirement["bearer"].as_array())
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            if roles.is_empty() {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            found.push((method, path.clone(), roles));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_checks_the_key_and_the_role() {
    let operations = secured_operations();
    assert!(
        operations.len() >= 20,
        "only {} operations with roles in the document: the walk is broken",
        operations.len()
    );
    let app = spawn_app().await;
    // An empty object: enough to get past authentication, refused later by validation.
    let body = json!({});
    for (method, path, allowed) in &operations {
        let request = || {
            let builder = app.http.request(method.clone(), app.url(path));
            if method == Method::POST {
                builder.json(&body)
            } else {
                builder
            }
        };
        let none = request().send().await.unwrap();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(none.headers()["WWW-Authenticate"], "Bearer");
        let wrong = request()
            .bearer_auth("not-a-key-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        let basic = request()
            .header("Authorization", format!("Basic {SERVICE_KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        for role in [SERVICE, ADMIN, AUDITOR] {
            let response = request().bearer_auth(key(role)).send().await.unwrap();
            let status = response.status();
            if allowed.iter().any(|allowed| allowed == role) {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{role} should reach {method} {path}, got {status}"
                );
            } else {
                assert_eq!(
                    error_code(response).await,
                    (StatusCode::FORBIDDEN, "forbidden".into()),
                    "{role} on {method} {path}"
                );
            }
        }
    }
    assert_eq!(app.log_length().await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_endpoints_need_no_key() {
    let app = spawn_app().await;
    app.register(4101).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("starledger_http_requests_total"),
        "{metrics}"
    );
    assert!(metrics.contains("starledger_projection_lag_events"));
    assert!(metrics.contains("starledger_circuit_breaker_open"));
    assert!(
        metrics.contains("starledger_commands_total{command=\"register\",outcome=\"recorded\"}"),
        "{metrics}"
    );
    let ready: serde_json::Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["database"], "ok");
    let unknown = app.http.get(app.url("/v2/anything")).send().await.unwrap();
    assert_eq!(
        error_code(unknown).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_is_refused_before_the_role() {
    // Checks run in the documented order: API key (401), body size (413), role (403).
    let app = spawn_app().await;
    let oversized = format!("{{\"projection\":\"{}\"}}", "x".repeat(100_000));
    let response = app
        .http
        .post(app.url("/v1/admin/projections/rebuild"))
        .bearer_auth(SERVICE_KEY)
        .header("Content-Type", "application/json")
        .body(oversized.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large".into())
    );
    let unknown = app
        .http
        .post(app.url("/v1/admin/projections/rebuild"))
        .bearer_auth("not-a-key-0123456789")
        .body(oversized)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}
