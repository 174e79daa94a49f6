//! `/v1/admin/purchases…`: what operators do about Stars purchases the fulfilment worker
//! cannot (or, in `FRAGMENT_MODE=manual`, does not) see through — list the open ones, mark
//! one delivered, or fail it and release the customer's reservation.
//!
//! Failing a purchase whose payment to Fragment is already recorded could refund stars that
//! were delivered, so it needs `"force": true`: the operator says they checked on chain and
//! with Fragment. That rule is the ledger's (`decide` refuses an unforced failure of a paid
//! order, against the account as committed), so no instance can let one through on a stale
//! view. Every decision is recorded with the admin's name.

use actix_web::{get, post, web, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use starledger_ledger::account::{checked_text, AccountCommand, MAX_REASON_LEN};
use starledger_ledger::commands::CommandContext;
use starledger_ledger::events::Actor;
use starledger_ledger::ids::{IdempotencyKey, PurchaseId, UserId};
use starledger_projections::rows::{TransactionKind, TransactionRow};
use starledger_projections::store::StatusFilter;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::auth::{Admin, Authorized, Caller};
use super::body::Body;
use super::deadline::RequestDeadline;
use super::error::ApiError;
use super::error_code::ErrorCode;
use super::state::AppState;
use super::users::{created, Transaction, Written};

pub fn routes(config: &mut ServiceConfig) {
    config
        .service(open_purchases)
        .service(deliver)
        .service(fail);
}

/// A page of what waits for operators.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// How many, 1 to 500 (else 400 `invalid_limit`).
    #[param(minimum = 1, maximum = 500, default = 50)]
    pub limit: Option<u32>,
}

/// The open purchases, oldest first.
#[derive(Serialize, ToSchema)]
struct OpenPurchases {
    purchases: Vec<OpenPurchase>,
}

/// An open purchase and its buyer.
#[derive(Serialize, ToSchema)]
struct OpenPurchase {
    user_id: i64,
    purchase: Transaction,
}

/// List open purchases
///
/// Purchases that are reserved, ordered or sent (not yet completed or refunded), oldest
/// first: what the fulfilment worker has not seen through, or, in `FRAGMENT_MODE=manual`,
/// what operators deliver by hand.
#[utoipa::path(
    operation_id = "listOpenPurchases",
    tag = "admin",
    security(("bearer" = ["admin"])),
    params(ListQuery),
    responses((status = 200, description = "The open purchases.", body = OpenPurchases)),
)]
#[get("/v1/admin/purchases")]
async fn open_purchases(
    state: web::Data<AppState>,
    _caller: Authorized<Admin>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let purchases = listed(&state, &StatusFilter::OpenPurchases, query.limit)
        .await?
        .into_iter()
        .map(|(user_id, purchase)| OpenPurchase { user_id, purchase })
        .collect();
    Ok(HttpResponse::Ok().json(OpenPurchases { purchases }))
}

/// The transactions in `filter`'s statuses, oldest first, each with its user, as operators
/// list what waits for them.
pub(super) async fn listed(
    state: &AppState,
    filter: &StatusFilter,
    limit: Option<u32>,
) -> Result<Vec<(i64, Transaction)>, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidLimit,
            "limit must be 1 to 500",
        ));
    }
    let rows = waiting(state, filter, limit).await?;
    Ok(rows
        .iter()
        .map(|row| (row.user_id, Transaction::from(row)))
        .collect())
}

/// Up to `limit` transactions in `filter`'s statuses, oldest first, as the read model holds
/// them: what operators list (the API's lists, the console's purchases page).
pub(crate) async fn waiting(
    state: &AppState,
    filter: &StatusFilter,
    limit: u32,
) -> Result<Vec<TransactionRow>, ApiError> {
    // On the standby only once it shows at least what this instance's projections show: an
    // operator's list never lacks an order the primary already lists.
    let shown = super::ops::projected_position(state);
    Ok(state
        .queries
        .in_status(filter, Utc::now(), limit, Some(shown))
        .await?)
}

