//! The fulfilment worker over the wire: the real [`FragmentClient`], the real [`Toncenter`]
//! client and the real shop wallet (v4r2, from a published test phrase) against local fakes
//! of Fragment's web API and of toncenter that speak their real formats, on a real ledger
//! (SQLite, and PostgreSQL when `TEST_DATABASE_URL` is set, as it must be under CI).
//!
//! These are the wire-level counterparts of `tests/fulfilment.rs`, which runs the same worker
//! on the in-memory sandbox: here every order goes through Fragment's buy page and form-encoded
//! API calls, every payment is a bag of cells the fake chain parses, checks (seqno, expiry,
//! signature) and executes once, and Fragment reports an order delivered only once the chain
//! shows it paid and the payment was confirmed to it.
//!
//! The worker is driven step by step. "Crashing" it is dropping it, clients and all; a
//! restarted worker gets fresh clients on the same ledger and the same outside world. Every
//! loop is bounded; nothing asserts on timing.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use starledger_fulfilment::client::{parse_fragment_cookies, FragmentClient, FragmentSettings};
use starledger_fulfilment::fulfilment::{Fulfilment, FulfilmentSettings, Worker};
use starledger_fulfilment::ton::{Nanotons, WalletAccount, WalletSigner};
use starledger_fulfilment::toncenter::{Toncenter, ToncenterSettings};
use starledger_fulfilment::wallet::{PayingWallet, ShopWallet, WalletVersion};
use starledger_ledger::account::PurchaseStatus;
use starledger_ledger::events::AccountEvent;
use starledger_ledger::money::{Amount, Currency};
use starledger_ledger::testing::Backend;
use starledger_outbound::resilience::{BreakerSettings, RetryPolicy, WallClock};
use starledger_settings::Secret;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

#[allow(dead_code)] // each test binary uses its own part of the shared fakes
mod support;

use support::fragment::{cookie_config, form, has_session_cookies, FakeFragment};
use support::shop::{backends, dec, quick_settings, Shop};
use support::toncenter::{root, Clock, CommentView, FakeChain, FEE, FRAGMENT_ADDRESS, TEST_PHRASE};
use support::wall_clock::ManualWallClock;

/// What Fragment charges: 0.0045 TON a star, so 0.225 TON for the 50 stars a customer
/// reserves 0.25 TON for.
const PRICE_PER_STAR: u64 = 4_500_000;
const ORDER_COST: u64 = 50 * PRICE_PER_STAR;

/// The shop wallet's seqno in most tests: it has paid before.
const SHOP_SEQNO: u32 = 7;

const TON: u64 = Nanotons::PER_TON;

/// What the shop wallet holds at the start: the sum of its top-ups.
const WALLET_BALANCE: u64 = 50 * TON;

struct World {
    shop: Shop,
    chain: FakeChain,
    fragment: FakeFragment,
    toncenter_server: MockServer,
    fragment_server: MockServer,
    /// What time it is to the worker and the chain alike: it moves only when a test moves it.
    clock: Arc<ManualWallClock>,
}

impl std::ops::Deref for World {
    type Target = Shop;

    fn deref(&self) -> &Shop {
        &self.shop
    }
}

fn shop_wallet() -> ShopWallet {
    ShopWallet::from_seed_phrase(&Secret::new(TEST_PHRASE), WalletVersion::V4R2).unwrap()
}

fn shop_account() -> WalletAccount {
    PayingWallet::new(shop_wallet()).unwrap().account()
}

