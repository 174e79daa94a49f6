//! The app on Redis with Sentinel (issue 15, point 2): a master, a replica and three
//! sentinels; the master is killed under traffic, the sentinels promote the replica, and the
//! app follows: the cache's rows land on the new master, no read shows less than what was
//! acknowledged, and `/readyz` says Redis is ok again.

use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::support::redis_cluster;
use crate::support::redis_sentinel::{RedisSentinel, MASTER_NAME};

#[tokio::test(flavor = "multi_thread")]
async fn with_sentinel_the_app_follows_a_promoted_replica() {
    // The same binaries as the cluster test: missing under CI is a failure.
    if !redis_cluster::available() {
        return;
    }
    let mut redis = tokio::task::spawn_blocking(RedisSentinel::start)
        .await
        .unwrap();
    let app = spawn_app_with(Options {
        vars: vec![
            ("REDIS_SENTINELS", redis.sentinels_setting()),
            ("REDIS_SENTINEL_MASTER", MASTER_NAME.to_owned()),
        ],
    })
    .await;
    app.funded_user(5801, "10").await;
    assert_eq!(app.balance(5801).await["available"], "10");
    let prefix = app.state.queries.cache().key_prefix().to_owned();
    let balance_key = |keys: Vec<String>| keys.iter().any(|k| k.ends_with(":balance:5801"));
    let started = Instant::now();
    while !balance_key(redis.keys(redis.master, &format!("{prefix}:*"))) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no balance key on the master"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (old, promoted) = (redis.master, redis.replica);
    let mut acknowledged = 10;
    for round in 0..8 {
        if round == 2 {
            redis.kill(old);
        }
        app.top_up(5801, "1").await;
        acknowledged += 1;
        let balance = app.balance(5801).await;
        assert_eq!(
            balance["available"],
            acknowledged.to_string(),
            "round {round}: a read shows less than what was acknowledged"
        );
    }
    let redis = tokio::task::spawn_blocking(move || {
        redis.wait_master(promoted);
        redis
    })
    .await
    .unwrap();

    // The app follows the promotion: its rows land on the new master, /readyz says ok.
    let started = Instant::now();
    loop {
        app.top_up(5801, "1").await;
        acknowledged += 1;
        let balance = app.balance(5801).await;
        assert_eq!(balance["available"], acknowledged.to_string());
        let ready = app.readyz().await;
        // Written there since the promotion: the row it holds is the one just read.
        let on_new_master = redis
            .keys(promoted, &format!("{prefix}:*:balance:5801"))
            .first()
            .and_then(|key| redis.field(promoted, key, "pos"))
            .is_some_and(|pos| pos.parse::<u64>().ok() == balance["position"].as_u64());
        if ready["redis"] == "ok" && on_new_master {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the app did not follow the promotion: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    app.stop().await;
    drop(redis);
}
