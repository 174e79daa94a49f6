//! Leases: which one of several `serve` instances runs a piece of background work that must
//! not run twice at once (sending notifications, paying Fragment).
//!
//! On PostgreSQL a lease is a session advisory lock held on a connection of its own: the
//! server releases it the moment that connection dies, so a crashed instance never keeps
//! it, and a standby takes over within one polling interval. The holder checks that its
//! connection is still alive before each batch of work; if it is not, it stops and competes
//! for the lease again. The embedded SQLite ledger is one process's file, so its lease is
//! always granted.
//!
//! A lease narrows, not removes, the window in which two instances could both act (a holder
//! whose connection died mid-step finishes that step): what the work does must itself be
//! safe to repeat, and the reactors built on it are.

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::sync::watch;

use crate::storage::Storage;

/// How often a standby asks for a lease that another instance holds.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// A held lease. Dropping it releases it.
pub enum Lease {
    /// The embedded ledger: only this process uses the file.
    Embedded,
    Postgres {
        connection: PgConnection,
        key: i64,
    },
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("Lease::Embedded"),
            Self::Postgres { key, .. } => write!(f, "Lease::Postgres({key})"),
        }
    }
}

/// The advisory-lock key of a lease name: stable across processes and versions.
fn lock_key(name: &str) -> i64 {
    // FNV-1a, 64 bits: small, fixed, and the same in every build (std's hasher is not).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "starledger-lease:".bytes().chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

impl Lease {
    /// Waits until this instance holds the lease `name`, or `stop` turns true (`None`).
    pub async fn acquire(
        storage: &Storage,
        name: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Lease> {
        let url = match storage {
            Storage::Sqlite { .. } => return Some(Lease::Embedded),
            Storage::Postgres { url, .. } => url,
        };
        let key = lock_key(name);
        let mut waiting_logged = false;
        while !*stop.borrow() {
            match try_lock(url, key).await {
                Ok(Some(connection)) => {
                    tracing::info!(lease = name, "lease acquired");
                    return Some(Lease::Postgres { connection, key });
                }
                Ok(None) if !waiting_logged => {
                    tracing::info!(
                        lease = name,
                        "another instance holds the lease; standing by"
                    );
                    waiting_logged = true;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(lease = name, %error, "cannot ask for the lease"),
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_INTERVAL) => {}
                _ = stop.changed() => {}
            }
        }
        None
    }

    /// Whether the lease is still held: on PostgreSQL, whether its connection still answers.
    pub async fn is_held(&mut self) -> bool {
        match self {
            Lease::Embedded => true,
            Lease::Postgres { connection, .. } => {
                let answered =
                    tokio::time::timeout(Duration::from_secs(5), connection.ping()).await;
                matches!(answered, Ok(Ok(())))
            }
        }
    }
}

async fn try_lock(url: &str, key: i64) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut connection = PgConnection::connect(url).await?;
    let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut connection)
        .await?;
    Ok(locked.then_some(connection))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("fulfilment"), lock_key("fulfilment"));
        assert_ne!(lock_key("fulfilment"), lock_key("notifications"));
        // Pinned: a new build must compete for the same lock as the instances still running
        // the old one during a rolling deploy.
        assert_eq!(lock_key(""), 0xb6cc_d2e9_c7c5_acb3_u64 as i64);
    }
}