/// A shop wallet at `seqno` (0: never deployed) with some history, a Fragment that knows
/// the buyers (`tester`, the username every test user registers with) and one friend, both
/// served locally.
async fn world(backend: Backend, seqno: u32) -> World {
    let clock = Arc::new(ManualWallClock::new());
    let chain = FakeChain::new(
        &shop_wallet(),
        Nanotons(0),
        seqno,
        Clock::Manual(clock.clone()),
    );
    // One top-up older than any lookup looks back, two recent ones: finding (or not finding)
    // a payment pages through getTransactions.
    chain.top_up(Nanotons(40 * TON), 3 * 86_400);
    chain.top_up(Nanotons(5 * TON), 120);
    chain.top_up(Nanotons(5 * TON), 60);
    let fragment = FakeFragment::new(chain.clone(), PRICE_PER_STAR);
    fragment.add_recipient("tester");
    fragment.add_recipient("friend_of_tester");
    let toncenter_server = MockServer::start().await;
    Mock::given(any())
        .respond_with(chain.clone())
        .mount(&toncenter_server)
        .await;
    let fragment_server = MockServer::start().await;
    Mock::given(any())
        .respond_with(fragment.clone())
        .mount(&fragment_server)
        .await;
    World {
        shop: Shop::open(backend).await,
        chain,
        fragment,
        toncenter_server,
        fragment_server,
        clock,
    }
}

/// Retries a few milliseconds apart, and a breaker out of the way: these tests are about the
/// worker, the clients' own tests are about their patience.
fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    }
}

fn no_breaker() -> BreakerSettings {
    BreakerSettings {
        failure_threshold: 1_000,
        cool_down: Duration::from_secs(60),
    }
}

/// A local recorder for the metrics the worker emits on this thread (the tests run on a
/// current-thread runtime); its handle renders them as `/metrics` would.
fn metrics_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    PrometheusBuilder::new().build_recorder()
}

fn alerts(handle: &PrometheusHandle, kind: &str) -> u64 {
    let series = format!("starledger_fulfilment_alerts_total{{kind=\"{kind}\"}} ");
    handle
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |count| count.trim().parse().unwrap())
}

impl World {
    /// A worker as a freshly started process has it: its own Fragment and toncenter clients
    /// and wallet, the same ledger and the same outside world.
    fn worker(&self, settings: FulfilmentSettings) -> Worker {
        let fragment = FragmentClient::new(FragmentSettings {
            base_url: self.fragment_server.uri(),
            timeout: Duration::from_secs(5),
            retry: quick_retry(),
            breaker: no_breaker(),
            ..FragmentSettings::new(parse_fragment_cookies(&cookie_config()).unwrap())
        })
        .unwrap();
        let toncenter = Toncenter::new(ToncenterSettings {
            base_url: format!("{}/api/v2", self.toncenter_server.uri()),
            timeout: Duration::from_secs(5),
            retry: quick_retry(),
            breaker: no_breaker(),
            page_size: 2,
            max_pages: 20,
            ..ToncenterSettings::new(Some("toncenter-test-key".into()))
        })
        .unwrap();
        Worker::new(
            Fulfilment {
                ledger: self.ledger.clone(),
                market: Arc::new(fragment),
                wallet: Arc::new(PayingWallet::new(shop_wallet()).unwrap()),
                chain: Arc::new(toncenter),
                currency: Currency::ton(),
                settings,
                clock: self.clock.clone(),
            },
            0,
        )
    }

    /// How many `/api` calls of `method` Fragment received.
    async fn fragment_calls(&self, method: &str) -> usize {
        self.fragment_server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/api")
            .filter(|r| form(r).get("method").map(String::as_str) == Some(method))
            .count()
    }
}

