//! `/v1/admin/…`: what operators do. Balance adjustments (with a mandatory reason, recorded
//! with the admin's name), projection status, and blue/green rebuilds that run in the
//! background while reads keep working, with their progress.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::CommandContext;
use starledger_ledger::events::{AccountEvent, Actor};
use starledger_ledger::ids::AdjustmentId;
use starledger_ledger::money::SignedAmount;
use starledger_projections::model::Table;
use starledger_projections::rebuild::{rebuild, RebuildSettings};

use super::auth::{Admin, Authorized};
use super::body::Body;
use super::deadline::RequestDeadline;
use super::error::ApiError;
use super::error_code::ErrorCode;
use super::idempotency::{Adjustment, IdempotencyHeader};
use super::jobs::{Job, JobSlot};
use super::state::AppState;
use super::users::{created, UserIdPath};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/admin/users/{id}/adjustments", web::post().to(adjust))
        .route("/v1/admin/projections", web::get().to(projections))
        .route(
            "/v1/admin/projections/rebuild",
            web::post().to(start_rebuild),
        )
        .route(
            "/v1/admin/projections/rebuild",
            web::get().to(rebuild_progress),
        );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustmentRequest {
    /// Signed decimal string: positive credits, negative debits.
    amount: String,
    reason: String,
}

async fn adjust(
    state: web::Data<AppState>,
    caller: Authorized<Admin, Body>,
    RequestDeadline(deadline): RequestDeadline,
    UserIdPath(user): UserIdPath,
    key: IdempotencyHeader<Adjustment>,
) -> Result<HttpResponse, ApiError> {
    let parsed: AdjustmentRequest = caller.body().json()?;
    let amount = SignedAmount::parse(&parsed.amount)
        .map_err(|error| ApiError::new(ErrorCode::InvalidAmount, format!("amount: {error}")))?;
    let key = key.required(
        "adjustments need an Idempotency-Key header, so a retried request cannot apply twice",
    )?;
    let adjustment_id = AdjustmentId::derive(user, &key);
    let command = AccountCommand::AdjustBalance {
        adjustment_id,
        amount,
        currency: state.shop.currency.clone(),
        admin: caller.name.clone(),
        reason: parsed.reason,
    };
    let context = CommandContext::new(key, Actor::Admin(caller.name.clone()));
    let executed =
        starledger_telemetry::commands::execute(&state.ledger, user, command, &context).await?;
    let projected = state.acknowledged(user, executed.position, &deadline).await;
    let Some(AccountEvent::BalanceAdjusted(e)) = executed.events.first() else {
        return Err(ApiError::unavailable(
            "the ledger answered an adjustment with another event",
            &adjustment_id,
        ));
    };
    tracing::info!(admin = %caller.name, user = %user, amount = %e.amount, "balance adjusted");
    Ok(created(
        &executed,
        json!({
            "adjustment_id": e.adjustment_id,
            "amount": e.amount,
            "currency": e.currency,
            "admin": e.admin,
            "reason": e.reason,
            "position": executed.position,
            "projected": projected,
        }),
    ))
}

async fn projections(
    state: web::Data<AppState>,
    _caller: Authorized<Admin>,
) -> Result<HttpResponse, ApiError> {
    let (head, statuses) =
        starledger_projections::status::status(state.events.as_ref(), state.read.as_ref()).await?;
    let projectors: Vec<_> = statuses
        .iter()
        .map(|s| {
            json!({
                "name": s.name, "checkpoint": s.checkpoint, "lag_events": s.lag_events,
                "lag_seconds": s.lag_seconds, "updated_at": s.updated_at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"head": head, "projectors": projectors})))
}

/// A rebuild started through the API, and how it is going.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildStatus {
    pub tables: Vec<&'static str>,
    /// `running`, `done` or `failed`.
    pub state: &'static str,
    pub position: u64,
    pub head: u64,
    pub events: Option<u64>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub started_by: String,
}

impl Job for RebuildStatus {
    fn is_running(&self) -> bool {
        self.state == "running"
    }
}

/// The last rebuild this process ran. One at a time: a second request while one runs is
/// refused rather than queued.
pub type RebuildJobs = JobSlot<RebuildStatus>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebuildRequest {
    /// `users`, `balances`, `transactions` or `all`.
    projection: String,
}

async fn start_rebuild(
    state: web::Data<AppState>,
    caller: Authorized<Admin, Body>,
) -> Result<HttpResponse, ApiError> {
    let parsed: RebuildRequest = caller.body().json()?;
    let tables: Vec<Table> = match parsed.projection.as_str() {
        "all" => Table::ALL.to_vec(),
        other => vec![Table::parse(other).ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownProjection,
                "projection must be users, balances, transactions or all",
            )
        })?],
    };
    let head = state.events.head().await?.position;
    let status = RebuildStatus {
        tables: tables.iter().map(|t| t.name()).collect(),
        state: "running",
        position: 0,
        head,
        events: None,
        error: None,
        started_at: Utc::now(),
        finished_at: None,
        started_by: caller.name.clone(),
    };
    if state.rebuilds.claim(status.clone()).is_err() {
        return Err(ApiError::new(
            ErrorCode::RebuildRunning,
            "a rebuild is already running; follow it with GET /v1/admin/projections/rebuild",
        ));
    }
    tracing::info!(admin = %caller.name, tables = ?status.tables, "projection rebuild started");
    let (events, read, jobs) = (
        state.events.clone(),
        state.read.clone(),
        state.rebuilds.clone(),
    );
    // On the main runtime, not on this HTTP worker's: a rebuild is long and busy.
    state.runtime.spawn(async move {
        let progress_jobs = jobs.clone();
        let report = rebuild(
            &events,
            read.as_ref(),
            &tables,
            RebuildSettings::default(),
            |position, head| {
                progress_jobs.update(|s| {
                    s.position = position;
                    s.head = head;
                })
            },
        )
        .await;
        jobs.update(|s| {
            s.finished_at = Some(Utc::now());
            match report {
                Ok(report) => {
                    s.state = "done";
                    s.position = report.position;
                    s.events = Some(report.events);
                }
                Err(error) => {
                    tracing::error!(%error, "projection rebuild failed; live tables untouched");
                    s.state = "failed";
                    s.error = Some(error.to_string());
                }
            }
        });
    });
    Ok(HttpResponse::Accepted().json(status))
}

async fn rebuild_progress(
    state: web::Data<AppState>,
    _caller: Authorized<Admin>,
) -> Result<HttpResponse, ApiError> {
    match state.rebuilds.get() {
        Some(status) => Ok(HttpResponse::Ok().json(status)),
        None => Err(ApiError::new(
            ErrorCode::NoRebuild,
            "no rebuild has been started by this instance",
        )),
    }
}
