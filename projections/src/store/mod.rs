//! Where read models live: the `ReadStore` trait and its PostgreSQL and SQLite backends.
//!
//! A projector works inside one [`ReadTx`]: it locks its checkpoint, loads the rows a page of
//! events touches, folds the page (`model::Page`) and saves the rows and the new checkpoint,
//! all in the same transaction, so every event takes effect exactly once. Tables are named
//! `<table><suffix>`: the live ones have no suffix, a blue/green rebuild writes into a fresh
//! suffix and swaps the tables in one transaction.

mod pg_copy;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::{Needs, Page, Table};
use crate::rows::{BalanceRow, TransactionRow, UserRow};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("read-model database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("read-model row is unreadable: {0}")]
    Corrupt(String),
}

/// One row of any read model.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelRow {
    User(UserRow),
    Balance(BalanceRow),
    Transaction(TransactionRow),
}

/// A projector's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub name: String,
    pub position: u64,
    pub updated_at: DateTime<Utc>,
}

/// One page of a user's transaction history, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub transactions: Vec<TransactionRow>,
    /// Pass back as `before` for the next (older) page; `None` when this was the last.
    pub next_cursor: Option<u64>,
}

/// Which transactions [`ReadStore::transactions_in_status`] returns. Only these fixed sets
/// exist, so their SQL is built from constants, never from input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Recharges waiting for their invoice to be paid, or for the provider to lift a hold.
    PendingRecharges,
    /// Recharges an operator must decide: in review, or on hold.
    RechargesAwaitingDecision,
    /// Purchases still holding a reservation: reserved, ordered at Fragment, or paid (sent).
    OpenPurchases,
}

impl StatusFilter {
    pub(crate) fn transaction_type(self) -> &'static str {
        match self {
            Self::PendingRecharges | Self::RechargesAwaitingDecision => "recharge",
            Self::OpenPurchases => "purchase",
        }
    }

    /// The statuses as an SQL list of literals.
    pub(crate) fn statuses_sql(self) -> &'static str {
        match self {
            Self::PendingRecharges => "('pending', 'on_hold')",
            Self::RechargesAwaitingDecision => "('needs_review', 'on_hold')",
            Self::OpenPurchases => "('reserved', 'ordered', 'sent')",
        }
    }
}

/// Most rows one history page may return.
pub const MAX_HISTORY_PAGE: u32 = 200;

#[async_trait]
pub trait ReadStore: Send + Sync + 'static {
    /// Creates the live tables (and their indexes) that do not exist yet.
    async fn ensure_schema(&self) -> Result<(), ReadError>;

    async fn begin(&self) -> Result<Box<dyn ReadTx>, ReadError>;

    /// A read-only transaction on one consistent snapshot, for audits: checkpoints and tables
    /// read in it agree with each other, and the projectors keep running meanwhile.
    async fn snapshot(&self) -> Result<Box<dyn ReadTx>, ReadError>;

    async fn user(&self, user_id: i64) -> Result<Option<UserRow>, ReadError>;

    /// The user's balance in their account currency.
    async fn balance(&self, user_id: i64) -> Result<Option<BalanceRow>, ReadError>;

    /// [`ReadStore::balance`], with the balances projection's checkpoint read in the same
    /// statement, so on one snapshot: when there is no row, no balance event of this user is
    /// at or below that position (the projector commits rows and checkpoint together). What
    /// lets a zero balance be cached under the position guard (`Queries::balance`).
    async fn balance_as_of(&self, user_id: i64) -> Result<(Option<BalanceRow>, u64), ReadError>;

    /// History newest first; `before` is a cursor from a previous page.
    async fn history(
        &self,
        user_id: i64,
        before: Option<u64>,
        limit: u32,
    ) -> Result<HistoryPage, ReadError>;

    /// The profiles and balances of `users` and the transactions `ids`, in a few queries (for
    /// the cache projector, which refreshes everything a page of events touched).
    async fn rows(&self, users: &[i64], ids: &[uuid::Uuid]) -> Result<Page, ReadError>;

    /// One recharge, purchase or adjustment by its id.
    async fn transaction(&self, id: uuid::Uuid) -> Result<Option<TransactionRow>, ReadError>;

    /// The recharge behind a Heleket invoice.
    async fn payment(&self, invoice_uuid: &str) -> Result<Option<TransactionRow>, ReadError>;

    /// Transactions of one type in one of `statuses`, created before `created_before`, oldest
    /// first: the recharges still `pending` the reconciler asks the payment provider about,
    /// the purchases still open that operators look at.
    async fn transactions_in_status(
        &self,
        filter: &StatusFilter,
        created_before: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<TransactionRow>, ReadError>;

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, ReadError>;

    /// The users whose username is `username` (without `@`, compared case-insensitively, as
    /// Telegram does), by id; at most `limit`. Telegram names are unique at one moment, but
    /// the table keeps what each user registered with, so an old name can be on two rows.
    async fn users_named(&self, username: &str, limit: u32) -> Result<Vec<UserRow>, ReadError>;

    /// How many transactions of `filter`'s type are in each of its statuses (statuses with
    /// none are left out), in status order.
    async fn count_in_status(&self, filter: &StatusFilter)
        -> Result<Vec<(String, u64)>, ReadError>;
}

