//! The event store: an append-only, gapless, hash-chained log of events in streams.
//!
//! One [`EventStore`] trait, two real backends: [`sqlite::SqliteStore`] (the embedded default,
//! one file) and [`postgres::PostgresStore`]. Both put appends through the same group-commit
//! writer ([`batch`]) and the same planner ([`plan`]), which assigns positions, checks expected
//! versions and idempotency, and extends the hash chain; a backend only supplies the few
//! queries that read the log head and write rows inside one transaction.

pub mod batch;
pub mod plan;
#[cfg(feature = "stores")]
pub mod postgres;
#[cfg(feature = "stores")]
pub mod sqlite;
pub mod tail;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::watch;

use crate::chain::{event_hash, Hash, HashedFields};
use crate::ids::EventId;

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: EventId,
    pub event_type: String,
    pub schema_version: i32,
    pub data: Value,
    pub metadata: Value,
}

/// An event as stored, with its place in the log and in the hash chain.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// 1-based global position; gapless, in commit order.
    pub position: u64,
    pub stream_id: String,
    /// 1-based version within the stream.
    pub stream_version: u64,
    pub event_id: EventId,
    pub event_type: String,
    pub schema_version: i32,
    /// Canonical JSON text of the event's data, as stored and hashed.
    pub data: String,
    /// Canonical JSON text of the event's metadata.
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
    pub prev_hash: Hash,
    pub hash: Hash,
}

impl RecordedEvent {
    /// The data as a JSON value (parsing the stored text).
    pub fn data_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.data)
    }

    /// The metadata as a JSON value (parsing the stored text).
    pub fn metadata_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.metadata)
    }

    /// The hash this event should have, recomputed from its fields.
    pub fn compute_hash(&self) -> Hash {
        event_hash(
            &self.prev_hash,
            &HashedFields {
                position: self.position,
                stream_id: &self.stream_id,
                stream_version: self.stream_version,
                event_id: self.event_id.0,
                event_type: &self.event_type,
                schema_version: self.schema_version,
                data: &self.data,
                metadata: &self.metadata,
                recorded_at_micros: self.recorded_at.timestamp_micros(),
            },
        )
    }
}

/// What the stream must look like for an append to go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check (used only by tools, never by command handlers).
    Any,
    /// The stream's last version is exactly this (0: the stream does not exist).
    Exact(u64),
    /// The stream's last version is this *and* its last event is this one. Command handlers
    /// that decide on top of not-yet-committed events use it, so that a different event
    /// landing at the same version is a conflict rather than a silent match.
    Tip { version: u64, event_id: EventId },
}

impl ExpectedVersion {
    pub fn version(self) -> Option<u64> {
        match self {
            Self::Any => None,
            Self::Exact(version) | Self::Tip { version, .. } => Some(version),
        }
    }
}

/// Events to append to one stream, atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub first_position: u64,
    pub last_position: u64,
    /// The stream's version after the append.
    pub stream_version: u64,
    /// True when these events were already stored by an earlier, identical append: nothing
    /// was written this time.
    pub replayed: bool,
}

/// Why one append was refused. Nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream_id} is at version {actual}, expected {expected:?}")]
    Conflict {
        stream_id: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("event {0} is already stored, but not as part of this same append")]
    IdempotencyMismatch(EventId),
    #[error("invalid append: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The store could not do its job (database down, corrupt row, writer gone).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("stored row at position {position} is unreadable: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error("the event store is shutting down")]
    Closed,
}

#[cfg(feature = "stores")]
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error.to_string())
    }
}

/// The last event of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHead {
    pub position: u64,
    pub hash: Hash,
}

impl LogHead {
    pub const EMPTY: LogHead = LogHead {
        position: 0,
        hash: Hash::GENESIS,
    };
}

/// Where a sound `audit verify` stopped: the log up to `position` was found sound, its event
/// there had `head_hash`, and `state` is the audit state to go on from (see
/// [`crate::checkpoint`]). Stored in `verified_checkpoints` beside the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    pub position: u64,
    pub head_hash: Hash,
    pub verified_at: DateTime<Utc>,
    /// The `CARGO_PKG_VERSION` of the ledger crate that verified it.
    pub tool_version: String,
    /// sha256 of `state` as it was written.
    pub state_hash: Hash,
    /// The encoded audit state; `None` once a newer checkpoint replaced this one.
    pub state: Option<Vec<u8>>,
}

/// How appends reach the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Concurrent appends are gathered into one transaction (group commit), up to this many
    /// events per transaction.
    Grouped { max_events: usize },
    /// One transaction per append. Slower by an order of magnitude; kept for comparison in
    /// the benchmark and for tools.
    PerAppend,
}

impl Default for CommitMode {
    fn default() -> Self {
        CommitMode::Grouped { max_events: 2_000 }
    }
}

/// Most events one append request may carry.
pub const MAX_EVENTS_PER_APPEND: usize = 100;

/// The answer-to-come of a queued append.
pub type AppendTicket =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<AppendOutcome, AppendError>> + Send>>;

/// The event log.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Queues an append and returns a ticket that resolves to its answer. Appends queued one
    /// after another by one caller are committed in that order, which is what lets the
    /// command handler decide the next command before the previous one has committed.
    async fn enqueue(&self, request: AppendRequest) -> Result<AppendTicket, AppendError>;

    /// Appends events to one stream if it is at the expected version. Re-appending events
    /// whose ids are already stored returns the original outcome with `replayed = true`.
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, AppendError> {
        self.enqueue(request).await?.await
    }

    /// Events of one stream with version greater than `after_version`, in order.
    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` events with position greater than `after_position`, in order.
    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The stored events with these ids (in position order; unknown ids are skipped).
    async fn read_events(&self, ids: &[EventId]) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The last position and hash.
    async fn head(&self) -> Result<LogHead, StoreError>;

    /// The newest verified checkpoint, if any was recorded.
    async fn latest_verified_checkpoint(&self) -> Result<Option<VerifiedCheckpoint>, StoreError>;

    /// Records a verified checkpoint; older ones keep their position, hash, time and version
    /// but lose their state (only the newest is resumed from).
    async fn record_verified_checkpoint(
        &self,
        checkpoint: &VerifiedCheckpoint,
    ) -> Result<(), StoreError>;

    /// The highest position this process knows to be committed; changes whenever new events
    /// are committed (by this process, or by others where the backend can tell).
    fn committed(&self) -> watch::Receiver<u64>;
}
