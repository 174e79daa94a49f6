//! Incremental `audit verify` against real databases: the verified checkpoint is recorded
//! after a sound run, the next run checks only the events after it, a history rewritten
//! before it or an event edited after it is found, `--full` re-checks everything, a damaged
//! checkpoint falls back to a whole run, and the parallel hashing names the exact position of
//! a break, on a page edge too.

mod support;

use std::sync::Arc;

use starledger_ledger::account::AccountCommand;
use starledger_ledger::audit::{Finding, LogAudit};
use starledger_ledger::chain::{canonical_json, ChainBreak};
use starledger_ledger::checkpoint;
use starledger_ledger::commands::Ledger;
use starledger_ledger::ids::PurchaseId;
use starledger_ledger::on_every_backend;
use starledger_ledger::parallel_audit::ParallelAudit;
use starledger_ledger::store::{CommitMode, EventStore, RecordedEvent};
use starledger_ledger::testing::flow::*;
use starledger_ledger::testing::Backend;
use starledger_projections::audit::{
    verify_checkpointed, Checkpoints, FullReason, ReplaySettings, VerifyMode, VerifyReport,
};
use starledger_projections::model::Table;
use starledger_projections::runtime::step;
use starledger_projections::store::ReadStore;
use support::read_store;

/// Users `first..first + count` register, top up, and buy twice (one completed, one failed).
async fn activity(ledger: &Ledger, first: i64, count: i64) {
    for u in first..first + count {
        let who = user(u);
        funded(ledger, who, "10").await.unwrap();
        for (n, close) in [("a", true), ("b", false)] {
            let purchase_key = format!("buy-{n}");
            ledger
                .execute(
                    who,
                    purchase(who, &purchase_key, "1.5"),
                    &context(&format!("p{n}-{u}")),
                )
                .await
                .unwrap();
            let purchase_id = PurchaseId::derive(who, &key(&purchase_key));
            let command = if close {
                AccountCommand::CompletePurchase { purchase_id }
            } else {
                AccountCommand::FailPurchase {
                    purchase_id,
                    reason: "recipient not found".into(),
                    force: false,
                }
            };
            ledger
                .execute(who, command, &context(&format!("c{n}-{u}")))
                .await
                .unwrap();
        }
    }
}

async fn run(
    events: &Arc<dyn EventStore>,
    read: Option<&dyn ReadStore>,
    checkpoints: Checkpoints,
) -> VerifyReport {
    verify_checkpointed(
        events,
        read,
        ReplaySettings::default(),
        checkpoints,
        |_, _| {},
    )
    .await
    .unwrap()
}

async fn head(events: &Arc<dyn EventStore>) -> u64 {
    events.head().await.unwrap().position
}

async fn all_events(events: &Arc<dyn EventStore>) -> Vec<RecordedEvent> {
    events.read_all(0, 1_000_000).await.unwrap()
}

/// A byte string as an SQL literal of the backend.
fn blob(backend: &Backend, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match backend {
        Backend::Sqlite { .. } => format!("X'{hex}'"),
        Backend::Postgres { .. } => format!("'\\x{hex}'::bytea"),
    }
}

/// Rewrites the metadata of the event at `position` and recomputes the chain from there to
/// the head, as an attacker with full database rights who knows the hash rule would: the
/// chain is whole again and every event still decodes and balances, so a whole run of the
/// log cannot tell.
async fn rewrite_history(backend: &Backend, events: &Arc<dyn EventStore>, position: u64) {
    let mut log = all_events(events).await;
    let at = (position - 1) as usize;
    let mut metadata = log[at].metadata_value().unwrap();
    metadata["forged"] = serde_json::Value::Bool(true);
    log[at].metadata = canonical_json(&metadata);
    for i in at..log.len() {
        if i > at {
            log[i].prev_hash = log[i - 1].hash;
        }
        log[i].hash = log[i].compute_hash();
        let e = &log[i];
        let sql = format!(
            "UPDATE events SET metadata = '{}', prev_hash = {}, hash = {} WHERE position = {}",
            e.metadata.replace('\'', "''"),
            blob(backend, &e.prev_hash.0),
            blob(backend, &e.hash.0),
            e.position
        );
        backend.tamper(&sql).await;
    }
    let last = log.last().unwrap();
    backend
        .tamper(&format!(
            "UPDATE ledger_head SET hash = {}",
            blob(backend, &last.hash.0)
        ))
        .await;
}

