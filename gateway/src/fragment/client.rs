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
//!   order only creates an unpaid request that expires on its own; getting the transfer of
//!   an order hands out what paying it takes and pays nothing; reporting a broadcast payment
//!   again reports the same payment. So timeouts, connection errors, 5xx, 429 and Cloudflare
//!   challenges are retried per [`RetryPolicy`] and count against the [`CircuitBreaker`];
//!   Fragment's refusals are final and prove it is up.
//! - A rejected session (login page, `Access denied`, 401/403, a redirect, no TON wallet
//!   connected) is [`MarketError::SessionExpired`] at once, never retried: nothing works until
//!   an operator renews `FRAGMENT_COOKIES`.
//!
//! The cookies and the API hash are secrets: they are never logged, never in `Debug`, never
//! in an error. No redirect is followed (it would resend the cookies wherever it points).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, COOKIE, ORIGIN, REFERER};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use starledger_ledger::events::Stars;
use starledger_ledger::ids::Username;
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use super::market::{MarketError, MarketOrder, OrderState, PaymentRequest, Recipient, StarsMarket};
use super::ton::WalletAccount;
use super::wire::{
    account_json, device_json, id_text, judge_api, judge_page, read_buy_state, read_confirmation,
    read_order, read_payment, state_nonce, Answer, ApiHash, Confirmation, Failure, Verdict,
    MAX_MESSAGE_CHARS,
};
use crate::metrics_catalog::CIRCUIT_BREAKER_OPEN;
use crate::outbound::{self, describe, read_limited, shorten};
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

/// Fragment answers `Price was changed` when the TON price moved between the buy page's last
/// state update and the order; clients re-sync and try again. After this many tries the
/// order is refused as [`MarketError::PriceChanged`].
const PRICE_TRIES: u32 = 3;

/// Orders remembered at most (see [`OrderMemory`]).
const MAX_REMEMBERED_ORDERS: usize = 10_000;

/// What the client keeps about an order between calls, for as long as the order is open
/// here: how Fragment asked its payment to be confirmed, and the buy page's last state.
#[derive(Debug, Default)]
struct OrderMemory {
    confirmation: Option<Confirmation>,
    mode: Option<String>,
}

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
    /// By Fragment's request id.
    orders: Mutex<HashMap<String, OrderMemory>>,
    timeout: Duration,
    retry: RetryPolicy,
    breaker: CircuitBreaker,
}

