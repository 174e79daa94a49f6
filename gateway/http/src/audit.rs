//! `/v1/audit/…`: what auditors read. The event stream with its hashes (NDJSON, paged by
//! position); and, as background jobs (see [`super::audit_jobs`]) followed at
//! `/v1/audit/jobs/{id}`, a full verification (hash chain, postings, invariants, trial
//! balance, and every read model against a fresh replay) and every balance as it stood at a
//! past moment.

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use starledger_projections::audit;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::audit_jobs::{
    self, AuditJobAccepted, AuditJobAnswer, AuditRequest, AuditResult, BalancesAt, JobResult,
};
use super::auth::{Auditor, Authorized};
use super::error::ApiError;
use super::error_code::ErrorCode;
use super::position::position;
use super::state::AppState;

/// Most events one page of the stream may hold.
pub const MAX_EVENTS_PAGE: usize = 10_000;

/// Most balances one page of a balances job's result may hold.
pub const MAX_BALANCES_PAGE: usize = 10_000;

pub fn routes(config: &mut ServiceConfig) {
    config
        .service(events)
        .service(start_verify)
        .service(start_verify_post)
        .service(start_balances)
        .service(start_balances_post)
        .service(job);
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Events after this position (0: from the start); past 9223372036854775807, 400
    /// `invalid_position`.
    from: Option<u64>,
    /// Events in the page, 1 to 10000 (else 400 `invalid_limit`).
    #[param(minimum = 1, maximum = 10000, default = 1000)]
    limit: Option<usize>,
}

/// Export events
///
/// The event log with its hashes, one `AuditEvent` JSON object per line (NDJSON), in
/// position order, a page at a time. On a read replica the page is served only if the
/// replica holds every event the primary would put in it.
#[utoipa::path(
    operation_id = "exportEvents",
    tag = "audit",
    security(("bearer" = ["auditor", "admin"])),
    params(EventsQuery),
    responses(
        (status = 200, description = "One page: up to `limit` events after `from`, each line \
            an `AuditEvent` ending in `\\n`.",
            content_type = "application/x-ndjson", body = String,
            headers(("Next-From" = u64, description = "Where the next page starts (its \
                `from`); absent on the last page."))),
    ),
)]
#[get("/v1/audit/events")]
async fn events(
    state: web::Data<AppState>,
    _caller: Authorized<Auditor>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let from = position("from", query.from)?.unwrap_or(0);
    let limit = query.limit.unwrap_or(1_000);
    if !(1..=MAX_EVENTS_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidLimit,
            format!("limit must be 1 to {MAX_EVENTS_PAGE}"),
        ));
    }
    // The standby serves the page only if it holds every event the primary would put in it.
    let source = state
        .audit
        .holding(from.saturating_add(limit as u64))
        .await?;
    let recorded = source.events.read_all(from, limit).await?;
    let mut body = String::new();
    for event in &recorded {
        body.push_str(&audit::export_line(event)?.to_string());
        body.push('\n');
    }
    let mut response = HttpResponse::Ok();
    response.content_type("application/x-ndjson");
    // Where the next page starts; absent on the last page.
    if recorded.len() == limit {
        if let Some(last) = recorded.last() {
            response.insert_header(("Next-From", last.position.to_string()));
        }
    }
    Ok(response.body(body))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct VerifyQuery {
    /// `log` checks the log alone; `all` (the default) also every read model; anything else
    /// is 400 `invalid_scope`.
    #[param(example = "all")]
    scope: Option<String>,
}

/// Start verifying the ledger
///
/// Starts a background job that checks the hash chain, the postings, the invariants and the
/// trial balance over the whole log and, with `scope=all`, every read model against a fresh
/// replay (in passes of bounded memory on a large log). Answers at once with 202 and the
/// job's `Location`; the report is the job's `result` at `GET /v1/audit/jobs/{id}`. One
/// audit job at a time per instance: the same request while it runs returns it, another is
/// 409.
#[utoipa::path(
    operation_id = "startVerify",
    tag = "audit",
    security(("bearer" = ["auditor", "admin"])),
    params(VerifyQuery),
    responses(
        (status = 202, description = "Started (or already running with the same \
            parameters): the job as it is now. Follow it at `Location`.",
            body = AuditJobAccepted,
            headers(("Location" = String, description = "The job: `/v1/audit/jobs/{id}`."))),
    ),
)]
#[get("/v1/audit/verify")]
async fn start_verify(
    state: web::Data<AppState>,
    caller: Authorized<Auditor>,
    query: web::Query<VerifyQuery>,
) -> Result<HttpResponse, ApiError> {
    verify(&state, &caller, &query)
}

/// Start verifying the ledger (POST)
///
/// The same as `GET /v1/audit/verify`, for clients that start jobs with POST.
#[utoipa::path(
    operation_id = "startVerifyPost",
    tag = "audit",
    security(("bearer" = ["auditor", "admin"])),
    params(VerifyQuery),
    responses(
        (status = 202, description = "Started (or already running with the same \
            parameters): the job as it is now. Follow it at `Location`.",
            body = AuditJobAccepted,
            headers(("Location" = String, description = "The job: `/v1/audit/jobs/{id}`."))),
    ),
)]
#[post("/v1/audit/verify")]
async fn start_verify_post(
    state: web::Data<AppState>,
    caller: Authorized<Auditor>,
    query: web::Query<VerifyQuery>,
) -> Result<HttpResponse, ApiError> {
    verify(&state, &caller, &query)
}

