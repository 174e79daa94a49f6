//! What a payment provider's report means for a recharge, and how money reaches or leaves a
//! customer: the rules of DESIGN.md's "money rules at the edge" (credit only what arrived, in
//! our coin, within the tolerance; hold, review, reverse), and the one way every credit is
//! booked (an open debt first, the rest available). Pure, like the rest of `decide`.

use rust_decimal::Decimal;
use serde_json::Value;

use super::rejection::Rejection;
use super::state::{Account, Recharge, RechargeStatus};
use super::text::{checked_text, optional_text, MAX_REASON_LEN};
use crate::events::*;
use crate::ids::{RechargeId, UserId};
use crate::money::{Amount, Currency};
use crate::postings::{split, LedgerAccount, Posting};

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

/// The account a decision is about, with what money rules need to know of it.
pub(super) struct Customer<'a> {
    pub(super) user: UserId,
    pub(super) account: &'a Account,
    pub(super) currency: &'a Currency,
}

impl Customer<'_> {
    /// Legs bringing `amount` from `source` to the customer: an open debt is paid first, the
    /// rest becomes available. Returns the legs and the part that paid the debt. Every path
    /// that gives a customer money goes through here, which is what keeps the invariant
    /// "nothing is available while a debt is open".
    pub(super) fn credit(&self, source: LedgerAccount, amount: Decimal) -> (Vec<Posting>, Decimal) {
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

pub(super) fn recharge_of_account<'a>(
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
pub(super) fn may_credit(recharge_id: RechargeId, recharge: &Recharge) -> Result<(), Rejection> {
    match recharge.status {
        RechargeStatus::Pending | RechargeStatus::OnHold | RechargeStatus::Failed { .. } => Ok(()),
        RechargeStatus::NeedsReview { .. } => Err(Rejection::RechargeInReview(recharge_id)),
        RechargeStatus::Settled { .. } => Err(Rejection::RechargeAlreadySettled(recharge_id)),
        RechargeStatus::Reversed { .. } => Err(Rejection::RechargeAlreadyReversed(recharge_id)),
    }
}

/// Whether a recharge that credited nothing may be closed as failed.
pub(super) fn may_fail(recharge_id: RechargeId, recharge: &Recharge) -> Result<(), Rejection> {
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
pub(super) fn settled(
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
        Err(Rejection::InvalidFacts {
            max: MAX_FACTS_BYTES,
        })
    }
}

/// What a provider's report means for a recharge. The rules of DESIGN.md's "money rules at
/// the edge": a credit is automatic only in the ledger's coin, for an amount read in that
/// coin, at most the invoice plus the tolerance; anything else waits for an operator. An
/// underpayment credits what arrived; a hold waits; a failure after a credit reverses it.
pub(super) fn record_payment(
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
    // Once an operator had to look at a recharge, every further report of money for it goes
    // to them too: recorded as facts while they decide, never a credit after they closed it.
    if matches!(
        report.outcome,
        ReportedOutcome::Paid
            | ReportedOutcome::PaidOver
            | ReportedOutcome::Underpaid
            | ReportedOutcome::RefundFailed
    ) {
        match recharge.status {
            RechargeStatus::NeedsReview { .. } => {
                return review(
                    ReviewReason::WhileInReview,
                    format!("{provider_status} reported while the recharge waits for review"),
                )
            }
            RechargeStatus::Failed { .. } if recharge.reviewed => {
                return review(
                    ReviewReason::AfterReview,
                    format!("{provider_status} reported after the recharge was closed on review"),
                )
            }
            _ => {}
        }
    }
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
