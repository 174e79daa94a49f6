//! [`LogAudit`] with the per-event work spread over the cores: hashing and decoding on
//! worker threads, the fold (postings, trial balance, account invariants) on one thread of
//! its own, in log order, overlapping with both.
//!
//! Every row carries its `prev_hash`, so a page can be hash-checked without the pages before
//! it ([`check_links`]); the fold thread joins the pages in order ([`LogAudit::join`]), which
//! checks the link across each page edge and gives the same findings, break for break, as
//! [`LogAudit::check`] on every row in turn. Decoding an event needs nothing but the event,
//! so the workers do that too; what is left in order is the fold itself.
//!
//! Pages go to the workers in turn (page `k` to worker `k mod n`), and the fold thread takes
//! them back in the same turn, so they come out in order with no reordering buffer. Memory is
//! bounded: each page holds a permit from [`ParallelAudit::push`] until it is folded, and
//! there are [`pages_in_flight`] of them.

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::audit::{AuditReport, LogAudit};
use crate::chain::{check_links, PageLinks};
use crate::commands::decode;
use crate::events::{AccountEvent, DecodeError};
use crate::store::RecordedEvent;

/// The audit's threads stopped before the audit was done (one of them panicked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit's worker threads stopped before the end of the log")]
pub struct WorkersStopped;

struct Job {
    page: Vec<RecordedEvent>,
    permit: OwnedSemaphorePermit,
}

struct Checked {
    page: Vec<RecordedEvent>,
    links: Option<PageLinks>,
    decoded: Vec<Result<AccountEvent, DecodeError>>,
    _permit: OwnedSemaphorePermit,
}

/// How many hashing threads: one per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Pages held at once with `workers` workers: one each being checked, one being folded, and
/// one ready for whichever comes free first.
pub fn pages_in_flight(workers: usize) -> usize {
    workers + 2
}

/// An audit in progress on worker threads. Feed it pages in log order with
/// [`ParallelAudit::push`], then [`ParallelAudit::finish`].
pub struct ParallelAudit {
    jobs: Vec<mpsc::Sender<Job>>,
    next: usize,
    permits: Arc<Semaphore>,
    /// The audit, and how many pages it folded.
    done: oneshot::Receiver<(LogAudit, usize)>,
}

