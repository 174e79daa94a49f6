//! External ids (Heleket invoice uuids, Fragment request ids) are facts other systems hand us;
//! the ledger does not promise they are unique across accounts. A projector must project every
//! history the ledger accepted, so two orders that Fragment (or a sandbox, or a bug on its
//! side) named alike both get their rows, and the projector after them keeps going.

mod support;

use std::sync::Arc;

use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::Ledger;
use starledger_ledger::ids::PurchaseId;
use starledger_ledger::money::Amount;
use starledger_ledger::on_every_backend;
use starledger_ledger::store::CommitMode;
use starledger_ledger::testing::flow::*;
use starledger_ledger::testing::Backend;
use starledger_projections::audit;
use starledger_projections::cache::{CacheSettings, ReadCache};
use starledger_projections::cache_projector;
use starledger_projections::model::Table;
use starledger_projections::runtime::step;
use starledger_projections::store::{ReadError, ReadStore};
use support::read_store;

async fn two_orders_named_alike_by_fragment_are_both_projected(backend: &Backend) {
    let read = read_store(backend).await;
    project_orders_named_alike(backend, read).await;
}

/// A database whose transactions table was made while external ids were indexed as unique is
/// upgraded when the read store opens: the index goes, and the same history projects.
async fn a_table_made_with_the_old_unique_index_is_upgraded(backend: &Backend) {
    read_store(backend).await;
    backend
        .try_execute("DROP INDEX transactions_external_id_idx")
        .await
        .unwrap();
    backend
        .try_execute(
            "CREATE UNIQUE INDEX transactions_shadow_external_id_key ON transactions (external_id)",
        )
        .await
        .unwrap();
    let read = read_store(backend).await;
    project_orders_named_alike(backend, read).await;
}

async fn project_orders_named_alike(backend: &Backend, read: Arc<dyn ReadStore>) {
    let events = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(events.clone());
    let mut purchases = Vec::new();
    for u in [1, 2] {
        funded(&ledger, user(u), "10").await.unwrap();
        let placed = ledger
            .execute(
                user(u),
                purchase(user(u), "p1", "1"),
                &context(&format!("p-{u}")),
            )
            .await
            .unwrap();
        assert!(!placed.events.is_empty(), "the purchase was recorded");
        let purchase_id = PurchaseId::derive(user(u), &key("p1"));
        let recorded = ledger
            .execute(
                user(u),
                AccountCommand::RecordFragmentOrder {
                    purchase_id,
                    fragment_request_id: "same-request-id".into(),
                    ton_amount: Amount::parse("0.9").unwrap(),
                },
                &context(&format!("order-{u}")),
            )
            .await
            .unwrap();
        assert!(
            !recorded.events.is_empty(),
            "the Fragment order was recorded"
        );
        purchases.push(purchase_id);
    }
    // One more event after them: the projector must get past the two alike-named orders.
    ledger
        .execute(user(3), register(), &context("reg-3"))
        .await
        .unwrap();

    let head = events.head().await.unwrap().position;
    for table in Table::ALL {
        let reached = step(
            events.as_ref(),
            read.as_ref(),
            table,
            table.name(),
            "",
            10_000,
        )
        .await
        .unwrap_or_else(|e| panic!("{} projector stopped: {e}", table.name()));
        assert_eq!(
            reached.checkpoint,
            head,
            "{} projector reached the head",
            table.name()
        );
    }
    for purchase_id in purchases {
        let row = read
            .transaction(purchase_id.uuid())
            .await
            .unwrap()
            .expect("a row for each purchase");
        assert_eq!(row.external_id.as_deref(), Some("same-request-id"));
    }
    assert!(read.user(3).await.unwrap().is_some());

    // The cache projector gets past them too, and a Fragment request id never answers as a
    // Heleket payment (payments are recharges by invoice uuid).
    let cache = ReadCache::new(CacheSettings::default()).await;
    let (reached, _) = cache_projector::step(events.as_ref(), read.as_ref(), &cache, 10_000)
        .await
        .unwrap();
    assert_eq!(reached, head);
    let payment = cache
        .payment("same-request-id", || async { Ok::<_, ReadError>(None) })
        .await
        .unwrap();
    assert_eq!(payment, None, "a purchase answered for an invoice");
    assert_eq!(read.payment("same-request-id").await.unwrap(), None);
    let report = audit::verify(&events, Some(read.as_ref())).await.unwrap();
    assert!(report.ledger.is_sound(), "{:?}", report.ledger.findings);
    for (table, (_, differences)) in &report.tables {
        assert!(differences.is_empty(), "{table:?}: {differences:?}");
    }
}

on_every_backend!(
    two_orders_named_alike_by_fragment_are_both_projected,
    a_table_made_with_the_old_unique_index_is_upgraded,
);
