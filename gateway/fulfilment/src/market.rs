//! The [`StarsMarket`] interface: what the fulfilment worker asks Fragment, and the typed
//! answers and errors it acts on.
//!
//! An order goes: find the recipient → open an order for a number of stars (Fragment's
//! `req_id` and its TON price) → ask for the transfer that pays it → (the worker signs and
//! broadcasts it, and finds it executed) → confirm the payment → ask how the order went. Errors are split by what the worker may do about
//! them: refund the customer ([`MarketError::is_definite`]), pause all orders until an
//! operator acts ([`MarketError::SessionExpired`]), or try again later.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use starledger_ledger::events::Stars;
use starledger_ledger::ids::Username;

use super::ton::{Nanotons, TransferMessage, WalletAccount};

/// Someone Fragment can send stars to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub username: Username,
    /// Fragment's opaque id for the recipient, passed back when opening the order.
    pub recipient_id: String,
    /// Display name, for logs.
    pub name: Option<String>,
}

/// An order Fragment opened and priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketOrder {
    /// Fragment's `req_id`.
    pub request_id: String,
    /// What Fragment charges for it.
    pub cost: Nanotons,
}

/// The transfer that pays an order, as Fragment hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    pub messages: Vec<TransferMessage>,
    /// Fragment's own deadline for the transfer.
    pub valid_until: DateTime<Utc>,
}

/// How an order went, as far as Fragment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderState {
    /// Not paid yet, or paid and not delivered yet.
    Pending,
    /// The stars reached the recipient.
    Delivered,
    /// Fragment gave up on the order (its payment, if any, comes back to the wallet).
    Failed(String),
    /// Fragment does not say; the worker goes by the blockchain.
    Unknown,
}

/// Why Fragment did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarketError {
    /// No Telegram account by that name, or one that cannot receive stars.
    #[error("recipient not found: {0}")]
    RecipientNotFound(String),
    /// Fragment wants the shop's account verified before it sells more.
    #[error("Fragment requires KYC verification: {0}")]
    KycRequired(String),
    /// The cookies are missing, rejected or expired: nothing works until an operator renews
    /// them. Names what is wrong, never the cookie values.
    #[error("Fragment session expired or invalid: {0}")]
    SessionExpired(String),
    /// The price moved between opening the order and paying for it.
    #[error("Fragment's price changed: {0}")]
    PriceChanged(String),
    /// Any other refusal of this order that asking again will not change.
    #[error("Fragment refused the order: {0}")]
    Refused(String),
    /// Timeouts, connection errors, 5xx, rate limits, an open circuit breaker: try later.
    #[error("Fragment unavailable: {0}")]
    Unavailable(String),
    /// An answer we cannot read (Fragment changed its pages or API): try later, alert.
    #[error("Fragment answered something unusable: {0}")]
    BadResponse(String),
}

impl MarketError {
    /// True when the order can never go through as asked, so the customer is refunded.
    pub fn is_definite(&self) -> bool {
        matches!(
            self,
            Self::RecipientNotFound(_)
                | Self::KycRequired(_)
                | Self::PriceChanged(_)
                | Self::Refused(_)
        )
    }

    /// A short stable code for logs, metrics and the failure reason kept in the ledger.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RecipientNotFound(_) => "recipient_not_found",
            Self::KycRequired(_) => "kyc_required",
            Self::SessionExpired(_) => "session_expired",
            Self::PriceChanged(_) => "price_changed",
            Self::Refused(_) => "refused",
            Self::Unavailable(_) => "unavailable",
            Self::BadResponse(_) => "bad_response",
        }
    }
}

/// Fragment as the fulfilment worker uses it. Implemented by the live client and the sandbox.
#[async_trait]
pub trait StarsMarket: Send + Sync {
    /// For logs and metrics: `fragment`, `sandbox`, …
    fn name(&self) -> &'static str;

    /// Looks the recipient up (Fragment's `searchStarsRecipient`).
    async fn find_recipient(
        &self,
        username: &Username,
        stars: Stars,
    ) -> Result<Recipient, MarketError>;

    /// Opens and prices an order (`initBuyStarsRequest`). An order that is never paid is
    /// harmless, so this may be retried.
    async fn open_order(
        &self,
        recipient: &Recipient,
        stars: Stars,
    ) -> Result<MarketOrder, MarketError>;

    /// The transfer that pays the order from `wallet` (`getBuyStarsLink`).
    async fn payment_request(
        &self,
        request_id: &str,
        wallet: &WalletAccount,
    ) -> Result<PaymentRequest, MarketError>;

    /// Tells Fragment the order's payment executed: `message` is the signed external message
    /// (base64 of its bag of cells) from `wallet`. Safe to repeat.
    async fn confirm_payment(
        &self,
        request_id: &str,
        wallet: &WalletAccount,
        message: &str,
    ) -> Result<(), MarketError>;

    /// How the order went.
    async fn order_state(&self, request_id: &str) -> Result<OrderState, MarketError>;

    /// Whether the session still works, asked between orders so that an expired session is
    /// found before an order runs into it: `Err(SessionExpired)` if it does not; `Ok` when it
    /// does or when that cannot be told right now. A market without sessions is always fine.
    async fn check_session(&self) -> Result<(), MarketError> {
        Ok(())
    }
}
