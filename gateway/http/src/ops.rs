//! Operations endpoints, open without a key: `/healthz` (the process answers), `/readyz`
//! (the database answers and the projections are not far behind; a load balancer takes the
//! instance out of rotation otherwise) and `/metrics` (Prometheus text, every metric with
//! the help text of [`starledger_telemetry::metrics_catalog`]).
//!
//! Redis down makes the instance `degraded`, not unready: reads fall back to the database and
//! stay correct, and taking every instance out of rotation would turn a slower service into
//! no service.

use std::sync::Once;
use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::state::AppState;
use starledger_telemetry::metrics_catalog::{
    self, CIRCUIT_BREAKER_OPEN, LEDGER_CACHED_ACCOUNTS, LEDGER_CONFLICTS, LOG_HEAD_POSITION,
    PROJECTION_LAG_EVENTS, REDIS_HEALTHY,
};

/// How long a readiness probe waits for the database.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes(config: &mut ServiceConfig) {
    config.service(healthz).service(readyz).service(prometheus);
}

/// The process answers.
#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// Liveness
///
/// The process answers; nothing else is checked.
#[utoipa::path(
    operation_id = "healthz",
    tag = "ops",
    responses((status = 200, description = "Alive.", body = Health)),
)]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Whether this instance should take traffic.
#[derive(Serialize, ToSchema)]
struct Readiness {
    /// `ready`, `degraded` (ready, but Redis is unavailable and reads go to the database;
    /// 200) or `not ready` (503).
    #[schema(example = "ready")]
    status: &'static str,
    /// `ok` or `unavailable`: whether the event log answered within 2 s.
    #[schema(example = "ok")]
    database: &'static str,
    /// `ok`, `unavailable` or `not configured`.
    #[schema(example = "ok")]
    redis: &'static str,
    /// Log head minus the lowest SQL projector checkpoint; null when the log did not
    /// answer. Above `READY_MAX_LAG` (default 10000) is not ready.
    projection_lag_events: Option<u64>,
    payment_provider: ProviderState,
}

/// The payment provider's client.
#[derive(Serialize, ToSchema)]
struct ProviderState {
    /// `heleket` or `sandbox`.
    #[schema(example = "heleket")]
    name: &'static str,
    /// `open` or `closed`. Informational: an open circuit does not make the instance
    /// unready.
    #[schema(example = "closed")]
    circuit: &'static str,
}

/// The lowest checkpoint among this process's SQL projectors.
pub(super) fn projected_position(state: &AppState) -> u64 {
    state
        .projections
        .borrow()
        .values()
        .copied()
        .min()
        .unwrap_or(0)
}

/// Readiness
///
/// Whether the event log answers and the projections are not far behind; a load balancer
/// takes the instance out of rotation otherwise. Redis down is `degraded`, still ready.
#[utoipa::path(
    operation_id = "readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready (or degraded).", body = Readiness),
        (status = 503, description = "Not ready.", body = Readiness),
    ),
)]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let head = match tokio::time::timeout(PROBE_TIMEOUT, state.events.head()).await {
        Ok(Ok(head)) => Some(head.position),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: event log unavailable");
            None
        }
        Err(_) => {
            tracing::warn!("readiness: event log did not answer in time");
            None
        }
    };
    let cache = state.queries.cache();
    let redis = match cache.mode() {
        "in-process" => "not configured",
        _ if cache.redis_healthy() => "ok",
        _ => "unavailable",
    };
    let projected = projected_position(&state);
    let lag = head.map(|h| h.saturating_sub(projected));
    let lag_ok = lag.is_some_and(|lag| lag <= state.ready_max_lag);
    let ready = head.is_some() && lag_ok;
    let status = match (ready, redis) {
        (false, _) => "not ready",
        (true, "unavailable") => "degraded",
        (true, _) => "ready",
    };
    let body = Readiness {
        status,
        database: if head.is_some() { "ok" } else { "unavailable" },
        redis,
        projection_lag_events: lag,
        payment_provider: ProviderState {
            name: state.provider.name(),
            circuit: if state.provider.circuit_open() {
                "open"
            } else {
                "closed"
            },
        },
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics
///
/// Every metric in Prometheus' text format, each with its help text.
#[utoipa::path(
    operation_id = "metrics",
    tag = "ops",
    responses((status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4", body = String)),
)]
#[get("/metrics")]
async fn prometheus(state: web::Data<AppState>) -> HttpResponse {
    // The help texts, given to the process-wide recorder before its first rendering.
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(metrics_catalog::describe_all);
    // Gauges that are cheaper to read at scrape time than to keep current. Bounded like the
    // readiness probe: /metrics has no request deadline, and a scrape during a database
    // outage should still show the rest.
    if let Ok(Ok(head)) = tokio::time::timeout(PROBE_TIMEOUT, state.events.head()).await {
        metrics::gauge!(LOG_HEAD_POSITION).set(head.position as f64);
        for (table, position) in state.projections.borrow().iter() {
            metrics::gauge!(PROJECTION_LAG_EVENTS, "projector" => table.name())
                .set(head.position.saturating_sub(*position) as f64);
        }
    }
    metrics::counter!(LEDGER_CONFLICTS).absolute(state.ledger.conflicts());
    metrics::gauge!(LEDGER_CACHED_ACCOUNTS).set(state.ledger.cached_accounts() as f64);
    metrics::gauge!(CIRCUIT_BREAKER_OPEN, "provider" => state.provider.name()).set(
        if state.provider.circuit_open() {
            1.0
        } else {
            0.0
        },
    );
    let cache = state.queries.cache();
    metrics::gauge!(REDIS_HEALTHY).set(if cache.redis_healthy() { 1.0 } else { 0.0 });
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
