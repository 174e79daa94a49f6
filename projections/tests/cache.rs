//! The read cache tried against what must never happen: an older row over a newer one, reads
//! going backwards, Redis trouble turning into errors or wrong answers.
//!
//! Redis-backed tests run against `TEST_REDIS_URL` (CI: `redis://127.0.0.1:6379`) and print why
//! they are skipped when it is unset (under CI they fail instead); each uses its own key
//! prefix. The restart test starts its own `redis-server` (required under CI). In-process
//! tests always run.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use redis::aio::MultiplexedConnection;
use rust_decimal::Decimal;
use starledger_ledger::testing::{server_url, under_ci};
use starledger_projections::cache::{CacheSettings, ReadCache};
use starledger_projections::rows::{BalanceRow, TransactionKind, TransactionRow, UserRow};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// `TEST_REDIS_URL`, or `None` after saying `test` is skipped (under CI, a failure).
fn redis_url(test: &str) -> Option<String> {
    server_url(
        "TEST_REDIS_URL",
        &format!("skipping {test}; set it to redis://127.0.0.1:6379 to run it"),
    )
}

fn settings(redis_url: Option<String>) -> CacheSettings {
    CacheSettings {
        redis_url,
        key_prefix: format!("test-{}", Uuid::new_v4()),
        ..CacheSettings::default()
    }
}

/// A balance whose amount is its position, so a row that does not match its position shows.
fn balance(user_id: i64, position: u64) -> BalanceRow {
    BalanceRow {
        user_id,
        currency: "XTR".to_owned(),
        available: Decimal::from(position),
        reserved: Decimal::ZERO,
        debt: Decimal::ZERO,
        updated_at: Utc
            .timestamp_opt(1_700_000_000 + (position % 1_000_000_000) as i64, 0)
            .unwrap(),
        position,
        no_money_events: false,
    }
}

fn user(user_id: i64, position: u64) -> UserRow {
    UserRow {
        user_id,
        username: Some(format!("user{user_id}")),
        language: Some("en".to_owned()),
        currency: "XTR".to_owned(),
        registered_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        position,
    }
}

fn payment(invoice_uuid: &str, position: u64) -> TransactionRow {
    TransactionRow {
        id: Uuid::new_v4(),
        user_id: 7,
        kind: TransactionKind::Recharge,
        status: if position > 1 { "completed" } else { "pending" }.to_owned(),
        amount: Decimal::from(position),
        currency: "XTR".to_owned(),
        description: None,
        external_id: Some(invoice_uuid.to_owned()),
        metadata: serde_json::json!({ "position": position }),
        created_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        updated_at: Utc
            .timestamp_opt(1_700_000_000 + (position % 1_000_000_000) as i64, 0)
            .unwrap(),
        created_position: 1,
        position,
    }
}

async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis URL parses")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

/// `(pos, val)` of an entry as stored, bypassing the cache.
async fn stored(
    connection: &mut MultiplexedConnection,
    key: &str,
) -> (Option<String>, Option<String>) {
    redis::cmd("HMGET")
        .arg(key)
        .arg("pos")
        .arg("val")
        .query_async(connection)
        .await
        .expect("HMGET")
}

async fn stored_balance(connection: &mut MultiplexedConnection, key: &str) -> Option<BalanceRow> {
    let (pos, val) = stored(connection, key).await;
    let row: BalanceRow = serde_json::from_str(&val?).expect("stored row parses");
    assert_eq!(
        pos,
        Some(row.position.to_string()),
        "pos field matches the row"
    );
    Some(row)
}

/// Writes an entry directly, the way a lagging or foreign writer might: no position guard.
async fn overwrite(connection: &mut MultiplexedConnection, key: &str, position: u64, val: &str) {
    let _: () = redis::cmd("HSET")
        .arg(key)
        .arg("pos")
        .arg(position.to_string())
        .arg("val")
        .arg(val)
        .query_async(connection)
        .await
        .expect("HSET");
}

async fn never_called<T>() -> Result<Option<T>, Infallible> {
    panic!("the loader must not be called")
}

