//! What every handler shares: the shop core, the ledger, the read side, the payment provider,
//! the keys and the limits. Built once by `serve` and handed to actix as `web::Data<AppState>`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use starledger_ledger::commands::Ledger;
use starledger_ledger::ids::UserId;
use starledger_ledger::store::EventStore;
use starledger_projections::queries::Queries;
use starledger_projections::runtime::Progress;
use starledger_projections::store::ReadStore;
use tokio::sync::watch;

use super::admin::RebuildJobs;
use super::audit_jobs::AuditJobs;
use super::audit_source::AuditSource;
use super::auth::ApiKeys;
use super::deadline::Deadline;
use starledger_heleket::sandbox::Sandbox;
use starledger_heleket::PaymentProvider;
use starledger_settings::Secret;
use starledger_shop::settlement::Settlement;
use starledger_shop::Shop;

/// Request limits and timing.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub trust_proxy_headers: bool,
    /// `REQUEST_TIMEOUT_MS`: how long a request may take; `serve` gives the bot this value
    /// too, and it holds its replies to it.
    pub request_timeout: Duration,
}

/// What the webhook endpoint needs to know about Heleket (invoice creation's settings are
/// the shop's, [`starledger_shop::InvoiceSettings`]).
#[derive(Debug, Clone)]
pub struct HeleketSettings {
    /// The key webhooks are signed with.
    pub api_key: Secret,
    /// Allowed webhook senders; empty allows any.
    pub allowed_ips: Vec<IpAddr>,
}

pub struct AppState {
    /// The shop core the user routes call (the bot gets the same `Arc` in its own
    /// `bot::state::BotState`): it owns the ledger currency, the
    /// prices, the invoice settings and the read-your-writes wait.
    pub shop: Arc<Shop>,
    /// The shop's ledger (the same `Arc`).
    pub ledger: Arc<Ledger>,
    pub events: Arc<dyn EventStore>,
    pub read: Arc<dyn ReadStore>,
    /// The shop's cached reads (the same `Arc`).
    pub queries: Arc<Queries>,
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
    /// The operators' console's sessions.
    pub console: Arc<crate::console::Sessions>,
}

impl AppState {
    /// A deadline for work that answers someone but is not held to a request's own deadline
    /// (the Heleket webhook's wait for its settlement to show): `REQUEST_TIMEOUT_MS` from now.
    pub fn deadline(&self) -> Deadline {
        Deadline::after(self.limits.request_timeout)
    }

    /// [`Shop::projected`]: whether the SQL projections show `position`, waited for within
    /// what `deadline` leaves.
    pub async fn projected(&self, position: u64, deadline: &Deadline) -> bool {
        self.shop.projected(position, deadline).await
    }

    /// [`Shop::acknowledged`]: [`Self::projected`], then `user`'s cached rows refreshed.
    pub async fn acknowledged(&self, user: UserId, position: u64, deadline: &Deadline) -> bool {
        self.shop.acknowledged(user, position, deadline).await
    }
}
