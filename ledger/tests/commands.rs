//! The command handler against real stores: idempotent retries, conflicts between
//! instances, and concurrent purchases on one account that must never overdraw it.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use starledger_ledger::account::{AccountCommand, PurchaseStatus, Rejection};
use starledger_ledger::commands::{CommandError, Ledger};
use starledger_ledger::events::{AccountEvent, WalletTransfer};
use starledger_ledger::ids::PurchaseId;
use starledger_ledger::money::Amount;
use starledger_ledger::on_every_backend;
use starledger_ledger::store::CommitMode;
use starledger_ledger::testing::flow::*;
use starledger_ledger::testing::{audit, Backend};

async fn a_repeated_command_appends_nothing_and_returns_the_first_result(backend: &Backend) {
    let store = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(store.clone());
    let alice = user(1);
    funded(&ledger, alice, "10").await.unwrap();

    let first = ledger
        .execute(alice, purchase(alice, "p1", "4"), &context("api:p1"))
        .await
        .unwrap();
    let head = store.head().await.unwrap().position;
    let again = ledger
        .execute(alice, purchase(alice, "p1", "4"), &context("api:p1"))
        .await
        .unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(
        (again.events.clone(), again.position),
        (first.events.clone(), first.position)
    );

    // A new process with a cold cache recognises the retry too.
    let restarted = Ledger::new(backend.open(CommitMode::default()).await);
    let late = restarted
        .execute(alice, purchase(alice, "p1", "4"), &context("api:p1"))
        .await
        .unwrap();
    assert!(late.replayed);
    assert_eq!(late.events, first.events);
    assert_eq!(
        store.head().await.unwrap().position,
        head,
        "retries append nothing"
    );
    assert_eq!(
        ledger.account(alice).await.unwrap().available,
        Decimal::from(6)
    );
}

async fn a_key_reused_for_another_command_is_refused(backend: &Backend) {
    let ledger = Ledger::new(backend.open(CommitMode::default()).await);
    let alice = user(1);
    funded(&ledger, alice, "10").await.unwrap();
    ledger
        .execute(alice, purchase(alice, "p1", "4"), &context("api:k"))
        .await
        .unwrap();
    let other = AccountCommand::RequestPurchase {
        purchase_id: starledger_ledger::ids::PurchaseId::derive(alice, &key("p1")),
        stars: starledger_ledger::events::Stars::new(500).unwrap(),
        recipient: starledger_ledger::ids::Recipient::Buyer(
            starledger_ledger::ids::Username::parse("alice_01").unwrap(),
        ),
        price: starledger_ledger::money::Amount::parse("4").unwrap(),
    };
    let outcome = ledger.execute(alice, other, &context("api:k")).await;
    assert!(
        matches!(outcome, Err(CommandError::IdempotencyKeyReused(_))),
        "{outcome:?}"
    );
}

async fn a_rejected_command_appends_nothing(backend: &Backend) {
    let store = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(store.clone());
    let alice = user(1);
    funded(&ledger, alice, "3").await.unwrap();
    let head = store.head().await.unwrap().position;
    let outcome = ledger
        .execute(alice, purchase(alice, "p1", "4"), &context("api:p1"))
        .await;
    assert!(matches!(
        outcome,
        Err(CommandError::Rejected(Rejection::InsufficientFunds { .. }))
    ));
    let unknown = ledger
        .execute(user(2), purchase(user(2), "p1", "1"), &context("api:x"))
        .await;
    assert!(matches!(
        unknown,
        Err(CommandError::Rejected(Rejection::UnknownUser))
    ));
    assert_eq!(store.head().await.unwrap().position, head);
}

/// Two instances share the log; each one's cache goes stale when the other writes. The stale
/// one must hit a conflict, reload and decide again on the real balance.
async fn a_stale_instance_reloads_instead_of_overdrawing(backend: &Backend) {
    let first = Ledger::new(backend.open(CommitMode::default()).await);
    let second = Ledger::new(backend.open(CommitMode::default()).await);
    let alice = user(1);
    funded(&first, alice, "10").await.unwrap();
    assert_eq!(
        second.account(alice).await.unwrap().available,
        Decimal::from(10)
    );

    first
        .execute(alice, purchase(alice, "p1", "7"), &context("api:p1"))
        .await
        .unwrap();
    // `second` still believes 10 is available.
    let outcome = second
        .execute(alice, purchase(alice, "p2", "7"), &context("api:p2"))
        .await;
    assert!(
        matches!(
            outcome,
            Err(CommandError::Rejected(Rejection::InsufficientFunds { .. }))
        ),
        "{outcome:?}"
    );
    second
        .execute(alice, purchase(alice, "p3", "3"), &context("api:p3"))
        .await
        .unwrap();
    assert_eq!(
        second.account(alice).await.unwrap().available,
        Decimal::ZERO
    );
}

