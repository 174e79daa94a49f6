//! What Fragment's web API answers and what it means: sorting an HTTP answer into a
//! result, a typed refusal, a stale API hash or a transient failure, finding the API hash in
//! the buy page, and reading orders and payments into our types, TON amounts exactly.
//!
//! No I/O here: [`super::client`] sends and receives, this decides. Fragment's answers as the
//! open-source clients recorded them (pyfragment, afragment, fragment-api-ts and others):
//! - errors come as HTTP 200 with `{"error":"…"}`: `Bad request` for an unknown or stale API
//!   hash, `Access denied` without a session, `No Telegram users found.` and `… not assigned
//!   to a user …` for recipients, `Price was changed` while the TON price moves, `Invalid
//!   method` for a method it does not know;
//! - flags: `need_ton` (no TON wallet connected to the session), `need_verify` (KYC due);
//! - `initBuyStarsRequest` gives `req_id` and `amount` in TON (a string such as `"0.2345"`,
//!   sometimes `"0.2345 TON"` or with thousands separators, or a JSON number);
//! - `getBuyStarsLink` gives a TON Connect transaction: `validUntil` (unix seconds) and
//!   `messages` of `address`, `amount` (nanotons), `payload` (base64 bag of cells).

use std::fmt;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, LOCATION};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use uuid::Uuid;

use super::market::{MarketError, MarketOrder, PaymentRequest};
use super::ton::{Nanotons, TransferMessage, WalletAccount};
use crate::outbound::shorten;

/// Fragment's messages are kept to this many characters in errors and logs.
pub(super) const MAX_MESSAGE_CHARS: usize = 200;

/// TON Connect's id of the TON mainnet, which Fragment expects in `account.chain`.
const MAINNET_CHAIN: &str = "-239";

/// How long a payment stays valid when Fragment's answer names no `validUntil`. Short on
/// purpose: a wallet message that expires unexecuted is harmless, one that executes late
/// pays an order Fragment may have dropped.
const DEFAULT_PAYMENT_WINDOW: chrono::Duration = chrono::Duration::minutes(5);

/// The API hash scraped from the page. `Debug` hides it: it authorises API calls.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct ApiHash(pub(super) String);

impl fmt::Debug for ApiHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiHash(<redacted>)")
    }
}

// ---------------------------------------------------------------------------------------
// Judging answers
// ---------------------------------------------------------------------------------------

/// Why a call failed, before it becomes a [`MarketError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    Market(MarketError),
    /// The breaker refused the first attempt: nothing was sent.
    CircuitOpen,
    /// Fragment does not know the method (it changed its API).
    UnknownMethod(String),
}

impl Failure {
    pub(super) fn into_market(self) -> MarketError {
        match self {
            Self::Market(error) => error,
            Self::CircuitOpen => MarketError::Unavailable("circuit breaker is open".into()),
            Self::UnknownMethod(why) => MarketError::BadResponse(why),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Market(error) => error.fmt(f),
            Self::CircuitOpen => f.write_str("circuit breaker is open"),
            Self::UnknownMethod(why) => write!(f, "Fragment does not know the method: {why}"),
        }
    }
}

/// An answer without an error: its JSON, and its bytes for what must be read exactly.
#[derive(Debug, PartialEq)]
pub(super) struct Answer {
    pub(super) json: Value,
    pub(super) body: Vec<u8>,
}

impl Answer {
    pub(super) fn get(&self, field: &str) -> Option<&Value> {
        self.json.get(field)
    }
}

/// What one HTTP answer means.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    /// Fragment is up and answered this; do not retry.
    Answered(Result<Answer, Failure>),
    /// Fragment does not accept the API hash any more: scrape it again.
    StaleHash(String),
    /// Fragment (or Cloudflare in front of it) is unwell: retry, count against the breaker.
    Transient(String),
}

impl Verdict {
    /// "Not found" means the recipient only in a call about a recipient; elsewhere (an
    /// order Fragment no longer knows, say) it is a plain refusal.
    pub(super) fn about(self, recipient_call: bool) -> Self {
        match self {
            Self::Answered(Err(Failure::Market(MarketError::RecipientNotFound(why))))
                if !recipient_call =>
            {
                Self::Answered(Err(Failure::Market(MarketError::Refused(why))))
            }
            other => other,
        }
    }
}

