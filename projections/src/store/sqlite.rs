//! Read models in the embedded SQLite file, beside the event log.
//!
//! SQLite has no decimal type: money is stored as decimal TEXT and parsed back exactly; times
//! are microseconds since the epoch. Transactions start with `BEGIN IMMEDIATE` so a projector
//! holds the write lock (and a fresh snapshot) from its first statement.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use super::{
    corrupt, drop_statement, swap_statements, table_name, Checkpoint, HistoryPage, ModelRow,
    ReadError, ReadStore, ReadTx, StatusFilter, MAX_HISTORY_PAGE, USERNAME_INDEX,
};
use crate::model::{Needs, Page, Table};
use crate::rows::{BalanceRow, TransactionKind, TransactionRow, UserRow};

/// The statements that create a table: the table itself first, then its secondary indexes
/// (which a rebuild adds only after the bulk load, when building them is cheaper).
fn ddl(table: Table, suffix: &str) -> Vec<String> {
    let t = table_name(table, suffix);
    match table {
        Table::Users => vec![
            format!(
                "CREATE TABLE {t} (
                user_id     INTEGER PRIMARY KEY,
                username    TEXT,
                language    TEXT,
                currency    TEXT    NOT NULL,
                created_at  INTEGER NOT NULL,
                position    INTEGER NOT NULL)"
            ),
            format!("CREATE INDEX {t}_{USERNAME_INDEX} ON {t} (lower(username))"),
        ],
        Table::Balances => vec![format!(
            "CREATE TABLE {t} (
                user_id     INTEGER NOT NULL,
                currency    TEXT    NOT NULL,
                available   TEXT    NOT NULL,
                reserved    TEXT    NOT NULL,
                total       TEXT    NOT NULL,
                debt        TEXT    NOT NULL DEFAULT '0',
                updated_at  INTEGER NOT NULL,
                position    INTEGER NOT NULL,
                PRIMARY KEY (user_id, currency))"
        )],
        Table::Transactions => vec![
            format!(
                "CREATE TABLE {t} (
                    id                    TEXT    PRIMARY KEY,
                    user_id               INTEGER NOT NULL,
                    transaction_type      TEXT    NOT NULL,
                    status                TEXT    NOT NULL,
                    amount                TEXT    NOT NULL,
                    currency              TEXT    NOT NULL,
                    description           TEXT,
                    external_id           TEXT,
                    transaction_metadata  TEXT    NOT NULL,
                    created_at            INTEGER NOT NULL,
                    updated_at            INTEGER NOT NULL,
                    created_position      INTEGER NOT NULL,
                    position              INTEGER NOT NULL)"
            ),
            // Not unique: external ids are other systems' names (invoice uuids, Fragment request
            // ids) and the ledger does not promise them unique across accounts. A unique index
            // here stopped the projector at the second order Fragment named alike (and SQLite's
            // INSERT OR REPLACE silently dropped the first order's row).
            format!("CREATE INDEX {t}_external_id_idx ON {t} (external_id)"),
            format!("CREATE INDEX {t}_user_history_idx ON {t} (user_id, created_position DESC)"),
            format!("CREATE INDEX {t}_status_idx ON {t} (status)"),
            format!("CREATE INDEX {t}_created_at_idx ON {t} (created_at)"),
        ],
    }
}

pub struct SqliteReadStore {
    pool: SqlitePool,
}

impl SqliteReadStore {
    /// Uses the event store's pool: read models live in the same file as the log.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn decimal(row: &SqliteRow, column: &str) -> Result<Decimal, ReadError> {
    let text: String = row.try_get(column)?;
    Decimal::from_str(&text).map_err(|e| corrupt(format!("{column} {text:?}: {e}")))
}

fn time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, ReadError> {
    let micros: i64 = row.try_get(column)?;
    DateTime::from_timestamp_micros(micros).ok_or_else(|| corrupt(format!("{column} out of range")))
}

