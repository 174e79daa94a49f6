//! Group commit: many concurrent appends, one database transaction.
//!
//! Appends are queued to a single writer task. Whenever it is free it takes everything that
//! has queued up (up to a bound), commits it as one transaction through the backend, and
//! answers each caller. Under load, a batch forms while the previous one commits, so the cost
//! of a commit (a WAL flush) is shared by hundreds of commands instead of paid by each.
//! Requests keep their queue order inside a batch, which the command handler relies on.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};

use super::{AppendError, AppendOutcome, AppendRequest, AppendTicket, CommitMode, StoreError};

/// What a backend does for one batch: a single transaction that locks the log head, plans
/// the batch (see `plan`), writes the rows and commits. Answers are in request order.
#[async_trait]
pub trait BatchBackend: Send + Sync + 'static {
    async fn commit_batch(
        &self,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, AppendError>>, StoreError>;
}

struct Pending {
    request: AppendRequest,
    reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
}

/// Sends appends to the backend, batched or one by one per [`CommitMode`].
pub struct Appender<B: BatchBackend> {
    backend: Arc<B>,
    queue: Option<mpsc::Sender<Pending>>,
    committed: watch::Sender<u64>,
}

/// How many appends may wait for the writer before callers are slowed down.
const QUEUE_DEPTH: usize = 16_384;

impl<B: BatchBackend> Appender<B> {
    /// Starts the writer task (in grouped mode). `committed` is advanced after each commit.
    pub fn start(backend: Arc<B>, mode: CommitMode, committed: watch::Sender<u64>) -> Self {
        let queue = match mode {
            CommitMode::PerAppend => None,
            CommitMode::Grouped { max_events } => {
                let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
                tokio::spawn(run_writer(
                    backend.clone(),
                    receiver,
                    max_events.max(1),
                    committed.clone(),
                ));
                Some(sender)
            }
        };
        Self {
            backend,
            queue,
            committed,
        }
    }

    /// Queues an append and returns its answer-to-come. In grouped mode, appends queued one
    /// after the other are committed in that order; in per-append mode the transaction runs
    /// when the ticket is awaited.
    pub async fn enqueue(&self, request: AppendRequest) -> Result<AppendTicket, AppendError> {
        let Some(queue) = &self.queue else {
            let backend = self.backend.clone();
            let committed = self.committed.clone();
            return Ok(Box::pin(async move {
                let mut answers = backend.commit_batch(std::slice::from_ref(&request)).await?;
                let answer = answers
                    .pop()
                    .unwrap_or(Err(AppendError::Store(StoreError::Closed)));
                if let Ok(outcome) = &answer {
                    advance(&committed, outcome.last_position);
                }
                answer
            }));
        };
        let (reply, answer) = oneshot::channel();
        queue
            .send(Pending { request, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Box::pin(async move {
            answer.await.map_err(|_| StoreError::Closed)?
        }))
    }

    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }
}

pub(crate) fn advance(committed: &watch::Sender<u64>, position: u64) {
    committed.send_if_modified(|current| {
        if position > *current {
            *current = position;
            true
        } else {
            false
        }
    });
}

async fn run_writer<B: BatchBackend>(
    backend: Arc<B>,
    mut receiver: mpsc::Receiver<Pending>,
    max_events: usize,
    committed: watch::Sender<u64>,
) {
    while let Some(first) = receiver.recv().await {
        let mut events = first.request.events.len();
        let mut batch = vec![first];
        while events < max_events {
            match receiver.try_recv() {
                Ok(next) => {
                    events += next.request.events.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let (requests, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|p| (p.request, p.reply)).unzip();
        match backend.commit_batch(&requests).await {
            Ok(answers) => {
                let highest = answers
                    .iter()
                    .filter_map(|a| a.as_ref().ok())
                    .map(|o| o.last_position)
                    .max();
                if let Some(position) = highest {
                    advance(&committed, position);
                }
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // A caller that stopped waiting (timeout, cancelled request) is fine:
                    // its events are committed and a retry will find them.
                    let _ = reply.send(answer);
                }
            }
            Err(error) => {
                tracing::warn!(%error, requests = requests.len(), "group commit failed; every append in it is refused");
                for reply in replies {
                    let _ = reply.send(Err(AppendError::Store(error.clone())));
                }
            }
        }
    }
}
