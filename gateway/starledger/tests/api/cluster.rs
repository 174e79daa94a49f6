//! The app on a real Redis Cluster of three masters and three replicas (issue 15, point 1):
//! the cache's keys live in the cluster, and when a master is killed under traffic a replica
//! takes over, no read shows less than what was acknowledged, and `/readyz` says Redis is ok
//! again once it is.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::*;
use crate::support::redis_cluster::{self, RedisCluster};

#[tokio::test(flavor = "multi_thread")]
async fn on_a_redis_cluster_the_cache_lives_there_and_outlives_a_master() {
    if !redis_cluster::available() {
        return;
    }
    let mut cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let app = spawn_app_with(Options {
        vars: vec![("REDIS_CLUSTER_NODES", cluster.nodes_setting())],
    })
    .await;
    app.funded_user(5701, "10").await;
    assert_eq!(app.balance(5701).await["available"], "10");

    // The rows are cached in the cluster, spread over its masters by slot.
    let prefix = app.state.queries.cache().key_prefix().to_owned();
    let started = Instant::now();
    loop {
        let keys = cluster.keys(&format!("{prefix}:*"));
        if keys.iter().any(|key| key.ends_with(":balance:5701")) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no balance key in the cluster: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.readyz().await["redis"], "ok");

    // Traffic, and a master killed in the middle of it.
    let victim = cluster.masters()[0];
    let mut acknowledged = 10;
    for round in 0..12 {
        if round == 4 {
            cluster.kill(victim);
        }
        app.top_up(5701, "1").await;
        acknowledged += 1;
        let balance = app.balance(5701).await;
        assert_eq!(
            balance["available"],
            acknowledged.to_string(),
            "round {round}: a read shows less than what was acknowledged"
        );
    }

    // A replica took over the dead master's slots.
    let survivors = tokio::task::spawn_blocking(move || {
        cluster.wait_ok();
        cluster
    })
    .await
    .unwrap();
    assert!(!survivors.masters().contains(&victim));
    assert_eq!(survivors.masters().len(), 3);

    // Redis is used again and `/readyz` says so.
    let started = Instant::now();
    loop {
        let _ = app.balance(5701).await;
        let ready = app.readyz().await;
        if ready["redis"] == "ok" {
            assert_eq!(ready["status"], "ready", "{ready}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Redis never came back: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let response = app.get("/v1/users/5701/balance", SERVICE_KEY).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
    drop(survivors);
}
