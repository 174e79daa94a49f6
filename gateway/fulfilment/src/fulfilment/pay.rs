//! Step 2 of a purchase, Placed → Paying: ask Fragment for the transfer, check where it goes
//! and what it costs, read the wallet's seqno, sign, record the signed message
//! (`FragmentOrderSent`) and only then broadcast it. The record comes first so that whatever
//! happens next, a restart knows the exact bytes that may be on their way. Step 3 comes back
//! here for a new attempt once the previous payment provably expired unexecuted.

use std::time::Instant;

use starledger_ledger::account::AccountCommand;
use starledger_ledger::events::{AccountEvent, WalletTransfer};

use super::record::Recorded;
use super::{Progress, Worker};
use crate::market::MarketError;
use crate::orders::{OpenOrder, Stage};
use crate::ton::{Nanotons, TransferMessage};
use crate::wallet::same_address;
use starledger_outbound as outbound;
use starledger_telemetry::metrics_catalog::FULFILMENT_PAYMENTS;

impl Worker {
    pub(super) async fn pay(
        &mut self,
        order: &OpenOrder,
        request_id: &str,
        cost: Nanotons,
        attempt: u32,
    ) -> Progress {
        if let Some(wait) = self.paused() {
            return Progress::Wait(wait);
        }
        // In flight: recorded, with a seqno (a payment recorded without one was written after
        // the fact), and not yet seen executed or its seqno consumed (`paid_at`).
        let in_flight = self.orders.paying().any(|other| {
            other.purchase_id != order.purchase_id
                && !self.paid_at.contains_key(&other.purchase_id)
                && matches!(&other.stage, Stage::Paying { payment, .. } if payment.seqno.is_some())
        });
        if in_flight {
            // One payment in flight at a time: two signed with the same seqno would have one
            // of them fail, and the wallet's seqno is the only proof of expiry we have.
            return Progress::Wait(self.fulfilment.settings.tick);
        }
        let account = self.fulfilment.wallet.account();
        let market = self.fulfilment.market.clone();
        let request = match market.payment_request(request_id, &account).await {
            Ok(request) => request,
            Err(error) => return self.market_error(order, error).await,
        };
        let total = request
            .messages
            .iter()
            .try_fold(Nanotons(0), |sum, m| sum.checked_add(m.amount));
        let total = match total {
            Some(total) if !request.messages.is_empty() && total.0 > 0 => total,
            _ => {
                let error = MarketError::BadResponse(format!(
                    "payment request for {request_id} has no usable transfer"
                ));
                return self.market_error(order, error).await;
            }
        };
        if let Err(progress) = self.check_destinations(order, request_id, &request.messages) {
            return progress;
        }
        if total != cost {
            // Fragment opened the order at one price and now asks another. Pay exactly what
            // was recorded or nothing: the recorded cost is also what the chain check below
            // holds the executed transaction to.
            let reason = format!("Fragment opened the order at {cost} and now asks {total}");
            self.alert(order.purchase_id, "price_changed", &reason);
            return self.fail(order, "price_changed", &reason).await;
        }
        let chain = self.fulfilment.chain.clone();
        let wallet_state = match chain.wallet_state(&account.address).await {
            Ok(state) => state,
            Err(error) => return self.chain_error(order, error),
        };
        self.observe_balance(wallet_state.balance);
        if wallet_state.seqno < self.next_seqno {
            // The API answers from a state older than a payment we have seen execute: a
            // message signed with that seqno would be refused. Ask again shortly.
            return Progress::Wait(self.fulfilment.settings.tick);
        }
        let needed = total
            .checked_add(self.fulfilment.settings.fee_reserve)
            .unwrap_or(Nanotons(u64::MAX));
        if wallet_state.balance < needed {
            self.alert(
                order.purchase_id,
                "low_balance",
                &format!(
                    "the wallet holds {}, this order needs {needed} with fees; orders wait until it is topped up",
                    wallet_state.balance
                ),
            );
            return Progress::Wait(self.fulfilment.settings.tick * 15);
        }
        let now = self.fulfilment.clock.now();
        let window = chrono::Duration::from_std(self.fulfilment.settings.payment_window)
            .unwrap_or(chrono::Duration::seconds(120));
        let valid_until = request.valid_until.min(now + window);
        if valid_until <= now + chrono::Duration::seconds(10) {
            tracing::warn!(purchase = %order.purchase_id, "Fragment's transfer expires too soon; asking again");
            return self.backoff(order.purchase_id);
        }
        let signed = match self.fulfilment.wallet.sign_transfer(
            wallet_state.seqno,
            valid_until,
            &request.messages,
        ) {
            Ok(signed) => signed,
            Err(error) => {
                self.alert(order.purchase_id, "signing_failed", &error.to_string());
                return self.backoff(order.purchase_id);
            }
        };
        let mut transfers = Vec::with_capacity(signed.transfers.len());
        for transfer in &signed.transfers {
            let Some(amount) = transfer.amount.to_amount() else {
                let error = MarketError::BadResponse("a transfer of nothing".into());
                return self.market_error(order, error).await;
            };
            transfers.push(WalletTransfer {
                destination: transfer.destination.clone(),
                amount,
                payload: transfer.payload.clone(),
            });
        }
        // Write-ahead: the payment is in the log before a single byte of it leaves.
        let command = AccountCommand::RecordFragmentSent {
            purchase_id: order.purchase_id,
            wallet_tx: signed.message_hash.clone(),
            seqno: signed.seqno,
            valid_until: signed.valid_until,
            message: signed.message.clone(),
            transfers,
            attempt,
        };
        let key = format!("payment:{attempt}");
        let recorded = match self.execute(order, command, &key).await {
            Ok(Some(AccountEvent::FragmentOrderSent(recorded))) => recorded,
            Ok(_) | Err(Recorded::Elsewhere) => return Progress::Moved,
            Err(Recorded::Failed) => return self.backoff(order.purchase_id),
        };
        if recorded.wallet_tx != signed.message_hash {
            // Another signer's payment for this attempt is the one on record; it is the only
            // one that may be sent (the next step re-sends it).
            tracing::warn!(purchase = %order.purchase_id, "a different payment is on record for this attempt; not sending ours");
            return Progress::Moved;
        }
        tracing::info!(
            purchase = %order.purchase_id,
            attempt,
            seqno = signed.seqno,
            amount = %total,
            "payment recorded; broadcasting"
        );
        self.last_broadcast
            .insert(order.purchase_id, Instant::now());
        if let Err(error) = chain.broadcast(&signed).await {
            // Not a failure of the payment: the next steps look for it, re-send it, or prove
            // it expired.
            tracing::warn!(purchase = %order.purchase_id, %error, "broadcast failed; will re-send");
        }
        metrics::counter!(FULFILMENT_PAYMENTS).increment(1);
        Progress::Moved
    }

