//! API keys and roles: `Authorization: Bearer SECRET`, one role per key.
//!
//! Handlers take [`Authorized<R>`]: the key checked (401), then the role set `R` (403) — one
//! marker type per set of roles ([`Look`], [`Act`], [`Admin`], [`Auditor`]). A handler that
//! reads a body takes `Authorized<R, Body>`, which reads the body between the two checks, so
//! the documented order holds: API key (401), body size (413), role (403), then the request.
//!
//! Keys are kept as SHA-256 digests and looked up by the digest of what was presented, so no
//! comparison ever runs over the secrets themselves (nothing to time) and the table in memory
//! holds no usable key.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use sha2::{Digest, Sha256};

use super::body::Body;
use super::error::ApiError;
use super::error_code::ErrorCode;
use super::state::AppState;
use crate::settings::{ApiKey, Role};

/// Who is calling: the name and role of the key they presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Refuses the call unless the caller has one of `roles`.
    fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
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

    /// The caller whose key is `secret` (the console's sign-in form presents it).
    pub fn find(&self, secret: &str) -> Option<Caller> {
        self.0.get(&digest(secret)).cloned()
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
        self.find(secret)
            .ok_or_else(|| unauthenticated("unknown API key"))
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A set of roles that may call a handler, named for what it lets them do.
pub trait RoleSet: 'static {
    /// The roles, in the order a refusal lists them.
    const ROLES: &'static [Role];
}

/// Read-only calls on users: the bot, operators and auditors.
pub struct Look;
impl RoleSet for Look {
    const ROLES: &'static [Role] = &[Role::Service, Role::Admin, Role::Auditor];
}

/// Acting for users (register, recharge, purchase, sandbox payments): the bot and operators.
pub struct Act;
impl RoleSet for Act {
    const ROLES: &'static [Role] = &[Role::Service, Role::Admin];
}

/// Operators' actions.
pub struct Admin;
impl RoleSet for Admin {
    const ROLES: &'static [Role] = &[Role::Admin];
}

/// Audits: auditors and operators.
pub struct Auditor;
impl RoleSet for Auditor {
    const ROLES: &'static [Role] = &[Role::Auditor, Role::Admin];
}

/// What is read after the key and before the role: nothing (`()`), or the [`Body`], whose
/// size is refused (413) before a wrong role (403).
pub trait BeforeRole: Sized + 'static {
    fn read(
        request: &HttpRequest,
        payload: &mut Payload,
    ) -> LocalBoxFuture<'static, Result<Self, ApiError>>;
}

impl BeforeRole for () {
    fn read(_: &HttpRequest, _: &mut Payload) -> LocalBoxFuture<'static, Result<(), ApiError>> {
        Box::pin(async { Ok(()) })
    }
}

impl BeforeRole for Body {
    fn read(
        request: &HttpRequest,
        payload: &mut Payload,
    ) -> LocalBoxFuture<'static, Result<Body, ApiError>> {
        Body::from_request(request, payload)
    }
}

/// A caller with a known key (else 401 `unauthenticated`) and one of the roles of `R` (else
/// 403 `forbidden`); with `B = Body`, also the body, read in between. Derefs to the
/// [`Caller`].
pub struct Authorized<R: RoleSet, B: BeforeRole = ()> {
    caller: Caller,
    body: B,
    roles: PhantomData<R>,
}

impl<R: RoleSet, B: BeforeRole> Authorized<R, B> {
    /// What was read before the role check: the body, for `Authorized<R, Body>`.
    pub fn body(&self) -> &B {
        &self.body
    }
}

impl<R: RoleSet, B: BeforeRole> Deref for Authorized<R, B> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl<R: RoleSet, B: BeforeRole> FromRequest for Authorized<R, B> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // The body is read only for a known key: an unknown caller gets 401 whatever it sent.
        let started = authenticate(request).map(|caller| (caller, B::read(request, payload)));
        Box::pin(async move {
            let (caller, before) = started?;
            let body = before.await?;
            caller.require(R::ROLES)?;
            Ok(Authorized {
                caller,
                body,
                roles: PhantomData,
            })
        })
    }
}

/// The caller of `request`, or 401; a refusal is logged.
fn authenticate(request: &HttpRequest) -> Result<Caller, ApiError> {
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
            code = error.code().as_str(),
            "refused API call"
        );
    }
    caller
}
