//! Acknowledged means visible across instances (issue 15, point 5): a write one instance
//! answered 2xx shows in a plain read on another soon after, though that one had the row in
//! its in-process cache. The test measures how soon, over several rounds, and prints the worst
//! case (docs/operations.md, "Scaling out"); it does not assert on timing, only that the write shows.

use std::time::{Duration, Instant};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_write_acknowledged_by_one_instance_shows_on_another_soon() {
    let app = spawn_app().await;
    let other = app.another_instance().await;
    app.funded_user(5601, "10").await;
    let mut worst = Duration::ZERO;
    for round in 1..=10u32 {
        // The other instance reads (and caches) the balance before the write.
        let before = other.balance(5601).await;
        let expected = (10 + round).to_string();
        assert_ne!(before["available"], expected.as_str());
        app.top_up(5601, "1").await;
        // Acknowledged (200 to the webhook): plain reads on the other instance until it shows.
        let acknowledged = Instant::now();
        loop {
            let balance = other.balance(5601).await;
            if balance["available"] == expected.as_str() {
                break;
            }
            assert!(
                acknowledged.elapsed() < Duration::from_secs(10),
                "round {round}: the other instance still shows {balance}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        worst = worst.max(acknowledged.elapsed());
    }
    eprintln!("cross-instance visibility after a 2xx: worst of 10 rounds {worst:?}");
    other.stop().await;
    app.stop().await;
}

/// A registered user who has not paid yet (issue 17, point 5): the zero balance is cached
/// like any row, answers as it always did (the profile's position and registration time),
/// and the first credit shows in a plain read on this instance at once and on another soon,
/// though both had the zero cached.
#[tokio::test(flavor = "multi_thread")]
async fn a_cached_zero_balance_answers_as_before_and_gives_way_to_the_first_credit() {
    let app = spawn_app().await;
    let other = app.another_instance().await;
    let registered = app
        .post(
            "/v1/users",
            SERVICE_KEY,
            &serde_json::json!({"user_id": 5611, "username": "zero_first", "language": "en"}),
        )
        .await;
    assert!(registered.status().is_success());
    let registered: serde_json::Value = registered.json().await.unwrap();
    // Another user's registration moves the projections past the first user's own events.
    app.register(5612).await;
    let head = app.log_length().await;
    let first = app.balance_at_least(5611, head).await;
    for balance in [app.balance(5611).await, other.balance(5611).await] {
        assert_eq!(balance, first);
    }
    assert_eq!(first["available"], "0", "{first}");
    assert_eq!(first["total"], "0", "{first}");
    assert_eq!(first["position"], registered["position"], "{first}");

    app.top_up(5611, "2.5").await;
    assert_eq!(app.balance(5611).await["available"], "2.5");
    let acknowledged = Instant::now();
    while other.balance(5611).await["available"] != "2.5" {
        assert!(
            acknowledged.elapsed() < Duration::from_secs(10),
            "the credit never showed on the other instance"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.assert_sound().await;
    app.stop().await;
}