    /// Before anything is signed: every transfer goes to one of Fragment's payment addresses
    /// and carries a body (Fragment's comment naming the order, which is how it matches the
    /// money to the order). A transfer anywhere else is never signed: an operator is alerted
    /// and the order waits (a new address of Fragment's is added to the allowlist; anything
    /// else is an attack or a bug). Nothing is refunded for it.
    fn check_destinations(
        &mut self,
        order: &OpenOrder,
        request_id: &str,
        messages: &[TransferMessage],
    ) -> Result<(), Progress> {
        let allowed = &self.fulfilment.settings.payment_addresses;
        if let Some(stranger) = messages
            .iter()
            .find(|m| !allowed.iter().any(|a| same_address(a, &m.destination)))
        {
            let destination = outbound::shorten(&stranger.destination, 80);
            self.alert(
                order.purchase_id,
                "payment_address_refused",
                &format!(
                    "Fragment asks order {request_id} to be paid to {destination}, which is not in FRAGMENT_PAYMENT_ADDRESSES; nothing was signed. If it is Fragment's, add it and the order goes on"
                ),
            );
            return Err(Progress::Wait(self.fulfilment.settings.tick * 15));
        }
        if messages.iter().any(|m| m.payload.is_none()) {
            self.alert(
                order.purchase_id,
                "payment_without_reference",
                &format!("Fragment's transfer for order {request_id} carries no comment naming the order; nothing was signed"),
            );
            return Err(self.backoff(order.purchase_id));
        }
        Ok(())
    }
}
