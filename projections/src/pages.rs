//! Reading the log ahead: a task fetches the next page while the caller works on this one.
//!
//! Rebuilds and audits are a loop of "read a page, process it". Reading is the database's
//! work and processing is ours; with a reader task a page ahead, the two overlap instead of
//! taking turns.

use std::sync::Arc;

use starledger_ledger::store::{EventStore, RecordedEvent, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Pages of the log after a position, up to the head as it was when each page was read.
pub struct PageReader {
    pages: mpsc::Receiver<Result<Vec<RecordedEvent>, StoreError>>,
    task: JoinHandle<()>,
}

impl PageReader {
    pub fn start(events: Arc<dyn EventStore>, after: u64, page_size: usize) -> PageReader {
        PageReader::until(events, after, u64::MAX, page_size)
    }

    /// Pages after `after` that hold positions up to `until` (the last page may reach past
    /// it): for a second pass over a log that has grown since the first.
    pub fn until(
        events: Arc<dyn EventStore>,
        after: u64,
        until: u64,
        page_size: usize,
    ) -> PageReader {
        // Two pages in flight: one being processed, one ready.
        let (sender, pages) = mpsc::channel(2);
        let task = tokio::spawn(async move {
            let mut after = after;
            while after < until {
                match events.read_all(after, page_size.max(1)).await {
                    Ok(page) => {
                        let Some(last) = page.last() else { return };
                        after = last.position;
                        if sender.send(Ok(page)).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                }
            }
        });
        PageReader { pages, task }
    }

    /// The next page, or `None` once the reader has caught up with the log.
    pub async fn next(&mut self) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        self.pages.recv().await.transpose()
    }
}

impl Drop for PageReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}
