//! The fulfilment worker: sees every Stars purchase through Fragment and the shop wallet, and
//! records how each one ends — delivered (the reservation is captured) or failed (it is
//! released back to the customer).
//!
//! For each open purchase, oldest first:
//!
//! 1. **Reserved** → find the recipient, open a Fragment order, check its TON cost against
//!    what the customer's reservation pays, record `FragmentOrderPlaced`. A crash before the
//!    record opens another order next time; an unpaid Fragment order costs nothing.
//! 2. **Placed** → ask Fragment for the transfer, read the wallet's seqno, sign, record the
//!    signed message (`FragmentOrderSent`) and only then broadcast it. The record comes first
//!    so that whatever happens next, a restart knows the exact bytes that may be on their way.
//! 3. **Paying** → look for the message on chain. Found: the payment executed; confirm it to
//!    Fragment (`confirmReq`, as the site does) and ask how the order went and complete it (or fail it if Fragment gave up, since its refund
//!    comes back to the wallet). Not found: re-send the same bytes while they can still
//!    execute; once their deadline has passed with the wallet's seqno not beyond theirs, they
//!    never will, and a new attempt (new seqno, new record) is safe.
//!
//! What must never happen, and why it cannot:
//! - **Paying twice for one purchase.** A new payment is signed only from `Placed`, or from
//!   `Paying` once the previous message provably expired unexecuted; the wallet pays one
//!   purchase at a time, so two payments never share a seqno; and the ledger accepts attempt
//!   n + 1 only after attempt n, once — a second signer racing this one gets its record
//!   refused and broadcasts nothing of its own.
//! - **Refunding a delivered purchase.** A purchase is failed only before any payment was
//!   recorded, after a recorded payment provably expired, or when Fragment itself reports the
//!   order failed. An outcome the worker cannot know (a seqno consumed without our message
//!   being found, a transaction that does not show the recorded transfers, Fragment saying
//!   "pending" long after payment) is re-checked and raised to an operator, never guessed.
//! - **Capturing without delivering.** A purchase completes when Fragment confirms delivery,
//!   or — when Fragment gives no state at all for the order ([`OrderState::Unknown`]: its
//!   state call is undocumented and may be refused) — on the chain's evidence: our recorded
//!   transfers to Fragment, carrying the order's reference, executed, and Fragment was told.
//!   That is how fragment.com itself sells; an order Fragment drops anyway is refunded to the
//!   wallet and is for an operator (the completion is logged with a warning).
//!
//! State lives in the log ([`OpenOrders`] folds it); the checkpoint is the position before the
//! oldest open purchase. Timers here only pace retries and alerts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use starledger_ledger::account::{AccountCommand, Rejection};
use starledger_ledger::commands::{CommandContext, CommandError, Ledger};
use starledger_ledger::events::{AccountEvent, Actor, WalletTransfer};
use starledger_ledger::ids::{IdempotencyKey, PurchaseId};
use starledger_ledger::money::Currency;
use starledger_ledger::store::{EventStore, StoreError};
use starledger_projections::runtime::decode_page;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::body;
use super::market::{MarketError, OrderState, StarsMarket};
use super::orders::{OpenOrder, OpenOrders, RecordedPayment, Stage};
use super::ton::{ChainError, Nanotons, SignedTransfer, TonChain, TransferMessage, WalletSigner};
use super::wallet::same_address;
use crate::lease::Lease;
use crate::metrics_catalog::{
    FRAGMENT_SESSION_EXPIRES_IN_SECONDS, FULFILMENT_ALERTS, FULFILMENT_OPEN_ORDERS,
    FULFILMENT_OUTCOMES, FULFILMENT_PAUSED, FULFILMENT_PAYMENTS, FULFILMENT_WALLET_BALANCE_TON,
    FULFILMENT_WALLET_LOW,
};
use crate::outbound;
use crate::reactor::{Checkpoint, ReactorContext};

