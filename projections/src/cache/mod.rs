//! The read cache of read-model rows (balances, user profiles, payments): an in-process tier
//! (L1, `l1.rs`) in front of Redis (L2, `redis.rs`) in front of the database, or in-process
//! only when no Redis URL is configured.
//!
//! The gateway reads through it ([`ReadCache::balance`], [`ReadCache::user`],
//! [`ReadCache::payment`]) and the cache projector writes into it
//! ([`ReadCache::store_balance`] and friends). It never fails: Redis trouble turns into
//! database reads, and the only error a read returns is the loader's own.
//!
//! # An older row never replaces a newer one
//!
//! Every row carries the log position of the last event that changed it. Both tiers compare
//! positions before they write: L1 inside moka's per-key `and_compute_with` (one computation
//! per key at a time), Redis inside a Lua script that compares the stored `pos` field and
//! writes the row and its TTL only when the new position is strictly higher. So a replaying
//! projector, a slow loader or a second gateway instance cannot put an older row back.
//!
//! # Monotonic reads
//!
//! For one key, a `ReadCache` never answers with a lower position than an answer it has
//! already given, even when Redis lags behind the database or the loader returns an old row
//! (a lagging replica, or a read that started before the projector's latest store):
//!
//! 1. Every answer goes through the key's L1 entry: an L1 hit returns the entry, and a row
//!    from Redis or the loader is first *settled* into L1 — position-guarded — and the read
//!    answers with what L1 holds afterwards, the newer of the two. L1 entries only move
//!    forward, so answers only move forward. A read racing a store cannot go backwards either:
//!    if the store wins the key first, the settle keeps the stored row and answers with it.
//! 2. TTL does not break this, because an L1 entry past its TTL is not dropped: it stops being
//!    served as a hit and is revalidated, but it stays as the floor. A Redis row below the
//!    floor is skipped (we go on to the loader); a loaded row below the floor, or a loader
//!    that finds nothing, settles to the floor, which is then answered and fresh again — the
//!    sources were just asked and had nothing newer. The winner is written back to Redis when
//!    Redis lacked it, which also repairs Redis after it missed stores while down.
//! 3. What can still break it is capacity: L1 holds at most `l1_capacity` keys per kind and
//!    evicts the coldest when full. A key evicted and read again starts without a floor. The
//!    alternative, remembering every key ever read, grows without bound; instead evictions are
//!    counted ([`CacheStats::l1_evictions`]) so an undersized cache shows on `/metrics`.
//!    Keeping only evicted positions would not help: without the row there is nothing
//!    monotonic to answer with.
//!
//! Monotonicity is per `ReadCache` (per process). Two gateway instances may answer the same
//! key from different positions; read-your-writes across instances is the job of waiting for
//! a position (see DESIGN.md, "Read-your-writes"), not of this cache.
//!
//! # Redis down
//!
//! Every Redis operation is bounded by a short timeout; any failure is counted, logged at most
//! once per ten seconds (with the host, never the URL), and marks Redis down for a back-off
//! during which requests skip it without waiting. The first request after the back-off starts
//! one reconnection in the background. Entries in Redis that do not parse are counted,
//! removed and treated as misses.
//!
//! # One history per namespace
//!
//! Positions order rows only within one history. Another database behind the same Redis
//! (same `CACHE_KEY_PREFIX`), or a backup restored, has positions of its own, and the guard
//! above would serve its "later" rows from the wrong history. So the Redis keys of a ledger
//! carry its history's name, `h` and the first 16 hex digits of the hash of its first event
//! (which covers that event's time and id: no two ledgers share it), and Redis remembers
//! (`{prefix}:{history}:watermark`) the position and hash of the last event whose rows it
//! holds (rows go to Redis only up to it). [`ReadCache::adopt_history`] (at start, and by
//! the cache projector until it has succeeded) names the history from the log, and when the
//! log does not have that event with that hash — a backup restored from before it — moves
//! every instance to a new generation of the namespace (`h…g1`, `h…g2`, one counter key, so
//! it works on a cluster too), leaving the other history's rows unread until they expire.
//! Until this check has succeeded, Redis is neither read nor written.
//!
//! Redis keys: `{prefix}:{history}:balance:{user_id}`, `{prefix}:{history}:user:{user_id}`,
//! `{prefix}:{history}:payment:{invoice_uuid}`, each a hash `{pos, val}` with `val` the row as
//! JSON (`{prefix}:balance:…` and so on before a history is adopted, in tests that use the
//! cache alone).

