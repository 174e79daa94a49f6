//! The projector runtime: follow the log, apply pages, advance checkpoints, survive restarts.
//!
//! One task per table. Each step is one read-model transaction: lock the checkpoint, read the
//! next page of events after it, fold it, save the rows and the new checkpoint, commit. A
//! crash anywhere before the commit leaves both rows and checkpoint as they were, so the page
//! is applied again from the same place: exactly once in effect. Between steps the task
//! sleeps until the event store signals a commit (in-process, or PostgreSQL `NOTIFY`) or a
//! polling interval passes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use starledger_ledger::commands::decode;
use starledger_ledger::ids::StreamId;
use starledger_ledger::store::{EventStore, RecordedEvent, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model::{Needs, Page, Projected, Table};
use crate::store::{ReadError, ReadStore};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Events(#[from] StoreError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("event at position {position} cannot be projected: {reason}")]
    Undecodable { position: u64, reason: String },
    #[error("projections did not reach position {wanted} within the wait (at {reached})")]
    Timeout { wanted: u64, reached: u64 },
    #[error(transparent)]
    AuditWorkers(#[from] starledger_ledger::parallel_audit::WorkersStopped),
    #[error("a rebuild's write task stopped: {0}")]
    WriteTask(String),
}

/// Decodes recorded events for projection.
pub fn decode_page(events: &[RecordedEvent]) -> Result<Vec<Projected>, ProjectionError> {
    events
        .iter()
        .map(|recorded| {
            let undecodable = |reason: String| ProjectionError::Undecodable {
                position: recorded.position,
                reason,
            };
            let user = StreamId::parse(&recorded.stream_id)
                .ok()
                .and_then(|stream| stream.user())
                .ok_or_else(|| {
                    undecodable(format!("stream {:?} is not an account", recorded.stream_id))
                })?;
            Ok(Projected {
                position: recorded.position,
                user_id: user.get(),
                recorded_at: recorded.recorded_at,
                event: decode(recorded).map_err(|e| undecodable(e.to_string()))?,
            })
        })
        .collect()
}

/// Applies already-read events to the rows of `table` inside `tx` (load, fold, save).
pub async fn apply_events(
    tx: &mut dyn crate::store::ReadTx,
    table: Table,
    suffix: &str,
    events: &[Projected],
) -> Result<Page, ProjectionError> {
    let needs = Needs::of(table, events);
    let mut page = Page::default();
    tx.load(table, suffix, &needs, &mut page).await?;
    for projected in events {
        page.apply(table, projected);
    }
    tx.save(table, suffix, &page).await?;
    Ok(page)
}

/// The result of one step of a projector.
#[derive(Debug)]
pub struct Step {
    /// The checkpoint after the step.
    pub checkpoint: u64,
    /// How many events the step applied (0: caught up).
    pub applied: usize,
    /// The rows the step wrote.
    pub page: Page,
}

/// One step: the next page after the checkpoint named `checkpoint`, into `table<suffix>`.
///
/// The page is read *before* the read-model transaction starts, so the transaction never
/// waits on the event store while it holds its locks (on SQLite, the one write lock of the
/// file). Under the lock the checkpoint is checked again: if another instance moved it
/// meanwhile, the page is read again from there.
pub async fn step(
    events: &dyn EventStore,
    read: &dyn ReadStore,
    table: Table,
    checkpoint: &str,
    suffix: &str,
    page_size: usize,
) -> Result<Step, ProjectionError> {
    let mut position = read
        .checkpoints()
        .await?
        .into_iter()
        .find(|c| c.name == checkpoint)
        .map_or(0, |c| c.position);
    loop {
        let recorded = events.read_all(position, page_size).await?;
        let Some(last) = recorded.last().map(|e| e.position) else {
            return Ok(Step {
                checkpoint: position,
                applied: 0,
                page: Page::default(),
            });
        };
        let projected = decode_page(&recorded)?;
        let mut tx = read.begin().await?;
        let locked = tx.lock_checkpoint(checkpoint).await?;
        if locked != position {
            // Another instance applied pages meanwhile; dropping the transaction releases
            // the lock, and we go on from where it left off.
            position = locked;
            continue;
        }
        let page = apply_events(tx.as_mut(), table, suffix, &projected).await?;
        tx.set_checkpoint(checkpoint, last).await?;
        tx.commit().await?;
        return Ok(Step {
            checkpoint: last,
            applied: recorded.len(),
            page,
        });
    }
}

/// Where each live projector stands, as this process last saw it.
pub type Progress = BTreeMap<Table, u64>;

/// The live projectors of one process.
pub struct Runner {
    progress: watch::Receiver<Progress>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

/// Settings of the live runner.
#[derive(Debug, Clone, Copy)]
pub struct RunnerSettings {
    pub page_size: usize,
    pub poll_interval: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            page_size: 2_000,
            poll_interval: Duration::from_millis(500),
        }
    }
}

impl Runner {
    /// Starts one task per table. The tables must exist (`ReadStore::ensure_schema`).
    pub fn start(
        events: Arc<dyn EventStore>,
        read: Arc<dyn ReadStore>,
        settings: RunnerSettings,
    ) -> Runner {
        let (progress_tx, progress) =
            watch::channel(Table::ALL.iter().map(|t| (*t, 0)).collect::<Progress>());
        let progress_tx = Arc::new(progress_tx);
        let (stop, stopped) = watch::channel(false);
        let tasks = Table::ALL
            .into_iter()
            .map(|table| {
                tokio::spawn(run_projector(
                    events.clone(),
                    read.clone(),
                    table,
                    settings,
                    progress_tx.clone(),
                    stopped.clone(),
                ))
            })
            .collect();
        Runner {
            progress,
            tasks,
            stop,
        }
    }

    /// Each table's checkpoint as last seen by this runner.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Waits until every live projector has reached `position` (read-your-writes), at most
    /// `timeout`.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), ProjectionError> {
        wait_for(self.progress.clone(), position, timeout).await
    }

    /// Stops the tasks after their current step and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Waits until every table in `progress` is at `position` or beyond.
pub async fn wait_for(
    mut progress: watch::Receiver<Progress>,
    position: u64,
    timeout: Duration,
) -> Result<(), ProjectionError> {
    let reached = |p: &Progress| p.values().copied().min().unwrap_or(0);
    let arrived = matches!(
        tokio::time::timeout(timeout, progress.wait_for(|p| reached(p) >= position)).await,
        Ok(Ok(_))
    );
    match arrived {
        true => Ok(()),
        false => Err(ProjectionError::Timeout {
            wanted: position,
            reached: reached(&progress.borrow()),
        }),
    }
}

async fn run_projector(
    events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    table: Table,
    settings: RunnerSettings,
    progress: Arc<watch::Sender<Progress>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut committed = events.committed();
    let mut backoff = Duration::from_millis(100);
    while !*stopped.borrow() {
        committed.borrow_and_update();
        match step(
            events.as_ref(),
            read.as_ref(),
            table,
            table.name(),
            "",
            settings.page_size,
        )
        .await
        {
            Ok(done) => {
                backoff = Duration::from_millis(100);
                progress.send_modify(|p| {
                    p.insert(table, done.checkpoint);
                });
                if done.applied > 0 {
                    continue;
                }
                tokio::select! {
                    _ = committed.changed() => {}
                    _ = tokio::time::sleep(settings.poll_interval) => {}
                    _ = stopped.changed() => {}
                }
            }
            Err(error) => {
                tracing::warn!(projector = table.name(), %error, "projection step failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
