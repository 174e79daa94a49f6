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
//! oldest open purchase. Timers here only pace retries and alerts; dates (a payment's deadline,
//! the session's expiry) are read from the injected [`WallClock`].
//!
//! One file per stage: `place` (1), `pay` (2) and `follow` (3); beside them `outcomes`
//! (failing a purchase, what an API error means for it), `alerts` (backoff, the session pause,
//! operator alerts, the watch on the session and the wallet balance), `record` (the ledger
//! commands) and `settings`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use starledger_ledger::commands::Ledger;
use starledger_ledger::ids::PurchaseId;
use starledger_ledger::money::Currency;
use starledger_ledger::store::{EventStore, StoreError};
use starledger_projections::runtime::decode_page;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[cfg(doc)]
use super::market::OrderState;
use super::market::StarsMarket;
use super::orders::{OpenOrder, OpenOrders, Stage};
use super::ton::{TonChain, WalletSigner};
use starledger_outbound::resilience::WallClock;
use starledger_projections::lease::Lease;
use starledger_projections::reactor::{Checkpoint, ReactorContext};
use starledger_telemetry::metrics_catalog::FULFILMENT_OPEN_ORDERS;

mod alerts;
mod follow;
mod outcomes;
mod pay;
mod place;
mod record;
mod settings;

pub use settings::FulfilmentSettings;

/// The worker's checkpoint and lease name.
/// The failure code of a paid order that Fragment reports failed.
const FRAGMENT_FAILED: &str = "fragment_failed";

pub const NAME: &str = "fulfilment";

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
    /// What time it is, for payment deadlines and the session's expiry
    /// ([`starledger_outbound::resilience::SystemWallClock`] in production; tests move it by hand).
    pub clock: Arc<dyn WallClock>,
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
    /// When each purchase's payment was first seen executed, or its seqno consumed (for the
    /// delivery and unknown-payment alerts), by the injected wall clock.
    paid_at: HashMap<PurchaseId, DateTime<Utc>>,
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

    /// How long ago `at` was by the injected wall clock (zero if the clock went back).
    fn since(&self, at: DateTime<Utc>) -> Duration {
        (self.fulfilment.clock.now() - at)
            .to_std()
            .unwrap_or(Duration::ZERO)
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
}
