//! The bot's rate limits on a real Redis Cluster while a master fails over (issue 15,
//! point 1, "rate limits keep limiting"): every user's actions are counted in the cluster;
//! a master is killed with `kill -9`; the same users keep acting through the failover and
//! after it. No user is allowed more than the limit in the window, whichever node held their
//! counter and whether or not the promoted replica had received the last increments.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use starledger_bot::limits::{Limit, RateLimiter, Verdict};
use starledger_bot::redis_link::RedisLink;
use starledger_bot::settings::RateLimits;
use starledger_projections::redis_target::RedisSpec;

use crate::support::redis_cluster::{self, RedisCluster};

const LIMIT: u32 = 5;
/// Enough users that every master holds some of their counters.
const USERS: i64 = 40;

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_keep_limiting_while_a_cluster_master_fails_over() {
    if !redis_cluster::available() {
        return;
    }
    let mut cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let nodes = cluster
        .nodes_setting()
        .split(',')
        .map(str::to_owned)
        .collect();
    let prefix = format!("limits_{}", uuid::Uuid::new_v4().simple());
    let link = Arc::new(RedisLink::new(&RedisSpec::Cluster(nodes), &prefix).unwrap());
    let limiter = RateLimiter::new(
        RateLimits {
            messages: LIMIT,
            operations: LIMIT,
            payments: LIMIT,
            window: Duration::from_secs(600),
        },
        Some(link),
    );

    let mut allowed: BTreeMap<i64, u32> = BTreeMap::new();
    // Three of each user's five, counted in the cluster.
    rounds(&limiter, 3, &mut allowed).await;
    assert!(allowed.values().all(|n| *n == 3), "{allowed:?}");
    let counters = cluster.keys(&format!("{prefix}:*"));
    assert_eq!(
        counters.len(),
        USERS as usize,
        "every counter lives in the cluster: {counters:?}"
    );

    // A master dies; everyone keeps trying, through the failover and after it.
    cluster.kill(cluster.masters()[0]);
    rounds(&limiter, 4, &mut allowed).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_ok();
        cluster
    })
    .await
    .unwrap();
    rounds(&limiter, 3, &mut allowed).await;

    let over: Vec<_> = allowed.iter().filter(|(_, n)| **n > LIMIT).collect();
    assert!(
        over.is_empty(),
        "users allowed more than {LIMIT} in one window across the failover: {over:?}"
    );
    assert!(
        allowed.values().all(|n| *n == LIMIT),
        "each user gets the whole limit, no less: {allowed:?}"
    );
    drop(cluster);
}

/// `count` rounds of every user acting once, counting what each was allowed.
async fn rounds(limiter: &RateLimiter, count: u32, allowed: &mut BTreeMap<i64, u32>) {
    for _ in 0..count {
        for user in 1..=USERS {
            if limiter.check(user, Limit::Messages).await == Verdict::Allowed {
                *allowed.entry(user).or_default() += 1;
            }
        }
    }
}
