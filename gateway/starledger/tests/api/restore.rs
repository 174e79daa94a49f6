//! A backup restored behind the same Redis: every read matches the restored database, never
//! rows cached from the history it was restored over (issue 15, point 6).

use reqwest::StatusCode;
use starledger_ledger::testing::server_url;

use crate::helpers::*;

/// Waits until Redis's watermark for the ledger reaches `position` (the cache projector has
/// marked what it cached); a no-op without Redis.
async fn redis_marked(app: &TestApp, position: u64) {
    let Some(url) = server_url("TEST_REDIS_URL", "no Redis watermark to wait for") else {
        return;
    };
    let prefix = app.state.queries.cache().key_prefix();
    let client = redis::Client::open(url).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    for _ in 0..200 {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:h*:watermark"))
            .query_async(&mut redis)
            .await
            .unwrap();
        if let Some(key) = keys.first() {
            let text: String = redis::cmd("GET")
                .arg(key)
                .query_async(&mut redis)
                .await
                .unwrap();
            let marked: u64 = text.split(':').next().unwrap().parse().unwrap();
            if marked >= position {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the cache projector never marked position {position}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_backup_is_never_served_rows_of_the_history_it_replaced() {
    let app = spawn_app().await;
    app.funded_user(5401, "10").await;
    assert_eq!(app.balance(5401).await["available"], "10");
    let backup = app.backup().await;

    // After the backup: more money, read (and cached in Redis) at later positions.
    app.top_up(5401, "5").await;
    assert_eq!(app.balance(5401).await["available"], "15");
    redis_marked(&app, app.log_length().await).await;
    app.stop().await;

    // The backup restored, behind the same Redis: its own history, not the rows cached above.
    let restored = spawn_app_on(backup, Options::default()).await;
    let balance = restored.balance(5401).await;
    assert_eq!(balance["available"], "10", "{balance}");
    let history = restored
        .get("/v1/users/5401/transactions", SERVICE_KEY)
        .await;
    assert_eq!(history.status(), StatusCode::OK);
    // And it goes on from there: new writes are read back as they are.
    let recharge = restored.recharge(5401, "1").await;
    restored
        .pay(recharge["invoice_uuid"].as_str().unwrap(), "paid", None)
        .await;
    assert_eq!(restored.balance(5401).await["available"], "11");
    restored.assert_sound().await;
    restored.stop().await;
}
