//! `/v1/admin/recharges…`: what operators do about recharges the ledger would not credit by
//! itself — a payment in another coin, an amount it cannot read or above the tolerance, a
//! failed refund (`needs_review`), or a payment the provider holds for a check (`on_hold`).
//! List them, then credit what arrived (with a reason) or reject them. Each decision is an
//! ordinary ledger command, recorded with the admin's name, one per recharge.

use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use starledger_ledger::account::ReviewDecision;
use starledger_ledger::events::AccountEvent;
use starledger_ledger::ids::RechargeId;
use starledger_projections::rows::TransactionKind;
use starledger_projections::store::StatusFilter;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::{Admin, Authorized, Caller};
use super::body::Body;
use super::deadline::{Deadline, RequestDeadline};
use super::error::ApiError;
use super::purchases::{listed, owner, ListQuery};
use super::state::AppState;
use super::users::{amount, created, Transaction, Written};
use super::wire::{AmountInput, DecimalText};

pub fn routes(config: &mut ServiceConfig) {
    config.service(awaiting).service(credit).service(reject);
}

/// The recharges that wait for an operator, oldest first.
#[derive(Serialize, ToSchema)]
struct AwaitingRecharges {
    recharges: Vec<AwaitingRecharge>,
}

/// A recharge that waits for an operator, and its user.
#[derive(Serialize, ToSchema)]
struct AwaitingRecharge {
    user_id: i64,
    recharge: Transaction,
}

/// List recharges awaiting a decision
///
/// Recharges in review (`needs_review`: another coin, an amount the ledger cannot read or
/// above the tolerance, a failed refund) or held by the provider (`on_hold`), oldest first.
#[utoipa::path(
    operation_id = "listAwaitingRecharges",
    tag = "admin",
    security(("bearer" = ["admin"])),
    params(ListQuery),
    responses((status = 200, description = "The recharges.", body = AwaitingRecharges)),
)]
#[get("/v1/admin/recharges")]
async fn awaiting(
    state: web::Data<AppState>,
    _caller: Authorized<Admin>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let recharges = listed(
        &state,
        &StatusFilter::RechargesAwaitingDecision,
        query.limit,
    )
    .await?
    .into_iter()
    .map(|(user_id, recharge)| AwaitingRecharge { user_id, recharge })
    .collect();
    Ok(HttpResponse::Ok().json(AwaitingRecharges { recharges }))
}

/// Credit a recharge.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": "9.75", "reason": "paid in BTC, converted at the day's rate"}))]
struct CreditRequest {
    /// What arrived, in the ledger's coin, as the operator established it.
    amount: AmountInput,
    /// Why, recorded with the admin's name.
    reason: String,
}

/// Reject a recharge.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "refunded to the payer by Heleket support"}))]
struct RejectRequest {
    /// Why, recorded with the admin's name.
    reason: String,
}

/// An operator's decision on a recharge, as recorded.
#[derive(Serialize, ToSchema)]
struct RechargeDecision {
    recharge_id: uuid::Uuid,
    /// The name of the admin's API key.
    admin: String,
    /// `completed` or `partial` (credited), `failed` (rejected).
    #[schema(example = "completed")]
    status: &'static str,
    /// Credited: what was credited.
    #[serde(skip_serializing_if = "Option::is_none")]
    credited: Option<DecimalText>,
    /// Credited: what of it paid the user's debt first.
    #[serde(skip_serializing_if = "Option::is_none")]
    debt_repaid: Option<DecimalText>,
    #[serde(flatten)]
    written: Written,
}

/// Credit a recharge
///
/// Credits a recharge in review or on hold with what the operator established arrived, in
/// the ledger's coin. Repeating it answers the first result again.
#[utoipa::path(
    operation_id = "creditRecharge",
    tag = "admin",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The recharge id, a UUID (else 400 `invalid_recharge_id`).")),
    request_body = CreditRequest,
    responses(
        (status = 201, description = "Credited (200 with `Idempotent-Replayed: true` when it \
            repeats the decision).", body = RechargeDecision,
            headers(("Idempotent-Replayed" = String, description = "`true`: a repeat."))),
    ),
)]
#[post("/v1/admin/recharges/{id}/credit")]
async fn credit(
    state: web::Data<AppState>,
    caller: Authorized<Admin, Body>,
    path: web::Path<String>,
    RequestDeadline(deadline): RequestDeadline,
) -> Result<HttpResponse, ApiError> {
    let request: CreditRequest = caller.body().json()?;
    let value = amount("amount", &request.amount.0)?;
    decide(
        &state,
        &caller,
        &path,
        ReviewDecision::Credit(value),
        &request.reason,
        &deadline,
    )
    .await
}

/// Reject a recharge
///
/// Rejects a recharge in review or on hold: nothing is credited. Repeating it answers the
/// first result again.
#[utoipa::path(
    operation_id = "rejectRecharge",
    tag = "admin",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The recharge id, a UUID (else 400 `invalid_recharge_id`).")),
    request_body = RejectRequest,
    responses(
        (status = 201, description = "Rejected (200 with `Idempotent-Replayed: true` when it \
            repeats the decision).", body = RechargeDecision,
            headers(("Idempotent-Replayed" = String, description = "`true`: a repeat."))),
    ),
)]
#[post("/v1/admin/recharges/{id}/reject")]
async fn reject(
    state: web::Data<AppState>,
    caller: Authorized<Admin, Body>,
    path: web::Path<String>,
    RequestDeadline(deadline): RequestDeadline,
) -> Result<HttpResponse, ApiError> {
    let request: RejectRequest = caller.body().json()?;
    decide(
        &state,
        &caller,
        &path,
        ReviewDecision::Reject,
        &request.reason,
        &deadline,
    )
    .await
}

async fn decide(
    state: &AppState,
    caller: &Caller,
    id: &str,
    decision: ReviewDecision,
    reason: &str,
    deadline: &Deadline,
) -> Result<HttpResponse, ApiError> {
    let (user, uuid) = owner(state, id, TransactionKind::Recharge).await?;
    let recharge_id = RechargeId::from_uuid(uuid);
    let executed = starledger_shop::settlement::resolve(
        &state.ledger,
        user,
        recharge_id,
        decision,
        &caller.name,
        reason,
    )
    .await?;
    let projected = state.acknowledged(user, executed.position, deadline).await;
    let mut decision = RechargeDecision {
        recharge_id: recharge_id.uuid(),
        admin: caller.name.clone(),
        status: "failed",
        credited: None,
        debt_repaid: None,
        written: Written {
            position: executed.position,
            projected,
        },
    };
    if let Some(AccountEvent::RechargeSettled(e)) = executed.events.first() {
        decision.status = if e.partial { "partial" } else { "completed" };
        decision.credited = Some(DecimalText::exact(e.credited));
        decision.debt_repaid = Some(DecimalText::exact(e.debt_repaid));
    }
    Ok(created(&executed, decision))
}
