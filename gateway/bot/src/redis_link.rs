//! The bot's connection to Redis, shared by its rate limiter and its session store, and what
//! happens when Redis is in trouble: every call is bounded by a short timeout, a failure
//! drops the connection and leaves Redis alone for a back-off, and the callers fall back to
//! this process's memory. Trouble is logged (at most once per interval, with the host, never
//! the URL, which may carry a password), so a fallback is never silent.
//!
//! Reconnection happens in the first call after the back-off, bounded by the connect timeout:
//! the bot's calls are a user's chat, not a hot path, so one short wait per back-off is fine.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use redis::RedisError;
use starledger_projections::redis_target::{RedisConnection, RedisSpec, RedisTarget};
use tokio::time::Instant;

/// Bound on one Redis command.
const OPERATION_TIMEOUT: Duration = Duration::from_millis(250);
/// Bound on one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long Redis is left alone after a failure.
const BACKOFF: Duration = Duration::from_secs(2);
/// At most one warning per this long.
const COMPLAINT_INTERVAL: Duration = Duration::from_secs(10);

/// Why a Redis call gave no answer. Callers fall back; they never fail a user's request on it.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("Redis is backing off after a failure")]
    BackingOff,
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis failed: {0}")]
    Redis(#[from] RedisError),
}

pub struct RedisLink {
    client: RedisTarget,
    /// `host:port`, for log lines.
    address: String,
    /// Every key this link writes starts with it.
    prefix: String,
    connection: tokio::sync::Mutex<Option<RedisConnection>>,
    retry_at: Mutex<Option<Instant>>,
    last_complaint: Mutex<Option<Instant>>,
}

impl RedisLink {
    /// A link to `url`; nothing is connected yet. `Err` only for a URL that does not parse
    /// (its text, which may hold a password, is not repeated).
    pub fn new(spec: &RedisSpec, prefix: &str) -> Result<Self, redis::ErrorKind> {
        let client = RedisTarget::open(spec, CONNECT_TIMEOUT, OPERATION_TIMEOUT)?;
        Ok(Self {
            client,
            address: RedisTarget::address(spec),
            prefix: prefix.to_owned(),
            connection: tokio::sync::Mutex::new(None),
            retry_at: Mutex::new(None),
            last_complaint: Mutex::new(None),
        })
    }

    /// `{prefix}:bot:{rest}`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:bot:{rest}", self.prefix)
    }

    /// Runs `call` on the shared connection (connecting first if needed), bounded by the
    /// operation timeout. A failure is logged (rate-limited) with `purpose` and starts the
    /// back-off.
    pub async fn run<T, F, Fut>(&self, purpose: &str, call: F) -> Result<T, LinkError>
    where
        F: FnOnce(RedisConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let result = match self.connection().await {
            Ok(connection) => match tokio::time::timeout(OPERATION_TIMEOUT, call(connection)).await
            {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => Err(LinkError::Redis(error)),
                Err(_) => Err(LinkError::Timeout(OPERATION_TIMEOUT)),
            },
            Err(error) => Err(error),
        };
        if let Err(error) = &result {
            if !matches!(error, LinkError::BackingOff) {
                self.fail().await;
            }
            self.complain(purpose, error);
        }
        result
    }

    async fn connection(&self) -> Result<RedisConnection, LinkError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let backing_off = self
            .retry_at
            .lock()
            .ok()
            .and_then(|at| *at)
            .is_some_and(|at| Instant::now() < at);
        if backing_off {
            return Err(LinkError::BackingOff);
        }
        let connecting = self.client.connect();
        let connection = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(LinkError::Redis(error)),
            Err(_) => return Err(LinkError::Timeout(CONNECT_TIMEOUT)),
        };
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Drops the connection and leaves Redis alone for the back-off.
    async fn fail(&self) {
        *self.connection.lock().await = None;
        if let Ok(mut retry_at) = self.retry_at.lock() {
            *retry_at = Some(Instant::now() + BACKOFF);
        }
    }

    fn complain(&self, purpose: &str, error: &LinkError) {
        let Ok(mut last) = self.last_complaint.lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < COMPLAINT_INTERVAL) {
            return;
        }
        *last = Some(now);
        // RedisError's text can quote the server's answer but not our URL or password.
        tracing::warn!(
            redis = %self.address,
            purpose,
            %error,
            "Redis unavailable to the bot; using this process's memory instead"
        );
    }
}
