//! `/v1/users/…`: what the bot and other services call on behalf of a user.
//!
//! Commands (register, recharge, purchase) go to the ledger; reads come from the projections
//! through the cache. Every command answers with the log `position` it wrote, after waiting
//! (bounded) for the projections to show it, so a read right after sees the change; a read
//! can also ask for `?min_position=` explicitly.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, FromRequest, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
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
use super::idempotency::{
    IdempotencyHeader, Purchase as PurchasePurpose, Recharge as RechargePurpose,
};
use super::position::position;
use super::state::AppState;
use super::wire::{AmountInput, DecimalText};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(config: &mut ServiceConfig) {
    config
        .service(register_user)
        .service(get_profile)
        .service(get_balance)
        .service(list_transactions)
        .service(create_recharge)
        .service(create_purchase);
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

impl IntoParams for UserIdPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(
                "The Telegram user id. Anything but a positive integer below 2^52 is 400 \
                 `invalid_user_id`.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]+$"))
                    .examples(["123456789"]),
            ))
            .build()]
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

/// The answer to a command: 201, or 200 marked `Idempotent-Replayed` when it repeats an
/// earlier identical request.
pub fn created(executed: &Executed, body: impl Serialize) -> HttpResponse {
    let mut response = HttpResponse::build(StatusCode::CREATED);
    if executed.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    response.json(body)
}

/// What a command answers besides what it made.
#[derive(Debug, Serialize, ToSchema)]
pub struct Written {
    /// The log position the command wrote (or, repeated, wrote the first time). Pass it as
    /// `min_position` to read your own write.
    pub position: u64,
    /// Whether reads already show the write (the call waits, bounded by
    /// `READ_YOUR_WRITES_TIMEOUT_MS`); `false` is not an error.
    pub projected: bool,
}

/// Open an account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": 123456789, "username": "alice_tg", "language": "en"}))]
struct RegisterRequest {
    /// The Telegram user id: a positive integer below 2^52 (else 422 `invalid_user_id`).
    #[schema(minimum = 1, maximum = 4503599627370495_i64)]
    user_id: i64,
    /// The Telegram username, without `@`.
    username: Option<String>,
    /// The Telegram language code, e.g. `en` or `ru`.
    language: Option<String>,
}

/// A registration as recorded.
#[derive(Serialize, ToSchema)]
struct Registration {
    user_id: i64,
    username: Option<String>,
    language: Option<String>,
    /// The ledger currency the account is kept in.
    #[schema(example = "TON")]
    currency: String,
    #[serde(flatten)]
    written: Written,
}

/// Register a user
///
/// Opens an account for a Telegram user in the ledger currency. Registration is idempotent
/// per user (no Idempotency-Key needed): repeating it, e.g. a second `/start`, answers 200
/// with the first registration's profile (a different username or language in the repeat is
/// not recorded).
#[utoipa::path(
    operation_id = "registerUser",
    tag = "users",
    security(("bearer" = ["service", "admin"])),
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered now.", body = Registration),
        (status = 200, description = "Already registered through this endpoint: the first \
            answer, unchanged.", body = Registration,
            headers(("Idempotent-Replayed" = String, description = "`true`: a repeat."))),
    ),
)]
#[post("/v1/users")]
async fn register_user(
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
    let Some(e) = registered.event else {
        return Err(ApiError::unavailable(
            "the ledger answered a registration with another event",
            &user,
        ));
    };
    let body = Registration {
        user_id: e.user_id.get(),
        username: e.username,
        language: e.language,
        currency: e.currency.to_string(),
        written: Written {
            position: executed.position,
            projected,
        },
    };
    if executed.replayed {
        return Ok(HttpResponse::Ok()
            .insert_header(("Idempotent-Replayed", "true"))
            .json(body));
    }
    Ok(HttpResponse::Created().json(body))
}

/// A user as the `users` read model shows it.
#[derive(Serialize, ToSchema)]
struct Profile {
    user_id: i64,
    username: Option<String>,
    language: Option<String>,
    #[schema(example = "TON")]
    currency: String,
    registered_at: DateTime<Utc>,
    /// Log position of the last event that changed the profile.
    position: u64,
}

