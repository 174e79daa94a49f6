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

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use super::body;
use super::ton::{
    ChainError, ChainTransaction, Nanotons, SignedTransfer, TonChain, TransferMessage, WalletState,
};
use super::wallet::{normalized_message_hash, payload_from_body, raw_form};
use crate::outbound::{self, describe, publish_breaker, read_limited, Attempt, Unanswered};
use crate::resilience::{BreakerSettings, BreakerState, CircuitBreaker, RetryPolicy};

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

    fn outbound<'a>(&'a self, call: Call, subject: &'a str) -> outbound::Call<'a> {
        outbound::Call {
            provider: PROVIDER,
            call: call.as_str(),
            subject,
            breaker: &self.breaker,
            retry: self.retry,
        }
    }

    /// Sends `request` until toncenter answers, the attempts run out or the breaker says stop.
    async fn send(
        &self,
        call: Call,
        subject: &str,
        request: &Request<'_>,
    ) -> Result<Answer, ChainError> {
        let answer = self
            .outbound(call, subject)
            .run(|| async {
                match self.exchange(request).await {
                    Ok((status, answer)) => judge(call, status, &answer),
                    Err(transient) => Attempt::Transient(transient),
                }
            })
            .await;
        match answer {
            Ok(answer) => answer,
            Err(Unanswered::CircuitOpen) => Err(ChainError::Unavailable(BREAKER_OPEN.into())),
            Err(Unanswered::Unavailable(problem)) => Err(ChainError::Unavailable(problem)),
        }
    }

    /// The `result` of an answer to a read.
    async fn read(
        &self,
        call: Call,
        subject: &str,
        request: &Request<'_>,
    ) -> Result<Value, ChainError> {
        match self.send(call, subject, request).await? {
            Answer::Result(result) => Ok(result),
            Answer::SeqnoAlreadyUsed(_) => Err(ChainError::BadResponse(
                "a read was answered as a broadcast".into(),
            )),
        }
    }

    /// One HTTP round trip. `Err` is a transient problem, described without secrets.
    async fn exchange(&self, request: &Request<'_>) -> Result<(StatusCode, Vec<u8>), String> {
        let url = self
            .base_url
            .join(request.method_name())
            .map_err(|_| "could not build the request URL".to_owned())?;
        let builder = match request {
            Request::Get(_, query) => self.http.request(Method::GET, url).query(query),
            Request::Post(_, body) => self.http.request(Method::POST, url).json(body),
        };
        let builder = match &self.api_key {
            Some(key) => builder.header("X-API-Key", key.clone()),
            None => builder,
        };
        let response = builder
            .send()
            .await
            .map_err(|e| describe(&e, self.timeout))?;
        read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| describe(&e, self.timeout))
    }

    async fn state(&self, address: &str) -> Result<WalletState, ChainError> {
        let request = Request::Get(
            "getWalletInformation",
            vec![("address", address.to_owned())],
        );
        let info = self.read(Call::WalletState, address, &request).await?;
        match read_wallet_information(&info)? {
            Known::State(state) => Ok(state),
            Known::ActiveWithoutSeqno(balance) => {
                // A wallet contract this toncenter does not recognise: ask the contract.
                let body = json!({"address": address, "method": "seqno", "stack": []});
                let request = Request::Post("runGetMethod", &body);
                let result = self.read(Call::WalletState, address, &request).await?;
                Ok(WalletState {
                    balance,
                    seqno: read_seqno(&result)?,
                    deployed: true,
                })
            }
        }
    }

    async fn send_boc(&self, transfer: &SignedTransfer) -> Result<(), ChainError> {
        let body = json!({ "boc": transfer.message });
        let request = Request::Post("sendBocReturnHash", &body);
        match self
            .send(Call::Broadcast, &transfer.message_hash, &request)
            .await?
        {
            Answer::SeqnoAlreadyUsed(why) => {
                info!(
                    provider = PROVIDER,
                    message_hash = %transfer.message_hash,
                    seqno = transfer.seqno,
                    why = %why,
                    "the wallet's seqno has moved past this message: it executed already, \
                     or another message used the seqno"
                );
                Ok(())
            }
            Answer::Result(result) => {
                let reported = result
                    .get("hash_norm")
                    .and_then(Value::as_str)
                    .and_then(hash_hex);
                if let Some(reported) = reported.filter(|h| *h != transfer.message_hash) {
                    // Accepted all the same; but lookups by our hash would never find it.
                    warn!(
                        provider = PROVIDER,
                        ours = %transfer.message_hash,
                        toncenter = %reported,
                        "toncenter's normalised hash of the broadcast differs from ours"
                    );
                }
                Ok(())
            }
        }
    }

    async fn find(
        &self,
        address: &str,
        message_hash: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<ChainTransaction>, ChainError> {
        let target = hash_hex(message_hash)
            .ok_or_else(|| ChainError::Refused(format!("{message_hash:?} is not a hash")))?;
        let since = since.timestamp();
        let mut cursor: Option<TransactionId> = None;
        for _ in 0..self.max_pages {
            let mut query = vec![
                ("address", address.to_owned()),
                ("limit", self.page_size.to_string()),
            ];
            if let Some(cursor) = &cursor {
                // The page starts with the cursor's transaction itself, skipped below.
                query.push(("lt", cursor.lt.to_string()));
                query.push(("hash", cursor.hash.clone()));
            }
            let request = Request::Get("getTransactions", query);
            let page = self.read(Call::FindTransaction, address, &request).await?;
            let page = page.as_array().ok_or_else(|| {
                ChainError::BadResponse("getTransactions did not answer a list".into())
            })?;
            let mut last = None;
            for raw in page {
                let transaction = Transaction::read(raw)?;
                if cursor.as_ref() == Some(&transaction.id) {
                    continue;
                }
                if let Some(found) = transaction.executed(&target)? {
                    return Ok(Some(found));
                }
                // Newest first: everything after this one is older still.
                if transaction.utime < since {
                    return Ok(None);
                }
                last = Some(transaction.id);
            }
            match last {
                // A short page is the start of the wallet's history.
                Some(last) if page.len() >= self.page_size as usize => cursor = Some(last),
                _ => return Ok(None),
            }
        }
        Err(ChainError::Unavailable(format!(
            "read {} pages of transactions without reaching {}",
            self.max_pages,
            DateTime::from_timestamp(since, 0)
                .map_or_else(|| since.to_string(), |t| t.to_rfc3339())
        )))
    }

    /// Counts, times and logs one call's final outcome.
    fn observe<T>(&self, call: Call, started: Instant, result: &Result<T, ChainError>) {
        let refused_unsent =
            matches!(result, Err(ChainError::Unavailable(why)) if why == BREAKER_OPEN);
        let outcome = match result {
            Ok(_) => "ok",
            Err(ChainError::Refused(_)) => "refused",
            Err(ChainError::Unavailable(_)) if refused_unsent => "circuit_open",
            Err(ChainError::Unavailable(_)) => "unavailable",
            Err(ChainError::BadResponse(_)) => "bad_response",
        };
        // A call the breaker refused sent nothing; timing it would drag the latency down.
        self.outbound(call, "")
            .record(outcome, started, !refused_unsent);
        match result {
            Ok(_) => debug!(
                provider = PROVIDER,
                call = call.as_str(),
                "toncenter call ok"
            ),
            Err(error) => warn!(
                provider = PROVIDER,
                call = call.as_str(),
                outcome,
                circuit_open = self.breaker.is_open(),
                %error,
                "toncenter call failed"
            ),
        }
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

// ---- reading answers (no I/O) --------------------------------------------------------------

/// Sorts an answer into result, refusal or transient failure.
fn judge(call: Call, status: StatusCode, answer: &[u8]) -> Verdict {
    let json: Option<Value> = serde_json::from_slice(answer).ok();
    let error = json
        .as_ref()
        .filter(|json| json.get("ok") != Some(&Value::Bool(true)))
        .and_then(|json| json.get("error"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        // A proxy's plain-text error page still says what the liteserver said.
        .or_else(|| {
            (!status.is_success() && json.is_none())
                .then(|| String::from_utf8_lossy(answer).into_owned())
        });
    if call == Call::Broadcast {
        if let Some(verdict) = error.as_deref().and_then(external_verdict) {
            return Attempt::Answered(verdict);
        }
    }
    let code = json
        .as_ref()
        .and_then(|json| json.get("code"))
        .and_then(Value::as_u64)
        .and_then(|code| u16::try_from(code).ok())
        .and_then(|code| StatusCode::from_u16(code).ok());
    let unwell =
        |status: StatusCode| status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
    let explain = |status: StatusCode| match error.as_deref().map(str::trim) {
        Some(error) if !error.is_empty() => format!(
            "HTTP {}: {}",
            status.as_u16(),
            outbound::shorten(error, MAX_MESSAGE_CHARS)
        ),
        _ => format!("HTTP {}", status.as_u16()),
    };
    if unwell(status) {
        return Attempt::Transient(explain(status));
    }
    if !status.is_success() {
        return Attempt::Answered(Err(ChainError::Refused(explain(status))));
    }
    let Some(json) = json else {
        return Attempt::Answered(Err(ChainError::BadResponse(
            "the answer is not JSON".into(),
        )));
    };
    match (json.get("ok").and_then(Value::as_bool), json.get("result")) {
        (Some(true), Some(result)) => Attempt::Answered(Ok(Answer::Result(result.clone()))),
        (Some(false), _) => match code {
            Some(code) if unwell(code) => Attempt::Transient(explain(code)),
            _ => Attempt::Answered(Err(ChainError::Refused(explain(code.unwrap_or(status))))),
        },
        _ => Attempt::Answered(Err(ChainError::BadResponse(
            "the answer has no ok and result".into(),
        ))),
    }
}

/// What the wallet contract's refusal of a broadcast message means, if the error is one.
fn external_verdict(error: &str) -> Option<Result<Answer, ChainError>> {
    let lower = error.to_ascii_lowercase();
    let rejected = lower.contains("external message was not accepted")
        || lower.contains("inbound external message rejected");
    let exit_code = exit_code(&lower);
    if !rejected && exit_code.is_none() {
        if lower.contains("cannot apply external message")
            && (lower.contains("deserialize") || lower.contains("failed to parse"))
        {
            return Some(Err(ChainError::Refused(format!(
                "the message is malformed: {}",
                outbound::shorten(error, MAX_MESSAGE_CHARS)
            ))));
        }
        return None;
    }
    let why = outbound::shorten(error, MAX_MESSAGE_CHARS);
    Some(match exit_code {
        Some(33 | 133) => Ok(Answer::SeqnoAlreadyUsed(why)),
        Some(36 | 136) => Err(ChainError::Refused(format!(
            "the message expired (valid_until passed) and can no longer execute; it may \
             have executed before: look it up. {why}"
        ))),
        _ => Err(ChainError::Refused(format!(
            "the wallet did not accept the message: {why}"
        ))),
    })
}

/// The contract's exit code in a liteserver error: `exitcode=33` (liteserver) or
/// `exit code 33` (newer API servers).
fn exit_code(lower: &str) -> Option<i32> {
    ["exitcode=", "exit code "].iter().find_map(|marker| {
        let start = lower.find(marker)? + marker.len();
        let digits: String = lower[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        digits.parse().ok()
    })
}

/// What `getWalletInformation` says, once read.
#[derive(Debug, PartialEq)]
enum Known {
    State(WalletState),
    /// Deployed, but toncenter did not recognise the contract and so gave no seqno.
    ActiveWithoutSeqno(Nanotons),
}

fn read_wallet_information(info: &Value) -> Result<Known, ChainError> {
    let balance = info
        .get("balance")
        .and_then(read_amount)
        .ok_or_else(|| ChainError::BadResponse("the wallet information has no balance".into()))?;
    let state = info.get("account_state").and_then(Value::as_str);
    match state {
        Some("uninitialized" | "uninit" | "nonexist") => Ok(Known::State(WalletState {
            balance,
            seqno: 0,
            deployed: false,
        })),
        Some("active") => match info.get("seqno") {
            Some(seqno) => {
                let seqno = seqno
                    .as_u64()
                    .and_then(|seqno| u32::try_from(seqno).ok())
                    .ok_or_else(|| ChainError::BadResponse(format!("seqno {seqno} is unusable")))?;
                Ok(Known::State(WalletState {
                    balance,
                    seqno,
                    deployed: true,
                }))
            }
            None => Ok(Known::ActiveWithoutSeqno(balance)),
        },
        // Storage fees unpaid: the wallet cannot send until someone tops it up.
        Some("frozen") => Err(ChainError::Refused(
            "the wallet account is frozen (storage fees unpaid); top it up".into(),
        )),
        other => Err(ChainError::BadResponse(format!(
            "unknown account state {other:?}"
        ))),
    }
}

/// The seqno from `runGetMethod seqno`: `{"exit_code":0,"stack":[["num","0x1b"]]}`.
fn read_seqno(result: &Value) -> Result<u32, ChainError> {
    let bad = |why: &str| ChainError::BadResponse(format!("runGetMethod seqno: {why}"));
    if result.get("exit_code").and_then(Value::as_i64) != Some(0) {
        return Err(bad("the get method failed"));
    }
    let entry = result
        .get("stack")
        .and_then(|stack| stack.get(0))
        .ok_or_else(|| bad("empty stack"))?;
    let number = match (entry.get(0).and_then(Value::as_str), entry.get(1)) {
        (Some("num"), Some(Value::String(number))) => number.as_str(),
        _ => return Err(bad("the stack does not start with a number")),
    };
    let parsed = match number.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => number.parse().ok(),
    };
    parsed.ok_or_else(|| bad("the number is not a seqno"))
}

/// An amount in nanotons, sent as a decimal string or a JSON number. toncenter reports a
/// negative balance (a debt) as 0, and so do we.
fn read_amount(value: &Value) -> Option<Nanotons> {
    match value {
        Value::String(text) if text.starts_with('-') => Some(Nanotons(0)),
        Value::String(text) => Nanotons::parse(text),
        Value::Number(number) if number.as_i64().is_some_and(|n| n < 0) => Some(Nanotons(0)),
        Value::Number(number) => number.as_u64().map(Nanotons),
        _ => None,
    }
}

/// A 32-byte hash as lowercase hex, from hex or base64 (either alphabet).
fn hash_hex(text: &str) -> Option<String> {
    let text = text.trim();
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(text.to_ascii_lowercase());
    }
    [STANDARD, URL_SAFE]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .filter(|bytes| bytes.len() == 32)
        .map(hex::encode)
}

/// Where a transaction sits in the account's history: what `getTransactions` pages by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TransactionId {
    lt: u64,
    /// As toncenter gave it (base64), to be handed back unchanged.
    hash: String,
}

/// A transaction from `getTransactions`, with what we need of it.
struct Transaction<'a> {
    id: TransactionId,
    utime: i64,
    raw: &'a Value,
}

impl<'a> Transaction<'a> {
    fn read(raw: &'a Value) -> Result<Self, ChainError> {
        let bad = |why: &str| ChainError::BadResponse(format!("a transaction {why}"));
        let id = raw
            .get("transaction_id")
            .ok_or_else(|| bad("has no transaction_id"))?;
        let lt = id
            .get("lt")
            .and_then(read_u64)
            .ok_or_else(|| bad("has no lt"))?;
        let hash = id
            .get("hash")
            .and_then(Value::as_str)
            .filter(|hash| hash_hex(hash).is_some())
            .ok_or_else(|| bad("has no hash"))?
            .to_owned();
        let utime = raw
            .get("utime")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("has no utime"))?;
        Ok(Self {
            id: TransactionId { lt, hash },
            utime,
            raw,
        })
    }

    /// This transaction, if it executed the external message whose normalised hash (hex) is
    /// `target`.
    fn executed(&self, target: &str) -> Result<Option<ChainTransaction>, ChainError> {
        let Some(in_msg) = self.raw.get("in_msg").filter(|m| !m.is_null()) else {
            return Ok(None);
        };
        // External messages have no source.
        if !address_text(in_msg.get("source")).is_empty() {
            return Ok(None);
        }
        let plain = in_msg
            .get("hash")
            .and_then(Value::as_str)
            .and_then(hash_hex);
        let matches = if plain.as_deref() == Some(target) {
            true
        } else {
            // Only we sign messages this wallet accepts, so an external message here that
            // cannot be read is ours in a form we do not understand: say so rather than
            // report "not found".
            let destination = address_text(in_msg.get("destination"));
            let body = raw_body(in_msg).ok_or_else(|| {
                ChainError::BadResponse("an incoming external message has no raw body".into())
            })?;
            let normalized = normalized_message_hash(destination, body).map_err(|why| {
                ChainError::BadResponse(format!("an incoming external message: {why}"))
            })?;
            normalized == target
        };
        if !matches {
            return Ok(None);
        }
        let out_msgs = match self.raw.get("out_msgs") {
            Some(Value::Array(out_msgs)) => out_msgs.as_slice(),
            None | Some(Value::Null) => &[],
            Some(_) => return Err(ChainError::BadResponse("out_msgs is not a list".into())),
        };
        let transfers = out_msgs
            .iter()
            .map(read_out_message)
            .collect::<Result<Vec<_>, _>>()?;
        let hash = hash_hex(&self.id.hash)
            .ok_or_else(|| ChainError::BadResponse("the transaction hash is unusable".into()))?;
        let at = DateTime::from_timestamp(self.utime, 0)
            .ok_or_else(|| ChainError::BadResponse("the transaction time is unusable".into()))?;
        Ok(Some(ChainTransaction {
            hash,
            lt: self.id.lt,
            at,
            message_hash: target.to_owned(),
            transfers,
        }))
    }
}

