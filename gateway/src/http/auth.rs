//! API keys and roles: `Authorization: Bearer SECRET`, one role per key.
//!
//! Keys are kept as SHA-256 digests and looked up by the digest of what was presented, so no
//! comparison ever runs over the secrets themselves (nothing to time) and the table in memory
//! holds no usable key.

use std::collections::HashMap;
use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::error_code::ErrorCode;
use super::state::AppState;
use crate::config::server::{ApiKey, Role};

/// Who is calling: the name and role of the key they presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Refuses the call unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "the {} role may not do this (allowed: {})",
                self.role.as_str(),
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }
}

/// The configured keys, by digest.
#[derive(Default)]
pub struct ApiKeys(HashMap<[u8; 32], Caller>);

impl ApiKeys {
    pub fn new(keys: &[ApiKey]) -> Self {
        Self(
            keys.iter()
                .map(|key| {
                    (
                        digest(key.secret.expose()),
                        Caller {
                            name: key.name.clone(),
                            role: key.role,
                        },
                    )
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn caller(&self, request: &HttpRequest) -> Result<Caller, ApiError> {
        let unauthenticated = |message: &str| ApiError::new(ErrorCode::Unauthenticated, message);
        let value = request
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthenticated("send Authorization: Bearer <API key>"))?;
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| unauthenticated("the Authorization header must be Bearer <API key>"))?;
        self.0
            .get(&digest(secret))
            .cloned()
            .ok_or_else(|| unauthenticated("unknown API key"))
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = match request.app_data::<web::Data<AppState>>() {
            Some(state) => state.keys.caller(request),
            None => Err(ApiError::unavailable(
                "the server is misconfigured",
                &"no application state",
            )),
        };
        if let Err(error) = &caller {
            tracing::info!(
                path = request.path(),
                code = error.code.as_str(),
                "refused API call"
            );
        }
        ready(caller)
    }
}
