//! Commands on an account and the rules that turn them into events (the "decide" half).
//!
//! `decide` sees only the current state and the command: it does no I/O and reads no clock.
//! A command the rules refuse yields a typed [`Rejection`] and no events.

use rust_decimal::Decimal;
use serde_json::Value;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use super::state::{Account, PurchaseStatus, Recharge, RechargeStatus};
use crate::events::*;
use crate::ids::{AdjustmentId, PurchaseId, RechargeId, UserId, Username};
use crate::money::{Amount, Currency, SignedAmount};
use crate::postings::{split, transfer, LedgerAccount, Posting};

/// Longest free-text reason (failure reason, admin reason) kept in an event.
pub const MAX_REASON_LEN: usize = 500;

/// Most transfers one wallet payment may carry (a v4 wallet sends at most 4 per message).
pub const MAX_WALLET_TRANSFERS: usize = 4;

/// Longest signed wallet message (base64) kept in an event. A wallet transfer with a few
/// messages and their comment payloads is well under 2 KiB.
pub const MAX_WALLET_MESSAGE_LEN: usize = 8_192;

/// Most overpayment tolerance a settlement may allow, in percent.
pub const MAX_TOLERANCE_PERCENT: u32 = 100;

/// Largest provider facts kept on a review or hold event (serialised JSON).
pub const MAX_FACTS_BYTES: usize = 8_192;

/// What a payment provider reports as its final word on a recharge's invoice, sorted into
/// what the ledger acts on. Interim statuses never reach the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedOutcome {
    /// Paid in full (`paid`).
    Paid,
    /// Paid more than invoiced (`paid_over`).
    PaidOver,
    /// Paid less than invoiced, and the provider keeps it (`wrong_amount`).
    Underpaid,
    /// Held for an AML check (`locked`).
    Held,
    /// Ended without the money staying with us: unpaid (`cancel`, `fail`, `system_fail`) or
    /// refunded to the payer (`refund_paid`).
    Failed,
    /// A refund to the payer failed (`refund_fail`): the money is still with us.
    RefundFailed,
}

impl ReportedOutcome {
    /// Whether money reached us (or may have): a report a recharge must exist for.
    pub fn brings_money(self) -> bool {
        !matches!(self, Self::Failed)
    }
}

/// A provider's report on a payment: facts, not yet judged. The domain decides what they
/// mean for the account (credit, partial credit, hold, review, failure or reversal), so every
/// rule about what may be credited lives in [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReport {
    pub outcome: ReportedOutcome,
    /// The provider's own status word (`paid_over`, `locked`, …), kept on the events.
    pub provider_status: String,
    /// The coin the invoice was issued in, as the provider wrote it.
    pub invoice_currency: Option<String>,
    /// The coin the payer actually paid with, as the provider wrote it.
    pub paid_currency: Option<String>,
    /// What actually arrived, in `paid_currency`, as the provider wrote it.
    pub paid_amount: Option<String>,
    pub txid: Option<String>,
    /// The provider's fields as received (a JSON object, as text), kept on review and hold
    /// events for the operator.
    pub facts: String,
}

/// An operator's decision on a recharge that needs review or is on hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewDecision {
    /// Credit this amount (what the operator established arrived, in the ledger's coin).
    Credit(Amount),
    /// Credit nothing and close the recharge.
    Reject,
}

