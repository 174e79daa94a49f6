//! Step 3 of a purchase, Paying → Completed | Failed | another attempt: look for the
//! recorded payment on chain. Found: confirm it to Fragment (`confirmReq`, as the site does),
//! ask how the order went and complete it (or fail it if Fragment gave up). Not found: re-send
//! the same bytes while they can still execute, or sign a new attempt once they provably never
//! will. This is also where a purchase caught mid-payment by a restart picks up, from what the
//! log recorded.

use std::time::{Duration, Instant};

use starledger_ledger::account::AccountCommand;

use super::{Progress, Worker, FRAGMENT_FAILED};
use crate::body;
use crate::market::{MarketError, OrderState};
use crate::orders::{OpenOrder, RecordedPayment};
use crate::ton::{Nanotons, SignedTransfer, TransferMessage};
use crate::wallet::same_address;
use starledger_telemetry::metrics_catalog::FULFILMENT_OUTCOMES;

impl Worker {
    pub(super) async fn follow_payment(
        &mut self,
        order: &OpenOrder,
        request_id: &str,
        cost: Nanotons,
        payment: &RecordedPayment,
    ) -> Progress {
        let (Some(seqno), Some(valid_until), Some(message)) = (
            payment.seqno,
            payment.valid_until,
            payment.message.as_deref(),
        ) else {
            self.alert(
                order.purchase_id,
                "payment_unknown",
                "a payment recorded without its message cannot be checked; resolve it through the admin API",
            );
            return Progress::Wait(self.fulfilment.settings.delivery_alert_after);
        };
        let account = self.fulfilment.wallet.account();
        let chain = self.fulfilment.chain.clone();
        let window = chrono::Duration::from_std(
            self.fulfilment.settings.payment_window + Duration::from_secs(600),
        )
        .unwrap_or(chrono::Duration::minutes(12));
        // Look for the transaction first and read the seqno second: if the message executes
        // in between, the seqno shows it, so "not found, seqno not past ours" is never a
        // payment that happened before we looked.
        match chain
            .find_transaction(
                &account.address,
                &payment.message_hash,
                valid_until - window,
            )
            .await
        {
            Ok(Some(transaction)) => {
                if pays_as_recorded(&payment.transfers, &transaction.transfers) {
                    let now = self.fulfilment.clock.now();
                    self.paid_at.entry(order.purchase_id).or_insert(now);
                    self.next_seqno = self.next_seqno.max(seqno.saturating_add(1));
                    tracing::debug!(purchase = %order.purchase_id, tx = %transaction.hash, "payment executed");
                    return self.after_payment(order, request_id, message).await;
                }
                // The wallet took the message (its seqno moved) but does not show the recorded
                // transfers going out: its send may have failed (lack of funds: send mode 3
                // ignores errors), or the API shows the transaction incompletely. Paying again
                // on that reading could pay twice, so an operator decides.
                self.alert(
                    order.purchase_id,
                    "payment_not_sent",
                    &format!(
                        "transaction {} executed the payment but does not show the {cost} it was to send with the order's comment; check it on chain, then resolve the purchase through the admin API",
                        transaction.hash,
                    ),
                );
                return Progress::Wait(self.fulfilment.settings.delivery_alert_after);
            }
            Ok(None) => {}
            Err(error) => return self.chain_error(order, error),
        }
        let wallet_state = match chain.wallet_state(&account.address).await {
            Ok(state) => state,
            Err(error) => return self.chain_error(order, error),
        };
        if wallet_state.seqno > seqno {
            // The seqno moved on but our message is not (yet) among the wallet's
            // transactions: an indexer behind, or the wallet used elsewhere. Either way the
            // outcome is unknown: never pay again, never refund; keep looking and tell
            // someone if it lasts.
            let now = self.fulfilment.clock.now();
            let since = *self.paid_at.entry(order.purchase_id).or_insert(now);
            if self.since(since) > self.fulfilment.settings.payment_window {
                self.alert(
                    order.purchase_id,
                    "payment_unknown",
                    &format!(
                        "wallet seqno is {} (ours was {seqno}) but the payment is not found on chain; is the wallet used elsewhere?",
                        wallet_state.seqno
                    ),
                );
            }
            return Progress::Wait(self.fulfilment.settings.tick * 5);
        }
        let expired_at = valid_until
            + chrono::Duration::from_std(self.fulfilment.settings.expiry_margin)
                .unwrap_or(chrono::Duration::seconds(60));
        if self.fulfilment.clock.now() > expired_at {
            // Past its deadline with the seqno not beyond it: the message can never execute.
            tracing::info!(
                purchase = %order.purchase_id,
                attempt = payment.attempt,
                "payment expired unexecuted; signing a new one"
            );
            self.last_broadcast.remove(&order.purchase_id);
            return self.pay(order, request_id, cost, payment.attempt + 1).await;
        }
        let resend_due = self
            .last_broadcast
            .get(&order.purchase_id)
            .is_none_or(|at| at.elapsed() >= self.fulfilment.settings.rebroadcast_every);
        if resend_due {
            self.last_broadcast
                .insert(order.purchase_id, Instant::now());
            let transfer = SignedTransfer {
                seqno,
                valid_until,
                message: message.to_owned(),
                message_hash: payment.message_hash.clone(),
                transfers: payment.transfers.clone(),
            };
            if let Err(error) = chain.broadcast(&transfer).await {
                tracing::warn!(purchase = %order.purchase_id, %error, "re-sending the payment failed");
            }
        }
        Progress::Wait(self.fulfilment.settings.tick)
    }

