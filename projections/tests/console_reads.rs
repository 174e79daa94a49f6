//! The reads the operators' console adds to the read side, on every backend: a user found by
//! name, open purchases counted by status, one user's balance at a past moment from their
//! stream alone, and the events recorded since a moment found by bisecting the log.

mod support;

use chrono::{Duration, Utc};
use rust_decimal::Decimal;
use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::Ledger;
use starledger_ledger::money::Currency;
use starledger_ledger::on_every_backend;
use starledger_ledger::store::CommitMode;
use starledger_ledger::testing::flow::*;
use starledger_ledger::testing::Backend;
use starledger_projections::audit;
use starledger_projections::model::Table;
use starledger_projections::runtime::step;
use starledger_projections::status::recorded_since;
use starledger_projections::store::StatusFilter;
use support::read_store;

fn named(username: &str) -> AccountCommand {
    AccountCommand::Register {
        username: Some(username.into()),
        language: Some("en".into()),
        currency: Currency::ton(),
    }
}

async fn the_console_finds_counts_and_looks_back(backend: &Backend) {
    let read = read_store(backend).await;
    let events = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(events.clone());
    funded(&ledger, user(1), "10").await.unwrap();
    for (id, name) in [(2, "Alice_01"), (3, "bob_two")] {
        ledger
            .execute(user(id), named(name), &context(&format!("reg-{id}")))
            .await
            .unwrap();
    }
    let before_purchases = Utc::now();
    let head_before = events.head().await.unwrap().position;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    for (n, k) in ["p1", "p2"].iter().enumerate() {
        ledger
            .execute(
                user(1),
                purchase(user(1), k, "2"),
                &context(&format!("buy-{n}")),
            )
            .await
            .unwrap();
    }
    let head = events.head().await.unwrap().position;
    for table in Table::ALL {
        step(
            events.as_ref(),
            read.as_ref(),
            table,
            table.name(),
            "",
            1_000,
        )
        .await
        .unwrap();
    }

    // By name: case-insensitive, without the @, only exact names.
    let found = read.users_named("alice_01", 10).await.unwrap();
    assert_eq!(found.iter().map(|u| u.user_id).collect::<Vec<_>>(), [2]);
    assert!(read.users_named("alice", 10).await.unwrap().is_empty());
    assert!(read.users_named("%", 10).await.unwrap().is_empty());

    // Open purchases by status.
    let counts = read
        .count_in_status(&StatusFilter::OpenPurchases)
        .await
        .unwrap();
    assert_eq!(counts, [("reserved".to_owned(), 2)]);
    assert!(read
        .count_in_status(&StatusFilter::RechargesAwaitingDecision)
        .await
        .unwrap()
        .is_empty());

    // One user's balance then and now, from their stream.
    let then = audit::user_balance_at(events.as_ref(), user(1), before_purchases)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(then.available, Decimal::from(10));
    assert_eq!(then.reserved, Decimal::ZERO);
    let now = audit::user_balance_at(events.as_ref(), user(1), Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (now.available, now.reserved),
        (Decimal::from(6), Decimal::from(4))
    );
    assert_eq!(Some(now), read.balance(1).await.unwrap());
    let long_ago = Utc::now() - Duration::days(3650);
    assert_eq!(
        audit::user_balance_at(events.as_ref(), user(1), long_ago)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        audit::user_balance_at(events.as_ref(), user(9), Utc::now())
            .await
            .unwrap(),
        None
    );

    // Events since a moment.
    assert_eq!(
        recorded_since(events.as_ref(), head, long_ago)
            .await
            .unwrap(),
        head
    );
    assert_eq!(
        recorded_since(events.as_ref(), head, before_purchases)
            .await
            .unwrap(),
        head - head_before
    );
    assert_eq!(
        recorded_since(events.as_ref(), head, Utc::now())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        recorded_since(events.as_ref(), 0, long_ago).await.unwrap(),
        0
    );
}

/// A users table made before the name index existed gets it when the read store opens.
async fn an_old_users_table_gets_the_name_index(backend: &Backend) {
    read_store(backend).await;
    backend
        .try_execute("DROP INDEX users_username_idx")
        .await
        .unwrap();
    read_store(backend).await;
    backend
        .try_execute("DROP INDEX users_username_idx")
        .await
        .expect("the index is back");
}

on_every_backend!(
    the_console_finds_counts_and_looks_back,
    an_old_users_table_gets_the_name_index,
);