/// xorshift64*: the tests need shuffles, not cryptography, and no extra dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = (Uuid::new_v4().as_u128() as u64) | 1;
        eprintln!("rng seed {seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Read-through

#[tokio::test]
async fn read_through_loads_once_then_serves_from_l1_and_a_second_cache_reads_redis() {
    let Some(url) = redis_url("read_through_loads_once…") else {
        return;
    };
    let settings = settings(Some(url));
    let first = ReadCache::new(settings.clone()).await;
    assert_eq!(first.mode(), "redis");

    let loads = AtomicUsize::new(0);
    for _ in 0..5 {
        let row = first
            .balance(42, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Infallible>(Some(balance(42, 9)))
            })
            .await
            .unwrap();
        assert_eq!(row, Some(balance(42, 9)));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "loaded once");
    let stats = first.stats();
    assert_eq!((stats.loads, stats.l1_hits), (1, 4));
    assert!(first.redis_healthy());

    let second = ReadCache::new(settings).await;
    let row = second.balance(42, never_called).await.unwrap();
    assert_eq!(row, Some(balance(42, 9)));
    assert_eq!(second.stats().l2_hits, 1);
    assert_eq!(second.stats().loads, 0);

    // Users and payments go the same way.
    first
        .user(42, || async { Ok::<_, Infallible>(Some(user(42, 3))) })
        .await
        .unwrap();
    assert_eq!(
        second.user(42, never_called).await.unwrap(),
        Some(user(42, 3))
    );
    let invoice = Uuid::new_v4().to_string();
    let paid = payment(&invoice, 5);
    let loaded = paid.clone();
    first
        .payment(&invoice, || async { Ok::<_, Infallible>(Some(loaded)) })
        .await
        .unwrap();
    assert_eq!(
        second.payment(&invoice, never_called).await.unwrap(),
        Some(paid)
    );
}

#[tokio::test]
async fn in_process_read_through_loads_once_and_passes_loader_errors_through() {
    let cache = ReadCache::new(settings(None)).await;
    let loads = AtomicUsize::new(0);
    for _ in 0..3 {
        let row = cache
            .user(1, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Infallible>(Some(user(1, 2)))
            })
            .await
            .unwrap();
        assert_eq!(row, Some(user(1, 2)));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    // Nothing is cached for a row that does not exist, and the loader's error is the caller's.
    let missing = cache
        .balance(2, || async { Ok::<_, Infallible>(None) })
        .await
        .unwrap();
    assert_eq!(missing, None);
    let failed = cache
        .balance(2, || async {
            Err::<Option<BalanceRow>, _>("database down")
        })
        .await;
    assert_eq!(failed, Err("database down"));
    let found = cache
        .balance(2, || async { Ok::<_, Infallible>(Some(balance(2, 1))) })
        .await
        .unwrap();
    assert_eq!(found, Some(balance(2, 1)));
}

// ---------------------------------------------------------------------------------------------
// An older write never overwrites a newer one

#[tokio::test]
async fn in_process_mode_refuses_an_older_store() {
    let cache = ReadCache::new(settings(None)).await;
    assert_eq!(cache.mode(), "in-process");
    assert!(!cache.redis_healthy());

    cache.store_balance(&balance(5, 10)).await;
    cache.store_balance(&balance(5, 4)).await;
    cache.store_balance(&balance(5, 10)).await; // the same position again is not "stale"
    assert_eq!(
        cache.balance(5, never_called).await.unwrap(),
        Some(balance(5, 10))
    );
    assert_eq!(cache.stats().stale_writes_refused, 1);

    cache.store_payment("inv-1", &payment("inv-1", 3)).await;
    cache.store_payment("inv-1", &payment("inv-1", 2)).await;
    let row = cache.payment("inv-1", never_called).await.unwrap();
    assert_eq!(row.map(|row| row.position), Some(3));

    // A load older than the cached row does not replace it either.
    cache.store_user(&user(5, 8)).await;
    let row = cache
        .user(5, || async { Ok::<_, Infallible>(Some(user(5, 1))) })
        .await
        .unwrap();
    assert_eq!(row, Some(user(5, 8)));
}

