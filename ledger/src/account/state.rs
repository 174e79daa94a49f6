//! The account as it stands after a sequence of events (the "evolve" half of the aggregate).
//!
//! Balances move only through postings, so the account's `available` and `reserved` are, by
//! construction, the balances of its `customer:{id}:…` ledger accounts.

use std::collections::{HashMap, HashSet};

use rust_decimal::Decimal;

use crate::events::{AccountEvent, Stars};
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
    Pending,
    Settled { credited: Amount },
    Failed { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recharge {
    pub amount: Amount,
    pub status: RechargeStatus,
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
            AccountEvent::RechargeRequested(e) => {
                self.recharges.insert(
                    e.recharge_id,
                    Recharge {
                        amount: e.amount,
                        status: RechargeStatus::Pending,
                    },
                );
            }
            AccountEvent::RechargeSettled(e) => {
                if let Some(recharge) = self.recharges.get_mut(&e.recharge_id) {
                    recharge.status = RechargeStatus::Settled {
                        credited: e.credited,
                    };
                }
            }
            AccountEvent::RechargeFailed(e) => {
                if let Some(recharge) = self.recharges.get_mut(&e.recharge_id) {
                    recharge.status = RechargeStatus::Failed {
                        reason: e.reason.clone(),
                    };
                }
            }
            AccountEvent::PurchaseRequested(e) => {
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

    fn set_purchase_status(&mut self, purchase_id: PurchaseId, status: PurchaseStatus) {
        if let Some(purchase) = self.purchases.get_mut(&purchase_id) {
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
                _ => {}
            }
        }
    }

    /// The account invariants of DESIGN.md that can be checked on one account.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        if self.available < Decimal::ZERO {
            return Err(InvariantViolation::NegativeAvailable(self.available));
        }
        if self.reserved < Decimal::ZERO {
            return Err(InvariantViolation::NegativeReserved(self.reserved));
        }
        let open: Decimal = self
            .purchases
            .values()
            .filter(|p| p.status.is_open())
            .map(|p| p.price.value())
            .sum();
        if open != self.reserved {
            return Err(InvariantViolation::ReservationMismatch {
                reserved: self.reserved,
                open,
            });
        }
        Ok(())
    }
}
