//! `/v1/users/…`: what the bot and other services call on behalf of a user.
//!
//! Commands (register, recharge, purchase) go to the ledger; reads come from the projections
//! through the cache. Every command answers with the log `position` it wrote, after waiting
//! (bounded) for the projections to show it, so a read right after sees the change; a read
//! can also ask for `?min_position=` explicitly.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};
use starledger_ledger::commands::Executed;
use starledger_ledger::events::Stars;
use starledger_ledger::ids::{IdempotencyKey, Recipient, UserId, Username};
use starledger_ledger::money::Amount;
use starledger_projections::rows::{BalanceRow, TransactionRow};
use starledger_projections::store::MAX_HISTORY_PAGE;

use super::auth::{Act, Authorized, Look};
use super::body::Body;
use super::deadline::{Deadline, RequestDeadline};
use super::error::ApiError;
use super::error_code::ErrorCode;
use super::idempotency::{IdempotencyHeader, Purchase, Recharge};
use super::position::position;
use super::state::AppState;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/users", web::post().to(register))
        .route("/v1/users/{id}", web::get().to(profile))
        .route("/v1/users/{id}/balance", web::get().to(balance))
        .route("/v1/users/{id}/transactions", web::get().to(transactions))
        .route("/v1/users/{id}/recharges", web::post().to(recharge))
        .route("/v1/users/{id}/purchases", web::post().to(purchase));
}

/// The `{id}` of the path: a Telegram user id, a positive integer (else 400
/// `invalid_user_id`).
pub struct UserIdPath(pub UserId);

impl FromRequest for UserIdPath {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(user_id(request.match_info().query("id")).map(UserIdPath))
    }
}

fn user_id(text: &str) -> Result<UserId, ApiError> {
    text.parse::<i64>()
        .ok()
        .and_then(|id| UserId::new(id).ok())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidUserId,
                "the user id must be a positive Telegram user id",
            )
        })
}

/// The answer to a command: 201, marked when it repeats an earlier identical request.
pub fn created(executed: &Executed, body: Value) -> HttpResponse {
    let mut response = HttpResponse::build(StatusCode::CREATED);
    if executed.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    response.json(body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    user_id: i64,
    username: Option<String>,
    language: Option<String>,
}

async fn register(
    state: web::Data<AppState>,
    caller: Authorized<Act, Body>,
    RequestDeadline(deadline): RequestDeadline,
) -> Result<HttpResponse, ApiError> {
    let request: RegisterRequest = caller.body().json()?;
    // A bad field of the body, so 422 (in a path the same code is 400).
    let invalid = |message: &str| {
        ApiError::with_status(
            ErrorCode::InvalidUserId,
            StatusCode::UNPROCESSABLE_ENTITY,
            message,
        )
    };
    let user = UserId::new(request.user_id)
        .map_err(|_| invalid("user_id must be a positive Telegram user id"))?;
    // One registration per user: repeating it (a second /start) returns the first answer.
    let key = IdempotencyKey::parse(&format!("register:{user}"))
        .map_err(|_| invalid("unusable user id"))?;
    let registered = starledger_shop::register(
        &state.shop,
        user,
        request.username,
        request.language,
        key,
        &deadline,
    )
    .await?;
    let (executed, projected) = (registered.executed, registered.projected);
    let profile = match registered.event {
        Some(e) => json!({
            "user_id": e.user_id, "username": e.username, "language": e.language,
            "currency": e.currency,
        }),
        None => json!({"user_id": user}),
    };
    let mut body = profile;
    body["position"] = json!(executed.position);
    body["projected"] = json!(projected);
    if executed.replayed {
        return Ok(HttpResponse::Ok()
            .insert_header(("Idempotent-Replayed", "true"))
            .json(body));
    }
    Ok(HttpResponse::Created().json(body))
}

async fn profile(
    state: web::Data<AppState>,
    _caller: Authorized<Look>,
    UserIdPath(user): UserIdPath,
) -> Result<HttpResponse, ApiError> {
    let row = state
        .queries
        .user(user.get())
        .await?
        .ok_or_else(unknown_user)?;
    Ok(HttpResponse::Ok().json(json!({
        "user_id": row.user_id, "username": row.username, "language": row.language,
        "currency": row.currency, "registered_at": row.registered_at, "position": row.position,
    })))
}

fn unknown_user() -> ApiError {
    ApiError::new(ErrorCode::UnknownUser, "no such user")
}

#[derive(Deserialize)]
struct BalanceQuery {
    /// Wait (bounded) until the balance reflects at least this log position.
    min_position: Option<u64>,
}

async fn balance(
    state: web::Data<AppState>,
    _caller: Authorized<Look>,
    RequestDeadline(deadline): RequestDeadline,
    UserIdPath(user): UserIdPath,
    query: web::Query<BalanceQuery>,
) -> Result<HttpResponse, ApiError> {
    let min_position = position("min_position", query.min_position)?;
    reach(&state, &deadline, min_position).await?;
    let row = state.queries.balance(user.get(), min_position).await?;
    Ok(HttpResponse::Ok().json(balance_json(&state, user, row).await?))
}

/// Waits (bounded) for the projections to reach `min_position`, for a caller reading its own
/// write; refuses with 503 if they do not get there in time. A position past the log's head
/// is no write anyone was told about (a position is given only once its event is committed):
/// 400 at once, or the client would wait and retry forever.
async fn reach(
    state: &AppState,
    deadline: &Deadline,
    min_position: Option<u64>,
) -> Result<(), ApiError> {
    let Some(position) = min_position else {
        return Ok(());
    };
    let head = state.events.head().await?.position;
    if position > head {
        return Err(ApiError::new(
            ErrorCode::InvalidPosition,
            format!("min_position {position} is past the log's head ({head}): no write has that position"),
        ));
    }
    if state.projected(position, deadline).await {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::ProjectionLagging,
            format!("the read models have not reached position {position} yet; try again"),
        ))
    }
}