impl ParallelAudit {
    /// Starts `workers` hashing threads (at least one) and the fold thread, which goes on
    /// from `audit` (a fresh one, or one resumed from a checkpoint).
    pub fn start(audit: LogAudit, workers: usize) -> ParallelAudit {
        let workers = workers.max(1);
        let mut jobs = Vec::with_capacity(workers);
        let mut results = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (job_sender, mut job_receiver) = mpsc::channel::<Job>(1);
            let (result_sender, result_receiver) = std_mpsc::sync_channel::<Checked>(1);
            std::thread::spawn(move || {
                while let Some(job) = job_receiver.blocking_recv() {
                    let links = check_links(&job.page);
                    let decoded = job.page.iter().map(decode).collect();
                    let checked = Checked {
                        page: job.page,
                        links,
                        decoded,
                        _permit: job.permit,
                    };
                    if result_sender.send(checked).is_err() {
                        return;
                    }
                }
            });
            jobs.push(job_sender);
            results.push(result_receiver);
        }
        let (done_sender, done) = oneshot::channel();
        std::thread::spawn(move || {
            let mut audit = audit;
            let mut folded = 0;
            // Page k comes back from worker k mod n; a worker with no page k has finished, and
            // so has the log (or the worker died: `finish` compares the count).
            for turn in (0..results.len()).cycle() {
                let Ok(checked) = results[turn].recv() else {
                    break;
                };
                folded += 1;
                if let Some(links) = &checked.links {
                    audit.join(links);
                }
                for (event, decoded) in checked.page.iter().zip(checked.decoded) {
                    audit.fold(event, decoded);
                }
            }
            let _ = done_sender.send((audit, folded));
        });
        ParallelAudit {
            jobs,
            next: 0,
            permits: Arc::new(Semaphore::new(pages_in_flight(workers))),
            done,
        }
    }

    /// Hands the next page of the log (in order, no gaps between pages) to the workers.
    /// Waits while [`pages_in_flight`] pages are still being checked or folded.
    pub async fn push(&mut self, page: Vec<RecordedEvent>) -> Result<(), WorkersStopped> {
        if page.is_empty() {
            return Ok(());
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| WorkersStopped)?;
        let worker = self.next % self.jobs.len();
        self.next += 1;
        self.jobs[worker]
            .send(Job { page, permit })
            .await
            .map_err(|_| WorkersStopped)
    }

    /// Waits for every page pushed to be checked and folded, and reports.
    pub async fn finish(self) -> Result<AuditReport, WorkersStopped> {
        drop(self.jobs);
        let (audit, folded) = self.done.await.map_err(|_| WorkersStopped)?;
        if folded != self.next {
            return Err(WorkersStopped);
        }
        Ok(audit.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainBreak;
    use crate::store::plan::{plan_batch, to_micros, BatchFacts};
    use crate::store::{AppendRequest, ExpectedVersion, NewEvent};
    use serde_json::json;

    /// A chained log of `n` undecodable but well-chained events on one stream.
    fn log(n: usize) -> Vec<RecordedEvent> {
        let request = AppendRequest {
            stream_id: "account-1".into(),
            expected: ExpectedVersion::Any,
            events: (0..n)
                .map(|i| NewEvent {
                    event_id: crate::ids::EventId(uuid::Uuid::new_v4()),
                    event_type: "Nothing".into(),
                    schema_version: 1,
                    data: json!({ "i": i }),
                    metadata: json!({}),
                })
                .collect(),
        };
        plan_batch(
            BatchFacts::default(),
            &[request],
            to_micros(chrono::Utc::now()),
        )
        .rows
    }

    fn sequential(events: &[RecordedEvent]) -> AuditReport {
        let mut audit = LogAudit::default();
        events.iter().for_each(|e| audit.check(e));
        audit.finish()
    }

    async fn parallel(events: &[RecordedEvent], page: usize, workers: usize) -> AuditReport {
        let mut audit = ParallelAudit::start(LogAudit::default(), workers);
        for chunk in events.chunks(page) {
            audit.push(chunk.to_vec()).await.unwrap();
        }
        audit.finish().await.unwrap()
    }

    fn chain_findings(report: &AuditReport) -> Vec<String> {
        report
            .findings
            .iter()
            .filter(|f| matches!(f, crate::audit::Finding::Chain(_)))
            .map(|f| f.to_string())
            .collect()
    }

    /// A break at every position of a 40-event log, read in pages of 7 (so some breaks fall on
    /// a page's first row, the edge the join checks) by 1 to 3 workers: the same chain
    /// finding, head and count as the sequential audit.
    #[tokio::test]
    async fn a_break_anywhere_is_found_where_the_sequential_audit_finds_it() {
        for (kind, at) in (0..4).flat_map(|kind| (1..=40).map(move |at| (kind, at))) {
            if kind == 2 && at == 40 {
                continue; // the last event removed leaves a sound, shorter log
            }
            let mut events = log(40);
            let i = at - 1;
            match kind {
                0 => events[i].data = r#"{"i":"edited"}"#.into(),
                1 => events[i].prev_hash = crate::chain::Hash([7; 32]),
                2 => {
                    events.remove(i);
                }
                _ => events[i].position += 100,
            }
            let expected = sequential(&events);
            for workers in 1..=3 {
                let found = parallel(&events, 7, workers).await;
                assert_eq!(
                    chain_findings(&found),
                    chain_findings(&expected),
                    "kind {kind} at {at}, {workers} workers"
                );
                assert_eq!(found.head_position, expected.head_position);
                assert_eq!(found.head_hash, expected.head_hash);
                assert_eq!(found.events, expected.events);
            }
            assert_eq!(chain_findings(&expected).len(), 1, "kind {kind} at {at}");
        }
    }

    #[tokio::test]
    async fn an_edit_on_a_page_edge_names_its_position() {
        let mut events = log(30);
        // Page size 10: position 11 opens the second page.
        events[10].data = r#"{"i":"edited"}"#.into();
        let report = parallel(&events, 10, 2).await;
        assert_eq!(
            chain_findings(&report),
            [ChainBreak::Altered { position: 11 }.to_string()]
        );
        assert_eq!(report.head_position, 10);
        // A link broken on the edge (the row itself re-hashed, as a careful forger would).
        let mut events = log(30);
        events[10].prev_hash = crate::chain::Hash([1; 32]);
        events[10].hash = events[10].compute_hash();
        let report = parallel(&events, 10, 2).await;
        assert_eq!(
            chain_findings(&report),
            [ChainBreak::BrokenLink { position: 11 }.to_string()]
        );
    }

    #[tokio::test]
    async fn a_sound_log_in_many_pages_ends_at_its_head() {
        let events = log(100);
        let report = parallel(&events, 9, 2).await;
        assert!(chain_findings(&report).is_empty(), "{:?}", report.findings);
        assert_eq!(report.head_position, 100);
        assert_eq!(report.head_hash, events[99].hash);
        assert_eq!(report.events, 100);
    }
}
