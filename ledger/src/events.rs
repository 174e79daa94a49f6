//! The account events, their JSON form, their schema versions and upcasting of old versions.
//!
//! An event is stored as `event_type` + `schema_version` + `data` (JSON). Writers always write
//! the current version; readers accept every version ever written and upcast it here, so the
//! rest of the code only ever sees the current shape. Each type has a JSON Schema in
//! `schemas/events/` that a test checks serialised events against.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use rust_decimal::Decimal;

use crate::ids::{AdjustmentId, PurchaseId, RechargeId, UserId, Username};
use crate::money::{Amount, Currency, SignedAmount};
use crate::postings::Posting;

/// Why stored bytes could not be turned back into an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("{event_type} has no schema version {version}")]
    UnknownVersion { event_type: String, version: i32 },
    #[error("{event_type} v{version} does not match its schema: {source}")]
    Shape {
        event_type: String,
        version: i32,
        source: serde_json::Error,
    },
}

/// A number of Telegram Stars in one order. Fragment sells 50 to 1,000,000 per order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Stars(u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a Stars order must be between 50 and 1000000 stars, got {0}")]
pub struct StarsError(pub i64);

impl Stars {
    pub const MIN: u32 = 50;
    pub const MAX: u32 = 1_000_000;

    pub fn new(count: i64) -> Result<Self, StarsError> {
        if (i64::from(Self::MIN)..=i64::from(Self::MAX)).contains(&count) {
            Ok(Self(count as u32))
        } else {
            Err(StarsError(count))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Stars {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Stars::new(i64::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// The Heleket invoice behind a recharge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub uuid: String,
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Why a recharge was credited: the provider's status, or an operator's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaidStatus {
    /// Paid in full.
    Paid,
    /// Paid more than the invoice asked (within the tolerance that is credited unattended).
    PaidOver,
    /// Paid less than the invoice asked; the provider keeps what arrived, so that is credited.
    WrongAmount,
    /// An operator decided the credit of a recharge that needed review or was on hold.
    Reviewed,
}

/// Why a payment was not credited automatically and waits for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewReason {
    /// Paid (or invoiced) in another coin than the ledger's.
    ForeignCoin,
    /// The provider did not say which coin was paid.
    MissingCoin,
    /// What arrived is missing or not an amount the ledger can hold.
    UnreadableAmount,
    /// More arrived than the invoice plus the overpayment tolerance.
    AboveTolerance,
    /// The provider's status contradicts its amounts (an underpayment of the full amount).
    InconsistentReport,
    /// A refund failed: the money may be with us although nothing was credited.
    RefundFailed,
    /// Another payment report while the recharge already waits for an operator.
    WhileInReview,
    /// A payment report after an operator's review closed the recharge without a credit:
    /// the operator decides again (they may have refunded the payer by other means).
    AfterReview,
}

impl ReviewReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ForeignCoin => "foreign_coin",
            Self::MissingCoin => "missing_coin",
            Self::UnreadableAmount => "unreadable_amount",
            Self::AboveTolerance => "above_tolerance",
            Self::InconsistentReport => "inconsistent_report",
            Self::RefundFailed => "refund_failed",
            Self::WhileInReview => "while_in_review",
            Self::AfterReview => "after_review",
        }
    }
}

/// An operator's decision, recorded on the event it caused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub admin: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: UserId,
    pub username: Option<String>,
    pub language: Option<String>,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RechargeRequested {
    pub recharge_id: RechargeId,
    pub amount: Amount,
    pub currency: Currency,
    pub invoice: Invoice,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RechargeSettled {
    pub recharge_id: RechargeId,
    pub status: PaidStatus,
    /// What arrived in the ledger's coin, which is what gets credited (within the tolerance
    /// above the invoice; less than it for an underpayment).
    pub credited: Amount,
    pub currency: Currency,
    pub txid: Option<String>,
    /// Less than the invoice asked was credited (v2; false in v1).
    #[serde(default)]
    pub partial: bool,
    /// The part of `credited` that paid the customer's open debt before the rest became
    /// available (v2; zero in v1).
    #[serde(default, with = "rust_decimal::serde::str")]
    pub debt_repaid: Decimal,
    /// Set when an operator decided this credit (v2).
    #[serde(default)]
    pub resolution: Option<Resolution>,
    pub postings: Vec<Posting>,
}

/// The provider holds a payment for an AML check (`locked`): nothing is credited or failed
/// until a later final status, or an operator, decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RechargeHeld {
    pub recharge_id: RechargeId,
    pub provider_status: String,
    /// The provider's fields as received, the text of a JSON object (never the signature).
    pub facts: String,
}

/// A payment that is never credited automatically (another coin, an unreadable amount, more
/// than the tolerance allows, …): it waits for an operator, with the raw facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RechargeReviewRequired {
    pub recharge_id: RechargeId,
    pub reason: ReviewReason,
    /// What was wrong, in words.
    pub detail: String,
    pub provider_status: String,
    /// The provider's fields as received, the text of a JSON object (never the signature).
    pub facts: String,
}

