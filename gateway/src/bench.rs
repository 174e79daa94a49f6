//! `starledger bench ledger|projections|http|all`: throughput on PostgreSQL.
//!
//! `ledger` (here): how many purchase commands per second the ledger sustains.
//! `projections` (here): rebuild and `audit verify` over a generated log.
//! `http` ([`crate::bench_http`]): the running service, over HTTP.
//! `all` ([`crate::bench_all`]): the three in turn, judged against DESIGN.md's targets.
//!
//! Each run creates a scratch database on the given PostgreSQL server, funds the accounts,
//! then lets many concurrent clients issue `RequestPurchase` commands (load, decide, append
//! with idempotency) in three set-ups: group commit over many accounts, the same with one
//! transaction per command (the naive path, for the ratio), and group commit with every
//! client on one hot account. The scratch database is dropped afterwards.

use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Executor};
use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::{CommandContext, Ledger};
use starledger_ledger::events::{Actor, Invoice, PaidStatus, Stars};
use starledger_ledger::ids::{IdempotencyKey, PurchaseId, RechargeId, Recipient, UserId, Username};
use starledger_ledger::money::{Amount, Currency};
use starledger_ledger::store::postgres::{self, PostgresStore};
use starledger_ledger::store::sqlite::SqliteStore;
use starledger_ledger::store::{CommitMode, EventStore};

use crate::config::Config;

#[derive(Subcommand)]
pub enum Target {
    /// Purchase commands per second: batched vs. one transaction per command, and one hot account.
    Ledger(LedgerBench),
    /// Rebuilding every projection and `audit verify` over a generated log.
    Projections(ProjectionsBench),
    /// The running service over HTTP: signed webhooks and cached balance reads.
    Http(crate::bench_http::HttpBench),
    /// Every DESIGN.md performance target (the three above in turn), in one table.
    All(crate::bench_all::AllBench),
}

#[derive(Args)]
pub struct ProjectionsBench {
    /// PostgreSQL server to create the scratch database on (default: DATABASE_URL).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Roughly how many events to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) events: u64,
    /// Concurrent clients generating them.
    #[arg(long, default_value_t = 512)]
    clients: u64,
    /// Keep the generated database (its name is printed) to run `audit` and `projections`
    /// commands against it afterwards.
    #[arg(long)]
    keep_database: bool,
}

#[derive(Args)]
pub struct LedgerBench {
    /// PostgreSQL server to create the scratch database on (default: DATABASE_URL).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Commands per batched run.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) commands: u64,
    /// Commands for the one-transaction-per-command run (it is much slower).
    #[arg(long, default_value_t = 5_000)]
    unbatched_commands: u64,
    /// Accounts the commands are spread over.
    #[arg(long, default_value_t = 1_000)]
    accounts: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 512)]
    clients: u64,
    /// Also run the batched scenario on the embedded SQLite file.
    #[arg(long)]
    sqlite: bool,
}

pub async fn run(target: Target, config: &Config) -> anyhow::Result<ExitCode> {
    match target {
        Target::Ledger(options) => {
            let url = server_url(options.database_url.clone(), config)?;
            let rows = with_scratch_database(&url, false, |db| run_scenarios(&options, db)).await?;
            print_ledger_table(&rows);
        }
        Target::Projections(options) => {
            let url = server_url(options.database_url.clone(), config)?;
            let rows = with_scratch_database(&url, options.keep_database, |db| {
                projections_bench(&options, db)
            })
            .await?;
            print_projections_table(&rows);
        }
        Target::Http(options) => return crate::bench_http::run(options, config).await,
        Target::All(options) => return crate::bench_all::run(options, config).await,
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn server_url(flag: Option<String>, config: &Config) -> anyhow::Result<String> {
    flag.or_else(|| match &config.storage {
        crate::config::Storage::Postgres { url, .. } => Some(url.clone()),
        crate::config::Storage::Sqlite { .. } => None,
    })
    .context("give a PostgreSQL server with --database-url or DATABASE_URL")
}

/// Runs `body` on a database created for it on the server at `url`, dropped afterwards.
pub(crate) async fn with_scratch_database<T, F, Fut>(
    url: &str,
    keep: bool,
    body: F,
) -> anyhow::Result<T>
where
    F: FnOnce(PgConnectOptions) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let server =
        PgConnectOptions::from_str(url).context("--database-url is not a PostgreSQL URL")?;
    let scratch = format!("starledger_bench_{}", std::process::id());
    let mut admin = server
        .connect()
        .await
        .context("cannot connect to the PostgreSQL server")?;
    admin
        .execute(format!("CREATE DATABASE {scratch}").as_str())
        .await?;
    let outcome = body(server.clone().database(&scratch)).await;
    if keep {
        println!("kept database {scratch}");
        return outcome;
    }
    admin
        .execute(format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)").as_str())
        .await?;
    outcome
}

fn print_ledger_table(rows: &[Row]) {
    println!(
        "\n{:<44} {:>9} {:>9} {:>12} {:>9} {:>9}",
        "scenario", "commands", "seconds", "commands/s", "p50 ms", "p99 ms"
    );
    for row in rows {
        println!(
            "{:<44} {:>9} {:>9.2} {:>12.0} {:>9.2} {:>9.2}",
            row.name,
            row.commands,
            row.elapsed.as_secs_f64(),
            row.commands as f64 / row.elapsed.as_secs_f64(),
            row.p50.as_secs_f64() * 1e3,
            row.p99.as_secs_f64() * 1e3
        );
    }
    let rate = |name: &str| rows.iter().find(|r| r.name == name).map(Row::rate);
    if let (Some(batched), Some(naive)) = (rate(MANY_ACCOUNTS), rate(NAIVE)) {
        println!(
            "\ngroup commit vs. one transaction per command: {:.1}×",
            batched / naive
        );
    }
}

/// One ledger scenario's result.
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) commands: u64,
    pub(crate) elapsed: Duration,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

