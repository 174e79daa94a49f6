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
//!
//! Here: `cookies` (the session), `calls` (each Fragment call, its whole life) and `transport`
//! (retries, breaker, API hash, the round trip); what an answer means is `super::wire`'s.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use reqwest::Url;
use starledger_ledger::events::Stars;
use starledger_ledger::ids::Username;
use tokio::sync::Mutex;
use tracing::debug;

use super::market::{MarketError, MarketOrder, OrderState, PaymentRequest, Recipient, StarsMarket};
use super::ton::WalletAccount;
use super::wire::{ApiHash, Confirmation, Failure, Verdict};
use starledger_outbound as outbound;
use starledger_outbound::resilience::{BreakerSettings, BreakerState, CircuitBreaker, RetryPolicy};

mod calls;
mod cookies;
mod transport;

pub use cookies::{parse_fragment_cookies, CookieError, FragmentCookies, COOKIE_NAMES};

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
        outbound::publish_breaker_open(PROVIDER, false);
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
mod tests;