/// The worker's checkpoint and lease name.
/// The failure code of a paid order that Fragment reports failed.
const FRAGMENT_FAILED: &str = "fragment_failed";

pub const NAME: &str = "fulfilment";

/// Timing and limits of the worker.
#[derive(Debug, Clone)]
pub struct FulfilmentSettings {
    /// How long a signed payment may execute: short, so an unexecuted one is provably dead
    /// soon and the purchase can move on.
    pub payment_window: Duration,
    /// How far past a payment's deadline the worker waits before calling it expired: covers
    /// the difference between our clock and the validators'.
    pub expiry_margin: Duration,
    /// How often a pending payment is broadcast again.
    pub rebroadcast_every: Duration,
    /// How long a paid order may stay undelivered before an operator is alerted.
    pub delivery_alert_after: Duration,
    /// How long orders pause after Fragment says the session expired, before trying again.
    pub session_pause: Duration,
    /// Below this wallet balance an operator is alerted, before orders start waiting for funds.
    pub min_wallet_balance: Nanotons,
    /// Kept in the wallet beyond a payment's amount, for network fees.
    pub fee_reserve: Nanotons,
    /// The most Fragment may charge per star. `None`: only when the ledger currency is TON,
    /// and then the customer's reserved price is the ceiling (the shop never sells at a loss).
    pub max_ton_per_star: Option<Decimal>,
    /// How often the worker looks at waiting purchases when no new event wakes it.
    pub tick: Duration,
    /// Fragment's payment addresses (any form): the only destinations the wallet signs
    /// transfers to. Anything else is refused with an alert, never signed; empty refuses all.
    pub payment_addresses: Vec<String>,
    /// How often the Fragment session is checked between orders (the first check comes this
    /// long after start).
    pub session_check_every: Duration,
    /// When the session's cookies expire, if the operator said (`FRAGMENT_SESSION_EXPIRES_AT`).
    pub session_expires_at: Option<DateTime<Utc>>,
    /// How long before that operators are alerted to renew them.
    pub session_warn_before: Duration,
}

impl Default for FulfilmentSettings {
    fn default() -> Self {
        Self {
            payment_window: Duration::from_secs(120),
            expiry_margin: Duration::from_secs(60),
            rebroadcast_every: Duration::from_secs(15),
            delivery_alert_after: Duration::from_secs(600),
            session_pause: Duration::from_secs(60),
            min_wallet_balance: Nanotons(10 * Nanotons::PER_TON),
            fee_reserve: Nanotons(Nanotons::PER_TON / 10),
            max_ton_per_star: None,
            tick: Duration::from_secs(2),
            payment_addresses: Vec::new(),
            session_check_every: Duration::from_secs(300),
            session_expires_at: None,
            session_warn_before: Duration::from_secs(3 * 86_400),
        }
    }
}

/// What the worker works with. Cheap to clone.
#[derive(Clone)]
pub struct Fulfilment {
    pub ledger: Arc<Ledger>,
    pub market: Arc<dyn StarsMarket>,
    pub wallet: Arc<dyn WalletSigner>,
    pub chain: Arc<dyn TonChain>,
    /// The ledger currency: prices are compared with Fragment's TON cost only in TON.
    pub currency: Currency,
    pub settings: FulfilmentSettings,
}

impl Fulfilment {
    /// Runs the worker until `stop` turns true: competes for its lease, then follows the log.
    pub fn start(self, context: ReactorContext, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            tracing::info!(
                market = self.market.name(),
                chain = self.chain.name(),
                wallet = %self.wallet.account().address,
                "fulfilment worker starting"
            );
            while !*stop.borrow() {
                let Some(mut lease) = Lease::acquire(&context.storage, NAME, &mut stop).await
                else {
                    break;
                };
                if let Err(error) = self.run(&context, &mut lease, &mut stop).await {
                    tracing::warn!(%error, "fulfilment worker stopped; competing for its lease again");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        })
    }

