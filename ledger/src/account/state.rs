//! The account as it stands after a sequence of events (the "evolve" half of the aggregate).
//!
//! Balances move only through postings, so the account's `available`, `reserved` and `debt`
//! are, by construction, the balances of its `customer:{id}:…` ledger accounts.
//!
//! The account invariants live here, as one typed check ([`Account::check_invariants`]) that
//! the command handler runs on every decision before it is appended and `audit verify` runs
//! after every event of the log:
//! - `available`, `reserved` and `debt` are never negative;
//! - `reserved` equals the price of the open purchases (a reservation belongs to exactly one
//!   order, and resolves once);
//! - while a debt is open nothing is available: money that comes in pays the debt first.

use std::collections::{HashMap, HashSet};

use rust_decimal::Decimal;

use crate::events::{AccountEvent, ReviewReason, Stars};
use crate::ids::{AdjustmentId, PurchaseId, RechargeId, UserId};
use crate::money::{Amount, Currency};
use crate::postings::LedgerAccount;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub user_id: UserId,
    pub username: Option<String>,
    pub language: Option<String>,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RechargeStatus {
    /// Invoice issued, nothing final heard.
    Pending,
    /// The provider holds the payment for a check (`locked`); a later status decides.
    OnHold,
    /// A payment arrived that is not credited automatically; an operator decides.
    NeedsReview {
        reason: ReviewReason,
    },
    Settled {
        credited: Amount,
    },
    Failed {
        reason: String,
    },
    /// Credited, then the payment went back to the payer and the credit was taken back.
    Reversed {
        credited: Amount,
    },
}

impl RechargeStatus {
    /// A stable name for logs, API answers and the `transactions` read model.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::OnHold => "on_hold",
            Self::NeedsReview { .. } => "needs_review",
            Self::Settled { .. } => "settled",
            Self::Failed { .. } => "failed",
            Self::Reversed { .. } => "reversed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recharge {
    pub amount: Amount,
    pub status: RechargeStatus,
    /// An operator was asked to look at this recharge at least once: later payment reports
    /// for it go back to them, never straight to a credit.
    pub reviewed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseStatus {
    /// Funds reserved, nothing sent to Fragment yet.
    Reserved,
    OrderPlaced,
    OrderSent,
    Completed,
    Failed,
}

impl PurchaseStatus {
    /// Still holding a reservation (not yet completed or failed).
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Completed | Self::Failed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    pub stars: Stars,
    pub price: Amount,
    pub status: PurchaseStatus,
    /// Signed wallet payments recorded for this purchase (each after the previous expired).
    pub payment_attempts: u32,
}

/// One user's account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    pub profile: Option<Profile>,
    pub available: Decimal,
    pub reserved: Decimal,
    /// What the customer owes (a positive number; the debt account's balance negated).
    pub debt: Decimal,
    /// The prices of the purchases still open, kept as they open and close: what `reserved`
    /// must equal.
    pub open_reservations: Decimal,
    pub recharges: HashMap<RechargeId, Recharge>,
    pub purchases: HashMap<PurchaseId, Purchase>,
    pub adjustments: HashSet<AdjustmentId>,
}

/// A broken account invariant. Finding one means a bug in `decide` or a corrupted log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    #[error("available balance is negative: {0}")]
    NegativeAvailable(Decimal),
    #[error("reserved balance is negative: {0}")]
    NegativeReserved(Decimal),
    #[error("reserved balance {reserved} differs from the open purchases' total {open}")]
    ReservationMismatch { reserved: Decimal, open: Decimal },
    #[error("debt is negative: {0}")]
    NegativeDebt(Decimal),
    #[error("{available} is available while a debt of {debt} is open (money that arrives pays the debt first)")]
    AvailableWhileInDebt { available: Decimal, debt: Decimal },
}

