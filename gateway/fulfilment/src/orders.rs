//! The purchases the fulfilment worker still has to see through, folded from the log.
//!
//! Pure: events in, state out, no I/O. The worker folds every event after its checkpoint;
//! a purchase enters at `PurchaseRequested` and leaves at `PurchaseCompleted` or
//! `PurchaseFailed`, and in between its stage follows the Fragment events, so after a restart
//! the worker knows exactly where each purchase stood — including the signed payment that may
//! be on its way, which it must re-send or look for, never replace.
//!
//! The worker's checkpoint is the position just before the oldest open purchase
//! ([`OpenOrders::low_watermark`]): everything before it is settled, so a restart that folds
//! from there rebuilds every open purchase completely.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use starledger_ledger::events::{AccountEvent, FragmentOrderSent, Stars};
use starledger_ledger::ids::{PurchaseId, UserId, Username};
use starledger_ledger::money::Amount;
use starledger_projections::model::Projected;

use super::ton::{Nanotons, TransferMessage};

/// Where an open purchase stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Funds reserved; no Fragment order recorded yet.
    Reserved,
    /// Fragment opened the order; no payment recorded yet.
    Placed { request_id: String, cost: Nanotons },
    /// A signed payment is recorded (and perhaps broadcast): it must be found on chain,
    /// re-sent, or proven expired — never replaced by another while it could still execute.
    Paying {
        request_id: String,
        cost: Nanotons,
        payment: RecordedPayment,
    },
}

/// The signed payment a `FragmentOrderSent` recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPayment {
    pub attempt: u32,
    /// Hash of the external message, hex.
    pub message_hash: String,
    /// `None` only for events written before payments were recorded ahead of broadcasting
    /// (`FragmentOrderSent` v1): such a payment cannot be re-sent or proven expired, so it
    /// waits for an operator.
    pub seqno: Option<u32>,
    pub valid_until: Option<DateTime<Utc>>,
    pub message: Option<String>,
    /// What it pays (empty for v1 payments).
    pub transfers: Vec<TransferMessage>,
}

impl From<&FragmentOrderSent> for RecordedPayment {
    fn from(e: &FragmentOrderSent) -> Self {
        Self {
            attempt: e.attempt,
            message_hash: e.wallet_tx.clone(),
            seqno: e.seqno,
            valid_until: e.valid_until,
            message: e.message.clone(),
            transfers: e
                .transfers
                .iter()
                .map(|t| TransferMessage {
                    destination: t.destination.clone(),
                    amount: Nanotons::from_ton(t.amount.value()).unwrap_or_default(),
                    payload: t.payload.clone(),
                })
                .collect(),
        }
    }
}

/// One purchase that holds a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOrder {
    pub user: UserId,
    pub purchase_id: PurchaseId,
    /// Position of its `PurchaseRequested`.
    pub requested_at: u64,
    pub stars: Stars,
    /// The username the Stars go to, as recorded when the order was confirmed. `None` only for
    /// orders recorded before names were (v1 orders for the buyer's own account).
    pub deliver_to: Option<Username>,
    /// What the customer's reservation holds, in the ledger currency.
    pub price: Amount,
    pub stage: Stage,
}

/// Every open purchase, oldest first.
#[derive(Debug, Default)]
pub struct OpenOrders {
    /// By the position of the `PurchaseRequested`: oldest first, and the low watermark is
    /// the first key.
    orders: BTreeMap<u64, OpenOrder>,
    positions: HashMap<PurchaseId, u64>,
    /// The last position folded.
    folded: u64,
}

impl OpenOrders {
    /// Starts folding after `position`.
    pub fn after(position: u64) -> Self {
        Self {
            folded: position,
            ..Self::default()
        }
    }

    pub fn folded(&self) -> u64 {
        self.folded
    }

    pub fn apply(&mut self, projected: &Projected) {
        self.folded = self.folded.max(projected.position);
        let Ok(user) = UserId::new(projected.user_id) else {
            return;
        };
        match &projected.event {
            AccountEvent::PurchaseRequested(e) => {
                self.positions.insert(e.purchase_id, projected.position);
                self.orders.insert(
                    projected.position,
                    OpenOrder {
                        user,
                        purchase_id: e.purchase_id,
                        requested_at: projected.position,
                        stars: e.stars,
                        deliver_to: e.deliver_to.clone(),
                        price: e.price,
                        stage: Stage::Reserved,
                    },
                );
            }
            AccountEvent::FragmentOrderPlaced(e) => {
                if let Some(order) = self.get_mut(e.purchase_id) {
                    order.stage = Stage::Placed {
                        request_id: e.fragment_request_id.clone(),
                        cost: Nanotons::from_ton(e.ton_amount.value()).unwrap_or_default(),
                    };
                }
            }
            AccountEvent::FragmentOrderSent(e) => {
                if let Some(order) = self.get_mut(e.purchase_id) {
                    let (request_id, cost) = match &order.stage {
                        Stage::Placed { request_id, cost }
                        | Stage::Paying {
                            request_id, cost, ..
                        } => (request_id.clone(), *cost),
                        // The ledger records a payment only after an order: a log without one
                        // is reported by `audit verify`; keep what we know.
                        Stage::Reserved => (String::new(), Nanotons(0)),
                    };
                    order.stage = Stage::Paying {
                        request_id,
                        cost,
                        payment: RecordedPayment::from(e),
                    };
                }
            }
            AccountEvent::PurchaseCompleted(e) => self.close(e.purchase_id),
            AccountEvent::PurchaseFailed(e) => self.close(e.purchase_id),
            _ => {}
        }
    }