/// A balance as the API shows it. A registered user with no money events yet has zeros, with
/// the profile's position and registration time (the cached zero row's own position is the
/// cache's guard, not an event of this user).
pub async fn balance_json(
    state: &AppState,
    user: UserId,
    row: Option<BalanceRow>,
) -> Result<Value, ApiError> {
    let row = match row {
        Some(row) if !row.no_money_events => row,
        _ => {
            let profile = state
                .queries
                .user(user.get())
                .await?
                .ok_or_else(unknown_user)?;
            BalanceRow {
                user_id: user.get(),
                currency: profile.currency,
                available: Decimal::ZERO,
                reserved: Decimal::ZERO,
                debt: Decimal::ZERO,
                updated_at: profile.registered_at,
                position: profile.position,
                no_money_events: true,
            }
        }
    };
    Ok(json!({
        "user_id": row.user_id,
        "available": row.available.normalize().to_string(),
        "reserved": row.reserved.normalize().to_string(),
        "total": row.total().normalize().to_string(),
        // What the user owes after a refunded payment whose credit was spent; purchases are
        // refused while it is not zero.
        "debt": row.debt.normalize().to_string(),
        "currency": row.currency,
        "position": row.position,
    }))
}

#[derive(Deserialize)]
struct HistoryQuery {
    cursor: Option<u64>,
    limit: Option<u32>,
    /// Wait (bounded) until the history reflects at least this log position.
    min_position: Option<u64>,
}

async fn transactions(
    state: web::Data<AppState>,
    _caller: Authorized<Look>,
    RequestDeadline(deadline): RequestDeadline,
    UserIdPath(user): UserIdPath,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_HISTORY_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidLimit,
            format!("limit must be 1 to {MAX_HISTORY_PAGE}"),
        ));
    }
    let min_position = position("min_position", query.min_position)?;
    reach(&state, &deadline, min_position).await?;
    if state.queries.user(user.get()).await?.is_none() {
        return Err(unknown_user());
    }
    let page = state
        .queries
        .history(user.get(), query.cursor, limit, min_position)
        .await?;
    let items: Vec<Value> = page.transactions.iter().map(transaction_json).collect();
    Ok(HttpResponse::Ok().json(json!({"transactions": items, "next_cursor": page.next_cursor})))
}