/// A credited payment went back to the payer (`refund_paid`, or a final failure after the
/// credit): the credit is taken back. What the customer no longer has available becomes
/// their debt, so available never goes negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RechargeReversed {
    pub recharge_id: RechargeId,
    pub provider_status: String,
    /// The credit taken back: what the recharge had credited.
    pub reversed: Amount,
    /// Of `reversed`, what came out of the available balance.
    #[serde(with = "rust_decimal::serde::str")]
    pub from_available: Decimal,
    /// Of `reversed`, what the customer now owes.
    #[serde(with = "rust_decimal::serde::str")]
    pub debt: Decimal,
    pub currency: Currency,
    pub postings: Vec<Posting>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RechargeFailed {
    pub recharge_id: RechargeId,
    /// The provider status (`cancel`, `fail`, …) or `expired`.
    pub reason: String,
}

/// The buyer's Telegram profile changed (seen in an update after registration): the new
/// username (`None`: they gave it up) and language. Informational: no order reads it, since an
/// order records whom it delivers to when it is confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileUpdated {
    pub username: Option<String>,
    pub language: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseRequested {
    pub purchase_id: PurchaseId,
    pub stars: Stars,
    /// Gift recipient; `None` buys for the user's own account.
    pub recipient: Option<Username>,
    /// The username the Stars go to: the gift's recipient, or the buyer's own username as
    /// Telegram showed it when they confirmed. `None` only in v1 events of orders for the
    /// buyer's own account, which recorded no name (fulfilment refunds those rather than
    /// guess one).
    pub deliver_to: Option<Username>,
    pub price: Amount,
    pub currency: Currency,
    pub postings: Vec<Posting>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentOrderPlaced {
    pub purchase_id: PurchaseId,
    pub fragment_request_id: String,
    pub ton_amount: Amount,
}

/// One transfer out of the shop wallet, in TON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletTransfer {
    pub destination: String,
    pub amount: Amount,
    /// The message body Fragment asked the transfer to carry (base64 of a bag of cells): its
    /// comment names the order, and the transaction on chain must show the same. `None` in
    /// events before v3, which did not record it.
    #[serde(default)]
    pub payload: Option<String>,
}

