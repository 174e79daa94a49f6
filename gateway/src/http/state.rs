//! What every handler shares: the ledger, the read side, the payment provider, the keys and
//! the limits. Built once by `serve` and handed to actix as `web::Data<AppState>`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use starledger_ledger::commands::Ledger;
use starledger_ledger::ids::UserId;
use starledger_ledger::money::Currency;
use starledger_ledger::pricing::StarPricing;
use starledger_ledger::store::EventStore;
use starledger_projections::queries::Queries;
use starledger_projections::runtime::{self, Progress};
use starledger_projections::store::ReadStore;
use tokio::sync::watch;

use super::admin::RebuildJobs;
use super::audit_jobs::AuditJobs;
use super::audit_source::AuditSource;
use super::auth::ApiKeys;
use super::deadline::Deadline;
use crate::config::server::Secret;
use crate::heleket::sandbox::Sandbox;
use crate::heleket::PaymentProvider;
use crate::settlement::Settlement;

/// Request limits and timing.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// How long a command's answer waits for projections to show it (at most what the
    /// request's deadline leaves, see [`Deadline::budget`]).
    pub read_your_writes: Duration,
    pub trust_proxy_headers: bool,
    /// `REQUEST_TIMEOUT_MS`: how long a request may take; the bot holds its replies to it too.
    pub request_timeout: Duration,
}

/// What the webhook endpoint and invoice creation need to know about Heleket.
#[derive(Debug, Clone)]
pub struct HeleketSettings {
    /// The key webhooks are signed with.
    pub api_key: Secret,
    /// Allowed webhook senders; empty allows any.
    pub allowed_ips: Vec<IpAddr>,
    pub callback_url: String,
    pub invoice_lifetime_seconds: u32,
    /// The network of the ledger's coin, the only one invoices accept.
    pub network: String,
}

pub struct AppState {
    pub ledger: Arc<Ledger>,
    pub events: Arc<dyn EventStore>,
    pub read: Arc<dyn ReadStore>,
    pub queries: Queries,
    /// Where the auditors' reads run (the standby when it is complete enough).
    pub audit: Arc<AuditSource>,
    /// Where the SQL projectors of this process stand.
    pub projections: watch::Receiver<Progress>,
    pub provider: Arc<dyn PaymentProvider>,
    /// Turns what Heleket says about a payment into ledger commands (webhooks, reconciler).
    pub settlement: Arc<Settlement>,
    /// Present in `HELEKET_MODE=sandbox`: the routes that "pay" sandbox invoices use it.
    pub sandbox: Option<Arc<Sandbox>>,
    pub keys: ApiKeys,
    pub currency: Currency,
    pub pricing: StarPricing,
    pub limits: Limits,
    pub heleket: HeleketSettings,
    pub metrics: PrometheusHandle,
    pub rebuilds: RebuildJobs,
    /// The running or last audit job (verify, balances at a moment).
    pub audit_jobs: AuditJobs,
    /// Projection lag (events) above which `/readyz` says not ready.
    pub ready_max_lag: u64,
    /// The main runtime, for long background work started by a request (rebuilds), which
    /// must not run on an HTTP worker's own runtime.
    pub runtime: tokio::runtime::Handle,
}

impl AppState {
    /// A deadline for work outside an HTTP request that answers someone all the same (the
    /// bot's replies, its notifications): `REQUEST_TIMEOUT_MS` from now.
    pub fn deadline(&self) -> Deadline {
        Deadline::after(self.limits.request_timeout)
    }

    /// Waits, at most the read-your-writes timeout and never past what `deadline` leaves,
    /// until the SQL projections show `position`. Returns whether they do; a timeout is not
    /// an error, because the command is already durable — the answer just says the read side
    /// is behind.
    pub async fn projected(&self, position: u64, deadline: &Deadline) -> bool {
        runtime::wait_for(
            self.projections.clone(),
            position,
            deadline.budget(self.limits.read_your_writes),
        )
        .await
        .is_ok()
    }

    /// [`Self::projected`] for a write about to be acknowledged to `user`'s caller, and then
    /// the user's cached rows refreshed from the projections: acknowledged means visible, so a
    /// plain read on this instance after the 2xx shows the write, not a row cached before it.
    pub async fn acknowledged(&self, user: UserId, position: u64, deadline: &Deadline) -> bool {
        let projected = self.projected(position, deadline).await;
        if projected {
            if let Err(error) = self.queries.refresh(user.get()).await {
                tracing::warn!(%user, %error, "cannot refresh the cached rows of an acknowledged write");
            }
        }
        projected
    }
}
