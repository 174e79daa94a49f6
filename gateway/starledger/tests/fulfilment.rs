//! The fulfilment worker against the sandbox Fragment and chain, on a real ledger (SQLite,
//! and PostgreSQL when `TEST_DATABASE_URL` is set, as it must be under CI): every way a
//! purchase can end, and the crashes and races that must never pay twice or refund a
//! delivered purchase.
//!
//! "Crashing" the worker is dropping it between steps, in-memory state and all; a restarted
//! worker starts from the same ledger and the same (outside) world. The chain can be made to
//! lose broadcasts or answer nothing for a while, to put the crash exactly where a test wants.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use starledger_fulfilment::fulfilment::{Fulfilment, FulfilmentSettings, Worker};
use starledger_fulfilment::sandbox::SandboxFragment;
use starledger_fulfilment::ton::{
    ChainError, ChainTransaction, Nanotons, SignError, SignedTransfer, TonChain, TransferMessage,
    WalletAccount, WalletSigner, WalletState,
};
use starledger_ledger::account::{AccountCommand, PurchaseStatus};
use starledger_ledger::commands::Ledger;
use starledger_ledger::events::EventMetadata;
use starledger_ledger::ids::{EventId, PurchaseId, UserId};
use starledger_ledger::money::Currency;
use starledger_ledger::store::CommitMode;
use starledger_ledger::store::{AppendRequest, ExpectedVersion, NewEvent};
use starledger_ledger::testing::{flow, Backend};

#[allow(dead_code)] // each test binary uses its own part of the shared support
mod support;

use support::shop::{backends, dec, quick_settings, Shop};
use support::wall_clock::ManualWallClock;

/// A stand-in for the shop wallet's signing (the real wallet has tests of its own): the
/// message encodes what was signed, and different signers sign differently.
struct TestSigner {
    name: &'static str,
}

impl WalletSigner for TestSigner {
    fn account(&self) -> WalletAccount {
        WalletAccount {
            address: format!("0:{}", "ab".repeat(32)),
            public_key: "cd".repeat(32),
            state_init: "te6cc".into(),
        }
    }

    fn sign_transfer(
        &self,
        seqno: u32,
        valid_until: DateTime<Utc>,
        transfers: &[TransferMessage],
    ) -> Result<SignedTransfer, SignError> {
        let described = format!(
            "{}|{seqno}|{}|{:?}",
            self.name,
            valid_until.timestamp(),
            transfers
        );
        let message = base64::engine::general_purpose::STANDARD.encode(described);
        Ok(SignedTransfer {
            seqno,
            valid_until,
            message_hash: hex::encode(Sha256::digest(message.as_bytes())),
            message,
            transfers: transfers.to_vec(),
        })
    }
}

/// The sandbox chain with faults switched on and off by the test.
struct FaultyChain {
    inner: Arc<SandboxFragment>,
    /// Broadcasts vanish before reaching the chain (and report failure).
    lose_broadcasts: AtomicBool,
    /// Broadcasts reach the chain, but the answer is lost (a timeout).
    lose_answers: AtomicBool,
    /// Looking for transactions fails.
    blind: AtomicBool,
    /// The wallet state is read from a node this far behind: its seqno is stale.
    seqno_behind: AtomicU32,
}

impl FaultyChain {
    fn new(inner: Arc<SandboxFragment>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            lose_broadcasts: AtomicBool::new(false),
            lose_answers: AtomicBool::new(false),
            blind: AtomicBool::new(false),
            seqno_behind: AtomicU32::new(0),
        })
    }
}

#[async_trait]
impl TonChain for FaultyChain {
    fn name(&self) -> &'static str {
        "faulty-sandbox"
    }

    async fn wallet_state(&self, address: &str) -> Result<WalletState, ChainError> {
        let mut state = self.inner.wallet_state(address).await?;
        state.seqno = state
            .seqno
            .saturating_sub(self.seqno_behind.load(Ordering::SeqCst));
        Ok(state)
    }

    async fn broadcast(&self, transfer: &SignedTransfer) -> Result<(), ChainError> {
        if self.lose_broadcasts.load(Ordering::SeqCst) {
            return Err(ChainError::Unavailable("test: broadcast lost".into()));
        }
        let result = self.inner.broadcast(transfer).await;
        if self.lose_answers.load(Ordering::SeqCst) {
            return Err(ChainError::Unavailable("test: answer lost".into()));
        }
        result
    }

    async fn find_transaction(
        &self,
        address: &str,
        message_hash: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<ChainTransaction>, ChainError> {
        if self.blind.load(Ordering::SeqCst) {
            return Err(ChainError::Unavailable("test: blind".into()));
        }
        self.inner
            .find_transaction(address, message_hash, since)
            .await
    }
}

