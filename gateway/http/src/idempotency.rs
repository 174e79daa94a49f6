//! The `Idempotency-Key` header, namespaced by what it is for so the same key sent to two
//! different endpoints names two different commands.
//!
//! Handlers take [`IdempotencyHeader<P>`], `P` a marker naming the purpose (one per
//! endpoint). The header is parsed when the request is extracted, but a bad or missing key
//! is refused only where the handler asks for it ([`IdempotencyHeader::optional`] or
//! [`IdempotencyHeader::required`]), after the body's own checks, as it always was.

use std::future::{ready, Ready};
use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use starledger_ledger::ids::IdempotencyKey;

use super::error::ApiError;
use super::error_code::ErrorCode;

/// What a key is for: its namespace, `api:{PURPOSE}:{key}`.
pub trait Purpose: 'static {
    const PURPOSE: &'static str;
}

/// `POST /v1/users/{id}/recharges`.
pub struct Recharge;
impl Purpose for Recharge {
    const PURPOSE: &'static str = "recharge";
}

/// `POST /v1/users/{id}/purchases`.
pub struct Purchase;
impl Purpose for Purchase {
    const PURPOSE: &'static str = "purchase";
}

/// `POST /v1/admin/users/{id}/adjustments`.
pub struct Adjustment;
impl Purpose for Adjustment {
    const PURPOSE: &'static str = "adjustment";
}

/// The request's `Idempotency-Key` for purpose `P`, parsed; refused when asked for.
pub struct IdempotencyHeader<P: Purpose> {
    key: Result<Option<IdempotencyKey>, ApiError>,
    purpose: PhantomData<P>,
}

impl<P: Purpose> IdempotencyHeader<P> {
    /// The key if one was sent; 400 `invalid_idempotency_key` if it is malformed.
    pub fn optional(self) -> Result<Option<IdempotencyKey>, ApiError> {
        self.key
    }

    /// The key; 400 `missing_idempotency_key` with `why` if none was sent.
    pub fn required(self, why: &str) -> Result<IdempotencyKey, ApiError> {
        self.key?
            .ok_or_else(|| ApiError::new(ErrorCode::MissingIdempotencyKey, why))
    }
}

impl<P: Purpose> FromRequest for IdempotencyHeader<P> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(IdempotencyHeader {
            key: parse(request, P::PURPOSE),
            purpose: PhantomData,
        }))
    }
}

fn parse(request: &HttpRequest, purpose: &str) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = request.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            "Idempotency-Key must be 1 to 150 printable ASCII characters without spaces",
        )
    };
    let text = value.to_str().map_err(|_| invalid())?;
    if text.is_empty() || text.len() > 150 {
        return Err(invalid());
    }
    IdempotencyKey::parse(&format!("api:{purpose}:{text}"))
        .map(Some)
        .map_err(|_| invalid())
}