mod l1;
mod redis;
mod stats;

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use moka::Equivalent;
use serde::de::DeserializeOwned;
use serde::Serialize;

use self::l1::{Lookup, Shelf, Stored};
use self::redis::{Fetched, RedisTier};
use self::stats::Counters;
use crate::rows::{BalanceRow, TransactionRow, UserRow};

pub use self::stats::CacheStats;

/// How the read cache is set up. `Default` gives the seed's TTLs, no Redis, and the prefix
/// `starledger`.
#[derive(Clone)]
pub struct CacheSettings {
    /// Redis URL; `None` caches in process only (unless `redis_cluster_nodes` is set).
    pub redis_url: Option<String>,
    /// Nodes of a Redis Cluster, used instead of `redis_url` when not empty.
    pub redis_cluster_nodes: Vec<String>,
    /// Redis Sentinels (`redis://host:port`) and the name of the master they watch, used
    /// instead of `redis_url` when not empty.
    pub redis_sentinels: Vec<String>,
    pub redis_sentinel_master: String,
    /// TTL of cached user profiles (seed: 30 minutes).
    pub ttl_user: Duration,
    /// TTL of cached balances (seed: 30 minutes; the seed caches balances with the user TTL).
    pub ttl_balance: Duration,
    /// TTL of cached payments (seed: 15 minutes).
    pub ttl_payment: Duration,
    /// In-process entries per kind (balances, users, payments).
    pub l1_capacity: u64,
    /// How long an in-process entry is served without asking Redis (or the database) again,
    /// at most the kind's TTL. Short, because other instances' projectors update Redis, not
    /// this process's memory: it bounds how stale another instance's write can look here.
    pub l1_freshness: Duration,
    /// First part of every Redis key; distinct per deployment (and per test).
    pub key_prefix: String,
}

impl CacheSettings {
    /// Where Redis is, if anywhere: the cluster's nodes, else the URL.
    pub fn redis_spec(&self) -> Option<crate::redis_target::RedisSpec> {
        use crate::redis_target::RedisSpec;
        if !self.redis_cluster_nodes.is_empty() {
            Some(RedisSpec::Cluster(self.redis_cluster_nodes.clone()))
        } else if !self.redis_sentinels.is_empty() {
            Some(RedisSpec::Sentinel {
                sentinels: self.redis_sentinels.clone(),
                master: self.redis_sentinel_master.clone(),
            })
        } else {
            self.redis_url.clone().map(RedisSpec::Single)
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            redis_url: None,
            redis_cluster_nodes: Vec::new(),
            redis_sentinels: Vec::new(),
            redis_sentinel_master: String::new(),
            ttl_user: Duration::from_secs(1800),
            ttl_balance: Duration::from_secs(1800),
            ttl_payment: Duration::from_secs(900),
            l1_capacity: 100_000,
            l1_freshness: Duration::from_secs(1),
            key_prefix: "starledger".to_owned(),
        }
    }
}

impl fmt::Debug for CacheSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: say only whether there is one.
        let redis_url = self.redis_url.as_ref().map(|_| "<configured>");
        f.debug_struct("CacheSettings")
            .field("redis_url", &redis_url)
            .field("ttl_user", &self.ttl_user)
            .field("ttl_balance", &self.ttl_balance)
            .field("ttl_payment", &self.ttl_payment)
            .field("l1_capacity", &self.l1_capacity)
            .field("l1_freshness", &self.l1_freshness)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// How long the cache waits for Redis and how long it leaves it alone after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisTiming {
    /// Bound on every Redis command: past it the read goes to the database instead.
    pub operation_timeout: Duration,
    /// Bound on one connection attempt (made in the background, except at start).
    pub connect_timeout: Duration,
    /// After a failure, Redis is skipped for this long so requests do not each pay a timeout.
    pub backoff: Duration,
}

impl Default for RedisTiming {
    fn default() -> Self {
        RedisTiming {
            operation_timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_millis(500),
            backoff: Duration::from_secs(1),
        }
    }
}

/// A row the cache can hold: it knows the log position that produced it.
pub(crate) trait CachedRow:
    Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    fn position(&self) -> u64;
}

impl CachedRow for BalanceRow {
    fn position(&self) -> u64 {
        self.position
    }
}

