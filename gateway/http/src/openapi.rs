//! The API document (OpenAPI 3.1), generated from the code with `utoipa`.
//!
//! - Each handler's `#[utoipa::path]` gives its operation: path, method, parameters (query
//!   structs derive `IntoParams`), request body, answers and the roles that may call it.
//! - The request and answer types derive `ToSchema`, so their schemas are the types the
//!   handlers read and write.
//! - [`api`] registers every handler through `utoipa-actix-web`, which gathers the document
//!   from the same calls: what is served and what is documented are one list.
//!
//! Two parts are added here, after the handlers' own are gathered ([`document`]):
//! - each operation's error answers, from [`ERRORS`] and the catalogue of codes: one response
//!   per status, with the codes it may carry and what each means ([`ErrorCode::doc`]);
//! - the roles line of each description, from the operation's security requirement.
//!
//! `schemas/openapi.json` is this document as `starledger openapi` prints it; a test fails
//! when the two differ.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::App;
use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::AppExt;

use super::error_code::ErrorCode::{self, *};

/// The name of the API-key security scheme operations refer to.
pub const BEARER: &str = "bearer";

/// Every error answer: `{"error":{"code","message"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable; one of the codes the operation lists for this status.
    #[schema(example = "insufficient_funds")]
    pub code: &'static str,
    /// For people; never a secret or an internal detail.
    #[schema(example = "available balance 1.5 is less than the price 2.25")]
    pub message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "starledger gateway",
        description = include_str!("openapi_intro.md"),
        license(name = "MIT", identifier = "MIT"),
    ),
    servers((
        url = "http://localhost:8001",
        description = "`starledger serve` with the defaults (`WEBHOOK_HOST`, `WEBHOOK_PORT`)."
    )),
    tags(
        (name = "users", description = "What the bot and other services call on behalf of a user."),
        (name = "admin", description = "What operators do."),
        (name = "audit", description = "What auditors read."),
        (name = "heleket", description = "The payment provider's webhook."),
        (name = "telegram", description = "The Telegram bot's webhook (webhook mode only)."),
        (name = "sandbox", description = "The sandbox Heleket (`HELEKET_MODE=sandbox`)."),
        (name = "ops", description = "Health, readiness and metrics; open without a key."),
        (name = "console", description = "What the operators' console (`/console`, HTML pages) \
            polls, authenticated by its session cookie."),
    ),
    // The line of `/v1/audit/events` (an NDJSON body has no JSON schema of its own).
    components(schemas(ErrorBody, starledger_projections::audit::EventLine)),
    modifiers(&ApiKeys),
)]
struct ApiDoc;

/// The `bearer` scheme: the API keys of `STARLEDGER_API_KEYS`.
struct ApiKeys;

impl Modify for ApiKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "An API key from `STARLEDGER_API_KEYS` (at least 16 characters), sent as \
                 `Authorization: Bearer <key>`. One role per key: `service` (the bot and \
                 internal callers), `admin` (operators), `auditor`.",
            ))
            .build();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
        let session = ApiKeyValue::with_description(
            super::console::session::COOKIE,
            "The operators' console's session cookie, set by signing in at `/console/sign-in` \
             with an admin or auditor key (`__Host-starledger_console` over TLS).",
        );
        components.add_security_scheme(
            super::console::api::CONSOLE_SESSION,
            SecurityScheme::ApiKey(ApiKey::Cookie(session)),
        );
    }
}

/// Registers every handler of the API, for serving and for the document alike.
pub fn api(config: &mut ServiceConfig) {
    config
        .configure(super::users::routes)
        .configure(super::admin::routes)
        .configure(super::purchases::routes)
        .configure(super::reviews::routes)
        .configure(super::audit::routes)
        .configure(super::webhooks::routes)
        .configure(super::telegram::routes)
        .configure(super::sandbox::routes)
        .configure(super::ops::routes)
        .configure(super::console::api::routes);
}