/// An outgoing message as a transfer: destination in raw form, amount, and body (`None` when
/// empty or not given as raw data).
fn read_out_message(message: &Value) -> Result<TransferMessage, ChainError> {
    let destination = address_text(message.get("destination"));
    let destination = raw_form(destination).ok_or_else(|| {
        ChainError::BadResponse(format!(
            "an outgoing message goes to {}, not an address",
            outbound::shorten(destination, 80)
        ))
    })?;
    let amount = message
        .get("value")
        .and_then(read_amount)
        .ok_or_else(|| ChainError::BadResponse("an outgoing message has no value".into()))?;
    let unusable =
        |why: String| ChainError::BadResponse(format!("an outgoing message's body: {why}"));
    let payload = match (raw_body(message), text_body(message)) {
        (Some(body), _) => payload_from_body(body).map_err(unusable)?,
        // A comment shown as its text: the same body, written the way it was sent.
        (None, Some(text)) => {
            let text = text.map_err(unusable)?;
            Some(body::comment_payload(&text).map_err(unusable)?)
        }
        (None, None) => None,
    };
    Ok(TransferMessage {
        destination,
        amount,
        payload,
    })
}

/// An address as toncenter writes it: a string (`getTransactions`), or an object with
/// `account_address` (`getTransactionsStd`); empty for none.
fn address_text(value: Option<&Value>) -> &str {
    match value {
        Some(Value::String(text)) => text,
        Some(Value::Object(object)) => object
            .get("account_address")
            .and_then(Value::as_str)
            .unwrap_or(""),
        _ => "",
    }
}

/// The body of a message given as raw data (`msg.dataRaw`), base64 bag of cells.
fn raw_body(message: &Value) -> Option<&str> {
    let data = message.get("msg_data")?;
    if data.get("@type").and_then(Value::as_str) != Some("msg.dataRaw") {
        return None;
    }
    data.get("body")
        .and_then(Value::as_str)
        .filter(|body| !body.is_empty())
}

/// The body of a message toncenter shows as a text comment (`msg.dataText`, the text
/// base64-encoded); `Some(Err)` when that text cannot be read.
fn text_body(message: &Value) -> Option<Result<String, String>> {
    let data = message.get("msg_data")?;
    if data.get("@type").and_then(Value::as_str) != Some("msg.dataText") {
        return None;
    }
    let text = data.get("text").and_then(Value::as_str).unwrap_or("");
    Some(
        STANDARD
            .decode(text)
            .map_err(|_| "the comment is not base64".to_owned())
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| "the comment is not UTF-8".to_owned())
            }),
    )
}

fn read_u64(value: &Value) -> Option<u64> {
    match value {
        Value::String(text) => text.parse().ok(),
        Value::Number(number) => number.as_u64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
