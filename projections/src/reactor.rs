//! Reactors: background work that follows the event log and acts outside the ledger on what
//! it finds (a Telegram notification, a Fragment order), remembering in a checkpoint how far
//! it got, so a restart neither skips an event nor acts on one twice (but for one possible
//! repeat of the very action a crash interrupted).
//!
//! A [`Reaction`] looks at one event at a time. The runner saves the checkpoint right after
//! every event the reaction acted on (the window for a repeat is one action), and at the end
//! of each page otherwise (events it only skipped cost no write). A failed reaction leaves the
//! checkpoint just before the event, waits with growing pauses, and tries that event again.
//! A reactor that has never run starts at the log head: a notifier switched on for an old
//! ledger must not send a message for every event in its history.
//!
//! One instance of each reactor runs at a time, under a [`Lease`].

use std::sync::Arc;
use std::time::Duration;

use crate::model::Projected;
use crate::runtime::decode_page;
use crate::store::{ReadError, ReadStore};
use async_trait::async_trait;
use starledger_ledger::store::EventStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::lease::Lease;
use crate::storage::Storage;

/// Where a reactor stands in the log, kept beside the projectors' checkpoints.
#[derive(Clone)]
pub struct Checkpoint {
    name: String,
    read: Arc<dyn ReadStore>,
}

impl Checkpoint {
    pub fn new(name: impl Into<String>, read: Arc<dyn ReadStore>) -> Self {
        Self {
            name: name.into(),
            read,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The saved position, or `start` (saved now) for a reactor that has never run.
    pub async fn load_or_start_at(&self, start: u64) -> Result<u64, ReadError> {
        let saved = self.read.checkpoints().await?;
        if let Some(checkpoint) = saved.iter().find(|c| c.name == self.name) {
            return Ok(checkpoint.position);
        }
        let mut tx = self.read.begin().await?;
        tx.lock_checkpoint(&self.name).await?;
        tx.set_checkpoint(&self.name, start).await?;
        tx.commit().await?;
        Ok(start)
    }

    /// Moves the checkpoint forward to `position` (never back: an instance that lost its
    /// lease mid-step must not undo the work of the one that took over).
    pub async fn advance(&self, position: u64) -> Result<(), ReadError> {
        let mut tx = self.read.begin().await?;
        if tx.lock_checkpoint(&self.name).await? < position {
            tx.set_checkpoint(&self.name, position).await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

/// What a reaction did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reacted {
    /// Nothing outside the ledger happened (the event is not its business, or it decided to
    /// drop it for good, e.g. a user who blocked the bot).
    Skipped,
    /// It acted (a message went out): the checkpoint moves past the event at once.
    Acted,
}

/// Why a reaction could not handle an event now. It will be asked again, later.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReactionError(pub String);

/// One kind of reactor.
#[async_trait]
pub trait Reaction: Send + 'static {
    /// The checkpoint and lease name, e.g. `notifications`.
    fn name(&self) -> &'static str;

    async fn react(&mut self, event: &Projected) -> Result<Reacted, ReactionError>;
}

/// Where the runner gets its events and keeps its place.
#[derive(Clone)]
pub struct ReactorContext {
    pub events: Arc<dyn EventStore>,
    pub read: Arc<dyn ReadStore>,
    pub storage: Storage,
}

/// Events read per page.
const PAGE_SIZE: usize = 500;
/// How long to sleep when caught up if no commit signal comes (the signal is the fast path).
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Longest pause between attempts at an event whose reaction keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs `reaction` until `stop` turns true: competes for its lease, then follows the log.
pub fn start<R: Reaction>(
    mut reaction: R,
    context: ReactorContext,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let name = reaction.name();
        while !*stop.borrow() {
            let Some(mut lease) = Lease::acquire(&context.storage, name, &mut stop).await else {
                break;
            };
            if let Err(error) = follow(&mut reaction, &context, &mut lease, &mut stop).await {
                tracing::warn!(reactor = name, %error, "reactor stopped; competing for its lease again");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    })
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Events(#[from] starledger_ledger::store::StoreError),
    #[error("lease lost")]
    LeaseLost,
}

/// Follows the log while the lease holds. Returns `Ok` only when stopped.
async fn follow<R: Reaction>(
    reaction: &mut R,
    context: &ReactorContext,
    lease: &mut Lease,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), FollowError> {
    let checkpoint = Checkpoint::new(reaction.name(), context.read.clone());
    let head = context.events.head().await?.position;
    let mut position = checkpoint.load_or_start_at(head).await?;
    let mut committed = context.events.committed();
    let mut backoff = Duration::from_millis(200);
    while !*stop.borrow() {
        if !lease.is_held().await {
            return Err(FollowError::LeaseLost);
        }
        committed.borrow_and_update();
        let recorded = context.events.read_all(position, PAGE_SIZE).await?;
        if recorded.is_empty() {
            tokio::select! {
                _ = committed.changed() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let page = match decode_page(&recorded) {
            Ok(page) => page,
            Err(error) => {
                // A log the reactor cannot read is for an operator (audit verify will say
                // more); skipping it could skip a payment or a refund notice.
                tracing::error!(reactor = reaction.name(), %error, "cannot decode the log; retrying");
                pause(&mut backoff, stop).await;
                continue;
            }
        };
        let mut saved = position;
        let mut failed = false;
        for event in &page {
            match reaction.react(event).await {
                Ok(Reacted::Skipped) => position = event.position,
                Ok(Reacted::Acted) => {
                    position = event.position;
                    checkpoint.advance(position).await?;
                    saved = position;
                }
                Err(error) => {
                    tracing::warn!(
                        reactor = reaction.name(),
                        position = event.position,
                        %error,
                        "reaction failed; will retry this event"
                    );
                    failed = true;
                    break;
                }
            }
            if *stop.borrow() {
                break;
            }
        }
        if position > saved {
            checkpoint.advance(position).await?;
        }
        if failed {
            pause(&mut backoff, stop).await;
        } else {
            backoff = Duration::from_millis(200);
        }
    }
    Ok(())
}

async fn pause(backoff: &mut Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = stop.changed() => {}
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}
