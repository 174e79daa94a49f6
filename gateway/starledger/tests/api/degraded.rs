//! With Redis unreachable the gateway keeps answering correctly from the database and says
//! it is degraded, without leaving the load balancer's rotation.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_means_database_reads_and_a_degraded_readiness() {
    // Nothing listens on port 1: every Redis call fails fast.
    let app = spawn_app_with(Options {
        vars: vec![("REDIS_URL", "redis://127.0.0.1:1".into())],
    })
    .await;
    app.funded_user(9001, "3.5").await;
    let head = app.log_length().await;
    assert_eq!(app.balance_at_least(9001, head).await["available"], "3.5");
    assert_eq!(app.balance(9001).await["available"], "3.5");
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["redis"], "unavailable");
    app.stop().await;
}