/// Many tasks, split over two instances, buy from one account at once. Exactly as many
/// purchases succeed as the balance pays for, and the balance never goes below zero.
async fn concurrent_purchases_never_overdraw(backend: &Backend) {
    let stores = [
        backend.open(CommitMode::default()).await,
        backend.open(CommitMode::default()).await,
    ];
    let ledgers = [
        Arc::new(Ledger::new(stores[0].clone())),
        Arc::new(Ledger::new(stores[1].clone())),
    ];
    let alice = user(7);
    funded(&ledgers[0], alice, "10").await.unwrap();

    let attempts = 60;
    let mut handles = Vec::new();
    for i in 0..attempts {
        let ledger = ledgers[i % 2].clone();
        handles.push(tokio::spawn(async move {
            ledger
                .execute(
                    alice,
                    purchase(alice, &format!("p{i}"), "1"),
                    &context(&format!("api:p{i}")),
                )
                .await
        }));
    }
    let mut bought = 0;
    for handle in handles {
        match handle.await.unwrap() {
            Ok(executed) => {
                assert!(matches!(
                    executed.events[0],
                    AccountEvent::PurchaseRequested(_)
                ));
                bought += 1;
            }
            Err(CommandError::Rejected(Rejection::InsufficientFunds { .. })) => {}
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert_eq!(bought, 10);
    let report = audit(stores[0].as_ref()).await;
    assert!(report.is_sound(), "{:?}", report.findings);
    let account = &report.accounts[alice.stream().as_str()];
    assert_eq!(
        (account.available, account.reserved),
        (Decimal::ZERO, Decimal::from(10))
    );
}

/// One instance pipelines many commands on one hot account through the group-commit writer;
/// every decision still stands on committed state only.
async fn pipelined_commands_on_one_account_stay_consistent(backend: &Backend) {
    let store = backend.open(CommitMode::default()).await;
    let ledger = Arc::new(Ledger::new(store.clone()));
    let alice = user(9);
    funded(&ledger, alice, "100").await.unwrap();
    let mut handles = Vec::new();
    for i in 0..200 {
        let ledger = ledger.clone();
        handles.push(tokio::spawn(async move {
            let purchase_key = format!("p{i}");
            let bought = ledger
                .execute(
                    alice,
                    purchase(alice, &purchase_key, "0.75"),
                    &context(&format!("api:{purchase_key}")),
                )
                .await;
            if bought.is_ok() && i % 3 == 0 {
                let purchase_id =
                    starledger_ledger::ids::PurchaseId::derive(alice, &key(&purchase_key));
                let refund = AccountCommand::FailPurchase {
                    purchase_id,
                    reason: "recipient not found".into(),
                    force: false,
                };
                ledger
                    .execute(alice, refund, &context(&format!("fail:{purchase_key}")))
                    .await
                    .unwrap();
            }
            bought.is_ok()
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let report = audit(store.as_ref()).await;
    assert!(report.is_sound(), "{:?}", report.findings);
    let replayed = &report.accounts[alice.stream().as_str()];
    let cached = ledger.account(alice).await.unwrap();
    assert_eq!(
        &cached, replayed,
        "the cached state equals a replay of the log"
    );
    assert!(replayed.available >= Decimal::ZERO);
}

/// The same command delivered many times at once (a webhook retried in parallel) is
/// executed once; every delivery gets the same answer.
async fn concurrent_duplicates_execute_once(backend: &Backend) {
    let store = backend.open(CommitMode::default()).await;
    let ledgers = [
        Arc::new(Ledger::new(store.clone())),
        Arc::new(Ledger::new(backend.open(CommitMode::default()).await)),
    ];
    let alice = user(3);
    funded(&ledgers[0], alice, "1").await.unwrap();
    ledgers[0]
        .execute(
            alice,
            request_recharge(alice, "r2", "5"),
            &context("req-r2"),
        )
        .await
        .unwrap();
    let head = store.head().await.unwrap().position;
    let mut handles = Vec::new();
    for i in 0..40 {
        let ledger = ledgers[i % 2].clone();
        handles.push(tokio::spawn(async move {
            ledger
                .execute(
                    alice,
                    settle(alice, "r2", "5"),
                    &context("heleket:inv-r2:paid"),
                )
                .await
        }));
    }
    let mut positions = Vec::new();
    for handle in handles {
        let executed = handle
            .await
            .unwrap()
            .expect("every delivery is answered with success");
        positions.push(executed.position);
    }
    positions.dedup();
    assert_eq!(
        positions,
        vec![head + 1],
        "one event, the same answer for all"
    );
    assert_eq!(store.head().await.unwrap().position, head + 1);
    assert_eq!(
        ledgers[1].account(alice).await.unwrap().available,
        Decimal::from(6)
    );
}

/// A handler with room for few accounts drops idle ones and reloads them: answers stay the
/// same as with everything cached.
async fn a_small_account_cache_evicts_and_reloads_correctly(backend: &Backend) {
    let store = backend.open(CommitMode::default()).await;
    let ledger = Arc::new(Ledger::with_capacity(store.clone(), 4));
    let mut handles = Vec::new();
    for u in 1..=20 {
        let ledger = ledger.clone();
        handles.push(tokio::spawn(async move {
            let who = user(100 + u);
            funded(&ledger, who, "5").await.unwrap();
            for n in 0..3 {
                let key = format!("p{u}-{n}");
                ledger
                    .execute(who, purchase(who, &key, "1"), &context(&key))
                    .await
                    .unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    // Now every account is idle: touching a new one makes room by dropping idle ones.
    ledger.account(user(999)).await.unwrap();
    let cached = ledger.cached_accounts();
    assert!(cached <= 4, "idle accounts were dropped: {cached} cached");
    for u in 1..=20 {
        let account = ledger.account(user(100 + u)).await.unwrap();
        assert_eq!(
            (account.available, account.reserved),
            (Decimal::from(2), Decimal::from(3))
        );
        assert!(ledger.cached_accounts() <= 5);
    }
    let report = audit(store.as_ref()).await;
    assert!(report.is_sound(), "{:?}", report.findings);
}

/// The `force` rule is the ledger's, so it holds against the committed log, not against an
/// instance's view of it: one instance records the payment to Fragment, another that has not
/// seen it yet is asked to fail the order without force. Its stale decision conflicts, it
/// reloads, and the rule refuses; the reservation stays.
async fn a_stale_instance_cannot_fail_a_paid_order_without_force(backend: &Backend) {
    let worker = Ledger::new(backend.open(CommitMode::default()).await);
    let admin = Ledger::new(backend.open(CommitMode::default()).await);
    let alice = user(3);
    funded(&worker, alice, "10").await.unwrap();
    worker
        .execute(alice, purchase(alice, "p1", "4"), &context("api:p1"))
        .await
        .unwrap();
    let purchase_id = PurchaseId::derive(alice, &key("p1"));
    worker
        .execute(
            alice,
            AccountCommand::RecordFragmentOrder {
                purchase_id,
                fragment_request_id: "req-1".into(),
                ton_amount: Amount::parse("3").unwrap(),
            },
            &context("worker:placed"),
        )
        .await
        .unwrap();
    // The admin's instance sees the order placed but not yet paid…
    let seen = admin.account(alice).await.unwrap();
    assert_eq!(
        seen.purchases[&purchase_id].status,
        PurchaseStatus::OrderPlaced
    );
    // …while the worker records the payment.
    worker
        .execute(
            alice,
            AccountCommand::RecordFragmentSent {
                purchase_id,
                wallet_tx: format!("{:064x}", 1),
                seqno: 7,
                valid_until: chrono::Utc::now(),
                message: "te6cckEBAQEAAgAAAEysuc0=".into(),
                transfers: vec![WalletTransfer {
                    destination: "EQBdestination".into(),
                    amount: Amount::parse("3").unwrap(),
                    payload: None,
                }],
                attempt: 1,
            },
            &context("worker:sent"),
        )
        .await
        .unwrap();
    let fail = |force| AccountCommand::FailPurchase {
        purchase_id,
        reason: "admin: customer asked".into(),
        force,
    };
    let refused = admin
        .execute(alice, fail(false), &context("admin:fail"))
        .await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Rejected(Rejection::PaymentRecorded(_)))
        ),
        "{refused:?}"
    );
    let account = worker.account(alice).await.unwrap();
    assert_eq!(
        (account.available, account.reserved),
        (Decimal::from(6), Decimal::from(4))
    );
    // With force (the operator checked on chain and with Fragment) it goes through.
    admin
        .execute(alice, fail(true), &context("admin:fail-forced"))
        .await
        .unwrap();
    let report = audit(backend.open(CommitMode::default()).await.as_ref()).await;
    assert!(report.is_sound(), "{:?}", report.findings);
}

/// Two processes on one log: B has the account loaded from before A's top-up. B's refusal
/// would be a wrong answer ("insufficient funds" with money on the account, "unknown
/// recharge" for one A recorded), so B catches up from the log before it refuses.
async fn a_stale_instance_catches_up_before_it_refuses(backend: &Backend) {
    let store = backend.open(CommitMode::default()).await;
    let (a, b) = (Ledger::new(store.clone()), Ledger::new(store.clone()));
    let alice = user(1);
    a.execute(alice, register(), &context("reg")).await.unwrap();
    // B loads the account now: registered, nothing on it.
    assert!(b.account(alice).await.unwrap().available.is_zero());
    // A tops it up.
    a.execute(alice, request_recharge(alice, "r1", "10"), &context("req"))
        .await
        .unwrap();
    a.execute(alice, settle(alice, "r1", "10"), &context("paid"))
        .await
        .unwrap();
    // B is asked to buy with it: accepted, on the account as the log has it.
    let bought = b
        .execute(alice, purchase(alice, "p1", "4"), &context("api:p1"))
        .await;
    assert!(bought.is_ok(), "{bought:?}");
    // And a refusal that stands after catching up is still a refusal.
    let too_much = b
        .execute(alice, purchase(alice, "p2", "7"), &context("api:p2"))
        .await;
    assert!(
        matches!(
            too_much,
            Err(CommandError::Rejected(Rejection::InsufficientFunds { .. }))
        ),
        "{too_much:?}"
    );
    assert!(audit(store.as_ref()).await.is_sound());
}

on_every_backend!(
    a_stale_instance_catches_up_before_it_refuses,
    a_stale_instance_cannot_fail_a_paid_order_without_force,
    a_small_account_cache_evicts_and_reloads_correctly,
    concurrent_duplicates_execute_once,
    a_repeated_command_appends_nothing_and_returns_the_first_result,
    a_key_reused_for_another_command_is_refused,
    a_rejected_command_appends_nothing,
    a_stale_instance_reloads_instead_of_overdrawing,
    concurrent_purchases_never_overdraw,
    pipelined_commands_on_one_account_stay_consistent,
);

/// A caller that gives up while its append waits (a request deadline, a `select!`), and an
/// append that then fails: the handler forgets what it had assumed, so the account reads as
/// the log has it (not with a reservation that was never stored), and a retry of the same
/// command executes instead of waiting for an answer that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_command_whose_append_fails_leaves_no_trace() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let Backend::Postgres { pool, .. } = &backend else {
        unreachable!("Backend::postgres gives a PostgreSQL backend")
    };
    let store = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(store.clone());
    let alice = user(1);
    funded(&ledger, alice, "10").await.unwrap();
    let head = store.head().await.unwrap().position;

    // Hold the log's head row: the writer's next transaction waits for it.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("SELECT position FROM ledger_head FOR UPDATE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        ledger.execute(alice, purchase(alice, "p1", "4"), &context("api:p1")),
    )
    .await;
    assert!(abandoned.is_err(), "the append should still be waiting");

    // The append fails: the connection it waits on is cut.
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(cut, 1, "one append was waiting for the head row");
    blocker.rollback().await.unwrap();

    let account = ledger.account(alice).await.unwrap();
    assert_eq!(
        (account.available, account.reserved),
        (Decimal::from(10), Decimal::ZERO),
        "the cached account is the log's"
    );
    assert_eq!(store.head().await.unwrap().position, head);

    let retried = tokio::time::timeout(
        Duration::from_secs(10),
        ledger.execute(alice, purchase(alice, "p1", "4"), &context("api:p1")),
    )
    .await
    .expect("the retry is answered")
    .unwrap();
    assert!(!retried.replayed, "the first attempt stored nothing");
    assert_eq!(
        ledger.account(alice).await.unwrap().available,
        Decimal::from(6)
    );
    assert_eq!(store.head().await.unwrap().position, head + 1);
    let report = audit(store.as_ref()).await;
    assert!(report.is_sound(), "{:?}", report.findings);
}
