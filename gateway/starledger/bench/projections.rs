//! `starledger bench projections`: rebuilding every projection and `audit verify` over a
//! generated log, whole and incrementally (1% more events after a verified checkpoint).
//!
//! Depends on [`super::scratch`] and [`super::load`] (for `/proc` figures).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use sqlx::postgres::PgConnectOptions;
use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::{CommandContext, Ledger};
use starledger_ledger::events::{Actor, Stars};
use starledger_ledger::ids::{IdempotencyKey, PurchaseId, Recipient, Username};
use starledger_ledger::money::Amount;
use starledger_ledger::store::postgres::{self, PostgresStore};
use starledger_ledger::store::{CommitMode, EventStore};

use starledger_projections::audit::{verify_checkpointed, Checkpoints, VerifyMode};

use super::load::status_kb;
use super::scratch::fund;

#[derive(Args)]
pub struct ProjectionsBench {
    /// PostgreSQL server to create the scratch database on (default: DATABASE_URL).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// Roughly how many events to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) events: u64,
    /// Concurrent clients generating them.
    #[arg(long, default_value_t = 512)]
    clients: u64,
    /// Keep the generated database (its name is printed) to run `audit` and `projections`
    /// commands against it afterwards.
    #[arg(long)]
    pub(crate) keep_database: bool,
}

