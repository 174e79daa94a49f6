//! Bringing the configured database's schema up to date.

use starledger_ledger::store::postgres;
use starledger_ledger::store::sqlite;
use starledger_ledger::store::StoreError;

use crate::config::Storage;

/// Creates or upgrades the schema of the configured database.
pub async fn migrate(storage: &Storage) -> Result<(), StoreError> {
    match storage {
        Storage::Sqlite { path } => sqlite::open_pool(path).await.map(|_| ()),
        Storage::Postgres { url, .. } => {
            postgres::migrate(&postgres::connect_pool(url, 2).await?).await
        }
    }
}