/// Sorts an API answer into result, refusal, stale hash or transient failure.
pub(super) fn judge_api(status: StatusCode, headers: &HeaderMap, body: Vec<u8>) -> Verdict {
    if let Some(transient) = transient_problem(status, headers, &body) {
        return Verdict::Transient(transient);
    }
    if let Some(session) = rejected_session(status, headers) {
        return Verdict::Answered(Err(Failure::Market(MarketError::SessionExpired(session))));
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        if looks_like_login_page(&body) {
            return session_expired("the API answered with Fragment's login page");
        }
        return Verdict::Answered(Err(Failure::Market(MarketError::BadResponse(
            if status.is_success() {
                "the answer is not JSON".into()
            } else {
                format!("HTTP {}", status.as_u16())
            },
        ))));
    };
    let Value::Object(fields) = &json else {
        return Verdict::Answered(Err(Failure::Market(MarketError::BadResponse(
            "the answer is not a JSON object".into(),
        ))));
    };
    if let Some(error) = fields.get("error").and_then(error_text) {
        return judge_error(&error);
    }
    if !status.is_success() {
        return Verdict::Answered(Err(Failure::Market(MarketError::BadResponse(format!(
            "HTTP {}",
            status.as_u16()
        )))));
    }
    // Both say the account cannot buy until an operator acts: the TON wallet is not
    // connected to the session (its stel_ton_token is gone), or KYC is due.
    if truthy(fields.get("need_ton")) {
        return session_expired(
            "Fragment sees no TON wallet connected to the session (need_ton): renew stel_ton_token",
        );
    }
    if truthy(fields.get("need_verify")) {
        return Verdict::Answered(Err(Failure::Market(MarketError::KycRequired(
            "Fragment wants the account verified (need_verify) at fragment.com/my/profile".into(),
        ))));
    }
    Verdict::Answered(Ok(Answer { json, body }))
}

/// Sorts the buy page into the API hash, a rejected session or a transient failure.
pub(super) fn judge_page(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ApiHash, Verdict> {
    if let Some(transient) = transient_problem(status, headers, body) {
        return Err(Verdict::Transient(transient));
    }
    if let Some(session) = rejected_session(status, headers) {
        return Err(Verdict::Answered(Err(Failure::Market(
            MarketError::SessionExpired(session),
        ))));
    }
    if !status.is_success() {
        return Err(Verdict::Answered(Err(Failure::Market(
            MarketError::BadResponse(format!("the buy page answered HTTP {}", status.as_u16())),
        ))));
    }
    if let Some(hash) = find_api_hash(&String::from_utf8_lossy(body)) {
        return Ok(ApiHash(hash));
    }
    if looks_like_login_page(body) {
        return Err(session_expired(
            "the buy page shows Fragment's login form instead of the API",
        ));
    }
    Err(Verdict::Answered(Err(Failure::Market(
        MarketError::BadResponse("the buy page carries no API hash".into()),
    ))))
}

/// 5xx, 429 and Cloudflare's challenge pages (which come as 403 or 503): try again later.
fn transient_problem(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let mitigated = headers
        .get("cf-mitigated")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("challenge"));
    if mitigated || looks_like_cloudflare_challenge(body) {
        return Some(format!("Cloudflare challenge (HTTP {})", status.as_u16()));
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Some(format!("HTTP {}", status.as_u16()));
    }
    None
}

/// 401/403 and redirects: Fragment turned the session away. Names where a redirect pointed
/// (path only: a query could carry anything).
fn rejected_session(status: StatusCode, headers: &HeaderMap) -> Option<String> {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Some(format!("HTTP {}: renew FRAGMENT_COOKIES", status.as_u16()));
    }
    if status.is_redirection() {
        let target = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|location| location.split(['?', '#']).next().unwrap_or_default())
            .map(|path| shorten(path, 80))
            .unwrap_or_else(|| "nowhere".into());
        return Some(format!(
            "Fragment redirected the request to {target}: renew FRAGMENT_COOKIES"
        ));
    }
    None
}

