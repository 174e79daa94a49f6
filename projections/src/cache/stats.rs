//! What the read cache counts, for `/metrics` and for tests: hits per tier, database loads,
//! Redis failures and refused stale writes.
//!
//! Plain relaxed atomics: the counters are read as a snapshot for reporting and never decide
//! anything, so no ordering between them is needed.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// A snapshot of the counters of one [`ReadCache`](super::ReadCache) since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Reads answered from the in-process cache while the entry was within its TTL.
    pub l1_hits: u64,
    /// Reads answered from Redis.
    pub l2_hits: u64,
    /// Calls of the caller's loader (the database).
    pub loads: u64,
    /// Failed or timed-out Redis operations, including failed (re)connection attempts.
    pub redis_errors: u64,
    /// Projector stores and Redis write-backs refused because the tier already held a row
    /// with a higher position; counted once per tier (L1, Redis) that refused. (A row read
    /// from Redis or the database losing to a newer one in L1 is a normal race, not counted.)
    pub stale_writes_refused: u64,
    /// Redis entries that did not parse as a row (or were not ours); each was treated as a
    /// miss and removed.
    pub unreadable_entries: u64,
    /// Redis operations not attempted because Redis was down and backing off.
    pub redis_skipped: u64,
    /// In-process entries evicted for capacity. Monotonic reads rely on the in-process entry,
    /// so a steady rise here means `l1_capacity` is smaller than the set of keys being read.
    pub l1_evictions: u64,
}

/// The live counters behind [`CacheStats`], shared by the tiers of one cache.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) l1_hits: AtomicU64,
    pub(crate) l2_hits: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) redis_errors: AtomicU64,
    pub(crate) stale_writes_refused: AtomicU64,
    pub(crate) unreadable_entries: AtomicU64,
    pub(crate) redis_skipped: AtomicU64,
    pub(crate) l1_evictions: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CacheStats {
            l1_hits: read(&self.l1_hits),
            l2_hits: read(&self.l2_hits),
            loads: read(&self.loads),
            redis_errors: read(&self.redis_errors),
            stale_writes_refused: read(&self.stale_writes_refused),
            unreadable_entries: read(&self.unreadable_entries),
            redis_skipped: read(&self.redis_skipped),
            l1_evictions: read(&self.l1_evictions),
        }
    }
}
