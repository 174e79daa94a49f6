//! The PostgreSQL event store: production backend, shared by every app instance.
//!
//! Appends move the one-row `ledger_head` in the statement that inserts their rows, holding
//! its row lock to the commit, so positions are gapless and in commit order across
//! processes; the group-commit writer makes that cheap by doing it once per batch, in three
//! round trips ([`PgBackend`]). Commits announce the new head with `NOTIFY`, which every
//! instance's listener turns into its `committed` signal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use tokio::sync::watch;
use uuid::Uuid;

use super::batch::{advance, Appender, BatchBackend};
use super::plan::{lookups, plan_batch, to_micros, BatchFacts, BatchPlan, StoredAt, StreamTip};
use super::{
    AppendError, AppendOutcome, AppendRequest, AppendTicket, CommitMode, EventStore, LogHead,
    RecordedEvent, StoreError, VerifiedCheckpoint,
};
use crate::chain::Hash;
use crate::ids::EventId;

/// The channel commits are announced on.
pub const NOTIFY_CHANNEL: &str = "starledger_events";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Creates or upgrades the schema.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| StoreError::Database(format!("migration failed: {e}")))
}

/// Opens a pool with settings suited to the store.
pub async fn connect_pool(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?)
}

pub struct PostgresStore {
    pool: PgPool,
    appender: Appender<PgBackend>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresStore {
    /// A store on an already-migrated database. Starts the writer and the NOTIFY listener.
    pub async fn open(pool: PgPool, mode: CommitMode) -> Result<Self, StoreError> {
        let head = read_head(&pool).await?;
        let (committed, _) = watch::channel(head.position);
        let listener = spawn_listener(pool.clone(), committed.clone());
        let appender = Appender::start(Arc::new(PgBackend::new(pool.clone())), mode, committed);
        Ok(Self {
            pool,
            appender,
            listener,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn spawn_listener(pool: PgPool, committed: watch::Sender<u64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, "cannot LISTEN for commits; retrying (readers fall back to polling)");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(error) = listener.listen(NOTIFY_CHANNEL).await {
                tracing::warn!(%error, "LISTEN failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        if let Ok(position) = notification.payload().parse::<u64>() {
                            advance(&committed, position);
                        }
                    }
                    // Connection lost: notifications may have been missed, so re-read the head.
                    Ok(None) => {
                        if let Ok(head) = read_head(&pool).await {
                            advance(&committed, head.position);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "commit listener failed; reconnecting");
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

async fn read_head(pool: &PgPool) -> Result<LogHead, StoreError> {
    let row = sqlx::query("SELECT position, hash FROM ledger_head WHERE id")
        .fetch_one(pool)
        .await?;
    head_from_row(&row)
}

fn head_from_row(row: &PgRow) -> Result<LogHead, StoreError> {
    let position: i64 = row.try_get("position")?;
    let hash: Vec<u8> = row.try_get("hash")?;
    Ok(LogHead {
        position: position as u64,
        hash: Hash::from_slice(&hash).ok_or(StoreError::Corrupt {
            position: position as u64,
            reason: "ledger head hash is not 32 bytes".into(),
        })?,
    })
}

const SELECT_EVENT: &str =
    "SELECT position, stream_id, stream_version, event_id, event_type, schema_version, \
     data::text AS data, metadata::text AS metadata, recorded_at, prev_hash, hash FROM events";

fn event_from_row(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get("position")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        position: position as u64,
        reason,
    };
    let data: String = row.try_get("data")?;
    let metadata: String = row.try_get("metadata")?;
    let prev_hash: Vec<u8> = row.try_get("prev_hash")?;
    let hash: Vec<u8> = row.try_get("hash")?;
    Ok(RecordedEvent {
        position: position as u64,
        stream_id: row.try_get("stream_id")?,
        stream_version: row.try_get::<i64, _>("stream_version")? as u64,
        event_id: EventId(row.try_get::<Uuid, _>("event_id")?),
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        data,
        metadata,
        recorded_at: row.try_get::<DateTime<Utc>, _>("recorded_at")?,
        prev_hash: Hash::from_slice(&prev_hash)
            .ok_or_else(|| corrupt("prev_hash is not 32 bytes".into()))?,
        hash: Hash::from_slice(&hash).ok_or_else(|| corrupt("hash is not 32 bytes".into()))?,
    })
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn enqueue(&self, request: AppendRequest) -> Result<AppendTicket, AppendError> {
        self.appender.enqueue(request).await
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        select_stream(&self.pool, stream_id, after_version).await
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        select_all(&self.pool, after_position, limit).await
    }

    async fn read_events(&self, ids: &[EventId]) -> Result<Vec<RecordedEvent>, StoreError> {
        select_events(&self.pool, ids).await
    }

    async fn head(&self) -> Result<LogHead, StoreError> {
        read_head(&self.pool).await
    }

    async fn latest_verified_checkpoint(&self) -> Result<Option<VerifiedCheckpoint>, StoreError> {
        select_latest_checkpoint(&self.pool).await
    }

    async fn record_verified_checkpoint(
        &self,
        checkpoint: &VerifiedCheckpoint,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO verified_checkpoints \
                 (position, head_hash, verified_at, tool_version, state_hash, state) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(checkpoint.position as i64)
        .bind(checkpoint.head_hash.0.as_slice())
        .bind(checkpoint.verified_at)
        .bind(&checkpoint.tool_version)
        .bind(checkpoint.state_hash.0.as_slice())
        .bind(checkpoint.state.as_deref())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE verified_checkpoints SET state = NULL WHERE id < $1 AND state IS NOT NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    fn committed(&self) -> watch::Receiver<u64> {
        self.appender.committed()
    }
}

async fn select_latest_checkpoint(pool: &PgPool) -> Result<Option<VerifiedCheckpoint>, StoreError> {
    let row = sqlx::query(
        "SELECT position, head_hash, verified_at, tool_version, state_hash, state \
         FROM verified_checkpoints ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let position = row.try_get::<i64, _>("position")? as u64;
    let hash = |column: &str| -> Result<Hash, StoreError> {
        let bytes: Vec<u8> = row.try_get(column)?;
        Hash::from_slice(&bytes).ok_or_else(|| StoreError::Corrupt {
            position,
            reason: format!("verified checkpoint {column} is not 32 bytes"),
        })
    };
    Ok(Some(VerifiedCheckpoint {
        position,
        head_hash: hash("head_hash")?,
        verified_at: row.try_get("verified_at")?,
        tool_version: row.try_get("tool_version")?,
        state_hash: hash("state_hash")?,
        state: row.try_get("state")?,
    }))
}

async fn select_stream(
    pool: &PgPool,
    stream_id: &str,
    after_version: u64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT_EVENT} WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version"
    ))
    .bind(stream_id)
    .bind(after_version as i64)
    .fetch_all(pool)
    .await?;
    rows.iter().map(event_from_row).collect()
}

async fn select_all(
    pool: &PgPool,
    after_position: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT_EVENT} WHERE position > $1 ORDER BY position LIMIT $2"
    ))
    .bind(after_position as i64)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter().map(event_from_row).collect()
}

async fn select_events(pool: &PgPool, ids: &[EventId]) -> Result<Vec<RecordedEvent>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
    let rows = sqlx::query(&format!(
        "{SELECT_EVENT} WHERE event_id = ANY($1) ORDER BY position"
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    rows.iter().map(event_from_row).collect()
}

/// The log on a streaming standby (`DATABASE_READ_URL`), for readers only: it never appends
/// (a standby refuses writes) and does not LISTEN (a standby cannot), so `committed` stays
/// where it was opened; readers that must see a position ask [`EventStore::head`].
pub struct PostgresLogReader {
    pool: PgPool,
    committed: watch::Sender<u64>,
}

impl PostgresLogReader {
    pub async fn open(pool: PgPool) -> Result<Self, StoreError> {
        let head = read_head(&pool).await?;
        Ok(Self {
            pool,
            committed: watch::Sender::new(head.position),
        })
    }
}

#[async_trait]
impl EventStore for PostgresLogReader {
    async fn enqueue(&self, _request: AppendRequest) -> Result<AppendTicket, AppendError> {
        Err(AppendError::Invalid(
            "this is the log on a read-only standby: append on the primary".into(),
        ))
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        select_stream(&self.pool, stream_id, after_version).await
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        select_all(&self.pool, after_position, limit).await
    }

    async fn read_events(&self, ids: &[EventId]) -> Result<Vec<RecordedEvent>, StoreError> {
        select_events(&self.pool, ids).await
    }

    async fn head(&self) -> Result<LogHead, StoreError> {
        read_head(&self.pool).await
    }

    async fn latest_verified_checkpoint(&self) -> Result<Option<VerifiedCheckpoint>, StoreError> {
        select_latest_checkpoint(&self.pool).await
    }

    async fn record_verified_checkpoint(
        &self,
        _checkpoint: &VerifiedCheckpoint,
    ) -> Result<(), StoreError> {
        Err(StoreError::Database(
            "this is the log on a read-only standby: checkpoints are recorded on the primary"
                .into(),
        ))
    }

    fn committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }
}

/// One group commit, in three round trips to PostgreSQL:
///
/// 1. the pool's health check of the connection (`test_before_acquire`): a dead connection
///    is replaced before the batch is tried on it, not discovered by a failed commit;
/// 2. one statement reading the facts the batch is planned on, in one snapshot: the head,
///    each stream's last event, and which of the batch's event ids are stored already;
/// 3. one statement writing the batch, conditional on the head still being the one read:
///    it moves `ledger_head` from the old head to the new one (`WHERE position = old`), and
///    only if that row moved inserts the rows and sends the `NOTIFY`; autocommit makes the
///    three one transaction.
///
/// Planning (versions, positions, the hash chain) stays in Rust between 2 and 3. Step 3's
/// `UPDATE` takes the head's row lock and holds it to the statement's commit, so commit order
/// is still position order across processes, and positions stay gapless: a writer whose head
/// moved meanwhile waits for the lock, finds the head changed, and writes nothing.
///
/// That loser then commits its batch in a transaction that locks the head first
/// ([`PgBackend::commit_locked`], the transaction this path replaced), and so do the next
/// [`LOCKED_AFTER_A_LOSS`] batches: while several writers share the log (instances, or
/// `CommitMode::PerAppend`), queueing on the lock is cheaper than planning batches that lose.
/// Every batch gets through either way.
pub struct PgBackend {
    pool: PgPool,
    /// Batches still to commit lock-first since the last lost one.
    locked_left: AtomicU32,
}

/// Batches committed lock-first after one lost the head to another writer.
pub const LOCKED_AFTER_A_LOSS: u32 = 64;

/// The facts of a batch, in one statement and one snapshot: the head (`kind` 'h'), each
/// stream's last event ('t') and the stored events among the batch's ids ('x').
const FACTS: &str = "\
    SELECT 'h' AS kind, NULL::text AS stream_id, position, NULL::bigint AS stream_version, \
           hash, NULL::uuid AS event_id \
      FROM ledger_head WHERE id \
    UNION ALL \
    SELECT 't', s.stream_id, NULL, e.stream_version, NULL, e.event_id \
      FROM unnest($1::text[]) AS s(stream_id) \
      CROSS JOIN LATERAL (SELECT stream_version, event_id FROM events \
          WHERE events.stream_id = s.stream_id ORDER BY stream_version DESC LIMIT 1) AS e \
    UNION ALL \
    SELECT 'x', stream_id, position, stream_version, NULL, event_id \
      FROM events WHERE event_id = ANY($2)";

/// The columns of the rows to insert, `$1` to `$11`.
const ROWS: &str = "\
    SELECT p, s, v, i, t, sv, d::json, m::json, r, ph, h \
      FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::int[], \
                  $7::text[], $8::text[], $9::timestamptz[], $10::bytea[], $11::bytea[]) \
           AS x(p, s, v, i, t, sv, d, m, r, ph, h)";

const INSERT_INTO: &str = "INSERT INTO events (position, stream_id, stream_version, event_id, \
    event_type, schema_version, data, metadata, recorded_at, prev_hash, hash) ";

#[async_trait]
impl BatchBackend for PgBackend {
    async fn commit_batch(
        &self,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, StoreError> {
        let contended = self
            .locked_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if contended {
            return self.commit_locked(requests).await;
        }
        let mut conn = self.pool.acquire().await?;
        let (plan, read_head) = plan_on(&mut conn, requests).await?;
        if plan.rows.is_empty() {
            return Ok(plan.outcomes);
        }
        let columns = Columns::of(&plan.rows);
        let written = columns
            .bind(sqlx::query(&CONDITIONAL_WRITE))
            .bind(plan.head.position as i64)
            .bind(plan.head.hash.0.to_vec())
            .bind(read_head.position as i64)
            .bind(read_head.hash.0.to_vec())
            .bind(NOTIFY_CHANNEL)
            .fetch_one(&mut *conn)
            .await?;
        let moved: i64 = written.try_get("moved")?;
        if moved == 0 {
            // Another writer moved the head since the facts were read: this batch and the
            // next ones queue on the head's lock instead.
            drop(conn);
            self.locked_left
                .store(LOCKED_AFTER_A_LOSS, Ordering::Relaxed);
            return self.commit_locked(requests).await;
        }
        let inserted: i64 = written.try_get("inserted")?;
        if inserted != plan.rows.len() as i64 {
            // The head moved but the rows did not all go in: impossible in one statement
            // unless the database misbehaves; say so rather than acknowledge them.
            return Err(StoreError::Database(format!(
                "the batch moved the head but inserted {inserted} of {} rows",
                plan.rows.len()
            )));
        }
        Ok(plan.outcomes)
    }
}

/// The plain insert of a batch's rows (the lock-first transaction).
static INSERT: LazyLock<String> = LazyLock::new(|| format!("{INSERT_INTO} {ROWS}"));

/// The optimistic write: moves the head from `$14`/`$15` to `$12`/`$13` and, only if it
/// moved, inserts the rows and notifies on `$16`.
static CONDITIONAL_WRITE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH moved AS ( \
             UPDATE ledger_head SET position = $12, hash = $13 \
              WHERE id AND position = $14 AND hash = $15 RETURNING position), \
         inserted AS ({INSERT_INTO} {ROWS} WHERE EXISTS (SELECT 1 FROM moved) \
              RETURNING 1), \
         notified AS (SELECT pg_notify($16, position::text) FROM moved) \
         SELECT (SELECT count(*) FROM moved) AS moved, \
                (SELECT count(*) FROM inserted) AS inserted, \
                (SELECT count(*) FROM notified) AS notified"
    )
});

