//! The command handler: load the account, decide, append, and retry on conflict.
//!
//! Each account's state is kept in memory behind a per-stream lock, so a command costs no
//! database read. Commands on one stream are decided one after another *without* waiting for
//! the previous one to commit: each appends with the expected tip (version and event id) of
//! the state it decided on, and the group-commit writer keeps their order. If anything fails
//! (conflict with another instance, database error), the cached state is dropped and the
//! command reloads from the log and tries again, a bounded number of times. Commands that
//! depended on a failed one fail their tip check too, so no decision ever stands on an event
//! that was not committed.
//!
//! Idempotency: event ids are derived from the command's idempotency key. A repeated command
//! appends nothing and returns the events the first one stored.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use rust_decimal::Decimal;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::account::{decide, Account, AccountCommand, InvariantViolation, Profile, Rejection};
use crate::events::{AccountEvent, Actor, DecodeError, EventMetadata};
use crate::ids::{EventId, IdempotencyKey, StreamId, UserId};
use crate::money::Currency;
use crate::postings::unbalanced_currencies;
use crate::store::{
    AppendError, AppendRequest, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError,
};

/// Most events one command decides (today every command decides exactly one).
const MAX_EVENTS_PER_COMMAND: usize = 4;

/// How long a duplicate of an in-flight command waits for the original's answer.
const DUPLICATE_WAIT: Duration = Duration::from_secs(10);

/// How many times a command is re-decided after a concurrency conflict before giving up.
pub const MAX_ATTEMPTS: usize = 16;

/// A random wait of up to 2^n milliseconds (at most 64 ms) after the n-th conflict.
fn conflict_backoff(conflicts: usize) -> Duration {
    let ceiling_ms = 1u64 << conflicts.min(6);
    let random = Uuid::new_v4().as_u128() as u64;
    Duration::from_micros(random % (ceiling_ms * 1_000))
}

/// Who sent a command, and the key that makes retries of it harmless.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub idempotency_key: IdempotencyKey,
    pub actor: Actor,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
}

impl CommandContext {
    pub fn new(idempotency_key: IdempotencyKey, actor: Actor) -> Self {
        Self {
            idempotency_key,
            actor,
            correlation_id: None,
            causation_id: None,
        }
    }
}

/// The result of a command that was accepted (now or by an earlier identical command).
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    pub events: Vec<AccountEvent>,
    /// Position of the last event: wait for projections to reach it to read your writes.
    pub position: u64,
    /// True when nothing was appended because this command had already been executed.
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("idempotency key {0:?} was already used for a different command")]
    IdempotencyKeyReused(String),
    #[error("gave up after {MAX_ATTEMPTS} concurrency conflicts on {0}")]
    TooManyConflicts(StreamId),
    #[error("refused: the decision would break a ledger invariant: {0}")]
    Invariant(String),
    #[error("stored event cannot be read: {0}")]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One account's cached state.
#[derive(Default)]
struct Slot {
    loaded: bool,
    account: Account,
    version: u64,
    tip: Option<EventId>,
    /// Ids of every event in the stream, to spot repeated commands without a query.
    seen: HashSet<EventId>,
    /// Ids in `seen` whose append has not been answered yet.
    in_flight: HashSet<EventId>,
}

impl Slot {
    fn expected(&self) -> ExpectedVersion {
        match self.tip {
            Some(event_id) => ExpectedVersion::Tip {
                version: self.version,
                event_id,
            },
            None => ExpectedVersion::Exact(0),
        }
    }

    fn apply(&mut self, event_id: EventId, event: &AccountEvent) {
        self.account.evolve(event);
        self.version += 1;
        self.tip = Some(event_id);
        self.seen.insert(event_id);
    }

    fn invalidate(&mut self) {
        *self = Slot::default();
    }
}

/// A command's events applied to the cached account before the writer has answered for them.
///
/// If the caller goes away first (its future dropped by a timeout, a `select!` or shutdown),
/// the append may still commit or may fail, and this handler will never hear which. The cached
/// account is then forgotten and reloads from the log when next used, rather than keep events
/// whose fate is unknown: they would show in [`Ledger::account`], hold the account in memory
/// (an entry in flight is never evicted), and make a retry of the same command wait for an
/// answer that never comes and then find no events under its key.
struct Unanswered {
    slot: Option<Arc<Mutex<Slot>>>,
}

