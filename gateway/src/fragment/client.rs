//! The live [`StarsMarket`]: Fragment's own web API (`fragment.com/api?hash=…`), called the way
//! the site's pages call it, as the shop's logged-in Fragment account.
//!
//! Fragment has no public API. What is implemented here follows what open-source clients
//! reverse-engineered (pyfragment, afragment, fragment-api-ts and others): the method names,
//! their form parameters, the answers' JSON, the error texts. It may change without notice, so
//! every answer is checked and anything unexpected is a [`MarketError::BadResponse`] (try
//! later, alert) rather than a guess.
//!
//! How a call goes:
//! - The API URL carries a `hash` that Fragment's pages embed in their JavaScript config. It
//!   is scraped from `/stars/buy` on first use, cached, and scraped again once when Fragment
//!   answers `{"error":"Bad request"}` (its answer to an unknown or stale hash).
//! - Each call is a form-encoded `POST /api?hash=…` with `method=…`, the session cookies
//!   (`stel_ssid`, `stel_dt`, `stel_token`, `stel_ton_token`) and the headers the site's own
//!   XHR sends.
//! - Every call here is safe to repeat: searching and asking state are reads; opening an
//!   order only creates an unpaid request that expires on its own; asking again for the
//!   transfer of an order returns the same order's transfer; reporting a broadcast payment
//!   again reports the same payment. So timeouts, connection errors, 5xx, 429 and Cloudflare
//!   challenges are retried per [`RetryPolicy`] and count against the [`CircuitBreaker`];
//!   Fragment's refusals are final and prove it is up.
//! - A rejected session (login page, `Access denied`, 401/403, a redirect, no TON wallet
//!   connected) is [`MarketError::SessionExpired`] at once, never retried: nothing works until
//!   an operator renews `FRAGMENT_COOKIES`.
//!
//! The cookies and the API hash are secrets: they are never logged, never in `Debug`, never
//! in an error. No redirect is followed (it would resend the cookies wherever it points).

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, COOKIE, LOCATION, ORIGIN, REFERER};
use reqwest::{StatusCode, Url};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use starledger_ledger::events::Stars;
use starledger_ledger::ids::Username;
use tokio::sync::Mutex;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::market::{MarketError, MarketOrder, OrderState, PaymentRequest, Recipient, StarsMarket};
use super::ton::{Nanotons, TransferMessage, WalletAccount};
use crate::external::{describe_failure, read_bounded, record_call, shorten, CallRecord};
use crate::resilience::{BreakerSettings, BreakerState, CircuitBreaker, RetryPolicy};

/// Fragment's site.
pub const DEFAULT_BASE_URL: &str = "https://fragment.com";

/// How long one attempt may take, connecting and reading the answer included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// The provider label on logs and metrics.
const PROVIDER: &str = "fragment";

/// The page whose JavaScript config carries the API hash, and the page the API calls come
/// from (their `Referer`).
const STARS_PAGE: &str = "/stars/buy";

/// The page is some hundred kilobytes, API answers a few; reading stops here.
const MAX_ANSWER_BYTES: usize = 2 << 20;

/// Fragment's messages are kept to this many characters in errors and logs.
const MAX_MESSAGE_CHARS: usize = 200;

/// TON Connect's id of the TON mainnet, which Fragment expects in `account.chain`.
const MAINNET_CHAIN: &str = "-239";

/// Fragment answers `Price was changed` when the TON price moved between the buy page's last
/// state update and the order; clients re-sync and try again. After this many tries the
/// order is refused as [`MarketError::PriceChanged`].
const PRICE_TRIES: u32 = 3;

/// How long a payment stays valid when Fragment's answer names no `validUntil`. Short on
/// purpose: a wallet message that expires unexecuted is harmless, one that executes late
/// pays an order Fragment may have dropped.
const DEFAULT_PAYMENT_WINDOW: chrono::Duration = chrono::Duration::minutes(5);

/// The method that tells Fragment a payment was broadcast, as getBuyStarsLink names it.
const CONFIRM_METHOD: &str = "confirmReq";

