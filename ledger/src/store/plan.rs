//! Planning one group-commit transaction: the part of an append that needs no I/O.
//!
//! Inside the transaction a backend locks the log head, reads the tips of the streams the
//! batch touches and which of its event ids already exist, and hands those facts here. The
//! plan checks each request in arrival order (expected version, idempotency), gives accepted
//! events consecutive positions and stream versions, and extends the hash chain. Because the
//! head stays locked until commit, positions are gapless and commit order is position order.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{
    AppendError, AppendOutcome, AppendRequest, ExpectedVersion, LogHead, RecordedEvent,
    MAX_EVENTS_PER_APPEND,
};
use crate::chain::canonical_json;
use crate::ids::EventId;

/// The last event of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTip {
    pub version: u64,
    pub event_id: EventId,
}

/// Where an already-stored event sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAt {
    pub position: u64,
    pub stream_id: String,
    pub stream_version: u64,
}

/// What the database said before planning.
#[derive(Debug, Default)]
pub struct BatchFacts {
    pub head: Option<LogHead>,
    pub tips: HashMap<String, StreamTip>,
    pub existing: HashMap<EventId, StoredAt>,
}

/// The rows to insert and the answer for each request, in request order.
#[derive(Debug)]
pub struct BatchPlan {
    pub rows: Vec<RecordedEvent>,
    pub outcomes: Vec<Result<AppendOutcome, AppendError>>,
    pub head: LogHead,
}

/// The distinct stream ids and event ids a batch touches: what a backend must look up.
pub fn lookups(requests: &[AppendRequest]) -> (Vec<String>, Vec<EventId>) {
    let mut streams: Vec<String> = requests.iter().map(|r| r.stream_id.clone()).collect();
    streams.sort();
    streams.dedup();
    let ids = requests
        .iter()
        .flat_map(|r| r.events.iter().map(|e| e.event_id))
        .collect();
    (streams, ids)
}

fn validate(request: &AppendRequest) -> Result<(), AppendError> {
    let invalid = |why: &str| Err(AppendError::Invalid(why.to_owned()));
    if request.stream_id.is_empty() || request.stream_id.len() > 200 {
        return invalid("stream id must be 1 to 200 bytes");
    }
    if request.events.is_empty() || request.events.len() > MAX_EVENTS_PER_APPEND {
        return invalid("an append carries 1 to 100 events");
    }
    let mut seen = HashSet::new();
    for event in &request.events {
        if !seen.insert(event.event_id) {
            return invalid("the same event id appears twice in one append");
        }
        if event.event_type.is_empty() || event.event_type.len() > 100 || event.schema_version < 1 {
            return invalid("event type must be 1 to 100 bytes and schema version at least 1");
        }
    }
    Ok(())
}

/// Plans one batch. `recorded_at` must already be truncated to microseconds (what both
/// databases store), so the hash computed now matches the row read back later.
pub fn plan_batch(
    facts: BatchFacts,
    requests: &[AppendRequest],
    recorded_at: DateTime<Utc>,
) -> BatchPlan {
    let mut head = facts.head.unwrap_or(LogHead::EMPTY);
    let mut tips = facts.tips;
    let mut stored = facts.existing;
    let mut rows = Vec::new();
    let mut outcomes = Vec::with_capacity(requests.len());

    for request in requests {
        let outcome = plan_one(
            request,
            &mut head,
            &mut tips,
            &mut stored,
            &mut rows,
            recorded_at,
        );
        outcomes.push(outcome);
    }
    BatchPlan {
        rows,
        outcomes,
        head,
    }
}

fn plan_one(
    request: &AppendRequest,
    head: &mut LogHead,
    tips: &mut HashMap<String, StreamTip>,
    stored: &mut HashMap<EventId, StoredAt>,
    rows: &mut Vec<RecordedEvent>,
    recorded_at: DateTime<Utc>,
) -> Result<AppendOutcome, AppendError> {
    validate(request)?;

    // Idempotency: an append whose events are all stored already, in this stream and in
    // this order, is a retry and gets the first answer back.
    let found: Vec<Option<&StoredAt>> = request
        .events
        .iter()
        .map(|e| stored.get(&e.event_id))
        .collect();
    if let Some(first_found) = request
        .events
        .iter()
        .zip(&found)
        .find(|(_, at)| at.is_some())
    {
        let all: Option<Vec<&StoredAt>> = found.iter().copied().collect();
        let is_same_append = all.as_ref().is_some_and(|locations| {
            locations.iter().all(|at| at.stream_id == request.stream_id)
                && locations.windows(2).all(|w| {
                    w[1].stream_version == w[0].stream_version + 1 && w[1].position > w[0].position
                })
        });
        return match all {
            Some(locations) if is_same_append => Ok(AppendOutcome {
                first_position: locations[0].position,
                last_position: locations[locations.len() - 1].position,
                stream_version: locations[locations.len() - 1].stream_version,
                replayed: true,
            }),
            _ => Err(AppendError::IdempotencyMismatch(first_found.0.event_id)),
        };
    }

    let tip = tips.get(&request.stream_id).copied();
    let actual = tip.map_or(0, |t| t.version);
    let matches = match request.expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::Exact(version) => version == actual,
        ExpectedVersion::Tip { version, event_id } => {
            version == actual && (version == 0 || tip.is_some_and(|t| t.event_id == event_id))
        }
    };
    if !matches {
        return Err(AppendError::Conflict {
            stream_id: request.stream_id.clone(),
            expected: request.expected,
            actual,
        });
    }

    let first_position = head.position + 1;
    let mut version = actual;
    for event in &request.events {
        version += 1;
        let mut row = RecordedEvent {
            position: head.position + 1,
            stream_id: request.stream_id.clone(),
            stream_version: version,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            data: canonical_json(&event.data),
            metadata: canonical_json(&event.metadata),
            recorded_at,
            prev_hash: head.hash,
            hash: head.hash,
        };
        row.hash = row.compute_hash();
        *head = LogHead {
            position: row.position,
            hash: row.hash,
        };
        stored.insert(
            event.event_id,
            StoredAt {
                position: row.position,
                stream_id: request.stream_id.clone(),
                stream_version: version,
            },
        );
        tips.insert(
            request.stream_id.clone(),
            StreamTip {
                version,
                event_id: event.event_id,
            },
        );
        rows.push(row);
    }
    Ok(AppendOutcome {
        first_position,
        last_position: head.position,
        stream_version: version,
        replayed: false,
    })
}

/// Truncates a timestamp to the microseconds the databases keep.
pub fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}