/// What a caller asks an account to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    Register {
        username: Option<String>,
        language: Option<String>,
        currency: Currency,
    },
    RequestRecharge {
        recharge_id: RechargeId,
        amount: Amount,
        currency: Currency,
        invoice: Invoice,
    },
    /// Credit an amount already judged to be creditable (demo, benchmarks, tests). Payments
    /// reported by a provider go through [`AccountCommand::RecordPayment`], which judges them.
    SettleRecharge {
        recharge_id: RechargeId,
        status: PaidStatus,
        paid: Amount,
        txid: Option<String>,
    },
    /// A provider's final word on a recharge's payment: the rules in [`decide`] turn it into
    /// a credit, a partial credit, a hold, a review, a failure or a reversal.
    RecordPayment {
        recharge_id: RechargeId,
        report: PaymentReport,
        /// How far above the invoice an overpayment is still credited unattended (percent).
        overpay_tolerance_percent: u32,
    },
    /// An operator decides a recharge that needs review or is on hold.
    ResolveRecharge {
        recharge_id: RechargeId,
        decision: ReviewDecision,
        admin: String,
        reason: String,
    },
    FailRecharge {
        recharge_id: RechargeId,
        reason: String,
    },
    /// Reserve the price of a Stars order.
    RequestPurchase {
        purchase_id: PurchaseId,
        stars: Stars,
        recipient: Option<Username>,
        price: Amount,
    },
    RecordFragmentOrder {
        purchase_id: PurchaseId,
        fragment_request_id: String,
        ton_amount: Amount,
    },
    /// Record the signed payment for the order before it is broadcast (see
    /// [`FragmentOrderSent`]). Attempt 1 follows the placed order; attempt n + 1 may follow
    /// attempt n only once the caller knows attempt n expired without executing.
    RecordFragmentSent {
        purchase_id: PurchaseId,
        wallet_tx: String,
        seqno: u32,
        valid_until: chrono::DateTime<chrono::Utc>,
        message: String,
        transfers: Vec<WalletTransfer>,
        attempt: u32,
    },
    /// Stars delivered: capture the reservation.
    CompletePurchase { purchase_id: PurchaseId },
    /// Delivery failed for good: release the reservation back to the customer. Once a
    /// payment to Fragment is recorded the order may have been delivered, so failing it needs
    /// `force` (whoever sets it has checked on chain and with Fragment).
    FailPurchase {
        purchase_id: PurchaseId,
        reason: String,
        force: bool,
    },
    AdjustBalance {
        adjustment_id: AdjustmentId,
        amount: SignedAmount,
        currency: Currency,
        admin: String,
        reason: String,
    },
}

impl AccountCommand {
    /// A stable name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Register { .. } => "register",
            Self::RequestRecharge { .. } => "request_recharge",
            Self::SettleRecharge { .. } => "settle_recharge",
            Self::RecordPayment { .. } => "record_payment",
            Self::ResolveRecharge { .. } => "resolve_recharge",
            Self::FailRecharge { .. } => "fail_recharge",
            Self::RequestPurchase { .. } => "request_purchase",
            Self::RecordFragmentOrder { .. } => "record_fragment_order",
            Self::RecordFragmentSent { .. } => "record_fragment_sent",
            Self::CompletePurchase { .. } => "complete_purchase",
            Self::FailPurchase { .. } => "fail_purchase",
            Self::AdjustBalance { .. } => "adjust_balance",
        }
    }

    /// Whether `event` is what this command records. A repeated command must match what its
    /// first execution stored; a different command reusing the idempotency key does not.
    pub fn is_recorded_by(&self, event: &AccountEvent) -> bool {
        use AccountCommand as C;
        use AccountEvent as E;
        match (self, event) {
            (C::Register { .. }, E::UserRegistered(_)) => true,
            (
                C::RequestRecharge {
                    recharge_id,
                    amount,
                    ..
                },
                E::RechargeRequested(e),
            ) => e.recharge_id == *recharge_id && e.amount == *amount,
            (
                C::SettleRecharge {
                    recharge_id, paid, ..
                },
                E::RechargeSettled(e),
            ) => e.recharge_id == *recharge_id && e.credited == *paid,
            (C::FailRecharge { recharge_id, .. }, E::RechargeFailed(e)) => {
                e.recharge_id == *recharge_id
            }
            // The same report again: the same credit, or the same provider status held,
            // reviewed or reversed. Another payment stated under the same key is not a repeat.
            (
                C::RecordPayment {
                    recharge_id,
                    report,
                    ..
                },
                event,
            ) => {
                recharge_of(event) == Some(*recharge_id)
                    && match event {
                        E::RechargeSettled(e) => {
                            report
                                .paid_amount
                                .as_deref()
                                .and_then(|paid| Amount::parse(paid.trim()).ok())
                                == Some(e.credited)
                        }
                        E::RechargeHeld(e) => e.provider_status == report.provider_status,
                        E::RechargeReviewRequired(e) => e.provider_status == report.provider_status,
                        E::RechargeReversed(e) => e.provider_status == report.provider_status,
                        E::RechargeFailed(_) => true,
                        _ => false,
                    }
            }
            (
                C::ResolveRecharge {
                    recharge_id,
                    decision: ReviewDecision::Credit(amount),
                    ..
                },
                E::RechargeSettled(e),
            ) => e.recharge_id == *recharge_id && e.credited == *amount,
            (
                C::ResolveRecharge {
                    recharge_id,
                    decision: ReviewDecision::Reject,
                    ..
                },
                E::RechargeFailed(e),
            ) => e.recharge_id == *recharge_id,
            (
                C::RequestPurchase {
                    purchase_id,
                    stars,
                    recipient,
                    ..
                },
                E::PurchaseRequested(e),
            ) => e.purchase_id == *purchase_id && e.stars == *stars && e.recipient == *recipient,
            (C::RecordFragmentOrder { purchase_id, .. }, E::FragmentOrderPlaced(e)) => {
                e.purchase_id == *purchase_id
            }
            (
                C::RecordFragmentSent {
                    purchase_id,
                    wallet_tx,
                    attempt,
                    ..
                },
                E::FragmentOrderSent(e),
            ) => {
                e.purchase_id == *purchase_id && e.attempt == *attempt && e.wallet_tx == *wallet_tx
            }
            (C::CompletePurchase { purchase_id }, E::PurchaseCompleted(e)) => {
                e.purchase_id == *purchase_id
            }
            (C::FailPurchase { purchase_id, .. }, E::PurchaseFailed(e)) => {
                e.purchase_id == *purchase_id
            }
            (
                C::AdjustBalance {
                    adjustment_id,
                    amount,
                    ..
                },
                E::BalanceAdjusted(e),
            ) => e.adjustment_id == *adjustment_id && e.amount == *amount,
            _ => false,
        }
    }
}

