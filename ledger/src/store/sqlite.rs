//! The SQLite event store: the embedded default, one file, no server.
//!
//! SQLite allows one writer at a time, which is exactly the serialisation the log needs:
//! each group commit runs in a `BEGIN IMMEDIATE` transaction. The file is in WAL mode with
//! `synchronous = FULL`, so an acknowledged append survives a power cut; group commit is what
//! keeps that affordable.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};
use tokio::sync::watch;
use uuid::Uuid;

use super::batch::{Appender, BatchBackend};
use super::plan::{lookups, plan_batch, to_micros, BatchFacts, StoredAt, StreamTip};
use super::{
    AppendError, AppendOutcome, AppendRequest, AppendTicket, CommitMode, EventStore, LogHead,
    RecordedEvent, StoreError, VerifiedCheckpoint,
};
use crate::chain::Hash;
use crate::ids::EventId;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Opens (creating if needed) the database file and brings its schema up to date.
pub async fn open_pool(path: &Path) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(16)
        .connect_with(options)
        .await?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
    Ok(pool)
}

pub struct SqliteStore {
    pool: SqlitePool,
    appender: Appender<SqliteBackend>,
}

impl SqliteStore {
    pub async fn open(path: &Path, mode: CommitMode) -> Result<Self, StoreError> {
        let pool = open_pool(path).await?;
        let head = read_head(&pool).await?;
        let (committed, _) = watch::channel(head.position);
        let appender = Appender::start(
            Arc::new(SqliteBackend { pool: pool.clone() }),
            mode,
            committed,
        );
        Ok(Self { pool, appender })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

async fn read_head(pool: &SqlitePool) -> Result<LogHead, StoreError> {
    let row = sqlx::query("SELECT position, hash FROM ledger_head WHERE id = 1")
        .fetch_one(pool)
        .await?;
    head_from_row(&row)
}

fn head_from_row(row: &SqliteRow) -> Result<LogHead, StoreError> {
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
     data, metadata, recorded_at, prev_hash, hash FROM events";

fn event_from_row(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get("position")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        position: position as u64,
        reason,
    };
    let data: String = row.try_get("data")?;
    let metadata: String = row.try_get("metadata")?;
    let event_id: Vec<u8> = row.try_get("event_id")?;
    let recorded_at: i64 = row.try_get("recorded_at")?;
    let prev_hash: Vec<u8> = row.try_get("prev_hash")?;
    let hash: Vec<u8> = row.try_get("hash")?;
    Ok(RecordedEvent {
        position: position as u64,
        stream_id: row.try_get("stream_id")?,
        stream_version: row.try_get::<i64, _>("stream_version")? as u64,
        event_id: EventId(
            Uuid::from_slice(&event_id).map_err(|e| corrupt(format!("event_id: {e}")))?,
        ),
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        data,
        metadata,
        recorded_at: DateTime::from_timestamp_micros(recorded_at)
            .ok_or_else(|| corrupt("recorded_at out of range".into()))?,
        prev_hash: Hash::from_slice(&prev_hash)
            .ok_or_else(|| corrupt("prev_hash is not 32 bytes".into()))?,
        hash: Hash::from_slice(&hash).ok_or_else(|| corrupt("hash is not 32 bytes".into()))?,
    })
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn enqueue(&self, request: AppendRequest) -> Result<AppendTicket, AppendError> {
        self.appender.enqueue(request).await
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT_EVENT} WHERE stream_id = ?1 AND stream_version > ?2 ORDER BY stream_version"
        ))
        .bind(stream_id)
        .bind(after_version as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT_EVENT} WHERE position > ?1 ORDER BY position LIMIT ?2"
        ))
        .bind(after_position as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn read_events(&self, ids: &[EventId]) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(&format!("{SELECT_EVENT} WHERE event_id = ?1"))
                .bind(id.0.as_bytes().as_slice())
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row {
                events.push(event_from_row(&row)?);
            }
        }
        events.sort_by_key(|e| e.position);
        Ok(events)
    }

    async fn head(&self) -> Result<LogHead, StoreError> {
        read_head(&self.pool).await
    }

    async fn latest_verified_checkpoint(&self) -> Result<Option<VerifiedCheckpoint>, StoreError> {
        let row = sqlx::query(
            "SELECT position, head_hash, verified_at, tool_version, state_hash, state \
             FROM verified_checkpoints ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let position = row.try_get::<i64, _>("position")? as u64;
        let corrupt = |reason: String| StoreError::Corrupt { position, reason };
        let hash = |column: &str| -> Result<Hash, StoreError> {
            let bytes: Vec<u8> = row.try_get(column)?;
            Hash::from_slice(&bytes)
                .ok_or_else(|| corrupt(format!("verified checkpoint {column} is not 32 bytes")))
        };
        let verified_at: i64 = row.try_get("verified_at")?;
        Ok(Some(VerifiedCheckpoint {
            position,
            head_hash: hash("head_hash")?,
            verified_at: DateTime::from_timestamp_micros(verified_at)
                .ok_or_else(|| corrupt("verified checkpoint time out of range".into()))?,
            tool_version: row.try_get("tool_version")?,
            state_hash: hash("state_hash")?,
            state: row.try_get("state")?,
        }))
    }

    async fn record_verified_checkpoint(
        &self,
        checkpoint: &VerifiedCheckpoint,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id = sqlx::query(
            "INSERT INTO verified_checkpoints \
                 (position, head_hash, verified_at, tool_version, state_hash, state) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(checkpoint.position as i64)
        .bind(checkpoint.head_hash.0.as_slice())
        .bind(checkpoint.verified_at.timestamp_micros())
        .bind(&checkpoint.tool_version)
        .bind(checkpoint.state_hash.0.as_slice())
        .bind(checkpoint.state.as_deref())
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        sqlx::query(
            "UPDATE verified_checkpoints SET state = NULL WHERE id < ?1 AND state IS NOT NULL",
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

/// The transaction behind one group commit.
pub struct SqliteBackend {
    pool: SqlitePool,
}

impl SqliteBackend {
    async fn write(
        conn: &mut SqliteConnection,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, StoreError> {
        let head = head_from_row(
            &sqlx::query("SELECT position, hash FROM ledger_head WHERE id = 1")
                .fetch_one(&mut *conn)
                .await?,
        )?;
        let (streams, ids) = lookups(requests);
        let mut tips = HashMap::new();
        for stream in streams {
            let row = sqlx::query(
                "SELECT stream_version, event_id FROM events WHERE stream_id = ?1 ORDER BY stream_version DESC LIMIT 1",
            )
            .bind(&stream)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = row {
                let event_id: Vec<u8> = row.try_get("event_id")?;
                let version = row.try_get::<i64, _>("stream_version")? as u64;
                let event_id = Uuid::from_slice(&event_id).map_err(|e| StoreError::Corrupt {
                    position: 0,
                    reason: format!("event_id of {stream} v{version}: {e}"),
                })?;
                tips.insert(
                    stream,
                    StreamTip {
                        version,
                        event_id: EventId(event_id),
                    },
                );
            }
        }
        let mut existing = HashMap::new();
        for id in ids {
            let row = sqlx::query(
                "SELECT position, stream_id, stream_version FROM events WHERE event_id = ?1",
            )
            .bind(id.0.as_bytes().as_slice())
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = row {
                existing.insert(
                    id,
                    StoredAt {
                        position: row.try_get::<i64, _>("position")? as u64,
                        stream_id: row.try_get("stream_id")?,
                        stream_version: row.try_get::<i64, _>("stream_version")? as u64,
                    },
                );
            }
        }

        let facts = BatchFacts {
            head: Some(head),
            tips,
            existing,
        };
        let plan = plan_batch(facts, requests, to_micros(Utc::now()));
        for row in &plan.rows {
            sqlx::query(
                "INSERT INTO events (position, stream_id, stream_version, event_id, event_type, schema_version, \
                                     data, metadata, recorded_at, prev_hash, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .bind(row.position as i64)
            .bind(&row.stream_id)
            .bind(row.stream_version as i64)
            .bind(row.event_id.0.as_bytes().as_slice())
            .bind(&row.event_type)
            .bind(row.schema_version)
            .bind(&row.data)
            .bind(&row.metadata)
            .bind(row.recorded_at.timestamp_micros())
            .bind(row.prev_hash.0.as_slice())
            .bind(row.hash.0.as_slice())
            .execute(&mut *conn)
            .await?;
        }
        if !plan.rows.is_empty() {
            sqlx::query("UPDATE ledger_head SET position = ?1, hash = ?2 WHERE id = 1")
                .bind(plan.head.position as i64)
                .bind(plan.head.hash.0.as_slice())
                .execute(&mut *conn)
                .await?;
        }
        Ok(plan.outcomes)
    }
}

#[async_trait]
impl BatchBackend for SqliteBackend {
    async fn commit_batch(
        &self,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, StoreError> {
        // IMMEDIATE takes the write lock up front, so the head read inside cannot go stale.
        // Dropped without commit (an error below), the transaction rolls back.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let outcomes = Self::write(&mut tx, requests).await?;
        tx.commit().await?;
        Ok(outcomes)
    }
}
