//! The TON blockchain through toncenter's HTTP API v2, as the fulfilment worker's [`TonChain`]:
//! the shop wallet's balance and seqno, broadcasting its signed transfers, and finding the
//! transaction that executed one.
//!
//! Every call is safe to repeat (reads, and re-broadcasting the same signed bytes, which the
//! wallet executes at most once), so transient failures — timeouts, connection errors, 5xx,
//! 429 — are retried per [`RetryPolicy`] and count against the [`CircuitBreaker`]; refusals
//! are final and prove toncenter is up. Answers are read up to a size limit, redirects are
//! not followed, and the API key (header `X-API-Key`) appears in no log, error or `Debug`.
//!
//! What toncenter answers when a broadcast message is not accepted. It runs the message
//! against the wallet's current state and, if the contract throws before accepting it, answers
//! `ok: false` (HTTP 500 from the classic server) with the liteserver's text, e.g.
//! `LITE_SERVER_UNKNOWN: cannot apply external message to current state : External message
//! was not accepted … exitcode=33, steps=…`. The wallet contracts' exit codes say why:
//!
//! | exit code (v4 / v5) | meaning | broadcast returns |
//! |---|---|---|
//! | 33 / 133 | the seqno is not the wallet's: this message (or another with the same seqno) already executed | `Ok(())` — the bytes can never execute again; [`TonChain::find_transaction`] tells which |
//! | 36 / 136 | `valid_until` has passed | `Refused("… expired …")` — it will never execute *from now on*; it may have executed before it expired (v4 checks the expiry before the seqno), so look it up |
//! | 34, 35 / 132, 134, 135, 137 | wrong wallet id, bad signature, signing disabled, bad send mode | `Refused` — a bug on our side, not a payment |
//! | no exit code: "rejected … before smart-contract execution" | the account cannot run it (not deployed and no state init) | `Refused` |
//!
//! Neither answer means the payment failed: the worker decides by looking the message up.
//!
//! How a transaction is matched to our message: the wallet's transactions are paged back
//! (`getTransactions`, newest first) until one is older than `since`. A transaction executed
//! our message if its incoming message is external and its TEP-467 normalised hash — computed
//! here from the destination and body toncenter reports — equals
//! [`SignedTransfer::message_hash`](super::ton::SignedTransfer::message_hash). The plain
//! message hash toncenter also reports is tried first (it is the same for every message but
//! the deploying one), but is not relied on: whoever relays a signed body may re-wrap it,
//! which changes that hash and not the normalised one.
//!
//! Here: `calls` (the three [`TonChain`] calls), `transport` (retries, breaker, the round trip,
//! metrics) and `answers` (what toncenter's answers say, no I/O).

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::header::HeaderValue;
use reqwest::Url;
use serde_json::Value;

use super::ton::{ChainError, ChainTransaction, SignedTransfer, TonChain, WalletState};
use starledger_outbound::resilience::{BreakerSettings, BreakerState, CircuitBreaker, RetryPolicy};
use starledger_outbound::{self as outbound, publish_breaker, Attempt};

mod answers;
mod calls;
mod transport;

/// toncenter's mainnet API v2.
pub const DEFAULT_BASE_URL: &str = "https://toncenter.com/api/v2";

/// toncenter's testnet API v2, the same interface.
pub const TESTNET_BASE_URL: &str = "https://testnet.toncenter.com/api/v2";

/// How long one attempt may take, connecting and reading the answer included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The provider label on logs and metrics.
const PROVIDER: &str = "toncenter";

/// A page of 50 transactions with their bags of cells is a few hundred kilobytes; reading
/// stops here so a broken proxy cannot make us buffer without bound.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// toncenter's messages are kept to this many characters in errors and logs.
const MAX_MESSAGE_CHARS: usize = 300;

/// Why a call was refused without being sent (`ChainError` has no variant of its own for it).
const BREAKER_OPEN: &str = "toncenter circuit breaker is open";

/// How to reach toncenter and how patient to be with it.
#[derive(Clone)]
pub struct ToncenterSettings {
    /// Up to and including `/api/v2`; tests point it at a local mock server.
    pub base_url: String,
    /// Sent as `X-API-Key`. Without one toncenter allows about one request per second.
    pub api_key: Option<String>,
    /// Per attempt, not per call.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub breaker: BreakerSettings,
    /// Transactions asked for per `getTransactions` page (toncenter allows up to 100).
    pub page_size: u32,
    /// Pages read back before `find_transaction` gives up without having reached `since`.
    pub max_pages: u32,
}

