//! Following the log: read everything after a position, then wait for more.
//!
//! A [`Tail`] pages through the log from a checkpoint and, once caught up, sleeps until the
//! store signals a commit (in-process, or PostgreSQL `NOTIFY`) or a polling interval passes,
//! whichever comes first. The polling fallback means a missed notification delays a reader
//! but never makes it skip an event: it always reads by position, and positions are gapless.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{EventStore, RecordedEvent, StoreError};

pub struct Tail {
    store: Arc<dyn EventStore>,
    after: u64,
    page_size: usize,
    poll_interval: Duration,
    committed: watch::Receiver<u64>,
}

impl Tail {
    pub fn new(store: Arc<dyn EventStore>, after: u64) -> Self {
        let committed = store.committed();
        Self {
            store,
            after,
            page_size: 1_000,
            poll_interval: Duration::from_millis(500),
            committed,
        }
    }

    pub fn page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The position of the last event handed out.
    pub fn position(&self) -> u64 {
        self.after
    }

    /// The next page of events; waits while there are none.
    pub async fn next_page(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            self.committed.borrow_and_update();
            let page = self.store.read_all(self.after, self.page_size).await?;
            if let Some(last) = page.last() {
                self.after = last.position;
                return Ok(page);
            }
            // Either a commit signal or the poll interval, whichever comes first.
            if let Ok(Err(_closed)) =
                tokio::time::timeout(self.poll_interval, self.committed.changed()).await
            {
                // No more signals will come: keep polling.
                tokio::time::sleep(self.poll_interval).await;
            }
        }
    }
}
