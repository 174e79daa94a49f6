//! `/v1/audit/…`: what auditors read. The event stream with its hashes (NDJSON, paged by
//! position); and, as background jobs (see [`super::audit_jobs`]) followed at
//! `/v1/audit/jobs/{id}`, a full verification (hash chain, postings, invariants, trial
//! balance, and every read model against a fresh replay) and every balance as it stood at a
//! past moment.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use starledger_projections::audit;
use uuid::Uuid;

use super::audit_jobs::{self, AuditRequest, AuditResult};
use super::auth::{Auditor, Authorized};
use super::error::ApiError;
use super::error_code::ErrorCode;
use super::position::position;
use super::state::AppState;

/// Most events one page of the stream may hold.
pub const MAX_EVENTS_PAGE: usize = 10_000;

/// Most balances one page of a balances job's result may hold.
pub const MAX_BALANCES_PAGE: usize = 10_000;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/audit/events", web::get().to(events))
        .route("/v1/audit/verify", web::get().to(verify))
        .route("/v1/audit/verify", web::post().to(verify))
        .route("/v1/audit/balances", web::get().to(balances))
        .route("/v1/audit/balances", web::post().to(balances))
        .route("/v1/audit/jobs/{id}", web::get().to(job));
}

#[derive(Deserialize)]
struct EventsQuery {
    /// Events after this position (0: from the start).
    from: Option<u64>,
    limit: Option<usize>,
}

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

#[derive(Deserialize)]
struct VerifyQuery {
    /// `log` checks the log alone; `all` (the default) also every read model.
    scope: Option<String>,
}

/// Starts a verification job (or finds it running): 202 and its `Location`.
async fn verify(
    state: web::Data<AppState>,
    caller: Authorized<Auditor>,
    query: web::Query<VerifyQuery>,
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
    audit_jobs::start(&state, &caller.name, AuditRequest::Verify { with_tables })
}

#[derive(Deserialize)]
struct BalancesQuery {
    /// An RFC 3339 time.
    at: Option<String>,
}

/// Starts a balances-at-a-moment job (or finds it running): 202 and its `Location`.
async fn balances(
    state: web::Data<AppState>,
    caller: Authorized<Auditor>,
    query: web::Query<BalancesQuery>,
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
    audit_jobs::start(&state, &caller.name, AuditRequest::Balances { at })
}

#[derive(Deserialize)]
struct JobQuery {
    /// Balances jobs: the first row of the page (the previous page's `next_cursor`).
    cursor: Option<u64>,
    /// Balances jobs: rows in the page.
    limit: Option<usize>,
}

/// An audit job: its state, progress and, once finished, its result.
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
        None => Value::Null,
        Some(AuditResult::Verify(report)) => report.as_ref().clone(),
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
            json!({
                "at": job.at,
                "balances": page,
                "count": spool.rows(),
                "next_cursor": (next < spool.rows()).then_some(next),
            })
        }
    };
    Ok(HttpResponse::Ok().json(job.json(result)))
}