/// Reads the facts of `requests` on `conn` ([`FACTS`]) and plans the batch on them; returns
/// the plan and the head it was planned on.
async fn plan_on(
    conn: &mut PgConnection,
    requests: &[AppendRequest],
) -> Result<(BatchPlan, LogHead), StoreError> {
    let (streams, ids) = lookups(requests);
    let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
    let rows = sqlx::query(FACTS)
        .bind(&streams)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    let facts = facts_from_rows(&rows)?;
    let Some(head) = facts.head else {
        return Err(StoreError::Database("ledger_head has no row".into()));
    };
    Ok((plan_batch(facts, requests, to_micros(Utc::now())), head))
}

/// The facts [`FACTS`] returned.
fn facts_from_rows(rows: &[PgRow]) -> Result<BatchFacts, StoreError> {
    let mut facts = BatchFacts {
        head: None,
        tips: HashMap::new(),
        existing: HashMap::new(),
    };
    for row in rows {
        let kind: String = row.try_get("kind")?;
        match kind.as_str() {
            "h" => facts.head = Some(head_from_row(row)?),
            "t" => {
                facts.tips.insert(
                    row.try_get::<String, _>("stream_id")?,
                    StreamTip {
                        version: row.try_get::<i64, _>("stream_version")? as u64,
                        event_id: EventId(row.try_get("event_id")?),
                    },
                );
            }
            _ => {
                facts.existing.insert(
                    EventId(row.try_get("event_id")?),
                    StoredAt {
                        position: row.try_get::<i64, _>("position")? as u64,
                        stream_id: row.try_get("stream_id")?,
                        stream_version: row.try_get::<i64, _>("stream_version")? as u64,
                    },
                );
            }
        }
    }
    Ok(facts)
}