impl Unanswered {
    fn armed(slot: &Arc<Mutex<Slot>>) -> Self {
        Self {
            slot: Some(Arc::clone(slot)),
        }
    }

    /// The writer answered: the caller is still here and handles the answer itself.
    fn disarm(&mut self) {
        self.slot = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        if let Ok(mut cached) = slot.try_lock() {
            cached.invalidate();
            return;
        }
        // Another command holds the account right now: forget it as soon as that one is done.
        // (Without a runtime, which only a process tearing down lacks, the next append's
        // expected version still catches the difference and reloads.)
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { slot.lock().await.invalidate() });
        }
    }
}

/// Decodes a stored event of an account stream.
pub fn decode(event: &RecordedEvent) -> Result<AccountEvent, DecodeError> {
    AccountEvent::decode(&event.event_type, event.schema_version, &event.data)
}

/// Executes commands against the event store.
pub struct Ledger {
    store: Arc<dyn EventStore>,
    slots: DashMap<StreamId, Arc<Mutex<Slot>>>,
    capacity: usize,
    conflicts: AtomicU64,
}

/// Accounts kept in memory by default; past that, idle ones are dropped and reload from the
/// log when next used.
pub const DEFAULT_CACHED_ACCOUNTS: usize = 100_000;

impl Ledger {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self::with_capacity(store, DEFAULT_CACHED_ACCOUNTS)
    }

    /// A handler that keeps at most about `capacity` idle accounts in memory.
    pub fn with_capacity(store: Arc<dyn EventStore>, capacity: usize) -> Self {
        Self {
            store,
            slots: DashMap::new(),
            capacity: capacity.max(1),
            conflicts: AtomicU64::new(0),
        }
    }

    /// How many accounts are cached in memory right now.
    pub fn cached_accounts(&self) -> usize {
        self.slots.len()
    }

    /// How many appends this handler has seen refused for a concurrency conflict (each one
    /// cost a reload and a second decision).
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    fn slot(&self, stream: &StreamId) -> Arc<Mutex<Slot>> {
        if let Some(slot) = self.slots.get(stream) {
            return slot.clone();
        }
        if self.slots.len() >= self.capacity {
            self.evict_idle();
        }
        self.slots.entry(stream.clone()).or_default().clone()
    }

    /// Drops cached accounts nobody is using (no other reference, not locked, nothing in
    /// flight), down to three quarters of the capacity so the scan is rare. Always safe: a
    /// dropped account reloads from the log, and `retain` holds each shard's lock, so no
    /// caller can pick up an account while it is being dropped.
    fn evict_idle(&self) {
        let mut excess = self.slots.len().saturating_sub(self.capacity * 3 / 4);
        self.slots.retain(|_, slot| {
            if excess == 0 || Arc::strong_count(slot) > 1 {
                return true;
            }
            let idle = slot.try_lock().is_ok_and(|s| s.in_flight.is_empty());
            if idle {
                excess -= 1;
            }
            !idle
        });
    }

    /// Applies to `slot` the events of its stream it does not have yet (written by another
    /// process); whether there were any.
    async fn catch_up(&self, stream: &StreamId, slot: &mut Slot) -> Result<bool, CommandError> {
        let newer = self
            .store
            .read_stream(stream.as_str(), slot.version)
            .await?;
        for recorded in &newer {
            slot.apply(recorded.event_id, &decode(recorded)?);
        }
        Ok(!newer.is_empty())
    }

    async fn load(&self, stream: &StreamId, slot: &mut Slot) -> Result<(), CommandError> {
        let events = self.store.read_stream(stream.as_str(), 0).await?;
        let mut fresh = Slot::default();
        for recorded in &events {
            fresh.apply(recorded.event_id, &decode(recorded)?);
        }
        fresh.loaded = true;
        *slot = fresh;
        Ok(())
    }

    /// The account as this process currently knows it (loads it if needed).
    pub async fn account(&self, user: UserId) -> Result<Account, CommandError> {
        self.read(user, Account::clone).await
    }

    /// Only the account's profile: callers on a request path that need to know whether the
    /// user exists (and in which currency) need not copy every recharge and purchase.
    pub async fn profile(&self, user: UserId) -> Result<Option<Profile>, CommandError> {
        self.read(user, |account| account.profile.clone()).await
    }

    /// Looks at the cached account (loading it if needed) under its lock.
    async fn read<T>(
        &self,
        user: UserId,
        look: impl FnOnce(&Account) -> T,
    ) -> Result<T, CommandError> {
        let stream = user.stream();
        let slot = self.slot(&stream);
        let mut slot = slot.lock().await;
        if !slot.loaded {
            self.load(&stream, &mut slot).await?;
        }
        Ok(look(&slot.account))
    }

    /// Runs one command for one user.
    pub async fn execute(
        &self,
        user: UserId,
        command: AccountCommand,
        context: &CommandContext,
    ) -> Result<Executed, CommandError> {
        let stream = user.stream();
        let first_id = context.idempotency_key.event_id(&stream, 0);
        let slot = self.slot(&stream);

        let mut conflicts = 0;
        let mut caught_up = false;
        let duplicate_deadline = tokio::time::Instant::now() + DUPLICATE_WAIT;
        while conflicts < MAX_ATTEMPTS {
            // Declared before the lock guard below, so that if this future is dropped while
            // holding the lock, the guard is released first and the account can be forgotten
            // at once.
            let mut unanswered;
            let account_slot = &slot; // `slot` names the locked account inside the block
            let (ticket, events, ids) = {
                let mut slot = slot.lock().await;
                if !slot.loaded {
                    self.load(&stream, &mut slot).await?;
                }
                if slot.in_flight.contains(&first_id)
                    && tokio::time::Instant::now() < duplicate_deadline
                {
                    // The same command is being appended right now (a concurrent duplicate
                    // delivery): wait for its answer, then answer as it did.
                    let mut committed = self.store.committed();
                    drop(slot);
                    let _ =
                        tokio::time::timeout(Duration::from_millis(20), committed.changed()).await;
                    continue;
                }
                if slot.seen.contains(&first_id) {
                    drop(slot);
                    return self.replay(&stream, &command, context).await;
                }
                let events = match decide(user, &slot.account, &command) {
                    Ok(events) => events,
                    // Refused on this process's copy of the account. Another instance may
                    // have written since (a top-up, the recharge a webhook settles): a refusal
                    // is given only on the account as the log has it now. An acceptance needs
                    // no such look: its append checks the version and conflicts if stale.
                    Err(rejection) if !caught_up => {
                        caught_up = true;
                        if self.catch_up(&stream, &mut slot).await? {
                            drop(slot);
                            continue;
                        }
                        return Err(rejection.into());
                    }
                    Err(rejection) => return Err(rejection.into()),
                };
                debug_assert!(events.len() <= MAX_EVENTS_PER_COMMAND);
                let ids: Vec<EventId> = (0..events.len())
                    .map(|i| context.idempotency_key.event_id(&stream, i))
                    .collect();
                let request = AppendRequest {
                    stream_id: stream.as_str().to_owned(),
                    expected: slot.expected(),
                    events: events
                        .iter()
                        .zip(&ids)
                        .map(|(event, id)| new_event(*id, event, first_id, context))
                        .collect(),
                };
                for (id, event) in ids.iter().zip(&events) {
                    slot.apply(*id, event);
                    slot.in_flight.insert(*id);
                }
                if let Err(violation) = check_decision(&events, &slot.account) {
                    slot.invalidate();
                    return Err(CommandError::Invariant(violation.to_string()));
                }
                unanswered = Unanswered::armed(account_slot);
                // Queue while still holding the stream's lock: the next command on this
                // stream decides on top of this one and must reach the writer after it.
                let ticket = self.store.enqueue(request).await;
                (ticket, events, ids)
            };

            let answer = match ticket {
                Ok(ticket) => ticket.await,
                Err(refused) => Err(refused),
            };
            unanswered.disarm();
            match answer {
                Ok(outcome) if !outcome.replayed => {
                    let mut slot = slot.lock().await;
                    for id in &ids {
                        slot.in_flight.remove(id);
                    }
                    return Ok(Executed {
                        events,
                        position: outcome.last_position,
                        replayed: false,
                    });
                }
                Ok(_replayed) => {
                    // Another process executed this command first; what it stored is the answer.
                    slot.lock().await.invalidate();
                    return self.replay(&stream, &command, context).await;
                }
                Err(AppendError::Conflict { .. }) => {
                    conflicts += 1;
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                    slot.lock().await.invalidate();
                    tracing::debug!(%stream, "conflict; reloading and deciding again");
                    // Another instance is writing this account too. Back off a random,
                    // growing while so the instances stop colliding (no retry storm).
                    tokio::time::sleep(conflict_backoff(conflicts)).await;
                }
                Err(AppendError::IdempotencyMismatch(_)) => {
                    slot.lock().await.invalidate();
                    return Err(CommandError::IdempotencyKeyReused(
                        context.idempotency_key.as_str().to_owned(),
                    ));
                }
                Err(AppendError::Invalid(why)) => {
                    slot.lock().await.invalidate();
                    return Err(CommandError::Invariant(why));
                }
                Err(AppendError::Store(error)) => {
                    slot.lock().await.invalidate();
                    // The outcome of a failed commit can be unknown; a retry with the same
                    // key is safe and will find the events if they were written.
                    return Err(CommandError::Store(error));
                }
            }
        }
        Err(CommandError::TooManyConflicts(stream))
    }

    /// Answers a repeated command with the events its first execution stored.
    async fn replay(
        &self,
        stream: &StreamId,
        command: &AccountCommand,
        context: &CommandContext,
    ) -> Result<Executed, CommandError> {
        let ids: Vec<EventId> = (0..MAX_EVENTS_PER_COMMAND)
            .map(|i| context.idempotency_key.event_id(stream, i))
            .collect();
        let stored = self.store.read_events(&ids).await?;
        let events: Vec<AccountEvent> = stored.iter().map(decode).collect::<Result<_, _>>()?;
        let same_command = stored.iter().all(|e| e.stream_id == stream.as_str())
            && events
                .first()
                .is_some_and(|first| command.is_recorded_by(first));
        if !same_command {
            let key = context.idempotency_key.as_str().to_owned();
            return Err(CommandError::IdempotencyKeyReused(key));
        }
        let position = stored.last().map_or(0, |e| e.position);
        Ok(Executed {
            events,
            position,
            replayed: true,
        })
    }
}