/// The shop wallet's payment for a Fragment order, signed and recorded *before* it is
/// broadcast (write-ahead): whatever happens next, a restart finds the exact message that may
/// be on its way and re-sends or looks for those bytes, never a second payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentOrderSent {
    pub purchase_id: PurchaseId,
    /// Hash of the signed external message (hex): what to look for on chain.
    pub wallet_tx: String,
    /// The wallet sequence number the message carries: it can execute only while the wallet
    /// is at exactly this seqno, so it executes at most once.
    pub seqno: Option<u32>,
    /// After this moment the message can never execute.
    pub valid_until: Option<DateTime<Utc>>,
    /// The signed external message, base64 of its bag of cells, so a restart re-sends the
    /// same bytes. Not a secret: it is public once broadcast.
    pub message: Option<String>,
    /// What the message pays, to whom: what its transaction on chain must show going out.
    #[serde(default)]
    pub transfers: Vec<WalletTransfer>,
    /// 1 for the first payment; a later attempt is recorded only once the previous one has
    /// provably expired without executing.
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseCompleted {
    pub purchase_id: PurchaseId,
    pub postings: Vec<Posting>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseFailed {
    pub purchase_id: PurchaseId,
    pub reason: String,
    pub postings: Vec<Posting>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceAdjusted {
    pub adjustment_id: AdjustmentId,
    pub amount: SignedAmount,
    pub currency: Currency,
    pub admin: String,
    pub reason: String,
    pub postings: Vec<Posting>,
}

/// Everything that can happen to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    UserRegistered(UserRegistered),
    ProfileUpdated(ProfileUpdated),
    RechargeRequested(RechargeRequested),
    RechargeSettled(RechargeSettled),
    RechargeFailed(RechargeFailed),
    RechargeHeld(RechargeHeld),
    RechargeReviewRequired(RechargeReviewRequired),
    RechargeReversed(RechargeReversed),
    PurchaseRequested(PurchaseRequested),
    FragmentOrderPlaced(FragmentOrderPlaced),
    FragmentOrderSent(FragmentOrderSent),
    PurchaseCompleted(PurchaseCompleted),
    PurchaseFailed(PurchaseFailed),
    BalanceAdjusted(BalanceAdjusted),
}

/// Every event type with the schema version writers use today.
pub const CURRENT_VERSIONS: &[(&str, i32)] = &[
    ("UserRegistered", 2),
    ("ProfileUpdated", 1),
    ("RechargeRequested", 1),
    ("RechargeSettled", 2),
    ("RechargeFailed", 1),
    ("RechargeHeld", 1),
    ("RechargeReviewRequired", 1),
    ("RechargeReversed", 1),
    ("PurchaseRequested", 2),
    ("FragmentOrderPlaced", 1),
    ("FragmentOrderSent", 3),
    ("PurchaseCompleted", 1),
    ("PurchaseFailed", 2),
    ("BalanceAdjusted", 2),
];

impl AccountEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::UserRegistered(_) => "UserRegistered",
            Self::ProfileUpdated(_) => "ProfileUpdated",
            Self::RechargeRequested(_) => "RechargeRequested",
            Self::RechargeSettled(_) => "RechargeSettled",
            Self::RechargeFailed(_) => "RechargeFailed",
            Self::RechargeHeld(_) => "RechargeHeld",
            Self::RechargeReviewRequired(_) => "RechargeReviewRequired",
            Self::RechargeReversed(_) => "RechargeReversed",
            Self::PurchaseRequested(_) => "PurchaseRequested",
            Self::FragmentOrderPlaced(_) => "FragmentOrderPlaced",
            Self::FragmentOrderSent(_) => "FragmentOrderSent",
            Self::PurchaseCompleted(_) => "PurchaseCompleted",
            Self::PurchaseFailed(_) => "PurchaseFailed",
            Self::BalanceAdjusted(_) => "BalanceAdjusted",
        }
    }

    pub fn schema_version(&self) -> i32 {
        let event_type = self.event_type();
        CURRENT_VERSIONS
            .iter()
            .find(|(name, _)| *name == event_type)
            .map_or(1, |(_, version)| *version)
    }

    /// The JSON `data` written to the log (always the current schema version).
    pub fn to_data(&self) -> Value {
        let encoded = match self {
            Self::UserRegistered(e) => serde_json::to_value(e),
            Self::ProfileUpdated(e) => serde_json::to_value(e),
            Self::RechargeRequested(e) => serde_json::to_value(e),
            Self::RechargeSettled(e) => serde_json::to_value(e),
            Self::RechargeFailed(e) => serde_json::to_value(e),
            Self::RechargeHeld(e) => serde_json::to_value(e),
            Self::RechargeReviewRequired(e) => serde_json::to_value(e),
            Self::RechargeReversed(e) => serde_json::to_value(e),
            Self::PurchaseRequested(e) => serde_json::to_value(e),
            Self::FragmentOrderPlaced(e) => serde_json::to_value(e),
            Self::FragmentOrderSent(e) => serde_json::to_value(e),
            Self::PurchaseCompleted(e) => serde_json::to_value(e),
            Self::PurchaseFailed(e) => serde_json::to_value(e),
            Self::BalanceAdjusted(e) => serde_json::to_value(e),
        };
        // Our payloads are plain structs of strings, numbers and options: serialising them to
        // a `Value` has no failure case (no non-string map keys, no failing Serialize impls).
        encoded.unwrap_or(Value::Null)
    }

    /// The double-entry postings this event carries (empty for events that move no money).
    pub fn postings(&self) -> &[Posting] {
        match self {
            Self::RechargeSettled(e) => &e.postings,
            Self::RechargeReversed(e) => &e.postings,
            Self::PurchaseRequested(e) => &e.postings,
            Self::PurchaseCompleted(e) => &e.postings,
            Self::PurchaseFailed(e) => &e.postings,
            Self::BalanceAdjusted(e) => &e.postings,
            Self::UserRegistered(_)
            | Self::ProfileUpdated(_)
            | Self::RechargeRequested(_)
            | Self::RechargeFailed(_)
            | Self::RechargeHeld(_)
            | Self::RechargeReviewRequired(_)
            | Self::FragmentOrderPlaced(_)
            | Self::FragmentOrderSent(_) => &[],
        }
    }

    /// Reads any stored version of any event type, upcasting old versions.
    pub fn decode(event_type: &str, schema_version: i32, data: &str) -> Result<Self, DecodeError> {
        fn parse<T: DeserializeOwned>(
            event_type: &str,
            version: i32,
            data: &str,
        ) -> Result<T, DecodeError> {
            serde_json::from_str(data).map_err(|source| DecodeError::Shape {
                event_type: event_type.to_owned(),
                version,
                source,
            })
        }
        let unknown_version = || DecodeError::UnknownVersion {
            event_type: event_type.to_owned(),
            version: schema_version,
        };
        let v = schema_version;
        Ok(match (event_type, v) {
            ("UserRegistered", 1) => {
                Self::UserRegistered(upcast_user_registered_v1(parse(event_type, v, data)?))
            }
            ("UserRegistered", 2) => Self::UserRegistered(parse(event_type, v, data)?),
            ("ProfileUpdated", 1) => Self::ProfileUpdated(parse(event_type, v, data)?),
            ("RechargeRequested", 1) => Self::RechargeRequested(parse(event_type, v, data)?),
            // v2 added `partial`, `debt_repaid` and `resolution`, whose defaults are what a v1
            // settlement was: a full credit, no debt, no operator.
            ("RechargeSettled", 1 | 2) => Self::RechargeSettled(parse(event_type, v, data)?),
            ("RechargeFailed", 1) => Self::RechargeFailed(parse(event_type, v, data)?),
            ("RechargeHeld", 1) => Self::RechargeHeld(parse(event_type, v, data)?),
            ("RechargeReviewRequired", 1) => {
                Self::RechargeReviewRequired(parse(event_type, v, data)?)
            }
            ("RechargeReversed", 1) => Self::RechargeReversed(parse(event_type, v, data)?),
            ("PurchaseRequested", 1) => {
                Self::PurchaseRequested(upcast_purchase_requested_v1(parse(event_type, v, data)?))
            }
            ("PurchaseRequested", 2) => Self::PurchaseRequested(parse(event_type, v, data)?),
            ("FragmentOrderPlaced", 1) => Self::FragmentOrderPlaced(parse(event_type, v, data)?),
            ("FragmentOrderSent", 1) => {
                Self::FragmentOrderSent(upcast_fragment_order_sent_v1(parse(event_type, v, data)?))
            }
            // v3 added each transfer's `payload`; a v2 transfer has none recorded.
            ("FragmentOrderSent", 2 | 3) => Self::FragmentOrderSent(parse(event_type, v, data)?),
            ("PurchaseCompleted", 1) => Self::PurchaseCompleted(parse(event_type, v, data)?),
            // v2 of these two has the same fields; its postings may also name the customer's
            // debt account (money released or credited pays an open debt first).
            ("PurchaseFailed", 1 | 2) => Self::PurchaseFailed(parse(event_type, v, data)?),
            ("BalanceAdjusted", 1 | 2) => Self::BalanceAdjusted(parse(event_type, v, data)?),
            (known, _) if CURRENT_VERSIONS.iter().any(|(name, _)| *name == known) => {
                return Err(unknown_version())
            }
            (unknown, _) => return Err(DecodeError::UnknownType(unknown.to_owned())),
        })
    }
}

