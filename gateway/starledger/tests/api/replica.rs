//! Projection reads on a PostgreSQL streaming standby (issue 15, point 3): `DATABASE_READ_URL`
//! sends reads to it, commands and projectors stay on the primary. With the standby's replay
//! paused, no read goes backwards, and a read with `min_position` still shows the write (the
//! primary answers once the standby has not caught up in time). The auditors' reads (event
//! stream, verification) run on the standby while it holds everything the primary does, and on
//! the primary while it does not: never a shorter log.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;
use crate::support::app::Database;
use crate::support::pg_standby::{self, PgStandby};

fn on_standby(standby: &PgStandby, database: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &standby.standby_port.to_string()])
        .args(["-U", "postgres", "-d", database, "-Atc", sql])
        .output()
        .expect("psql runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// How many audit reads ran on `source` (`standby` or `primary`), from `/metrics`.
async fn audit_reads(app: &TestApp, source: &str) -> u64 {
    let text = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("starledger_audit_reads_total{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.trim().parse().unwrap())
}

async fn history(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app
        .get(&format!("/v1/users/5901/transactions{query}"), SERVICE_KEY)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["transactions"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_on_a_paused_standby_never_go_backwards_and_min_position_still_sees_the_write() {
    if !pg_standby::available() {
        return;
    }
    let standby = tokio::task::spawn_blocking(PgStandby::start).await.unwrap();
    let (database, name) = Database::on_server(&standby.primary_url()).await;
    // The standby has the new database once it replayed its creation.
    let started = Instant::now();
    while on_standby(&standby, &name, "select 1") != "1" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the standby never got the database"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let read_url = format!(
        "postgres://postgres@127.0.0.1:{}/{name}",
        standby.standby_port
    );
    let app = spawn_app_on(
        database,
        Options {
            vars: vec![("DATABASE_READ_URL", read_url)],
        },
    )
    .await;
    app.funded_user(5901, "10").await;
    // The standby catches up with what was written so far.
    let head = app.log_length().await;
    let started = Instant::now();
    loop {
        let reached: u64 = on_standby(
            &standby,
            &name,
            "select coalesce(min(position), 0) from projection_checkpoints where name in ('users', 'balances', 'transactions')",
        )
        .parse()
        .unwrap_or(0);
        if reached >= head {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the standby never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = history(&app, "").await.len();

    // The auditors' reads go to the standby while it holds everything the primary does.
    let (on_standby_before, on_primary_before) = (
        audit_reads(&app, "standby").await,
        audit_reads(&app, "primary").await,
    );
    assert_eq!(app.log_length().await, head);
    assert_eq!(
        app.audit_result("/v1/audit/verify").await["head_position"],
        head
    );
    assert!(audit_reads(&app, "standby").await >= on_standby_before + 2);
    assert_eq!(audit_reads(&app, "primary").await, on_primary_before);

    // Replay stops on the standby; a write lands on the primary.
    assert_eq!(
        on_standby(&standby, &name, "select pg_wal_replay_pause()"),
        ""
    );
    app.top_up(5901, "1").await;
    // The auditors never get a log shorter than the primary's: the lagging standby is
    // passed over, for the event stream and for verification alike.
    let position = app.log_length().await;
    assert_eq!(position, head + 2, "the top-up's two events are in the log");
    let report = app.audit_result("/v1/audit/verify").await;
    assert_eq!(report["head_position"], position, "{report:#}");
    assert_eq!(report["sound"], true, "{report:#}");
    assert!(audit_reads(&app, "primary").await >= on_primary_before + 2);

    // Plain reads go to the standby: its history does not have the write yet.
    assert_eq!(
        history(&app, "").await.len(),
        before,
        "plain history is the standby's"
    );
    // A read that must reach the write gets it from the primary.
    let seen = history(&app, &format!("?min_position={position}")).await;
    assert_eq!(seen.len(), before + 1, "{seen:?}");
    // The balance, read plainly again and again, never goes back to before the write.
    for _ in 0..20 {
        assert_eq!(app.balance(5901).await["available"], "11");
    }

    // An order placed now is in the operators' list of open orders at once, although the
    // paused standby has not seen it.
    let order = app
        .post_with_key(
            "/v1/users/5901/purchases",
            SERVICE_KEY,
            "replica-order-1",
            &serde_json::json!({"stars": 50, "recipient": "@gift_friend"}),
        )
        .await;
    assert_eq!(order.status(), StatusCode::CREATED);
    let order: Value = order.json().await.unwrap();
    let open: Value = app
        .get("/v1/admin/purchases", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    let listed: Vec<&Value> = open["purchases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| &entry["purchase"]["id"])
        .collect();
    assert!(
        listed.contains(&&order["purchase_id"]),
        "the open order is missing from {open:#}"
    );

    // Replay resumes: plain reads catch up.
    on_standby(&standby, &name, "select pg_wal_replay_resume()");
    let started = Instant::now();
    while history(&app, "").await.len() != before + 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the standby never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And the auditors are served by the standby again.
    let head = app.log_length().await;
    assert!(head > position, "the order's events follow the top-up's");
    let on_standby_after = audit_reads(&app, "standby").await;
    assert_eq!(
        app.audit_result("/v1/audit/verify").await["head_position"],
        head
    );
    assert!(audit_reads(&app, "standby").await > on_standby_after);
    app.stop().await;
    drop(standby);
}