/// The codes each operation may answer in `{"error":…}`, by operation id. A code is answered
/// with its own status, or with the one [`STATUS_IN`] gives for that operation.
pub const ERRORS: &[(&str, &[ErrorCode])] = &[
    (
        "consoleRebuild",
        &[Unauthenticated, NoRebuild, DeadlineExceeded],
    ),
    (
        "consoleAuditJob",
        &[Unauthenticated, UnknownJob, DeadlineExceeded],
    ),
    (
        "registerUser",
        &[
            MalformedJson,
            UnreadableBody,
            Unauthenticated,
            Forbidden,
            AlreadyRegistered,
            BodyTooLarge,
            InvalidRequest,
            InvalidUserId,
            InvalidText,
            Unavailable,
            Busy,
            DeadlineExceeded,
        ],
    ),
    (
        "getUser",
        &[
            InvalidUserId,
            Unauthenticated,
            Forbidden,
            UnknownUser,
            Unavailable,
            DeadlineExceeded,
        ],
    ),
    (
        "getBalance",
        &[
            InvalidUserId,
            InvalidQuery,
            InvalidPosition,
            Unauthenticated,
            Forbidden,
            UnknownUser,
            ProjectionLagging,
            Unavailable,
            DeadlineExceeded,
        ],
    ),
    (
        "listTransactions",
        &[
            InvalidUserId,
            InvalidLimit,
            InvalidQuery,
            InvalidPosition,
            Unauthenticated,
            Forbidden,
            UnknownUser,
            Unavailable,
            ProjectionLagging,
            DeadlineExceeded,
        ],
    ),
    (
        "createRecharge",
        &[
            InvalidUserId,
            InvalidIdempotencyKey,
            MalformedJson,
            UnreadableBody,
            Unauthenticated,
            Forbidden,
            UnknownUser,
            DuplicateRecharge,
            BodyTooLarge,
            InvalidRequest,
            InvalidAmount,
            IdempotencyKeyReused,
            CurrencyMismatch,
            InvalidText,
            PaymentProviderRefused,
            PaymentProviderError,
            PaymentProviderUnavailable,
            Unavailable,
            Busy,
            DeadlineExceeded,
        ],
    ),
    (
        "createPurchase",
        &[
            InvalidUserId,
            MissingIdempotencyKey,
            InvalidIdempotencyKey,
            MalformedJson,
            UnreadableBody,
            Unauthenticated,
            Forbidden,
            UnknownUser,
            DuplicatePurchase,
            BodyTooLarge,
            InsufficientFunds,
            AccountInDebt,
            InvalidRequest,
            InvalidStars,
            InvalidRecipient,
            NoUsername,
            IdempotencyKeyReused,
            CurrencyMismatch,
            Unavailable,
            Busy,
            DeadlineExceeded,
        ],
    ),
    (
        "createAdjustment",
        &[
            InvalidUserId,
            MissingIdempotencyKey,
            InvalidIdempotencyKey,
            MalformedJson,
            UnreadableBody,
            Unauthenticated,
            Forbidden,
            UnknownUser,
            DuplicateAdjustment,
            BodyTooLarge,
            InvalidRequest,
            InvalidAmount,
            AdjustmentWouldOverdraw,
            InvalidText,
            CurrencyMismatch,
            IdempotencyKeyReused,
            Unavailable,
            Busy,
            DeadlineExceeded,
        ],
    ),
    (
        "getProjections",
        &[Unauthenticated, Forbidden, Unavailable, DeadlineExceeded],
    ),
    (
        "startRebuild",
        &[
            MalformedJson,
            UnreadableBody,
            Unauthenticated,
            Forbidden,
            RebuildRunning,
            BodyTooLarge,
            InvalidRequest,
            UnknownProjection,
            Unavailable,
            DeadlineExceeded,
        ],
    ),
    (
        "getRebuild",
        &[Unauthenticated, Forbidden, NoRebuild, DeadlineExceeded],
    ),
    (
        "listOpenPurchases",
        &[
            InvalidLimit,
            InvalidQuery,
            Unauthenticated,
            Forbidden,
            Unavailable,
            DeadlineExceeded,
        ],
    ),
    (
        "deliverPurchase",
        &[
            InvalidPurchaseId,
            MalformedJson,
            UnreadableBody,
            Unauthenticated,
            Forbidden,
            UnknownPurchase,
            PurchaseNotOpen,
            BodyTooLarge,
            InvalidRequest,
            InvalidText,
            Unavailable,
            Busy,
            DeadlineExceeded,
        ],
    ),
    (
        "failPurchase",
        &[
            InvalidPurchaseId,
            MalformedJson,
            UnreadableBody,
            Unauthenticated,
            Forbidden,
            UnknownPurchase,
            PurchaseNotOpen,
            PaymentRecorded,
            BodyTooLarge,
            InvalidRequest,
            InvalidText,
            Unavailable,
            Busy,
            DeadlineExceeded,
        ],
    ),
    (
        "listAwaitingRecharges",
        &[
            InvalidLimit,
            InvalidQuery,
            Unauthenticated,
            Forbidden,
            Unavailable,
            DeadlineExceeded,
        ],
    ),
    (
        "creditRecharge",
        &[
            InvalidRechargeId,
            MalformedJson,
            UnreadableBody,
            Unauthenticated,
            Forbidden,
            UnknownRecharge,
            RechargeNotAwaitingDecision,
            BodyTooLarge,
            InvalidRequest,
            InvalidText,
            InvalidAmount,
            Unavailable,
            Busy,
            DeadlineExceeded,
        ],
    ),
    (
        "rejectRecharge",
        &[
            InvalidRechargeId,
            MalformedJson,
            UnreadableBody,
            Unauthenticated,
            Forbidden,
            UnknownRecharge,
            RechargeNotAwaitingDecision,
            BodyTooLarge,
            InvalidRequest,
            InvalidText,
            Unavailable,
            Busy,
            DeadlineExceeded,
        ],
    ),
    (
        "exportEvents",
        &[
            InvalidLimit,
            InvalidQuery,
            InvalidPosition,
            Unauthenticated,
            Forbidden,
            Unavailable,
            DeadlineExceeded,
        ],
    ),
    ("startVerify", AUDIT_JOB_START_VERIFY),
    ("startVerifyPost", AUDIT_JOB_START_VERIFY),
    ("startBalancesAt", AUDIT_JOB_START_BALANCES),
    ("startBalancesAtPost", AUDIT_JOB_START_BALANCES),
    (
        "getAuditJob",
        &[
            InvalidLimit,
            InvalidCursor,
            InvalidQuery,
            Unauthenticated,
            Forbidden,
            UnknownJob,
            Unavailable,
            DeadlineExceeded,
        ],
    ),
    (
        "heleketWebhook",
        &[
            MalformedJson,
            UnreadableBody,
            InvalidSignature,
            ForbiddenSender,
            BodyTooLarge,
            InvalidWebhook,
            IdempotencyKeyReused,
            InvalidText,
            CurrencyMismatch,
            Unavailable,
            Busy,
            PaymentProviderUnavailable,
            DeadlineExceeded,
        ],
    ),
    (
        "telegramWebhook",
        &[
            MalformedJson,
            UnreadableBody,
            InvalidSecretToken,
            NotFound,
            BodyTooLarge,
            InvalidRequest,
            Unavailable,
            DeadlineExceeded,
        ],
    ),
    (
        "getSandboxInvoice",
        &[NotFound, UnknownInvoice, DeadlineExceeded],
    ),
    (
        "paySandboxInvoice",
        &[
            MalformedJson,
            UnreadableBody,
            Unauthenticated,
            Forbidden,
            NotFound,
            UnknownInvoice,
            BodyTooLarge,
            InvalidRequest,
            InvalidAmount,
            InvalidStatus,
            Unavailable,
            DeadlineExceeded,
        ],
    ),
    ("healthz", &[]),
    ("readyz", &[]),
    ("metrics", &[]),
];