/// A desktop browser's User-Agent: Fragment sits behind Cloudflare, which challenges
/// clients that do not look like browsers.
const BROWSER_USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// The session cookies Fragment's logged-in pages carry, in the order a browser sends them.
pub const COOKIE_NAMES: [&str; 4] = ["stel_ssid", "stel_dt", "stel_token", "stel_ton_token"];

// ---------------------------------------------------------------------------------------
// Cookies
// ---------------------------------------------------------------------------------------

/// The four session cookies of the shop's Fragment account. Built only by
/// [`parse_fragment_cookies`], so a value here is always complete and sendable. `Debug`
/// shows the names, never the values.
#[derive(Clone, PartialEq, Eq)]
pub struct FragmentCookies {
    /// In the order of [`COOKIE_NAMES`].
    values: [String; 4],
}

impl FragmentCookies {
    /// The `Cookie` header: `stel_ssid=…; stel_dt=…; stel_token=…; stel_ton_token=…`.
    fn header(&self) -> Result<HeaderValue, reqwest::header::InvalidHeaderValue> {
        let text = COOKIE_NAMES
            .iter()
            .zip(&self.values)
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut header = HeaderValue::from_str(&text)?;
        // Keeps the cookies out of any `Debug` output of a request.
        header.set_sensitive(true);
        Ok(header)
    }
}

impl fmt::Debug for FragmentCookies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for name in COOKIE_NAMES {
            map.entry(&name, &"<redacted>");
        }
        map.finish()
    }
}

/// Why `FRAGMENT_COOKIES` cannot be used. Names cookies, never shows their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("FRAGMENT_COOKIES lacks the {} cookie (copy it from a logged-in fragment.com)", .0.join(", "))]
    Missing(Vec<&'static str>),
    #[error("FRAGMENT_COOKIES sets the {0} cookie more than once")]
    Duplicate(&'static str),
    #[error("FRAGMENT_COOKIES part {0} is not name=value (expected `stel_ssid=…; stel_dt=…; stel_token=…; stel_ton_token=…`)")]
    Malformed(usize),
    #[error("the {0} cookie in FRAGMENT_COOKIES has characters a cookie value cannot have")]
    InvalidValue(&'static str),
}

/// Parses `FRAGMENT_COOKIES` as a browser's cookie header string:
/// `stel_ssid=…; stel_dt=…; stel_token=…; stel_ton_token=…`, in any order, with or without
/// other cookies (which are ignored: only these four make the session). An empty value counts
/// as missing.
pub fn parse_fragment_cookies(text: &str) -> Result<FragmentCookies, CookieError> {
    let mut values: [Option<String>; 4] = Default::default();
    let parts = text
        .split(';')
        .map(str::trim)
        .enumerate()
        .filter(|(_, part)| !part.is_empty());
    for (index, part) in parts {
        let Some((name, value)) = part.split_once('=') else {
            return Err(CookieError::Malformed(index + 1));
        };
        let Some(slot) = COOKIE_NAMES.iter().position(|known| *known == name.trim()) else {
            continue;
        };
        let name = COOKIE_NAMES[slot];
        let value = value.trim();
        if !is_cookie_value(value) {
            return Err(CookieError::InvalidValue(name));
        }
        if value.is_empty() {
            continue;
        }
        if values[slot].replace(value.to_owned()).is_some() {
            return Err(CookieError::Duplicate(name));
        }
    }
    let missing: Vec<&'static str> = COOKIE_NAMES
        .iter()
        .zip(&values)
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(CookieError::Missing(missing));
    }
    Ok(FragmentCookies {
        values: values.map(Option::unwrap_or_default),
    })
}

/// RFC 6265 `cookie-value`: cookie octets, optionally inside one pair of double quotes.
fn is_cookie_value(value: &str) -> bool {
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    inner
        .bytes()
        .all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}

// ---------------------------------------------------------------------------------------
// Settings and construction
// ---------------------------------------------------------------------------------------

/// How to reach Fragment and how patient to be with it.
#[derive(Debug, Clone)]
pub struct FragmentSettings {
    /// `https://fragment.com` without a trailing slash; tests point it at a local server.
    pub base_url: String,
    pub cookies: FragmentCookies,
    /// Per attempt, not per call: a call may take `retry.attempts` times this plus backoff
    /// (and one more round trip when the API hash has to be scraped again).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub breaker: BreakerSettings,
}

impl FragmentSettings {
    /// Settings for fragment.com with the default timeout, retries and breaker.
    pub fn new(cookies: FragmentCookies) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            cookies,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            breaker: BreakerSettings::default(),
        }
    }
}

