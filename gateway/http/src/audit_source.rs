//! Where the auditors' reads run: the event stream, verification and balances at a moment.
//!
//! With a streaming standby (`DATABASE_READ_URL`) they go there, to keep long replays off the
//! primary, but only when the standby has replayed everything the same read would see on the
//! primary at that moment: a lagging standby must never hand an auditor a shorter log or a
//! balance without the last payments in it. So a read first takes the primary's head (one
//! cheap query), waits up to [`STANDBY_WAIT`] for the standby's head to reach it, and falls
//! back to the primary otherwise (also when the standby cannot be asked).

use std::sync::Arc;
use std::time::Duration;

use starledger_ledger::store::{EventStore, StoreError};
use starledger_projections::store::ReadStore;
use tokio::time::Instant;

/// How long an audit read waits for the standby to catch up before using the primary.
pub const STANDBY_WAIT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);

/// One copy of the log and its read models.
#[derive(Clone)]
pub struct Copy {
    pub events: Arc<dyn EventStore>,
    pub read: Arc<dyn ReadStore>,
    /// `primary` or `standby`, for the log and the metrics.
    pub name: &'static str,
}

pub struct AuditSource {
    primary: Copy,
    standby: Option<Copy>,
}

impl AuditSource {
    pub fn new(primary: Copy, standby: Option<Copy>) -> Self {
        Self { primary, standby }
    }

    /// The copy to read everything the primary holds now from.
    pub async fn complete(&self) -> Result<Copy, StoreError> {
        self.holding(u64::MAX).await
    }

    /// The copy to read the events up to `last` from (those the primary holds, if fewer):
    /// the primary's head is asked only when there is a standby to compare it with.
    pub async fn holding(&self, last: u64) -> Result<Copy, StoreError> {
        if self.standby.is_none() {
            return Ok(self.primary.clone());
        }
        let head = self.primary.events.head().await?.position;
        Ok(self.reaching(head.min(last)).await)
    }

    /// The standby if it reaches `position` within [`STANDBY_WAIT`], else the primary.
    pub async fn reaching(&self, position: u64) -> Copy {
        let Some(standby) = &self.standby else {
            return self.primary.clone();
        };
        let deadline = Instant::now() + STANDBY_WAIT;
        loop {
            match standby.events.head().await {
                Ok(head) if head.position >= position => {
                    metrics::counter!("starledger_audit_reads_total", "source" => "standby")
                        .increment(1);
                    return standby.clone();
                }
                Ok(_) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                Ok(head) => {
                    tracing::info!(
                        standby = head.position,
                        wanted = position,
                        "the standby is behind: this audit read runs on the primary"
                    );
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot ask the standby: this audit read runs on the primary");
                    break;
                }
            }
        }
        metrics::counter!("starledger_audit_reads_total", "source" => "primary").increment(1);
        self.primary.clone()
    }
}
