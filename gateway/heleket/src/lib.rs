//! Heleket, the crypto payment processor users top up through.
//!
//! - [`sign`]: request signatures and webhook signature verification.
//! - [`wire`]: what Heleket sends and answers (statuses, invoices, webhooks), parsed into
//!   our types at the edge, and the order id that ties an invoice to a recharge.
//! - [`client`]: the real HTTP client (timeouts, retries, circuit breaker).
//! - [`sandbox`]: a local stand-in that creates invoices and "pays" them by sending our own
//!   endpoint correctly signed webhooks.
//!
//! The rest of the gateway talks to a [`PaymentProvider`] and never knows which one it has.
//!
//! May depend on: `starledger-ledger` (money, ids, the payment report the money rules judge),
//! and with the `client` feature (on by default) `starledger-outbound` and
//! `starledger-settings`. No actix, no teloxide: the fuzz targets build `sign` and `wire`
//! with the feature off.

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod sandbox;
#[cfg(feature = "client")]
pub mod settings;
pub mod sign;
pub mod wire;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use starledger_ledger::money::{Amount, Currency};

pub use wire::{OrderId, PaymentFacts, PaymentInfo, PaymentStatus, Webhook};

/// What we ask Heleket for when a user tops up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRequest {
    pub amount: Amount,
    /// The invoice's coin, and the only one the payer may pay with.
    pub currency: Currency,
    /// The blockchain network of that coin, as Heleket names it (`ton`).
    pub network: String,
    /// Derived from the recharge id: asking twice returns the same invoice.
    pub order_id: OrderId,
    /// Where Heleket sends this invoice's webhooks.
    pub url_callback: String,
    /// How long the invoice can be paid, in seconds (Heleket allows 300 to 43,200).
    pub lifetime_seconds: u32,
}

/// An invoice Heleket created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedInvoice {
    pub uuid: String,
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Why a provider call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Timeouts, connection errors, 5xx and 429 after the retries: try again later.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// Too many recent failures: calls are refused for a while without being tried.
    #[error("payment provider circuit is open; calls resume after a cool-down")]
    CircuitOpen,
    /// The provider understood the request and refused it (4xx or `state` ≠ 0). Retrying the
    /// same request will not help.
    #[error("payment provider refused the request: {0}")]
    Refused(String),
    /// The provider knows no such invoice.
    #[error("payment provider has no invoice for order {0}")]
    NotFound(String),
    /// The answer could not be understood.
    #[error("payment provider answered something we cannot read: {0}")]
    BadResponse(String),
}

/// An invoice provider: the real Heleket API or the sandbox.
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Creates an invoice (or returns the one that already exists for `order_id`).
    async fn create_invoice(
        &self,
        request: &InvoiceRequest,
    ) -> Result<CreatedInvoice, ProviderError>;

    /// The invoice's current state: by its `uuid` when known (to confirm a webhook), else by
    /// our order id (to reconcile). An answer about another invoice is an error.
    async fn payment_info(
        &self,
        order_id: &OrderId,
        uuid: Option<&str>,
    ) -> Result<PaymentInfo, ProviderError>;

    /// `heleket` or `sandbox`, for logs and metrics.
    fn name(&self) -> &'static str;

    /// Whether the circuit breaker is refusing calls right now (for `/metrics` and `/readyz`).
    fn circuit_open(&self) -> bool {
        false
    }
}