/// The recharge an event is about, if any.
fn recharge_of(event: &AccountEvent) -> Option<RechargeId> {
    use AccountEvent as E;
    match event {
        E::RechargeRequested(e) => Some(e.recharge_id),
        E::RechargeSettled(e) => Some(e.recharge_id),
        E::RechargeFailed(e) => Some(e.recharge_id),
        E::RechargeHeld(e) => Some(e.recharge_id),
        E::RechargeReviewRequired(e) => Some(e.recharge_id),
        E::RechargeReversed(e) => Some(e.recharge_id),
        _ => None,
    }
}

/// Why an account refused a command. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("user is not registered")]
    UnknownUser,
    #[error("user is already registered")]
    AlreadyRegistered,
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
    #[error("overpayment tolerance must be 0 to {MAX_TOLERANCE_PERCENT} percent")]
    InvalidTolerance,
    #[error("provider facts must be a JSON object of at most {MAX_FACTS_BYTES} bytes")]
    InvalidFacts,
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
            Self::InvalidTolerance => "invalid_tolerance",
            Self::InvalidFacts => "invalid_facts",
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

/// Whether `c` may stand in free text kept in the ledger: no control characters, and no
/// Unicode format characters (bidi overrides and isolates, zero-width spaces and joiners,
/// the byte-order mark, …), which make a name or a reason read differently from what it is.
pub fn is_clean_text_char(c: char) -> bool {
    !c.is_control() && c.general_category() != GeneralCategory::Format
}

/// Free text as the ledger keeps it: trimmed, 1 to `max` characters, every one clean.
pub fn checked_text(field: &'static str, text: &str, max: usize) -> Result<String, Rejection> {
    let trimmed = text.trim();
    if trimmed.is_empty()
        || trimmed.chars().count() > max
        || !trimmed.chars().all(is_clean_text_char)
    {
        return Err(Rejection::InvalidText { field, max });
    }
    Ok(trimmed.to_owned())
}

fn optional_text(
    field: &'static str,
    text: &Option<String>,
    max: usize,
) -> Result<Option<String>, Rejection> {
    text.as_deref()
        .map(|t| checked_text(field, t, max))
        .transpose()
}

