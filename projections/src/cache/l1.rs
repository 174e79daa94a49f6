//! The in-process tier (L1): one shelf of rows per kind, where a row is only ever replaced by
//! a row with a higher position.
//!
//! A shelf is also this process's memory of the newest row it has handed out for a key, which
//! is what makes reads monotonic (see the module documentation of [`super`]). That is why an
//! entry past its TTL is not dropped: it stops being served as a hit and is revalidated
//! against Redis and the database, but it stays as the floor below which no answer may go.
//! Only capacity pressure removes entries (moka's TinyLFU picks the coldest keys).

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::Equivalent;
use tokio::time::Instant;

use super::stats::Counters;
use super::CachedRow;

/// One cached row and the moment it stops being served without asking the sources again.
#[derive(Debug)]
struct Slot<R> {
    row: Arc<R>,
    fresh_until: Instant,
}

// Manual so that `R` need not be `Clone`: moka clones the slot on every read, and cloning an
// `Arc` is what keeps that cheap.
impl<R> Clone for Slot<R> {
    fn clone(&self) -> Self {
        Slot {
            row: Arc::clone(&self.row),
            fresh_until: self.fresh_until,
        }
    }
}

/// What the shelf holds for a key.
pub(crate) enum Lookup<R> {
    /// Within its TTL: serve it.
    Fresh(Arc<R>),
    /// Past its TTL: revalidate, but never answer with anything older than this.
    Expired(Arc<R>),
    Absent,
}

/// What a position-guarded store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    Written,
    /// The shelf already held this very position; nothing to do.
    Same,
    /// The shelf held a newer row, which stays.
    Refused,
}

/// The rows of one kind (balances, users or payments), keyed by `K`.
pub(crate) struct Shelf<K, R> {
    slots: Cache<K, Slot<R>>,
    ttl: Duration,
}

impl<K, R> Shelf<K, R>
where
    K: Hash + Eq + Send + Sync + 'static,
    R: CachedRow,
{
    pub(crate) fn new(capacity: u64, ttl: Duration, counters: Arc<Counters>) -> Self {
        let slots = Cache::builder()
            // A shelf of capacity 0 would forget every row at once, and with it the floor
            // that keeps reads monotonic.
            .max_capacity(capacity.max(1))
            .eviction_listener(move |_key, _slot, cause| {
                if cause == RemovalCause::Size {
                    Counters::bump(&counters.l1_evictions);
                }
            })
            .build();
        Shelf { slots, ttl }
    }

    pub(crate) async fn lookup<Q>(&self, key: &Q) -> Lookup<R>
    where
        Q: Equivalent<K> + Hash + ?Sized,
    {
        match self.slots.get(key).await {
            Some(slot) if Instant::now() < slot.fresh_until => Lookup::Fresh(slot.row),
            Some(slot) => Lookup::Expired(slot.row),
            None => Lookup::Absent,
        }
    }

    /// Records a row just read from Redis or the database and returns the row to answer
    /// with: the newer of it and what the shelf already holds.
    ///
    /// The sources have just been consulted, so the winner is fresh again either way: if the
    /// shelf's row is newer than anything they had, asking them again on every request would
    /// only load the database for an answer we already know to be older.
    pub(crate) async fn settle<Q>(&self, key: &Q, row: Arc<R>) -> Arc<R>
    where
        K: Borrow<Q>,
        Q: Equivalent<K> + ToOwned<Owned = K> + Hash + ?Sized,
    {
        let fresh_until = Instant::now() + self.ttl;
        let offered = Arc::clone(&row);
        // `and_compute_with` runs one computation per key at a time, so no concurrent store
        // or settle can slip an older row in between the comparison and the write.
        let result = self
            .slots
            .entry_by_ref(key)
            .and_compute_with(move |current| {
                let kept = match current {
                    Some(entry) if entry.value().row.position() >= offered.position() => {
                        Arc::clone(&entry.value().row)
                    }
                    _ => offered,
                };
                std::future::ready(Op::Put(Slot {
                    row: kept,
                    fresh_until,
                }))
            })
            .await;
        match result {
            CompResult::Inserted(entry)
            | CompResult::ReplacedWith(entry)
            | CompResult::Unchanged(entry) => entry.into_value().row,
            // Unreachable with `Op::Put`; the offered row is still a correct answer.
            CompResult::StillNone(_) | CompResult::Removed(_) => row,
        }
    }

    /// A write from the cache projector: replaces the shelf's row only if strictly newer.
    pub(crate) async fn store<Q>(&self, key: &Q, row: Arc<R>) -> Stored
    where
        K: Borrow<Q>,
        Q: Equivalent<K> + ToOwned<Owned = K> + Hash + ?Sized,
    {
        let fresh_until = Instant::now() + self.ttl;
        let position = row.position();
        let result = self
            .slots
            .entry_by_ref(key)
            .and_compute_with(move |current| {
                let op = match current {
                    Some(entry) if entry.value().row.position() >= position => Op::Nop,
                    _ => Op::Put(Slot { row, fresh_until }),
                };
                std::future::ready(op)
            })
            .await;
        match result {
            CompResult::Unchanged(entry) if entry.value().row.position() == position => {
                Stored::Same
            }
            CompResult::Unchanged(_) => Stored::Refused,
            CompResult::Inserted(_)
            | CompResult::ReplacedWith(_)
            | CompResult::StillNone(_)
            | CompResult::Removed(_) => Stored::Written,
        }
    }
}