/// The transaction of `kind` named in the path and its owner (from the read model, which
/// knows every transaction's user).
pub(super) async fn owner(
    state: &AppState,
    id: &str,
    kind: TransactionKind,
) -> Result<(UserId, Uuid), ApiError> {
    let name = kind.as_str();
    let (unknown_code, invalid_code) = if kind == TransactionKind::Purchase {
        (ErrorCode::UnknownPurchase, ErrorCode::InvalidPurchaseId)
    } else {
        (ErrorCode::UnknownRecharge, ErrorCode::InvalidRechargeId)
    };
    let unknown = || {
        ApiError::new(
            unknown_code,
            format!("no such {name} (one made a moment ago may not be projected yet)"),
        )
    };
    let uuid = Uuid::parse_str(id)
        .map_err(|_| ApiError::new(invalid_code, format!("a {name} id is a UUID")))?;
    let row = state.read.transaction(uuid).await?.ok_or_else(unknown)?;
    if row.kind != kind {
        return Err(unknown());
    }
    let user = UserId::new(row.user_id).map_err(|_| unknown())?;
    Ok((user, uuid))
}

/// The purchase named in the path and its owner.
async fn find(state: &AppState, id: &str) -> Result<(UserId, PurchaseId), ApiError> {
    let (user, uuid) = owner(state, id, TransactionKind::Purchase).await?;
    Ok((user, PurchaseId::from_uuid(uuid)))
}

/// Mark a purchase delivered; the body may be empty.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"note": "confirmed with Fragment support"}))]
struct DeliverRequest {
    /// Why, for the log (e.g. "confirmed with Fragment support").
    note: Option<String>,
}

/// An operator's decision on a purchase, as recorded.
#[derive(Serialize, ToSchema)]
struct PurchaseDecision {
    purchase_id: uuid::Uuid,
    /// `completed` (delivered) or `refunded` (failed, the reservation released).
    #[schema(example = "completed")]
    status: &'static str,
    /// The name of the admin's API key.
    admin: String,
    #[serde(flatten)]
    written: Written,
}

/// Mark a purchase delivered
///
/// For a purchase the operator saw delivered (e.g. confirmed with Fragment support): the
/// reservation becomes the sale. Repeating it answers the first result again.
#[utoipa::path(
    operation_id = "deliverPurchase",
    tag = "admin",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The purchase id, a UUID (else 400 `invalid_purchase_id`).")),
    request_body(content = Option<DeliverRequest>, description = "Optional; an empty body is no note."),
    responses(
        (status = 201, description = "Marked delivered (200 with `Idempotent-Replayed: true` \
            when it repeats the decision).", body = PurchaseDecision,
            headers(("Idempotent-Replayed" = String, description = "`true`: a repeat."))),
    ),
)]
#[post("/v1/admin/purchases/{id}/deliver")]
async fn deliver(
    state: web::Data<AppState>,
    caller: Authorized<Admin, Body>,
    path: web::Path<String>,
    RequestDeadline(deadline): RequestDeadline,
) -> Result<HttpResponse, ApiError> {
    let request: DeliverRequest = caller.body().json_or_default()?;
    let (user, purchase_id, executed) =
        mark_delivered(&state, &caller, &path, request.note.as_deref()).await?;
    let projected = state.acknowledged(user, executed.position, &deadline).await;
    Ok(created(
        &executed,
        PurchaseDecision {
            purchase_id: purchase_id.uuid(),
            status: "completed",
            admin: caller.name.clone(),
            written: Written {
                position: executed.position,
                projected,
            },
        },
    ))
}

/// Fail a purchase.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "recipient unknown to Fragment", "force": false}))]
struct FailRequest {
    /// Why, recorded with the admin's name.
    reason: String,
    /// Required once a payment to Fragment is recorded (else 409 `payment_recorded`): the
    /// operator checked on chain and with Fragment that it did not deliver.
    #[serde(default)]
    force: bool,
}