/// Version 1 of `UserRegistered` had the seed's shape: a user id and a username. Version 2
/// added the Telegram language and the account currency; v1 accounts were all in the seed's
/// default currency, TON.
#[derive(Debug, Deserialize)]
struct UserRegisteredV1 {
    user_id: UserId,
    username: Option<String>,
}

fn upcast_user_registered_v1(old: UserRegisteredV1) -> UserRegistered {
    UserRegistered {
        user_id: old.user_id,
        username: old.username,
        language: None,
        currency: Currency::ton(),
    }
}

/// Version 1 of `PurchaseRequested` named only a gift's recipient; an order for the buyer's
/// own account left the name to be looked up at delivery. Version 2 records whom the Stars go
/// to in every order (`deliver_to`); a v1 gift delivers to its recipient, a v1 order for the
/// buyer's own account to no recorded name.
#[derive(Debug, Deserialize)]
struct PurchaseRequestedV1 {
    purchase_id: PurchaseId,
    stars: Stars,
    recipient: Option<Username>,
    price: Amount,
    currency: Currency,
    postings: Vec<Posting>,
}

fn upcast_purchase_requested_v1(old: PurchaseRequestedV1) -> PurchaseRequested {
    PurchaseRequested {
        purchase_id: old.purchase_id,
        stars: old.stars,
        deliver_to: old.recipient.clone(),
        recipient: old.recipient,
        price: old.price,
        currency: old.currency,
        postings: old.postings,
    }
}