#[tokio::test]
async fn older_store_never_overwrites_newer_in_l1_and_redis() {
    let Some(url) = redis_url("older_store_never_overwrites…") else {
        return;
    };
    let settings = settings(Some(url.clone()));
    let prefix = settings.key_prefix.clone();
    let cache = ReadCache::new(settings.clone()).await;
    let mut redis = raw(&url).await;

    cache.store_balance(&balance(1, 10)).await;
    cache.store_balance(&balance(1, 9)).await;
    assert_eq!(
        cache.balance(1, never_called).await.unwrap(),
        Some(balance(1, 10))
    );
    let key = format!("{prefix}:balance:1");
    assert_eq!(stored_balance(&mut redis, &key).await, Some(balance(1, 10)));
    assert_eq!(
        cache.stats().stale_writes_refused,
        2,
        "refused by L1 and by Redis"
    );

    // A second instance whose L1 knows nothing: Redis alone refuses the older row.
    let other = ReadCache::new(settings).await;
    other.store_balance(&balance(1, 3)).await;
    assert_eq!(stored_balance(&mut redis, &key).await, Some(balance(1, 10)));
    assert_eq!(other.stats().stale_writes_refused, 1);

    // Positions beyond 2^53 compare exactly (Lua numbers are doubles).
    let big = 1_u64 << 60;
    cache.store_balance(&balance(2, big + 1)).await;
    other.store_balance(&balance(2, big)).await;
    let key = format!("{prefix}:balance:2");
    assert_eq!(
        stored_balance(&mut redis, &key)
            .await
            .map(|row| row.position),
        Some(big + 1)
    );
    other.store_balance(&balance(2, u64::MAX)).await;
    assert_eq!(
        stored_balance(&mut redis, &key)
            .await
            .map(|row| row.position),
        Some(u64::MAX)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shuffled_concurrent_stores_from_two_caches_end_at_the_highest_position() {
    let Some(url) = redis_url("shuffled_concurrent_stores…") else {
        return;
    };
    let settings = settings(Some(url.clone()));
    let prefix = settings.key_prefix.clone();
    let caches = [
        Arc::new(ReadCache::new(settings.clone()).await),
        Arc::new(ReadCache::new(settings).await),
    ];
    const TOP: u64 = 300;
    let users = [1_i64, 2, 3];
    let invoices = ["inv-a".to_owned(), "inv-b".to_owned()];

    let mut rng = Rng::seeded();
    let mut tasks = Vec::new();
    for cache in &caches {
        let mut writes: Vec<(usize, u64)> = (1..=TOP)
            .flat_map(|position| (0..users.len() + invoices.len()).map(move |k| (k, position)))
            .collect();
        rng.shuffle(&mut writes);
        // Many small tasks, so writes to one key interleave across threads and instances.
        for chunk in writes.chunks(16) {
            let cache = Arc::clone(cache);
            let chunk = chunk.to_vec();
            let invoices = invoices.clone();
            tasks.push(tokio::spawn(async move {
                for (k, position) in chunk {
                    match users.get(k) {
                        Some(&user_id) => cache.store_balance(&balance(user_id, position)).await,
                        None => {
                            let invoice = &invoices[k - users.len()];
                            cache
                                .store_payment(invoice, &payment(invoice, position))
                                .await
                        }
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("writer task");
    }

    let mut redis = raw(&url).await;
    for user_id in users {
        let key = format!("{prefix}:balance:{user_id}");
        assert_eq!(
            stored_balance(&mut redis, &key).await,
            Some(balance(user_id, TOP))
        );
        for cache in &caches {
            let row = cache.balance(user_id, never_called).await.unwrap();
            assert_eq!(row, Some(balance(user_id, TOP)));
        }
    }
    for invoice in &invoices {
        let (pos, _) = stored(&mut redis, &format!("{prefix}:payment:{invoice}")).await;
        assert_eq!(pos, Some(TOP.to_string()));
        for cache in &caches {
            let row = cache.payment(invoice, never_called).await.unwrap();
            assert_eq!(row.map(|row| row.position), Some(TOP));
        }
    }
    for cache in &caches {
        assert!(cache.stats().stale_writes_refused > 0);
        assert_eq!(cache.stats().redis_errors, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Monotonic reads

#[tokio::test]
async fn expired_entry_is_revalidated_but_never_replaced_by_an_older_load() {
    let cache = ReadCache::new(CacheSettings {
        ttl_balance: Duration::from_millis(300),
        ..settings(None)
    })
    .await;
    cache.store_balance(&balance(3, 10)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Past its TTL the entry is revalidated, but an older database row does not win…
    let row = cache
        .balance(3, || async { Ok::<_, Infallible>(Some(balance(3, 5))) })
        .await
        .unwrap();
    assert_eq!(row, Some(balance(3, 10)));
    assert_eq!(cache.stats().loads, 1);
    // …and the entry is fresh again, so the next read does not ask the database.
    assert_eq!(
        cache.balance(3, never_called).await.unwrap(),
        Some(balance(3, 10))
    );

    // A database that finds nothing (a replica behind) does not make the row disappear.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let row = cache
        .balance(3, || async { Ok::<_, Infallible>(None) })
        .await
        .unwrap();
    assert_eq!(row, Some(balance(3, 10)));

    // A newer database row does win.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let row = cache
        .balance(3, || async { Ok::<_, Infallible>(Some(balance(3, 12))) })
        .await
        .unwrap();
    assert_eq!(row, Some(balance(3, 12)));
}

#[tokio::test]
async fn redis_behind_the_cache_is_skipped_and_repaired() {
    let Some(url) = redis_url("redis_behind_the_cache…") else {
        return;
    };
    let settings = CacheSettings {
        ttl_balance: Duration::from_millis(100),
        ..settings(Some(url.clone()))
    };
    let key = format!("{}:balance:4", settings.key_prefix);
    let cache = ReadCache::new(settings).await;
    let mut redis = raw(&url).await;

    cache.store_balance(&balance(4, 10)).await;
    // Redis loses the row and ends up with an older one (a lagging writer, a failover).
    let old = serde_json::to_string(&balance(4, 4)).unwrap();
    overwrite(&mut redis, &key, 4, &old).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let row = cache
        .balance(4, || async { Ok::<_, Infallible>(Some(balance(4, 6))) })
        .await
        .unwrap();
    assert_eq!(
        row,
        Some(balance(4, 10)),
        "neither Redis nor the database may take it back"
    );
    assert_eq!(
        stored_balance(&mut redis, &key).await,
        Some(balance(4, 10)),
        "Redis repaired"
    );
}

/// Writers store increasing and shuffled positions, the "database" lags and sometimes finds
/// nothing, a rogue writer keeps putting old rows into Redis, and short TTLs keep sending
/// reads down to those sources. Readers check that no read returns less than a read that
/// completed before it started (per key, across all reader tasks).
async fn reads_never_go_backwards(redis_url: Option<String>) {
    const KEYS: i64 = 4;
    const TOP: u64 = 400;
    let settings = CacheSettings {
        ttl_balance: Duration::from_millis(15),
        ..settings(redis_url.clone())
    };
    let prefix = settings.key_prefix.clone();
    let cache = Arc::new(ReadCache::new(settings).await);
    // What the projector has committed per key: the loader answers at or below it.
    let committed: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    // The highest position any completed read returned, per key.
    let seen: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let mut rng = Rng::seeded();

    let mut writers = Vec::new();
    for key in 0..KEYS {
        // One writer in order, one in a shuffled order: stores arrive late and out of order.
        let mut shuffled: Vec<u64> = (1..=TOP).collect();
        rng.shuffle(&mut shuffled);
        for positions in [(1..=TOP).collect::<Vec<_>>(), shuffled] {
            let cache = Arc::clone(&cache);
            let committed = Arc::clone(&committed);
            writers.push(tokio::spawn(async move {
                for burst in positions.chunks(4) {
                    for &position in burst {
                        cache.store_balance(&balance(key, position)).await;
                        committed[key as usize].fetch_max(position, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }));
        }
    }

    let rogue = redis_url.clone().map(|url| {
        let done = Arc::clone(&done);
        let committed = Arc::clone(&committed);
        let prefix = prefix.clone();
        tokio::spawn(async move {
            let mut redis = raw(&url).await;
            let mut rng = Rng::seeded();
            while !done.load(Ordering::SeqCst) {
                let key = rng.below(KEYS as u64) as i64;
                let top = committed[key as usize].load(Ordering::SeqCst);
                let position = 1 + rng.below(top.max(1));
                let val = serde_json::to_string(&balance(key, position)).unwrap();
                overwrite(
                    &mut redis,
                    &format!("{prefix}:balance:{key}"),
                    position,
                    &val,
                )
                .await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    });

    let mut readers = Vec::new();
    for reader in 0..8_u64 {
        let cache = Arc::clone(&cache);
        let committed = Arc::clone(&committed);
        let seen = Arc::clone(&seen);
        let done = Arc::clone(&done);
        readers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (reader + 1));
            let mut reads = 0_u64;
            while !done.load(Ordering::SeqCst) || reads < 200 {
                let key = rng.below(KEYS as u64) as i64;
                let floor = seen[key as usize].load(Ordering::SeqCst);
                let top = committed[key as usize].load(Ordering::SeqCst);
                let roll = rng.below(10);
                let stale = if top == 0 { 0 } else { 1 + rng.below(top) };
                let committed = Arc::clone(&committed);
                let row = cache
                    .balance(key, || async move {
                        Ok::<_, Infallible>(match roll {
                            // Nothing (a replica behind).
                            0 => None,
                            // The newest committed row, but slow to arrive: newer stores may
                            // land in the cache meanwhile.
                            1..=3 => {
                                let now = committed[key as usize].load(Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                (now > 0).then(|| balance(key, now))
                            }
                            // An older row.
                            _ => (stale > 0).then(|| balance(key, stale)),
                        })
                    })
                    .await
                    .unwrap();
                match row {
                    Some(row) => {
                        assert_eq!(row, balance(key, row.position), "row matches its position");
                        assert!(
                            row.position >= floor,
                            "key {key}: read {} after a completed read of {floor}",
                            row.position
                        );
                        seen[key as usize].fetch_max(row.position, Ordering::SeqCst);
                    }
                    None => assert_eq!(floor, 0, "key {key}: nothing after a read of {floor}"),
                }
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        }));
    }

    for writer in writers {
        writer.await.expect("writer task");
    }
    // With the writers done, every read past the TTL goes to the stale sources.
    tokio::time::sleep(Duration::from_millis(300)).await;
    done.store(true, Ordering::SeqCst);
    let mut reads = 0;
    for reader in readers {
        reads += reader
            .await
            .expect("reader task (a failed assertion shows above)");
    }
    if let Some(rogue) = rogue {
        rogue.await.expect("rogue writer task");
    }

    let stats = cache.stats();
    eprintln!("{reads} reads: {stats:?}");
    assert!(stats.loads > 0, "the loader was exercised");
    for key in 0..KEYS {
        let row = cache
            .balance(key, || async { Ok::<_, Infallible>(Some(balance(key, 1))) })
            .await
            .unwrap();
        assert_eq!(row, Some(balance(key, TOP)), "the newest row survives");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monotonic_reads_in_process_under_concurrent_stores_and_stale_loads() {
    reads_never_go_backwards(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monotonic_reads_with_redis_under_concurrent_stores_stale_loads_and_lagging_redis() {
    let Some(url) = redis_url("monotonic_reads_with_redis…") else {
        return;
    };
    reads_never_go_backwards(Some(url)).await;
}

// ---------------------------------------------------------------------------------------------
// Redis trouble

#[tokio::test]
async fn unreachable_redis_degrades_to_loader_reads_without_errors() {
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        let cache = ReadCache::new(settings(Some("redis://:hunter2@127.0.0.1:1".to_owned()))).await;
        assert_eq!(cache.mode(), "redis");
        assert!(
            !format!("{cache:?}").contains("hunter2"),
            "no password in Debug"
        );

        for user_id in 0..200 {
            let row = cache
                .balance(user_id, || async move {
                    Ok::<_, Infallible>(Some(balance(user_id, 1)))
                })
                .await
                .unwrap();
            assert_eq!(row, Some(balance(user_id, 1)));
        }
        cache.store_user(&user(1, 5)).await;
        cache.store_user(&user(1, 2)).await;
        assert_eq!(cache.user(1, never_called).await.unwrap(), Some(user(1, 5)));

        assert!(!cache.redis_healthy());
        let stats = cache.stats();
        assert!(stats.redis_errors >= 1, "{stats:?}");
        assert_eq!(stats.loads, 200);
        // Backing off: far fewer connection attempts than requests.
        assert!(stats.redis_errors < 50, "{stats:?}");
    })
    .await;
    assert!(
        outcome.is_ok(),
        "reads with Redis unreachable took over 10 s"
    );
}

#[tokio::test]
async fn invalid_redis_url_is_unhealthy_but_still_answers() {
    let cache = ReadCache::new(settings(Some("not a url :secret@".to_owned()))).await;
    assert_eq!(cache.mode(), "redis");
    assert!(!cache.redis_healthy());
    let row = cache
        .balance(1, || async { Ok::<_, Infallible>(Some(balance(1, 1))) })
        .await
        .unwrap();
    assert_eq!(row, Some(balance(1, 1)));
}

/// A `redis-server` of our own, killed when dropped (also when the test fails).
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start(port: u16) -> Option<OwnRedis> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(OwnRedis {
            port,
            child: Some(child),
        })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_until_ready(&self) {
        for _ in 0..100 {
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                    let pong: Result<String, _> =
                        redis::cmd("PING").query_async(&mut connection).await;
                    if pong.is_ok() {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

#[tokio::test]
async fn redis_that_stops_and_comes_back_is_used_again() {
    let port = free_port();
    let Some(mut server) = OwnRedis::start(port) else {
        assert!(
            !under_ci(),
            "redis-server is not installed; .ci/run installs it (package redis-server)"
        );
        eprintln!("skipping redis_that_stops_and_comes_back…: no redis-server binary");
        return;
    };
    server.wait_until_ready().await;
    let settings = settings(Some(server.url()));
    let key = format!("{}:balance:1", settings.key_prefix);
    let cache = ReadCache::new(settings).await;
    assert!(cache.redis_healthy());
    cache.store_balance(&balance(1, 1)).await;
    assert_eq!(
        stored_balance(&mut raw(&server.url()).await, &key).await,
        Some(balance(1, 1))
    );

    // Redis dies: reads keep coming from the loader, stores from the projector keep L1 current.
    server.stop();
    let outage = tokio::time::timeout(Duration::from_secs(10), async {
        for user_id in 100..150 {
            let row = cache
                .balance(user_id, || async move {
                    Ok::<_, Infallible>(Some(balance(user_id, 2)))
                })
                .await
                .unwrap();
            assert_eq!(row, Some(balance(user_id, 2)));
        }
        cache.store_balance(&balance(1, 2)).await;
        assert_eq!(
            cache.balance(1, never_called).await.unwrap(),
            Some(balance(1, 2))
        );
    })
    .await;
    assert!(outage.is_ok(), "reads during the outage took over 10 s");
    assert!(!cache.redis_healthy());
    assert!(cache.stats().redis_errors >= 1);

    // Redis is back (empty): within a bounded wait the cache writes to it again.
    let server = OwnRedis::start(port).expect("restart redis-server");
    server.wait_until_ready().await;
    let mut redis = raw(&server.url()).await;
    let mut position = 2;
    let back = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            position += 1;
            cache.store_balance(&balance(1, position)).await;
            if stored_balance(&mut redis, &key).await == Some(balance(1, position)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        back.is_ok(),
        "the cache did not write to Redis again within 15 s"
    );
    assert!(cache.redis_healthy());
    drop(server);
}

#[tokio::test]
async fn redis_entries_carry_the_configured_ttl() {
    let Some(url) = redis_url("redis_entries_carry_the_configured_ttl") else {
        return;
    };
    let settings = CacheSettings {
        ttl_user: Duration::from_secs(60),
        ttl_balance: Duration::from_secs(120),
        ttl_payment: Duration::from_secs(30),
        ..settings(Some(url.clone()))
    };
    let prefix = settings.key_prefix.clone();
    let cache = ReadCache::new(settings).await;

    cache.store_user(&user(1, 1)).await;
    cache.store_balance(&balance(1, 1)).await;
    cache.store_payment("inv-ttl", &payment("inv-ttl", 1)).await;
    // Written back from a load, not stored by the projector.
    cache
        .balance(2, || async { Ok::<_, Infallible>(Some(balance(2, 1))) })
        .await
        .unwrap();
    // A newer write sets the TTL again.
    cache.store_user(&user(1, 2)).await;

    let mut redis = raw(&url).await;
    let expected: HashMap<String, i64> = HashMap::from([
        (format!("{prefix}:user:1"), 60),
        (format!("{prefix}:balance:1"), 120),
        (format!("{prefix}:balance:2"), 120),
        (format!("{prefix}:payment:inv-ttl"), 30),
    ]);
    for (key, configured) in expected {
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(
            ttl > 0 && ttl <= configured,
            "{key}: TTL {ttl}, configured {configured}"
        );
    }
}

#[tokio::test]
async fn garbage_in_redis_is_a_miss_that_goes_to_the_loader() {
    let Some(url) = redis_url("garbage_in_redis_is_a_miss…") else {
        return;
    };
    let settings = settings(Some(url.clone()));
    let prefix = settings.key_prefix.clone();
    let cache = ReadCache::new(settings.clone()).await;
    let mut redis = raw(&url).await;

    // A hash whose row does not parse, claiming a high position.
    let key = format!("{prefix}:balance:1");
    overwrite(&mut redis, &key, 99, "{not json").await;
    let row = cache
        .balance(1, || async { Ok::<_, Infallible>(Some(balance(1, 3))) })
        .await
        .unwrap();
    assert_eq!(row, Some(balance(1, 3)));
    assert_eq!(
        stored_balance(&mut redis, &key).await,
        Some(balance(1, 3)),
        "replaced"
    );

    // A row that parses but disagrees with its position.
    let key = format!("{prefix}:balance:2");
    let lying = serde_json::to_string(&balance(2, 1)).unwrap();
    overwrite(&mut redis, &key, 50, &lying).await;
    let row = cache
        .balance(2, || async { Ok::<_, Infallible>(Some(balance(2, 4))) })
        .await
        .unwrap();
    assert_eq!(row, Some(balance(2, 4)));

    // Not a hash at all, and a row of the wrong shape.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:user:1"))
        .arg("garbage")
        .query_async(&mut redis)
        .await
        .unwrap();
    let row = cache
        .user(1, || async { Ok::<_, Infallible>(Some(user(1, 2))) })
        .await
        .unwrap();
    assert_eq!(row, Some(user(1, 2)));
    overwrite(
        &mut redis,
        &format!("{prefix}:payment:inv-x"),
        1,
        r#"{"id": 5}"#,
    )
    .await;
    let row = cache
        .payment("inv-x", || async {
            Ok::<_, Infallible>(Some(payment("inv-x", 1)))
        })
        .await
        .unwrap();
    assert_eq!(row.map(|row| row.position), Some(1));

    // A position field that is not even text.
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}:payment:inv-y"))
        .arg("pos")
        .arg(&[0xff_u8, 0xfe][..])
        .arg("val")
        .arg(serde_json::to_string(&payment("inv-y", 1)).unwrap())
        .query_async(&mut redis)
        .await
        .unwrap();
    let row = cache
        .payment("inv-y", || async {
            Ok::<_, Infallible>(Some(payment("inv-y", 2)))
        })
        .await
        .unwrap();
    assert_eq!(row.map(|row| row.position), Some(2));

    let stats = cache.stats();
    assert_eq!(stats.unreadable_entries, 5, "{stats:?}");
    assert_eq!(stats.loads, 5);
    assert_eq!(stats.redis_errors, 0, "garbage is not a Redis failure");
    assert!(cache.redis_healthy());

    // The entries were repaired: another instance reads them from Redis.
    let other = ReadCache::new(settings).await;
    assert_eq!(
        other.balance(1, never_called).await.unwrap(),
        Some(balance(1, 3))
    );
    assert_eq!(other.user(1, never_called).await.unwrap(), Some(user(1, 2)));
}