/// Sorts Fragment's `error` text. Its texts as clients have seen them: `Bad request` (stale
/// hash), `Access denied` (no session), `No Telegram users found.`, `… not assigned to a
/// user …`, `Price was changed`, `Invalid method`; KYC is worded with "verif"/"KYC".
fn judge_error(error: &str) -> Verdict {
    let text = error.to_lowercase();
    let short = shorten(error, MAX_MESSAGE_CHARS);
    let answered = |error: MarketError| Verdict::Answered(Err(Failure::Market(error)));
    let has = |needles: &[&str]| needles.iter().any(|needle| text.contains(needle));
    if text.trim() == "bad request" || has(&["hash"]) {
        return Verdict::StaleHash(short);
    }
    if has(&[
        "access denied",
        "unauthorized",
        "not authorized",
        "log in",
        "login",
        "session",
    ]) {
        return answered(MarketError::SessionExpired(short));
    }
    if has(&["invalid method", "unknown method", "method not found"]) {
        return Verdict::Answered(Err(Failure::UnknownMethod(short)));
    }
    if has(&["too many requests", "flood", "try again later"]) {
        return Verdict::Transient(short);
    }
    if has(&["kyc", "verif", "identity"]) {
        return answered(MarketError::KycRequired(short));
    }
    if text.contains("price") && text.contains("chang") {
        return answered(MarketError::PriceChanged(short));
    }
    if has(&[
        "no telegram users",
        "user not found",
        "not found",
        "assigned to a user",
        "invalid username",
    ]) {
        return answered(MarketError::RecipientNotFound(short));
    }
    answered(MarketError::Refused(short))
}

fn session_expired(why: &str) -> Verdict {
    Verdict::Answered(Err(Failure::Market(MarketError::SessionExpired(
        why.to_owned(),
    ))))
}

/// Fragment's `error` is a string; anything else non-empty is shown as JSON.
fn error_text(error: &Value) -> Option<String> {
    match error {
        Value::Null | Value::Bool(false) => None,
        Value::String(text) if text.trim().is_empty() => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_u64() != Some(0),
        Some(Value::String(s)) => !s.is_empty() && s != "0" && s != "false",
        Some(_) => true,
    }
}

/// An id Fragment gives as a string or an integer, as text.
pub(super) fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// The hash in the page's `/api?hash=<hex>` (JSON-escaped as `\/api?hash=` in the config).
pub(super) fn find_api_hash(page: &str) -> Option<String> {
    const MARK: &str = "/api?hash=";
    page.match_indices(MARK).find_map(|(at, _)| {
        let hash: String = page[at + MARK.len()..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        (hash.len() >= 8).then_some(hash)
    })
}

/// Cloudflare's "Just a moment…" interstitial and its block pages.
fn looks_like_cloudflare_challenge(body: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]).to_lowercase();
    [
        "cf-chl",
        "challenge-platform",
        "just a moment...",
        "attention required! | cloudflare",
    ]
    .iter()
    .any(|marker| head.contains(marker))
}

/// A Fragment page offering to log in (its login button, the Telegram login widget).
fn looks_like_login_page(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_lowercase();
    text.trim_start().starts_with('<')
        && ["login-link", "href=\"/login", "telegram-login", ">log in<"]
            .iter()
            .any(|marker| text.contains(marker))
}

// ---------------------------------------------------------------------------------------
// Reading answers into our types
// ---------------------------------------------------------------------------------------

/// initBuyStarsRequest's answer. `amount` stays raw JSON so a number is read from its text,
/// never through a float.
#[derive(Deserialize)]
struct InitAnswer {
    req_id: Option<Value>,
    amount: Option<Box<RawValue>>,
}

pub(super) fn read_order(body: &[u8]) -> Result<MarketOrder, MarketError> {
    // Read from the bytes: `Value` has already turned a JSON number into a float.
    let init: InitAnswer = serde_json::from_slice(body)
        .map_err(|e| MarketError::BadResponse(format!("unreadable order: {e}")))?;
    let request_id = init
        .req_id
        .as_ref()
        .and_then(id_text)
        .ok_or_else(|| MarketError::BadResponse("the order has no req_id".into()))?;
    let amount = init
        .amount
        .ok_or_else(|| MarketError::BadResponse("the order has no amount".into()))?;
    let cost = parse_ton_amount(&amount).map_err(MarketError::BadResponse)?;
    Ok(MarketOrder { request_id, cost })
}