    fn get_mut(&mut self, purchase_id: PurchaseId) -> Option<&mut OpenOrder> {
        let position = self.positions.get(&purchase_id)?;
        self.orders.get_mut(position)
    }

    fn close(&mut self, purchase_id: PurchaseId) {
        if let Some(position) = self.positions.remove(&purchase_id) {
            self.orders.remove(&position);
        }
    }

    pub fn get(&self, purchase_id: PurchaseId) -> Option<&OpenOrder> {
        self.orders.get(self.positions.get(&purchase_id)?)
    }

    /// Open purchases, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &OpenOrder> {
        self.orders.values()
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// The checkpoint to keep: just before the oldest open purchase, or everything folded
    /// when none is open.
    pub fn low_watermark(&self) -> u64 {
        self.orders
            .keys()
            .next()
            .map_or(self.folded, |oldest| oldest - 1)
    }

    /// The purchases with a recorded payment (executed or not), oldest first.
    pub fn paying(&self) -> impl Iterator<Item = &OpenOrder> {
        self.orders
            .values()
            .filter(|o| matches!(o.stage, Stage::Paying { .. }))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use starledger_ledger::events::*;
    use starledger_ledger::postings::Posting;

    use super::*;

    fn purchase_id(n: u8) -> PurchaseId {
        PurchaseId::from_uuid(uuid::Uuid::from_bytes([n; 16]))
    }

    fn at(position: u64, event: AccountEvent) -> Projected {
        Projected {
            position,
            user_id: 7,
            recorded_at: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
            event,
        }
    }

    fn requested(n: u8) -> AccountEvent {
        AccountEvent::PurchaseRequested(PurchaseRequested {
            purchase_id: purchase_id(n),
            stars: Stars::new(100).unwrap(),
            recipient: None,
            deliver_to: Some(starledger_ledger::ids::Username::parse("buyer_07").unwrap()),
            price: Amount::parse("0.5").unwrap(),
            currency: starledger_ledger::money::Currency::ton(),
            postings: Vec::<Posting>::new(),
        })
    }

    #[test]
    fn the_watermark_stays_before_the_oldest_open_purchase() {
        let mut orders = OpenOrders::after(10);
        assert_eq!(orders.low_watermark(), 10);
        orders.apply(&at(11, requested(1)));
        orders.apply(&at(12, requested(2)));
        assert_eq!(orders.low_watermark(), 10);
        orders.apply(&at(
            13,
            AccountEvent::PurchaseCompleted(PurchaseCompleted {
                purchase_id: purchase_id(1),
                postings: vec![],
            }),
        ));
        assert_eq!(orders.low_watermark(), 11);
        orders.apply(&at(
            14,
            AccountEvent::PurchaseFailed(PurchaseFailed {
                purchase_id: purchase_id(2),
                reason: "recipient_not_found".into(),
                postings: vec![],
            }),
        ));
        assert!(orders.is_empty());
        assert_eq!(orders.low_watermark(), 14);
    }

    #[test]
    fn stages_follow_the_fragment_events_and_keep_the_recorded_payment() {
        let mut orders = OpenOrders::after(0);
        orders.apply(&at(1, requested(1)));
        orders.apply(&at(
            2,
            AccountEvent::FragmentOrderPlaced(FragmentOrderPlaced {
                purchase_id: purchase_id(1),
                fragment_request_id: "req-1".into(),
                ton_amount: Amount::parse("0.45").unwrap(),
            }),
        ));
        assert_eq!(
            orders.get(purchase_id(1)).map(|o| o.stage.clone()),
            Some(Stage::Placed {
                request_id: "req-1".into(),
                cost: Nanotons(450_000_000)
            })
        );
        assert_eq!(orders.paying().count(), 0);
        let valid_until = Utc.timestamp_opt(1_800_000_120, 0).unwrap();
        orders.apply(&at(
            3,
            AccountEvent::FragmentOrderSent(FragmentOrderSent {
                purchase_id: purchase_id(1),
                wallet_tx: "ab".repeat(32),
                seqno: Some(4),
                valid_until: Some(valid_until),
                message: Some("te6cc".into()),
                transfers: vec![WalletTransfer {
                    destination: "0:feed".into(),
                    amount: Amount::parse("0.45").unwrap(),
                    payload: None,
                }],
                attempt: 1,
            }),
        ));
        let paying = orders.paying().next().expect("a payment in flight");
        let Stage::Paying {
            request_id,
            cost,
            payment,
        } = &paying.stage
        else {
            panic!("not paying: {:?}", paying.stage);
        };
        assert_eq!(
            (request_id.as_str(), *cost),
            ("req-1", Nanotons(450_000_000))
        );
        assert_eq!(payment.seqno, Some(4));
        assert_eq!(payment.transfers[0].amount, Nanotons(450_000_000));
        assert_eq!(payment.valid_until, Some(valid_until));
        assert_eq!(orders.folded(), 3);
    }
}
