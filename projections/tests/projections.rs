//! Projections against real databases: they equal a fresh replay, survive a crash mid-page,
//! and a blue/green rebuild under live traffic ends identical with no reader ever failing.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::{CommandError, Ledger};
use starledger_ledger::ids::{PurchaseId, RechargeId};
use starledger_ledger::on_every_backend;
use starledger_ledger::store::{CommitMode, EventStore};
use starledger_ledger::testing::flow::*;
use starledger_ledger::testing::Backend;
use starledger_projections::audit;
use starledger_projections::model::Table;
use starledger_projections::rebuild::{rebuild, RebuildSettings};
use starledger_projections::runtime::{apply_events, decode_page, step, Runner, RunnerSettings};
use starledger_projections::store::ReadStore;
use support::read_store;

/// A small deterministic generator, so a failing run can be replayed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % sides
    }
}

/// `count` random commands over `users` users; rejected ones are part of the workload, any
/// other error fails the test. Returns how many were accepted (recorded).
async fn workload(ledger: &Ledger, seed: u64, users: i64, count: usize) -> usize {
    let mut dice = Dice(seed);
    let mut accepted = 0;
    for n in 0..count {
        let user = user(1 + dice.roll(users as u64) as i64);
        let slot = dice.roll(4);
        let earlier = format!("p{seed}-{}", n.saturating_sub(1 + dice.roll(4) as usize));
        let command = match dice.roll(8) {
            0 => register(),
            1 => request_recharge(
                user,
                &format!("r{slot}"),
                &format!("{}.5", 1 + dice.roll(20)),
            ),
            2 | 3 => settle(
                user,
                &format!("r{slot}"),
                &format!("{}.25", 1 + dice.roll(25)),
            ),
            4 | 5 => purchase(
                user,
                &format!("p{seed}-{n}"),
                &format!("{}.1", dice.roll(6)),
            ),
            6 => AccountCommand::CompletePurchase {
                purchase_id: PurchaseId::derive(user, &key(&earlier)),
            },
            _ => AccountCommand::FailPurchase {
                purchase_id: PurchaseId::derive(user, &key(&earlier)),
                reason: "recipient not found".into(),
                force: false,
            },
        };
        match ledger
            .execute(user, command, &context(&format!("w-{seed}-{n}")))
            .await
        {
            Ok(_) => accepted += 1,
            Err(CommandError::Rejected(_)) => {}
            Err(error) => panic!("command {n} of workload {seed} failed: {error}"),
        }
    }
    accepted
}

/// A workload that must record something, so the checks after it are not about an empty log.
async fn recorded_workload(ledger: &Ledger, seed: u64, users: i64, count: usize) {
    let accepted = workload(ledger, seed, users, count).await;
    assert!(
        accepted > 0,
        "workload {seed}: none of {count} commands was accepted"
    );
}

async fn assert_sound(events: &Arc<dyn EventStore>, read: &dyn ReadStore) {
    let report = audit::verify(events, Some(read)).await.unwrap();
    assert!(report.ledger.is_sound(), "{:?}", report.ledger.findings);
    for (table, (checkpoint, differences)) in &report.tables {
        assert!(
            differences.is_empty(),
            "{table:?} at {checkpoint}: {differences:#?}"
        );
    }
}

/// Waits for `runner` to reach the head of the log, then checks the tables against a replay.
async fn catch_up_and_verify(runner: &Runner, events: &Arc<dyn EventStore>, read: &dyn ReadStore) {
    let head = events.head().await.unwrap().position;
    runner
        .wait_for(head, Duration::from_secs(30))
        .await
        .unwrap();
    assert_sound(events, read).await;
}

async fn project_everything(events: &dyn EventStore, read: &dyn ReadStore) {
    for table in Table::ALL {
        step(events, read, table, table.name(), "", 10_000)
            .await
            .unwrap();
    }
}

async fn projections_equal_a_fresh_replay_after_a_random_workload(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Ledger::new(events.clone());
    for u in 1..=6 {
        funded(&ledger, user(u), "50").await.unwrap();
    }
    let runner = Runner::start(events.clone(), read.clone(), RunnerSettings::default());
    recorded_workload(&ledger, 7, 6, 400).await;
    catch_up_and_verify(&runner, &events, read.as_ref()).await;

    for u in 1..=6 {
        let account = ledger.account(user(u)).await.unwrap();
        let balance = read.balance(u).await.unwrap().expect("a balance row");
        assert_eq!(
            (balance.available, balance.reserved),
            (account.available, account.reserved)
        );
        assert_eq!(read.user(u).await.unwrap().map(|r| r.user_id), Some(u));
    }
    runner.shutdown().await;
}

