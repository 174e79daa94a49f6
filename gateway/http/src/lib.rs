//! The HTTP gateway (actix-web): routes, per-request metrics and the JSON 404.
//!
//! - [`state`]: what handlers share.
//! - [`error`]: typed `{"error":{"code","message"}}` answers.
//! - [`error_code`]: the catalogue of error codes, each with its status.
//! - [`auth`]: API keys and roles; the `Authorized<Role>` extractor.
//! - [`body`]: size-limited bodies and JSON parsing with clear errors.
//! - [`idempotency`]: the `Idempotency-Key` header, namespaced per endpoint.
//! - [`deadline`]: every request answered within `REQUEST_TIMEOUT_MS`.
//! - [`users`]: `/v1/users/…` (register, balance, history, recharges, purchases).
//! - [`webhooks`]: `POST /webhooks/heleket`.
//! - [`telegram`]: `POST /webhooks/telegram` (the bot's webhook mode).
//! - [`admin`]: `/v1/admin/…` (adjustments, projection status and rebuilds).
//! - [`purchases`]: `/v1/admin/purchases…` (open purchases; mark delivered or failed).
//! - [`reviews`]: `/v1/admin/recharges…` (recharges in review or on hold; credit or reject).
//! - [`audit`]: `/v1/audit/…` (event stream; verify and balances at a moment as jobs).
//! - [`audit_jobs`]: those audits as background jobs, one at a time, the last one kept.
//! - [`balance_spool`]: a balances job's result, on disk, read a page at a time.
//! - [`jobs`]: the one-at-a-time slot that rebuilds and audit jobs share.
//! - [`position`]: log positions in query strings, refused past the log's range.
//! - [`sandbox`]: `/sandbox/heleket/…`, only in `HELEKET_MODE=sandbox`.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`console`]: the operators' console at `/console` (HTML pages, sessions, its JSON).
//! - [`webhook_tally`]: the last hour's webhooks by outcome, for the console.
//! - [`openapi`]: the API document, generated from the handlers.
//! - [`wire`]: JSON types several routes share (decimal strings).
//! - [`settings`]: the API keys and their roles (`STARLEDGER_API_KEYS`).
//!
//! May depend on: the shop core (`starledger-shop`), `starledger-heleket` (webhook signatures,
//! the sandbox), the projections, the ledger, `starledger-settings` and
//! `starledger-telemetry`; never on `starledger-bot` (Telegram updates go to the shop core's
//! `UpdateInbox`, as bytes) or teloxide.

pub mod admin;
pub mod audit;
pub mod audit_jobs;
pub mod audit_source;
pub mod auth;
pub mod balance_spool;
pub mod body;
pub mod console;
pub mod deadline;
pub mod error;
pub mod error_code;
pub mod idempotency;
pub mod jobs;
pub mod openapi;
pub mod ops;
pub mod position;
pub mod purchases;
pub mod reviews;
pub mod sandbox;
pub mod settings;
pub mod state;
pub mod telegram;
pub mod users;
pub mod webhook_tally;
pub mod webhooks;
pub mod wire;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use error::ApiError;
use error_code::ErrorCode;

/// Every route of the API ([`openapi::api`], which the API document is generated from), the
/// console's pages, and the JSON 404 for everything else.
pub fn routes(config: &mut web::ServiceConfig) {
    openapi::api(&mut utoipa_actix_web::service_config::ServiceConfig::new(
        config,
    ));
    console::routes(config);
    config.default_service(web::to(not_found));
}

/// Query strings that do not parse (`?limit=abc`) get the API's error format, not actix's
/// plain-text answer.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            format!("the query string is invalid: {error}"),
        )
        .into()
    })
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound, "no such route"))
}

/// Counts requests and their latency per route pattern (never per raw path, which would let
/// callers create unbounded label values).
pub async fn measure(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    // An error here is an answer too (a passed deadline, see `deadline`): count it with
    // the status actix will send for it.
    let response = next.call(request).await;
    let status = match &response {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    }
    .as_u16()
    .to_string();
    metrics::counter!(
        "starledger_http_requests_total",
        "method" => method.clone(), "route" => route.clone(), "status" => status
    )
    .increment(1);
    metrics::histogram!(
        "starledger_http_request_seconds",
        "method" => method, "route" => route
    )
    .record(started.elapsed().as_secs_f64());
    response
}