// The two ways each audit job is started (GET and POST) answer the same.
const AUDIT_JOB_START_VERIFY: &[ErrorCode] = &[
    InvalidScope,
    InvalidQuery,
    Unauthenticated,
    Forbidden,
    AuditJobRunning,
    Unavailable,
];
const AUDIT_JOB_START_BALANCES: &[ErrorCode] = &[
    InvalidTime,
    InvalidQuery,
    Unauthenticated,
    Forbidden,
    AuditJobRunning,
    Unavailable,
];

/// Codes an operation answers with another of their statuses
/// ([`ErrorCode::OTHER_STATUSES`]) than their own.
pub const STATUS_IN: &[(&str, ErrorCode, StatusCode)] = &[
    // The user id is a field of the body there, and a bad field is 422.
    (
        "registerUser",
        InvalidUserId,
        StatusCode::UNPROCESSABLE_ENTITY,
    ),
];

/// Why the document cannot be put together: the code and [`ERRORS`] disagree.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    #[error("operation {0} has no entry in openapi::ERRORS")]
    NoErrorsListed(String),
    #[error("openapi::ERRORS lists {0}, which no registered handler documents")]
    UnknownOperation(String),
    #[error("a {method} operation has no operationId")]
    NoOperationId { method: String },
}

/// The whole API document, as `starledger openapi` prints it.
pub fn document() -> Result<utoipa::openapi::OpenApi, DocumentError> {
    let (_, mut doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(api)
        .split_for_parts();
    let mut listed: BTreeMap<&str, bool> = ERRORS.iter().map(|(id, _)| (*id, false)).collect();
    for item in doc.paths.paths.values_mut() {
        for (method, operation) in operations(item) {
            let id =
                operation
                    .operation_id
                    .clone()
                    .ok_or_else(|| DocumentError::NoOperationId {
                        method: method.to_owned(),
                    })?;
            let codes = ERRORS
                .iter()
                .find(|(listed, _)| *listed == id)
                .map(|(_, codes)| *codes)
                .ok_or_else(|| DocumentError::NoErrorsListed(id.clone()))?;
            if let Some(seen) = listed.get_mut(id.as_str()) {
                *seen = true;
            }
            add_error_answers(operation, &id, codes);
            add_roles(operation);
        }
    }
    if let Some((id, _)) = listed.iter().find(|(_, seen)| !**seen) {
        return Err(DocumentError::UnknownOperation((*id).to_owned()));
    }
    Ok(doc)
}

/// The document as checked in: pretty JSON and a final newline.
pub fn document_json() -> Result<String, DocumentError> {
    let doc = document()?;
    // A document of plain strings, maps and numbers always serializes.
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

/// Every operation of a path item, with its method.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("options", item.options.as_mut()),
        ("head", item.head.as_mut()),
        ("patch", item.patch.as_mut()),
        ("trace", item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.map(|operation| (method, operation)))
}

/// The status `code` is answered with by operation `id`.
fn status_in(id: &str, code: ErrorCode) -> StatusCode {
    STATUS_IN
        .iter()
        .find(|(operation, listed, _)| *operation == id && *listed == code)
        .map(|(_, _, status)| *status)
        .unwrap_or(code.status())
}

/// One response per error status of the operation, its codes in the order listed.
fn add_error_answers(operation: &mut Operation, id: &str, codes: &[ErrorCode]) {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in codes {
        by_status
            .entry(status_in(id, *code).as_u16())
            .or_default()
            .push(*code);
    }
    for (status, codes) in by_status {
        let description = codes
            .iter()
            .map(|code| format!("`{code}`: {}", one_line(code.doc())))
            .collect::<Vec<_>>()
            .join(" ");
        let code_enum = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes.iter().map(|code| code.as_str())));
        let narrowed = ObjectBuilder::new()
            .property("error", ObjectBuilder::new().property("code", code_enum));
        let schema = Schema::AllOf(
            AllOfBuilder::new()
                .item(Ref::from_schema_name("Error"))
                .item(narrowed)
                .build(),
        );
        let mut response = ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE.as_u16() {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                    .description(Some("Seconds to wait before retrying (1)."))
                    .build(),
            );
        }
        if status == StatusCode::UNAUTHORIZED.as_u16() && codes.contains(&Unauthenticated) {
            response = response.header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .description(Some("`Bearer`: send an API key."))
                    .build(),
            );
        }
        operation
            .responses
            .responses
            .insert(status.to_string(), response.build().into());
    }
}

/// A doc comment's lines as one line.
fn one_line(doc: &str) -> String {
    doc.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

/// Ends the description with the roles the security requirement lists (or that none is
/// needed).
fn add_roles(operation: &mut Operation) {
    let roles: Vec<String> = operation
        .security
        .iter()
        .flatten()
        .filter_map(|requirement| serde_json::to_value(requirement).ok())
        .filter_map(|value| {
            [BEARER, super::console::api::CONSOLE_SESSION]
                .iter()
                .find_map(|scheme| {
                    value
                        .get(scheme)
                        .and_then(|roles| roles.as_array().cloned())
                })
        })
        .flatten()
        .filter_map(|role| role.as_str().map(|role| format!("`{role}`")))
        .collect();
    let line = if roles.is_empty() {
        "**Roles:** none; no API key is needed.".to_owned()
    } else {
        format!("**Roles:** {}.", roles.join(", "))
    };
    let description = operation.description.get_or_insert_with(String::new);
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(&line);
}