impl Account {
    /// Rebuilds an account from its events, oldest first.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a AccountEvent>) -> Self {
        let mut account = Self::default();
        for event in events {
            account.evolve(event);
        }
        account
    }

    pub fn user_id(&self) -> Option<UserId> {
        self.profile.as_ref().map(|p| p.user_id)
    }

    /// Applies one event. Total on purpose: stored events are facts, and a fact that the
    /// current rules would not produce is reported by `check_invariants`, not refused here.
    pub fn evolve(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::UserRegistered(e) => {
                self.profile = Some(Profile {
                    user_id: e.user_id,
                    username: e.username.clone(),
                    language: e.language.clone(),
                    currency: e.currency.clone(),
                });
            }
            AccountEvent::ProfileUpdated(e) => {
                if let Some(profile) = self.profile.as_mut() {
                    profile.username = e.username.clone();
                    profile.language = e.language.clone();
                }
            }
            AccountEvent::RechargeRequested(e) => {
                self.recharges.insert(
                    e.recharge_id,
                    Recharge {
                        amount: e.amount,
                        status: RechargeStatus::Pending,
                        reviewed: false,
                    },
                );
            }
            AccountEvent::RechargeSettled(e) => self.set_recharge_status(
                e.recharge_id,
                RechargeStatus::Settled {
                    credited: e.credited,
                },
            ),
            AccountEvent::RechargeFailed(e) => self.set_recharge_status(
                e.recharge_id,
                RechargeStatus::Failed {
                    reason: e.reason.clone(),
                },
            ),
            AccountEvent::RechargeHeld(e) => {
                self.set_recharge_status(e.recharge_id, RechargeStatus::OnHold)
            }
            AccountEvent::RechargeReviewRequired(e) => {
                self.set_recharge_status(
                    e.recharge_id,
                    RechargeStatus::NeedsReview { reason: e.reason },
                );
                if let Some(recharge) = self.recharges.get_mut(&e.recharge_id) {
                    recharge.reviewed = true;
                }
            }
            AccountEvent::RechargeReversed(e) => self.set_recharge_status(
                e.recharge_id,
                RechargeStatus::Reversed {
                    credited: e.reversed,
                },
            ),
            AccountEvent::PurchaseRequested(e) => {
                if !self.purchases.contains_key(&e.purchase_id) {
                    self.open_reservations += e.price.value();
                }
                self.purchases.insert(
                    e.purchase_id,
                    Purchase {
                        stars: e.stars,
                        price: e.price,
                        status: PurchaseStatus::Reserved,
                        payment_attempts: 0,
                    },
                );
            }
            AccountEvent::FragmentOrderPlaced(e) => {
                self.set_purchase_status(e.purchase_id, PurchaseStatus::OrderPlaced)
            }
            AccountEvent::FragmentOrderSent(e) => {
                if let Some(purchase) = self.purchases.get_mut(&e.purchase_id) {
                    purchase.status = PurchaseStatus::OrderSent;
                    purchase.payment_attempts = e.attempt;
                }
            }
            AccountEvent::PurchaseCompleted(e) => {
                self.set_purchase_status(e.purchase_id, PurchaseStatus::Completed)
            }
            AccountEvent::PurchaseFailed(e) => {
                self.set_purchase_status(e.purchase_id, PurchaseStatus::Failed)
            }
            AccountEvent::BalanceAdjusted(e) => {
                self.adjustments.insert(e.adjustment_id);
            }
        }
        self.apply_postings(event);
    }

    fn set_recharge_status(&mut self, recharge_id: RechargeId, status: RechargeStatus) {
        if let Some(recharge) = self.recharges.get_mut(&recharge_id) {
            recharge.status = status;
        }
    }

    fn set_purchase_status(&mut self, purchase_id: PurchaseId, status: PurchaseStatus) {
        if let Some(purchase) = self.purchases.get_mut(&purchase_id) {
            if purchase.status.is_open() && !status.is_open() {
                self.open_reservations -= purchase.price.value();
            }
            purchase.status = status;
        }
    }

    fn apply_postings(&mut self, event: &AccountEvent) {
        let Some(user) = self.user_id() else { return };
        for posting in event.postings() {
            match posting.account {
                LedgerAccount::CustomerAvailable(owner) if owner == user => {
                    self.available += posting.amount
                }
                LedgerAccount::CustomerReserved(owner) if owner == user => {
                    self.reserved += posting.amount
                }
                LedgerAccount::CustomerDebt(owner) if owner == user => self.debt -= posting.amount,
                _ => {}
            }
        }
    }

    /// The account invariants of DESIGN.md that can be checked on one account (see the
    /// module's documentation). Constant time: run after every decision and every audited
    /// event.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        if self.available < Decimal::ZERO {
            return Err(InvariantViolation::NegativeAvailable(self.available));
        }
        if self.reserved < Decimal::ZERO {
            return Err(InvariantViolation::NegativeReserved(self.reserved));
        }
        if self.debt < Decimal::ZERO {
            return Err(InvariantViolation::NegativeDebt(self.debt));
        }
        if self.open_reservations != self.reserved {
            return Err(InvariantViolation::ReservationMismatch {
                reserved: self.reserved,
                open: self.open_reservations,
            });
        }
        if self.debt > Decimal::ZERO && self.available > Decimal::ZERO {
            return Err(InvariantViolation::AvailableWhileInDebt {
                available: self.available,
                debt: self.debt,
            });
        }
        Ok(())
    }
}
