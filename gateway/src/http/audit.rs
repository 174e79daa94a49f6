//! `/v1/audit/…`: what auditors read. The event stream with its hashes (NDJSON, paged by
//! position), a full verification (hash chain, postings, invariants, trial balance, and every
//! read model against a fresh replay), and every balance as it stood at a past moment.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use starledger_projections::audit;

use super::auth::Caller;
use super::error::ApiError;
use super::position::position;
use super::state::AppState;
use crate::config::server::Role;

const AUDITOR: &[Role] = &[Role::Auditor, Role::Admin];

/// Most events one page of the stream may hold.
pub const MAX_EVENTS_PAGE: usize = 10_000;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/audit/events", web::get().to(events))
        .route("/v1/audit/verify", web::get().to(verify))
        .route("/v1/audit/balances", web::get().to(balances));
}

#[derive(Deserialize)]
struct EventsQuery {
    /// Events after this position (0: from the start).
    from: Option<u64>,
    limit: Option<usize>,
}

async fn events(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITOR)?;
    let from = position("from", query.from)?.unwrap_or(0);
    let limit = query.limit.unwrap_or(1_000);
    if !(1..=MAX_EVENTS_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1 to {MAX_EVENTS_PAGE}"),
        ));
    }
    let recorded = state.events.read_all(from, limit).await?;
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

async fn verify(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<VerifyQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITOR)?;
    let with_tables = match query.scope.as_deref() {
        None | Some("all") => true,
        Some("log") => false,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_scope",
                "scope must be log or all",
            ))
        }
    };
    let read = with_tables.then_some(state.read.as_ref());
    let report = audit::verify(&state.events, read).await?;
    let tables: serde_json::Map<String, serde_json::Value> = report
        .tables
        .iter()
        .map(|(table, (checkpoint, differences))| {
            let shown: Vec<_> = differences
                .iter()
                .map(|d| json!({"key": d.key, "expected": d.expected, "found": d.found}))
                .collect();
            (
                table.name().to_owned(),
                json!({"checkpoint": checkpoint, "differences": shown}),
            )
        })
        .collect();
    let totals: serde_json::Map<String, serde_json::Value> = report
        .ledger
        .totals
        .iter()
        .map(|(currency, total)| (currency.to_string(), json!(total.normalize().to_string())))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "sound": report.is_sound(),
        "events": report.ledger.events,
        "head_position": report.ledger.head_position,
        "head_hash": report.ledger.head_hash.to_hex(),
        "trial_balance": totals,
        "findings": report.ledger.findings.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
        "tables": tables,
        "elapsed_ms": report.elapsed.as_millis() as u64,
    })))
}

#[derive(Deserialize)]
struct BalancesQuery {
    /// An RFC 3339 time.
    at: Option<String>,
}

async fn balances(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<BalancesQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(AUDITOR)?;
    let at = match &query.at {
        None => Utc::now(),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_time",
                    "at must be an RFC 3339 time, e.g. 2026-11-25T12:00:00Z",
                )
            })?
            .with_timezone(&Utc),
    };
    let rows = audit::balances_at(&state.events, at).await?;
    let balances: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "user_id": r.user_id, "currency": r.currency,
                "available": r.available.normalize().to_string(),
                "reserved": r.reserved.normalize().to_string(),
                "total": r.total().normalize().to_string(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"at": at, "balances": balances})))
}