/// The rows of a batch as one array per column, for `unnest`.
struct Columns<'a> {
    positions: Vec<i64>,
    stream_ids: Vec<&'a str>,
    versions: Vec<i64>,
    event_ids: Vec<Uuid>,
    types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    data: Vec<&'a str>,
    metadata: Vec<&'a str>,
    recorded_at: Vec<DateTime<Utc>>,
    prev_hashes: Vec<Vec<u8>>,
    hashes: Vec<Vec<u8>>,
}

impl<'a> Columns<'a> {
    fn of(rows: &'a [RecordedEvent]) -> Self {
        Self {
            positions: rows.iter().map(|r| r.position as i64).collect(),
            stream_ids: rows.iter().map(|r| r.stream_id.as_str()).collect(),
            versions: rows.iter().map(|r| r.stream_version as i64).collect(),
            event_ids: rows.iter().map(|r| r.event_id.0).collect(),
            types: rows.iter().map(|r| r.event_type.as_str()).collect(),
            schema_versions: rows.iter().map(|r| r.schema_version).collect(),
            data: rows.iter().map(|r| r.data.as_str()).collect(),
            metadata: rows.iter().map(|r| r.metadata.as_str()).collect(),
            recorded_at: rows.iter().map(|r| r.recorded_at).collect(),
            prev_hashes: rows.iter().map(|r| r.prev_hash.0.to_vec()).collect(),
            hashes: rows.iter().map(|r| r.hash.0.to_vec()).collect(),
        }
    }

