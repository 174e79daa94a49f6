//! The event store contract, run against every backend (SQLite always, PostgreSQL when
//! `TEST_DATABASE_URL` is set, as it must be under CI): ordering, conflicts, idempotency,
//! gapless positions under concurrency, tamper detection, append-only enforcement and tailing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use starledger_ledger::chain::{ChainBreak, ChainVerifier};
use starledger_ledger::ids::EventId;
use starledger_ledger::on_every_backend;
use starledger_ledger::store::tail::Tail;
use starledger_ledger::store::{
    AppendError, AppendRequest, CommitMode, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
};
use starledger_ledger::testing::Backend;

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: EventId(uuid::Uuid::new_v4()),
        event_type: "TestHappened".into(),
        schema_version: 1,
        data: json!({"n": n, "note": "räksmörgås / \"quoted\"", "nested": {"b": 1, "a": [1, 2]}}),
        metadata: json!({"actor": "system"}),
    }
}

fn request(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        stream_id: stream.into(),
        expected,
        events,
    }
}

async fn read_everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let page = store
            .read_all(all.last().map_or(0, |e: &RecordedEvent| e.position), 500)
            .await
            .unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

fn verify_chain(events: &[RecordedEvent]) -> Result<(), ChainBreak> {
    let mut verifier = ChainVerifier::default();
    events.iter().try_for_each(|e| verifier.check(e))
}

async fn appends_and_reads_back_in_order(backend: &Backend) {
    let store = backend.open(CommitMode::default()).await;
    let a = store
        .append(request(
            "account-1",
            ExpectedVersion::Exact(0),
            vec![event(1), event(2)],
        ))
        .await
        .unwrap();
    assert_eq!(
        (
            a.first_position,
            a.last_position,
            a.stream_version,
            a.replayed
        ),
        (1, 2, 2, false)
    );
    let b = store
        .append(request(
            "account-2",
            ExpectedVersion::Exact(0),
            vec![event(3)],
        ))
        .await
        .unwrap();
    assert_eq!((b.first_position, b.stream_version), (3, 1));

    let stream = store.read_stream("account-1", 0).await.unwrap();
    assert_eq!(
        stream.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(stream[1].data_value().unwrap()["n"], 2);
    assert_eq!(store.read_stream("account-1", 1).await.unwrap().len(), 1);
    assert!(store.read_stream("account-9", 0).await.unwrap().is_empty());

    let all = read_everything(store.as_ref()).await;
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    verify_chain(&all).unwrap();
    let head = store.head().await.unwrap();
    assert_eq!((head.position, head.hash), (3, all[2].hash));
    assert_eq!(store.read_all(1, 1).await.unwrap()[0].position, 2);

    let found = store
        .read_events(&[all[2].event_id, all[0].event_id])
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 3]
    );
}

async fn wrong_expected_version_is_a_conflict(backend: &Backend) {
    let store = backend.open(CommitMode::default()).await;
    let first = event(1);
    let first_id = first.event_id;
    store
        .append(request("account-1", ExpectedVersion::Exact(0), vec![first]))
        .await
        .unwrap();

    for expected in [
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(2),
        ExpectedVersion::Tip {
            version: 1,
            event_id: EventId(uuid::Uuid::new_v4()),
        },
    ] {
        let outcome = store
            .append(request("account-1", expected, vec![event(2)]))
            .await;
        assert!(
            matches!(outcome, Err(AppendError::Conflict { actual: 1, .. })),
            "{expected:?} gave {outcome:?}"
        );
    }
    assert_eq!(
        store.head().await.unwrap().position,
        1,
        "a conflict appends nothing"
    );
    let tip = ExpectedVersion::Tip {
        version: 1,
        event_id: first_id,
    };
    assert!(store
        .append(request("account-1", tip, vec![event(2)]))
        .await
        .is_ok());
    assert!(store
        .append(request("account-1", ExpectedVersion::Any, vec![event(3)]))
        .await
        .is_ok());
}

async fn re_appending_the_same_events_is_idempotent(backend: &Backend) {
    let store = backend.open(CommitMode::default()).await;
    let events = vec![event(1), event(2)];
    let once = store
        .append(request(
            "account-1",
            ExpectedVersion::Exact(0),
            events.clone(),
        ))
        .await
        .unwrap();
    // Same events again, even with a now-stale expected version: the first answer comes back.
    let twice = store
        .append(request(
            "account-1",
            ExpectedVersion::Exact(0),
            events.clone(),
        ))
        .await
        .unwrap();
    assert!(twice.replayed);
    assert_eq!(
        (twice.first_position, twice.last_position),
        (once.first_position, once.last_position)
    );
    assert_eq!(store.head().await.unwrap().position, 2);

    let partial = vec![events[0].clone(), event(3)];
    assert!(matches!(
        store
            .append(request("account-1", ExpectedVersion::Any, partial))
            .await,
        Err(AppendError::IdempotencyMismatch(_))
    ));
    assert!(matches!(
        store
            .append(request("account-2", ExpectedVersion::Any, events.clone()))
            .await,
        Err(AppendError::IdempotencyMismatch(_))
    ));
    assert_eq!(store.head().await.unwrap().position, 2);
}