impl ToncenterSettings {
    /// Mainnet with the default timeout, retries, breaker and paging.
    pub fn new(api_key: Option<String>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            breaker: BreakerSettings::default(),
            page_size: 50,
            max_pages: 20,
        }
    }

    /// Testnet, otherwise as [`new`](Self::new).
    pub fn testnet(api_key: Option<String>) -> Self {
        Self {
            base_url: TESTNET_BASE_URL.to_owned(),
            ..Self::new(api_key)
        }
    }
}

impl fmt::Debug for ToncenterSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToncenterSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &redacted(self.api_key.is_some()))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("page_size", &self.page_size)
            .field("max_pages", &self.max_pages)
            .finish()
    }
}

fn redacted(present: bool) -> &'static str {
    if present {
        "<redacted>"
    } else {
        "<none>"
    }
}

/// Why a [`Toncenter`] could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("toncenter base URL {0:?} is not an absolute http(s) URL")]
    BaseUrl(String),
    #[error("toncenter API key is empty or cannot be sent as an HTTP header")]
    ApiKey,
    #[error("toncenter page size must be 1 to 100 and at least one page allowed")]
    Paging,
    #[error("could not build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The calls of the [`TonChain`] interface, as logs and metrics name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    WalletState,
    Broadcast,
    FindTransaction,
}

impl Call {
    fn as_str(self) -> &'static str {
        match self {
            Self::WalletState => "wallet_state",
            Self::Broadcast => "broadcast",
            Self::FindTransaction => "find_transaction",
        }
    }
}

/// One request to the API: a method (path after the base URL) with its parameters.
enum Request<'a> {
    Get(&'static str, Vec<(&'static str, String)>),
    Post(&'static str, &'a Value),
}

impl Request<'_> {
    fn method_name(&self) -> &'static str {
        match self {
            Self::Get(name, _) | Self::Post(name, _) => name,
        }
    }
}

/// What toncenter answered, once it answered.
#[derive(Debug, PartialEq)]
enum Answer {
    /// The `result` of an `ok: true` answer.
    Result(Value),
    /// A broadcast the wallet refused because its seqno has moved past the message's.
    SeqnoAlreadyUsed(String),
}

type Verdict = Attempt<Result<Answer, ChainError>>;

/// toncenter behind the [`TonChain`] interface. One per process, shared by reference, so its
/// breaker sees every call.
pub struct Toncenter {
    http: reqwest::Client,
    base_url: Url,
    api_key: Option<HeaderValue>,
    timeout: Duration,
    retry: RetryPolicy,
    breaker: CircuitBreaker,
    page_size: u32,
    max_pages: u32,
}

impl Toncenter {
    pub fn new(settings: ToncenterSettings) -> Result<Self, ClientError> {
        let base_url = outbound::endpoint(&settings.base_url, "/")
            .ok_or_else(|| ClientError::BaseUrl(settings.base_url.clone()))?;
        let api_key = match settings.api_key.as_deref() {
            None => None,
            Some(key) => {
                let mut value = HeaderValue::from_str(key)
                    .ok()
                    .filter(|_| !key.trim().is_empty())
                    .ok_or(ClientError::ApiKey)?;
                // Keeps the key out of any `Debug` output of a request.
                value.set_sensitive(true);
                Some(value)
            }
        };
        if !(1..=100).contains(&settings.page_size) || settings.max_pages == 0 {
            return Err(ClientError::Paging);
        }
        let http = outbound::http_client(settings.timeout, outbound::USER_AGENT)?;
        let breaker = CircuitBreaker::new(settings.breaker);
        publish_breaker(PROVIDER, &breaker);
        Ok(Self {
            http,
            base_url,
            api_key,
            timeout: settings.timeout,
            retry: settings.retry,
            breaker,
            page_size: settings.page_size,
            max_pages: settings.max_pages,
        })
    }

    /// The breaker's state, for health checks that want more than open/closed.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }
}

#[async_trait]
impl TonChain for Toncenter {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn wallet_state(&self, address: &str) -> Result<WalletState, ChainError> {
        let started = Instant::now();
        let result = self.state(address).await;
        self.observe(Call::WalletState, started, &result);
        result
    }

    async fn broadcast(&self, transfer: &SignedTransfer) -> Result<(), ChainError> {
        let started = Instant::now();
        let result = self.send_boc(transfer).await;
        self.observe(Call::Broadcast, started, &result);
        result
    }

    async fn find_transaction(
        &self,
        address: &str,
        message_hash: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<ChainTransaction>, ChainError> {
        let started = Instant::now();
        let result = self.find(address, message_hash, since).await;
        self.observe(Call::FindTransaction, started, &result);
        result
    }
}

impl fmt::Debug for Toncenter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Toncenter")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &redacted(self.api_key.is_some()))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .finish()
    }
}

#[cfg(test)]
mod tests;
