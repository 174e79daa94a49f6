//! `/v1/admin/recharges…`: what operators do about recharges the ledger would not credit by
//! itself — a payment in another coin, an amount it cannot read or above the tolerance, a
//! failed refund (`needs_review`), or a payment the provider holds for a check (`on_hold`).
//! List them, then credit what arrived (with a reason) or reject them. Each decision is an
//! ordinary ledger command, recorded with the admin's name, one per recharge.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use starledger_ledger::account::ReviewDecision;
use starledger_ledger::events::AccountEvent;
use starledger_ledger::ids::RechargeId;
use starledger_projections::rows::TransactionKind;
use starledger_projections::store::StatusFilter;

use super::auth::{Admin, Authorized, Caller};
use super::body::Body;
use super::deadline::{Deadline, RequestDeadline};
use super::error::ApiError;
use super::purchases::{listed, owner};
use super::state::AppState;
use super::users::{amount, created};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/admin/recharges", web::get().to(awaiting))
        .route("/v1/admin/recharges/{id}/credit", web::post().to(credit))
        .route("/v1/admin/recharges/{id}/reject", web::post().to(reject));
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
}

/// Recharges that need review or are on hold, oldest first.
async fn awaiting(
    state: web::Data<AppState>,
    _caller: Authorized<Admin>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let recharges = listed(
        &state,
        &StatusFilter::RechargesAwaitingDecision,
        query.limit,
        "recharge",
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({"recharges": recharges})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditRequest {
    /// What arrived, in the ledger's coin, as the operator established it (decimal string).
    amount: String,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectRequest {
    reason: String,
}

async fn credit(
    state: web::Data<AppState>,
    caller: Authorized<Admin, Body>,
    path: web::Path<String>,
    RequestDeadline(deadline): RequestDeadline,
) -> Result<HttpResponse, ApiError> {
    let request: CreditRequest = caller.body().json()?;
    let value = amount("amount", &request.amount)?;
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
    let outcome = match executed.events.first() {
        Some(AccountEvent::RechargeSettled(e)) => json!({
            "status": if e.partial { "partial" } else { "completed" },
            "credited": e.credited, "debt_repaid": e.debt_repaid.to_string(),
        }),
        _ => json!({"status": "failed"}),
    };
    let mut body = json!({"recharge_id": recharge_id, "admin": caller.name,
        "position": executed.position, "projected": projected});
    if let (Some(body), Some(outcome)) = (body.as_object_mut(), outcome.as_object()) {
        body.extend(outcome.clone());
    }
    Ok(created(&executed, body))
}