fn new_event(
    id: EventId,
    event: &AccountEvent,
    first_id: EventId,
    context: &CommandContext,
) -> NewEvent {
    let metadata = EventMetadata {
        correlation_id: context.correlation_id.unwrap_or(first_id.0),
        causation_id: context.causation_id,
        actor: context.actor.to_string(),
        idempotency_key: context.idempotency_key.as_str().to_owned(),
    };
    NewEvent {
        event_id: id,
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        data: event.to_data(),
        metadata: serde_json::to_value(metadata).unwrap_or_default(),
    }
}

/// What a decision would break; its text is the detail of [`CommandError::Invariant`].
#[derive(Debug, thiserror::Error)]
enum BrokenDecision {
    /// An event's postings leave these currencies with a non-zero sum.
    #[error("{event_type} postings do not balance: {unbalanced:?}")]
    Unbalanced {
        event_type: &'static str,
        unbalanced: Vec<(Currency, Decimal)>,
    },
    #[error(transparent)]
    Account(#[from] InvariantViolation),
}

/// The invariants checked on every decision before it may be appended: each event's
/// postings balance, and the account after it keeps every account invariant — the same
/// typed check `audit verify` runs after each event of the log.
fn check_decision(events: &[AccountEvent], account: &Account) -> Result<(), BrokenDecision> {
    for event in events {
        let unbalanced = unbalanced_currencies(event.postings());
        if !unbalanced.is_empty() {
            return Err(BrokenDecision::Unbalanced {
                event_type: event.event_type(),
                unbalanced,
            });
        }
    }
    Ok(account.check_invariants()?)
}