/// Sets the stored data of the event at `position` to `data`, its hashes left as they are.
async fn set_data(backend: &Backend, position: u64, data: &str) {
    backend
        .tamper(&format!(
            "UPDATE events SET data = '{}' WHERE position = {position}",
            data.replace('\'', "''")
        ))
        .await;
}

/// Edits the event at `position` in place (a space after its JSON: it still decodes, but no
/// longer hashes to its stored hash). Returns the data it had.
async fn edit_in_place(backend: &Backend, events: &Arc<dyn EventStore>, position: u64) -> String {
    let original = all_events(events).await[position as usize - 1].data.clone();
    set_data(backend, position, &format!("{original} ")).await;
    original
}

fn is_incremental_from(report: &VerifyReport, position: u64) -> bool {
    matches!(report.mode, VerifyMode::Incremental { from, .. } if from == position)
}

async fn a_checkpoint_is_recorded_and_the_next_run_checks_only_new_events(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Ledger::new(events.clone());
    activity(&ledger, 1, 5).await;
    let first_head = head(&events).await;

    let first = run(&events, None, Checkpoints::Resume).await;
    assert!(first.is_sound(), "{:?}", first.ledger.findings);
    assert_eq!(first.mode, VerifyMode::Full(FullReason::NoCheckpoint));
    assert_eq!(first.ledger.events, first_head);
    assert_eq!(first.recorded, Some(Ok(first_head)));
    let stored = events.latest_verified_checkpoint().await.unwrap().unwrap();
    assert_eq!(stored.position, first_head);
    assert_eq!(stored.head_hash, events.head().await.unwrap().hash);
    assert_eq!(stored.tool_version, checkpoint::TOOL_VERSION);
    let state = stored
        .state
        .as_deref()
        .expect("the newest checkpoint keeps its state");
    assert_eq!(checkpoint::state_hash(state), stored.state_hash);

    activity(&ledger, 6, 2).await;
    let second_head = head(&events).await;
    let second = run(&events, None, Checkpoints::Resume).await;
    assert!(second.is_sound(), "{:?}", second.ledger.findings);
    assert!(
        is_incremental_from(&second, first_head),
        "{:?}",
        second.mode
    );
    assert_eq!(second.ledger.events, second_head - first_head);
    assert_eq!(second.ledger.head_position, second_head);
    assert_eq!(second.recorded, Some(Ok(second_head)));

    // The state the incremental run recorded is byte for byte the one a whole run records at
    // the same head: resuming lost nothing the invariants read.
    let incremental_state = events
        .latest_verified_checkpoint()
        .await
        .unwrap()
        .unwrap()
        .state
        .unwrap();
    let whole = run(&events, None, Checkpoints::Full).await;
    assert!(whole.is_sound());
    assert_eq!(whole.ledger.totals, second.ledger.totals);
    let whole_state = events
        .latest_verified_checkpoint()
        .await
        .unwrap()
        .unwrap()
        .state
        .unwrap();
    assert_eq!(incremental_state, whole_state);

    // With the read models: the log part is incremental (nothing new), the tables are still
    // compared with a replay of the whole log.
    for table in Table::ALL {
        step(
            events.as_ref(),
            read.as_ref(),
            table,
            table.name(),
            "",
            10_000,
        )
        .await
        .unwrap();
    }
    let with_tables = run(&events, Some(read.as_ref()), Checkpoints::Resume).await;
    assert!(with_tables.is_sound(), "{:?}", with_tables.tables);
    assert!(is_incremental_from(&with_tables, second_head));
    assert_eq!(with_tables.ledger.events, 0);
    assert_eq!(with_tables.tables[&Table::Balances].0, second_head);
}