fn user_from_row(row: &SqliteRow) -> Result<UserRow, ReadError> {
    Ok(UserRow {
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        language: row.try_get("language")?,
        currency: row.try_get("currency")?,
        registered_at: time(row, "created_at")?,
        position: row.try_get::<i64, _>("position")? as u64,
    })
}

fn balance_from_row(row: &SqliteRow) -> Result<BalanceRow, ReadError> {
    Ok(BalanceRow {
        user_id: row.try_get("user_id")?,
        currency: row.try_get("currency")?,
        available: decimal(row, "available")?,
        reserved: decimal(row, "reserved")?,
        debt: decimal(row, "debt")?,
        updated_at: time(row, "updated_at")?,
        position: row.try_get::<i64, _>("position")? as u64,
        no_money_events: false,
    })
}

fn transaction_from_row(row: &SqliteRow) -> Result<TransactionRow, ReadError> {
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("transaction_type")?;
    let metadata: String = row.try_get("transaction_metadata")?;
    Ok(TransactionRow {
        id: Uuid::parse_str(&id).map_err(corrupt)?,
        user_id: row.try_get("user_id")?,
        kind: TransactionKind::parse(&kind)
            .ok_or_else(|| corrupt(format!("transaction type {kind:?}")))?,
        status: row.try_get("status")?,
        amount: decimal(row, "amount")?,
        currency: row.try_get("currency")?,
        description: row.try_get("description")?,
        external_id: row.try_get("external_id")?,
        metadata: serde_json::from_str(&metadata).map_err(corrupt)?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        created_position: row.try_get::<i64, _>("created_position")? as u64,
        position: row.try_get::<i64, _>("position")? as u64,
    })
}

async fn table_exists(
    tx: &mut Transaction<'static, Sqlite>,
    name: &str,
) -> Result<bool, ReadError> {
    let found: Option<(String,)> =
        sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}