struct World {
    shop: Shop,
    sandbox: Arc<SandboxFragment>,
    chain: Arc<FaultyChain>,
    /// What time it is to the worker and the sandbox alike: it moves only when a test moves it.
    clock: Arc<ManualWallClock>,
}

impl std::ops::Deref for World {
    type Target = Shop;

    fn deref(&self) -> &Shop {
        &self.shop
    }
}

/// 0.0045 TON a star in the sandbox; customers pay 0.005 (enough for 50 stars at 0.25).
const PRICE_PER_STAR: &str = "0.0045";

async fn world(backend: Backend) -> World {
    let clock = Arc::new(ManualWallClock::new());
    let sandbox = Arc::new(SandboxFragment::with_clock(
        PRICE_PER_STAR.parse().unwrap(),
        Nanotons(1_000 * Nanotons::PER_TON),
        clock.clone(),
    ));
    World {
        chain: FaultyChain::new(sandbox.clone()),
        shop: Shop::open(backend).await,
        sandbox,
        clock,
    }
}

impl World {
    fn worker(&self, settings: FulfilmentSettings, signer: &'static str) -> Worker {
        self.worker_on(self.ledger.clone(), settings, signer)
    }

    fn worker_on(
        &self,
        ledger: Arc<Ledger>,
        settings: FulfilmentSettings,
        signer: &'static str,
    ) -> Worker {
        Worker::new(
            Fulfilment {
                ledger,
                market: self.sandbox.clone(),
                wallet: Arc::new(TestSigner { name: signer }),
                chain: self.chain.clone(),
                currency: Currency::ton(),
                settings,
                clock: self.clock.clone(),
            },
            0,
        )
    }
}