impl CachedRow for UserRow {
    fn position(&self) -> u64 {
        self.position
    }
}

impl CachedRow for TransactionRow {
    fn position(&self) -> u64 {
        self.position
    }
}

/// The read cache of balances, user profiles and payments. `Send + Sync`; share it in an
/// `Arc`. See the module documentation for its guarantees.
pub struct ReadCache {
    balances: Shelf<i64, BalanceRow>,
    users: Shelf<i64, UserRow>,
    payments: Shelf<String, TransactionRow>,
    /// `None` in process-only mode, or when the configured URL does not parse.
    redis: Option<RedisTier>,
    redis_configured: bool,
    settings: CacheSettings,
    counters: Arc<Counters>,
    /// The history the Redis rows belong to (see "One history per namespace"); empty until
    /// one is adopted.
    history: std::sync::RwLock<String>,
    /// Whether Redis may be used: no history to check yet, or it has been checked.
    history_checked: std::sync::atomic::AtomicBool,
    /// A position the Redis watermark is known to have reached. Rows above it go to L1 only
    /// (the cache projector marks before it stores), so Redis never holds a row past its
    /// watermark, and a restored backup is always found out.
    marked: std::sync::atomic::AtomicU64,
    /// Per user, the position a balance (or profile) read here must reach: set for writes
    /// seen in the log (`cache_tail`), so a row cached before them is skipped.
    required_balances: moka::future::Cache<i64, u64>,
    required_users: moka::future::Cache<i64, u64>,
}

/// How long a requirement is kept: far longer than the projections take to reach it.
const REQUIREMENT_TTL: Duration = Duration::from_secs(30);

/// The namespace of a history's `generation` (the first has no suffix).
fn generation_name(base: &str, generation: u64) -> String {
    if generation == 0 {
        base.to_owned()
    } else {
        format!("{base}g{generation}")
    }
}

/// The last event whose rows Redis holds, as `{position}:{hash}`.
fn watermark(position: u64, hash: &starledger_ledger::chain::Hash) -> String {
    format!("{position}:{}", hash.to_hex())
}

impl ReadCache {
    /// Never fails: when Redis is unreachable at start (or later) it logs a warning and works
    /// from L1 and the loader, reconnecting in the background.
    pub async fn new(settings: CacheSettings) -> ReadCache {
        ReadCache::with_timing(settings, RedisTiming::default()).await
    }

    /// [`ReadCache::new`] with explicit Redis timeouts and back-off.
    pub async fn with_timing(settings: CacheSettings, timing: RedisTiming) -> ReadCache {
        let counters = Arc::new(Counters::default());
        let redis = match settings.redis_spec() {
            None => None,
            Some(spec) => match RedisTier::connect(&spec, timing, Arc::clone(&counters)).await {
                Ok(tier) => Some(tier),
                Err(error) => {
                    // Reported as unhealthy on /readyz until the configuration is fixed.
                    Counters::bump(&counters.redis_errors);
                    tracing::error!(%error, "caching in process only");
                    None
                }
            },
        };
        let capacity = settings.l1_capacity;
        ReadCache {
            balances: Shelf::new(
                capacity,
                settings.ttl_balance.min(settings.l1_freshness),
                Arc::clone(&counters),
            ),
            users: Shelf::new(
                capacity,
                settings.ttl_user.min(settings.l1_freshness),
                Arc::clone(&counters),
            ),
            payments: Shelf::new(
                capacity,
                settings.ttl_payment.min(settings.l1_freshness),
                Arc::clone(&counters),
            ),
            redis,
            redis_configured: settings.redis_spec().is_some(),
            settings,
            counters,
            history: std::sync::RwLock::new(String::new()),
            history_checked: std::sync::atomic::AtomicBool::new(true),
            marked: std::sync::atomic::AtomicU64::new(0),
            required_balances: requirements(capacity),
            required_users: requirements(capacity),
        }
    }

    /// A write at `position` changed `user_id`'s balance: reads here must show at least it.
    pub async fn require_balance(&self, user_id: i64, position: u64) {
        raise(&self.required_balances, user_id, position).await;
    }

    /// A write at `position` changed `user_id`'s profile.
    pub async fn require_user(&self, user_id: i64, position: u64) {
        raise(&self.required_users, user_id, position).await;
    }

    /// The position a balance read of `user_id` must reach, if a write to it was seen.
    pub async fn required_balance(&self, user_id: i64) -> Option<u64> {
        self.required_balances.get(&user_id).await
    }

