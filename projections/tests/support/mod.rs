//! What the projections tests share: the read store beside a test backend's event log.

use std::sync::Arc;

use starledger_ledger::testing::Backend;
use starledger_projections::store::postgres::PgReadStore;
use starledger_projections::store::sqlite::SqliteReadStore;
use starledger_projections::store::ReadStore;

/// The read models of `backend`, their tables created.
pub async fn read_store(backend: &Backend) -> Arc<dyn ReadStore> {
    let read: Arc<dyn ReadStore> = match backend {
        Backend::Sqlite { path, .. } => Arc::new(SqliteReadStore::new(
            starledger_ledger::store::sqlite::open_pool(path)
                .await
                .unwrap(),
        )),
        Backend::Postgres { pool, .. } => Arc::new(PgReadStore::new(pool.clone())),
    };
    read.ensure_schema().await.unwrap();
    read
}