/// Why a [`FragmentClient`] could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Fragment base URL {0:?} is not an absolute http(s) URL")]
    BaseUrl(String),
    #[error("the Fragment cookies cannot be sent as an HTTP header")]
    Cookies,
    #[error("could not build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The API hash scraped from the page. `Debug` hides it: it authorises API calls.
#[derive(Clone, PartialEq, Eq)]
struct ApiHash(String);

impl fmt::Debug for ApiHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiHash(<redacted>)")
    }
}

/// The calls the client makes, as logs and metrics name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    FindRecipient,
    OpenOrder,
    PaymentRequest,
    OrderState,
    ConfirmPayment,
}

impl Call {
    fn as_str(self) -> &'static str {
        match self {
            Self::FindRecipient => "find_recipient",
            Self::OpenOrder => "open_order",
            Self::PaymentRequest => "payment_request",
            Self::OrderState => "order_state",
            Self::ConfirmPayment => "confirm_payment",
        }
    }
}

/// Fragment's web API behind a [`StarsMarket`]. One per Fragment account, shared by
/// reference, so that its breaker and its cached API hash serve every order.
pub struct FragmentClient {
    http: reqwest::Client,
    base_url: String,
    page_url: Url,
    api_url: Url,
    /// `Origin` and `Referer` of API calls, as the site's XHR sends them.
    origin: HeaderValue,
    referer: HeaderValue,
    cookie: HeaderValue,
    /// The cached API hash. The lock is held while scraping, so concurrent callers wait for
    /// one scrape instead of each making their own.
    hash: Mutex<Option<ApiHash>>,
    timeout: Duration,
    retry: RetryPolicy,
    breaker: CircuitBreaker,
}

impl FragmentClient {
    pub fn new(settings: FragmentSettings) -> Result<Self, ClientError> {
        let base = settings.base_url.trim_end_matches('/');
        let endpoint = |path: &str| {
            Url::parse(&format!("{base}{path}"))
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
                .ok_or_else(|| ClientError::BaseUrl(settings.base_url.clone()))
        };
        let page_url = endpoint(STARS_PAGE)?;
        let api_url = endpoint("/api")?;
        let origin = HeaderValue::from_str(base).map_err(|_| ClientError::BaseUrl(base.into()))?;
        let referer = HeaderValue::from_str(page_url.as_str())
            .map_err(|_| ClientError::BaseUrl(base.into()))?;
        let cookie = settings
            .cookies
            .header()
            .map_err(|_| ClientError::Cookies)?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            // A followed redirect would resend the cookies wherever it points; Fragment's API
            // does not redirect a live session, so a redirect is read as a rejected one.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(BROWSER_USER_AGENT)
            .build()?;
        metrics::gauge!("starledger_circuit_breaker_open", "provider" => PROVIDER).set(0.0);
        Ok(Self {
            http,
            base_url: base.to_owned(),
            page_url,
            api_url,
            origin,
            referer,
            cookie,
            hash: Mutex::new(None),
            timeout: settings.timeout,
            retry: settings.retry,
            breaker: CircuitBreaker::new(settings.breaker),
        })
    }

    /// The breaker's state, for health checks that want more than open/closed.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Whether the breaker is anything but closed.
    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Tells Fragment that the payment for `request_id` was broadcast: `boc` is the signed
    /// external message (base64 of its bag of cells), `wallet` the account that signed it.
    ///
    /// The site does this right after the wallet sends the transfer (the `confirm_method` and
    /// `confirm_params` of getBuyStarsLink's answer: `confirmReq` with the order's `id`). Some
    /// open-source clients report that Fragment does not match the payment to the order
    /// without it, others deliver without it; it is not part of [`StarsMarket`], so the
    /// fulfilment worker decides whether to call it. Safe to repeat.
    pub async fn confirm_payment(
        &self,
        request_id: &str,
        wallet: &WalletAccount,
        boc: &str,
    ) -> Result<(), MarketError> {
        let started = Instant::now();
        let result = self.confirm(request_id, wallet, boc).await;
        self.observe(Call::ConfirmPayment, started, &result);
        result.map_err(Failure::into_market)
    }