/// Version 1 of `FragmentOrderSent` was written after the payment, with only a transaction
/// reference. Version 2 is the write-ahead record of the signed message; a v1 event is the
/// first attempt, with nothing known about its message.
#[derive(Debug, Deserialize)]
struct FragmentOrderSentV1 {
    purchase_id: PurchaseId,
    wallet_tx: String,
}

fn upcast_fragment_order_sent_v1(old: FragmentOrderSentV1) -> FragmentOrderSent {
    FragmentOrderSent {
        purchase_id: old.purchase_id,
        wallet_tx: old.wallet_tx,
        seqno: None,
        valid_until: None,
        message: None,
        transfers: Vec::new(),
        attempt: 1,
    }
}

/// Who caused an event, as written in its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    Heleket,
    Admin(String),
    System,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Heleket => f.write_str("heleket"),
            Self::Admin(name) => write!(f, "admin:{name}"),
            Self::System => f.write_str("system"),
        }
    }
}

/// Context stored beside every event: why it was written and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub correlation_id: uuid::Uuid,
    pub causation_id: Option<uuid::Uuid>,
    pub actor: String,
    pub idempotency_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_registered_v1_is_upcast_with_the_seed_defaults() {
        let event = AccountEvent::decode(
            "UserRegistered",
            1,
            &json!({"user_id": 42, "username": "alice_01"}).to_string(),
        )
        .unwrap();
        let AccountEvent::UserRegistered(registered) = event else {
            panic!("wrong variant");
        };
        assert_eq!(registered.currency, Currency::ton());
        assert_eq!(registered.language, None);
        assert_eq!(registered.username.as_deref(), Some("alice_01"));
    }

    #[test]
    fn unknown_types_and_versions_are_errors_not_panics() {
        assert!(matches!(
            AccountEvent::decode("Nope", 1, &json!({}).to_string()),
            Err(DecodeError::UnknownType(_))
        ));
        assert!(matches!(
            AccountEvent::decode("RechargeFailed", 9, &json!({}).to_string()),
            Err(DecodeError::UnknownVersion { .. })
        ));
        assert!(matches!(
            AccountEvent::decode("RechargeFailed", 1, &json!({"recharge_id": 5}).to_string()),
            Err(DecodeError::Shape { .. })
        ));
    }

    #[test]
    fn stars_are_bounded_by_fragment_limits() {
        assert!(Stars::new(49).is_err());
        assert!(Stars::new(50).is_ok());
        assert!(Stars::new(1_000_000).is_ok());
        assert!(Stars::new(1_000_001).is_err());
        assert!(Stars::new(-100).is_err());
    }
}