/// Fail a purchase
///
/// Fails an open purchase and releases its reservation to the buyer's available balance.
/// Once a payment to Fragment is recorded this could refund Stars that were delivered, so it
/// needs `"force": true`. Repeating it answers the first result again.
#[utoipa::path(
    operation_id = "failPurchase",
    tag = "admin",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The purchase id, a UUID (else 400 `invalid_purchase_id`).")),
    request_body = FailRequest,
    responses(
        (status = 201, description = "Failed and refunded (200 with `Idempotent-Replayed: \
            true` when it repeats the decision).", body = PurchaseDecision,
            headers(("Idempotent-Replayed" = String, description = "`true`: a repeat."))),
    ),
)]
#[post("/v1/admin/purchases/{id}/fail")]
async fn fail(
    state: web::Data<AppState>,
    caller: Authorized<Admin, Body>,
    path: web::Path<String>,
    RequestDeadline(deadline): RequestDeadline,
) -> Result<HttpResponse, ApiError> {
    let request: FailRequest = caller.body().json()?;
    let (user, purchase_id, executed) =
        mark_failed(&state, &caller, &path, &request.reason, request.force).await?;
    let projected = state.acknowledged(user, executed.position, &deadline).await;
    Ok(created(
        &executed,
        PurchaseDecision {
            purchase_id: purchase_id.uuid(),
            status: "refunded",
            admin: caller.name.clone(),
            written: Written {
                position: executed.position,
                projected,
            },
        },
    ))
}

/// Marks the purchase `id` delivered, as `caller` decided (the API's and the console's deliver).
pub(crate) async fn mark_delivered(
    state: &AppState,
    caller: &Caller,
    id: &str,
    note: Option<&str>,
) -> Result<(UserId, PurchaseId, starledger_ledger::commands::Executed), ApiError> {
    // Only logged, but held to the ledger's rule for free text all the same: a note with a
    // bidi override would make the log line read differently from what it is.
    let note = note
        .map(|note| checked_text("note", note, MAX_REASON_LEN))
        .transpose()
        .map_err(ApiError::from)?;
    let (user, purchase_id) = find(state, id).await?;
    let command = AccountCommand::CompletePurchase { purchase_id };
    let executed = run(state, caller, user, command, "deliver", purchase_id).await?;
    tracing::info!(admin = %caller.name, purchase = %purchase_id, note = ?note, "purchase marked delivered");
    Ok((user, purchase_id, executed))
}

/// Fails the purchase `id` and releases its reservation, as `caller` decided; `force` once a
/// payment to Fragment is recorded (the ledger refuses it otherwise).
pub(crate) async fn mark_failed(
    state: &AppState,
    caller: &Caller,
    id: &str,
    reason: &str,
    force: bool,
) -> Result<(UserId, PurchaseId, starledger_ledger::commands::Executed), ApiError> {
    let (user, purchase_id) = find(state, id).await?;
    let command = AccountCommand::FailPurchase {
        purchase_id,
        reason: format!("admin: {}", reason.trim()),
        force,
    };
    let executed = run(state, caller, user, command, "fail", purchase_id).await?;
    tracing::warn!(admin = %caller.name, purchase = %purchase_id, forced = force, "purchase failed by an operator; reservation released");
    Ok((user, purchase_id, executed))
}

/// Runs an operator's decision under a key of its own, so a repeated click records once.
async fn run(
    state: &AppState,
    caller: &Caller,
    user: UserId,
    command: AccountCommand,
    action: &str,
    purchase_id: PurchaseId,
) -> Result<starledger_ledger::commands::Executed, ApiError> {
    let key = IdempotencyKey::parse(&format!("admin:{action}:{purchase_id}"))
        .map_err(|_| ApiError::new(ErrorCode::InvalidPurchaseId, "a purchase id is a UUID"))?;
    let context = CommandContext::new(key, Actor::Admin(caller.name.clone()));
    Ok(starledger_telemetry::commands::execute(&state.ledger, user, command, &context).await?)
}