    // ---- the four calls, each its own whole life ---------------------------------------

    /// `searchStarsRecipient(query, quantity)` → `{"ok":true,"found":{"recipient","name",…}}`
    /// or `{"error":"No Telegram users found."}`.
    async fn search(&self, username: &Username, stars: Stars) -> Result<Recipient, Failure> {
        let answer = self
            .call(
                Call::FindRecipient,
                "searchStarsRecipient",
                &[
                    ("query", username.as_str().to_owned()),
                    ("quantity", stars.get().to_string()),
                ],
            )
            .await?;
        let found = answer.get("found").filter(|found| found.is_object());
        let recipient_id = found
            .and_then(|found| found.get("recipient"))
            .and_then(id_text)
            .ok_or_else(|| {
                Failure::Market(MarketError::RecipientNotFound(format!(
                    "Fragment found no recipient for {username}"
                )))
            })?;
        let name = found
            .and_then(|found| found.get("name"))
            .and_then(Value::as_str)
            .filter(|name| !name.trim().is_empty())
            .map(|name| shorten(name, MAX_MESSAGE_CHARS));
        Ok(Recipient {
            username: username.clone(),
            recipient_id,
            name,
        })
    }

    /// `updateStarsBuyState(mode=new, lv=false, dh)` to sync the session's TON price as the
    /// buy page does, then `initBuyStarsRequest(recipient, quantity, payment_method=ton)` →
    /// `{"req_id":"…","amount":"0.2345"}`. Without the sync Fragment tends to answer `Price was
    /// changed` (and without `payment_method`, `Access denied`); a price change is re-synced
    /// and tried again a few times.
    async fn open(&self, recipient: &Recipient, stars: Stars) -> Result<MarketOrder, Failure> {
        let mut last_change = String::new();
        for _ in 0..PRICE_TRIES {
            let sync = self
                .call(
                    Call::OpenOrder,
                    "updateStarsBuyState",
                    &[
                        ("mode", "new".to_owned()),
                        ("lv", "false".to_owned()),
                        ("dh", state_nonce()),
                    ],
                )
                .await;
            match sync {
                // Only the page's refresh of itself: if Fragment has something against it
                // but is up and the session good, the order itself will say what is wrong.
                Ok(_) | Err(Failure::UnknownMethod(_)) => {}
                Err(Failure::Market(error)) if error.is_definite() => {
                    debug!(provider = PROVIDER, %error, "Fragment refused the buy state update");
                }
                Err(other) => return Err(other),
            }
            let answer = self
                .call(
                    Call::OpenOrder,
                    "initBuyStarsRequest",
                    &[
                        ("recipient", recipient.recipient_id.clone()),
                        ("quantity", stars.get().to_string()),
                        ("payment_method", "ton".to_owned()),
                    ],
                )
                .await;
            match answer {
                Err(Failure::Market(MarketError::PriceChanged(why))) => last_change = why,
                Err(other) => return Err(other),
                Ok(answer) => return read_order(&answer.body).map_err(Failure::Market),
            }
        }
        Err(Failure::Market(MarketError::PriceChanged(format!(
            "{last_change} ({PRICE_TRIES} tries)"
        ))))
    }

    /// `getBuyStarsLink(transaction=1, id, show_sender=0, account, device)` →
    /// `{"ok":true,"transaction":{"validUntil":…,"messages":[{"address","amount","payload"}]},
    /// "confirm_method":"confirmReq","confirm_params":{"id":…}}`, or `{"need_verify":true}`
    /// when the account must pass KYC first.
    async fn link(
        &self,
        request_id: &str,
        wallet: &WalletAccount,
    ) -> Result<PaymentRequest, Failure> {
        let answer = self
            .call(
                Call::PaymentRequest,
                "getBuyStarsLink",
                &[
                    ("transaction", "1".to_owned()),
                    ("id", request_id.to_owned()),
                    ("show_sender", "0".to_owned()),
                    ("account", account_json(wallet)),
                    ("device", device_json()),
                ],
            )
            .await?;
        if let Some(method) = answer.get("confirm_method").and_then(Value::as_str) {
            if method != CONFIRM_METHOD {
                warn!(
                    provider = PROVIDER,
                    confirm_method = %shorten(method, 40),
                    "Fragment names a payment confirmation other than confirmReq"
                );
            }
        }
        read_payment(&answer.json, Utc::now()).map_err(Failure::Market)
    }