/// Starts a verification job (or finds it running): 202 and its `Location`.
fn verify(
    state: &AppState,
    caller: &Authorized<Auditor>,
    query: &VerifyQuery,
) -> Result<HttpResponse, ApiError> {
    let with_tables = match query.scope.as_deref() {
        None | Some("all") => true,
        Some("log") => false,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidScope,
                "scope must be log or all",
            ))
        }
    };
    audit_jobs::start(state, &caller.name, AuditRequest::Verify { with_tables })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct BalancesQuery {
    /// The moment, an RFC 3339 time (else 400 `invalid_time`); absent: when the job starts.
    #[param(example = "2026-11-25T12:00:00Z")]
    at: Option<String>,
}

/// Start computing balances at a moment
///
/// Starts a background job that replays the log up to `at` and keeps every balance as it
/// stood then, read a page at a time from the job's `result` at `GET /v1/audit/jobs/{id}`.
/// One audit job at a time per instance, as for verify.
#[utoipa::path(
    operation_id = "startBalancesAt",
    tag = "audit",
    security(("bearer" = ["auditor", "admin"])),
    params(BalancesQuery),
    responses(
        (status = 202, description = "Started (or already running with the same \
            parameters): the job as it is now. Follow it at `Location`.",
            body = AuditJobAccepted,
            headers(("Location" = String, description = "The job: `/v1/audit/jobs/{id}`."))),
    ),
)]
#[get("/v1/audit/balances")]
async fn start_balances(
    state: web::Data<AppState>,
    caller: Authorized<Auditor>,
    query: web::Query<BalancesQuery>,
) -> Result<HttpResponse, ApiError> {
    balances(&state, &caller, &query)
}

/// Start computing balances at a moment (POST)
///
/// The same as `GET /v1/audit/balances`, for clients that start jobs with POST.
#[utoipa::path(
    operation_id = "startBalancesAtPost",
    tag = "audit",
    security(("bearer" = ["auditor", "admin"])),
    params(BalancesQuery),
    responses(
        (status = 202, description = "Started (or already running with the same \
            parameters): the job as it is now. Follow it at `Location`.",
            body = AuditJobAccepted,
            headers(("Location" = String, description = "The job: `/v1/audit/jobs/{id}`."))),
    ),
)]
#[post("/v1/audit/balances")]
async fn start_balances_post(
    state: web::Data<AppState>,
    caller: Authorized<Auditor>,
    query: web::Query<BalancesQuery>,
) -> Result<HttpResponse, ApiError> {
    balances(&state, &caller, &query)
}

/// Starts a balances-at-a-moment job (or finds it running): 202 and its `Location`.
fn balances(
    state: &AppState,
    caller: &Authorized<Auditor>,
    query: &BalancesQuery,
) -> Result<HttpResponse, ApiError> {
    let at = match &query.at {
        None => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map_err(|_| {
                    ApiError::new(
                        ErrorCode::InvalidTime,
                        "at must be an RFC 3339 time, e.g. 2026-11-25T12:00:00Z",
                    )
                })?
                .with_timezone(&Utc),
        ),
    };
    audit_jobs::start(state, &caller.name, AuditRequest::Balances { at })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct JobQuery {
    /// Balances jobs: the first row of the page (the previous page's `next_cursor`); past
    /// the result's `count`, 400 `invalid_cursor`.
    cursor: Option<u64>,
    /// Balances jobs: rows in the page, 1 to 10000 (else 400 `invalid_limit`).
    #[param(minimum = 1, maximum = 10000, default = 1000)]
    limit: Option<usize>,
}

/// Follow an audit job
///
/// An audit job of this instance: its state, progress and, once it succeeded, its result (a
/// balances job's a page at a time).
#[utoipa::path(
    operation_id = "getAuditJob",
    tag = "audit",
    security(("bearer" = ["auditor", "admin"])),
    params(
        ("id" = String, Path, description = "The job id from `Location` (an unknown id, or \
            one of another instance, is 404 `unknown_job`)."),
        JobQuery,
    ),
    responses((status = 200, description = "The job.", body = AuditJobAnswer)),
)]
#[get("/v1/audit/jobs/{id}")]
async fn job(
    state: web::Data<AppState>,
    _caller: Authorized<Auditor>,
    path: web::Path<String>,
    query: web::Query<JobQuery>,
) -> Result<HttpResponse, ApiError> {
    let unknown = || ApiError::new(ErrorCode::UnknownJob, "no such audit job on this instance");
    let id: Uuid = path.parse().map_err(|_| unknown())?;
    let job = state
        .audit_jobs
        .get()
        .filter(|job| job.id == id)
        .ok_or_else(unknown)?;
    let limit = query.limit.unwrap_or(1_000);
    if !(1..=MAX_BALANCES_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidLimit,
            format!("limit must be 1 to {MAX_BALANCES_PAGE}"),
        ));
    }
    let cursor = query.cursor.unwrap_or(0);
    let result = match &job.result {
        None => None,
        Some(AuditResult::Verify(report)) => Some(JobResult::Verify(report.as_ref().clone())),
        Some(AuditResult::Balances(spool)) => {
            if cursor > spool.rows() {
                return Err(ApiError::new(
                    ErrorCode::InvalidCursor,
                    format!("cursor must be 0 to {}", spool.rows()),
                ));
            }
            let reader = spool.clone();
            let page = web::block(move || reader.page(cursor, limit))
                .await
                .map_err(|e| ApiError::unavailable("cannot read the balances", &e))?
                .map_err(|e| ApiError::unavailable("cannot read the balances", &e))?;
            let next = cursor + page.len() as u64;
            Some(JobResult::Balances(BalancesAt {
                at: job.at,
                balances: page,
                count: spool.rows(),
                next_cursor: (next < spool.rows()).then_some(next),
            }))
        }
    };
    let answer: AuditJobAnswer = job.answer(result);
    Ok(HttpResponse::Ok().json(answer))
}
