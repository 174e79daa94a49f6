//! Every instance follows the log itself, so that a write another instance acknowledged shows
//! here within moments rather than when a cached row ages out.
//!
//! The cache projector keeps Redis current, but it runs where the shared checkpoint lets it,
//! and this instance's in-process tier (L1) does not hear of it. So each instance reads every
//! new event (polling the log every [`POLL`], or at once when this process committed), and
//! for each one raises the position that reads here must reach for the rows it changes: the
//! balance for an event that moves a customer's money, the profile for a registration or a
//! profile change ([`ReadCache::require_balance`], [`ReadCache::require_user`]). A read then
//! skips a cached row older than that for the database, which the SQL projectors bring to it
//! within moments. Nothing is written to the cache here; it only stops trusting old rows.

use std::sync::Arc;
use std::time::Duration;

use starledger_ledger::commands::decode;
use starledger_ledger::events::AccountEvent;
use starledger_ledger::postings::LedgerAccount;
use starledger_ledger::store::EventStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::ReadCache;

/// How often the log is polled for other instances' writes.
pub const POLL: Duration = Duration::from_millis(50);

/// Events read per query.
const PAGE: usize = 1_000;

/// Marks what one event changes as required reading.
async fn require(cache: &ReadCache, position: u64, user: Option<i64>, event: &AccountEvent) {
    match event {
        AccountEvent::UserRegistered(_) | AccountEvent::ProfileUpdated(_) => {
            if let Some(user) = user {
                cache.require_user(user, position).await;
            }
        }
        _ => {}
    }
    for posting in event.postings() {
        if let LedgerAccount::CustomerAvailable(owner)
        | LedgerAccount::CustomerReserved(owner)
        | LedgerAccount::CustomerDebt(owner) = posting.account
        {
            cache.require_balance(owner.get(), position).await;
        }
    }
}

/// Follows the log from its head now until `stop` turns true.
pub fn start(
    events: Arc<dyn EventStore>,
    cache: Arc<ReadCache>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut committed = events.committed();
        let mut position = loop {
            match events.head().await {
                Ok(head) => break head.position,
                Err(error) => {
                    tracing::warn!(%error, "cache tail cannot read the log head; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        };
        while !*stop.borrow() {
            committed.borrow_and_update();
            match events.read_all(position, PAGE).await {
                Ok(page) => {
                    for recorded in &page {
                        position = recorded.position;
                        // An event this version cannot read changes nothing it can cache.
                        if let Ok(event) = decode(recorded) {
                            let user = starledger_ledger::ids::StreamId::parse(&recorded.stream_id)
                                .ok()
                                .and_then(|stream| stream.user())
                                .map(|user| user.get());
                            require(&cache, recorded.position, user, &event).await;
                        }
                    }
                    if page.len() == PAGE {
                        continue;
                    }
                }
                Err(error) => tracing::warn!(%error, "cache tail cannot read the log; retrying"),
            }
            tokio::select! {
                _ = committed.changed() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    })
}
