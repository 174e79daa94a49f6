//! What the gateway may read: balances, profiles, payments and history, through the cache.
//!
//! Reads go L1 → Redis → database (see `cache`). A caller that has just executed a command
//! passes the position of its events as `at_least`: a cached row older than that is skipped
//! for the database, which the caller has already waited to reach (`Runner::wait_for`), so a
//! reply after "buy" shows the new balance.
//!
//! With a read replica (`DATABASE_READ_URL`, a streaming standby), the database reads go to
//! it: plain reads at once, a read that must reach `at_least` once the standby's projection
//! checkpoints show it has replayed that far — waiting up to [`REPLICA_WAIT`] — and to the
//! primary when it has not by then. Refreshes after an acknowledged write read the primary.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::ReadCache;
use crate::rows::{BalanceRow, TransactionRow, UserRow};
use crate::store::{HistoryPage, ReadError, ReadStore, StatusFilter};

/// How long a read that must reach a position waits for the replica before it asks the
/// primary.
pub const REPLICA_WAIT: Duration = Duration::from_millis(250);

pub struct Queries {
    /// The primary's read models.
    read: Arc<dyn ReadStore>,
    /// A streaming standby's copy of them, if configured.
    replica: Option<Arc<dyn ReadStore>>,
    cache: Arc<ReadCache>,
}

impl Queries {
    pub fn new(read: Arc<dyn ReadStore>, cache: Arc<ReadCache>) -> Self {
        Self {
            read,
            replica: None,
            cache,
        }
    }

    /// Reads served by `replica` where it has caught up (see the module documentation).
    pub fn with_replica(mut self, replica: Arc<dyn ReadStore>) -> Self {
        self.replica = Some(replica);
        self
    }

    /// Where a read that must reflect `at_least` goes: the replica once it has replayed that
    /// far (every projection's checkpoint there), else the primary.
    async fn source(&self, at_least: Option<u64>) -> &Arc<dyn ReadStore> {
        let Some(replica) = &self.replica else {
            return &self.read;
        };
        let Some(wanted) = at_least else {
            return replica;
        };
        let started = tokio::time::Instant::now();
        loop {
            let reached = replica
                .checkpoints()
                .await
                .ok()
                .and_then(|checkpoints| {
                    crate::model::Table::ALL
                        .iter()
                        .map(|table| {
                            checkpoints
                                .iter()
                                .find(|c| c.name == table.name())
                                .map_or(0, |c| c.position)
                        })
                        .min()
                })
                .unwrap_or(0);
            if reached >= wanted {
                return replica;
            }
            if started.elapsed() >= REPLICA_WAIT {
                return &self.read;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn cache(&self) -> &Arc<ReadCache> {
        &self.cache
    }

    /// The user's balance; with `at_least`, one that reflects at least that log position
    /// (for a balance the caller's own command changed). A registered user with no money
    /// events yet gets a zero row marked `no_money_events` (see [`Queries::load_balance`]),
    /// cached like any other; `None` only for a user the read models do not know.
    pub async fn balance(
        &self,
        user_id: i64,
        at_least: Option<u64>,
    ) -> Result<Option<BalanceRow>, ReadError> {
        // A write to this balance seen in the log (from any instance) raises the floor.
        let at_least = at_least.max(self.cache.required_balance(user_id).await);
        let read = self.source(None).await;
        let cached = self
            .cache
            .balance(user_id, || self.load_balance(read, user_id))
            .await?;
        match (cached, at_least) {
            (Some(row), Some(wanted)) if row.position < wanted => {
                let fresh = self
                    .load_balance(self.source(Some(wanted)).await, user_id)
                    .await?;
                if let Some(fresh) = &fresh {
                    self.cache.store_balance(fresh).await;
                }
                Ok(fresh)
            }
            (cached, _) => Ok(cached),
        }
    }

    /// The balance row from `read`; for a registered user without one, a zero row standing
    /// for it. Most bot users ask for their balance before they ever pay: without this every
    /// such read would miss the cache and reach the database.
    ///
    /// The zero row's position is the balances projection's checkpoint, read on the same
    /// snapshot as the row's absence ([`ReadStore::balance_as_of`]): no balance event of the
    /// user is at or below it, so the first real row (at a higher position) always replaces
    /// it, in L1 and in Redis, and a zero row written back late is refused by the same
    /// position guard as any stale row. (The profile's position would not do: a profile
    /// change can come after a credit the balances projection has not applied yet, and a
    /// zero at that position would then hide the credit.)
    async fn load_balance(
        &self,
        read: &Arc<dyn ReadStore>,
        user_id: i64,
    ) -> Result<Option<BalanceRow>, ReadError> {
        let (row, as_of) = read.balance_as_of(user_id).await?;
        if row.is_some() {
            return Ok(row);
        }
        let Some(profile) = self.user(user_id).await? else {
            return Ok(None);
        };
        Ok(Some(BalanceRow {
            user_id,
            currency: profile.currency,
            available: rust_decimal::Decimal::ZERO,
            reserved: rust_decimal::Decimal::ZERO,
            debt: rust_decimal::Decimal::ZERO,
            updated_at: profile.registered_at,
            position: as_of,
            no_money_events: true,
        }))
    }

    /// After a write for `user_id` was acknowledged here and the projections reached it: the
    /// user's profile and balance rows are read from the database into the cache (both tiers,
    /// position-guarded), so a plain read on this instance shows the write rather than an
    /// entry cached before it — and Redis, for the other instances, has it too.
    pub async fn refresh(&self, user_id: i64) -> Result<(), ReadError> {
        let rows = self.read.rows(&[user_id], &[]).await?;
        for user in rows.users.values() {
            self.cache.store_user(user).await;
        }
        for balance in rows.balances.values() {
            self.cache.store_balance(balance).await;
        }
        Ok(())
    }

    pub async fn user(&self, user_id: i64) -> Result<Option<UserRow>, ReadError> {
        let read = self.source(None).await;
        let cached = self.cache.user(user_id, || read.user(user_id)).await?;
        match (cached, self.cache.required_user(user_id).await) {
            (Some(row), Some(wanted)) if row.position < wanted => {
                let fresh = self.source(Some(wanted)).await.user(user_id).await?;
                if let Some(fresh) = &fresh {
                    self.cache.store_user(fresh).await;
                }
                Ok(fresh)
            }
            (cached, _) => Ok(cached),
        }
    }

    /// The recharge behind a Heleket invoice.
    pub async fn payment(&self, invoice_uuid: &str) -> Result<Option<TransactionRow>, ReadError> {
        let read = self.source(None).await;
        self.cache
            .payment(invoice_uuid, || read.payment(invoice_uuid))
            .await
    }

    /// The transactions in `filter`'s statuses, oldest first, as operators list what waits for
    /// them; with `at_least`, from a database that has reached it.
    pub async fn in_status(
        &self,
        filter: &StatusFilter,
        created_before: chrono::DateTime<chrono::Utc>,
        limit: u32,
        at_least: Option<u64>,
    ) -> Result<Vec<TransactionRow>, ReadError> {
        self.source(at_least)
            .await
            .transactions_in_status(filter, created_before, limit)
            .await
    }

    /// History is paged straight from the database: pages are not reused enough to cache.
    /// With `at_least`, from a database that has reached it.
    pub async fn history(
        &self,
        user_id: i64,
        before: Option<u64>,
        limit: u32,
        at_least: Option<u64>,
    ) -> Result<HistoryPage, ReadError> {
        self.source(at_least)
            .await
            .history(user_id, before, limit)
            .await
    }
}
