//! A shop on a real ledger (SQLite, and PostgreSQL when `TEST_DATABASE_URL` is set, as it must
//! be under CI): funded customers buying Stars, the fulfilment worker stepped until a purchase
//! gets where a test wants, and what the log then says. Shared by the worker's tests on the
//! sandbox and over the wire.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use starledger_fulfilment::fulfilment::{FulfilmentSettings, Worker};
use starledger_fulfilment::sandbox::SANDBOX_PAYMENT_ADDRESS;
use starledger_ledger::account::{Account, AccountCommand, PurchaseStatus};
use starledger_ledger::commands::Ledger;
use starledger_ledger::events::{AccountEvent, FragmentOrderSent, Stars};
use starledger_ledger::ids::{PurchaseId, Recipient, Username};
use starledger_ledger::money::Amount;
use starledger_ledger::store::{CommitMode, EventStore};
use starledger_ledger::testing::{self, flow, Backend};
use tokio::sync::watch;

/// The ledgers every test runs on.
pub async fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::sqlite().await];
    backends.extend(Backend::postgres().await);
    backends
}

pub fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// Worker timings short enough that retries and pauses pass within a test; payments go to
/// the sandbox's and the fake Fragment's addresses only.
pub fn quick_settings() -> FulfilmentSettings {
    FulfilmentSettings {
        tick: Duration::from_millis(5),
        rebroadcast_every: Duration::from_millis(5),
        session_pause: Duration::from_millis(50),
        payment_addresses: vec![
            SANDBOX_PAYMENT_ADDRESS.to_owned(),
            super::toncenter::FRAGMENT_ADDRESS.to_owned(),
        ],
        ..FulfilmentSettings::default()
    }
}

pub struct Shop {
    pub backend: Backend,
    pub store: Arc<dyn EventStore>,
    pub ledger: Arc<Ledger>,
    pub stop: watch::Receiver<bool>,
    _stop: watch::Sender<bool>,
}

impl Shop {
    pub async fn open(backend: Backend) -> Shop {
        let store = backend.open(CommitMode::default()).await;
        let (stop_tx, stop) = watch::channel(false);
        Shop {
            ledger: Arc::new(Ledger::new(store.clone())),
            backend,
            store,
            stop,
            _stop: stop_tx,
        }
    }

    /// A funded user (10 TON, registered as @tester) buying 50 stars for 0.25, for themselves
    /// (delivered to @tester) or as a gift.
    pub async fn purchase(&self, user: i64, gift_to: Option<&str>) -> PurchaseId {
        let user = flow::user(user);
        if self.ledger.profile(user).await.unwrap().is_none() {
            flow::funded(&self.ledger, user, "10").await.unwrap();
        }
        let key = format!("buy-{}-{}", user.get(), gift_to.unwrap_or("self"));
        let purchase_id = PurchaseId::derive(user, &flow::key(&key));
        self.ledger
            .execute(
                user,
                AccountCommand::RequestPurchase {
                    purchase_id,
                    stars: Stars::new(50).unwrap(),
                    recipient: match gift_to {
                        Some(name) => Recipient::Gift(Username::parse(name).unwrap()),
                        None => Recipient::Buyer(Username::parse("tester").unwrap()),
                    },
                    price: Amount::parse("0.25").unwrap(),
                },
                &flow::context(&key),
            )
            .await
            .unwrap();
        purchase_id
    }

    pub async fn events_of(&self, user: i64) -> Vec<AccountEvent> {
        self.store
            .read_stream(flow::user(user).stream().as_str(), 0)
            .await
            .unwrap()
            .iter()
            .map(|e| starledger_ledger::commands::decode(e).unwrap())
            .collect()
    }

    /// The account as the log has it (not as one command handler's cache has it: another
    /// instance may have written since).
    pub async fn account(&self, user: i64) -> Account {
        Account::replay(&self.events_of(user).await)
    }

    pub async fn status(&self, user: i64, purchase_id: PurchaseId) -> PurchaseStatus {
        self.account(user).await.purchases[&purchase_id].status
    }

    pub async fn balances(&self, user: i64) -> (Decimal, Decimal) {
        let account = self.account(user).await;
        (account.available, account.reserved)
    }

    /// The payments recorded for `user`'s purchases, in order.
    pub async fn payments(&self, user: i64) -> Vec<FragmentOrderSent> {
        self.events_of(user)
            .await
            .into_iter()
            .filter_map(|e| match e {
                AccountEvent::FragmentOrderSent(sent) => Some(sent),
                _ => None,
            })
            .collect()
    }

    /// The attempt numbers of those payments.
    pub async fn attempts(&self, user: i64) -> Vec<u32> {
        self.payments(user)
            .await
            .iter()
            .map(|p| p.attempt)
            .collect()
    }

    pub async fn failure_reason(&self, user: i64) -> Option<String> {
        self.events_of(user)
            .await
            .into_iter()
            .find_map(|e| match e {
                AccountEvent::PurchaseFailed(failed) => Some(failed.reason),
                _ => None,
            })
    }

    /// Steps `worker` until the purchase reaches `wanted` (or the bound runs out).
    pub async fn run_until(
        &self,
        worker: &mut Worker,
        user: i64,
        purchase_id: PurchaseId,
        wanted: PurchaseStatus,
    ) -> PurchaseStatus {
        for _ in 0..400 {
            worker.step(self.store.as_ref(), &self.stop).await.unwrap();
            let status = self.status(user, purchase_id).await;
            if status == wanted {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.status(user, purchase_id).await
    }

    /// Steps `worker` a fixed number of times.
    pub async fn steps(&self, worker: &mut Worker, count: usize) {
        for _ in 0..count {
            worker.step(self.store.as_ref(), &self.stop).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The log is sound; then the test database goes (with the backend, when this is dropped).
    pub async fn finish(self) {
        let report = testing::audit(self.store.as_ref()).await;
        assert!(report.is_sound(), "the ledger is not sound: {report:?}");
    }
}