#[async_trait]
impl ReadStore for SqliteReadStore {
    async fn ensure_schema(&self) -> Result<(), ReadError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for table in Table::ALL {
            if !table_exists(&mut tx, table.name()).await? {
                for statement in ddl(table, "") {
                    sqlx::query(&statement).execute(&mut *tx).await?;
                }
            }
        }
        // Tables made before the debt column existed get it (every debt so far is zero).
        let has_debt: Option<(String,)> =
            sqlx::query_as("SELECT name FROM pragma_table_info('balances') WHERE name = 'debt'")
                .fetch_optional(&mut *tx)
                .await?;
        if has_debt.is_none() {
            sqlx::query("ALTER TABLE balances ADD COLUMN debt TEXT NOT NULL DEFAULT '0'")
                .execute(&mut *tx)
                .await?;
        }
        // Tables made while external ids were indexed as unique lose that index (INSERT OR
        // REPLACE silently dropped the first of two orders Fragment named alike) and get a
        // plain one instead.
        let unique: Vec<(String,)> = sqlx::query_as(
            "SELECT l.name FROM pragma_index_list('transactions') AS l \
             WHERE l.\"unique\" = 1 AND l.origin = 'c' \
             AND (SELECT group_concat(i.name) FROM pragma_index_info(l.name) AS i) = 'external_id'",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (index,) in unique {
            sqlx::query(&format!("DROP INDEX IF EXISTS \"{index}\""))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "CREATE INDEX IF NOT EXISTS transactions_external_id_idx ON transactions (external_id)",
            )
            .execute(&mut *tx)
            .await?;
        }
        // Tables made before users were found by name get the index that finds them.
        let named: Option<(String,)> = sqlx::query_as(&format!(
            "SELECT name FROM pragma_index_list('users') WHERE name LIKE '%{USERNAME_INDEX}'"
        ))
        .fetch_optional(&mut *tx)
        .await?;
        if named.is_none() {
            sqlx::query(&format!(
                "CREATE INDEX IF NOT EXISTS users_{USERNAME_INDEX} ON users (lower(username))"
            ))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn begin(&self) -> Result<Box<dyn ReadTx>, ReadError> {
        Ok(Box::new(SqliteReadTx {
            tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
        }))
    }

    async fn snapshot(&self) -> Result<Box<dyn ReadTx>, ReadError> {
        // A deferred transaction: in WAL mode its first read fixes the snapshot every later
        // read sees, and writers carry on beside it.
        Ok(Box::new(SqliteReadTx {
            tx: self.pool.begin().await?,
        }))
    }

    async fn user(&self, user_id: i64) -> Result<Option<UserRow>, ReadError> {
        let row = sqlx::query("SELECT * FROM users WHERE user_id = ?1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn balance(&self, user_id: i64) -> Result<Option<BalanceRow>, ReadError> {
        // One table per statement: a reader that holds locks on two tables can deadlock
        // with a rebuild swapping them. Accounts have one currency, so the first row is it.
        let row =
            sqlx::query("SELECT * FROM balances WHERE user_id = ?1 ORDER BY currency LIMIT 1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(balance_from_row).transpose()
    }

    async fn balance_as_of(&self, user_id: i64) -> Result<(Option<BalanceRow>, u64), ReadError> {
        // One statement, so one snapshot of the table and its checkpoint (see the trait).
        let row = sqlx::query(
            "SELECT COALESCE((SELECT position FROM projection_checkpoints WHERE name = 'balances'), 0) AS as_of, b.* \
             FROM (SELECT 1) AS one \
             LEFT JOIN (SELECT * FROM balances WHERE user_id = ?1 ORDER BY currency LIMIT 1) AS b ON 1",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        let as_of = row.try_get::<i64, _>("as_of")? as u64;
        let balance = match row.try_get::<Option<i64>, _>("user_id")? {
            Some(_) => Some(balance_from_row(&row)?),
            None => None,
        };
        Ok((balance, as_of))
    }

    async fn history(
        &self,
        user_id: i64,
        before: Option<u64>,
        limit: u32,
    ) -> Result<HistoryPage, ReadError> {
        let limit = limit.clamp(1, MAX_HISTORY_PAGE);
        let rows = sqlx::query(
            "SELECT * FROM transactions WHERE user_id = ?1 AND created_position < ?2 \
             ORDER BY created_position DESC LIMIT ?3",
        )
        .bind(user_id)
        .bind(before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let transactions = rows
            .iter()
            .map(transaction_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HistoryPage::from_rows(transactions, limit))
    }

    async fn rows(&self, users: &[i64], ids: &[Uuid]) -> Result<Page, ReadError> {
        // SQLite has no arrays to bind; single-row lookups on the embedded file are cheap.
        let mut page = Page::default();
        for user_id in users {
            if let Some(user) = self.user(*user_id).await? {
                page.users.insert(user.user_id, user);
            }
            for row in sqlx::query("SELECT * FROM balances WHERE user_id = ?1")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?
            {
                let balance = balance_from_row(&row)?;
                page.balances
                    .insert((balance.user_id, balance.currency.clone()), balance);
            }
        }
        for id in ids {
            if let Some(transaction) = self.transaction(*id).await? {
                page.transactions.insert(transaction.id, transaction);
            }
        }
        Ok(page)
    }

    async fn transaction(&self, id: Uuid) -> Result<Option<TransactionRow>, ReadError> {
        let row = sqlx::query("SELECT * FROM transactions WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(transaction_from_row).transpose()
    }

    async fn payment(&self, invoice_uuid: &str) -> Result<Option<TransactionRow>, ReadError> {
        let row = sqlx::query(
            "SELECT * FROM transactions WHERE external_id = ?1 AND transaction_type = 'recharge' \
             ORDER BY created_position LIMIT 1",
        )
        .bind(invoice_uuid)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(transaction_from_row).transpose()
    }

    async fn transactions_in_status(
        &self,
        filter: &StatusFilter,
        created_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<TransactionRow>, ReadError> {
        let rows = sqlx::query(&format!(
            "SELECT * FROM transactions \
             WHERE status IN {} AND transaction_type = ?1 AND created_at < ?2 \
             ORDER BY created_at LIMIT ?3",
            filter.statuses_sql()
        ))
        .bind(filter.transaction_type())
        .bind(created_before.timestamp_micros())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transaction_from_row).collect()
    }

    async fn users_named(&self, username: &str, limit: u32) -> Result<Vec<UserRow>, ReadError> {
        let rows = sqlx::query(
            "SELECT * FROM users WHERE lower(username) = lower(?1) ORDER BY user_id LIMIT ?2",
        )
        .bind(username)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn count_in_status(
        &self,
        filter: &StatusFilter,
    ) -> Result<Vec<(String, u64)>, ReadError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT status, count(*) FROM transactions \
             WHERE status IN {} AND transaction_type = ?1 GROUP BY status ORDER BY status",
            filter.statuses_sql()
        ))
        .bind(filter.transaction_type())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(s, n)| (s, n.max(0) as u64))
            .collect())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, ReadError> {
        let rows = sqlx::query(
            "SELECT name, position, updated_at FROM projection_checkpoints ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Checkpoint {
                    name: row.try_get("name")?,
                    position: row.try_get::<i64, _>("position")? as u64,
                    updated_at: time(row, "updated_at")?,
                })
            })
            .collect()
    }
}