impl Row {
    pub(crate) fn rate(&self) -> f64 {
        self.commands as f64 / self.elapsed.as_secs_f64()
    }
}

/// Names of the ledger scenarios, as `bench all` looks them up.
pub(crate) const MANY_ACCOUNTS: &str = "postgres, group commit, many accounts";
pub(crate) const NAIVE: &str = "postgres, one transaction per command";
pub(crate) const HOT_ACCOUNT: &str = "postgres, group commit, one hot account";

pub(crate) async fn run_scenarios(
    options: &LedgerBench,
    database: PgConnectOptions,
) -> anyhow::Result<Vec<Row>> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(64)
        .connect_with(database)
        .await?;
    postgres::migrate(&pool).await?;
    let mut rows = Vec::new();

    let grouped: Arc<dyn EventStore> =
        Arc::new(PostgresStore::open(pool.clone(), CommitMode::default()).await?);
    let accounts = fund(&grouped, 1, options.accounts).await?;
    rows.push(
        drive(
            MANY_ACCOUNTS,
            Arc::new(Ledger::new(grouped.clone())),
            &accounts,
            options.commands,
            options.clients,
            "g",
        )
        .await?,
    );

    let naive: Arc<dyn EventStore> =
        Arc::new(PostgresStore::open(pool.clone(), CommitMode::PerAppend).await?);
    rows.push(
        drive(
            NAIVE,
            Arc::new(Ledger::new(naive)),
            &accounts,
            options.unbatched_commands,
            options.clients.min(64),
            "n",
        )
        .await?,
    );

    let hot = fund(&grouped, 1_000_000, 1).await?;
    rows.push(
        drive(
            HOT_ACCOUNT,
            Arc::new(Ledger::new(grouped.clone())),
            &hot,
            options.commands / 2,
            options.clients,
            "h",
        )
        .await?,
    );

    if options.sqlite {
        let dir = tempfile::tempdir()?;
        let sqlite: Arc<dyn EventStore> =
            Arc::new(SqliteStore::open(&dir.path().join("bench.db"), CommitMode::default()).await?);
        let accounts = fund(&sqlite, 1, options.accounts).await?;
        rows.push(
            drive(
                "sqlite, group commit, many accounts",
                Arc::new(Ledger::new(sqlite)),
                &accounts,
                options.commands,
                options.clients,
                "s",
            )
            .await?,
        );
    }
    pool.close().await;
    Ok(rows)
}

/// Registers `count` users from `first` on and credits each one with plenty.
async fn fund(store: &Arc<dyn EventStore>, first: i64, count: u64) -> anyhow::Result<Vec<UserId>> {
    let ledger = Arc::new(Ledger::new(store.clone()));
    let mut handles = Vec::new();
    for n in 0..count as i64 {
        let ledger = ledger.clone();
        handles.push(tokio::spawn(async move {
            let user = UserId::new(first + n)?;
            let context = |key: &str| -> anyhow::Result<CommandContext> {
                Ok(CommandContext::new(
                    IdempotencyKey::parse(key)?,
                    Actor::System,
                ))
            };
            let recharge_id = RechargeId::derive(user, &IdempotencyKey::parse("bench-fund")?);
            let register = AccountCommand::Register {
                username: None,
                language: None,
                currency: Currency::ton(),
            };
            let request = AccountCommand::RequestRecharge {
                recharge_id,
                amount: Amount::parse("100000000")?,
                currency: Currency::ton(),
                invoice: Invoice {
                    uuid: format!("bench-{recharge_id}"),
                    url: "https://pay.example/bench".into(),
                    expires_at: Utc::now(),
                },
            };
            let settle = AccountCommand::SettleRecharge {
                recharge_id,
                status: PaidStatus::Paid,
                paid: Amount::parse("100000000")?,
                txid: None,
            };
            ledger
                .execute(user, register, &context("bench-register")?)
                .await?;
            ledger
                .execute(user, request, &context("bench-request")?)
                .await?;
            ledger
                .execute(user, settle, &context("bench-settle")?)
                .await?;
            anyhow::Ok(user)
        }));
    }
    let mut users = Vec::with_capacity(handles.len());
    for handle in handles {
        users.push(handle.await??);
    }
    Ok(users)
}