async fn a_rewritten_history_before_the_checkpoint_is_found(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(events.clone());
    activity(&ledger, 1, 4).await;
    let checkpointed = head(&events).await;
    assert_eq!(
        run(&events, None, Checkpoints::Resume).await.recorded,
        Some(Ok(checkpointed))
    );
    activity(&ledger, 5, 1).await;
    rewrite_history(backend, &events, 3).await;

    // A whole run that ignores checkpoints sees a sound log: the chain was recomputed.
    let blind = run(&events, None, Checkpoints::Ignore).await;
    assert!(blind.is_sound(), "{:?}", blind.ledger.findings);

    for checkpoints in [Checkpoints::Resume, Checkpoints::Full] {
        let report = run(&events, None, checkpoints).await;
        assert!(!report.is_sound());
        assert_eq!(
            report.mode,
            VerifyMode::Full(FullReason::CheckpointDiffers {
                position: checkpointed
            })
        );
        assert!(
            report.ledger.findings.iter().any(|f| matches!(
                f,
                Finding::CheckpointRewritten { position, .. } if *position == checkpointed
            )),
            "{:?}",
            report.ledger.findings
        );
        assert_eq!(report.recorded, None, "an unsound run records nothing");
    }
}

async fn events_removed_before_the_checkpoint_are_found(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(events.clone());
    activity(&ledger, 1, 3).await;
    let checkpointed = head(&events).await;
    run(&events, None, Checkpoints::Resume).await;
    let log = all_events(&events).await;
    let keep = checkpointed - 4;
    backend
        .tamper(&format!("DELETE FROM events WHERE position > {keep}"))
        .await;
    backend
        .tamper(&format!(
            "UPDATE ledger_head SET position = {keep}, hash = {}",
            blob(backend, &log[keep as usize - 1].hash.0)
        ))
        .await;
    let report = run(&events, None, Checkpoints::Resume).await;
    assert!(!report.is_sound());
    assert!(report
        .ledger
        .findings
        .contains(&Finding::CheckpointBeyondLog {
            position: checkpointed,
            head: keep
        }));
}

async fn an_edited_event_after_the_checkpoint_is_found(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(events.clone());
    activity(&ledger, 1, 3).await;
    let checkpointed = head(&events).await;
    run(&events, None, Checkpoints::Resume).await;
    activity(&ledger, 4, 2).await;
    let edited = checkpointed + 2;
    edit_in_place(backend, &events, edited).await;
    let report = run(&events, None, Checkpoints::Resume).await;
    assert!(
        is_incremental_from(&report, checkpointed),
        "{:?}",
        report.mode
    );
    assert_eq!(
        report.ledger.findings.first(),
        Some(&Finding::Chain(ChainBreak::Altered { position: edited })),
        "{:?}",
        report.ledger.findings
    );
    assert_eq!(report.recorded, None);
    // Nothing was recorded, so the next run starts from the same checkpoint and finds it again.
    let again = run(&events, None, Checkpoints::Resume).await;
    assert!(is_incremental_from(&again, checkpointed));
    assert!(!again.is_sound());
}

/// The limit of the incremental run, pinned down: a checkpointed event edited in place with its
/// stored hashes left alone still carries the hashes the checkpoint expects, so only `--full`,
/// which re-hashes every event, finds it.
async fn an_in_place_edit_before_the_checkpoint_needs_full(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(events.clone());
    activity(&ledger, 1, 3).await;
    run(&events, None, Checkpoints::Resume).await;
    edit_in_place(backend, &events, 3).await;
    let incremental = run(&events, None, Checkpoints::Resume).await;
    assert!(incremental.is_sound(), "not seen without re-hashing");
    let full = run(&events, None, Checkpoints::Full).await;
    assert_eq!(full.mode, VerifyMode::Full(FullReason::Asked));
    assert!(full
        .ledger
        .findings
        .contains(&Finding::Chain(ChainBreak::Altered { position: 3 })));
}