    async fn after_payment(
        &mut self,
        order: &OpenOrder,
        request_id: &str,
        message: &str,
    ) -> Progress {
        let market = self.fulfilment.market.clone();
        if !self.confirmed.contains(&order.purchase_id) {
            let account = self.fulfilment.wallet.account();
            match market.confirm_payment(request_id, &account, message).await {
                Ok(()) => {
                    self.confirmed.insert(order.purchase_id);
                }
                Err(error) => {
                    // Paid: a refusal here is no reason to refund. Keep confirming, and let
                    // the delivery alert tell an operator if it never goes through.
                    if matches!(error, MarketError::SessionExpired(_)) {
                        self.pause(&error);
                    }
                    tracing::warn!(purchase = %order.purchase_id, %error, "cannot confirm the payment to Fragment; will retry");
                    self.alert_if_overdue(order);
                    return self.backoff(order.purchase_id);
                }
            }
        }
        match market.order_state(request_id).await {
            Ok(state @ (OrderState::Delivered | OrderState::Unknown)) => {
                if state == OrderState::Unknown {
                    tracing::warn!(
                        purchase = %order.purchase_id,
                        request = request_id,
                        "Fragment gives no state for this paid order; completing on the chain's evidence of payment"
                    );
                }
                let command = AccountCommand::CompletePurchase {
                    purchase_id: order.purchase_id,
                };
                let progress = self.record(order, command, "completed").await;
                if progress == Progress::Moved {
                    tracing::info!(purchase = %order.purchase_id, stars = order.stars.get(), "stars delivered");
                    metrics::counter!(FULFILMENT_OUTCOMES, "outcome" => "completed").increment(1);
                }
                progress
            }
            Ok(OrderState::Failed(reason)) => {
                // Fragment gave up on a paid order; its refund comes back to the wallet, and
                // the customer's reservation is released.
                self.fail(order, FRAGMENT_FAILED, &reason).await
            }
            Ok(OrderState::Pending) => {
                self.alert_if_overdue(order);
                Progress::Wait(self.fulfilment.settings.tick * 2)
            }
            Err(error) => {
                // Paid: whatever Fragment says now, refusing or failing is not a refund
                // decision. Keep asking.
                if matches!(error, MarketError::SessionExpired(_)) {
                    self.pause(&error);
                }
                tracing::warn!(purchase = %order.purchase_id, %error, "cannot learn how a paid order went");
                self.alert_if_overdue(order);
                self.backoff(order.purchase_id)
            }
        }
    }

    fn alert_if_overdue(&mut self, order: &OpenOrder) {
        let overdue = self
            .paid_at
            .get(&order.purchase_id)
            .is_some_and(|at| self.since(*at) > self.fulfilment.settings.delivery_alert_after);
        if overdue {
            self.alert(
                order.purchase_id,
                "delivery_overdue",
                "paid, but Fragment has not confirmed delivery; check with Fragment, then resolve it through the admin API",
            );
        }
    }
}

/// Whether a transaction sent every recorded transfer: to the same account (in whatever
/// address form the API reports it), with the same amount.
fn pays_as_recorded(recorded: &[TransferMessage], sent: &[TransferMessage]) -> bool {
    !recorded.is_empty()
        && recorded.iter().all(|wanted| {
            sent.iter().any(|out| {
                out.amount == wanted.amount
                    && same_address(&out.destination, &wanted.destination)
                    && same_reference(wanted.payload.as_deref(), out.payload.as_deref())
            })
        })
}

/// Whether a transfer on chain carried the body recorded for it: the same comment (the
/// order's reference) or the same cells. A payment recorded before bodies were (v2 events)
/// is matched on destination and amount alone.
fn same_reference(recorded: Option<&str>, sent: Option<&str>) -> bool {
    match (recorded, sent) {
        (None, _) => true,
        (Some(recorded), Some(sent)) => body::same(recorded, sent),
        (Some(_), None) => false,
    }
}
