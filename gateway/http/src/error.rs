//! Typed API errors: every failure answers `{"error":{"code","message"}}` with a status that
//! says whose fault it is (4xx: the caller's, nothing changed; 5xx: ours or a dependency's).
//!
//! Messages are for people and never carry a secret or an internal detail; the full cause of
//! a 5xx goes to the log instead. Codes and their statuses come from the catalogue in
//! [`super::error_code`], never from a string written at the call site.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use starledger_ledger::account::Rejection;
use starledger_ledger::commands::CommandError;
use starledger_ledger::store::StoreError;
use starledger_projections::runtime::ProjectionError;
use starledger_projections::store::ReadError;

use super::error_code::ErrorCode;
use starledger_heleket::ProviderError;

/// Why a request was not done, in the two ways that differ for the caller and for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Answered with a code of the catalogue and a message for the caller: the request's own
    /// fault (4xx, nothing changed), or a state the caller can wait out and retry (`busy`,
    /// `projection_lagging`, `deadline_exceeded`, a payment provider that is down).
    Refused {
        code: ErrorCode,
        status: StatusCode,
        message: String,
    },
    /// A failure of ours or of a dependency (the event log, the read models): its cause went
    /// to the log, never to the caller, who gets `unavailable` (503) with what could not be
    /// done, and may retry.
    Unavailable { what: String },
}

impl ApiError {
    /// An answer with `code` and the code's own status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Refused {
            status: code.status(),
            code,
            message: message.into(),
        }
    }

    /// An answer with `code` and another status it is listed with in
    /// [`ErrorCode::OTHER_STATUSES`] (so the document can be checked for it).
    pub fn with_status(code: ErrorCode, status: StatusCode, message: impl Into<String>) -> Self {
        debug_assert!(
            code.statuses().any(|listed| listed == status),
            "{code} is not listed with {status} in ErrorCode::OTHER_STATUSES"
        );
        Self::Refused {
            status,
            code,
            message: message.into(),
        }
    }

    /// A failure of ours or of a dependency: the cause is logged here, the caller is told only
    /// `what` could not be done.
    pub fn unavailable(what: &str, cause: &dyn fmt::Display) -> Self {
        tracing::error!(%cause, "{what}");
        Self::Unavailable {
            what: what.to_owned(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Refused { code, .. } => *code,
            Self::Unavailable { .. } => ErrorCode::Unavailable,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Refused { status, .. } => *status,
            Self::Unavailable { .. } => ErrorCode::Unavailable.status(),
        }
    }

    /// What the caller reads in `error.message`.
    pub fn message(&self) -> String {
        match self {
            Self::Refused { message, .. } => message.clone(),
            Self::Unavailable { what } => format!("{what}; try again later"),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status().as_u16(),
            self.code(),
            self.message()
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        let code = self.code();
        let mut response = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header(("Retry-After", "1"));
        }
        if code == ErrorCode::Unauthenticated {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(json!({"error": {"code": code.as_str(), "message": self.message()}}))
    }
}

/// Each rejection answers its own code (see [`ErrorCode`]'s `From<&Rejection>`) with that
/// code's status.
impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        Self::new(ErrorCode::from(&rejection), rejection.to_string())
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected(rejection) => rejection.into(),
            CommandError::IdempotencyKeyReused(_) => Self::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was already used for a different request",
            ),
            CommandError::TooManyConflicts(_) => {
                Self::new(ErrorCode::Busy, "the account is busy; try again")
            }
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
                ErrorCode::PaymentProviderRefused,
                format!("the payment provider refused the invoice: {message}"),
            ),
            ProviderError::CircuitOpen | ProviderError::Unavailable(_) => Self::new(
                ErrorCode::PaymentProviderUnavailable,
                "the payment provider is unavailable; try again later",
            ),
            ProviderError::NotFound(_) | ProviderError::BadResponse(_) => Self::new(
                ErrorCode::PaymentProviderError,
                "the payment provider gave an unusable answer; try again later",
            ),
        }
    }
}

impl From<starledger_shop::ShopError> for ApiError {
    fn from(error: starledger_shop::ShopError) -> Self {
        use starledger_shop::ShopError;
        match error {
            ShopError::UnknownUser => Self::new(ErrorCode::UnknownUser, "no such user"),
            ShopError::CurrencyMismatch { .. } => {
                Self::new(ErrorCode::CurrencyMismatch, error.to_string())
            }
            ShopError::Pricing { .. } => Self::new(ErrorCode::InvalidStars, error.to_string()),
            ShopError::NoUsername => Self::new(ErrorCode::NoUsername, error.to_string()),
            ShopError::Provider(error) => error.into(),
            ShopError::Command(error) => error.into(),
            ShopError::Read(error) => error.into(),
            ShopError::UnexpectedEvent(_) => {
                Self::unavailable("the ledger gave an unexpected answer", &error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(error: ApiError) -> (StatusCode, HttpResponse<actix_web::body::BoxBody>) {
        (error.status_code(), error.error_response())
    }

    #[actix_web::test]
    async fn an_answer_is_the_codes_wire_string_and_status_in_the_error_format() {
        let (status, response) = answer(ApiError::new(ErrorCode::UnknownUser, "no such user"));
        assert_eq!(status, StatusCode::NOT_FOUND);
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .expect("a body");
        assert_eq!(
            &body[..],
            br#"{"error":{"code":"unknown_user","message":"no such user"}}"#
        );
        let (_, response) = answer(ApiError::new(ErrorCode::Unauthenticated, "who?"));
        assert!(response.headers().contains_key("WWW-Authenticate"));
        let (_, response) = answer(ApiError::new(ErrorCode::Busy, "busy"));
        assert!(response.headers().contains_key("Retry-After"));
    }

    #[test]
    fn a_listed_other_status_is_kept() {
        let error = ApiError::with_status(
            ErrorCode::InvalidUserId,
            StatusCode::UNPROCESSABLE_ENTITY,
            "user_id must be a positive Telegram user id",
        );
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.code().as_str(), "invalid_user_id");
    }

    #[actix_web::test]
    async fn an_unavailable_answer_says_what_failed_but_not_why() {
        let error = ApiError::unavailable(
            "the event log is unavailable",
            &"connection to 10.0.0.5:5432 refused (password authentication failed)",
        );
        assert_eq!(error.code(), ErrorCode::Unavailable);
        let (status, response) = answer(error);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("Retry-After"));
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .expect("a body");
        assert_eq!(
            &body[..],
            br#"{"error":{"code":"unavailable","message":"the event log is unavailable; try again later"}}"#
        );
    }
}
