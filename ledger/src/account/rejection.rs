//! Why an account refused a command: a typed reason with a stable code for API errors.
//! A refused command writes nothing.

use rust_decimal::Decimal;

use super::state::PurchaseStatus;
use crate::ids::{AdjustmentId, PurchaseId, RechargeId};
use crate::money::Currency;

/// Why an account refused a command. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("user is not registered")]
    UnknownUser,
    #[error("user is already registered")]
    AlreadyRegistered,
    /// An update showed the profile already recorded: nothing to record.
    #[error("the profile is already up to date")]
    ProfileUnchanged,
    #[error("currency {got} does not match the account currency {account}")]
    CurrencyMismatch { account: Currency, got: Currency },
    #[error("recharge {0} already exists")]
    DuplicateRecharge(RechargeId),
    #[error("recharge {0} does not exist")]
    UnknownRecharge(RechargeId),
    #[error("recharge {0} is already settled")]
    RechargeAlreadySettled(RechargeId),
    #[error("recharge {0} has already failed")]
    RechargeAlreadyFailed(RechargeId),
    #[error("recharge {0} was credited and then reversed")]
    RechargeAlreadyReversed(RechargeId),
    #[error("recharge {0} is already on hold")]
    RechargeAlreadyHeld(RechargeId),
    #[error("recharge {0} waits for an operator's review; nothing is credited automatically")]
    RechargeInReview(RechargeId),
    #[error("recharge {recharge_id} is {status}: only a recharge that needs review or is on hold can be resolved")]
    RechargeNotAwaitingDecision {
        recharge_id: RechargeId,
        status: &'static str,
    },
    #[error("the account owes {debt}: purchases wait until the debt is paid")]
    AccountInDebt { debt: Decimal },
    #[error("a payment to Fragment is recorded for purchase {0} and may have delivered the stars: check on chain and with Fragment, then fail it with force")]
    PaymentRecorded(PurchaseId),
    #[error("overpayment tolerance must be 0 to {max} percent")]
    InvalidTolerance { max: u32 },
    #[error("provider facts must be a JSON object of at most {max} bytes")]
    InvalidFacts { max: usize },
    #[error("insufficient funds: {available} available, {required} required")]
    InsufficientFunds {
        available: Decimal,
        required: Decimal,
    },
    #[error("purchase {0} already exists")]
    DuplicatePurchase(PurchaseId),
    #[error("purchase {0} does not exist")]
    UnknownPurchase(PurchaseId),
    #[error("purchase {purchase_id} is {status:?} and cannot go there from that state")]
    PurchaseNotOpen {
        purchase_id: PurchaseId,
        status: PurchaseStatus,
    },
    #[error("purchase {purchase_id}: payment attempt {got} is out of order (next is {expected})")]
    PaymentAttemptOutOfOrder {
        purchase_id: PurchaseId,
        expected: u32,
        got: u32,
    },
    #[error("adjustment {0} already exists")]
    DuplicateAdjustment(AdjustmentId),
    #[error(
        "adjustment of {amount} would leave a negative available balance ({available} available)"
    )]
    AdjustmentWouldOverdraw { amount: Decimal, available: Decimal },
    #[error("{field} must be 1 to {max} characters")]
    InvalidText { field: &'static str, max: usize },
}

impl Rejection {
    /// A stable machine-readable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::AlreadyRegistered => "already_registered",
            Self::ProfileUnchanged => "profile_unchanged",
            Self::CurrencyMismatch { .. } => "currency_mismatch",
            Self::DuplicateRecharge(_) => "duplicate_recharge",
            Self::UnknownRecharge(_) => "unknown_recharge",
            Self::RechargeAlreadySettled(_) => "recharge_already_settled",
            Self::RechargeAlreadyFailed(_) => "recharge_already_failed",
            Self::RechargeAlreadyReversed(_) => "recharge_already_reversed",
            Self::RechargeAlreadyHeld(_) => "recharge_already_held",
            Self::RechargeInReview(_) => "recharge_in_review",
            Self::RechargeNotAwaitingDecision { .. } => "recharge_not_awaiting_decision",
            Self::AccountInDebt { .. } => "account_in_debt",
            Self::PaymentRecorded(_) => "payment_recorded",
            Self::InvalidTolerance { .. } => "invalid_tolerance",
            Self::InvalidFacts { .. } => "invalid_facts",
            Self::InsufficientFunds { .. } => "insufficient_funds",
            Self::DuplicatePurchase(_) => "duplicate_purchase",
            Self::UnknownPurchase(_) => "unknown_purchase",
            Self::PurchaseNotOpen { .. } => "purchase_not_open",
            Self::PaymentAttemptOutOfOrder { .. } => "payment_attempt_out_of_order",
            Self::DuplicateAdjustment(_) => "duplicate_adjustment",
            Self::AdjustmentWouldOverdraw { .. } => "adjustment_would_overdraw",
            Self::InvalidText { .. } => "invalid_text",
        }
    }
}
