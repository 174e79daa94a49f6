//! Where each projector (and each reactor that keeps a checkpoint beside them) stands: its
//! checkpoint and how far behind the log it is, in events and in seconds. Shown by `starledger projections status`, the admin API and `/readyz`.

use chrono::{DateTime, Utc};
use starledger_ledger::store::EventStore;

use crate::cache_projector;
use crate::model::Table;
use crate::runtime::ProjectionError;
use crate::store::ReadStore;

/// One projector's position.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectorStatus {
    pub name: String,
    pub checkpoint: u64,
    pub lag_events: u64,
    /// Age of the oldest event the projector has not applied yet (0 when caught up).
    pub lag_seconds: f64,
    /// `None`: the projector has never run.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The log head and every projector's status (the SQL tables, then the cache).
pub async fn status(
    events: &dyn EventStore,
    read: &dyn ReadStore,
) -> Result<(u64, Vec<ProjectorStatus>), ProjectionError> {
    let head = events.head().await?.position;
    let checkpoints = read.checkpoints().await?;
    let known: Vec<&str> = Table::ALL
        .iter()
        .map(|t| t.name())
        .chain([cache_projector::CHECKPOINT])
        .collect();
    // Then whatever else keeps a checkpoint here: the gateway's reactors (fulfilment,
    // notifications), which follow the log the same way.
    let others = checkpoints
        .iter()
        .map(|c| c.name.as_str())
        .filter(|name| !known.contains(name));
    let names: Vec<String> = known
        .iter()
        .copied()
        .chain(others)
        .map(str::to_owned)
        .collect();
    let mut statuses = Vec::new();
    for name in names {
        let checkpoint = checkpoints.iter().find(|c| c.name == name);
        let position = checkpoint.map_or(0, |c| c.position);
        let lag_seconds = match events.read_all(position, 1).await?.first() {
            Some(next) => (Utc::now() - next.recorded_at)
                .to_std()
                .map_or(0.0, |d| d.as_secs_f64()),
            None => 0.0,
        };
        statuses.push(ProjectorStatus {
            name,
            checkpoint: position,
            lag_events: head.saturating_sub(position),
            lag_seconds,
            updated_at: checkpoint.map(|c| c.updated_at),
        });
    }
    Ok((head, statuses))
}

/// How many events were recorded after `since`: the log head minus the first position recorded
/// after it, found by bisecting the log (about 2 log2(head) one-event reads, however busy the
/// log is). It assumes commit times grow with positions, which holds for one writer; with
/// several instances whose clocks disagree it can be off by the events of that disagreement.
pub async fn recorded_since(
    events: &dyn EventStore,
    head: u64,
    since: DateTime<Utc>,
) -> Result<u64, ProjectionError> {
    // The first position whose event is newer than `since` lies in (low, high]; high = head + 1
    // means none is.
    let (mut low, mut high) = (0u64, head + 1);
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        let newer = match events.read_all(middle - 1, 1).await?.first() {
            Some(event) => event.recorded_at > since,
            None => true,
        };
        if newer {
            high = middle;
        } else {
            low = middle;
        }
    }
    Ok(head + 1 - high)
}
