//! The cache projector: keeps Redis (and this process's L1) in step with the read models.
//!
//! It follows the log behind the SQL projectors — never past the lowest of their checkpoints
//! — and for every user, profile and invoice a page touched, stores the current row from the
//! database into the cache. Stores are position-guarded, so replaying a page or racing
//! another writer can only move entries forward. Its checkpoint (`cache`) advances in the
//! read-model database only after the stores went through; while Redis is down it waits and
//! then replays, so Redis never keeps an entry older than what it missed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use starledger_ledger::events::AccountEvent;
use starledger_ledger::store::EventStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::cache::ReadCache;
use crate::model::Table;
use crate::runtime::{decode_page, ProjectionError};
use crate::store::ReadStore;

/// The cache projector's checkpoint name.
pub const CHECKPOINT: &str = "cache";

/// One step: returns the new checkpoint and how many events it covered.
pub async fn step(
    events: &dyn EventStore,
    read: &dyn ReadStore,
    cache: &ReadCache,
    page_size: usize,
) -> Result<(u64, usize), ProjectionError> {
    // Which history Redis holds for us, checked before anything is read from or stored there
    // (at once once it has been).
    cache.adopt_history(events).await?;
    let checkpoints = read.checkpoints().await?;
    let behind = Table::ALL
        .iter()
        .map(|t| {
            checkpoints
                .iter()
                .find(|c| c.name == t.name())
                .map_or(0, |c| c.position)
        })
        .min()
        .unwrap_or(0);
    let position = checkpoints
        .iter()
        .find(|c| c.name == CHECKPOINT)
        .map_or(0, |c| c.position);
    if position >= behind {
        // Caught up (or another instance is projecting): learn how far Redis is marked, so
        // rows read here may be written back.
        cache.sync_mark().await;
        return Ok((position, 0));
    }
    let limit = ((behind - position) as usize).min(page_size);
    let recorded = events.read_all(position, limit).await?;
    let Some((last, last_hash)) = recorded.last().map(|e| (e.position, e.hash)) else {
        return Ok((position, 0));
    };

    let mut users = BTreeSet::new();
    let mut recharges = BTreeSet::new();
    for projected in decode_page(&recorded)? {
        users.insert(projected.user_id);
        match &projected.event {
            AccountEvent::RechargeRequested(e) => recharges.insert(e.recharge_id.uuid()),
            AccountEvent::RechargeSettled(e) => recharges.insert(e.recharge_id.uuid()),
            AccountEvent::RechargeFailed(e) => recharges.insert(e.recharge_id.uuid()),
            _ => false,
        };
    }
    let users: Vec<i64> = users.into_iter().collect();
    let recharges: Vec<Uuid> = recharges.into_iter().collect();
    let rows = read.rows(&users, &recharges).await?;
    // The rows are read as they are now, which may be past this page: Redis's watermark is
    // raised to the newest of them first, so Redis never holds a row past it.
    let newest = rows
        .users
        .values()
        .map(|r| r.position)
        .chain(rows.balances.values().map(|r| r.position))
        .chain(rows.transactions.values().map(|r| r.position))
        .fold(last, u64::max);
    let newest_hash = if newest == last {
        Some(last_hash)
    } else {
        events
            .read_all(newest - 1, 1)
            .await?
            .first()
            .filter(|e| e.position == newest)
            .map(|e| e.hash)
    };
    if let Some(hash) = newest_hash {
        cache.mark_cached(newest, &hash).await;
    }
    for user in rows.users.values() {
        cache.store_user(user).await;
    }
    for balance in rows.balances.values() {
        cache.store_balance(balance).await;
    }
    for payment in rows.transactions.values() {
        if let Some(invoice) = &payment.external_id {
            cache.store_payment(invoice, payment).await;
        }
    }
    if cache.mode() == "redis" && !cache.redis_healthy() {
        // Some stores may not have reached Redis: keep the checkpoint and replay later.
        return Ok((position, 0));
    }

    // Advance only from where we started: if another instance moved the checkpoint
    // meanwhile, its stores and ours are both position-guarded, so nothing is lost.
    let mut tx = read.begin().await?;
    if tx.lock_checkpoint(CHECKPOINT).await? == position {
        tx.set_checkpoint(CHECKPOINT, last).await?;
        tx.commit().await?;
    }
    Ok((last, recorded.len()))
}

/// Runs the cache projector until `stop` turns true.
pub fn start(
    events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    cache: Arc<ReadCache>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut committed = events.committed();
        while !*stop.borrow() {
            committed.borrow_and_update();
            let pause = match step(events.as_ref(), read.as_ref(), &cache, 2_000).await {
                Ok((_, applied)) if applied > 0 => continue,
                // Caught up, or waiting for the SQL projectors (or for Redis).
                Ok(_) => Duration::from_millis(200),
                Err(error) => {
                    tracing::warn!(%error, "cache projector step failed; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = committed.changed() => {}
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
    })
}