impl FragmentClient {
    pub fn new(settings: FragmentSettings) -> Result<Self, ClientError> {
        let base = settings.base_url.trim_end_matches('/');
        let endpoint = |path: &str| {
            outbound::endpoint(base, path)
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
        // Fragment does redirect a dead session (to its login): not followed, that reads as
        // an expired session.
        let http = outbound::http_client(settings.timeout, BROWSER_USER_AGENT)?;
        metrics::gauge!(CIRCUIT_BREAKER_OPEN, "provider" => PROVIDER).set(0.0);
        Ok(Self {
            http,
            base_url: base.to_owned(),
            page_url,
            api_url,
            origin,
            referer,
            cookie,
            hash: Mutex::new(None),
            orders: Mutex::new(HashMap::new()),
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
    /// when the account must pass KYC first. The confirmation it names is kept for
    /// [`Self::confirm`].
    async fn link(
        &self,
        request_id: &str,
        wallet: &WalletAccount,
    ) -> Result<PaymentRequest, Failure> {
        let answer = self.fetch_link(request_id, wallet).await?;
        read_payment(&answer.json, Utc::now()).map_err(Failure::Market)
    }

    async fn fetch_link(
        &self,
        request_id: &str,
        wallet: &WalletAccount,
    ) -> Result<Answer, Failure> {
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
        let confirmation = read_confirmation(&answer.json, request_id).map_err(Failure::Market)?;
        let mut orders = self.orders.lock().await;
        if orders.len() >= MAX_REMEMBERED_ORDERS {
            // Only a shortcut: a forgotten confirmation is asked for again, a forgotten
            // state starts from `new`.
            orders.clear();
        }
        orders
            .entry(request_id.to_owned())
            .or_default()
            .confirmation = Some(confirmation);
        Ok(answer)
    }

    /// `updateStarsBuyState(mode, lv=false, dh)`, as the buy page polls it and the public
    /// clients learn completion from it: the answer's `mode` is sent back on the next poll,
    /// and `mode: "done"` with `need_update: false` means delivered. An answer without a mode
    /// (or a Fragment that no longer knows the method) is [`OrderState::Unknown`], and the
    /// worker goes by the blockchain. A refusal is also `Unknown`, never an error the worker
    /// would refund on: by the time state is asked the order is paid.
    async fn state(&self, request_id: &str) -> Result<OrderState, Failure> {
        let mode = self
            .orders
            .lock()
            .await
            .get(request_id)
            .and_then(|order| order.mode.clone())
            .unwrap_or_else(|| "new".to_owned());
        let answer = self
            .call(
                Call::OrderState,
                "updateStarsBuyState",
                &[
                    ("mode", mode),
                    ("lv", "false".to_owned()),
                    ("dh", state_nonce()),
                ],
            )
            .await;
        match answer {
            Ok(answer) => Ok(match read_buy_state(&answer.json) {
                Some((_, true)) => {
                    self.orders.lock().await.remove(request_id);
                    OrderState::Delivered
                }
                Some((mode, false)) => {
                    self.orders
                        .lock()
                        .await
                        .entry(request_id.to_owned())
                        .or_default()
                        .mode = Some(mode);
                    OrderState::Pending
                }
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

    /// Reports the broadcast payment the way `getBuyStarsLink` asked (`confirm_method` with
    /// `confirm_params`, plus `boc`, `account` and `device`) → `{"ok":true}`. After a restart
    /// the link is asked for again to learn the confirmation: it pays nothing.
    async fn confirm(
        &self,
        request_id: &str,
        wallet: &WalletAccount,
        boc: &str,
    ) -> Result<(), Failure> {
        let known = self
            .orders
            .lock()
            .await
            .get(request_id)
            .and_then(|order| order.confirmation.clone());
        let confirmation = match known {
            Some(confirmation) => confirmation,
            None => {
                let answer = self.fetch_link(request_id, wallet).await?;
                read_confirmation(&answer.json, request_id).map_err(Failure::Market)?
            }
        };
        let mut params: Vec<(&str, String)> = confirmation
            .params
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        params.push(("boc", boc.to_owned()));
        params.push(("account", account_json(wallet)));
        params.push(("device", device_json()));
        let answer = self
            .call(Call::ConfirmPayment, &confirmation.method, &params)
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
        method: &str,
        params: &[(&str, String)],
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
                        Ok((status, headers, body)) => judge_api(status, &headers, body)
                            .about(matches!(call, Call::FindRecipient | Call::OpenOrder)),
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
        let response = self
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
            .map_err(|e| Verdict::Transient(describe(&e, self.timeout)))?;
        let headers = response.headers().clone();
        let (status, body) = read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| Verdict::Transient(describe(&e, self.timeout)))?;
        judge_page(status, &headers, &body)
    }

    /// One API round trip. `Err` is a transient problem, described without secrets.
    async fn post(
        &self,
        hash: &ApiHash,
        method: &str,
        params: &[(&str, String)],
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), String> {
        let mut url = self.api_url.clone();
        url.query_pairs_mut().append_pair("hash", &hash.0);
        let mut form: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        form.push(("method", method));
        let response = self
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
            .map_err(|e| describe(&e, self.timeout))?;
        let headers = response.headers().clone();
        let (status, body) = read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| describe(&e, self.timeout))?;
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
        // A call the breaker refused sent nothing; timing it would drag the latency down.
        let sent = !matches!(result, Err(Failure::CircuitOpen));
        outbound::Call {
            provider: PROVIDER,
            call: call.as_str(),
            subject: "",
            breaker: &self.breaker,
            retry: self.retry,
        }
        .record(outcome, started, sent);
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
                circuit_open = self.breaker.is_open(),
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

    /// `confirmReq`: what the site sends right after the wallet sent the transfer (the
    /// `confirm_method` and `confirm_params` of getBuyStarsLink's answer). Some open-source
    /// clients report that Fragment does not match the payment to the order without it.
    async fn confirm_payment(
        &self,
        request_id: &str,
        wallet: &WalletAccount,
        message: &str,
    ) -> Result<(), MarketError> {
        let started = Instant::now();
        let result = self.confirm(request_id, wallet, message).await;
        self.observe(Call::ConfirmPayment, started, &result);
        result.map_err(Failure::into_market)
    }

    /// Loads the buy page with the session, as a browser would: Fragment's login form
    /// instead of the page means the session is gone. The fresh API hash is kept.
    async fn check_session(&self) -> Result<(), MarketError> {
        match self.scrape().await {
            Ok(hash) => {
                *self.hash.lock().await = Some(hash);
                Ok(())
            }
            Err(Verdict::Answered(Err(Failure::Market(
                error @ MarketError::SessionExpired(_),
            )))) => Err(error),
            Err(_) => {
                debug!(
                    provider = PROVIDER,
                    "the session check could not reach Fragment; trying later"
                );
                Ok(())
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const COOKIES: &str =
        "stel_ssid=aa11bb22; stel_dt=-180; stel_token=secret-token-value; stel_ton_token=ton-secret-9";

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