/// Decides what `command` means for `account` (the stream of `user`).
pub fn decide(
    user: UserId,
    account: &Account,
    command: &AccountCommand,
) -> Result<Vec<AccountEvent>, Rejection> {
    let available = LedgerAccount::CustomerAvailable(user);
    let reserved = LedgerAccount::CustomerReserved(user);

    if let AccountCommand::Register {
        username,
        language,
        currency,
    } = command
    {
        if account.profile.is_some() {
            return Err(Rejection::AlreadyRegistered);
        }
        return Ok(vec![AccountEvent::UserRegistered(UserRegistered {
            user_id: user,
            username: optional_text("username", username, 64)?,
            language: optional_text("language", language, 16)?,
            currency: currency.clone(),
        })]);
    }

    let profile = account.profile.as_ref().ok_or(Rejection::UnknownUser)?;
    let currency = &profile.currency;
    let ctx = Customer {
        user,
        account,
        currency,
    };
    let same_currency = |got: &Currency| {
        if got == currency {
            Ok(())
        } else {
            Err(Rejection::CurrencyMismatch {
                account: currency.clone(),
                got: got.clone(),
            })
        }
    };
    let open_purchase = |purchase_id: &PurchaseId| {
        let purchase = account
            .purchases
            .get(purchase_id)
            .ok_or(Rejection::UnknownPurchase(*purchase_id))?;
        if purchase.status.is_open() {
            Ok(purchase)
        } else {
            Err(Rejection::PurchaseNotOpen {
                purchase_id: *purchase_id,
                status: purchase.status,
            })
        }
    };

    let event = match command {
        AccountCommand::Register { .. } => unreachable!("handled above"),
        AccountCommand::RequestRecharge {
            recharge_id,
            amount,
            currency: requested,
            invoice,
        } => {
            same_currency(requested)?;
            if account.recharges.contains_key(recharge_id) {
                return Err(Rejection::DuplicateRecharge(*recharge_id));
            }
            let url = checked_text("invoice url", &invoice.url, 2048)?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(Rejection::InvalidText {
                    field: "invoice url",
                    max: 2048,
                });
            }
            AccountEvent::RechargeRequested(RechargeRequested {
                recharge_id: *recharge_id,
                amount: *amount,
                currency: currency.clone(),
                invoice: Invoice {
                    uuid: checked_text("invoice uuid", &invoice.uuid, 128)?,
                    url,
                    expires_at: invoice.expires_at,
                },
            })
        }
        AccountCommand::SettleRecharge {
            recharge_id,
            status,
            paid,
            txid,
        } => {
            let recharge = recharge_of_account(account, recharge_id)?;
            // A recharge is credited at most once. A payment that arrives after the invoice
            // was marked failed (expired) is still credited: the money did arrive.
            may_credit(*recharge_id, recharge)?;
            settled(
                &ctx,
                *recharge_id,
                recharge,
                *status,
                *paid,
                optional_text("txid", txid, 200)?,
                None,
            )
        }
        AccountCommand::RecordPayment {
            recharge_id,
            report,
            overpay_tolerance_percent,
        } => {
            if *overpay_tolerance_percent > MAX_TOLERANCE_PERCENT {
                return Err(Rejection::InvalidTolerance);
            }
            let recharge = recharge_of_account(account, recharge_id)?;
            record_payment(
                &ctx,
                *recharge_id,
                recharge,
                report,
                *overpay_tolerance_percent,
            )?
        }
        AccountCommand::ResolveRecharge {
            recharge_id,
            decision,
            admin,
            reason,
        } => {
            let recharge = recharge_of_account(account, recharge_id)?;
            if !matches!(
                recharge.status,
                RechargeStatus::NeedsReview { .. } | RechargeStatus::OnHold
            ) {
                return Err(Rejection::RechargeNotAwaitingDecision {
                    recharge_id: *recharge_id,
                    status: recharge.status.name(),
                });
            }
            let resolution = Resolution {
                admin: checked_text("admin", admin, 64)?,
                reason: checked_text("reason", reason, MAX_REASON_LEN)?,
            };
            match decision {
                ReviewDecision::Credit(amount) => settled(
                    &ctx,
                    *recharge_id,
                    recharge,
                    PaidStatus::Reviewed,
                    *amount,
                    None,
                    Some(resolution),
                ),
                ReviewDecision::Reject => AccountEvent::RechargeFailed(RechargeFailed {
                    recharge_id: *recharge_id,
                    // Kept within the reason's bound; the admin is also the event's actor.
                    reason: format!(
                        "rejected on review by {}: {}",
                        resolution.admin, resolution.reason
                    )
                    .chars()
                    .take(MAX_REASON_LEN)
                    .collect(),
                }),
            }
        }
        AccountCommand::FailRecharge {
            recharge_id,
            reason,
        } => {
            let recharge = recharge_of_account(account, recharge_id)?;
            may_fail(*recharge_id, recharge)?;
            AccountEvent::RechargeFailed(RechargeFailed {
                recharge_id: *recharge_id,
                reason: checked_text("reason", reason, MAX_REASON_LEN)?,
            })
        }
        AccountCommand::RequestPurchase {
            purchase_id,
            stars,
            recipient,
            price,
        } => {
            if account.purchases.contains_key(purchase_id) {
                return Err(Rejection::DuplicatePurchase(*purchase_id));
            }
            if account.debt > Decimal::ZERO {
                return Err(Rejection::AccountInDebt { debt: account.debt });
            }
            if account.available < price.value() {
                return Err(Rejection::InsufficientFunds {
                    available: account.available,
                    required: price.value(),
                });
            }
            AccountEvent::PurchaseRequested(PurchaseRequested {
                purchase_id: *purchase_id,
                stars: *stars,
                recipient: recipient.clone(),
                price: *price,
                currency: currency.clone(),
                postings: transfer(available, reserved, *price, currency),
            })
        }
        AccountCommand::RecordFragmentOrder {
            purchase_id,
            fragment_request_id,
            ton_amount,
        } => {
            let purchase = open_purchase(purchase_id)?;
            if purchase.status != PurchaseStatus::Reserved {
                return Err(Rejection::PurchaseNotOpen {
                    purchase_id: *purchase_id,
                    status: purchase.status,
                });
            }
            AccountEvent::FragmentOrderPlaced(FragmentOrderPlaced {
                purchase_id: *purchase_id,
                fragment_request_id: checked_text("fragment_request_id", fragment_request_id, 200)?,
                ton_amount: *ton_amount,
            })
        }
        AccountCommand::RecordFragmentSent {
            purchase_id,
            wallet_tx,
            seqno,
            valid_until,
            message,
            transfers,
            attempt,
        } => {
            let purchase = open_purchase(purchase_id)?;
            let next_attempt = match purchase.status {
                PurchaseStatus::OrderPlaced => 1,
                PurchaseStatus::OrderSent => purchase.payment_attempts + 1,
                status => {
                    return Err(Rejection::PurchaseNotOpen {
                        purchase_id: *purchase_id,
                        status,
                    })
                }
            };
            if *attempt != next_attempt {
                return Err(Rejection::PaymentAttemptOutOfOrder {
                    purchase_id: *purchase_id,
                    expected: next_attempt,
                    got: *attempt,
                });
            }
            if message.is_empty()
                || message.len() > MAX_WALLET_MESSAGE_LEN
                || !message
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
            {
                return Err(Rejection::InvalidText {
                    field: "wallet message (base64)",
                    max: MAX_WALLET_MESSAGE_LEN,
                });
            }
            if transfers.is_empty() || transfers.len() > MAX_WALLET_TRANSFERS {
                return Err(Rejection::InvalidText {
                    field: "wallet transfers",
                    max: MAX_WALLET_TRANSFERS,
                });
            }
            let transfers = transfers
                .iter()
                .map(|t| {
                    Ok(WalletTransfer {
                        destination: checked_text("transfer destination", &t.destination, 100)?,
                        amount: t.amount,
                    })
                })
                .collect::<Result<Vec<_>, Rejection>>()?;
            AccountEvent::FragmentOrderSent(FragmentOrderSent {
                purchase_id: *purchase_id,
                wallet_tx: checked_text("wallet_tx", wallet_tx, 200)?,
                seqno: Some(*seqno),
                valid_until: Some(*valid_until),
                message: Some(message.clone()),
                transfers,
                attempt: *attempt,
            })
        }
        AccountCommand::CompletePurchase { purchase_id } => {
            let purchase = open_purchase(purchase_id)?;
            AccountEvent::PurchaseCompleted(PurchaseCompleted {
                purchase_id: *purchase_id,
                postings: transfer(
                    reserved,
                    LedgerAccount::RevenueStars,
                    purchase.price,
                    currency,
                ),
            })
        }
        AccountCommand::FailPurchase {
            purchase_id,
            reason,
            force,
        } => {
            let purchase = open_purchase(purchase_id)?;
            if purchase.status == PurchaseStatus::OrderSent && !force {
                return Err(Rejection::PaymentRecorded(*purchase_id));
            }
            let (postings, _) = ctx.credit(reserved, purchase.price.value());
            AccountEvent::PurchaseFailed(PurchaseFailed {
                purchase_id: *purchase_id,
                reason: checked_text("reason", reason, MAX_REASON_LEN)?,
                postings,
            })
        }
        AccountCommand::AdjustBalance {
            adjustment_id,
            amount,
            currency: requested,
            admin,
            reason,
        } => {
            same_currency(requested)?;
            if account.adjustments.contains(adjustment_id) {
                return Err(Rejection::DuplicateAdjustment(*adjustment_id));
            }
            if account.available + amount.value() < Decimal::ZERO {
                return Err(Rejection::AdjustmentWouldOverdraw {
                    amount: amount.value(),
                    available: account.available,
                });
            }
            let postings = if amount.negative {
                transfer(
                    available,
                    LedgerAccount::EquityAdjustments,
                    amount.magnitude,
                    currency,
                )
            } else {
                ctx.credit(LedgerAccount::EquityAdjustments, amount.magnitude.value())
                    .0
            };
            AccountEvent::BalanceAdjusted(BalanceAdjusted {
                adjustment_id: *adjustment_id,
                amount: *amount,
                currency: currency.clone(),
                admin: checked_text("admin", admin, 64)?,
                reason: checked_text("reason", reason, MAX_REASON_LEN)?,
                postings,
            })
        }
    };
    Ok(vec![event])
}