    async fn run(
        &self,
        context: &ReactorContext,
        lease: &mut Lease,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), WorkerError> {
        let checkpoint = Checkpoint::new(NAME, context.read.clone());
        // From the beginning the first time: purchases reserved before the worker was
        // switched on (say, in manual mode) are owed their stars too.
        let start = checkpoint.load_or_start_at(0).await?;
        let mut worker = Worker::new(self.clone(), start);
        let mut committed = context.events.committed();
        while !*stop.borrow() {
            if !lease.is_held().await {
                return Err(WorkerError::LeaseLost);
            }
            committed.borrow_and_update();
            worker.step(context.events.as_ref(), stop).await?;
            checkpoint.advance(worker.orders.low_watermark()).await?;
            tokio::select! {
                _ = committed.changed() => {}
                _ = tokio::time::sleep(self.settings.tick) => {}
                _ = stop.changed() => {}
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Events(#[from] StoreError),
    #[error(transparent)]
    Read(#[from] starledger_projections::store::ReadError),
    #[error("the log cannot be read: {0}")]
    Undecodable(String),
    #[error("lease lost")]
    LeaseLost,
}

/// What one attempt at a purchase led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Something was recorded: fold it and look at the purchase again.
    Moved,
    /// Waiting for the world; look again after this long.
    Wait(Duration),
}

/// The worker between steps. Everything in it but `orders` only paces retries and alerts.
pub struct Worker {
    fulfilment: Fulfilment,
    pub orders: OpenOrders,
    retry_at: HashMap<PurchaseId, Instant>,
    retries: HashMap<PurchaseId, u32>,
    last_broadcast: HashMap<PurchaseId, Instant>,
    /// When each purchase's payment was first seen executed (for the delivery alert).
    paid_at: HashMap<PurchaseId, Instant>,
    /// Purchases whose payment Fragment has been told about (told again after a restart:
    /// confirming is safe to repeat).
    confirmed: HashSet<PurchaseId>,
    alerted: HashSet<(PurchaseId, &'static str)>,
    paused_until: Option<Instant>,
    balance_checked_at: Option<Instant>,
    session_checked_at: Instant,
    /// Whether the coming expiry of the session was alerted (once per process).
    expiry_alerted: bool,
    /// One past the highest seqno seen executed: the least the wallet's seqno can be now.
    next_seqno: u32,
}

impl Worker {
    /// A worker whose log fold starts after `checkpoint`.
    pub fn new(fulfilment: Fulfilment, checkpoint: u64) -> Self {
        Self {
            fulfilment,
            orders: OpenOrders::after(checkpoint),
            retry_at: HashMap::new(),
            retries: HashMap::new(),
            last_broadcast: HashMap::new(),
            paid_at: HashMap::new(),
            confirmed: HashSet::new(),
            alerted: HashSet::new(),
            paused_until: None,
            balance_checked_at: None,
            session_checked_at: Instant::now(),
            expiry_alerted: false,
            next_seqno: 0,
        }
    }

    /// Folds what is new in the log, then takes every purchase that is due as far as it goes
    /// without waiting.
    pub async fn step(
        &mut self,
        events: &dyn EventStore,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), WorkerError> {
        self.catch_up(events).await?;
        self.watch_wallet_balance().await;
        self.watch_session().await;
        let now = Instant::now();
        let due: Vec<PurchaseId> = self
            .orders
            .iter()
            .filter(|o| {
                self.retry_at
                    .get(&o.purchase_id)
                    .is_none_or(|at| *at <= now)
            })
            .map(|o| o.purchase_id)
            .collect();
        for purchase_id in due {
            // A purchase moves through several stages in one step when nothing outside makes
            // it wait; the bound only guards against a bug looping forever.
            for _ in 0..8 {
                if *stop.borrow() {
                    return Ok(());
                }
                let Some(order) = self.orders.get(purchase_id).cloned() else {
                    break;
                };
                match self.advance(&order).await {
                    Progress::Moved => {
                        self.retries.remove(&purchase_id);
                        self.retry_at.remove(&purchase_id);
                        self.catch_up(events).await?;
                    }
                    Progress::Wait(pause) => {
                        self.retry_at.insert(purchase_id, Instant::now() + pause);
                        break;
                    }
                }
            }
        }
        let open = self.orders.len();
        metrics::gauge!(FULFILMENT_OPEN_ORDERS).set(open as f64);
        self.forget_closed();
        Ok(())
    }

    async fn catch_up(&mut self, events: &dyn EventStore) -> Result<(), WorkerError> {
        loop {
            let recorded = events.read_all(self.orders.folded(), 1_000).await?;
            if recorded.is_empty() {
                return Ok(());
            }
            let page =
                decode_page(&recorded).map_err(|e| WorkerError::Undecodable(e.to_string()))?;
            for event in &page {
                self.orders.apply(event);
            }
        }
    }

    fn forget_closed(&mut self) {
        let orders = &self.orders;
        self.retry_at.retain(|id, _| orders.get(*id).is_some());
        self.retries.retain(|id, _| orders.get(*id).is_some());
        self.last_broadcast
            .retain(|id, _| orders.get(*id).is_some());
        self.paid_at.retain(|id, _| orders.get(*id).is_some());
        self.confirmed.retain(|id| orders.get(*id).is_some());
        self.alerted.retain(|(id, _)| orders.get(*id).is_some());
    }

    async fn advance(&mut self, order: &OpenOrder) -> Progress {
        match &order.stage {
            Stage::Reserved => self.place(order).await,
            Stage::Placed { request_id, cost } => self.pay(order, request_id, *cost, 1).await,
            Stage::Paying {
                request_id,
                cost,
                payment,
            } => self.follow_payment(order, request_id, *cost, payment).await,
        }
    }

    // ---- 1. Reserved → Placed ----------------------------------------------------------

    async fn place(&mut self, order: &OpenOrder) -> Progress {
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
    fn check_cost(&self, order: &OpenOrder, cost: Nanotons) -> Result<(), String> {
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
            Err(format!(
                "Fragment asks {cost} for {} stars, more than the {} TON allowed",
                order.stars.get(),
                ceiling.normalize()
            ))
        }
    }

    // ---- 2. Placed → Paying ------------------------------------------------------------

    async fn pay(
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
        let now = Utc::now();
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

    // ---- 3. Paying → Completed | Failed | another attempt -------------------------------

    async fn follow_payment(
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
                    self.paid_at
                        .entry(order.purchase_id)
                        .or_insert_with(Instant::now);
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
            let since = *self
                .paid_at
                .entry(order.purchase_id)
                .or_insert_with(Instant::now);
            if since.elapsed() > self.fulfilment.settings.payment_window {
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
        if Utc::now() > expired_at {
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
            .is_some_and(|at| at.elapsed() > self.fulfilment.settings.delivery_alert_after);
        if overdue {
            self.alert(
                order.purchase_id,
                "delivery_overdue",
                "paid, but Fragment has not confirmed delivery; check with Fragment, then resolve it through the admin API",
            );
        }
    }

    // ---- Outcomes and errors -------------------------------------------------------------

    async fn fail(&mut self, order: &OpenOrder, code: &'static str, detail: &str) -> Progress {
        let reason: String = format!("{code}: {detail}").chars().take(500).collect();
        let command = AccountCommand::FailPurchase {
            purchase_id: order.purchase_id,
            reason,
            // Fragment's own word that a paid order failed is the evidence `force` asks for;
            // every other failure comes before a payment is recorded, and the ledger refuses
            // it if one was recorded meanwhile.
            force: code == FRAGMENT_FAILED,
        };
        let progress = self.record(order, command, "failed").await;
        if progress == Progress::Moved {
            tracing::info!(purchase = %order.purchase_id, code, "purchase failed; reservation released");
            metrics::counter!(FULFILMENT_OUTCOMES, "outcome" => "refunded", "reason" => code)
                .increment(1);
        }
        progress
    }

    async fn market_error(&mut self, order: &OpenOrder, error: MarketError) -> Progress {
        match &error {
            MarketError::SessionExpired(_) => {
                self.pause(&error);
                Progress::Wait(self.fulfilment.settings.session_pause)
            }
            error if error.is_definite() => {
                if matches!(error, MarketError::KycRequired(_)) {
                    self.alert(order.purchase_id, "kyc_required", &error.to_string());
                }
                self.fail(order, error.code(), &error.to_string()).await
            }
            MarketError::BadResponse(_) => {
                self.alert(order.purchase_id, "bad_response", &error.to_string());
                self.backoff(order.purchase_id)
            }
            _ => {
                tracing::warn!(purchase = %order.purchase_id, %error, "Fragment unavailable; will retry");
                self.backoff(order.purchase_id)
            }
        }
    }

    fn chain_error(&mut self, order: &OpenOrder, error: ChainError) -> Progress {
        tracing::warn!(purchase = %order.purchase_id, %error, "TON API unavailable; will retry");
        self.backoff(order.purchase_id)
    }

    /// Pauses every order until the session is renewed (or the pause runs out and a retry
    /// shows it works again). Nothing is refunded for it.
    fn pause(&mut self, error: &MarketError) {
        if self.paused().is_none() {
            tracing::error!(%error, "Fragment session expired: orders are paused until FRAGMENT_COOKIES is renewed; nothing is refunded");
            metrics::counter!(FULFILMENT_ALERTS, "kind" => "session_expired").increment(1);
        }
        metrics::gauge!(FULFILMENT_PAUSED).set(1.0);
        self.paused_until = Some(Instant::now() + self.fulfilment.settings.session_pause);
    }

    fn paused(&mut self) -> Option<Duration> {
        match self.paused_until {
            Some(until) if until > Instant::now() => Some(until - Instant::now()),
            Some(_) => {
                // The pause ran out: the next call tries the session again.
                self.paused_until = None;
                metrics::gauge!(FULFILMENT_PAUSED).set(0.0);
                None
            }
            None => None,
        }
    }

    fn backoff(&mut self, purchase_id: PurchaseId) -> Progress {
        let retries = self.retries.entry(purchase_id).or_insert(0);
        *retries += 1;
        let pause = self.fulfilment.settings.tick * 2u32.saturating_pow((*retries).min(6));
        Progress::Wait(pause.min(Duration::from_secs(300)))
    }

    /// An operator alert: an error log line and a counter, once per purchase and kind.
    fn alert(&mut self, purchase_id: PurchaseId, kind: &'static str, detail: &str) {
        if self.alerted.insert((purchase_id, kind)) {
            tracing::error!(purchase = %purchase_id, alert = kind, "{detail}");
            metrics::counter!(FULFILMENT_ALERTS, "kind" => kind).increment(1);
        }
    }

    /// Between orders: alerts when the session's cookies are about to expire (if their
    /// expiry is configured), and checks that the session still works, so an expired one
    /// pauses orders and alerts before an order runs into it.
    async fn watch_session(&mut self) {
        if self.session_checked_at.elapsed() < self.fulfilment.settings.session_check_every {
            return;
        }
        self.session_checked_at = Instant::now();
        if let Some(expires_at) = self.fulfilment.settings.session_expires_at {
            let left = (expires_at - Utc::now()).num_seconds();
            metrics::gauge!(FRAGMENT_SESSION_EXPIRES_IN_SECONDS).set(left as f64);
            let warn_before = self.fulfilment.settings.session_warn_before.as_secs() as i64;
            if left < warn_before && !self.expiry_alerted {
                self.expiry_alerted = true;
                tracing::error!(
                    alert = "session_expiring",
                    expires_at = %expires_at,
                    "the Fragment session expires in {}h: renew FRAGMENT_COOKIES (and FRAGMENT_SESSION_EXPIRES_AT) before orders stop",
                    left.max(0) / 3_600
                );
                metrics::counter!(FULFILMENT_ALERTS, "kind" => "session_expiring").increment(1);
            }
        }
        if let Err(error) = self.fulfilment.market.check_session().await {
            if matches!(error, MarketError::SessionExpired(_)) {
                self.pause(&error);
            }
        }
    }

    async fn watch_wallet_balance(&mut self) {
        let recently = self
            .balance_checked_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(60));
        if recently {
            return;
        }
        self.balance_checked_at = Some(Instant::now());
        let address = self.fulfilment.wallet.account().address;
        match self.fulfilment.chain.wallet_state(&address).await {
            Ok(state) => self.observe_balance(state.balance),
            Err(error) => tracing::warn!(%error, "cannot read the wallet balance"),
        }
    }

    fn observe_balance(&mut self, balance: Nanotons) {
        // A gauge for dashboards only; money decisions use the exact nanotons.
        let ton = balance.0 as f64 / Nanotons::PER_TON as f64;
        metrics::gauge!(FULFILMENT_WALLET_BALANCE_TON).set(ton);
        let low = balance < self.fulfilment.settings.min_wallet_balance;
        metrics::gauge!(FULFILMENT_WALLET_LOW).set(if low { 1.0 } else { 0.0 });
        let key = (PurchaseId::from_uuid(uuid::Uuid::nil()), "wallet_low");
        if low && self.alerted.insert(key) {
            tracing::error!(
                alert = "wallet_low",
                balance = %balance,
                minimum = %self.fulfilment.settings.min_wallet_balance,
                "the shop wallet is running low; top it up before orders start waiting"
            );
            metrics::counter!(FULFILMENT_ALERTS, "kind" => "wallet_low").increment(1);
        } else if !low {
            self.alerted.remove(&key);
        }
    }

    // ---- The ledger --------------------------------------------------------------------

    async fn record(&mut self, order: &OpenOrder, command: AccountCommand, step: &str) -> Progress {
        match self.execute(order, command, step).await {
            Ok(_) | Err(Recorded::Elsewhere) => Progress::Moved,
            Err(Recorded::Failed) => self.backoff(order.purchase_id),
        }
    }

    /// Runs a command for the purchase under the key `fragment:{purchase}:{step}`; returns
    /// the event on record for it.
    async fn execute(
        &mut self,
        order: &OpenOrder,
        command: AccountCommand,
        step: &str,
    ) -> Result<Option<AccountEvent>, Recorded> {
        let key = IdempotencyKey::parse(&format!("fragment:{}:{step}", order.purchase_id))
            .map_err(|_| Recorded::Failed)?;
        let context = CommandContext::new(key, Actor::System);
        match crate::commands::execute(&self.fulfilment.ledger, order.user, command, &context).await
        {
            Ok(executed) => Ok(executed.events.into_iter().next()),
            Err(
                CommandError::IdempotencyKeyReused(_)
                | CommandError::Rejected(
                    Rejection::PurchaseNotOpen { .. }
                    | Rejection::PaymentAttemptOutOfOrder { .. }
                    | Rejection::PaymentRecorded(_),
                ),
            ) => {
                // Someone else (an admin, another instance) moved this purchase on — paid it,
                // in the last case, so this worker's failure must not refund it; the log has
                // the truth and the next fold shows it.
                tracing::info!(purchase = %order.purchase_id, step, "purchase moved on elsewhere");
                Err(Recorded::Elsewhere)
            }
            Err(error) => {
                tracing::warn!(purchase = %order.purchase_id, step, %error, "cannot record the purchase's progress; will retry");
                Err(Recorded::Failed)
            }
        }
    }
}

/// Why a command for a purchase did not record what this worker asked.
enum Recorded {
    /// The purchase moved on without it.
    Elsewhere,
    /// The ledger could not record it now.
    Failed,
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