    /// Binds the eleven columns as `$1` to `$11`.
    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.positions)
            .bind(&self.stream_ids)
            .bind(&self.versions)
            .bind(&self.event_ids)
            .bind(&self.types)
            .bind(&self.schema_versions)
            .bind(&self.data)
            .bind(&self.metadata)
            .bind(&self.recorded_at)
            .bind(&self.prev_hashes)
            .bind(&self.hashes)
    }
}

impl PgBackend {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            locked_left: AtomicU32::new(0),
        }
    }

    /// The batch in a transaction that locks the head first (`SELECT … FOR UPDATE`): no
    /// writer can move it meanwhile, so it always goes through. Used after the optimistic
    /// path lost the head to another writer.
    pub async fn commit_locked(
        &self,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT position FROM ledger_head WHERE id FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        let (plan, _) = plan_on(&mut tx, requests).await?;
        if plan.rows.is_empty() {
            tx.rollback().await?;
            return Ok(plan.outcomes);
        }
        let columns = Columns::of(&plan.rows);
        columns.bind(sqlx::query(&INSERT)).execute(&mut *tx).await?;
        sqlx::query("UPDATE ledger_head SET position = $1, hash = $2 WHERE id")
            .bind(plan.head.position as i64)
            .bind(plan.head.hash.0.to_vec())
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(plan.head.position.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(plan.outcomes)
    }
}