async fn read_your_writes_waits_for_the_command_position(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Ledger::new(events.clone());
    let runner = Runner::start(events.clone(), read.clone(), RunnerSettings::default());
    let alice = user(11);
    let settled = funded(&ledger, alice, "12.5").await.unwrap();
    runner
        .wait_for(settled.position, Duration::from_secs(10))
        .await
        .unwrap();
    let balance = read.balance(11).await.unwrap().unwrap();
    assert_eq!(balance.available.normalize().to_string(), "12.5");
    assert!(balance.position >= settled.position);
    let invoice = format!("inv-{}", RechargeId::derive(alice, &key("r1")));
    let payment = read
        .payment(&invoice)
        .await
        .unwrap()
        .expect("the recharge is findable by invoice uuid");
    assert_eq!(payment.status, "completed");
    runner.shutdown().await;
}

/// A projector that dies after writing rows but before committing leaves nothing behind:
/// the next step applies the same page once.
async fn a_projector_killed_mid_page_resumes_without_double_applying(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Ledger::new(events.clone());
    funded(&ledger, user(21), "30").await.unwrap();
    ledger
        .execute(user(21), purchase(user(21), "p1", "4"), &context("p1"))
        .await
        .unwrap();

    for table in Table::ALL {
        // The "crash": rows and checkpoint written, the transaction never committed.
        let mut tx = read.begin().await.unwrap();
        let checkpoint = tx.lock_checkpoint(table.name()).await.unwrap();
        let page = events.read_all(checkpoint, 1_000).await.unwrap();
        let projected = decode_page(&page).unwrap();
        apply_events(tx.as_mut(), table, "", &projected)
            .await
            .unwrap();
        tx.set_checkpoint(table.name(), page.last().unwrap().position)
            .await
            .unwrap();
        drop(tx);
    }
    let head = events.head().await.unwrap().position;
    for table in Table::ALL {
        let done = step(
            events.as_ref(),
            read.as_ref(),
            table,
            table.name(),
            "",
            1_000,
        )
        .await
        .unwrap();
        assert_eq!((done.checkpoint, done.applied as u64), (head, head));
        let again = step(
            events.as_ref(),
            read.as_ref(),
            table,
            table.name(),
            "",
            1_000,
        )
        .await
        .unwrap();
        assert_eq!(again.applied, 0, "nothing is applied twice");
    }
    let balance = read.balance(21).await.unwrap().unwrap();
    assert_eq!(
        (
            balance.available.normalize().to_string(),
            balance.reserved.normalize().to_string()
        ),
        ("26".into(), "4".into())
    );
    assert_sound(&events, read.as_ref()).await;
}