#[tokio::test]
async fn a_purchase_is_paid_once_over_the_wire_and_delivered() {
    for backend in backends().await {
        let world = world(backend, SHOP_SEQNO).await;
        let purchase = world.purchase(1, None).await;
        let mut worker = world.worker(quick_settings());
        let status = world
            .run_until(&mut worker, 1, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);

        // One order, paid by exactly one executed message: Fragment's price to Fragment's
        // address, carrying the order's comment.
        let orders = world.fragment.orders();
        assert_eq!(orders.len(), 1);
        let order = &orders[0];
        assert_eq!(order.cost, ORDER_COST);
        let executed = world.chain.executed();
        assert_eq!(executed.len(), 1);
        assert_eq!(executed[0].seqno, SHOP_SEQNO);
        let paid = world.chain.paid_to(FRAGMENT_ADDRESS);
        assert_eq!(paid.len(), 1);
        assert_eq!(paid[0].amount, ORDER_COST);
        assert_eq!(
            paid[0].body.cell_hash(),
            root(&order.payload).cell_hash(),
            "the payment carries Fragment's comment"
        );
        assert_eq!(
            world.chain.balance(),
            Nanotons(WALLET_BALANCE - ORDER_COST - FEE)
        );

        // The ledger: placed with Fragment's req_id and price, the executed message recorded
        // as attempt 1, completed.
        let events = world.events_of(1).await;
        let placed = events
            .iter()
            .find_map(|e| match e {
                AccountEvent::FragmentOrderPlaced(placed) => Some(placed.clone()),
                _ => None,
            })
            .expect("FragmentOrderPlaced");
        assert_eq!(placed.purchase_id, purchase);
        assert_eq!(placed.fragment_request_id, order.req_id);
        assert_eq!(placed.ton_amount, Amount::parse("0.225").unwrap());
        let payments = world.payments(1).await;
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].attempt, 1);
        assert_eq!(payments[0].seqno, Some(SHOP_SEQNO));
        assert_eq!(payments[0].message.as_ref(), Some(&executed[0].message));
        assert_eq!(payments[0].wallet_tx, executed[0].hash_norm);
        assert!(events.iter().any(|e| matches!(
            e,
            AccountEvent::PurchaseCompleted(completed) if completed.purchase_id == purchase
        )));
        // The reservation was captured: 10 credited, 0.25 spent.
        assert_eq!(world.balances(1).await, (dec("9.75"), dec("0")));

        // Fragment saw the session's cookies on every request, the shop wallet as the
        // account paying (on the link) and paid (on the confirmation), and the executed
        // message as the confirmation.
        let requests = world.fragment_server.received_requests().await.unwrap();
        assert!(requests.len() >= 7, "{} requests", requests.len());
        assert!(requests.iter().all(has_session_cookies));
        let account = shop_account();
        let accounts = world.fragment.accounts_received();
        assert_eq!(accounts.len(), 2);
        for received in &accounts {
            assert_eq!(received["address"], account.address.as_str());
            assert_eq!(received["publicKey"], account.public_key.as_str());
            assert_eq!(received["walletStateInit"], account.state_init.as_str());
        }
        assert_eq!(order.confirmations, vec![executed[0].message.clone()]);

        // Nothing more happens, however long the worker runs.
        world.steps(&mut worker, 20).await;
        assert_eq!(world.chain.executed().len(), 1);
        assert_eq!(world.chain.broadcasts().len(), 1);
        assert!(worker.orders.is_empty());
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn an_unknown_recipient_is_refunded_and_nothing_is_paid() {
    for backend in backends().await {
        let world = world(backend, SHOP_SEQNO).await;
        let purchase = world.purchase(2, Some("@nobody_by_that_name")).await;
        let mut worker = world.worker(quick_settings());
        let status = world
            .run_until(&mut worker, 2, purchase, PurchaseStatus::Failed)
            .await;
        assert_eq!(status, PurchaseStatus::Failed);
        let reason = world.failure_reason(2).await.unwrap();
        assert!(reason.starts_with("recipient_not_found"), "{reason}");
        assert_eq!(world.balances(2).await, (dec("10"), dec("0")));
        assert_eq!(world.fragment_calls("searchStarsRecipient").await, 1);
        assert!(world.fragment.orders().is_empty(), "no order opened");
        assert!(world.chain.broadcasts().is_empty(), "no payment sent");
        assert_eq!(world.chain.balance(), Nanotons(WALLET_BALANCE));
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn kyc_required_is_refunded_and_alerts_an_operator() {
    for backend in backends().await {
        let recorder = metrics_recorder();
        let metrics = recorder.handle();
        let _recording = metrics::set_default_local_recorder(&recorder);
        let world = world(backend, SHOP_SEQNO).await;
        world.fragment.require_kyc(true);
        let purchase = world.purchase(3, None).await;
        let mut worker = world.worker(quick_settings());
        let status = world
            .run_until(&mut worker, 3, purchase, PurchaseStatus::Failed)
            .await;
        assert_eq!(status, PurchaseStatus::Failed);
        let reason = world.failure_reason(3).await.unwrap();
        assert!(reason.starts_with("kyc_required"), "{reason}");
        assert_eq!(world.balances(3).await, (dec("10"), dec("0")));
        // Fragment asked for KYC when handing out the payment: nothing was signed or sent.
        assert_eq!(world.fragment_calls("getBuyStarsLink").await, 1);
        assert!(world.payments(3).await.is_empty());
        assert!(world.chain.broadcasts().is_empty());
        assert_eq!(alerts(&metrics, "kyc_required"), 1);
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_crash_after_broadcasting_and_before_recording_pays_once_and_completes() {
    for backend in backends().await {
        // A wallet never deployed: its first payment also deploys it.
        let world = world(backend, 0).await;
        let purchase = world.purchase(4, None).await;
        // The broadcast executes but its answer is lost, and the chain cannot be searched:
        // the worker has paid and can record nothing after the payment. Then it dies.
        world.chain.lose_answers(true);
        world.chain.fail_lookups(true);
        let mut first = world.worker(quick_settings());
        world.steps(&mut first, 10).await;
        assert_eq!(world.chain.executed().len(), 1);
        assert_eq!(world.status(4, purchase).await, PurchaseStatus::OrderSent);
        drop(first);

        world.chain.lose_answers(false);
        world.chain.fail_lookups(false);
        let mut restarted = world.worker(quick_settings());
        let status = world
            .run_until(&mut restarted, 4, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        let executed = world.chain.executed();
        assert_eq!(executed.len(), 1, "paid twice");
        assert_eq!(world.chain.seqno(), 1);
        assert_eq!(world.attempts(4).await, vec![1]);
        // Whatever was sent again was the recorded payment, byte for byte.
        let broadcasts = world.chain.broadcasts();
        assert!(!broadcasts.is_empty());
        assert!(
            broadcasts.iter().all(|sent| *sent == executed[0].message),
            "a different message was broadcast"
        );
        assert_eq!(
            world.fragment.orders()[0].confirmations,
            vec![executed[0].message.clone()]
        );
        assert_eq!(world.balances(4).await, (dec("9.75"), dec("0")));
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn an_expired_session_pauses_orders_refunds_nothing_and_resumes_once_renewed() {
    for backend in backends().await {
        let recorder = metrics_recorder();
        let metrics = recorder.handle();
        let _recording = metrics::set_default_local_recorder(&recorder);
        let world = world(backend, SHOP_SEQNO).await;

        // Logged out before the client ever loaded the buy page: it gets the login page.
        world.fragment.log_out();
        let first = world.purchase(5, None).await;
        let mut worker = world.worker(quick_settings());
        world.steps(&mut worker, 40).await;
        assert_eq!(world.status(5, first).await, PurchaseStatus::Reserved);
        assert_eq!(world.balances(5).await, (dec("9.75"), dec("0.25")));
        assert!(world.fragment.login_pages_served() > 0);
        assert!(world.chain.broadcasts().is_empty());
        assert_eq!(world.failure_reason(5).await, None);
        assert!(alerts(&metrics, "session_expired") >= 1);

        world.fragment.log_in();
        let status = world
            .run_until(&mut worker, 5, first, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);

        // Logged out while the client holds the API hash: the API itself turns it away.
        world.fragment.log_out();
        let second = world.purchase(5, Some("@friend_of_tester")).await;
        world.steps(&mut worker, 40).await;
        assert_eq!(world.status(5, second).await, PurchaseStatus::Reserved);
        assert!(world.fragment.access_denied_served() > 0);
        assert_eq!(world.chain.executed().len(), 1);
        assert_eq!(world.failure_reason(5).await, None);

        world.fragment.log_in();
        let status = world
            .run_until(&mut worker, 5, second, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        assert_eq!(world.chain.executed().len(), 2);
        assert_eq!(world.balances(5).await, (dec("9.5"), dec("0")));
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_session_that_expires_after_paying_leaves_the_order_paid_and_not_refunded() {
    for backend in backends().await {
        let world = world(backend, SHOP_SEQNO).await;
        // The session ends right after Fragment hands out the transfer: the payment goes out,
        // and its confirmation and every question about the order are turned away.
        world.fragment.expire_session_after("getBuyStarsLink");
        let purchase = world.purchase(6, None).await;
        let mut worker = world.worker(quick_settings());
        world.steps(&mut worker, 40).await;
        assert_eq!(world.chain.executed().len(), 1);
        assert_eq!(world.status(6, purchase).await, PurchaseStatus::OrderSent);
        assert!(world.fragment.access_denied_served() > 0);
        assert_eq!(world.failure_reason(6).await, None);
        assert_eq!(world.balances(6).await, (dec("9.75"), dec("0.25")));

        world.fragment.log_in();
        let status = world
            .run_until(&mut worker, 6, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        assert_eq!(world.chain.executed().len(), 1);
        assert_eq!(world.attempts(6).await, vec![1]);
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_lost_payment_past_its_deadline_is_replaced_by_one_new_attempt() {
    for backend in backends().await {
        let world = world(backend, SHOP_SEQNO).await;
        // A wallet contract toncenter does not recognise: the seqno comes from runGetMethod.
        world.chain.unrecognised_wallet(true);
        let purchase = world.purchase(7, None).await;
        let settings = FulfilmentSettings {
            payment_window: Duration::from_secs(11),
            expiry_margin: Duration::ZERO,
            ..quick_settings()
        };
        world.chain.lose_broadcasts(true);
        let mut worker = world.worker(settings);
        world.steps(&mut worker, 5).await;
        assert_eq!(world.attempts(7).await, vec![1]);
        let first = world.payments(7).await[0].clone();
        let deadline = first.valid_until.expect("a recorded deadline");
        // Until a second before its deadline, the same payment is only re-sent, never
        // replaced.
        world.clock.advance(
            (deadline - chrono::Duration::seconds(1) - world.clock.now())
                .to_std()
                .unwrap_or_default(),
        );
        world.steps(&mut worker, 20).await;
        assert_eq!(world.attempts(7).await, vec![1]);
        assert!(world.chain.broadcasts().len() > 1);
        assert!(world
            .chain
            .broadcasts()
            .iter()
            .all(|sent| Some(sent) == first.message.as_ref()));
        // Past the deadline, the lost payment can never execute.
        world.clock.advance(Duration::from_secs(2));
        assert!(world.clock.now() > deadline);

        world.chain.lose_broadcasts(false);
        let status = world
            .run_until(&mut worker, 7, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        assert_eq!(world.attempts(7).await, vec![1, 2]);
        let payments = world.payments(7).await;
        // The new attempt reuses the seqno the dead one never consumed, and is what executed,
        // once.
        assert_eq!(payments[0].seqno, Some(SHOP_SEQNO));
        assert_eq!(payments[1].seqno, Some(SHOP_SEQNO));
        assert_ne!(payments[0].message, payments[1].message);
        let executed = world.chain.executed();
        assert_eq!(executed.len(), 1);
        assert_eq!(Some(&executed[0].message), payments[1].message.as_ref());
        assert_eq!(world.chain.paid_to(FRAGMENT_ADDRESS).len(), 1);
        assert_eq!(world.fragment_calls("getBuyStarsLink").await, 2);
        assert!(world.chain.seqno_get_methods() > 0);
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_payment_executed_but_not_yet_listed_is_never_paid_again_even_past_its_deadline() {
    for backend in backends().await {
        let recorder = metrics_recorder();
        let metrics = recorder.handle();
        let _recording = metrics::set_default_local_recorder(&recorder);
        let world = world(backend, SHOP_SEQNO).await;
        let purchase = world.purchase(8, None).await;
        let settings = FulfilmentSettings {
            payment_window: Duration::from_secs(11),
            expiry_margin: Duration::ZERO,
            ..quick_settings()
        };
        // The payment executes, but toncenter's index lags: the seqno has moved past it and
        // no transaction shows it.
        world.chain.index_behind(true);
        let mut worker = world.worker(settings);
        world.steps(&mut worker, 5).await;
        assert_eq!(world.chain.executed().len(), 1);
        assert_eq!(world.chain.seqno(), SHOP_SEQNO + 1);
        let deadline = world.payments(8).await[0]
            .valid_until
            .expect("a recorded deadline");
        world.clock.advance(
            (deadline - world.clock.now()).to_std().unwrap_or_default() + Duration::from_secs(1),
        );
        assert!(world.clock.now() > deadline);
        // Past the deadline, but the moved seqno says the payment may have executed: no new
        // attempt, no refund; once it has been unknown for a payment window, an operator is
        // told.
        for _ in 0..400 {
            world.steps(&mut worker, 1).await;
            if alerts(&metrics, "payment_unknown") > 0 {
                break;
            }
        }
        world.steps(&mut worker, 10).await;
        assert_eq!(world.attempts(8).await, vec![1]);
        assert_eq!(world.status(8, purchase).await, PurchaseStatus::OrderSent);
        assert_eq!(world.failure_reason(8).await, None);
        assert_eq!(world.chain.executed().len(), 1);
        assert_eq!(alerts(&metrics, "payment_unknown"), 1);

        world.chain.index_behind(false);
        let status = world
            .run_until(&mut worker, 8, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        assert_eq!(world.chain.executed().len(), 1);
        assert_eq!(world.attempts(8).await, vec![1]);
        world.shop.finish().await;
    }
}

// ---- Fragment as its public clients speak it (issue 14, point 7) ----------------------------

#[tokio::test]
async fn the_payment_is_confirmed_the_way_the_link_names_and_completion_comes_from_the_buy_state() {
    for backend in backends().await {
        let world = world(backend, SHOP_SEQNO).await;
        // Fragment names another confirmation method (and, as always, parameters of its own):
        // only that call, with those parameters, is taken.
        world.fragment.confirm_with("confirmStarsPayment");
        let purchase = world.purchase(21, None).await;
        let mut worker = world.worker(quick_settings());
        let status = world
            .run_until(&mut worker, 21, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        assert_eq!(world.fragment_calls("confirmReq").await, 0);
        assert!(world.fragment_calls("confirmStarsPayment").await >= 1);
        assert_eq!(world.fragment_calls("checkReq").await, 0);
        assert!(world.fragment_calls("updateStarsBuyState").await >= 2);
        assert_eq!(world.chain.executed().len(), 1);
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_payment_to_an_address_outside_the_allowlist_is_never_signed_and_waits() {
    for backend in backends().await {
        let recorder = metrics_recorder();
        let metrics = recorder.handle();
        let _recording = metrics::set_default_local_recorder(&recorder);
        let world = world(backend, SHOP_SEQNO).await;
        // A payment link to somebody else's address (a compromised session, a bug, an attack).
        world
            .fragment
            .pay_to("EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N");
        let purchase = world.purchase(22, None).await;
        let mut worker = world.worker(quick_settings());
        world.steps(&mut worker, 30).await;
        assert!(world.chain.broadcasts().is_empty(), "nothing was sent");
        assert!(world.payments(22).await.is_empty(), "nothing was signed");
        assert_eq!(alerts(&metrics, "payment_address_refused"), 1);
        // Not refunded either: the order waits for an operator.
        assert_eq!(
            world.status(22, purchase).await,
            PurchaseStatus::OrderPlaced,
            "the order waits"
        );
        assert_eq!(world.chain.balance(), Nanotons(WALLET_BALANCE));
        // The address is Fragment's after all (or the link is right again): the order goes on.
        world.fragment.pay_to(FRAGMENT_ADDRESS);
        let status = world
            .run_until(&mut worker, 22, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_payment_link_without_the_orders_comment_is_never_signed() {
    for backend in backends().await {
        let recorder = metrics_recorder();
        let metrics = recorder.handle();
        let _recording = metrics::set_default_local_recorder(&recorder);
        let world = world(backend, SHOP_SEQNO).await;
        world.fragment.omit_payload(true);
        let purchase = world.purchase(23, None).await;
        let mut worker = world.worker(quick_settings());
        world.steps(&mut worker, 30).await;
        assert!(world.chain.broadcasts().is_empty());
        assert!(world.payments(23).await.is_empty());
        assert_eq!(alerts(&metrics, "payment_without_reference"), 1);
        assert_eq!(
            world.status(23, purchase).await,
            PurchaseStatus::OrderPlaced
        );
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn the_paid_transaction_is_matched_on_the_orders_comment_however_toncenter_shows_it() {
    for backend in backends().await {
        let world = world(backend, SHOP_SEQNO).await;
        // toncenter shows the comment as text (msg.dataText): still the order's comment.
        world.chain.show_comments(CommentView::Text);
        let purchase = world.purchase(24, None).await;
        let mut worker = world.worker(quick_settings());
        let status = world
            .run_until(&mut worker, 24, purchase, PurchaseStatus::Completed)
            .await;
        assert_eq!(status, PurchaseStatus::Completed);
        // The comment was recorded with the payment, before it was sent.
        let recorded = world.payments(24).await;
        assert!(
            recorded[0].transfers[0]
                .payload
                .as_deref()
                .and_then(starledger_fulfilment::body::comment)
                .is_some_and(|text| text.contains("Ref#")),
            "{recorded:?}"
        );
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn a_transaction_showing_another_comment_is_not_taken_as_this_orders_payment() {
    for backend in backends().await {
        let recorder = metrics_recorder();
        let metrics = recorder.handle();
        let _recording = metrics::set_default_local_recorder(&recorder);
        let world = world(backend, SHOP_SEQNO).await;
        world.chain.show_comments(CommentView::Altered);
        let purchase = world.purchase(25, None).await;
        let mut worker = world.worker(quick_settings());
        world.steps(&mut worker, 40).await;
        // Paid (the wallet's message executed), but the chain shows another order's comment
        // going out: not completed on that evidence, never paid again, never refunded; an
        // operator looks.
        assert_eq!(world.chain.executed().len(), 1);
        assert_eq!(world.attempts(25).await, vec![1]);
        assert_eq!(world.status(25, purchase).await, PurchaseStatus::OrderSent);
        assert_eq!(alerts(&metrics, "payment_not_sent"), 1);
        world.shop.finish().await;
    }
}

#[tokio::test]
async fn an_expiring_or_expired_session_is_alerted_between_orders_before_any_order_fails() {
    for backend in backends().await {
        let recorder = metrics_recorder();
        let metrics = recorder.handle();
        let _recording = metrics::set_default_local_recorder(&recorder);
        let world = world(backend, SHOP_SEQNO).await;
        let settings = FulfilmentSettings {
            session_check_every: Duration::ZERO,
            // The operator said when the cookies expire: in an hour.
            session_expires_at: Some(world.clock.now() + chrono::Duration::hours(1)),
            ..quick_settings()
        };
        let mut worker = world.worker(settings);
        // No order anywhere: the session is checked anyway.
        world.steps(&mut worker, 3).await;
        assert_eq!(alerts(&metrics, "session_expiring"), 1, "alerted once");
        assert_eq!(alerts(&metrics, "session_expired"), 0, "the session works");
        assert_eq!(world.fragment.login_pages_served(), 0);

        // Fragment ends the session: found by the next check, with no order in flight.
        world.fragment.log_out();
        world.steps(&mut worker, 3).await;
        assert!(world.fragment.login_pages_served() >= 1);
        assert_eq!(alerts(&metrics, "session_expired"), 1);
        assert!(world.fragment.orders().is_empty());
        world.shop.finish().await;
    }
}