async fn invalid_appends_are_refused(backend: &Backend) {
    let store = backend.open(CommitMode::default()).await;
    assert!(matches!(
        store
            .append(request("account-1", ExpectedVersion::Any, vec![]))
            .await,
        Err(AppendError::Invalid(_))
    ));
    let twin = event(1);
    assert!(matches!(
        store
            .append(request(
                "account-1",
                ExpectedVersion::Any,
                vec![twin.clone(), twin]
            ))
            .await,
        Err(AppendError::Invalid(_))
    ));
    assert_eq!(store.head().await.unwrap().position, 0);
}

/// Many tasks on two independent writers (as two processes): every append lands exactly
/// once, positions are 1..=N with no hole, and every stream's versions are 1..=n.
async fn positions_stay_gapless_under_concurrent_appenders(backend: &Backend) {
    for mode in [CommitMode::default(), CommitMode::PerAppend] {
        let stores = [backend.open(mode).await, backend.open(mode).await];
        let start = stores[0].head().await.unwrap().position;
        let tasks = 16;
        let per_task = 40;
        let mut handles = Vec::new();
        for task in 0..tasks {
            let store = stores[task % 2].clone();
            let label = format!("{mode:?}").replace(|c: char| !c.is_ascii_alphanumeric(), "");
            handles.push(tokio::spawn(async move {
                let own = format!("own-{label}-{task}");
                let shared = format!("shared-{label}-{}", task % 3);
                for i in 0..per_task {
                    // `i` events are already in this task's own stream.
                    store
                        .append(request(&own, ExpectedVersion::Exact(i), vec![event(i)]))
                        .await
                        .unwrap();
                    // Contended stream: re-read and retry on conflict, as the handler does.
                    loop {
                        let version = store.read_stream(&shared, 0).await.unwrap().len() as u64;
                        match store
                            .append(request(
                                &shared,
                                ExpectedVersion::Exact(version),
                                vec![event(i)],
                            ))
                            .await
                        {
                            Ok(_) => break,
                            Err(AppendError::Conflict { .. }) => continue,
                            Err(other) => panic!("{other}"),
                        }
                    }
                }
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        let all = read_everything(stores[0].as_ref()).await;
        let added = &all[start as usize..];
        assert_eq!(added.len(), tasks * per_task as usize * 2, "{mode:?}");
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.position, i as u64 + 1, "hole or reorder in {mode:?}");
        }
        let mut versions: HashMap<&str, Vec<u64>> = HashMap::new();
        for e in &all {
            versions
                .entry(&e.stream_id)
                .or_default()
                .push(e.stream_version);
        }
        for (stream, seen) in versions {
            assert_eq!(
                seen,
                (1..=seen.len() as u64).collect::<Vec<_>>(),
                "{stream}"
            );
        }
        verify_chain(&all).unwrap();
    }
}

async fn store_with_three_events(backend: &Backend) -> Arc<dyn EventStore> {
    let store = backend.open(CommitMode::default()).await;
    for n in 1..=3 {
        store
            .append(request("account-1", ExpectedVersion::Any, vec![event(n)]))
            .await
            .unwrap();
    }
    store
}

async fn the_chain_detects_an_edited_row(backend: &Backend) {
    let store = store_with_three_events(backend).await;
    verify_chain(&read_everything(store.as_ref()).await).unwrap();
    let edit = match backend.name() {
        "postgres" => r#"UPDATE events SET data = '{"n": 999}'::jsonb WHERE position = 2"#,
        _ => r#"UPDATE events SET data = '{"n": 999}' WHERE position = 2"#,
    };
    backend.tamper(edit).await;
    assert_eq!(
        verify_chain(&read_everything(store.as_ref()).await),
        Err(ChainBreak::Altered { position: 2 })
    );
}

async fn the_chain_detects_a_deleted_row(backend: &Backend) {
    let store = store_with_three_events(backend).await;
    backend
        .tamper("DELETE FROM events WHERE position = 2")
        .await;
    assert_eq!(
        verify_chain(&read_everything(store.as_ref()).await),
        Err(ChainBreak::Gap {
            previous: 1,
            found: 3
        })
    );
}

async fn the_chain_detects_a_forged_replacement(backend: &Backend) {
    // Delete the last row and re-number the next: positions look gapless, links do not.
    let store = store_with_three_events(backend).await;
    backend
        .tamper("DELETE FROM events WHERE position = 2")
        .await;
    backend
        .tamper("UPDATE events SET position = 2 WHERE position = 3")
        .await;
    assert_eq!(
        verify_chain(&read_everything(store.as_ref()).await),
        Err(ChainBreak::BrokenLink { position: 2 })
    );
}

async fn events_cannot_be_updated_or_deleted(backend: &Backend) {
    let store = backend.open(CommitMode::default()).await;
    store
        .append(request("account-1", ExpectedVersion::Any, vec![event(1)]))
        .await
        .unwrap();
    let mut statements = vec![
        "UPDATE events SET event_type = 'Forged'",
        "DELETE FROM events",
    ];
    if backend.name() == "postgres" {
        statements.push("TRUNCATE events");
    }
    for sql in statements {
        let refused = backend.try_execute(sql).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("append-only")),
            "{sql} was not refused: {refused:?}"
        );
    }
    assert_eq!(read_everything(store.as_ref()).await.len(), 1);
}