#[tokio::test]
async fn a_purchase_is_paid_once_and_delivered() {
    for backend in backends().await {
        let world = world(backend).await;
        let purchase = world.purchase(1, None).await;
        let mut worker = world.worker(quick_settings(), "a");
        let status = world
            .run_until(&mut worker, 1, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        assert_eq!(world.sandbox.payments_executed(), 1);
        assert_eq!(world.attempts(1).await, vec![1]);
        // The reservation was captured: 10 credited, 0.25 spent.
        assert_eq!(world.balances(1).await, (dec("9.75"), dec("0")));
        // Nothing more happens, however long the worker runs.
        world.steps(&mut worker, 20).await;
        assert_eq!(world.sandbox.payments_executed(), 1);
        assert!(worker.orders.is_empty());
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn an_order_for_oneself_goes_to_the_name_it_recorded_not_to_the_profile_now() {
    for backend in backends().await {
        let world = world(backend).await;
        // Ordered as @tester; then the buyer renames themselves (the sandbox refunds anything
        // sent to a name containing "notfound", so a worker that read the profile now would
        // refund this order instead of delivering it).
        let purchase = world.purchase(12, None).await;
        world
            .ledger
            .execute(
                flow::user(12),
                AccountCommand::UpdateProfile {
                    username: Some("renamed_notfound".into()),
                    language: None,
                },
                &flow::context("profile-12"),
            )
            .await
            .unwrap();
        let mut worker = world.worker(quick_settings(), "a");
        let status = world
            .run_until(&mut worker, 12, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        assert_eq!(world.sandbox.payments_executed(), 1);
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn an_old_order_that_recorded_no_name_is_refunded_not_guessed() {
    for backend in backends().await {
        let world = world(backend).await;
        let user = flow::user(13);
        flow::funded(&world.ledger, user, "10").await.unwrap();
        // A v1 order for the buyer's own account, written before orders named whom they
        // deliver to: the worker must not look the buyer's profile up.
        let purchase = PurchaseId::derive(user, &flow::key("legacy-13"));
        let data = serde_json::json!({
            "purchase_id": purchase,
            "stars": 50,
            "recipient": null,
            "price": "0.25",
            "currency": "TON",
            "postings": [
                {"account": "customer:13:available", "currency": "TON", "amount": "-0.25"},
                {"account": "customer:13:reserved", "currency": "TON", "amount": "0.25"}
            ]
        });
        let metadata = EventMetadata {
            correlation_id: uuid::Uuid::new_v4(),
            causation_id: None,
            actor: format!("user:{}", user.get()),
            idempotency_key: "legacy-13".into(),
        };
        world
            .store
            .append(AppendRequest {
                stream_id: user.stream().as_str().to_owned(),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent {
                    event_id: EventId(uuid::Uuid::new_v4()),
                    event_type: "PurchaseRequested".into(),
                    schema_version: 1,
                    data,
                    metadata: serde_json::to_value(metadata).unwrap(),
                }],
            })
            .await
            .unwrap();
        // A fresh process: this one's ledger cached the account before the raw append.
        let ledger = Arc::new(Ledger::new(world.store.clone()));
        let mut worker = world.worker_on(ledger, quick_settings(), "a");
        let status = world
            .run_until(&mut worker, 13, purchase, PurchaseStatus::Failed)
            .await;
        assert_eq!(status, PurchaseStatus::Failed);
        assert_eq!(world.sandbox.payments_executed(), 0);
        assert_eq!(world.balances(13).await, (dec("10"), dec("0")));
        let reason = world.failure_reason(13).await.unwrap();
        assert!(reason.starts_with("no_recipient"), "{reason}");
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn an_unknown_recipient_is_refunded_without_paying() {
    for backend in backends().await {
        let world = world(backend).await;
        let purchase = world.purchase(2, Some("@gift_notfound")).await;
        let mut worker = world.worker(quick_settings(), "a");
        let status = world
            .run_until(&mut worker, 2, purchase, PurchaseStatus::Failed)
            .await;
        assert_eq!(status, PurchaseStatus::Failed);
        assert_eq!(world.sandbox.payments_executed(), 0);
        assert_eq!(world.balances(2).await, (dec("10"), dec("0")));
        let reason = world.failure_reason(2).await.unwrap();
        assert!(reason.starts_with("recipient_not_found"), "{reason}");
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn kyc_required_is_refunded() {
    for backend in backends().await {
        let world = world(backend).await;
        let purchase = world.purchase(3, Some("@needs_kyc_check")).await;
        let mut worker = world.worker(quick_settings(), "a");
        let status = world
            .run_until(&mut worker, 3, purchase, PurchaseStatus::Failed)
            .await;
        assert_eq!(status, PurchaseStatus::Failed);
        assert_eq!(world.sandbox.payments_executed(), 0);
        assert_eq!(world.balances(3).await, (dec("10"), dec("0")));
        let reason = world.failure_reason(3).await.unwrap();
        assert!(reason.starts_with("kyc_required"), "{reason}");
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn an_expired_session_pauses_orders_and_refunds_nothing() {
    for backend in backends().await {
        let world = world(backend).await;
        let purchase = world.purchase(4, Some("@session_expired")).await;
        let mut worker = world.worker(quick_settings(), "a");
        world.steps(&mut worker, 30).await;
        // Still reserved: the customer's money is held, not refunded, not spent.
        assert_eq!(world.status(4, purchase).await, PurchaseStatus::Reserved);
        assert_eq!(world.balances(4).await, (dec("9.75"), dec("0.25")));
        assert_eq!(world.sandbox.payments_executed(), 0);
        // An expired session stops every order, not just the one that found out.
        let other = world.purchase(4, Some("@fine_friend")).await;
        world.steps(&mut worker, 30).await;
        assert_eq!(world.status(4, other).await, PurchaseStatus::Reserved);
        assert_eq!(world.sandbox.payments_executed(), 0);
        // Once the blocked order is resolved (here by an admin's refund), the rest go through.
        world
            .ledger
            .execute(
                UserId::new(4).unwrap(),
                AccountCommand::FailPurchase {
                    purchase_id: purchase,
                    reason: "admin: session renewed, order abandoned".into(),
                    force: false,
                },
                &flow::context("admin-fail-4"),
            )
            .await
            .unwrap();
        let status = world
            .run_until(&mut worker, 4, other, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_crash_after_broadcasting_and_before_recording_pays_once_and_completes() {
    for backend in backends().await {
        let world = world(backend).await;
        let purchase = world.purchase(5, None).await;
        // The broadcast reaches the chain but its answer is lost, and then the worker cannot
        // see the chain: it has paid, and recorded nothing after the payment. Then it dies.
        world.chain.lose_answers.store(true, Ordering::SeqCst);
        world.chain.blind.store(true, Ordering::SeqCst);
        let mut first = world.worker(quick_settings(), "a");
        world.steps(&mut first, 10).await;
        assert_eq!(world.sandbox.payments_executed(), 1);
        assert_eq!(world.status(5, purchase).await, PurchaseStatus::OrderSent);
        drop(first);

        world.chain.lose_answers.store(false, Ordering::SeqCst);
        world.chain.blind.store(false, Ordering::SeqCst);
        let mut restarted = world.worker(quick_settings(), "b");
        let status = world
            .run_until(&mut restarted, 5, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        assert_eq!(world.sandbox.payments_executed(), 1, "paid twice");
        assert_eq!(world.attempts(5).await, vec![1]);
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_crash_after_recording_and_before_broadcasting_sends_the_recorded_payment() {
    for backend in backends().await {
        let world = world(backend).await;
        let purchase = world.purchase(6, None).await;
        world.chain.lose_broadcasts.store(true, Ordering::SeqCst);
        let mut first = world.worker(quick_settings(), "a");
        world.steps(&mut first, 5).await;
        assert_eq!(world.sandbox.payments_executed(), 0);
        assert_eq!(world.status(6, purchase).await, PurchaseStatus::OrderSent);
        drop(first);

        // The restarted worker signs with a different key material stand-in: if it paid with
        // anything but the recorded message, the hashes would not match.
        world.chain.lose_broadcasts.store(false, Ordering::SeqCst);
        let mut restarted = world.worker(quick_settings(), "b");
        let status = world
            .run_until(&mut restarted, 6, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        assert_eq!(world.sandbox.payments_executed(), 1);
        assert_eq!(world.attempts(6).await, vec![1]);
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_payment_that_expired_unexecuted_is_replaced_by_one_new_attempt() {
    for backend in backends().await {
        let world = world(backend).await;
        let purchase = world.purchase(7, None).await;
        let settings = FulfilmentSettings {
            payment_window: Duration::from_secs(11),
            expiry_margin: Duration::ZERO,
            ..quick_settings()
        };
        world.chain.lose_broadcasts.store(true, Ordering::SeqCst);
        let mut worker = world.worker(settings.clone(), "a");
        world.steps(&mut worker, 5).await;
        assert_eq!(world.attempts(7).await, vec![1]);
        // Until its deadline has passed, the same payment is only re-sent, never replaced.
        world.steps(&mut worker, 20).await;
        assert_eq!(world.attempts(7).await, vec![1]);
        // Past its deadline (11 s, no margin), to the worker and the chain alike.
        world.clock.advance(Duration::from_secs(12));
        world.chain.lose_broadcasts.store(false, Ordering::SeqCst);
        let status = world
            .run_until(&mut worker, 7, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        assert_eq!(world.attempts(7).await, vec![1, 2]);
        assert_eq!(world.sandbox.payments_executed(), 1);
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_paid_order_fragment_fails_is_refunded_and_a_hanging_one_is_not() {
    for backend in backends().await {
        let world = world(backend).await;
        let failing = world.purchase(8, Some("@will_fail_friend")).await;
        let hanging = world.purchase(8, Some("@will_hang_friend")).await;
        let mut worker = world.worker(quick_settings(), "a");
        let status = world
            .run_until(&mut worker, 8, failing, PurchaseStatus::Failed)
            .await;
        assert_eq!(status, PurchaseStatus::Failed);
        let reason = world.failure_reason(8).await.unwrap();
        assert!(reason.starts_with("fragment_failed"), "{reason}");
        world.steps(&mut worker, 30).await;
        // Paid and never confirmed: it stays open, holding the customer's reservation.
        assert_eq!(world.status(8, hanging).await, PurchaseStatus::OrderSent);
        assert_eq!(world.sandbox.payments_executed(), 2);
        assert_eq!(world.balances(8).await, (dec("9.75"), dec("0.25")));
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_low_wallet_waits_instead_of_failing_orders() {
    for backend in backends().await {
        let world = world(backend).await;
        world.sandbox.set_balance(Nanotons(Nanotons::PER_TON / 10));
        let purchase = world.purchase(9, None).await;
        let mut worker = world.worker(quick_settings(), "a");
        world.steps(&mut worker, 20).await;
        assert_eq!(world.status(9, purchase).await, PurchaseStatus::OrderPlaced);
        assert_eq!(world.attempts(9).await, Vec::<u32>::new());
        world.sandbox.set_balance(Nanotons(100 * Nanotons::PER_TON));
        // The pause after a low balance is long (the operator has to act); a restarted
        // worker, like one after a top-up, looks at once.
        let mut worker = world.worker(quick_settings(), "a");
        let status = world
            .run_until(&mut worker, 9, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_price_above_what_the_customer_pays_is_refused_and_refunded() {
    for backend in backends().await {
        let mut world = world(backend).await;
        // Fragment now wants 0.006 a star: 0.30 for 50 stars, more than the 0.25 reserved.
        world.sandbox = Arc::new(SandboxFragment::with_clock(
            "0.006".parse().unwrap(),
            Nanotons(1_000 * Nanotons::PER_TON),
            world.clock.clone(),
        ));
        world.chain = FaultyChain::new(world.sandbox.clone());
        let purchase = world.purchase(10, None).await;
        let mut worker = world.worker(quick_settings(), "a");
        let status = world
            .run_until(&mut worker, 10, purchase, PurchaseStatus::Failed)
            .await;
        assert_eq!(status, PurchaseStatus::Failed);
        let reason = world.failure_reason(10).await.unwrap();
        assert!(reason.starts_with("price_changed"), "{reason}");
        assert_eq!(world.sandbox.payments_executed(), 0);
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn two_workers_racing_on_one_ledger_never_pay_twice() {
    for backend in backends().await {
        let world = world(backend).await;
        let mut purchases = Vec::new();
        for user in 20..26 {
            purchases.push((user, world.purchase(user, None).await));
        }
        // Two instances, each with its own command handler on the same log, as two processes
        // whose lease broke would be.
        let other_ledger = Arc::new(Ledger::new(world.backend.open(CommitMode::default()).await));
        // Without a lease both sign with the one wallet, so both may sign with the same seqno
        // (more likely the busier the machine). Then only one of the two messages can execute,
        // and the other purchase finds the wallet past its seqno with its payment nowhere on
        // chain: an outcome the worker cannot prove, so it alerts an operator
        // (`payment_unknown`) and never signs again. What must hold in every interleaving is
        // that nothing is paid twice: every executed payment completed its purchase, and every
        // purchase is delivered or waiting, paid at most once.
        let mut a = world.worker(quick_settings(), "a");
        let mut b = world.worker_on(other_ledger, quick_settings(), "b");
        // Bounded by wall time, not by rounds: how many rounds the race takes depends on the
        // machine's load.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            let (ra, rb) = tokio::join!(
                a.step(world.store.as_ref(), &world.stop),
                b.step(world.store.as_ref(), &world.stop)
            );
            ra.unwrap();
            rb.unwrap();
            let mut done = true;
            for (user, purchase) in &purchases {
                done &= world.status(*user, *purchase).await == PurchaseStatus::Completed;
            }
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut completed = 0;
        for (user, purchase) in &purchases {
            let status = world.status(*user, *purchase).await;
            assert!(
                matches!(
                    status,
                    PurchaseStatus::Completed | PurchaseStatus::OrderSent
                ),
                "{status:?}"
            );
            completed += usize::from(status == PurchaseStatus::Completed);
            assert_eq!(world.attempts(*user).await, vec![1], "signed again");
        }
        // Each collision costs one purchase; the race still delivers most of them.
        assert!(2 * completed >= purchases.len(), "{completed} delivered");
        assert_eq!(
            world.sandbox.payments_executed(),
            completed,
            "paid twice, or paid without delivering"
        );
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_purchase_an_admin_resolved_is_left_alone() {
    for backend in backends().await {
        let world = world(backend).await;
        let purchase = world.purchase(11, None).await;
        world
            .ledger
            .execute(
                UserId::new(11).unwrap(),
                AccountCommand::FailPurchase {
                    purchase_id: purchase,
                    reason: "admin: refunded on request".into(),
                    force: false,
                },
                &flow::context("admin-fail-11"),
            )
            .await
            .unwrap();
        let mut worker = world.worker(quick_settings(), "a");
        world.steps(&mut worker, 10).await;
        assert_eq!(world.sandbox.payments_executed(), 0);
        assert!(worker.orders.is_empty());
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_stale_seqno_after_a_payment_makes_the_next_one_wait_not_collide() {
    for backend in backends().await {
        let world = world(backend).await;
        let first = world.purchase(30, None).await;
        let mut worker = world.worker(quick_settings(), "a");
        let status = world
            .run_until(&mut worker, 30, first, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        // The API now answers from a node that has not seen that payment yet.
        world.chain.seqno_behind.store(1, Ordering::SeqCst);
        let second = world.purchase(31, None).await;
        world.steps(&mut worker, 20).await;
        // Signing with the consumed seqno would make a payment that can never execute (and
        // an outcome nobody could tell): the order waits instead.
        assert_eq!(world.status(31, second).await, PurchaseStatus::OrderPlaced);
        assert!(world.attempts(31).await.is_empty());
        world.chain.seqno_behind.store(0, Ordering::SeqCst);
        let status = world
            .run_until(&mut worker, 31, second, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        assert_eq!(world.attempts(31).await, vec![1]);
        assert_eq!(world.sandbox.payments_executed(), 2);
        world.shop.finish().await;
    }
}
