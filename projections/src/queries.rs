//! What the gateway may read: balances, profiles, payments and history, through the cache.
//!
//! Reads go L1 → Redis → database (see `cache`). A caller that has just executed a command
//! passes the position of its events as `at_least`: a cached row older than that is skipped
//! for the database, which the caller has already waited to reach (`Runner::wait_for`), so a
//! reply after "buy" shows the new balance.

use std::sync::Arc;

use crate::cache::ReadCache;
use crate::rows::{BalanceRow, TransactionRow, UserRow};
use crate::store::{HistoryPage, ReadError, ReadStore};

pub struct Queries {
    read: Arc<dyn ReadStore>,
    cache: Arc<ReadCache>,
}

impl Queries {
    pub fn new(read: Arc<dyn ReadStore>, cache: Arc<ReadCache>) -> Self {
        Self { read, cache }
    }

    pub fn cache(&self) -> &Arc<ReadCache> {
        &self.cache
    }

    /// The user's balance; with `at_least`, one that reflects at least that log position
    /// (for a balance the caller's own command changed).
    pub async fn balance(
        &self,
        user_id: i64,
        at_least: Option<u64>,
    ) -> Result<Option<BalanceRow>, ReadError> {
        // A write to this balance seen in the log (from any instance) raises the floor.
        let at_least = at_least.max(self.cache.required_balance(user_id).await);
        let read = &self.read;
        let cached = self
            .cache
            .balance(user_id, || read.balance(user_id))
            .await?;
        match (cached, at_least) {
            (Some(row), Some(wanted)) if row.position < wanted => {
                let fresh = self.read.balance(user_id).await?;
                if let Some(fresh) = &fresh {
                    self.cache.store_balance(fresh).await;
                }
                Ok(fresh)
            }
            (cached, _) => Ok(cached),
        }
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
        let read = &self.read;
        let cached = self.cache.user(user_id, || read.user(user_id)).await?;
        match (cached, self.cache.required_user(user_id).await) {
            (Some(row), Some(wanted)) if row.position < wanted => {
                let fresh = self.read.user(user_id).await?;
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
        let read = &self.read;
        self.cache
            .payment(invoice_uuid, || read.payment(invoice_uuid))
            .await
    }

    /// History is paged straight from the database: pages are not reused enough to cache.
    pub async fn history(
        &self,
        user_id: i64,
        before: Option<u64>,
        limit: u32,
    ) -> Result<HistoryPage, ReadError> {
        self.read.history(user_id, before, limit).await
    }
}
