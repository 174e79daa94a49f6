//! Commands on an account and the rules that turn them into events (the "decide" half).
//!
//! `decide` sees only the current state and the command: it does no I/O and reads no clock.
//! A command the rules refuse yields a typed [`Rejection`] and no events.

use rust_decimal::Decimal;

use super::payments::{
    may_credit, may_fail, recharge_of_account, record_payment, settled, Customer, PaymentReport,
    ReviewDecision, MAX_TOLERANCE_PERCENT,
};
use super::rejection::Rejection;
use super::state::{Account, PurchaseStatus, RechargeStatus};
use super::text::{checked_text, optional_text, MAX_REASON_LEN};
use crate::events::*;
use crate::ids::{AdjustmentId, PurchaseId, RechargeId, Recipient, UserId};
use crate::money::{Amount, Currency, SignedAmount};
use crate::postings::{transfer, LedgerAccount};

/// Most transfers one wallet payment may carry (a v4 wallet sends at most 4 per message).
pub const MAX_WALLET_TRANSFERS: usize = 4;

/// Longest signed wallet message (base64) kept in an event. A wallet transfer with a few
/// messages and their comment payloads is well under 2 KiB.
pub const MAX_WALLET_MESSAGE_LEN: usize = 8_192;

/// Longest transfer body (base64) kept in an event: Fragment's carries a short comment.
pub const MAX_TRANSFER_PAYLOAD_LEN: usize = 2_048;

/// A transfer body as the event keeps it: base64 text, bounded.
fn checked_payload(payload: &str) -> Result<String, Rejection> {
    let base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_');
    if payload.is_empty()
        || payload.len() > MAX_TRANSFER_PAYLOAD_LEN
        || !payload.bytes().all(base64)
    {
        return Err(Rejection::InvalidText {
            field: "transfer payload (base64)",
            max: MAX_TRANSFER_PAYLOAD_LEN,
        });
    }
    Ok(payload.to_owned())
}

/// What a caller asks an account to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    Register {
        username: Option<String>,
        language: Option<String>,
        currency: Currency,
    },
    /// The buyer's Telegram profile as an update showed it, if it differs from the recorded
    /// one. `language: None` keeps the recorded language (updates do not always carry one);
    /// `username: None` means they have none now.
    UpdateProfile {
        username: Option<String>,
        language: Option<String>,
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
        recipient: Recipient,
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
            Self::UpdateProfile { .. } => "update_profile",
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
            (C::UpdateProfile { username, language }, E::ProfileUpdated(e)) => {
                e.username == *username && (language.is_none() || e.language == *language)
            }
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
            ) => {
                // The buyer's own name is read when the order is made, not chosen by the
                // caller: a retry after they renamed themselves is the same order.
                e.purchase_id == *purchase_id
                    && e.stars == *stars
                    && e.recipient.as_ref() == recipient.gift()
            }
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
        AccountCommand::UpdateProfile { username, language } => {
            let username = optional_text("username", username, 64)?;
            let language = match optional_text("language", language, 16)? {
                Some(language) => Some(language),
                None => profile.language.clone(),
            };
            if username == profile.username && language == profile.language {
                return Err(Rejection::ProfileUnchanged);
            }
            AccountEvent::ProfileUpdated(ProfileUpdated { username, language })
        }
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
                return Err(Rejection::InvalidTolerance {
                    max: MAX_TOLERANCE_PERCENT,
                });
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
                recipient: recipient.gift().cloned(),
                deliver_to: Some(recipient.deliver_to().clone()),
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
                        payload: t.payload.as_deref().map(checked_payload).transpose()?,
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
