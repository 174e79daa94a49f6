//! `/v1/admin/…`: what operators do. Balance adjustments (with a mandatory reason, recorded
//! with the admin's name), projection status, and blue/green rebuilds that run in the
//! background while reads keep working, with their progress.

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::CommandContext;
use starledger_ledger::events::{AccountEvent, Actor};
use starledger_ledger::ids::AdjustmentId;
use starledger_ledger::money::SignedAmount;
use starledger_projections::model::Table;
use starledger_projections::rebuild::{rebuild, RebuildSettings};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::{Admin, Authorized};
use super::body::Body;
use super::deadline::RequestDeadline;
use super::error::ApiError;
use super::error_code::ErrorCode;
use super::idempotency::{Adjustment as AdjustmentPurpose, IdempotencyHeader};
use super::jobs::{Job, JobSlot};
use super::state::AppState;
use super::users::{created, UserIdPath, Written};
use super::wire::{DecimalText, SignedAmountInput};

pub fn routes(config: &mut ServiceConfig) {
    config
        .service(adjust)
        .service(projections)
        .service(start_rebuild)
        .service(rebuild_progress);
}

/// Correct a balance.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": "-2.5", "reason": "duplicate credit, ticket 4411"}))]
struct AdjustmentRequest {
    /// Positive credits, negative debits.
    amount: SignedAmountInput,
    /// Why, recorded with the admin's name (1 to 500 characters, no control characters).
    reason: String,
}

/// An adjustment as recorded.
#[derive(Serialize, ToSchema)]
struct Adjustment {
    adjustment_id: uuid::Uuid,
    /// The signed change.
    amount: DecimalText,
    #[schema(example = "TON")]
    currency: String,
    /// The name of the admin's API key.
    admin: String,
    reason: String,
    #[serde(flatten)]
    written: Written,
}

/// Adjust a balance
///
/// Credits (positive `amount`) or debits (negative) a user's balance, with a mandatory
/// reason, recorded with the admin's key name. A debit may not take the available balance
/// below zero. Needs an `Idempotency-Key`, so a retried request cannot apply twice.
#[utoipa::path(
    operation_id = "createAdjustment",
    tag = "admin",
    security(("bearer" = ["admin"])),
    params(UserIdPath, IdempotencyHeader<AdjustmentPurpose>),
    request_body = AdjustmentRequest,
    responses(
        (status = 201, description = "The adjustment (200 with `Idempotent-Replayed: true` \
            when it repeats a request).", body = Adjustment,
            headers(("Idempotent-Replayed" = String, description = "`true`: a repeat."))),
    ),
)]
#[post("/v1/admin/users/{id}/adjustments")]
async fn adjust(
    state: web::Data<AppState>,
    caller: Authorized<Admin, Body>,
    RequestDeadline(deadline): RequestDeadline,
    UserIdPath(user): UserIdPath,
    key: IdempotencyHeader<AdjustmentPurpose>,
) -> Result<HttpResponse, ApiError> {
    let parsed: AdjustmentRequest = caller.body().json()?;
    let amount = SignedAmount::parse(&parsed.amount.0)
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
        Adjustment {
            adjustment_id: e.adjustment_id.uuid(),
            amount: DecimalText::exact(e.amount),
            currency: e.currency.to_string(),
            admin: e.admin.clone(),
            reason: e.reason.clone(),
            written: Written {
                position: executed.position,
                projected,
            },
        },
    ))
}

/// The log head and where each projector is.
#[derive(Serialize, ToSchema)]
struct ProjectionsStatus {
    /// The log's last position.
    head: u64,
    /// The SQL tables, then the cache.
    projectors: Vec<ProjectorStatus>,
}

/// One projector.
#[derive(Serialize, ToSchema)]
struct ProjectorStatus {
    #[schema(example = "balances")]
    name: String,
    /// The last position it applied.
    checkpoint: u64,
    /// Events it has not applied yet.
    lag_events: u64,
    /// Age in seconds of the oldest event it has not applied yet (0 when caught up).
    lag_seconds: f64,
    /// When it last moved; `null` if it has never run.
    updated_at: Option<DateTime<Utc>>,
}

/// Read the projections' status
///
/// The log head and each projector's checkpoint and lag.
#[utoipa::path(
    operation_id = "getProjections",
    tag = "admin",
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "The status.", body = ProjectionsStatus)),
)]
#[get("/v1/admin/projections")]
async fn projections(
    state: web::Data<AppState>,
    _caller: Authorized<Admin>,
) -> Result<HttpResponse, ApiError> {
    let (head, statuses) =
        starledger_projections::status::status(state.events.as_ref(), state.read.as_ref()).await?;
    let projectors = statuses
        .into_iter()
        .map(|s| ProjectorStatus {
            name: s.name,
            checkpoint: s.checkpoint,
            lag_events: s.lag_events,
            lag_seconds: s.lag_seconds,
            updated_at: s.updated_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(ProjectionsStatus { head, projectors }))
}

/// A rebuild started through the API, and how it is going.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RebuildStatus {
    /// The tables rebuilt.
    #[schema(example = json!(["users", "balances", "transactions"]))]
    pub tables: Vec<&'static str>,
    /// `running`, `done` or `failed`.
    #[schema(example = "running")]
    pub state: &'static str,
    /// How far the rebuild has read the log.
    pub position: u64,
    /// The log head it reads to.
    pub head: u64,
    /// Done: the events replayed.
    pub events: Option<u64>,
    /// Failed: why (the live tables are untouched).
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The name of the admin's API key.
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

/// What to rebuild.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"projection": "all"}))]
struct RebuildRequest {
    /// `users`, `balances`, `transactions` or `all` (else 422 `unknown_projection`).
    #[schema(example = "all", pattern = "^(users|balances|transactions|all)$")]
    projection: String,
}

/// Rebuild projections
///
/// Starts a blue/green rebuild in the background: the tables are replayed from the log into
/// new tables, swapped in when caught up, while reads keep working on the old ones. One at
/// a time per instance; follow it with `GET /v1/admin/projections/rebuild`.
#[utoipa::path(
    operation_id = "startRebuild",
    tag = "admin",
    security(("bearer" = ["admin"])),
    request_body = RebuildRequest,
    responses((status = 202, description = "Started.", body = RebuildStatus)),
)]
#[post("/v1/admin/projections/rebuild")]
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
    let status = start_rebuild_job(&state, &caller.name, tables).await?;
    Ok(HttpResponse::Accepted().json(status))
}

/// Starts a blue/green rebuild of `tables` in the background, as `started_by` asked (the
/// API's and the console's); refused while one runs.
pub(crate) async fn start_rebuild_job(
    state: &AppState,
    started_by: &str,
    tables: Vec<Table>,
) -> Result<RebuildStatus, ApiError> {
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
        started_by: started_by.to_owned(),
    };
    if state.rebuilds.claim(status.clone()).is_err() {
        return Err(ApiError::new(
            ErrorCode::RebuildRunning,
            "a rebuild is already running; follow it with GET /v1/admin/projections/rebuild",
        ));
    }
    tracing::info!(admin = %started_by, tables = ?status.tables, "projection rebuild started");
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
            &read,
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
    Ok(status)
}

/// Follow a rebuild
///
/// The last rebuild this instance started, and how it is going.
#[utoipa::path(
    operation_id = "getRebuild",
    tag = "admin",
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "The rebuild.", body = RebuildStatus)),
)]
#[get("/v1/admin/projections/rebuild")]
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
