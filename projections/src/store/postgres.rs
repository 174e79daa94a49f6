//! Read models in PostgreSQL: bulk upserts with `unnest`, checkpoints locked `FOR UPDATE`;
//! a rebuild's new rows through `COPY` ([`super::pg_copy`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, Row, Transaction};
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
                user_id     BIGINT      PRIMARY KEY,
                username    TEXT,
                language    TEXT,
                currency    TEXT        NOT NULL,
                created_at  TIMESTAMPTZ NOT NULL,
                position    BIGINT      NOT NULL)"
            ),
            format!("CREATE INDEX {t}_{USERNAME_INDEX} ON {t} (lower(username))"),
        ],
        Table::Balances => vec![format!(
            "CREATE TABLE {t} (
                user_id     BIGINT      NOT NULL,
                currency    TEXT        NOT NULL,
                available   NUMERIC     NOT NULL,
                reserved    NUMERIC     NOT NULL,
                total       NUMERIC     NOT NULL,
                debt        NUMERIC     NOT NULL DEFAULT 0,
                updated_at  TIMESTAMPTZ NOT NULL,
                position    BIGINT      NOT NULL,
                PRIMARY KEY (user_id, currency))"
        )],
        Table::Transactions => vec![
            format!(
                "CREATE TABLE {t} (
                    id                    UUID        PRIMARY KEY,
                    user_id               BIGINT      NOT NULL,
                    transaction_type      TEXT        NOT NULL,
                    status                TEXT        NOT NULL,
                    amount                NUMERIC     NOT NULL,
                    currency              TEXT        NOT NULL,
                    description           TEXT,
                    external_id           TEXT,
                    transaction_metadata  JSONB       NOT NULL,
                    created_at            TIMESTAMPTZ NOT NULL,
                    updated_at            TIMESTAMPTZ NOT NULL,
                    created_position      BIGINT      NOT NULL,
                    position              BIGINT      NOT NULL)"
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

pub struct PgReadStore {
    pool: PgPool,
}

impl PgReadStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn user_from_row(row: &PgRow) -> Result<UserRow, ReadError> {
    Ok(UserRow {
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        language: row.try_get("language")?,
        currency: row.try_get("currency")?,
        registered_at: row.try_get("created_at")?,
        position: row.try_get::<i64, _>("position")? as u64,
    })
}

fn balance_from_row(row: &PgRow) -> Result<BalanceRow, ReadError> {
    Ok(BalanceRow {
        user_id: row.try_get("user_id")?,
        currency: row.try_get("currency")?,
        available: row.try_get("available")?,
        reserved: row.try_get("reserved")?,
        debt: row.try_get("debt")?,
        updated_at: row.try_get("updated_at")?,
        position: row.try_get::<i64, _>("position")? as u64,
        no_money_events: false,
    })
}

const TRANSACTION_COLUMNS: &str = "id, user_id, transaction_type, status, amount, currency, description, external_id, \
     transaction_metadata::text AS transaction_metadata, created_at, updated_at, created_position, position";

fn transaction_from_row(row: &PgRow) -> Result<TransactionRow, ReadError> {
    let kind: String = row.try_get("transaction_type")?;
    let metadata: String = row.try_get("transaction_metadata")?;
    Ok(TransactionRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: TransactionKind::parse(&kind)
            .ok_or_else(|| corrupt(format!("transaction type {kind:?}")))?,
        status: row.try_get("status")?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        description: row.try_get("description")?,
        external_id: row.try_get("external_id")?,
        metadata: serde_json::from_str(&metadata).map_err(corrupt)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        created_position: row.try_get::<i64, _>("created_position")? as u64,
        position: row.try_get::<i64, _>("position")? as u64,
    })
}