async fn a_tail_sees_events_appended_later(backend: &Backend) {
    let store = backend.open(CommitMode::default()).await;
    store
        .append(request("account-1", ExpectedVersion::Any, vec![event(1)]))
        .await
        .unwrap();
    // A long poll interval: only the commit signal can wake the tail in time.
    let mut tail = Tail::new(store.clone(), 0).poll_interval(Duration::from_secs(30));
    assert_eq!(tail.next_page().await.unwrap().len(), 1);
    let waiting = tokio::spawn(async move { tail.next_page().await.map(|page| page[0].position) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // On PostgreSQL the append comes from a second store, as from another process: only the
    // LISTEN/NOTIFY path can wake the tail in time.
    let writer: Arc<dyn EventStore> = match backend.name() {
        "postgres" => backend.open(CommitMode::default()).await,
        _ => store.clone(),
    };
    writer
        .append(request("account-2", ExpectedVersion::Any, vec![event(2)]))
        .await
        .unwrap();
    let position = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(position, 2);
}

/// A PostgreSQL batch is written by one statement conditional on the head it was planned on
/// or, after repeated losses to other writers, in a transaction that locks the head first.
/// Both extend one gapless chain; a repeat of a written batch writes nothing and answers
/// where it was written.
#[tokio::test]
async fn postgres_batches_extend_one_chain_whichever_way_they_commit() {
    use starledger_ledger::store::batch::BatchBackend;
    use starledger_ledger::store::postgres::PgBackend;
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let Backend::Postgres { pool, .. } = &backend else {
        unreachable!("Backend::postgres opens PostgreSQL");
    };
    let writer = PgBackend::new(pool.clone());
    let mut expected = 0;
    for i in 0..6u64 {
        let batch = [
            request(
                &format!("account-{}", 10 + i),
                ExpectedVersion::Exact(0),
                vec![event(i)],
            ),
            request(
                "account-shared",
                ExpectedVersion::Exact(i),
                vec![event(100 + i)],
            ),
        ];
        let outcomes = if i % 2 == 0 {
            writer.commit_batch(&batch).await.unwrap()
        } else {
            writer.commit_locked(&batch).await.unwrap()
        };
        assert_eq!(outcomes.len(), 2);
        for outcome in &outcomes {
            expected += 1;
            assert_eq!(outcome.as_ref().unwrap().last_position, expected);
        }
        // The same batch again: stored already, so nothing is written and the answers say
        // where it is.
        let again = writer.commit_batch(&batch).await.unwrap();
        for (first, repeat) in outcomes.iter().zip(&again) {
            let (first, repeat) = (first.as_ref().unwrap(), repeat.as_ref().unwrap());
            assert!(repeat.replayed && !first.replayed);
            assert_eq!(repeat.last_position, first.last_position);
        }
    }
    let store = backend.open(CommitMode::default()).await;
    let all = read_everything(store.as_ref()).await;
    assert_eq!(all.len() as u64, expected);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1);
    }
    verify_chain(&all).unwrap();
    assert_eq!(store.head().await.unwrap().position, expected);
}

on_every_backend!(
    appends_and_reads_back_in_order,
    wrong_expected_version_is_a_conflict,
    re_appending_the_same_events_is_idempotent,
    invalid_appends_are_refused,
    positions_stay_gapless_under_concurrent_appenders,
    the_chain_detects_an_edited_row,
    the_chain_detects_a_deleted_row,
    the_chain_detects_a_forged_replacement,
    events_cannot_be_updated_or_deleted,
    a_tail_sees_events_appended_later,
);