    pub async fn required_user(&self, user_id: i64) -> Option<u64> {
        self.required_users.get(&user_id).await
    }

    /// Names the Redis namespace after the log's history and makes sure Redis holds no rows
    /// of another history under it: if Redis remembers an event the log does not have (with
    /// that hash), every row of the namespace is removed. Until this has succeeded once with
    /// Redis reachable, Redis is not used. An empty log has nothing cached yet; the cache
    /// projector adopts its history at its first event.
    pub async fn adopt_history(
        &self,
        events: &dyn starledger_ledger::store::EventStore,
    ) -> Result<(), starledger_ledger::store::StoreError> {
        use std::sync::atomic::Ordering;
        if self.history_checked.load(Ordering::SeqCst) && !self.history_name().is_empty() {
            return Ok(());
        }
        let first = events.read_all(0, 1).await?;
        let Some(first) = first.first() else {
            return Ok(());
        };
        let base = format!("h{}", &first.hash.to_hex()[..16]);
        let Some(redis) = &self.redis else {
            self.set_history(&base);
            self.history_checked.store(true, Ordering::SeqCst);
            return Ok(());
        };
        let prefix = &self.settings.key_prefix;
        let generation_key = format!("{prefix}:{base}:generation");
        let generation = match redis.get_text(&generation_key).await {
            Some(text) => text.and_then(|t| t.parse::<u64>().ok()).unwrap_or(0),
            None => {
                self.hold_off_redis(&base, "cannot check which history Redis holds");
                return Ok(());
            }
        };
        let name = generation_name(&base, generation);
        let Some(remembered) = redis.get_text(&self.watermark_key(&name)).await else {
            self.hold_off_redis(&name, "cannot check which history Redis holds");
            return Ok(());
        };
        let foreign = match remembered.as_deref().and_then(|text| text.split_once(':')) {
            None => false,
            Some((position, hash)) => match position.parse::<u64>() {
                Ok(position) if position > 0 => {
                    let ours = events.read_all(position - 1, 1).await?;
                    ours.first().is_none_or(|event| {
                        event.position != position || event.hash.to_hex() != hash
                    })
                }
                _ => true,
            },
        };
        if !foreign {
            self.set_history(&name);
        } else {
            // Rows of another history (a backup restored over the one Redis holds): a new
            // generation of the namespace, so none of them is read; they expire by their TTL.
            let Some(next) = redis.next_generation(&generation_key, generation).await else {
                self.hold_off_redis(&name, "cannot leave another history's cached rows behind");
                return Ok(());
            };
            tracing::warn!(
                generation = next,
                "Redis held cached rows of another history (a backup restored?); leaving them behind"
            );
            self.set_history(&generation_name(&base, next));
            self.marked.store(0, Ordering::SeqCst);
        }
        self.history_checked.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Raises Redis's watermark to the event at `position` (with its `hash`): the cache
    /// projector, before it stores rows up to that position.
    pub async fn mark_cached(&self, position: u64, hash: &starledger_ledger::chain::Hash) {
        let history = self.history_name();
        if history.is_empty() {
            return;
        }
        if let Some(redis) = self.l2() {
            let key = self.watermark_key(&history);
            if redis
                .raise_watermark(&key, position, &watermark(position, hash))
                .await
                .is_some()
            {
                self.marked
                    .fetch_max(position, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    /// Learns how far Redis's watermark is (another instance's projector may be the one
    /// raising it), so rows up to there may be written back to Redis from here.
    pub async fn sync_mark(&self) {
        let history = self.history_name();
        if history.is_empty() {
            return;
        }
        if let Some(redis) = self.l2() {
            let key = self.watermark_key(&history);
            let position = redis.get_text(&key).await.flatten().and_then(|text| {
                text.split_once(':')
                    .and_then(|(p, _)| p.parse::<u64>().ok())
            });
            if let Some(position) = position {
                self.marked
                    .fetch_max(position, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    /// Whether a row at `position` may go to Redis: always before a history is adopted, and
    /// after only up to the watermark.
    fn may_write_redis(&self, position: u64) -> bool {
        self.history_name().is_empty()
            || position <= self.marked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Names the history `name` but keeps Redis unused until a later check succeeds.
    fn hold_off_redis(&self, name: &str, why: &str) {
        self.set_history(name);
        self.history_checked
            .store(false, std::sync::atomic::Ordering::SeqCst);
        tracing::warn!("{why}; not using Redis until it can be checked");
    }

    /// `{prefix}:{history}:watermark`.
    fn watermark_key(&self, history: &str) -> String {
        format!("{}:{history}:watermark", self.settings.key_prefix)
    }

    fn set_history(&self, name: &str) {
        let mut history = self.history.write().unwrap_or_else(|e| e.into_inner());
        if *history != name {
            *history = name.to_owned();
        }
    }

    fn history_name(&self) -> String {
        self.history
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Redis, if configured and its history checked.
    fn l2(&self) -> Option<&RedisTier> {
        self.redis.as_ref().filter(|_| self.redis_usable())
    }

    fn redis_usable(&self) -> bool {
        self.history_checked
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Read-through: L1, then Redis, then `load` (the database). What `load` returns is
    /// written back to Redis and L1 (position-guarded). The answer is never older than one
    /// this cache already gave for the key, so it may be newer than what `load` returned. A
    /// loader error is returned as it is; `Ok(None)` is not cached.
    pub async fn balance<E, F, Fut>(&self, user_id: i64, load: F) -> Result<Option<BalanceRow>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<BalanceRow>, E>>,
    {
        let key = self.redis_key("balance", &user_id);
        let ttl = self.settings.ttl_balance;
        self.read_through(&self.balances, &user_id, key, ttl, load)
            .await
    }

    /// Read-through for a user profile; see [`ReadCache::balance`].
    pub async fn user<E, F, Fut>(&self, user_id: i64, load: F) -> Result<Option<UserRow>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<UserRow>, E>>,
    {
        let key = self.redis_key("user", &user_id);
        let ttl = self.settings.ttl_user;
        self.read_through(&self.users, &user_id, key, ttl, load)
            .await
    }

    /// Payment by Heleket invoice uuid (a `TransactionRow` of kind recharge whose
    /// `external_id` is the invoice uuid); see [`ReadCache::balance`].
    pub async fn payment<E, F, Fut>(
        &self,
        invoice_uuid: &str,
        load: F,
    ) -> Result<Option<TransactionRow>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<TransactionRow>, E>>,
    {
        let key = self.redis_key("payment", invoice_uuid);
        let ttl = self.settings.ttl_payment;
        self.read_through(&self.payments, invoice_uuid, key, ttl, load)
            .await
    }

    /// A write from the cache projector: position-guarded in L1 and in Redis.
    pub async fn store_balance(&self, row: &BalanceRow) {
        let key = self.redis_key("balance", &row.user_id);
        let ttl = self.settings.ttl_balance;
        self.store(&self.balances, &row.user_id, key, ttl, row)
            .await;
    }

    /// A write from the cache projector; see [`ReadCache::store_balance`].
    pub async fn store_user(&self, row: &UserRow) {
        let key = self.redis_key("user", &row.user_id);
        let ttl = self.settings.ttl_user;
        self.store(&self.users, &row.user_id, key, ttl, row).await;
    }

    /// A write from the cache projector, keyed by the Heleket invoice uuid; see
    /// [`ReadCache::store_balance`].
    pub async fn store_payment(&self, invoice_uuid: &str, row: &TransactionRow) {
        let key = self.redis_key("payment", invoice_uuid);
        let ttl = self.settings.ttl_payment;
        self.store(&self.payments, invoice_uuid, key, ttl, row)
            .await;
    }

    /// `"redis"` when a Redis URL is configured (healthy or not), else `"in-process"`.
    pub fn mode(&self) -> &'static str {
        if self.redis_configured {
            "redis"
        } else {
            "in-process"
        }
    }

    /// Whether the last Redis operation succeeded (false in in-process mode); for `/readyz`.
    pub fn redis_healthy(&self) -> bool {
        self.redis.as_ref().is_some_and(RedisTier::healthy) && self.redis_usable()
    }

    /// `CACHE_KEY_PREFIX`.
    pub fn key_prefix(&self) -> &str {
        &self.settings.key_prefix
    }

    pub fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }

    fn redis_key(&self, kind: &str, id: &(impl fmt::Display + ?Sized)) -> String {
        let history = self.history_name();
        if history.is_empty() {
            format!("{}:{kind}:{id}", self.settings.key_prefix)
        } else {
            format!("{}:{history}:{kind}:{id}", self.settings.key_prefix)
        }
    }

    /// The read path shared by every kind; the module documentation explains why each step
    /// keeps reads monotonic.
    async fn read_through<K, Q, R, E, F, Fut>(
        &self,
        shelf: &Shelf<K, R>,
        key: &Q,
        redis_key: String,
        ttl: Duration,
        load: F,
    ) -> Result<Option<R>, E>
    where
        K: Hash + Eq + Send + Sync + 'static + Borrow<Q>,
        Q: Equivalent<K> + ToOwned<Owned = K> + Hash + ?Sized,
        R: CachedRow,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<R>, E>>,
    {
        let floor = match shelf.lookup(key).await {
            Lookup::Fresh(row) => {
                Counters::bump(&self.counters.l1_hits);
                return Ok(Some(R::clone(&row)));
            }
            Lookup::Expired(row) => Some(row),
            Lookup::Absent => None,
        };

        // Whether Redis was asked, and the position it holds: the answer is written back
        // only when Redis answered and lacks it.
        let mut redis_answered = false;
        let mut redis_position = None;
        if let Some(redis) = self.l2() {
            match redis.fetch::<R>(&redis_key).await {
                Fetched::Found(row) => {
                    let below_floor = floor
                        .as_ref()
                        .is_some_and(|floor| row.position() < floor.position());
                    if !below_floor {
                        Counters::bump(&self.counters.l2_hits);
                        let answer = shelf.settle(key, Arc::new(row)).await;
                        return Ok(Some(R::clone(&answer)));
                    }
                    redis_answered = true;
                    redis_position = Some(row.position());
                }
                Fetched::Missing | Fetched::Unreadable => redis_answered = true,
                Fetched::Unavailable => {}
            }
        }

        Counters::bump(&self.counters.loads);
        let answer = match (load().await?, floor) {
            (Some(loaded), _) => Some(shelf.settle(key, Arc::new(loaded)).await),
            (None, Some(floor)) => Some(shelf.settle(key, floor).await),
            (None, None) => None,
        };

        if let (Some(redis), Some(row)) = (self.l2(), &answer) {
            let lacking = redis_position.is_none_or(|held| held < row.position());
            if redis_answered
                && lacking
                && self.may_write_redis(row.position())
                && redis.put(&redis_key, row.as_ref(), ttl).await == Some(Stored::Refused)
            {
                Counters::bump(&self.counters.stale_writes_refused);
            }
        }
        Ok(answer.map(|row| R::clone(&row)))
    }

    async fn store<K, Q, R>(
        &self,
        shelf: &Shelf<K, R>,
        key: &Q,
        redis_key: String,
        ttl: Duration,
        row: &R,
    ) where
        K: Hash + Eq + Send + Sync + 'static + Borrow<Q>,
        Q: Equivalent<K> + ToOwned<Owned = K> + Hash + ?Sized,
        R: CachedRow,
    {
        if shelf.store(key, Arc::new(row.clone())).await == Stored::Refused {
            Counters::bump(&self.counters.stale_writes_refused);
        }
        // Redis is written even when L1 refused: L1 may be ahead of Redis (after Redis was
        // down), and the script refuses the row anyway if Redis is ahead of it.
        if let Some(redis) = self.l2().filter(|_| self.may_write_redis(row.position())) {
            if redis.put(&redis_key, row, ttl).await == Some(Stored::Refused) {
                Counters::bump(&self.counters.stale_writes_refused);
            }
        }
    }
}

impl fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately not the settings: the Redis URL may carry a password.
        f.debug_struct("ReadCache")
            .field("mode", &self.mode())
            .field("redis", &self.redis.as_ref().map(RedisTier::address))
            .field("redis_healthy", &self.redis_healthy())
            .field("key_prefix", &self.settings.key_prefix)
            .field("stats", &self.stats())
            .finish()
    }
}

fn requirements(capacity: u64) -> moka::future::Cache<i64, u64> {
    moka::future::Cache::builder()
        .max_capacity(capacity)
        .time_to_live(REQUIREMENT_TTL)
        .build()
}

/// Raises `key`'s requirement to `position` (never lowers it).
async fn raise(requirements: &moka::future::Cache<i64, u64>, key: i64, position: u64) {
    requirements
        .entry(key)
        .and_upsert_with(|held| {
            let held = held.map_or(0, |entry| entry.into_value());
            std::future::ready(held.max(position))
        })
        .await;
}