async fn table_exists(pool: &PgPool, name: &str) -> Result<bool, ReadError> {
    let found: Option<(String,)> =
        sqlx::query_as("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    Ok(found.is_some())
}

#[async_trait]
impl ReadStore for PgReadStore {
    async fn ensure_schema(&self) -> Result<(), ReadError> {
        for table in Table::ALL {
            if !table_exists(&self.pool, table.name()).await? {
                let mut tx = self.pool.begin().await?;
                // Serialise with other instances creating the same tables at start-up.
                sqlx::query("SELECT pg_advisory_xact_lock(7415001)")
                    .execute(&mut *tx)
                    .await?;
                let exists: Option<(i32,)> = sqlx::query_as(
                    "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
                )
                .bind(table.name())
                .fetch_optional(&mut *tx)
                .await?;
                if exists.is_none() {
                    for statement in ddl(table, "") {
                        sqlx::query(&statement).execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
            }
        }
        // Tables made before the debt column existed get it (every debt so far is zero: the
        // events that create one are newer than the column).
        let has_debt: Option<(i32,)> = sqlx::query_as(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name = 'balances' AND column_name = 'debt'",
        )
        .fetch_optional(&self.pool)
        .await?;
        if has_debt.is_none() {
            sqlx::query(
                "ALTER TABLE balances ADD COLUMN IF NOT EXISTS debt NUMERIC NOT NULL DEFAULT 0",
            )
            .execute(&self.pool)
            .await?;
        }
        // Tables made while external ids were indexed as unique lose that index (a second
        // order Fragment named alike stopped the projector) and get a plain one instead.
        let unique: Vec<(String,)> = sqlx::query_as(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
             AND tablename = 'transactions' AND indexdef LIKE 'CREATE UNIQUE INDEX % (external_id)'",
        )
        .fetch_all(&self.pool)
        .await?;
        for (index,) in unique {
            let mut tx = self.pool.begin().await?;
            sqlx::query(&format!("DROP INDEX IF EXISTS \"{index}\""))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "CREATE INDEX IF NOT EXISTS transactions_external_id_idx ON transactions (external_id)",
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        // Tables made before users were found by name get the index that finds them.
        let named: Option<(i32,)> = sqlx::query_as(
            "SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() \
             AND tablename = 'users' AND indexdef LIKE '%lower(username)%'",
        )
        .fetch_optional(&self.pool)
        .await?;
        if named.is_none() {
            sqlx::query(&format!(
                "CREATE INDEX IF NOT EXISTS users_{USERNAME_INDEX} ON users (lower(username))"
            ))
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn begin(&self) -> Result<Box<dyn ReadTx>, ReadError> {
        let mut tx = self.pool.begin().await?;
        // Read models are derived data and commit together with their checkpoint: a commit
        // lost in a crash rolls back rows and checkpoint alike, and the projector applies
        // those events again. So projector commits need not wait for the WAL flush, which
        // leaves the disk's flushes to the ledger's appends (the event log itself always
        // commits synchronously; this setting is local to this transaction).
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        Ok(Box::new(PgReadTx { tx }))
    }

    async fn snapshot(&self) -> Result<Box<dyn ReadTx>, ReadError> {
        Ok(Box::new(PgReadTx {
            tx: self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?,
        }))
    }

    async fn user(&self, user_id: i64) -> Result<Option<UserRow>, ReadError> {
        let row = sqlx::query("SELECT * FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn balance(&self, user_id: i64) -> Result<Option<BalanceRow>, ReadError> {
        // One table per statement: a reader that holds locks on two tables can deadlock
        // with a rebuild swapping them. Accounts have one currency, so the first row is it.
        let row =
            sqlx::query("SELECT * FROM balances WHERE user_id = $1 ORDER BY currency LIMIT 1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(balance_from_row).transpose()
    }

    async fn balance_as_of(&self, user_id: i64) -> Result<(Option<BalanceRow>, u64), ReadError> {
        // Two tables in one statement, unlike the rule above, and safe: a rebuild renames
        // `balances` but only locks and updates rows of `projection_checkpoints`, which a
        // reader's share lock does not conflict with, so no lock cycle can form.
        let row = sqlx::query(
            "SELECT COALESCE((SELECT position FROM projection_checkpoints WHERE name = 'balances'), 0) AS as_of, b.* \
             FROM (SELECT 1) AS one \
             LEFT JOIN LATERAL (SELECT * FROM balances WHERE user_id = $1 ORDER BY currency LIMIT 1) AS b ON true",
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
        let rows = sqlx::query(&format!(
            "SELECT {TRANSACTION_COLUMNS} FROM transactions \
             WHERE user_id = $1 AND created_position < $2 ORDER BY created_position DESC LIMIT $3"
        ))
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
        let mut page = Page::default();
        if !users.is_empty() {
            for row in sqlx::query("SELECT * FROM users WHERE user_id = ANY($1)")
                .bind(users)
                .fetch_all(&self.pool)
                .await?
            {
                let user = user_from_row(&row)?;
                page.users.insert(user.user_id, user);
            }
            for row in sqlx::query("SELECT * FROM balances WHERE user_id = ANY($1)")
                .bind(users)
                .fetch_all(&self.pool)
                .await?
            {
                let balance = balance_from_row(&row)?;
                page.balances
                    .insert((balance.user_id, balance.currency.clone()), balance);
            }
        }
        if !ids.is_empty() {
            for row in sqlx::query(&format!(
                "SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id = ANY($1)"
            ))
            .bind(ids)
            .fetch_all(&self.pool)
            .await?
            {
                let transaction = transaction_from_row(&row)?;
                page.transactions.insert(transaction.id, transaction);
            }
        }
        Ok(page)
    }

    async fn transaction(&self, id: Uuid) -> Result<Option<TransactionRow>, ReadError> {
        let row = sqlx::query(&format!(
            "SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(transaction_from_row).transpose()
    }

    async fn payment(&self, invoice_uuid: &str) -> Result<Option<TransactionRow>, ReadError> {
        let row = sqlx::query(&format!(
            "SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE external_id = $1 AND transaction_type = 'recharge' \
             ORDER BY created_position LIMIT 1"
        ))
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
            "SELECT {TRANSACTION_COLUMNS} FROM transactions \
             WHERE status IN {} AND transaction_type = $1 AND created_at < $2 \
             ORDER BY created_at LIMIT $3",
            filter.statuses_sql()
        ))
        .bind(filter.transaction_type())
        .bind(created_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transaction_from_row).collect()
    }

    async fn users_named(&self, username: &str, limit: u32) -> Result<Vec<UserRow>, ReadError> {
        let rows = sqlx::query(
            "SELECT * FROM users WHERE lower(username) = lower($1) ORDER BY user_id LIMIT $2",
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
             WHERE status IN {} AND transaction_type = $1 GROUP BY status ORDER BY status",
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
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }
}

struct PgReadTx {
    tx: Transaction<'static, Postgres>,
}

#[async_trait]
impl ReadTx for PgReadTx {
    async fn lock_checkpoint(&mut self, name: &str) -> Result<u64, ReadError> {
        sqlx::query("INSERT INTO projection_checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .execute(&mut *self.tx)
            .await?;
        let (position,): (i64,) = sqlx::query_as(
            "SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
        )
        .bind(name)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(position as u64)
    }

    async fn checkpoint(&mut self, name: &str) -> Result<u64, ReadError> {
        let found: Option<(i64,)> =
            sqlx::query_as("SELECT position FROM projection_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *self.tx)
                .await?;
        Ok(found.map_or(0, |(position,)| position as u64))
    }

    async fn set_checkpoint(&mut self, name: &str, position: u64) -> Result<(), ReadError> {
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES ($1, $2, now()) \
             ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
        )
        .bind(name)
        .bind(position as i64)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_checkpoint(&mut self, name: &str) -> Result<(), ReadError> {
        sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
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
            Table::Users if !needs.users.is_empty() => {
                let rows = sqlx::query(&format!("SELECT * FROM {name} WHERE user_id = ANY($1)"))
                    .bind(&needs.users)
                    .fetch_all(&mut *self.tx)
                    .await?;
                for row in &rows {
                    let user = user_from_row(row)?;
                    page.users.insert(user.user_id, user);
                }
            }
            Table::Balances if !needs.balances.is_empty() => {
                let rows = sqlx::query(&format!("SELECT * FROM {name} WHERE user_id = ANY($1)"))
                    .bind(&needs.balances)
                    .fetch_all(&mut *self.tx)
                    .await?;
                for row in &rows {
                    let balance = balance_from_row(row)?;
                    page.balances
                        .insert((balance.user_id, balance.currency.clone()), balance);
                }
            }
            Table::Transactions if !needs.transactions.is_empty() => {
                let rows = sqlx::query(&format!(
                    "SELECT {TRANSACTION_COLUMNS} FROM {name} WHERE id = ANY($1)"
                ))
                .bind(&needs.transactions)
                .fetch_all(&mut *self.tx)
                .await?;
                for row in &rows {
                    let transaction = transaction_from_row(row)?;
                    page.transactions.insert(transaction.id, transaction);
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn save(&mut self, table: Table, suffix: &str, page: &Page) -> Result<(), ReadError> {
        let name = table_name(table, suffix);
        match table {
            Table::Users if !page.users.is_empty() => {
                let rows: Vec<&UserRow> = page.users.values().collect();
                sqlx::query(&format!(
                    "INSERT INTO {name} (user_id, username, language, currency, created_at, position) \
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[]) \
                     ON CONFLICT (user_id) DO UPDATE SET username = EXCLUDED.username, language = EXCLUDED.language, \
                     currency = EXCLUDED.currency, position = EXCLUDED.position"
                ))
                .bind(rows.iter().map(|r| r.user_id).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.username.clone()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.language.clone()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.currency.clone()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.registered_at).collect::<Vec<DateTime<Utc>>>())
                .bind(rows.iter().map(|r| r.position as i64).collect::<Vec<_>>())
                .execute(&mut *self.tx)
                .await?;
            }
            Table::Balances if !page.balances.is_empty() => {
                let rows: Vec<&BalanceRow> = page.balances.values().collect();
                sqlx::query(&format!(
                    "INSERT INTO {name} (user_id, currency, available, reserved, total, debt, updated_at, position) \
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::numeric[], $4::numeric[], $5::numeric[], \
                                          $6::numeric[], $7::timestamptz[], $8::bigint[]) \
                     ON CONFLICT (user_id, currency) DO UPDATE SET available = EXCLUDED.available, \
                     reserved = EXCLUDED.reserved, total = EXCLUDED.total, debt = EXCLUDED.debt, \
                     updated_at = EXCLUDED.updated_at, position = EXCLUDED.position"
                ))
                .bind(rows.iter().map(|r| r.user_id).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.currency.clone()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.available).collect::<Vec<Decimal>>())
                .bind(rows.iter().map(|r| r.reserved).collect::<Vec<Decimal>>())
                .bind(rows.iter().map(|r| r.total()).collect::<Vec<Decimal>>())
                .bind(rows.iter().map(|r| r.debt).collect::<Vec<Decimal>>())
                .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<DateTime<Utc>>>())
                .bind(rows.iter().map(|r| r.position as i64).collect::<Vec<_>>())
                .execute(&mut *self.tx)
                .await?;
            }
            Table::Transactions if !page.transactions.is_empty() => {
                let rows: Vec<&TransactionRow> = page.transactions.values().collect();
                sqlx::query(&format!(
                    "INSERT INTO {name} (id, user_id, transaction_type, status, amount, currency, description, \
                         external_id, transaction_metadata, created_at, updated_at, created_position, position) \
                     SELECT i, u, k, s, a, c, d, e, m::jsonb, ca, ua, cp, p \
                     FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::numeric[], $6::text[], \
                                 $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[], \
                                 $12::bigint[], $13::bigint[]) AS x(i, u, k, s, a, c, d, e, m, ca, ua, cp, p) \
                     ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, amount = EXCLUDED.amount, \
                     external_id = EXCLUDED.external_id, transaction_metadata = EXCLUDED.transaction_metadata, \
                     updated_at = EXCLUDED.updated_at, position = EXCLUDED.position"
                ))
                .bind(rows.iter().map(|r| r.id).collect::<Vec<Uuid>>())
                .bind(rows.iter().map(|r| r.user_id).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.amount).collect::<Vec<Decimal>>())
                .bind(rows.iter().map(|r| r.currency.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.description.clone()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.external_id.clone()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.metadata.to_string()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.created_at).collect::<Vec<DateTime<Utc>>>())
                .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<DateTime<Utc>>>())
                .bind(rows.iter().map(|r| r.created_position as i64).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.position as i64).collect::<Vec<_>>())
                .execute(&mut *self.tx)
                .await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn insert_new(
        &mut self,
        table: Table,
        suffix: &str,
        page: &Page,
    ) -> Result<(), ReadError> {
        super::pg_copy::copy_new(&mut self.tx, table, suffix, page).await
    }

    async fn create_table(&mut self, table: Table, suffix: &str) -> Result<(), ReadError> {
        self.drop_table(table, suffix).await?;
        // Unlogged while it is bulk-loaded: no WAL record per row. A crash meanwhile empties
        // it, which only fails the rebuild; `create_indexes` makes it logged before use.
        for statement in ddl(table, suffix).iter().take(1) {
            let unlogged = statement.replacen("CREATE TABLE", "CREATE UNLOGGED TABLE", 1);
            sqlx::query(&unlogged).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    async fn create_indexes(&mut self, table: Table, suffix: &str) -> Result<(), ReadError> {
        let name = table_name(table, suffix);
        sqlx::query(&format!("ALTER TABLE {name} SET LOGGED"))
            .execute(&mut *self.tx)
            .await?;
        for statement in ddl(table, suffix).iter().skip(1) {
            sqlx::query(statement).execute(&mut *self.tx).await?;
        }
        // Statistics before the swap: a bulk-loaded table has none until autovacuum gets to
        // it (never, where it is off), and without them the planner walked the whole
        // `created_at` index for the operators' open purchases (230 ms of a 230 ms query on
        // the bench log, against 0.5 ms with them).
        sqlx::query(&format!("ANALYZE {name}"))
            .execute(&mut *self.tx)
            .await?;
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
        let sql = match table {
            Table::Transactions => format!("SELECT {TRANSACTION_COLUMNS} FROM transactions"),
            other => format!("SELECT * FROM {}", other.name()),
        };
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
