//! Reads through the cache against real databases and Redis: they never go backwards, end
//! current, show the caller's own writes, and stay right when Redis is down.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use starledger_ledger::commands::Ledger;
use starledger_ledger::on_every_backend;
use starledger_ledger::store::CommitMode;
use starledger_ledger::testing::flow::*;
use starledger_ledger::testing::{server_url, Backend};
use starledger_projections::cache::{CacheSettings, ReadCache};
use starledger_projections::cache_projector;
use starledger_projections::queries::Queries;
use starledger_projections::runtime::{Runner, RunnerSettings};
use support::read_store;
use tokio::sync::watch;

/// Redis when the test run has one, in-process otherwise; a fresh key prefix per call site.
async fn cache(prefix: &str) -> Arc<ReadCache> {
    let redis_url = server_url("TEST_REDIS_URL", "caching in process only");
    Arc::new(
        ReadCache::new(CacheSettings {
            redis_url,
            key_prefix: prefix.to_owned(),
            ..CacheSettings::default()
        })
        .await,
    )
}

async fn cached_balances_never_go_backwards_and_end_current(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Arc::new(Ledger::new(events.clone()));
    let prefix = format!("test-{}", uuid::Uuid::new_v4());
    // Two gateway instances sharing Redis, each with its own in-process tier.
    let instances = [
        Arc::new(Queries::new(read.clone(), cache(&prefix).await)),
        Arc::new(Queries::new(read.clone(), cache(&prefix).await)),
    ];
    let users: Vec<i64> = (1..=4).collect();
    for u in &users {
        funded(&ledger, user(*u), "1000").await.unwrap();
    }
    let runner = Runner::start(events.clone(), read.clone(), RunnerSettings::default());
    let funded_head = events.head().await.unwrap().position;
    runner
        .wait_for(funded_head, Duration::from_secs(30))
        .await
        .unwrap();
    // As `serve` does at start: each instance names the ledger's history for Redis.
    for queries in &instances {
        queries
            .cache()
            .adopt_history(events.as_ref())
            .await
            .unwrap();
    }
    let (stop_projector, stopped) = watch::channel(false);
    let projector = cache_projector::start(
        events.clone(),
        read.clone(),
        instances[0].cache().clone(),
        stopped,
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for queries in &instances {
        let (queries, stop, users) = (queries.clone(), stop.clone(), users.clone());
        readers.push(tokio::spawn(async move {
            let mut last_seen: HashMap<i64, u64> = HashMap::new();
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for u in &users {
                    let row = queries
                        .balance(*u, None)
                        .await
                        .unwrap()
                        .expect("funded users have a balance");
                    let previous = last_seen.insert(*u, row.position).unwrap_or(0);
                    assert!(
                        row.position >= previous,
                        "user {u}: position {} after {previous}",
                        row.position
                    );
                    reads += 1;
                }
                tokio::task::yield_now().await;
            }
            reads
        }));
    }
    for n in 0..120 {
        let u = user(users[n % users.len()]);
        ledger
            .execute(
                u,
                purchase(u, &format!("p{n}"), "1.5"),
                &context(&format!("p{n}")),
            )
            .await
            .unwrap();
    }
    let head = events.head().await.unwrap().position;
    runner
        .wait_for(head, Duration::from_secs(30))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.await.unwrap() > 0);
    }
    // Once the cache projector has caught up and in-process entries have aged out, every
    // instance answers with the current balance.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let checkpoints = read.checkpoints().await.unwrap();
            if checkpoints
                .iter()
                .any(|c| c.name == cache_projector::CHECKPOINT && c.position >= head)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the cache projector catches up");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for queries in &instances {
        for u in &users {
            let account = ledger.account(user(*u)).await.unwrap();
            let row = queries.balance(*u, None).await.unwrap().unwrap();
            assert_eq!(
                (row.available, row.reserved),
                (account.available, account.reserved)
            );
        }
    }
    stop_projector
        .send(true)
        .expect("the cache projector is still running when told to stop");
    projector.await.unwrap();
    runner.shutdown().await;
}

async fn the_callers_own_write_shows_immediately(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Ledger::new(events.clone());
    let queries = Queries::new(
        read.clone(),
        cache(&format!("test-{}", uuid::Uuid::new_v4())).await,
    );
    let runner = Runner::start(events.clone(), read.clone(), RunnerSettings::default());
    let alice = user(8);
    let funded_at = funded(&ledger, alice, "10").await.unwrap().position;
    runner
        .wait_for(funded_at, Duration::from_secs(10))
        .await
        .unwrap();
    let before = queries.balance(8, None).await.unwrap().unwrap();
    assert_eq!(before.available.normalize().to_string(), "10");

    let bought = ledger
        .execute(alice, purchase(alice, "p1", "4"), &context("p1"))
        .await
        .unwrap();
    runner
        .wait_for(bought.position, Duration::from_secs(10))
        .await
        .unwrap();
    // The in-process entry is still fresh and old; asking for at least this position skips it.
    let after = queries
        .balance(8, Some(bought.position))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.available.normalize().to_string(), "6");
    assert_eq!(after.reserved.normalize().to_string(), "4");
    runner.shutdown().await;
}