/// Read a user's profile
///
/// The user as the `users` read model shows it (through the cache).
#[utoipa::path(
    operation_id = "getUser",
    tag = "users",
    security(("bearer" = ["service", "admin", "auditor"])),
    params(UserIdPath),
    responses((status = 200, description = "The profile.", body = Profile)),
)]
#[get("/v1/users/{id}")]
async fn get_profile(
    state: web::Data<AppState>,
    _caller: Authorized<Look>,
    UserIdPath(user): UserIdPath,
) -> Result<HttpResponse, ApiError> {
    let row = state
        .queries
        .user(user.get())
        .await?
        .ok_or_else(unknown_user)?;
    Ok(HttpResponse::Ok().json(Profile {
        user_id: row.user_id,
        username: row.username,
        language: row.language,
        currency: row.currency,
        registered_at: row.registered_at,
        position: row.position,
    }))
}

fn unknown_user() -> ApiError {
    ApiError::new(ErrorCode::UnknownUser, "no such user")
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct BalanceQuery {
    /// Wait (bounded by `READ_YOUR_WRITES_TIMEOUT_MS`) until the balance reflects at least
    /// this log position; 503 `projection_lagging` if it does not in time; 400
    /// `invalid_position` if it is past the log's head or past 9223372036854775807 (the
    /// largest position the log can hold).
    min_position: Option<u64>,
}

/// Read a user's balance
///
/// The balance as the `balances` read model shows it (through the cache). Pass
/// `min_position` (a command answer's `position`) to read your own write: the call waits,
/// bounded by `READ_YOUR_WRITES_TIMEOUT_MS`, for the projections to reach it.
#[utoipa::path(
    operation_id = "getBalance",
    tag = "users",
    security(("bearer" = ["service", "admin", "auditor"])),
    params(UserIdPath, BalanceQuery),
    responses((status = 200, description = "The balance.", body = Balance)),
)]
#[get("/v1/users/{id}/balance")]
async fn get_balance(
    state: web::Data<AppState>,
    _caller: Authorized<Look>,
    RequestDeadline(deadline): RequestDeadline,
    UserIdPath(user): UserIdPath,
    query: web::Query<BalanceQuery>,
) -> Result<HttpResponse, ApiError> {
    let min_position = position("min_position", query.min_position)?;
    reach(&state, &deadline, min_position).await?;
    let row = state.queries.balance(user.get(), min_position).await?;
    Ok(HttpResponse::Ok().json(balance_of(&state, user, row).await?))
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

/// A user's balance. A registered user with no money events yet has zeros.
#[derive(Debug, Serialize, ToSchema)]
pub struct Balance {
    user_id: i64,
    /// What the user may spend.
    available: DecimalText,
    /// Held by purchases in progress.
    reserved: DecimalText,
    /// available + reserved.
    total: DecimalText,
    /// What the user owes after a payment was refunded once its credit was spent. While it
    /// is not zero nothing is available, purchases are refused (422 `account_in_debt`), and
    /// the next credit pays it first.
    debt: DecimalText,
    #[schema(example = "TON")]
    currency: String,
    /// Log position of the last event that changed this balance.
    position: u64,
}

/// A balance as the API shows it. A registered user with no money events yet has zeros, with
/// the profile's position and registration time (the cached zero row's own position is the
/// cache's guard, not an event of this user).
pub async fn balance_of(
    state: &AppState,
    user: UserId,
    row: Option<BalanceRow>,
) -> Result<Balance, ApiError> {
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
    Ok(Balance {
        user_id: row.user_id,
        available: DecimalText::normalized(row.available),
        reserved: DecimalText::normalized(row.reserved),
        total: DecimalText::normalized(row.total()),
        debt: DecimalText::normalized(row.debt),
        currency: row.currency,
        position: row.position,
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// The previous page's `next_cursor`: transactions older than it. Absent: the newest.
    cursor: Option<u64>,
    /// Page size, 1 to 200 (else 400 `invalid_limit`).
    #[param(minimum = 1, maximum = 200, default = 20)]
    limit: Option<u32>,
    /// Wait (bounded) until the history reflects at least this log position (see
    /// `getBalance`).
    min_position: Option<u64>,
}

/// One page of a user's history, newest first.
#[derive(Serialize, ToSchema)]
struct TransactionPage {
    transactions: Vec<Transaction>,
    /// Pass as `cursor` for the next (older) page; `null` on the last one.
    next_cursor: Option<u64>,
}

/// List a user's transactions
///
/// The user's recharges, purchases and adjustments with their current status, newest first,
/// paged by cursor.
#[utoipa::path(
    operation_id = "listTransactions",
    tag = "users",
    security(("bearer" = ["service", "admin", "auditor"])),
    params(UserIdPath, HistoryQuery),
    responses((status = 200, description = "One page.", body = TransactionPage)),
)]
#[get("/v1/users/{id}/transactions")]
async fn list_transactions(
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
    Ok(HttpResponse::Ok().json(TransactionPage {
        transactions: page.transactions.iter().map(Transaction::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A recharge, purchase or adjustment, as the `transactions` read model shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Transaction {
    /// The recharge, purchase or adjustment id.
    id: uuid::Uuid,
    /// `recharge`, `purchase` or `adjustment`.
    #[schema(example = "recharge")]
    kind: &'static str,
    /// Recharges: `pending`, `completed`, `partial`, `failed`, `needs_review`, `on_hold`,
    /// `reversed`. Purchases: `reserved`, `ordered`, `sent`, `completed`, `refunded`.
    /// Adjustments: `completed`.
    #[schema(example = "completed")]
    status: String,
    /// Recharges: the invoice amount until settled, then what was credited. Purchases: the
    /// price. Adjustments: the signed change.
    amount: DecimalText,
    #[schema(example = "TON")]
    currency: String,
    description: Option<String>,
    /// Recharges: the Heleket invoice uuid. Purchases: the Fragment request id once placed.
    external_id: Option<String>,
    /// Details by kind (a purchase's Stars and recipient, a recharge's payment, …).
    metadata: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Log position of the last event that changed it.
    position: u64,
}

impl From<&TransactionRow> for Transaction {
    fn from(t: &TransactionRow) -> Self {
        Self {
            id: t.id,
            kind: t.kind.as_str(),
            status: t.status.clone(),
            amount: DecimalText::normalized(t.amount),
            currency: t.currency.clone(),
            description: t.description.clone(),
            external_id: t.external_id.clone(),
            metadata: t.metadata.clone(),
            created_at: t.created_at,
            updated_at: t.updated_at,
            position: t.position,
        }
    }
}

/// Top up a balance.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": "10.50"}))]
struct RechargeRequest {
    /// What to invoice, in the ledger currency.
    amount: AmountInput,
}

/// Parses a decimal-string amount from a request.
pub fn amount(field: &str, text: &str) -> Result<Amount, ApiError> {
    Amount::parse(text)
        .map_err(|error| ApiError::new(ErrorCode::InvalidAmount, format!("{field}: {error}")))
}

/// A pending recharge and its invoice.
#[derive(Serialize, ToSchema)]
struct Recharge {
    recharge_id: uuid::Uuid,
    /// What was invoiced, as given.
    amount: DecimalText,
    #[schema(example = "TON")]
    currency: String,
    /// Heleket's invoice.
    invoice_uuid: String,
    /// Where to send the user to pay.
    payment_url: String,
    expires_at: DateTime<Utc>,
    /// Always `pending`: the webhook settles it.
    #[schema(example = "pending")]
    status: &'static str,
    #[serde(flatten)]
    written: Written,
}

/// Start a recharge (top-up)
///
/// Creates a Heleket invoice for `amount` in the ledger currency and records the pending
/// recharge; send the user to `payment_url`. The balance is credited when Heleket's webhook
/// says the invoice is paid, with the amount actually paid. The user must be registered
/// before any invoice is created. Without an `Idempotency-Key` every call is a new recharge
/// (harmless: an unpaid invoice moves no money); with one, a retry answers the same recharge
/// and invoice.
#[utoipa::path(
    operation_id = "createRecharge",
    tag = "users",
    security(("bearer" = ["service", "admin"])),
    params(UserIdPath, IdempotencyHeader<RechargePurpose>),
    request_body = RechargeRequest,
    responses(
        (status = 201, description = "The recharge and its invoice (200 with \
            `Idempotent-Replayed: true` when it repeats a request).", body = Recharge,
            headers(("Idempotent-Replayed" = String, description = "`true`: a repeat."))),
    ),
)]
#[post("/v1/users/{id}/recharges")]
async fn create_recharge(
    state: web::Data<AppState>,
    caller: Authorized<Act, Body>,
    RequestDeadline(deadline): RequestDeadline,
    UserIdPath(user): UserIdPath,
    key: IdempotencyHeader<RechargePurpose>,
) -> Result<HttpResponse, ApiError> {
    let parsed: RechargeRequest = caller.body().json()?;
    let amount = amount("amount", &parsed.amount.0)?;
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
        Recharge {
            recharge_id: e.recharge_id.uuid(),
            amount: DecimalText::exact(e.amount),
            currency: e.currency.to_string(),
            invoice_uuid: e.invoice.uuid,
            payment_url: e.invoice.url,
            expires_at: e.invoice.expires_at,
            status: "pending",
            written: Written {
                position: executed.position,
                projected,
            },
        },
    ))
}

/// Buy Stars.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"stars": 100, "recipient": "bob_tg"}))]
struct PurchaseRequest {
    /// How many Stars: a whole number from 50 to 1000000 (else 422 `invalid_stars`; a
    /// non-integer is 422 `invalid_request`).
    #[schema(minimum = 50, maximum = 1000000, example = 100)]
    stars: i64,
    /// A gift: a Telegram username (an optional leading `@`, then 4 to 32 letters, digits or
    /// `_`, starting with a letter; else 422 `invalid_recipient`). Null or absent buys for
    /// the user, delivered to the username their profile holds now (422 `no_username` if
    /// they have none), recorded as `deliver_to`.
    #[schema(pattern = r"^@?[A-Za-z][A-Za-z0-9_]{3,31}$")]
    recipient: Option<String>,
}

/// A purchase as recorded, with the balance after its reservation.
#[derive(Serialize, ToSchema)]
struct Purchase {
    purchase_id: uuid::Uuid,
    stars: u32,
    /// The gift recipient, if any.
    recipient: Option<String>,
    /// The username the Stars go to.
    deliver_to: Option<String>,
    /// What the Stars cost, reserved from the balance until delivered or refunded.
    price: DecimalText,
    #[schema(example = "TON")]
    currency: String,
    /// Always `reserved`: fulfilment moves it on.
    #[schema(example = "reserved")]
    status: &'static str,
    #[serde(flatten)]
    written: Written,
    balance: Balance,
}

/// Buy Stars
///
/// Prices the Stars, reserves the price from the available balance and records the order;
/// fulfilment buys them through Fragment and delivers them. Needs an `Idempotency-Key`, so a
/// retried request cannot buy twice.
#[utoipa::path(
    operation_id = "createPurchase",
    tag = "users",
    security(("bearer" = ["service", "admin"])),
    params(UserIdPath, IdempotencyHeader<PurchasePurpose>),
    request_body = PurchaseRequest,
    responses(
        (status = 201, description = "The purchase (200 with `Idempotent-Replayed: true` \
            when it repeats a request).", body = Purchase,
            headers(("Idempotent-Replayed" = String, description = "`true`: a repeat."))),
    ),
)]
#[post("/v1/users/{id}/purchases")]
async fn create_purchase(
    state: web::Data<AppState>,
    caller: Authorized<Act, Body>,
    RequestDeadline(deadline): RequestDeadline,
    UserIdPath(user): UserIdPath,
    key: IdempotencyHeader<PurchasePurpose>,
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
        Purchase {
            purchase_id: e.purchase_id.uuid(),
            stars: e.stars.get(),
            recipient: e.recipient.as_ref().map(|r| r.to_string()),
            deliver_to: e.deliver_to.as_ref().map(|r| r.to_string()),
            price: DecimalText::exact(e.price),
            currency: state.shop.currency.to_string(),
            status: "reserved",
            written: Written {
                position: executed.position,
                projected,
            },
            balance: balance_of(&state, user, balance).await?,
        },
    ))
}