    /// `checkReq(id)` → `{"confirmed":false}` until Fragment has matched a payment to the
    /// order, then `{"confirmed":true}`. Only one public client documents this call, so an
    /// answer that does not say (or a Fragment that no longer knows the method) is
    /// [`OrderState::Unknown`], and the worker goes by the blockchain. A refusal about this
    /// order is also `Unknown`, never an error the worker would refund on: by the time state
    /// is asked the order may be paid.
    async fn state(&self, request_id: &str) -> Result<OrderState, Failure> {
        let answer = self
            .call(
                Call::OrderState,
                "checkReq",
                &[("id", request_id.to_owned())],
            )
            .await;
        match answer {
            Ok(answer) => Ok(match answer.get("confirmed").and_then(Value::as_bool) {
                Some(true) => OrderState::Delivered,
                Some(false) => OrderState::Pending,
                None => OrderState::Unknown,
            }),
            Err(Failure::UnknownMethod(why)) => {
                warn!(provider = PROVIDER, problem = %why, "Fragment cannot say how an order went");
                Ok(OrderState::Unknown)
            }
            Err(Failure::Market(error)) if error.is_definite() => {
                warn!(provider = PROVIDER, %error, "Fragment refused to say how an order went");
                Ok(OrderState::Unknown)
            }
            Err(other) => Err(other),
        }
    }

    /// `confirmReq(id, boc, account, device)` → `{"ok":true}`.
    async fn confirm(
        &self,
        request_id: &str,
        wallet: &WalletAccount,
        boc: &str,
    ) -> Result<(), Failure> {
        let answer = self
            .call(
                Call::ConfirmPayment,
                CONFIRM_METHOD,
                &[
                    ("id", request_id.to_owned()),
                    ("boc", boc.to_owned()),
                    ("account", account_json(wallet)),
                    ("device", device_json()),
                ],
            )
            .await?;
        match answer.get("ok").and_then(Value::as_bool) {
            Some(true) => Ok(()),
            _ => Err(Failure::Market(MarketError::BadResponse(
                "the payment confirmation was not acknowledged".into(),
            ))),
        }
    }

    // ---- transport ----------------------------------------------------------------------

