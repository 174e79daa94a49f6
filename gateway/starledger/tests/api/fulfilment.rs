//! Purchases after the reservation: operators resolving them by hand (`FRAGMENT_MODE=manual`,
//! the default) and the fulfilment worker delivering or refunding them on its own
//! (`FRAGMENT_MODE=sandbox`), all through the HTTP API.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// Buys `stars` for `user` (optionally as a gift); returns the purchase id.
async fn buy(app: &TestApp, user: i64, key: &str, body: Value) -> String {
    let response = app
        .post_with_key(
            &format!("/v1/users/{user}/purchases"),
            SERVICE_KEY,
            key,
            &body,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let answer: Value = response.json().await.unwrap();
    answer["purchase_id"].as_str().unwrap().to_owned()
}

async fn open_purchases(app: &TestApp) -> Vec<Value> {
    let head = app.log_length().await;
    // The listing reads the transactions table: let it catch up first.
    app.balance_at_least(1, head).await;
    let response = app.get("/v1/admin/purchases", ADMIN_KEY).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["purchases"].as_array().unwrap().clone()
}

/// The purchase's row in the user's history, once it has left `reserved`… or the bound ran out.
async fn purchase_status(app: &TestApp, user: i64, purchase: &str, wanted: &str) -> String {
    let mut status = String::new();
    for _ in 0..300 {
        let history: Value = app
            .get(
                &format!("/v1/users/{user}/transactions?limit=50"),
                SERVICE_KEY,
            )
            .await
            .json()
            .await
            .unwrap();
        status = history["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == purchase)
            .map(|t| t["status"].as_str().unwrap().to_owned())
            .unwrap_or_default();
        if status == wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_deliver_or_fail_purchases_by_hand_in_manual_mode() {
    let app = spawn_app().await;
    app.register(1).await;
    app.funded_user(4001, "10").await;
    let delivered = buy(&app, 4001, "m-1", json!({"stars": 100})).await;
    let failed = buy(
        &app,
        4001,
        "m-2",
        json!({"stars": 100, "recipient": "@gift_friend"}),
    )
    .await;

    let open = open_purchases(&app).await;
    let ids: Vec<&str> = open
        .iter()
        .map(|p| p["purchase"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![delivered.as_str(), failed.as_str()]);
    assert_eq!(open[0]["user_id"], 4001);
    assert_eq!(open[0]["purchase"]["status"], "reserved");

    // Only admins decide.
    let path = format!("/v1/admin/purchases/{delivered}/deliver");
    let refused = app.post(&path, SERVICE_KEY, &json!({})).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let response = app
        .post(
            &path,
            ADMIN_KEY,
            &json!({"note": "confirmed with Fragment support"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // A repeated click records nothing more.
    let repeat = app.post(&path, ADMIN_KEY, &json!({})).await;
    assert_eq!(repeat.status(), StatusCode::CREATED);
    assert_eq!(repeat.headers()["Idempotent-Replayed"], "true");

    let fail_path = format!("/v1/admin/purchases/{failed}/fail");
    let no_reason = app.post(&fail_path, ADMIN_KEY, &json!({})).await;
    assert_eq!(no_reason.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = app
        .post(
            &fail_path,
            ADMIN_KEY,
            &json!({"reason": "recipient closed their account"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let answer: Value = response.json().await.unwrap();

    // 100 stars cost 0.495: one captured, one released.
    let balance = app
        .balance_at_least(4001, answer["position"].as_u64().unwrap())
        .await;
    assert_eq!(balance["available"], "9.505");
    assert_eq!(balance["reserved"], "0");
    assert_eq!(
        purchase_status(&app, 4001, &delivered, "completed").await,
        "completed"
    );
    assert_eq!(
        purchase_status(&app, 4001, &failed, "refunded").await,
        "refunded"
    );
    assert!(open_purchases(&app).await.is_empty());

    // A decided purchase cannot be decided the other way.
    let (status, code) = error_code(
        app.post(
            &format!("/v1/admin/purchases/{delivered}/fail"),
            ADMIN_KEY,
            &json!({"reason": "changed my mind"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "purchase_not_open")
    );
    for (path, expected) in [
        (
            "/v1/admin/purchases/not-a-uuid/deliver",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/admin/purchases/7c9e6679-7425-40de-944b-e07fc1f90ae7/deliver",
            StatusCode::NOT_FOUND,
        ),
    ] {
        assert_eq!(
            app.post(path, ADMIN_KEY, &json!({})).await.status(),
            expected,
            "{path}"
        );
    }
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_delivers_refunds_and_leaves_paid_orders_to_operators_in_sandbox_mode() {
    let app = spawn_app_with(Options {
        vars: vec![("FRAGMENT_MODE", "sandbox".into())],
    })
    .await;
    app.register(1).await;
    app.funded_user(4002, "10").await;
    // For the buyer's own username (tester_one), a gift nobody can receive, and a gift
    // Fragment takes payment for and never confirms.
    let own = buy(&app, 4002, "s-1", json!({"stars": 100})).await;
    let unknown = buy(
        &app,
        4002,
        "s-2",
        json!({"stars": 50, "recipient": "@friend_notfound"}),
    )
    .await;
    let hanging = buy(
        &app,
        4002,
        "s-3",
        json!({"stars": 50, "recipient": "@friend_hangs"}),
    )
    .await;

    assert_eq!(
        purchase_status(&app, 4002, &own, "completed").await,
        "completed"
    );
    assert_eq!(
        purchase_status(&app, 4002, &unknown, "refunded").await,
        "refunded"
    );
    assert_eq!(purchase_status(&app, 4002, &hanging, "sent").await, "sent");

    // Paid, never confirmed: refunding it could refund delivered stars, so it takes force.
    let fail_path = format!("/v1/admin/purchases/{hanging}/fail");
    let (status, code) = error_code(
        app.post(
            &fail_path,
            ADMIN_KEY,
            &json!({"reason": "Fragment never confirmed"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "payment_recorded")
    );
    let forced = app
        .post(
            &fail_path,
            ADMIN_KEY,
            &json!({"reason": "Fragment ticket 1190: refunded to our wallet", "force": true}),
        )
        .await;
    assert_eq!(forced.status(), StatusCode::CREATED);
    let forced: Value = forced.json().await.unwrap();

    // 100 stars cost 0.495 and were captured; both 50-star gifts (0.2475 each) came back.
    let balance = app
        .balance_at_least(4002, forced["position"].as_u64().unwrap())
        .await;
    assert_eq!(balance["available"], "9.505");
    assert_eq!(balance["reserved"], "0");
    let history: Value = app
        .get("/v1/users/4002/transactions?limit=50", SERVICE_KEY)
        .await
        .json()
        .await
        .unwrap();
    let own_row = history["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == own.as_str())
        .unwrap();
    assert!(
        own_row["external_id"]
            .as_str()
            .unwrap()
            .starts_with("sandbox-req-"),
        "{own_row}"
    );
    // The worker keeps its place beside the projectors, where operators see it.
    let status: Value = app
        .get("/v1/admin/projections", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    let fulfilment = status["projectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "fulfilment")
        .cloned();
    assert!(fulfilment.is_some(), "{status}");
    app.assert_sound().await;
    app.stop().await;
}
