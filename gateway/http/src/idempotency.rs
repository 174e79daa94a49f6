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

use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::IntoParams;

use super::error::ApiError;
use super::error_code::ErrorCode;

/// What a key is for: its namespace, `api:{PURPOSE}:{key}`.
pub trait Purpose: 'static {
    const PURPOSE: &'static str;
    /// Whether the endpoint refuses a request without a key (it moves money, so a retry
    /// must not repeat it); the API document says the same.
    const REQUIRED: bool;
}

/// `POST /v1/users/{id}/recharges`.
pub struct Recharge;
impl Purpose for Recharge {
    const PURPOSE: &'static str = "recharge";
    const REQUIRED: bool = false;
}

/// `POST /v1/users/{id}/purchases`.
pub struct Purchase;
impl Purpose for Purchase {
    const PURPOSE: &'static str = "purchase";
    const REQUIRED: bool = true;
}

/// `POST /v1/admin/users/{id}/adjustments`.
pub struct Adjustment;
impl Purpose for Adjustment {
    const PURPOSE: &'static str = "adjustment";
    const REQUIRED: bool = true;
}

/// The request's `Idempotency-Key` for purpose `P`, parsed; refused when asked for.
pub struct IdempotencyHeader<P: Purpose> {
    key: Result<Option<IdempotencyKey>, ApiError>,
    purpose: PhantomData<P>,
}

impl<P: Purpose> IdempotencyHeader<P> {
    /// The key if one was sent; 400 `invalid_idempotency_key` if it is malformed. For
    /// purposes whose key is optional.
    pub fn optional(self) -> Result<Option<IdempotencyKey>, ApiError> {
        debug_assert!(!P::REQUIRED, "{} keys are required", P::PURPOSE);
        self.key
    }

    /// The key; 400 `missing_idempotency_key` with `why` if none was sent. For purposes
    /// whose key is required.
    pub fn required(self, why: &str) -> Result<IdempotencyKey, ApiError> {
        debug_assert!(P::REQUIRED, "{} keys are optional", P::PURPOSE);
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

/// The `Idempotency-Key` header as the API document shows it.
impl<P: Purpose> IntoParams for IdempotencyHeader<P> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let description = if P::REQUIRED {
            "Required (else 400 `missing_idempotency_key`): the same key with the same request \
             answers the first result again (200, `Idempotent-Replayed: true`) instead of \
             acting twice; with a different request, 422 `idempotency_key_reused`. 1 to 150 \
             printable ASCII characters without spaces (else 400 `invalid_idempotency_key`)."
        } else {
            "Optional: the same key with the same request answers the first result again \
             (200, `Idempotent-Replayed: true`) instead of acting twice; with a different \
             request, 422 `idempotency_key_reused`. 1 to 150 printable ASCII characters \
             without spaces (else 400 `invalid_idempotency_key`)."
        };
        vec![ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(if P::REQUIRED {
                Required::True
            } else {
                Required::False
            })
            .description(Some(description))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(150))
                    .pattern(Some("^[!-~]+$"))
                    .examples(["order-7f3c2a"]),
            ))
            .build()]
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