    /// Calls `method` until Fragment answers, the attempts run out or the breaker says stop.
    /// Returns the answer when it carries no error.
    async fn call(
        &self,
        call: Call,
        method: &'static str,
        params: &[(&'static str, String)],
    ) -> Result<Answer, Failure> {
        let attempts = self.retry.max_attempts();
        let mut attempt = 0;
        let mut rescraped = false;
        let mut problem = String::new();
        while attempt < attempts {
            attempt += 1;
            if attempt > 1 {
                tokio::time::sleep(self.retry.delay(attempt - 1)).await;
            }
            let Ok(permit) = self.breaker.acquire() else {
                // Opened by our own failures (or a neighbour's) while we were retrying: the
                // call was tried and failed, so say why rather than just "open".
                return Err(if attempt == 1 {
                    Failure::CircuitOpen
                } else {
                    Failure::Market(MarketError::Unavailable(format!(
                        "{problem}; circuit breaker opened"
                    )))
                });
            };
            let (verdict, used) = match self.current_hash().await {
                Ok(hash) => {
                    let verdict = match self.post(&hash, method, params).await {
                        Ok((status, headers, body)) => {
                            judge_api(status, &headers, body).about(call)
                        }
                        Err(transient) => Verdict::Transient(transient),
                    };
                    (verdict, Some(hash))
                }
                Err(verdict) => (verdict, None),
            };
            match verdict {
                Verdict::Answered(result) => {
                    permit.succeeded();
                    return result;
                }
                Verdict::StaleHash(why) => {
                    // Fragment is up and said so.
                    permit.succeeded();
                    if rescraped {
                        return Err(Failure::Market(MarketError::BadResponse(format!(
                            "{why} even with a freshly scraped API hash"
                        ))));
                    }
                    // Scrape once more and go again, without spending an attempt or waiting.
                    info!(provider = PROVIDER, method, problem = %why, "Fragment API hash is stale; scraping it again");
                    if let Some(hash) = used {
                        self.forget_hash(&hash).await;
                    }
                    rescraped = true;
                    attempt -= 1;
                }
                Verdict::Transient(transient) => {
                    permit.failed();
                    info!(
                        provider = PROVIDER,
                        call = call.as_str(),
                        method,
                        attempt,
                        attempts,
                        problem = %transient,
                        "Fragment attempt failed"
                    );
                    problem = transient;
                }
            }
        }
        Err(Failure::Market(MarketError::Unavailable(problem)))
    }

    /// The cached API hash, scraping the page first if there is none. `Err` is the verdict on
    /// a failed scrape.
    async fn current_hash(&self) -> Result<ApiHash, Verdict> {
        let mut cached = self.hash.lock().await;
        if let Some(hash) = cached.as_ref() {
            return Ok(hash.clone());
        }
        let hash = self.scrape().await?;
        *cached = Some(hash.clone());
        Ok(hash)
    }

    /// Drops `stale` from the cache unless someone already replaced it.
    async fn forget_hash(&self, stale: &ApiHash) {
        let mut cached = self.hash.lock().await;
        if cached.as_ref() == Some(stale) {
            *cached = None;
        }
    }

    /// Loads the buy page as a browser navigation (not an XHR, or Fragment answers JSON
    /// without the hash) and finds the API hash in it.
    async fn scrape(&self) -> Result<ApiHash, Verdict> {
        let mut response = self
            .http
            .get(self.page_url.clone())
            .header(
                ACCEPT,
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )
            .header(REFERER, format!("{}/", self.base_url))
            .header(COOKIE, self.cookie.clone())
            .send()
            .await
            .map_err(|e| Verdict::Transient(describe_failure(&e, self.timeout)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_bounded(&mut response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| Verdict::Transient(describe_failure(&e, self.timeout)))?;
        judge_page(status, &headers, &body)
    }

    /// One API round trip. `Err` is a transient problem, described without secrets.
    async fn post(
        &self,
        hash: &ApiHash,
        method: &str,
        params: &[(&'static str, String)],
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), String> {
        let mut url = self.api_url.clone();
        url.query_pairs_mut().append_pair("hash", &hash.0);
        let mut form: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        form.push(("method", method));
        let mut response = self
            .http
            .post(url)
            .header(ACCEPT, "application/json, text/javascript, */*; q=0.01")
            .header("X-Requested-With", "XMLHttpRequest")
            .header(ORIGIN, self.origin.clone())
            .header(REFERER, self.referer.clone())
            .header(COOKIE, self.cookie.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| describe_failure(&e, self.timeout))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_bounded(&mut response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| describe_failure(&e, self.timeout))?;
        Ok((status, headers, body))
    }

    /// Counts, times and logs one call's final outcome.
    fn observe<T>(&self, call: Call, started: Instant, result: &Result<T, Failure>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(Failure::CircuitOpen) => "circuit_open",
            Err(Failure::UnknownMethod(_)) => "bad_response",
            Err(Failure::Market(error)) => error.code(),
        };
        let open = self.breaker.is_open();
        record_call(CallRecord {
            provider: PROVIDER,
            call: call.as_str(),
            outcome,
            started,
            sent: !matches!(result, Err(Failure::CircuitOpen)),
            breaker_open: open,
        });
        match result {
            Ok(_) => debug!(
                provider = PROVIDER,
                call = call.as_str(),
                "Fragment call ok"
            ),
            Err(error) => warn!(
                provider = PROVIDER,
                call = call.as_str(),
                outcome,
                circuit_open = open,
                error = %error,
                "Fragment call failed"
            ),
        }
    }
}

#[async_trait]
impl StarsMarket for FragmentClient {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn find_recipient(
        &self,
        username: &Username,
        stars: Stars,
    ) -> Result<Recipient, MarketError> {
        let started = Instant::now();
        let result = self.search(username, stars).await;
        self.observe(Call::FindRecipient, started, &result);
        result.map_err(Failure::into_market)
    }

    async fn open_order(
        &self,
        recipient: &Recipient,
        stars: Stars,
    ) -> Result<MarketOrder, MarketError> {
        let started = Instant::now();
        let result = self.open(recipient, stars).await;
        self.observe(Call::OpenOrder, started, &result);
        result.map_err(Failure::into_market)
    }

    async fn payment_request(
        &self,
        request_id: &str,
        wallet: &WalletAccount,
    ) -> Result<PaymentRequest, MarketError> {
        let started = Instant::now();
        let result = self.link(request_id, wallet).await;
        self.observe(Call::PaymentRequest, started, &result);
        result.map_err(Failure::into_market)
    }

    async fn order_state(&self, request_id: &str) -> Result<OrderState, MarketError> {
        let started = Instant::now();
        let result = self.state(request_id).await;
        self.observe(Call::OrderState, started, &result);
        result.map_err(Failure::into_market)
    }
}

impl fmt::Debug for FragmentClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FragmentClient")
            .field("base_url", &self.base_url)
            .field("cookies", &"<redacted>")
            .field("api_hash", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Judging answers (no I/O)
// ---------------------------------------------------------------------------------------

/// Why a call failed, before it becomes a [`MarketError`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    Market(MarketError),
    /// The breaker refused the first attempt: nothing was sent.
    CircuitOpen,
    /// Fragment does not know the method (it changed its API).
    UnknownMethod(String),
}

impl Failure {
    fn into_market(self) -> MarketError {
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
struct Answer {
    json: Value,
    body: Vec<u8>,
}

impl Answer {
    fn get(&self, field: &str) -> Option<&Value> {
        self.json.get(field)
    }
}

/// What one HTTP answer means.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Fragment is up and answered this; do not retry.
    Answered(Result<Answer, Failure>),
    /// Fragment does not accept the API hash any more: scrape it again.
    StaleHash(String),
    /// Fragment (or Cloudflare in front of it) is unwell: retry, count against the breaker.
    Transient(String),
}

impl Verdict {
    /// "Not found" means the recipient only where a recipient is looked up; elsewhere (an
    /// order Fragment no longer knows, say) it is a plain refusal.
    fn about(self, call: Call) -> Self {
        match self {
            Self::Answered(Err(Failure::Market(MarketError::RecipientNotFound(why))))
                if !matches!(call, Call::FindRecipient | Call::OpenOrder) =>
            {
                Self::Answered(Err(Failure::Market(MarketError::Refused(why))))
            }
            other => other,
        }
    }
}

/// Sorts an API answer into result, refusal, stale hash or transient failure.
fn judge_api(status: StatusCode, headers: &HeaderMap, body: Vec<u8>) -> Verdict {
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
fn judge_page(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<ApiHash, Verdict> {
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
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// The hash in the page's `/api?hash=<hex>` (JSON-escaped as `\/api?hash=` in the config).
fn find_api_hash(page: &str) -> Option<String> {
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
// Reading answers into our types (no I/O)
// ---------------------------------------------------------------------------------------

/// initBuyStarsRequest's answer. `amount` stays raw JSON so a number is read from its text,
/// never through a float.
#[derive(Deserialize)]
struct InitAnswer {
    req_id: Option<Value>,
    amount: Option<Box<RawValue>>,
}

fn read_order(body: &[u8]) -> Result<MarketOrder, MarketError> {
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

fn read_payment(answer: &Value, now: DateTime<Utc>) -> Result<PaymentRequest, MarketError> {
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
fn account_json(wallet: &WalletAccount) -> String {
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
fn device_json() -> String {
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

/// The `dh` nonce the buy page sends with its state updates: a random nine- or ten-digit
/// number.
fn state_nonce() -> String {
    // 31 random bits of a v4 UUID, kept in 100,000,000..=2,147,483,647 like the page's.
    let random = (Uuid::new_v4().as_u128() as u32) & 0x7FFF_FFFF;
    (100_000_000 + random % (2_147_483_647 - 100_000_000 + 1)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOKIES: &str =
        "stel_ssid=aa11bb22; stel_dt=-180; stel_token=secret-token-value; stel_ton_token=ton-secret-9";

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
    fn cookies_parse_in_any_order_and_ignore_other_cookies() {
        let cookies = parse_fragment_cookies(
            " stel_token=t; _ga=GA1.2; stel_ton_token=tt;stel_dt=-180 ; stel_ssid=s; ",
        )
        .unwrap();
        let header = cookies.header().unwrap();
        assert_eq!(
            header.to_str().unwrap(),
            "stel_ssid=s; stel_dt=-180; stel_token=t; stel_ton_token=tt"
        );
        assert!(header.is_sensitive());
    }

    #[test]
    fn a_missing_or_empty_cookie_is_named_and_no_value_is_shown() {
        let error =
            parse_fragment_cookies("stel_ssid=aa11; stel_dt=-180; stel_token=zz99").unwrap_err();
        assert_eq!(error, CookieError::Missing(vec!["stel_ton_token"]));
        let shown = error.to_string();
        assert!(shown.contains("stel_ton_token"), "{shown}");
        assert!(
            !shown.contains("aa11") && !shown.contains("zz99"),
            "{shown}"
        );

        let error = parse_fragment_cookies("stel_ssid=; stel_dt=-180").unwrap_err();
        assert_eq!(
            error,
            CookieError::Missing(vec!["stel_ssid", "stel_token", "stel_ton_token"])
        );
        assert!(matches!(
            parse_fragment_cookies(""),
            Err(CookieError::Missing(names)) if names.len() == 4
        ));
    }

    #[test]
    fn malformed_duplicated_or_unsendable_cookies_are_refused_by_name() {
        assert_eq!(
            parse_fragment_cookies("stel_ssid=a; garbage; stel_dt=1"),
            Err(CookieError::Malformed(2))
        );
        assert_eq!(
            parse_fragment_cookies(&format!("{COOKIES}; stel_token=again")),
            Err(CookieError::Duplicate("stel_token"))
        );
        let error =
            parse_fragment_cookies("stel_ssid=a b; stel_dt=1; stel_token=t; stel_ton_token=u")
                .unwrap_err();
        assert_eq!(error, CookieError::InvalidValue("stel_ssid"));
        assert!(!error.to_string().contains("a b"));
        assert!(parse_fragment_cookies(
            "stel_ssid=\"quoted\"; stel_dt=1; stel_token=t; stel_ton_token=u"
        )
        .is_ok());
    }

    #[test]
    fn debug_of_cookies_and_settings_shows_names_not_values() {
        let cookies = parse_fragment_cookies(COOKIES).unwrap();
        let settings = FragmentSettings::new(cookies);
        let shown = format!("{settings:?}");
        for secret in ["aa11bb22", "secret-token-value", "ton-secret-9"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("stel_ton_token") && shown.contains("<redacted>"));
        assert_eq!(
            format!("{:?}", ApiHash("abcdef0123".into())),
            "ApiHash(<redacted>)"
        );
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
            market_error(judged(200, body).about(Call::FindRecipient)).code(),
            "recipient_not_found"
        );
        assert_eq!(
            market_error(judged(200, body).about(Call::PaymentRequest)).code(),
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
    fn state_nonces_stay_in_the_pages_range() {
        for _ in 0..1_000 {
            let nonce: u64 = state_nonce().parse().unwrap();
            assert!((100_000_000..=2_147_483_647).contains(&nonce), "{nonce}");
        }
    }

    #[test]
    fn bad_base_urls_are_refused_at_construction() {
        let cookies = parse_fragment_cookies(COOKIES).unwrap();
        for url in ["not a url", "ftp://fragment.com", ""] {
            let mut settings = FragmentSettings::new(cookies.clone());
            settings.base_url = url.into();
            assert!(
                matches!(FragmentClient::new(settings), Err(ClientError::BaseUrl(_))),
                "{url}"
            );
        }
    }
}
