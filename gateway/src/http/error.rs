//! Typed API errors: every failure answers `{"error":{"code","message"}}` with a status that
//! says whose fault it is (4xx: the caller's, nothing changed; 5xx: ours or a dependency's).
//!
//! Messages are for people and never carry a secret or an internal detail; the full cause of
//! a 5xx goes to the log instead.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use starledger_ledger::account::Rejection;
use starledger_ledger::commands::CommandError;
use starledger_ledger::store::StoreError;
use starledger_projections::runtime::ProjectionError;
use starledger_projections::store::ReadError;

use crate::heleket::ProviderError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A failure of ours or of a dependency: the cause is logged, the caller gets a generic
    /// message and may retry.
    pub fn unavailable(context: &str, cause: &dyn fmt::Display) -> Self {
        tracing::error!(%cause, "{context}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{context}; try again later"),
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header(("Retry-After", "1"));
        }
        if self.code == "unauthenticated" {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(json!({"error": {"code": self.code, "message": self.message}}))
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        let status = match rejection {
            Rejection::UnknownUser
            | Rejection::UnknownRecharge(_)
            | Rejection::UnknownPurchase(_) => StatusCode::NOT_FOUND,
            Rejection::AlreadyRegistered
            | Rejection::ProfileUnchanged
            | Rejection::DuplicateRecharge(_)
            | Rejection::DuplicatePurchase(_)
            | Rejection::DuplicateAdjustment(_)
            | Rejection::RechargeAlreadySettled(_)
            | Rejection::RechargeAlreadyFailed(_)
            | Rejection::RechargeAlreadyReversed(_)
            | Rejection::RechargeAlreadyHeld(_)
            | Rejection::RechargeInReview(_)
            | Rejection::RechargeNotAwaitingDecision { .. }
            | Rejection::PaymentRecorded(_)
            | Rejection::PurchaseNotOpen { .. }
            | Rejection::PaymentAttemptOutOfOrder { .. } => StatusCode::CONFLICT,
            Rejection::CurrencyMismatch { .. }
            | Rejection::InsufficientFunds { .. }
            | Rejection::AccountInDebt { .. }
            | Rejection::AdjustmentWouldOverdraw { .. }
            | Rejection::InvalidTolerance { .. }
            | Rejection::InvalidFacts { .. }
            | Rejection::InvalidText { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, rejection.code(), rejection.to_string())
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected(rejection) => rejection.into(),
            CommandError::IdempotencyKeyReused(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request",
            ),
            CommandError::TooManyConflicts(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the account is busy; try again",
            ),
            other => Self::unavailable("the ledger could not record the command", &other),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        Self::unavailable("the read models are unavailable", &error)
    }
}

impl From<ProjectionError> for ApiError {
    fn from(error: ProjectionError) -> Self {
        Self::unavailable("the projections are unavailable", &error)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::unavailable("the event log is unavailable", &error)
    }
}

impl From<ProviderError> for ApiError {
    fn from(error: ProviderError) -> Self {
        tracing::warn!(%error, "payment provider call failed");
        match error {
            ProviderError::Refused(message) => Self::new(
                StatusCode::BAD_GATEWAY,
                "payment_provider_refused",
                format!("the payment provider refused the invoice: {message}"),
            ),
            ProviderError::CircuitOpen | ProviderError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment_provider_unavailable",
                "the payment provider is unavailable; try again later",
            ),
            ProviderError::NotFound(_) | ProviderError::BadResponse(_) => Self::new(
                StatusCode::BAD_GATEWAY,
                "payment_provider_error",
                "the payment provider gave an unusable answer; try again later",
            ),
        }
    }
}

impl From<crate::shop::ShopError> for ApiError {
    fn from(error: crate::shop::ShopError) -> Self {
        use crate::shop::ShopError;
        match error {
            ShopError::UnknownUser => Self::not_found("unknown_user", "no such user"),
            ShopError::CurrencyMismatch { .. } => {
                Self::unprocessable("currency_mismatch", error.to_string())
            }
            ShopError::Pricing { .. } => Self::unprocessable("invalid_stars", error.to_string()),
            ShopError::NoUsername => Self::unprocessable("no_username", error.to_string()),
            ShopError::Provider(error) => error.into(),
            ShopError::Command(error) => error.into(),
            ShopError::Read(error) => error.into(),
            ShopError::UnexpectedEvent(_) => {
                Self::unavailable("the ledger gave an unexpected answer", &error)
            }
        }
    }
}