/// The account a decision is about, with what money rules need to know of it.
struct Customer<'a> {
    user: UserId,
    account: &'a Account,
    currency: &'a Currency,
}

impl Customer<'_> {
    /// Legs bringing `amount` from `source` to the customer: an open debt is paid first, the
    /// rest becomes available. Returns the legs and the part that paid the debt. Every path
    /// that gives a customer money goes through here, which is what keeps the invariant
    /// "nothing is available while a debt is open".
    fn credit(&self, source: LedgerAccount, amount: Decimal) -> (Vec<Posting>, Decimal) {
        let repaid = amount.min(self.account.debt.max(Decimal::ZERO)).normalize();
        let legs = split(
            source,
            &[
                (LedgerAccount::CustomerDebt(self.user), repaid),
                (
                    LedgerAccount::CustomerAvailable(self.user),
                    (amount - repaid).normalize(),
                ),
            ],
            self.currency,
        );
        (legs, repaid)
    }
}

fn recharge_of_account<'a>(
    account: &'a Account,
    recharge_id: &RechargeId,
) -> Result<&'a Recharge, Rejection> {
    account
        .recharges
        .get(recharge_id)
        .ok_or(Rejection::UnknownRecharge(*recharge_id))
}

/// Whether a recharge may still be credited automatically: pending, on hold, or failed
/// locally (a late payment after expiry is still credited; the money did arrive).
fn may_credit(recharge_id: RechargeId, recharge: &Recharge) -> Result<(), Rejection> {
    match recharge.status {
        RechargeStatus::Pending | RechargeStatus::OnHold | RechargeStatus::Failed { .. } => Ok(()),
        RechargeStatus::NeedsReview { .. } => Err(Rejection::RechargeInReview(recharge_id)),
        RechargeStatus::Settled { .. } => Err(Rejection::RechargeAlreadySettled(recharge_id)),
        RechargeStatus::Reversed { .. } => Err(Rejection::RechargeAlreadyReversed(recharge_id)),
    }
}