async fn redis_down_degrades_to_database_reads(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Ledger::new(events.clone());
    let cache = Arc::new(
        ReadCache::new(CacheSettings {
            redis_url: Some("redis://127.0.0.1:1".into()),
            ..CacheSettings::default()
        })
        .await,
    );
    let queries = Queries::new(read.clone(), cache.clone());
    let runner = Runner::start(events.clone(), read.clone(), RunnerSettings::default());
    let settled = funded(&ledger, user(9), "7.25").await.unwrap();
    runner
        .wait_for(settled.position, Duration::from_secs(10))
        .await
        .unwrap();
    for _ in 0..20 {
        let row = queries.balance(9, None).await.unwrap().unwrap();
        assert_eq!(row.available.normalize().to_string(), "7.25");
    }
    assert!(!cache.redis_healthy());
    // The cache projector does not claim progress it could not make.
    let (position, applied) = cache_projector::step(events.as_ref(), read.as_ref(), &cache, 100)
        .await
        .unwrap();
    assert_eq!((position, applied), (0, 0));
    runner.shutdown().await;
}

/// A registered user who has not paid yet: the first balance read loads a zero row from the
/// database and caches it (position: the balances projection's checkpoint), later reads are
/// cache hits, and the first credit replaces it in every instance.
async fn a_registered_users_zero_balance_is_cached_until_the_first_credit(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Ledger::new(events.clone());
    let prefix = format!("test-{}", uuid::Uuid::new_v4());
    let (reader, other) = (cache(&prefix).await, cache(&prefix).await);
    let queries = Queries::new(read.clone(), reader.clone());
    let elsewhere = Queries::new(read.clone(), other.clone());
    let runner = Runner::start(events.clone(), read.clone(), RunnerSettings::default());
    // Given: Ann registered, then Bob, whose registration moves the balances checkpoint past
    // Ann's own events.
    let (ann, bob) = (user(21), user(22));
    let registered = ledger
        .execute(ann, register(), &context("reg-21"))
        .await
        .unwrap();
    let head = ledger
        .execute(bob, register(), &context("reg-22"))
        .await
        .unwrap()
        .position;
    runner
        .wait_for(head, Duration::from_secs(10))
        .await
        .unwrap();
    for cache in [&reader, &other] {
        cache.adopt_history(events.as_ref()).await.unwrap();
    }
    // When: Ann's balance is read three times.
    let loads_before = reader.stats().loads;
    let zero = queries.balance(21, None).await.unwrap().unwrap();
    let after_first = reader.stats().loads;
    for _ in 0..2 {
        assert_eq!(queries.balance(21, None).await.unwrap().unwrap(), zero);
    }
    // Then: zeros, marked, at the checkpoint (not Ann's own registration), loaded once (the
    // balance, and the profile that says she is registered) and then served from the cache.
    assert!(zero.no_money_events);
    assert_eq!(
        (zero.available, zero.reserved, zero.debt),
        (Default::default(), Default::default(), Default::default())
    );
    assert_eq!(zero.currency, "TON");
    assert_eq!(zero.position, head);
    assert!(zero.position > registered.position);
    assert!(after_first > loads_before, "the first read loads");
    assert_eq!(
        reader.stats().loads,
        after_first,
        "later reads are cache hits"
    );
    // An unknown user is not a zero balance, and nothing is cached for them.
    assert_eq!(queries.balance(23, None).await.unwrap(), None);

    // When: Ann's first recharge settles, and the cache projector stores her row.
    let (stop_projector, stopped) = watch::channel(false);
    let projector = cache_projector::start(events.clone(), read.clone(), reader.clone(), stopped);
    ledger
        .execute(ann, request_recharge(ann, "r1", "5"), &context("req-21"))
        .await
        .unwrap();
    let credited = ledger
        .execute(ann, settle(ann, "r1", "5"), &context("paid-21"))
        .await
        .unwrap();
    runner
        .wait_for(credited.position, Duration::from_secs(10))
        .await
        .unwrap();
    // Then: her own read shows it at once, and once the cache projector has stored the row
    // and in-process entries have aged out, a plain read on either instance does too.
    let own = queries
        .balance(21, Some(credited.position))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(own.available.normalize().to_string(), "5");
    assert!(!own.no_money_events);
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let checkpoints = read.checkpoints().await.unwrap();
            if checkpoints
                .iter()
                .any(|c| c.name == cache_projector::CHECKPOINT && c.position >= credited.position)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the cache projector catches up");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for instance in [&queries, &elsewhere] {
        let row = instance.balance(21, None).await.unwrap().unwrap();
        assert_eq!(row.available.normalize().to_string(), "5");
        assert!(!row.no_money_events);
    }
    stop_projector
        .send(true)
        .expect("the cache projector is still running when told to stop");
    projector.await.unwrap();
    runner.shutdown().await;
}

on_every_backend!(
    a_registered_users_zero_balance_is_cached_until_the_first_credit,
    cached_balances_never_go_backwards_and_end_current,
    the_callers_own_write_shows_immediately,
    redis_down_degrades_to_database_reads,
);
