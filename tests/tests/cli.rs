//! The `starledger` command line, run as a newcomer would run it.

use sqlx::{ConnectOptions, Connection, Executor};
use starledger_e2e::{starledger, ScratchDatabase};
use starledger_ledger::testing::server_url;

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn demo_runs_with_no_servers_and_verifies_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let output = starledger()
        .arg("demo")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = stdout_of(&output);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "RechargeSettled at position 3",
        "already done: nothing appended",
        "refused (insufficient_funds)",
        "FragmentOrderSent at position 7",
        "PurchaseCompleted at position 8",
        "recipient_not_found → release (refund)",
        "PurchaseFailed at position 9",
        "RechargeReversed at position 11",
        "owed 3.95 TON",
        "refused (account_in_debt)",
        "RechargeReviewRequired at position 13",
        "RechargeSettled at position 14",
        "trial balance zero: yes",
        "the ledger is sound",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn running_the_demo_again_on_the_same_file_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kept.db");
    let first = starledger()
        .args(["demo", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(first.status.success());
    let second = starledger()
        .args(["demo", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let stdout = stdout_of(&second);
    assert!(second.status.success(), "{stdout}");
    // Every step is a retry of the first run's command: answered, never appended again; and
    // the fulfilment worker finds nothing left to do.
    assert_eq!(
        stdout.matches("already done: nothing appended").count(),
        11,
        "{stdout}"
    );
    assert!(!stdout.contains("fulfilment worker:"), "{stdout}");
    assert!(stdout.contains("hash chain: 14 events"), "{stdout}");
}

#[test]
fn a_malformed_setting_stops_start_up_and_names_the_variable() {
    for (variable, value) in [
        ("DATABASE_URL", "mysql://nope"),
        ("STAR_PRICE", "-3"),
        ("LOG_LEVEL", "chatty"),
    ] {
        let output = starledger()
            .arg("migrate")
            .env(variable, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{variable}: {stderr}");
        assert!(stderr.contains(variable), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn migrate_creates_the_postgres_schema_once() {
    let Some(url) = server_url(
        "TEST_DATABASE_URL",
        "the PostgreSQL migration test is skipped; set it to postgres://… to run it",
    ) else {
        return;
    };
    let database = ScratchDatabase::create(&url).await;

    for _ in 0..2 {
        let output = starledger()
            .arg("migrate")
            .env("DATABASE_URL", database.url())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout_of(&output).contains("schema is up to date (PostgreSQL)"));
    }
    let mut conn = database.options().connect().await.unwrap();
    let (head,): (i64,) = sqlx::query_as("SELECT position FROM ledger_head")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(head, 0);
    // TRUNCATE: a statement trigger, so it fires on the still-empty table.
    let refused = conn.execute("TRUNCATE events").await;
    assert!(refused.is_err_and(|e| e.to_string().contains("append-only")));
    conn.close().await.unwrap();
}

#[tokio::test]
async fn auditors_verify_rebuild_and_export_the_demo_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audited.db");
    assert!(starledger()
        .args(["demo", "--db"])
        .arg(&db)
        .output()
        .unwrap()
        .status
        .success());
    let url = format!("sqlite://{}", db.display());
    let run = |args: &[&str]| {
        starledger()
            .args(args)
            .env("DATABASE_URL", &url)
            .output()
            .unwrap()
    };

    let rebuilt = run(&["projections", "rebuild", "all"]);
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert!(stdout_of(&rebuilt).contains("from 14 events"));
    let status = stdout_of(&run(&["projections", "status"]));
    assert!(status.contains("balances"), "{status}");

    let verified = run(&["audit", "verify"]);
    let report = stdout_of(&verified);
    assert!(verified.status.success(), "{report}");
    assert!(
        report.contains("balances      at 14: matches the replay"),
        "{report}"
    );
    // The first verify checks the whole log and records a verified checkpoint; the next one
    // starts from it (nothing new to check) and still compares the tables with a whole replay.
    let mut lines = report.lines();
    assert!(
        lines
            .next()
            .unwrap_or("")
            .starts_with("verified 14 events in "),
        "{report}"
    );
    assert_eq!(
        lines.next(),
        Some("mode: full from position 1 (no verified checkpoint yet)"),
        "{report}"
    );
    assert!(
        report.contains("verified checkpoint recorded at 14"),
        "{report}"
    );
    let verified = run(&["audit", "verify"]);
    let report = stdout_of(&verified);
    assert!(verified.status.success(), "{report}");
    assert!(report.starts_with("verified 0 events in "), "{report}");
    assert!(
        report.contains("mode: incremental from checkpoint at 14"),
        "{report}"
    );
    assert!(
        report.contains("balances      at 14: matches the replay"),
        "{report}"
    );

    let exported = run(&["audit", "export"]);
    let lines: Vec<serde_json::Value> = stdout_of(&exported)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 14);
    assert_eq!(lines[13]["prev_hash"], lines[12]["hash"]);

    // An edited read model and an edited event are both reported, with a failing exit code.
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .connect()
        .await
        .unwrap();
    conn.execute("UPDATE balances SET available = '99'")
        .await
        .unwrap();
    let verified = run(&["audit", "verify"]);
    assert_eq!(verified.status.code(), Some(1));
    assert!(stdout_of(&verified).contains("balances      at 14: 1 differences"));
    conn.execute("DROP TRIGGER events_append_only_update")
        .await
        .unwrap();
    conn.execute("UPDATE events SET data = replace(data, '10.5', '100.5') WHERE position = 3")
        .await
        .unwrap();
    // An event edited in place before the checkpoint, its stored hashes left alone, still
    // carries the hashes the checkpoint expects: only `--full`, which re-hashes every event,
    // sees it (docs/operations.md, "Verifying the ledger").
    let verified = run(&["audit", "verify", "--log-only", "--full"]);
    assert_eq!(verified.status.code(), Some(1));
    let report = stdout_of(&verified);
    assert!(report.contains("position 3"), "{report}");
    assert!(report.contains("mode: full from position 1\n"), "{report}");
    assert!(!report.contains("checkpoint recorded"), "{report}");
}

/// `bench http` end to end on a scratch database: the server in its process, signed
/// webhooks through reqwest, the balance reads through the bench's own HTTP/1.1 client.
/// It exits 0 only if every webhook was recorded, every balance grew by what was paid and
/// every read answered a balance.
#[tokio::test]
async fn bench_http_reads_and_pays_through_the_real_server() {
    let Some(url) = server_url(
        "TEST_DATABASE_URL",
        "the bench http test is skipped; set it to postgres://… to run it",
    ) else {
        return;
    };
    let output = starledger()
        .args(["bench", "http", "--database-url", &url])
        .args(["--users", "5", "--webhooks", "20", "--reads", "300"])
        .args(["--connections", "4"])
        .output()
        .unwrap();
    let stdout = stdout_of(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("webhooks: "), "{stderr}");
    assert!(stderr.contains("20 recorded, 0 errors"), "{stderr}");
    assert!(stderr.contains("cached balance reads: "), "{stderr}");
    for row in ["signed webhooks", "cached balance reads"] {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(row))
            .unwrap_or_else(|| panic!("no {row:?} row in:\n{stdout}"));
        // … errors, VmHWM MB: the errors column, second from the right, is 0.
        assert_eq!(line.split_whitespace().rev().nth(1), Some("0"), "{line}");
    }
}

/// The benchmarks are a binary of their own; `starledger bench …` runs it with the same
/// arguments and passes its exit code on.
#[tokio::test]
async fn bench_runs_the_bench_binary_with_its_arguments() {
    let Some(url) = server_url(
        "TEST_DATABASE_URL",
        "the bench forwarding test is skipped; set it to postgres://… to run it",
    ) else {
        return;
    };
    let output = starledger()
        .args(["bench", "ledger", "--database-url", &url])
        .args(["--commands", "200", "--unbatched-commands", "20"])
        .args(["--accounts", "10", "--clients", "4"])
        .output()
        .unwrap();
    let stdout = stdout_of(&output);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for row in [
        "postgres, group commit, many accounts, 4 clients           200",
        "postgres, one transaction per command                       20",
        "group commit vs. one transaction per command (4 clients):",
    ] {
        assert!(stdout.contains(row), "no {row:?} in:\n{stdout}");
    }

    // A mistyped bench is the bench binary's usage error, passed on as exit code 2.
    let output = starledger().args(["bench", "ledgr"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Usage: starledger bench"), "{stderr}");
}
