//! Step 1 of a purchase, Reserved → Placed: find the recipient, open a Fragment order, check
//! its TON cost against what the customer's reservation pays, and record
//! `FragmentOrderPlaced`. A crash before the record opens another order next time; an unpaid
//! Fragment order costs nothing.

use rust_decimal::Decimal;
use starledger_ledger::account::AccountCommand;
use starledger_ledger::money::Currency;

use super::{Progress, Worker};
use crate::market::MarketError;
use crate::orders::OpenOrder;
use crate::ton::Nanotons;

/// Why an opened order is not paid: Fragment asks more than the purchase allows. The text is
/// the alert's detail and the failure reason recorded on the purchase.
#[derive(Debug, thiserror::Error)]
#[error("Fragment asks {cost} for {stars} stars, more than the {ceiling} TON allowed")]
struct CostTooHigh {
    cost: Nanotons,
    stars: u32,
    /// Already normalised, as it is shown.
    ceiling: Decimal,
}

impl Worker {
    pub(super) async fn place(&mut self, order: &OpenOrder) -> Progress {
        if let Some(wait) = self.paused() {
            return Progress::Wait(wait);
        }
        // Only the name recorded on the order: never the buyer's profile, whose name may have
        // been given up and taken by someone else since.
        let Some(username) = order.deliver_to.clone() else {
            return self
                .fail(
                    order,
                    "no_recipient",
                    "the order records no username to deliver to (placed before orders named one)",
                )
                .await;
        };
        let market = self.fulfilment.market.clone();
        let recipient = match market.find_recipient(&username, order.stars).await {
            Ok(recipient) => recipient,
            Err(error) => return self.market_error(order, error).await,
        };
        let opened = match market.open_order(&recipient, order.stars).await {
            Ok(opened) => opened,
            Err(error) => return self.market_error(order, error).await,
        };
        if let Err(reason) = self.check_cost(order, opened.cost) {
            let reason = reason.to_string();
            self.alert(order.purchase_id, "price_changed", &reason);
            return self.fail(order, "price_changed", &reason).await;
        }
        let Some(ton_amount) = opened.cost.to_amount() else {
            let error =
                MarketError::BadResponse(format!("order {} costs nothing", opened.request_id));
            return self.market_error(order, error).await;
        };
        tracing::info!(
            purchase = %order.purchase_id,
            request = %opened.request_id,
            cost = %opened.cost,
            "Fragment order opened"
        );
        let command = AccountCommand::RecordFragmentOrder {
            purchase_id: order.purchase_id,
            fragment_request_id: opened.request_id,
            ton_amount,
        };
        self.record(order, command, "placed").await
    }

    /// The cost is acceptable if it is within the per-star ceiling, or — with no ceiling
    /// configured and the ledger in TON — within what the customer's reservation holds.
    fn check_cost(&self, order: &OpenOrder, cost: Nanotons) -> Result<(), CostTooHigh> {
        let ceiling = match self.fulfilment.settings.max_ton_per_star {
            Some(per_star) => per_star * Decimal::from(order.stars.get()),
            None if self.fulfilment.currency == Currency::ton() => order.price.value(),
            // The configuration requires a ceiling for other currencies; without one, refuse
            // rather than pay an unchecked amount.
            None => Decimal::ZERO,
        };
        if cost.to_ton() <= ceiling {
            Ok(())
        } else {
            Err(CostTooHigh {
                cost,
                stars: order.stars.get(),
                ceiling: ceiling.normalize(),
            })
        }
    }
}
