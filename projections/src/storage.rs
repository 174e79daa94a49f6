//! Opening the configured databases: the event log and the read models beside it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::store::postgres::PgReadStore;
use crate::store::sqlite::SqliteReadStore;
use crate::store::{ReadError, ReadStore};
use starledger_ledger::store::postgres::{self, PostgresStore};
use starledger_ledger::store::sqlite::{self, SqliteStore};
use starledger_ledger::store::{CommitMode, EventStore, StoreError};

/// Where the event log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// The embedded default: one SQLite file.
    Sqlite { path: PathBuf },
    /// A PostgreSQL server (`DATABASE_URL=postgres://…`).
    Postgres { url: String, pool_size: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Events(#[from] StoreError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("the database has no starledger schema: run `starledger migrate` first")]
    NotMigrated,
}

/// The event log and the read models of one deployment.
pub struct Databases {
    pub events: Arc<dyn EventStore>,
    pub read: Arc<dyn ReadStore>,
}

/// The log and the read models on a streaming standby (`DATABASE_READ_URL`), for queries and
/// audits only: it is read-only, so nothing there is created, migrated or appended.
pub async fn open_replica(url: &str, pool_size: u32) -> Result<Databases, OpenError> {
    let pool = postgres::connect_pool(url, pool_size).await?;
    Ok(Databases {
        events: Arc::new(postgres::PostgresLogReader::open(pool.clone()).await?),
        read: Arc::new(PgReadStore::new(pool)),
    })
}

/// Creates or upgrades the schema: the event log by migrations, the read-model tables by the
/// projections code.
pub async fn migrate(storage: &Storage) -> Result<(), OpenError> {
    let read: Box<dyn ReadStore> = match storage {
        Storage::Sqlite { path } => Box::new(SqliteReadStore::new(sqlite::open_pool(path).await?)),
        Storage::Postgres { url, .. } => {
            let pool = postgres::connect_pool(url, 2).await?;
            postgres::migrate(&pool).await?;
            Box::new(PgReadStore::new(pool))
        }
    };
    read.ensure_schema().await?;
    Ok(())
}

/// Opens both stores. The embedded SQLite file is created and migrated on the spot; a
/// PostgreSQL database must have been migrated (`starledger migrate`): production schemas
/// change deliberately, not by whichever instance starts first.
pub async fn open(storage: &Storage, mode: CommitMode) -> Result<Databases, OpenError> {
    match storage {
        Storage::Sqlite { path } => {
            let events = SqliteStore::open(path, mode).await?;
            let read = SqliteReadStore::new(events.pool().clone());
            read.ensure_schema().await?;
            Ok(Databases {
                events: Arc::new(events),
                read: Arc::new(read),
            })
        }
        Storage::Postgres { url, pool_size } => {
            let pool = postgres::connect_pool(url, *pool_size).await?;
            let migrated: Option<(i32,)> = sqlx::query_as(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'projection_checkpoints'",
            )
            .fetch_optional(&pool)
            .await
            .map_err(StoreError::from)?;
            if migrated.is_none() {
                return Err(OpenError::NotMigrated);
            }
            let read = PgReadStore::new(pool.clone());
            read.ensure_schema().await?;
            Ok(Databases {
                events: Arc::new(PostgresStore::open(pool, mode).await?),
                read: Arc::new(read),
            })
        }
    }
}