/// Whether a recharge that credited nothing may be closed as failed.
fn may_fail(recharge_id: RechargeId, recharge: &Recharge) -> Result<(), Rejection> {
    match recharge.status {
        RechargeStatus::Pending | RechargeStatus::OnHold | RechargeStatus::NeedsReview { .. } => {
            Ok(())
        }
        RechargeStatus::Settled { .. } => Err(Rejection::RechargeAlreadySettled(recharge_id)),
        RechargeStatus::Failed { .. } => Err(Rejection::RechargeAlreadyFailed(recharge_id)),
        RechargeStatus::Reversed { .. } => Err(Rejection::RechargeAlreadyReversed(recharge_id)),
    }
}

/// The credit of `amount` for a recharge, paying an open debt first.
fn settled(
    ctx: &Customer<'_>,
    recharge_id: RechargeId,
    recharge: &Recharge,
    status: PaidStatus,
    amount: Amount,
    txid: Option<String>,
    resolution: Option<Resolution>,
) -> AccountEvent {
    let (postings, debt_repaid) = ctx.credit(LedgerAccount::ClearingHeleket, amount.value());
    AccountEvent::RechargeSettled(RechargeSettled {
        recharge_id,
        status,
        credited: amount,
        currency: ctx.currency.clone(),
        txid,
        partial: amount < recharge.amount,
        debt_repaid,
        resolution,
        postings,
    })
}