/// A recharge, purchase or adjustment as the API shows it.
pub fn transaction_json(t: &TransactionRow) -> Value {
    json!({
        "id": t.id, "kind": t.kind.as_str(), "status": t.status,
        "amount": t.amount.normalize().to_string(), "currency": t.currency,
        "description": t.description, "external_id": t.external_id,
        "metadata": t.metadata, "created_at": t.created_at, "updated_at": t.updated_at,
        "position": t.position,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RechargeRequest {
    amount: String,
}

/// Parses a decimal-string amount from a request.
pub fn amount(field: &str, text: &str) -> Result<Amount, ApiError> {
    Amount::parse(text)
        .map_err(|error| ApiError::new(ErrorCode::InvalidAmount, format!("{field}: {error}")))
}

async fn recharge(
    state: web::Data<AppState>,
    caller: Authorized<Act, Body>,
    RequestDeadline(deadline): RequestDeadline,
    UserIdPath(user): UserIdPath,
    key: IdempotencyHeader<Recharge>,
) -> Result<HttpResponse, ApiError> {
    let parsed: RechargeRequest = caller.body().json()?;
    let amount = amount("amount", &parsed.amount)?;
    // Without a key every request is a new recharge: harmless, an unpaid invoice moves no
    // money. With one, a retry returns the same recharge and the same invoice.
    let key = match key.optional()? {
        Some(key) => key,
        None => IdempotencyKey::parse(&format!("api:recharge:{}", uuid::Uuid::new_v4()))
            .map_err(|_| ApiError::new(ErrorCode::InvalidIdempotencyKey, "unusable key"))?,
    };
    let recharge = starledger_shop::recharge(&state.shop, user, amount, key, &deadline).await?;
    let (executed, e, projected) = (recharge.executed, recharge.event, recharge.projected);
    Ok(created(
        &executed,
        json!({
            "recharge_id": e.recharge_id,
            "amount": e.amount,
            "currency": e.currency,
            "invoice_uuid": e.invoice.uuid,
            "payment_url": e.invoice.url,
            "expires_at": e.invoice.expires_at,
            "status": "pending",
            "position": executed.position,
            "projected": projected,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseRequest {
    stars: i64,
    recipient: Option<String>,
}

async fn purchase(
    state: web::Data<AppState>,
    caller: Authorized<Act, Body>,
    RequestDeadline(deadline): RequestDeadline,
    UserIdPath(user): UserIdPath,
    key: IdempotencyHeader<Purchase>,
) -> Result<HttpResponse, ApiError> {
    let parsed: PurchaseRequest = caller.body().json()?;
    let stars = Stars::new(parsed.stars).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidStars,
            format!(
                "stars must be a whole number from {} to {}",
                Stars::MIN,
                Stars::MAX
            ),
        )
    })?;
    let gift = parsed
        .recipient
        .as_deref()
        .map(Username::parse)
        .transpose()
        .map_err(|error| ApiError::new(ErrorCode::InvalidRecipient, error.to_string()))?;
    // A purchase moves money: without a key a network retry could buy twice.
    let key = key.required(
        "purchases need an Idempotency-Key header, so a retried request cannot buy twice",
    )?;
    // Without a recipient the order is for the user's own account: it delivers to the
    // username their profile holds now, recorded on the order (`deliver_to`).
    let recipient = match gift {
        Some(name) => Recipient::Gift(name),
        None => starledger_shop::own_account(&state.shop, user).await?,
    };
    let purchase =
        starledger_shop::purchase(&state.shop, user, stars, recipient, key, &deadline).await?;
    let (executed, e, projected) = (purchase.executed, purchase.event, purchase.projected);
    let balance = state
        .queries
        .balance(user.get(), Some(executed.position))
        .await?;
    Ok(created(
        &executed,
        json!({
            "purchase_id": e.purchase_id,
            "stars": e.stars.get(),
            "recipient": e.recipient.as_ref().map(|r| r.to_string()),
            "deliver_to": e.deliver_to.as_ref().map(|r| r.to_string()),
            "price": e.price,
            "currency": state.shop.currency,
            "status": "reserved",
            "position": executed.position,
            "projected": projected,
            "balance": balance_json(&state, user, balance).await?,
        }),
    ))
}