/// Rebuild everything while commands keep arriving and readers keep reading.
async fn rebuild_under_live_traffic_ends_identical_with_no_reader_error(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Arc::new(Ledger::new(events.clone()));
    for u in 1..=5 {
        funded(&ledger, user(u), "80").await.unwrap();
    }
    recorded_workload(&ledger, 3, 5, 300).await;
    let runner = Runner::start(events.clone(), read.clone(), RunnerSettings::default());

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (ledger, stop) = (ledger.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut seed, mut accepted) = (100, 0);
            while !stop.load(Ordering::Relaxed) {
                accepted += workload(&ledger, seed, 5, 20).await;
                seed += 1;
            }
            accepted
        })
    };
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (read, stop, reads) = (read.clone(), stop.clone(), reads.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for u in 1..=5 {
                    read.balance(u).await.expect("balance read during rebuild");
                    read.history(u, None, 20)
                        .await
                        .expect("history read during rebuild");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let mut pages = 0;
    let report = rebuild(
        &events,
        &read,
        &Table::ALL,
        // A window smaller than the log: rows written by one window are loaded by the next.
        RebuildSettings {
            page_size: 100,
            window_rows: 150,
        },
        |_, _| pages += 1,
    )
    .await
    .unwrap();
    assert!(report.events > 0 && pages > 1);
    if let Backend::Postgres { pool, .. } = backend {
        // The tables swapped in come with the planner's statistics (ANALYZE before the swap):
        // a bulk-loaded table has none until autovacuum reaches it.
        for table in Table::ALL {
            let columns: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stats WHERE schemaname = current_schema() AND tablename = $1",
            )
            .bind(table.name())
            .fetch_one(pool)
            .await
            .unwrap();
            assert!(columns > 0, "{} has no statistics", table.name());
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let written_during_rebuild = writer.await.unwrap();
    reader.await.unwrap();
    assert!(
        written_during_rebuild > 0,
        "no command was recorded while the rebuild ran"
    );
    assert!(reads.load(Ordering::Relaxed) > 0);

    catch_up_and_verify(&runner, &events, read.as_ref()).await;
    runner.shutdown().await;
}

/// Two instances run the projectors on one database at once: every page is applied once.
async fn two_instances_project_together_without_double_applying(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Ledger::new(events.clone());
    for u in 1..=4 {
        funded(&ledger, user(u), "60").await.unwrap();
    }
    let first = Runner::start(
        events.clone(),
        read.clone(),
        RunnerSettings {
            page_size: 7,
            ..Default::default()
        },
    );
    let second = Runner::start(
        events.clone(),
        read_store(backend).await,
        RunnerSettings {
            page_size: 5,
            ..Default::default()
        },
    );
    recorded_workload(&ledger, 11, 4, 250).await;
    let head = events.head().await.unwrap().position;
    first.wait_for(head, Duration::from_secs(30)).await.unwrap();
    second
        .wait_for(head, Duration::from_secs(30))
        .await
        .unwrap();
    assert_sound(&events, read.as_ref()).await;
    first.shutdown().await;
    second.shutdown().await;
}

/// Auditing while commands arrive and projectors run: every verify sees each table together
/// with the checkpoint it reflects, so it finds nothing wrong and holds nobody up.
async fn verify_is_consistent_while_projectors_run(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Arc::new(Ledger::new(events.clone()));
    for u in 1..=4 {
        funded(&ledger, user(u), "90").await.unwrap();
    }
    let runner = Runner::start(
        events.clone(),
        read.clone(),
        RunnerSettings {
            page_size: 3,
            ..Default::default()
        },
    );
    let writer = {
        let ledger = ledger.clone();
        tokio::spawn(async move { recorded_workload(&ledger, 21, 4, 300).await })
    };
    let mut audits = 0;
    while !writer.is_finished() {
        assert_sound(&events, read.as_ref()).await;
        audits += 1;
    }
    writer.await.unwrap();
    assert!(audits > 0);
    catch_up_and_verify(&runner, &events, read.as_ref()).await;
    runner.shutdown().await;
}

async fn history_pages_newest_first_by_cursor(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Ledger::new(events.clone());
    let alice = user(31);
    funded(&ledger, alice, "100").await.unwrap();
    for n in 0..7 {
        ledger
            .execute(
                alice,
                purchase(alice, &format!("p{n}"), "1"),
                &context(&format!("p{n}")),
            )
            .await
            .unwrap();
    }
    project_everything(events.as_ref(), read.as_ref()).await;
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = read.history(31, cursor, 3).await.unwrap();
        assert!(page.transactions.len() <= 3);
        seen.extend(page.transactions.iter().map(|t| t.created_position));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8, "one recharge and seven purchases");
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats: {seen:?}"
    );
}