/// One timed pass over the generated log: what it was, how many events, how long.
pub(crate) type ProjectionRow = (&'static str, u64, Duration);

/// Names of the projection scenarios, as `bench all` looks them up.
pub(crate) const REBUILD: &str = "rebuild users + balances + transactions";
pub(crate) const VERIFY_LOG: &str = "audit verify (hash chain + trial balance)";
pub(crate) const VERIFY_WITH_PROJECTIONS: &str = "audit verify with every projection";
pub(crate) const VERIFY_RECORD: &str = "audit verify --full --log-only (+ checkpoint)";
pub(crate) const VERIFY_INCREMENTAL: &str = "audit verify --log-only, 1% new after checkpoint";

/// Each user: 3 events to register and fund, then this many rounds of 4 (two purchases, one
/// completed, one refunded).
const ROUNDS: u64 = 12;

/// Users `first..first + users` fund their accounts and buy, `clients` at a time.
async fn generate(
    events: &Arc<dyn EventStore>,
    first: i64,
    users: u64,
    clients: u64,
) -> anyhow::Result<()> {
    let accounts = fund(events, first, users).await?;
    // Each client works on one user at a time, so the handler keeps about that many accounts
    // in memory: the log is generated, not measured, and a full cache of every user's
    // history would be most of this process's peak RSS, which `bench all` reports.
    let clients = clients.min(users).max(1);
    let ledger = Arc::new(Ledger::with_capacity(
        events.clone(),
        (2 * clients) as usize,
    ));
    let accounts = Arc::new(accounts);
    let mut handles = Vec::new();
    for client in 0..clients {
        let (ledger, accounts) = (ledger.clone(), accounts.clone());
        handles.push(tokio::spawn(async move {
            let price = Amount::parse("0.5")?;
            let stars = Stars::new(100)?;
            let mut index = client;
            while index < accounts.len() as u64 {
                let user = accounts[index as usize];
                for round in 0..ROUNDS {
                    let keys = [format!("g{round}a"), format!("g{round}b")];
                    let ids = [
                        PurchaseId::derive(user, &IdempotencyKey::parse(&keys[0])?),
                        PurchaseId::derive(user, &IdempotencyKey::parse(&keys[1])?),
                    ];
                    let commands = [
                        (
                            format!("{}-buy", keys[0]),
                            AccountCommand::RequestPurchase {
                                purchase_id: ids[0],
                                stars,
                                recipient: Recipient::Buyer(Username::parse("bench_buyer")?),
                                price,
                            },
                        ),
                        (
                            format!("{}-buy", keys[1]),
                            AccountCommand::RequestPurchase {
                                purchase_id: ids[1],
                                stars,
                                recipient: Recipient::Buyer(Username::parse("bench_buyer")?),
                                price,
                            },
                        ),
                        (
                            format!("{}-done", keys[0]),
                            AccountCommand::CompletePurchase {
                                purchase_id: ids[0],
                            },
                        ),
                        (
                            format!("{}-fail", keys[1]),
                            AccountCommand::FailPurchase {
                                purchase_id: ids[1],
                                reason: "recipient not found".into(),
                                force: false,
                            },
                        ),
                    ];
                    for (key, command) in commands {
                        let context =
                            CommandContext::new(IdempotencyKey::parse(&key)?, Actor::System);
                        ledger.execute(user, command, &context).await?;
                    }
                }
                index += clients;
            }
            anyhow::Ok(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    Ok(())
}

/// Generates about `options.events` events (users registering, topping up, buying, orders
/// completing and failing), then times a rebuild of every projection and `audit verify`.
pub(crate) async fn projections_bench(
    options: &ProjectionsBench,
    database: PgConnectOptions,
) -> anyhow::Result<Vec<ProjectionRow>> {
    use starledger_projections::model::Table;
    use starledger_projections::store::ReadStore;

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(32)
        .connect_with(database)
        .await?;
    postgres::migrate(&pool).await?;
    let read: Arc<dyn ReadStore> = Arc::new(
        starledger_projections::store::postgres::PgReadStore::new(pool.clone()),
    );
    read.ensure_schema().await?;
    let events: Arc<dyn EventStore> =
        Arc::new(PostgresStore::open(pool.clone(), CommitMode::default()).await?);

    let users = (options.events / (3 + 4 * ROUNDS)).max(1);
    let generating = Instant::now();
    generate(&events, 1, users, options.clients).await?;
    let total = events.head().await?.position;
    println!(
        "generated {total} events for {users} users in {:.1} s",
        generating.elapsed().as_secs_f64()
    );
    memory("after generating the log");

    let mut rows = Vec::new();
    let started = Instant::now();
    let report = starledger_projections::rebuild::rebuild(
        &events,
        &read,
        &Table::ALL,
        Default::default(),
        |_, _| {},
    )
    .await?;
    rows.push((REBUILD, report.events, started.elapsed()));
    memory("after the rebuild");

    let started = Instant::now();
    let verified = starledger_projections::audit::verify(&events, None).await?;
    anyhow::ensure!(
        verified.is_sound(),
        "the generated log does not verify: {:?}",
        verified.ledger.findings
    );
    rows.push((VERIFY_LOG, verified.ledger.events, started.elapsed()));

    let started = Instant::now();
    let verified = starledger_projections::audit::verify(&events, Some(read.as_ref())).await?;
    anyhow::ensure!(verified.is_sound(), "projections differ from the replay");
    memory("after verifying the log and every projection");
    rows.push((
        VERIFY_WITH_PROJECTIONS,
        verified.ledger.events,
        started.elapsed(),
    ));

    // The log alone, as `audit verify --full --log-only` runs it: a verified checkpoint recorded.
    let started = Instant::now();
    let verified = verify_checkpointed(
        &events,
        None,
        Default::default(),
        Checkpoints::Full,
        |_, _| {},
    )
    .await?;
    anyhow::ensure!(
        verified.is_sound() && matches!(verified.recorded, Some(Ok(_))),
        "no checkpoint recorded: {:?} {:?}",
        verified.recorded,
        verified.ledger.findings
    );
    rows.push((VERIFY_RECORD, verified.ledger.events, started.elapsed()));

    // 1% more events (new users, the same activity), then `audit verify --log-only`: only
    // those are checked.
    let checkpointed = events.head().await?.position;
    generate(
        &events,
        users as i64 + 1,
        (users / 100).max(1),
        options.clients,
    )
    .await?;
    let started = Instant::now();
    let verified = verify_checkpointed(
        &events,
        None,
        Default::default(),
        Checkpoints::Resume,
        |_, _| {},
    )
    .await?;
    anyhow::ensure!(verified.is_sound(), "the grown log does not verify");
    anyhow::ensure!(
        matches!(verified.mode, VerifyMode::Incremental { from, .. } if from == checkpointed),
        "not incremental: {}",
        verified.mode
    );
    rows.push((
        VERIFY_INCREMENTAL,
        verified.ledger.events,
        started.elapsed(),
    ));

    pool.close().await;
    Ok(rows)
}

/// This process's resident set now and at its peak so far, on stderr: which phase of the bench
/// needs the memory.
fn memory(when: &str) {
    eprintln!(
        "{when}: VmRSS {:.0} MB, VmHWM {:.0} MB",
        status_kb("VmRSS:") as f64 / 1024.0,
        status_kb("VmHWM:") as f64 / 1024.0
    );
}

pub(crate) fn print_projections_table(rows: &[ProjectionRow]) {
    println!(
        "\n{:<48} {:>10} {:>9} {:>12}",
        "scenario", "events", "seconds", "events/s"
    );
    for (name, count, elapsed) in rows {
        println!(
            "{name:<48} {count:>10} {:>9.2} {:>12.0}",
            elapsed.as_secs_f64(),
            *count as f64 / elapsed.as_secs_f64()
        );
    }
}