/// A read-model transaction. Dropped without `commit`, it rolls back.
#[async_trait]
pub trait ReadTx: Send {
    /// Locks the checkpoint row (creating it at 0) until commit, so two instances never
    /// apply the same page, and returns its position.
    async fn lock_checkpoint(&mut self, name: &str) -> Result<u64, ReadError>;

    /// Reads a checkpoint without locking it (0 if it does not exist yet).
    async fn checkpoint(&mut self, name: &str) -> Result<u64, ReadError>;

    async fn set_checkpoint(&mut self, name: &str, position: u64) -> Result<(), ReadError>;

    async fn delete_checkpoint(&mut self, name: &str) -> Result<(), ReadError>;

    /// Loads into `page` the existing rows of `table` that `needs` names.
    async fn load(
        &mut self,
        table: Table,
        suffix: &str,
        needs: &Needs,
        page: &mut Page,
    ) -> Result<(), ReadError>;

    /// Inserts or replaces the page's rows of `table`.
    async fn save(&mut self, table: Table, suffix: &str, page: &Page) -> Result<(), ReadError>;

    /// Writes the page's rows of `table`, none of which exists yet: a rebuild's first write
    /// of them. PostgreSQL copies them in (`COPY`), which fails on a row that does exist;
    /// elsewhere this is [`ReadTx::save`].
    async fn insert_new(
        &mut self,
        table: Table,
        suffix: &str,
        page: &Page,
    ) -> Result<(), ReadError> {
        self.save(table, suffix, page).await
    }

    /// Creates `table` under `suffix` for a bulk load: without secondary indexes, and on
    /// PostgreSQL unlogged. Drops a leftover of the same name first.
    async fn create_table(&mut self, table: Table, suffix: &str) -> Result<(), ReadError>;

    /// Makes `table<suffix>` durable (PostgreSQL: `SET LOGGED`) and adds its secondary
    /// indexes and the unique external id.
    async fn create_indexes(&mut self, table: Table, suffix: &str) -> Result<(), ReadError>;

    /// Makes `table<suffix>` the live table and drops the previous one.
    async fn swap(&mut self, table: Table, suffix: &str) -> Result<(), ReadError>;

    async fn drop_table(&mut self, table: Table, suffix: &str) -> Result<(), ReadError>;

    /// Hands every row of a live table to `visit`, one at a time, so an audit can compare a
    /// table of any size without holding it in memory.
    async fn scan(
        &mut self,
        table: Table,
        visit: &mut (dyn FnMut(ModelRow) + Send),
    ) -> Result<(), ReadError>;

    async fn commit(self: Box<Self>) -> Result<(), ReadError>;
}

/// Checks a table suffix: empty (live) or `_` followed by lower-case letters and digits, so
/// it can be spliced into SQL safely.
pub fn valid_suffix(suffix: &str) -> bool {
    suffix.is_empty()
        || (suffix.len() <= 32
            && suffix.starts_with('_')
            && suffix[1..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

pub(crate) fn table_name(table: Table, suffix: &str) -> String {
    debug_assert!(valid_suffix(suffix));
    format!("{}{suffix}", table.name())
}

impl HistoryPage {
    /// Builds a page from up to `limit + 1` rows newest first: the extra row, if present,
    /// only tells that there is an older page.
    pub(crate) fn from_rows(mut transactions: Vec<TransactionRow>, limit: u32) -> HistoryPage {
        let next_cursor = if transactions.len() > limit as usize {
            transactions.truncate(limit as usize);
            transactions.last().map(|t| t.created_position)
        } else {
            None
        };
        HistoryPage {
            transactions,
            next_cursor,
        }
    }
}

/// The index on `users` that finds a user by name, created with the table and added to a
/// table made before it existed.
pub(crate) const USERNAME_INDEX: &str = "username_idx";

/// The statements that put `table<suffix>` in place of the live table, in one transaction.
pub(crate) fn swap_statements(table: Table, suffix: &str) -> [String; 3] {
    let live = table.name();
    let shadow = table_name(table, suffix);
    let retired = format!("{live}_retired{suffix}");
    [
        format!("ALTER TABLE {live} RENAME TO {retired}"),
        format!("ALTER TABLE {shadow} RENAME TO {live}"),
        format!("DROP TABLE {retired}"),
    ]
}

/// The statement that drops a rebuild's table; refuses live tables.
pub(crate) fn drop_statement(table: Table, suffix: &str) -> Result<String, ReadError> {
    if suffix.is_empty() || !valid_suffix(suffix) {
        return Err(corrupt("refusing to drop a live table"));
    }
    Ok(format!(
        "DROP TABLE IF EXISTS {}",
        table_name(table, suffix)
    ))
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> ReadError {
    ReadError::Corrupt(what.to_string())
}