/// `clients` tasks issue `commands` purchases in total, spread round-robin over `accounts`.
async fn drive(
    name: &str,
    ledger: Arc<Ledger>,
    accounts: &[UserId],
    commands: u64,
    clients: u64,
    tag: &'static str,
) -> anyhow::Result<Row> {
    let accounts: Arc<Vec<UserId>> = Arc::new(accounts.to_vec());
    let issued = Arc::new(AtomicU64::new(0));
    let price = Amount::parse("0.5")?;
    let stars = Stars::new(100)?;
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (ledger, accounts, issued) = (ledger.clone(), accounts.clone(), issued.clone());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= commands {
                    return anyhow::Ok(latencies);
                }
                let user = accounts[(n % accounts.len() as u64) as usize];
                let key = IdempotencyKey::parse(&format!("bench-{tag}-{n}"))?;
                let command = AccountCommand::RequestPurchase {
                    purchase_id: PurchaseId::derive(user, &key),
                    stars,
                    recipient: Recipient::Buyer(Username::parse("bench_buyer")?),
                    price,
                };
                let began = Instant::now();
                ledger
                    .execute(user, command, &CommandContext::new(key, Actor::System))
                    .await?;
                latencies.push(began.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(commands as usize);
    for handle in handles {
        latencies.extend(handle.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let row = Row {
        name: name.to_owned(),
        commands,
        elapsed,
        p50: percentile(0.50),
        p99: percentile(0.99),
    };
    eprintln!(
        "{name}: {:.0} commands/s",
        commands as f64 / elapsed.as_secs_f64()
    );
    Ok(row)
}

/// One timed pass over the generated log: what it was, how many events, how long.
pub(crate) type ProjectionRow = (&'static str, u64, Duration);

/// Names of the projection scenarios, as `bench all` looks them up.
pub(crate) const REBUILD: &str = "rebuild users + balances + transactions";
pub(crate) const VERIFY_LOG: &str = "audit verify (hash chain + trial balance)";

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
    let read = starledger_projections::store::postgres::PgReadStore::new(pool.clone());
    read.ensure_schema().await?;
    let events: Arc<dyn EventStore> =
        Arc::new(PostgresStore::open(pool.clone(), CommitMode::default()).await?);

    // Each user: 3 events to register and fund, then rounds of 4 (two purchases, one
    // completed, one refunded).
    let rounds = 12u64;
    let users = (options.events / (3 + 4 * rounds)).max(1);
    let generating = Instant::now();
    let accounts = fund(&events, 1, users).await?;
    let ledger = Arc::new(Ledger::new(events.clone()));
    let accounts = Arc::new(accounts);
    let mut handles = Vec::new();
    for client in 0..options.clients.min(users) {
        let (ledger, accounts) = (ledger.clone(), accounts.clone());
        let clients = options.clients.min(users);
        handles.push(tokio::spawn(async move {
            let price = Amount::parse("0.5")?;
            let stars = Stars::new(100)?;
            let mut index = client;
            while index < accounts.len() as u64 {
                let user = accounts[index as usize];
                for round in 0..rounds {
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
    let total = events.head().await?.position;
    println!(
        "generated {total} events for {users} users in {:.1} s",
        generating.elapsed().as_secs_f64()
    );

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

    let started = Instant::now();
    let verified = starledger_projections::audit::verify(&events, None).await?;
    anyhow::ensure!(
        verified.is_sound(),
        "the generated log does not verify: {:?}",
        verified.ledger.findings
    );
    rows.push((VERIFY_LOG, verified.ledger.events, started.elapsed()));

    let started = Instant::now();
    let verified = starledger_projections::audit::verify(&events, Some(&read)).await?;
    anyhow::ensure!(verified.is_sound(), "projections differ from the replay");
    rows.push((
        "audit verify with every projection",
        verified.ledger.events,
        started.elapsed(),
    ));

    pool.close().await;
    Ok(rows)
}

fn print_projections_table(rows: &[ProjectionRow]) {
    println!(
        "\n{:<44} {:>10} {:>9} {:>12}",
        "scenario", "events", "seconds", "events/s"
    );
    for (name, count, elapsed) in rows {
        println!(
            "{name:<44} {count:>10} {:>9.2} {:>12.0}",
            elapsed.as_secs_f64(),
            *count as f64 / elapsed.as_secs_f64()
        );
    }
}