async fn balances_at_a_past_moment_come_from_replay(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(events.clone());
    let alice = user(41);
    funded(&ledger, alice, "10").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    ledger
        .execute(alice, purchase(alice, "p1", "4"), &context("p1"))
        .await
        .unwrap();

    let amounts = |rows: &[starledger_projections::rows::BalanceRow]| {
        rows.iter()
            .map(|r| {
                (
                    r.available.normalize().to_string(),
                    r.reserved.normalize().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let before = audit::balances_at(&events, between).await.unwrap();
    assert_eq!(amounts(&before), vec![("10".into(), "0".into())]);
    let now = audit::balances_at(&events, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(amounts(&now), vec![("6".into(), "4".into())]);

    let mut out = Vec::new();
    let exported = audit::export(&events, 0, &mut out).await.unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported as usize, lines.len());
    assert_eq!(lines.len() as u64, events.head().await.unwrap().position);
    assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);
}

async fn verify_reports_a_tampered_read_model(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Ledger::new(events.clone());
    funded(&ledger, user(51), "10").await.unwrap();
    project_everything(events.as_ref(), read.as_ref()).await;
    assert_sound(&events, read.as_ref()).await;
    backend
        .tamper("UPDATE balances SET available = '1000', total = '1000' WHERE user_id = 51")
        .await;
    let report = audit::verify(&events, Some(read.as_ref())).await.unwrap();
    assert!(!report.is_sound());
    let (_, differences) = &report.tables[&Table::Balances];
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert!(differences[0]
        .found
        .as_deref()
        .unwrap_or("")
        .contains("1000"));
}

/// A replay split into many passes (a few events each) finds exactly what one pass finds:
/// every row is compared once, in its own share, whether the tables agree or not.
async fn verify_in_passes_finds_what_one_pass_finds(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let read = read_store(backend).await;
    let ledger = Ledger::new(events.clone());
    for u in 1..=6 {
        funded(&ledger, user(u), "50").await.unwrap();
    }
    recorded_workload(&ledger, 11, 6, 120).await;
    project_everything(events.as_ref(), read.as_ref()).await;
    let in_passes = |read: Arc<dyn ReadStore>| {
        let events = events.clone();
        async move {
            let settings = audit::ReplaySettings { events_per_pass: 7 };
            let mut seen = (0, 0);
            let report = audit::verify_with(&events, Some(read.as_ref()), settings, |d, t| {
                assert!(d <= t, "{d} of {t}");
                seen = (d, t);
            })
            .await
            .unwrap();
            (report, seen)
        }
    };
    let (sound, (done, total)) = in_passes(read.clone()).await;
    assert!(sound.is_sound(), "{:?}", sound.tables);
    assert!(sound.passes > 2, "{} passes", sound.passes);
    assert_eq!(done, total, "progress ends at its total");

    backend
        .tamper("UPDATE balances SET available = '1000', total = '1000' WHERE user_id = 2")
        .await;
    backend
        .tamper("DELETE FROM transactions WHERE user_id = 3")
        .await;
    backend
        .tamper("UPDATE users SET username = 'mallory' WHERE user_id = 4")
        .await;
    let whole = audit::verify(&events, Some(read.as_ref())).await.unwrap();
    assert_eq!(whole.passes, 1);
    let (split, _) = in_passes(read.clone()).await;
    assert!(!whole.is_sound());
    for table in Table::ALL {
        let keys = |report: &audit::VerifyReport| {
            let mut keys: Vec<_> = report.tables[&table]
                .1
                .iter()
                .map(|d| (d.key.clone(), d.expected.clone(), d.found.clone()))
                .collect();
            keys.sort();
            keys
        };
        assert!(!keys(&whole).is_empty(), "{table:?} was tampered with");
        assert_eq!(keys(&split), keys(&whole), "{table:?}");
    }
}

/// Balances replayed in passes are the one-pass balances, each pass in key order.
async fn balances_in_passes_equal_one_pass(backend: &Backend) {
    let events = backend.open(CommitMode::default()).await;
    let ledger = Ledger::new(events.clone());
    for u in 1..=8 {
        funded(&ledger, user(u), "50").await.unwrap();
    }
    recorded_workload(&ledger, 13, 8, 80).await;
    let now = chrono::Utc::now();
    let whole = audit::balances_at(&events, now).await.unwrap();
    let mut split = Vec::new();
    let settings = audit::ReplaySettings { events_per_pass: 5 };
    let passes = audit::balances_at_with(
        &events,
        now,
        settings,
        |_, _| {},
        |pass, row| split.push((pass, row)),
    )
    .await
    .unwrap();
    assert!(passes > 2, "{passes} passes");
    for pass in split.windows(2).filter(|w| w[0].0 == w[1].0) {
        assert!(pass[0].1.user_id < pass[1].1.user_id, "key order in a pass");
    }
    let mut split: Vec<_> = split.into_iter().map(|(_, row)| row).collect();
    split.sort_by_key(|row| (row.user_id, row.currency.clone()));
    assert_eq!(split, whole);
}

on_every_backend!(
    projections_equal_a_fresh_replay_after_a_random_workload,
    read_your_writes_waits_for_the_command_position,
    a_projector_killed_mid_page_resumes_without_double_applying,
    rebuild_under_live_traffic_ends_identical_with_no_reader_error,
    two_instances_project_together_without_double_applying,
    verify_is_consistent_while_projectors_run,
    history_pages_newest_first_by_cursor,
    balances_at_a_past_moment_come_from_replay,
    verify_reports_a_tampered_read_model,
    verify_in_passes_finds_what_one_pass_finds,
    balances_in_passes_equal_one_pass,
);