struct SqliteReadTx {
    tx: Transaction<'static, Sqlite>,
}

#[async_trait]
impl ReadTx for SqliteReadTx {
    async fn lock_checkpoint(&mut self, name: &str) -> Result<u64, ReadError> {
        sqlx::query("INSERT OR IGNORE INTO projection_checkpoints (name, position, updated_at) VALUES (?1, 0, ?2)")
            .bind(name)
            .bind(Utc::now().timestamp_micros())
            .execute(&mut *self.tx)
            .await?;
        let (position,): (i64,) =
            sqlx::query_as("SELECT position FROM projection_checkpoints WHERE name = ?1")
                .bind(name)
                .fetch_one(&mut *self.tx)
                .await?;
        Ok(position as u64)
    }

    async fn checkpoint(&mut self, name: &str) -> Result<u64, ReadError> {
        let found: Option<(i64,)> =
            sqlx::query_as("SELECT position FROM projection_checkpoints WHERE name = ?1")
                .bind(name)
                .fetch_optional(&mut *self.tx)
                .await?;
        Ok(found.map_or(0, |(position,)| position as u64))
    }

    async fn set_checkpoint(&mut self, name: &str, position: u64) -> Result<(), ReadError> {
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(position as i64)
        .bind(Utc::now().timestamp_micros())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_checkpoint(&mut self, name: &str) -> Result<(), ReadError> {
        sqlx::query("DELETE FROM projection_checkpoints WHERE name = ?1")
            .bind(name)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn load(
        &mut self,
        table: Table,
        suffix: &str,
        needs: &Needs,
        page: &mut Page,
    ) -> Result<(), ReadError> {
        let name = table_name(table, suffix);
        match table {
            Table::Users => {
                for user_id in &needs.users {
                    let row = sqlx::query(&format!("SELECT * FROM {name} WHERE user_id = ?1"))
                        .bind(user_id)
                        .fetch_optional(&mut *self.tx)
                        .await?;
                    if let Some(row) = row {
                        let user = user_from_row(&row)?;
                        page.users.insert(user.user_id, user);
                    }
                }
            }
            Table::Balances => {
                for user_id in &needs.balances {
                    let rows = sqlx::query(&format!("SELECT * FROM {name} WHERE user_id = ?1"))
                        .bind(user_id)
                        .fetch_all(&mut *self.tx)
                        .await?;
                    for row in &rows {
                        let balance = balance_from_row(row)?;
                        page.balances
                            .insert((balance.user_id, balance.currency.clone()), balance);
                    }
                }
            }
            Table::Transactions => {
                for id in &needs.transactions {
                    let row = sqlx::query(&format!("SELECT * FROM {name} WHERE id = ?1"))
                        .bind(id.to_string())
                        .fetch_optional(&mut *self.tx)
                        .await?;
                    if let Some(row) = row {
                        let transaction = transaction_from_row(&row)?;
                        page.transactions.insert(transaction.id, transaction);
                    }
                }
            }
        }
        Ok(())
    }

    async fn save(&mut self, table: Table, suffix: &str, page: &Page) -> Result<(), ReadError> {
        let name = table_name(table, suffix);
        match table {
            Table::Users => {
                for r in page.users.values() {
                    sqlx::query(&format!(
                        "INSERT OR REPLACE INTO {name} (user_id, username, language, currency, created_at, position) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                    ))
                    .bind(r.user_id)
                    .bind(&r.username)
                    .bind(&r.language)
                    .bind(&r.currency)
                    .bind(r.registered_at.timestamp_micros())
                    .bind(r.position as i64)
                    .execute(&mut *self.tx)
                    .await?;
                }
            }
            Table::Balances => {
                for r in page.balances.values() {
                    sqlx::query(&format!(
                        "INSERT OR REPLACE INTO {name} (user_id, currency, available, reserved, total, debt, updated_at, position) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                    ))
                    .bind(r.user_id)
                    .bind(&r.currency)
                    .bind(r.available.to_string())
                    .bind(r.reserved.to_string())
                    .bind(r.total().to_string())
                    .bind(r.debt.to_string())
                    .bind(r.updated_at.timestamp_micros())
                    .bind(r.position as i64)
                    .execute(&mut *self.tx)
                    .await?;
                }
            }
            Table::Transactions => {
                for r in page.transactions.values() {
                    sqlx::query(&format!(
                        "INSERT OR REPLACE INTO {name} (id, user_id, transaction_type, status, amount, currency, \
                             description, external_id, transaction_metadata, created_at, updated_at, created_position, position) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                    ))
                    .bind(r.id.to_string())
                    .bind(r.user_id)
                    .bind(r.kind.as_str())
                    .bind(&r.status)
                    .bind(r.amount.to_string())
                    .bind(&r.currency)
                    .bind(&r.description)
                    .bind(&r.external_id)
                    .bind(r.metadata.to_string())
                    .bind(r.created_at.timestamp_micros())
                    .bind(r.updated_at.timestamp_micros())
                    .bind(r.created_position as i64)
                    .bind(r.position as i64)
                    .execute(&mut *self.tx)
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn create_table(&mut self, table: Table, suffix: &str) -> Result<(), ReadError> {
        self.drop_table(table, suffix).await?;
        for statement in ddl(table, suffix).iter().take(1) {
            sqlx::query(statement).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    async fn create_indexes(&mut self, table: Table, suffix: &str) -> Result<(), ReadError> {
        for statement in ddl(table, suffix).iter().skip(1) {
            sqlx::query(statement).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    async fn swap(&mut self, table: Table, suffix: &str) -> Result<(), ReadError> {
        for statement in swap_statements(table, suffix) {
            sqlx::query(&statement).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    async fn drop_table(&mut self, table: Table, suffix: &str) -> Result<(), ReadError> {
        sqlx::query(&drop_statement(table, suffix)?)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn scan(
        &mut self,
        table: Table,
        visit: &mut (dyn FnMut(ModelRow) + Send),
    ) -> Result<(), ReadError> {
        let sql = format!("SELECT * FROM {}", table.name());
        let mut rows = sqlx::query(&sql).fetch(&mut *self.tx);
        while let Some(row) = rows.try_next().await? {
            visit(match table {
                Table::Users => ModelRow::User(user_from_row(&row)?),
                Table::Balances => ModelRow::Balance(balance_from_row(&row)?),
                Table::Transactions => ModelRow::Transaction(transaction_from_row(&row)?),
            });
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), ReadError> {
        self.tx.commit().await?;
        Ok(())
    }
}