/// A TON amount as Fragment gives it: a JSON string (`"0.2345"`, `"0.2345 TON"`,
/// `"1,000.5"`) or a JSON number (`0.2345`), read exactly from its text. More than nine
/// decimals, a negative or zero amount, or another currency are refused.
fn parse_ton_amount(raw: &RawValue) -> Result<Nanotons, String> {
    let literal = raw.get().trim();
    let text = if literal.starts_with('"') {
        serde_json::from_str::<String>(literal).map_err(|_| "the amount is not text".to_owned())?
    } else {
        literal.to_owned()
    };
    let shown = shorten(&text, 40);
    let trimmed = text.trim();
    let number = match trimmed.get(trimmed.len().saturating_sub(3)..) {
        Some(unit) if unit.eq_ignore_ascii_case("ton") => trimmed[..trimmed.len() - 3].trim_end(),
        _ => trimmed,
    };
    let number = without_thousands_separators(number)
        .ok_or_else(|| format!("the amount {shown:?} is not a TON amount"))?;
    let ton = if number.contains(['e', 'E']) {
        Decimal::from_scientific(&number)
    } else {
        Decimal::from_str_exact(&number)
    }
    .map_err(|_| format!("the amount {shown:?} is not a TON amount"))?;
    if ton <= Decimal::ZERO {
        return Err(format!("the amount {shown:?} is not positive"));
    }
    Nanotons::from_ton(ton).ok_or_else(|| format!("the amount {shown:?} has more than 9 decimals"))
}

/// `1,234,567.5` → `1234567.5`; text without commas as it is; commas anywhere but between
/// groups of three integer digits (a decimal comma, say) → `None`.
fn without_thousands_separators(number: &str) -> Option<String> {
    if !number.contains(',') {
        return Some(number.to_owned());
    }
    let (integer, fraction) = match number.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (number, None),
    };
    let mut groups = integer.split(',');
    let first = groups.next()?;
    let digits = |g: &str| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit());
    if !digits(first) || first.len() > 3 {
        return None;
    }
    let mut joined = first.to_owned();
    for group in groups {
        if group.len() != 3 || !digits(group) {
            return None;
        }
        joined.push_str(group);
    }
    if let Some(fraction) = fraction {
        joined.push('.');
        joined.push_str(fraction);
    }
    Some(joined)
}

pub(super) fn read_payment(
    answer: &Value,
    now: DateTime<Utc>,
) -> Result<PaymentRequest, MarketError> {
    let bad = |why: &str| MarketError::BadResponse(why.to_owned());
    let transaction = answer
        .get("transaction")
        .filter(|t| t.is_object())
        .ok_or_else(|| bad("the answer has no transaction"))?;
    let messages = transaction
        .get("messages")
        .and_then(Value::as_array)
        .filter(|messages| !messages.is_empty())
        .ok_or_else(|| bad("the transaction has no messages"))?
        .iter()
        .map(read_message)
        .collect::<Result<Vec<_>, _>>()?;
    let valid_until = match transaction.get("validUntil") {
        None | Some(Value::Null) => now + DEFAULT_PAYMENT_WINDOW,
        Some(value) => {
            let seconds = match value {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            seconds
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .ok_or_else(|| bad("the transaction's validUntil is not a time"))?
        }
    };
    Ok(PaymentRequest {
        messages,
        valid_until,
    })
}

fn read_message(message: &Value) -> Result<TransferMessage, MarketError> {
    let bad = |why: &str| MarketError::BadResponse(why.to_owned());
    let destination = message
        .get("address")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("a message has no address"))?
        .to_owned();
    // Nanotons, as TON Connect sends them: a decimal string, or a JSON integer (which
    // serde_json keeps exact); a fraction is refused, never rounded.
    let amount = match message.get("amount") {
        Some(Value::String(text)) => Nanotons::parse(text.trim()),
        Some(Value::Number(n)) => n.as_u64().map(Nanotons),
        _ => None,
    }
    .filter(|amount| amount.0 > 0)
    .ok_or_else(|| bad("a message's amount is not a positive count of nanotons"))?;
    let payload = match message.get("payload") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(p.trim().to_owned()),
        Some(_) => return Err(bad("a message's payload is not base64 text")),
    };
    // The wallet sends plain transfers; a message that needs a contract deployed with it
    // cannot be paid as asked.
    if message.get("stateInit").is_some_and(|s| !s.is_null()) {
        return Err(bad(
            "a message asks for a stateInit the wallet does not attach",
        ));
    }
    Ok(TransferMessage {
        destination,
        amount,
        payload,
    })
}

