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
//!
//! `judge` sorts an answer (or the buy page) into one of those; `read` reads what an answer
//! says into our types.

use std::fmt;

use serde_json::Value;

use super::market::MarketError;

mod judge;
mod read;

pub(super) use judge::{id_text, judge_api, judge_page};
pub(super) use read::{
    account_json, device_json, read_buy_state, read_confirmation, read_order, read_payment,
    state_nonce, Confirmation,
};

/// Fragment's messages are kept to this many characters in errors and logs.
pub(super) const MAX_MESSAGE_CHARS: usize = 200;

/// The API hash scraped from the page. `Debug` hides it: it authorises API calls.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct ApiHash(pub(super) String);

impl fmt::Debug for ApiHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiHash(<redacted>)")
    }
}

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