async fn full_ignores_the_checkpoint_and_records_a_new_one(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(events.clone());
    activity(&ledger, 1, 3).await;
    run(&events, None, Checkpoints::Resume).await;
    activity(&ledger, 4, 1).await;
    let now = head(&events).await;
    let report = run(&events, None, Checkpoints::Full).await;
    assert!(report.is_sound());
    assert_eq!(report.mode, VerifyMode::Full(FullReason::Asked));
    assert_eq!(report.ledger.events, now);
    assert_eq!(report.recorded, Some(Ok(now)));
    // Only the newest checkpoint keeps its state.
    let kept = match backend {
        Backend::Sqlite { path, .. } => {
            let pool = starledger_ledger::store::sqlite::open_pool(path)
                .await
                .unwrap();
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT COUNT(*), COUNT(state) FROM verified_checkpoints",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
        Backend::Postgres { pool, .. } => sqlx::query_as::<_, (i64, i64)>(
            "SELECT COUNT(*), COUNT(state) FROM verified_checkpoints",
        )
        .fetch_one(pool)
        .await
        .unwrap(),
    };
    assert_eq!(kept, (2, 1));
}

async fn a_damaged_checkpoint_falls_back_to_a_full_run(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(events.clone());
    activity(&ledger, 1, 3).await;
    let checkpointed = head(&events).await;
    run(&events, None, Checkpoints::Resume).await;
    let damages = [
        (
            format!(
                "UPDATE verified_checkpoints SET state = {}",
                blob(backend, b"not the state")
            ),
            "does not match the state's recorded hash",
        ),
        (
            "UPDATE verified_checkpoints SET tool_version = '0.0.1'".to_owned(),
            "written by version 0.0.1",
        ),
    ];
    for (damage, why) in damages {
        backend.tamper(&damage).await;
        let report = run(&events, None, Checkpoints::Resume).await;
        assert!(report.is_sound(), "{:?}", report.ledger.findings);
        match &report.mode {
            VerifyMode::Full(FullReason::Unusable {
                position,
                why: said,
            }) => {
                assert_eq!(*position, checkpointed);
                assert!(said.contains(why), "{said}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(report.ledger.events, checkpointed);
        // The whole run was sound: a fresh checkpoint replaces the damaged one.
        assert_eq!(report.recorded, Some(Ok(checkpointed)));
        let next = run(&events, None, Checkpoints::Resume).await;
        assert!(is_incremental_from(&next, checkpointed), "{:?}", next.mode);
    }
}

/// The parallel audit over pages read from the database, small pages so that breaks fall on
/// page edges: each break is named at its exact position.
async fn parallel_hashing_names_the_exact_position(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(events.clone());
    activity(&ledger, 1, 3).await;
    let total = head(&events).await;
    // Page size 5: positions 6, 11, … open a page; 8 is inside one.
    for edited in [6, 8, 11, total] {
        let original = edit_in_place(backend, &events, edited).await;
        let mut audit = ParallelAudit::start(LogAudit::default(), 3);
        let mut after = 0;
        loop {
            let page = events.read_all(after, 5).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.position;
            audit.push(page).await.unwrap();
        }
        let report = audit.finish().await.unwrap();
        let chain: Vec<_> = report
            .findings
            .iter()
            .filter(|f| matches!(f, Finding::Chain(_)))
            .collect();
        assert_eq!(
            chain,
            [&Finding::Chain(ChainBreak::Altered { position: edited })],
            "edited {edited}"
        );
        assert_eq!(report.head_position, edited - 1);
        set_data(backend, edited, &original).await;
    }
}

on_every_backend!(
    a_checkpoint_is_recorded_and_the_next_run_checks_only_new_events,
    a_rewritten_history_before_the_checkpoint_is_found,
    events_removed_before_the_checkpoint_are_found,
    an_edited_event_after_the_checkpoint_is_found,
    an_in_place_edit_before_the_checkpoint_needs_full,
    full_ignores_the_checkpoint_and_records_a_new_one,
    a_damaged_checkpoint_falls_back_to_a_full_run,
    parallel_hashing_names_the_exact_position,
);