/// The provider's facts as kept on an event: the text of a JSON object, of bounded size.
fn checked_facts(facts: &str) -> Result<String, Rejection> {
    let object = facts.len() <= MAX_FACTS_BYTES
        && serde_json::from_str::<Value>(facts).is_ok_and(|value| value.is_object());
    if object {
        Ok(facts.to_owned())
    } else {
        Err(Rejection::InvalidFacts)
    }
}

/// What a provider's report means for a recharge. The rules of DESIGN.md's "money rules at
/// the edge": a credit is automatic only in the ledger's coin, for an amount read in that
/// coin, at most the invoice plus the tolerance; anything else waits for an operator. An
/// underpayment credits what arrived; a hold waits; a failure after a credit reverses it.
fn record_payment(
    ctx: &Customer<'_>,
    recharge_id: RechargeId,
    recharge: &Recharge,
    report: &PaymentReport,
    tolerance_percent: u32,
) -> Result<AccountEvent, Rejection> {
    let provider_status = checked_text("provider status", &report.provider_status, 64)?;
    let review = |reason: ReviewReason, detail: String| -> Result<AccountEvent, Rejection> {
        Ok(AccountEvent::RechargeReviewRequired(
            RechargeReviewRequired {
                recharge_id,
                reason,
                detail: checked_text("detail", &detail, MAX_REASON_LEN)?,
                provider_status: provider_status.clone(),
                facts: checked_facts(&report.facts)?,
            },
        ))
    };
    match report.outcome {
        ReportedOutcome::Paid | ReportedOutcome::PaidOver | ReportedOutcome::Underpaid => {
            may_credit(recharge_id, recharge)?;
            let ours = ctx.currency.as_str();
            if let Some(invoiced) = report.invoice_currency.as_deref() {
                if invoiced != ours {
                    return review(
                        ReviewReason::ForeignCoin,
                        format!(
                            "the invoice is in {}, the ledger keeps {ours}",
                            shown(invoiced)
                        ),
                    );
                }
            }
            match report.paid_currency.as_deref() {
                None => {
                    return review(
                        ReviewReason::MissingCoin,
                        "the provider did not say which coin was paid".into(),
                    )
                }
                Some(paid) if paid != ours => {
                    return review(
                        ReviewReason::ForeignCoin,
                        format!("paid in {}, the ledger keeps {ours}", shown(paid)),
                    )
                }
                Some(_) => {}
            }
            let Some(text) = report.paid_amount.as_deref() else {
                return review(
                    ReviewReason::UnreadableAmount,
                    "the provider did not say how much arrived".into(),
                );
            };
            let paid = match Amount::parse(text.trim()) {
                Ok(paid) => paid,
                Err(error) => {
                    return review(
                        ReviewReason::UnreadableAmount,
                        format!("amount paid {}: {error}", shown(text)),
                    )
                }
            };
            let invoiced = recharge.amount.value();
            let underpaid = paid.value() < invoiced;
            let consistent = match report.outcome {
                ReportedOutcome::Underpaid => underpaid,
                ReportedOutcome::PaidOver => paid.value() > invoiced,
                _ => true,
            };
            if !consistent {
                return review(
                    ReviewReason::InconsistentReport,
                    format!(
                        "status {provider_status} with {paid} paid on an invoice of {invoiced}"
                    ),
                );
            }
            let ceiling = invoiced * (Decimal::ONE_HUNDRED + Decimal::from(tolerance_percent))
                / Decimal::ONE_HUNDRED;
            if paid.value() > ceiling {
                return review(
                    ReviewReason::AboveTolerance,
                    format!("{paid} paid on an invoice of {invoiced}: more than the {tolerance_percent}% tolerance credits unattended"),
                );
            }
            let status = match report.outcome {
                ReportedOutcome::PaidOver => PaidStatus::PaidOver,
                ReportedOutcome::Underpaid => PaidStatus::WrongAmount,
                _ => PaidStatus::Paid,
            };
            let txid = optional_text("txid", &report.txid, 200)?;
            Ok(settled(
                ctx,
                recharge_id,
                recharge,
                status,
                paid,
                txid,
                None,
            ))
        }
        ReportedOutcome::Held => match recharge.status {
            RechargeStatus::Pending => Ok(AccountEvent::RechargeHeld(RechargeHeld {
                recharge_id,
                provider_status,
                facts: checked_facts(&report.facts)?,
            })),
            RechargeStatus::OnHold => Err(Rejection::RechargeAlreadyHeld(recharge_id)),
            RechargeStatus::NeedsReview { .. } => Err(Rejection::RechargeInReview(recharge_id)),
            RechargeStatus::Settled { .. } => Err(Rejection::RechargeAlreadySettled(recharge_id)),
            RechargeStatus::Failed { .. } => Err(Rejection::RechargeAlreadyFailed(recharge_id)),
            RechargeStatus::Reversed { .. } => Err(Rejection::RechargeAlreadyReversed(recharge_id)),
        },
        ReportedOutcome::Failed => match recharge.status {
            RechargeStatus::Settled { credited } => {
                Ok(reversed(ctx, recharge_id, credited, provider_status))
            }
            _ => {
                may_fail(recharge_id, recharge)?;
                Ok(AccountEvent::RechargeFailed(RechargeFailed {
                    recharge_id,
                    reason: format!("heleket status {provider_status}"),
                }))
            }
        },
        ReportedOutcome::RefundFailed => {
            // The refund did not happen, so whatever arrived is still with us: a credit stays,
            // and an uncredited payment needs a person to say how much arrived.
            may_credit(recharge_id, recharge)?;
            review(
                ReviewReason::RefundFailed,
                "a refund to the payer failed; the payment may still be with us".into(),
            )
        }
    }
}

/// Takes a credit back: from what is available first, the rest becomes the customer's debt.
fn reversed(
    ctx: &Customer<'_>,
    recharge_id: RechargeId,
    credited: Amount,
    provider_status: String,
) -> AccountEvent {
    let from_available = credited
        .value()
        .min(ctx.account.available.max(Decimal::ZERO))
        .normalize();
    let debt = (credited.value() - from_available).normalize();
    let mut postings = Vec::with_capacity(3);
    for (account, part) in [
        (LedgerAccount::CustomerAvailable(ctx.user), from_available),
        (LedgerAccount::CustomerDebt(ctx.user), debt),
    ] {
        if !part.is_zero() {
            postings.push(Posting {
                account,
                currency: ctx.currency.clone(),
                amount: -part,
            });
        }
    }
    postings.push(Posting {
        account: LedgerAccount::ClearingHeleket,
        currency: ctx.currency.clone(),
        amount: credited.value(),
    });
    AccountEvent::RechargeReversed(RechargeReversed {
        recharge_id,
        provider_status,
        reversed: credited,
        from_available,
        debt,
        currency: ctx.currency.clone(),
        postings,
    })
}

/// Provider text quoted in a message: escaped, and cut short.
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(32).collect();
    format!("{cut:?}")
}