/// The `account` parameter: the shop wallet as a TON Connect wallet reports itself.
pub(super) fn account_json(wallet: &WalletAccount) -> String {
    json!({
        "address": wallet.address,
        "chain": MAINNET_CHAIN,
        "walletStateInit": wallet.state_init,
        "publicKey": wallet.public_key,
    })
    .to_string()
}

/// The `device` parameter: a TON Connect device descriptor like a wallet app sends. Four
/// messages at most, what a v4r2 wallet can sign in one transfer, so Fragment never asks for
/// more than the shop wallet can send.
pub(super) fn device_json() -> String {
    json!({
        "platform": "windows",
        "appName": "Tonkeeper",
        "appVersion": "4.0.0",
        "maxProtocolVersion": 2,
        "features": [
            "SendTransaction",
            {"name": "SendTransaction", "maxMessages": 4},
        ],
    })
    .to_string()
}

/// The confirmation Fragment asks for when a payment is sent: `getBuyStarsLink`'s
/// `confirm_method` (a method of its API) and `confirm_params` (the form parameters that name
/// the order), followed as given, the way the public clients do; `confirmReq(id)` when the
/// answer names none. Our own `account`, `device` and `boc` are added to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Confirmation {
    pub(super) method: String,
    pub(super) params: Vec<(String, String)>,
}

/// The confirmation method when Fragment names none.
const DEFAULT_CONFIRM_METHOD: &str = "confirmReq";

/// Parameters we set ourselves, never taken from Fragment's `confirm_params`.
const OWN_CONFIRM_PARAMS: [&str; 4] = ["method", "account", "device", "boc"];

pub(super) fn read_confirmation(
    answer: &Value,
    request_id: &str,
) -> Result<Confirmation, MarketError> {
    let bad = |why: String| MarketError::BadResponse(why);
    let is_name = |text: &str, first_letter: bool| {
        (1..=64).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && (!first_letter || text.as_bytes()[0].is_ascii_alphabetic())
    };
    let method = match answer.get("confirm_method") {
        None | Some(Value::Null) => DEFAULT_CONFIRM_METHOD.to_owned(),
        Some(Value::String(method)) if is_name(method, true) => method.clone(),
        Some(other) => {
            return Err(bad(format!(
                "the payment link names {} as its confirmation method",
                shorten(&other.to_string(), 40)
            )))
        }
    };
    let params = match answer.get("confirm_params") {
        None | Some(Value::Null) => vec![("id".to_owned(), request_id.to_owned())],
        Some(Value::Object(fields)) if fields.len() <= 16 => {
            let mut params = Vec::with_capacity(fields.len());
            for (name, value) in fields {
                if !is_name(name, false) {
                    return Err(bad("a confirmation parameter has an unusable name".into()));
                }
                if OWN_CONFIRM_PARAMS.contains(&name.as_str()) {
                    continue;
                }
                let text = match value {
                    Value::String(text) if text.len() <= 1_024 => text.clone(),
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    _ => {
                        return Err(bad(format!(
                            "the confirmation parameter {name} is not a short value"
                        )))
                    }
                };
                params.push((name.clone(), text));
            }
            params
        }
        Some(_) => {
            return Err(bad(
                "the payment link's confirm_params is not an object".into()
            ))
        }
    };
    Ok(Confirmation { method, params })
}

/// Where the buy page's state says an order is (`updateStarsBuyState`): its `mode`, and
/// whether the page needs to update again. `done` without `need_update` is delivered, as the
/// public clients read it.
pub(super) fn read_buy_state(answer: &Value) -> Option<(String, bool)> {
    let mode = answer.get("mode").and_then(Value::as_str)?;
    let need_update = answer
        .get("need_update")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Some((shorten(mode, 32), mode == "done" && !need_update))
}

