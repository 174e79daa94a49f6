//! TON amounts, the shop wallet's signed transfers, and the [`TonChain`] interface to the
//! blockchain (a TON HTTP API such as toncenter).
//!
//! Why a transfer can never be paid twice: a wallet's external message carries the wallet's
//! sequence number (`seqno`) and an expiry (`valid_until`). The wallet contract accepts it
//! only while its seqno equals the message's and the expiry has not passed, and increments the
//! seqno when it does. So the same signed bytes execute at most once however often they are
//! broadcast, and once the expiry has passed with the seqno unchanged, they never will.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use starledger_ledger::money::Amount;

/// An amount of TON in nanotons (10^-9 TON), the unit of the blockchain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanotons(pub u64);

impl Nanotons {
    pub const PER_TON: u64 = 1_000_000_000;

    /// Parses a decimal count of nanotons as APIs send it (`"2500000000"`).
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok().map(Self)
    }

    /// From a TON amount with at most 9 decimals; `None` if it has more or is out of range.
    pub fn from_ton(ton: Decimal) -> Option<Self> {
        let nano = ton.checked_mul(Decimal::from(Self::PER_TON))?;
        if nano.fract() != Decimal::ZERO || nano.is_sign_negative() {
            return None;
        }
        u64::try_from(nano).ok().map(Self)
    }

    /// The amount in TON.
    pub fn to_ton(self) -> Decimal {
        Decimal::from(self.0) / Decimal::from(Self::PER_TON)
    }

    /// As a ledger amount (`None` for zero, which the ledger does not record as an amount).
    pub fn to_amount(self) -> Option<Amount> {
        Amount::new(self.to_ton().normalize()).ok()
    }

    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }
}

impl fmt::Display for Nanotons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} TON", self.to_ton().normalize())
    }
}

/// The shop wallet as Fragment wants to know it (its `account` parameter, TON Connect style).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletAccount {
    /// Raw form, `0:<64 hex>`.
    pub address: String,
    /// Ed25519 public key, 64 hex characters.
    pub public_key: String,
    /// The wallet's state init (code and data), base64 of its bag of cells.
    pub state_init: String,
}

/// One transfer a payment makes, as Fragment asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferMessage {
    /// Destination address as given (raw `0:…` or user-friendly base64).
    pub destination: String,
    pub amount: Nanotons,
    /// Message body, base64 of a bag of cells (Fragment's carries the order reference).
    pub payload: Option<String>,
}

/// A payment signed by the shop wallet and ready to broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTransfer {
    pub seqno: u32,
    pub valid_until: DateTime<Utc>,
    /// The external message, base64 of its bag of cells: what is broadcast (and recorded).
    pub message: String,
    /// Hash of the external message cell, 64 hex characters: what is looked for on chain.
    pub message_hash: String,
    /// What it pays, in order.
    pub transfers: Vec<TransferMessage>,
}

impl SignedTransfer {
    /// The sum of the transfers (`None` on overflow, which no real payment reaches).
    pub fn total(&self) -> Option<Nanotons> {
        self.transfers
            .iter()
            .try_fold(Nanotons(0), |sum, t| sum.checked_add(t.amount))
    }
}

/// The shop wallet's state on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletState {
    pub balance: Nanotons,
    /// The seqno the next accepted message must carry (0 for a wallet never deployed).
    pub seqno: u32,
    /// False until the wallet's first outgoing message deploys it.
    pub deployed: bool,
}

/// A transaction of the shop wallet that executed one of our external messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTransaction {
    /// Transaction hash, 64 hex characters.
    pub hash: String,
    /// Logical time, the wallet's transaction order.
    pub lt: u64,
    pub at: DateTime<Utc>,
    /// Hash of the external message it executed (hex), equal to [`SignedTransfer::message_hash`].
    pub message_hash: String,
    /// The transfers it sent out.
    pub transfers: Vec<TransferMessage>,
}

/// Why the wallet could not sign a payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot sign the payment: {0}")]
pub struct SignError(pub String);

/// The shop wallet as the fulfilment worker uses it: who it is, and signing payments. Pure:
/// no I/O. Implemented by the wallet derived from `FRAGMENT_SEED_PHRASE`.
pub trait WalletSigner: Send + Sync {
    fn account(&self) -> WalletAccount;

    /// Signs an external message carrying `transfers` with `seqno`, executable until
    /// `valid_until`.
    fn sign_transfer(
        &self,
        seqno: u32,
        valid_until: DateTime<Utc>,
        transfers: &[TransferMessage],
    ) -> Result<SignedTransfer, SignError>;
}

/// Why the chain could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// Timeouts, connection errors, 5xx, rate limits, an open circuit breaker: try later.
    #[error("TON API unavailable: {0}")]
    Unavailable(String),
    /// The API refused the request (e.g. a malformed or already-expired message).
    #[error("TON API refused the request: {0}")]
    Refused(String),
    #[error("TON API answered something unusable: {0}")]
    BadResponse(String),
}

/// The blockchain as the fulfilment worker uses it. Implemented over a TON HTTP API
/// (toncenter by default) and by the sandbox.
#[async_trait]
pub trait TonChain: Send + Sync {
    /// For logs and metrics: `toncenter`, `sandbox`, …
    fn name(&self) -> &'static str;

    /// The wallet's balance and seqno.
    async fn wallet_state(&self, address: &str) -> Result<WalletState, ChainError>;

    /// Broadcasts a signed external message. Broadcasting the same bytes again is harmless
    /// (see the module doc), so this may be retried freely.
    async fn broadcast(&self, transfer: &SignedTransfer) -> Result<(), ChainError>;

    /// The wallet's transaction that executed the external message with this hash, looking
    /// back no further than `since`; `None` if there is none (yet).
    async fn find_transaction(
        &self,
        address: &str,
        message_hash: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<ChainTransaction>, ChainError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanotons_convert_exactly() {
        let ton: Decimal = "2.5".parse().unwrap();
        assert_eq!(Nanotons::from_ton(ton), Some(Nanotons(2_500_000_000)));
        assert_eq!(Nanotons(2_500_000_000).to_ton(), ton);
        assert_eq!(Nanotons::from_ton("0.0000000001".parse().unwrap()), None);
        assert_eq!(Nanotons::from_ton("-1".parse().unwrap()), None);
        assert_eq!(
            Nanotons::parse("12500000000"),
            Some(Nanotons(12_500_000_000))
        );
        for bad in ["", "-1", "1.5", "1e9", "99999999999999999999999"] {
            assert_eq!(Nanotons::parse(bad), None, "{bad}");
        }
        assert_eq!(Nanotons(0).to_amount(), None);
        assert_eq!(
            Nanotons(1).to_amount().map(|a| a.to_string()),
            Some("0.000000001".to_owned())
        );
    }
}