/// The `dh` nonce the buy page sends with its state updates: a random nine- or ten-digit
/// number.
pub(super) fn state_nonce() -> String {
    // 31 random bits of a v4 UUID, kept in 100,000,000..=2,147,483,647 like the page's.
    let random = (Uuid::new_v4().as_u128() as u32) & 0x7FFF_FFFF;
    (100_000_000 + random % (2_147_483_647 - 100_000_000 + 1)).to_string()
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn judged(status: u16, body: &str) -> Verdict {
        let status = StatusCode::from_u16(status).unwrap();
        judge_api(status, &HeaderMap::new(), body.as_bytes().to_vec())
    }

    fn market_error(verdict: Verdict) -> MarketError {
        match verdict {
            Verdict::Answered(Err(Failure::Market(error))) => error,
            other => panic!("expected a market error, got {other:?}"),
        }
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn the_api_hash_is_found_in_the_escaped_page_config() {
        let page = r#"<script>Aj.init({"version":1,"apiUrl":"\/api?hash=0a1b2c3d4e5f6789","uh":"x"});</script>"#;
        assert_eq!(find_api_hash(page).as_deref(), Some("0a1b2c3d4e5f6789"));
        let plain = r#"<a href="/api?hash=zz">x</a> fetch("/api?hash=deadbeefcafe")"#;
        assert_eq!(find_api_hash(plain).as_deref(), Some("deadbeefcafe"));
        assert_eq!(find_api_hash("<html>no api here</html>"), None);
        assert_eq!(
            find_api_hash("/api?hash=abc"),
            None,
            "too short to be a hash"
        );
    }

    #[test]
    fn the_page_gives_a_hash_a_rejected_session_or_a_transient_failure() {
        let ok = StatusCode::OK;
        let none = HeaderMap::new();
        let page =
            br#"<html><script>Aj.init({"apiUrl":"\/api?hash=0123456789abcdef"})</script></html>"#;
        assert_eq!(
            judge_page(ok, &none, page),
            Ok(ApiHash("0123456789abcdef".into()))
        );
        let login = br#"<html><a class="btn login-link" href="/login">Log in</a></html>"#;
        assert!(matches!(
            judge_page(ok, &none, login),
            Err(Verdict::Answered(Err(Failure::Market(
                MarketError::SessionExpired(_)
            ))))
        ));
        assert!(matches!(
            judge_page(ok, &none, b"<html>maintenance</html>"),
            Err(Verdict::Answered(Err(Failure::Market(
                MarketError::BadResponse(_)
            ))))
        ));
        let challenge = b"<html><title>Just a moment...</title><script src=\"/cdn-cgi/challenge-platform/x\"></script></html>";
        assert!(matches!(
            judge_page(StatusCode::FORBIDDEN, &none, challenge),
            Err(Verdict::Transient(_))
        ));
        assert!(matches!(
            judge_page(StatusCode::BAD_GATEWAY, &none, b""),
            Err(Verdict::Transient(_))
        ));
        let mut redirect = HeaderMap::new();
        redirect.insert(LOCATION, HeaderValue::from_static("/login?return=secret"));
        let Err(verdict) = judge_page(StatusCode::FOUND, &redirect, b"") else {
            panic!("a redirect is no page");
        };
        let error = market_error(verdict);
        assert!(matches!(error, MarketError::SessionExpired(_)));
        assert!(error.to_string().contains("/login") && !error.to_string().contains("secret"));
    }

    #[test]
    fn server_errors_rate_limits_and_challenges_are_transient() {
        for status in [500, 502, 503, 504, 429] {
            assert_eq!(
                judged(status, "{}"),
                Verdict::Transient(format!("HTTP {status}"))
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert("cf-mitigated", HeaderValue::from_static("challenge"));
        assert!(matches!(
            judge_api(StatusCode::FORBIDDEN, &headers, b"<html></html>".to_vec()),
            Verdict::Transient(_)
        ));
        assert!(matches!(
            judged(200, r#"{"error":"Too many requests, try again later"}"#),
            Verdict::Transient(_)
        ));
    }

    #[test]
    fn fragments_error_texts_become_typed_errors() {
        let cases: &[(&str, &str)] = &[
            ("No Telegram users found.", "recipient_not_found"),
            (
                "This username is not assigned to a user.",
                "recipient_not_found",
            ),
            ("Access denied", "session_expired"),
            ("Please log in to continue", "session_expired"),
            ("Price was changed, please try again", "price_changed"),
            ("Please pass KYC verification to continue", "kyc_required"),
            ("Not enough stars left", "refused"),
        ];
        for (text, code) in cases {
            let body = json!({ "error": text }).to_string();
            assert_eq!(market_error(judged(200, &body)).code(), *code, "{text}");
        }
        assert_eq!(
            judged(200, r#"{"error":"Bad request"}"#),
            Verdict::StaleHash("Bad request".into())
        );
        assert!(matches!(
            judged(200, r#"{"error":"Invalid method"}"#),
            Verdict::Answered(Err(Failure::UnknownMethod(_)))
        ));
    }

    #[test]
    fn not_found_means_the_recipient_only_where_one_is_looked_up() {
        let body = r#"{"error":"Request not found"}"#;
        assert_eq!(
            market_error(judged(200, body).about(true)).code(),
            "recipient_not_found"
        );
        assert_eq!(
            market_error(judged(200, body).about(false)).code(),
            "refused"
        );
    }

    #[test]
    fn flags_and_statuses_that_stop_all_orders_are_not_refusals() {
        for answer in [
            judged(200, r#"{"ok":true,"need_ton":true}"#),
            judged(401, "{}"),
            judged(403, "<html>Forbidden</html>"),
            judged(
                200,
                r#"<!DOCTYPE html><html><a class="login-link" href="/login">Log in</a></html>"#,
            ),
        ] {
            assert!(
                matches!(market_error(answer), MarketError::SessionExpired(_)),
                "session"
            );
        }
        assert!(matches!(
            market_error(judged(200, r#"{"ok":true,"need_verify":true}"#)),
            MarketError::KycRequired(_)
        ));
        assert!(matches!(
            judged(200, r#"{"ok":true,"need_verify":false,"need_ton":0}"#),
            Verdict::Answered(Ok(_))
        ));
    }

    #[test]
    fn unreadable_answers_are_bad_responses() {
        for (status, body) in [
            (200, "<html>hello</html>"),
            (200, "[1,2]"),
            (404, "nope"),
            (400, "{}"),
        ] {
            assert!(
                matches!(
                    market_error(judged(status, body)),
                    MarketError::BadResponse(_)
                ),
                "{status} {body}"
            );
        }
    }

    #[test]
    fn ton_amounts_are_read_exactly_from_strings_and_numbers() {
        let cases: &[(&str, u64)] = &[
            (r#""0.2345""#, 234_500_000),
            ("0.2345", 234_500_000),
            ("1.123456789", 1_123_456_789),
            (r#""12.5 TON""#, 12_500_000_000),
            (r#""1,234.000000001""#, 1_234_000_000_001),
            ("0.100000000000000000", 100_000_000),
            ("2", 2_000_000_000),
            ("5e-3", 5_000_000),
            ("18446744073.709551615", u64::MAX),
        ];
        for (json, nano) in cases {
            assert_eq!(parse_ton_amount(&raw(json)), Ok(Nanotons(*nano)), "{json}");
        }
        for json in [
            "0.1234567891",
            r#""0,2345""#,
            r#""1.95 USDT""#,
            "-1",
            "0",
            "null",
            r#""""#,
            "99999999999999999999999999999999",
            "18446744073.709551616",
        ] {
            assert!(parse_ton_amount(&raw(json)).is_err(), "{json}");
        }
    }

    #[test]
    fn an_order_needs_a_request_id_and_a_price() {
        let order = read_order(br#"{"req_id":"a1B2c3","amount":0.2345,"ok":true}"#).unwrap();
        assert_eq!(order.request_id, "a1B2c3");
        assert_eq!(order.cost, Nanotons(234_500_000));
        assert_eq!(
            read_order(br#"{"req_id":77,"amount":"1"}"#)
                .unwrap()
                .request_id,
            "77"
        );
        assert!(read_order(br#"{"amount":"1"}"#).is_err());
        assert!(read_order(br#"{"req_id":"x"}"#).is_err());
    }

    #[test]
    fn a_payment_is_read_into_exact_transfers() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let answer = json!({"ok": true, "transaction": {"validUntil": 1_700_000_300, "messages": [
            {"address": "EQBAjaOyi2wGWlk-EDkSabqqnF-MrrwMadnwqrurKpkla9nE", "amount": "234500000", "payload": "te6ccgEBAQEAAgAAAA=="},
            {"address": "0:ab", "amount": 5}
        ]}});
        let payment = read_payment(&answer, now).unwrap();
        assert_eq!(payment.valid_until.timestamp(), 1_700_000_300);
        assert_eq!(payment.messages.len(), 2);
        assert_eq!(payment.messages[0].amount, Nanotons(234_500_000));
        assert_eq!(
            payment.messages[0].payload.as_deref(),
            Some("te6ccgEBAQEAAgAAAA==")
        );
        assert_eq!(payment.messages[1].amount, Nanotons(5));
        assert_eq!(payment.messages[1].payload, None);

        let without_deadline =
            json!({"transaction": {"messages": [{"address": "0:ab", "amount": "1"}]}});
        assert_eq!(
            read_payment(&without_deadline, now).unwrap().valid_until,
            now + DEFAULT_PAYMENT_WINDOW
        );
        for bad in [
            json!({}),
            json!({"transaction": {"messages": []}}),
            json!({"transaction": {"messages": [{"address": "0:ab", "amount": 0.5}]}}),
            json!({"transaction": {"messages": [{"address": "0:ab", "amount": "0.5"}]}}),
            json!({"transaction": {"messages": [{"amount": "1"}]}}),
            json!({"transaction": {"messages": [{"address": "0:ab", "amount": "1", "stateInit": "te6"}]}}),
            json!({"transaction": {"validUntil": "soon", "messages": [{"address": "0:ab", "amount": "1"}]}}),
        ] {
            assert!(read_payment(&bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_wallet_is_described_as_ton_connect_does() {
        let wallet = WalletAccount {
            address: "0:abc".into(),
            public_key: "ff".repeat(32),
            state_init: "te6cc".into(),
        };
        let account: Value = serde_json::from_str(&account_json(&wallet)).unwrap();
        assert_eq!(account["address"], "0:abc");
        assert_eq!(account["chain"], "-239");
        assert_eq!(account["walletStateInit"], "te6cc");
        assert_eq!(account["publicKey"], "ff".repeat(32));
        let device: Value = serde_json::from_str(&device_json()).unwrap();
        assert_eq!(device["maxProtocolVersion"], 2);
        assert_eq!(device["features"][1]["maxMessages"], 4);
    }

    #[test]
    fn the_confirmation_is_followed_as_fragment_names_it() {
        let named = json!({
            "confirm_method": "confirmStarsReq",
            "confirm_params": {"id": "req-9", "ref": 42, "boc": "not ours to take", "fast": true}
        });
        let confirmation = read_confirmation(&named, "req-9").unwrap();
        assert_eq!(confirmation.method, "confirmStarsReq");
        assert_eq!(
            confirmation.params,
            vec![
                ("id".to_owned(), "req-9".to_owned()),
                ("ref".to_owned(), "42".to_owned()),
                ("fast".to_owned(), "true".to_owned()),
            ]
        );
        let unnamed = read_confirmation(&json!({"ok": true}), "req-9").unwrap();
        assert_eq!(unnamed.method, "confirmReq");
        assert_eq!(unnamed.params, vec![("id".to_owned(), "req-9".to_owned())]);
        for bad in [
            json!({"confirm_method": "confirm Req"}),
            json!({"confirm_method": 7}),
            json!({"confirm_params": ["id"]}),
            json!({"confirm_params": {"id": {"nested": true}}}),
            json!({"confirm_params": {"bad name": "x"}}),
        ] {
            assert!(read_confirmation(&bad, "req-9").is_err(), "{bad}");
        }
    }

    #[test]
    fn the_buy_state_is_done_only_without_another_update() {
        let state = |v: Value| read_buy_state(&v);
        assert_eq!(
            state(json!({"mode": "done", "need_update": false})),
            Some(("done".into(), true))
        );
        assert_eq!(
            state(json!({"mode": "done", "need_update": true})),
            Some(("done".into(), false))
        );
        assert_eq!(state(json!({"mode": "new"})), Some(("new".into(), false)));
        assert_eq!(state(json!({"ok": true})), None);
    }

    #[test]
    fn state_nonces_stay_in_the_pages_range() {
        for _ in 0..1_000 {
            let nonce: u64 = state_nonce().parse().unwrap();
            assert!((100_000_000..=2_147_483_647).contains(&nonce), "{nonce}");
        }
    }
}
