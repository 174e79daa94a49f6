//! `starledger bench ledger`: how many purchase commands per second the ledger sustains.
//!
//! Each run creates a scratch database on the given PostgreSQL server, funds the accounts,
//! then lets many concurrent clients issue `RequestPurchase` commands (load, decide, append
//! with idempotency) in three set-ups: group commit over many accounts, the same with one
//! transaction per command (the naive path, for the ratio), and group commit with every
//! client on one hot account. The scratch database is dropped afterwards.
//!
//! Depends on [`super::scratch`] only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use sqlx::postgres::PgConnectOptions;
use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::{CommandContext, Ledger};
use starledger_ledger::events::{Actor, Stars};
use starledger_ledger::ids::{IdempotencyKey, PurchaseId, Recipient, UserId, Username};
use starledger_ledger::money::Amount;
use starledger_ledger::store::postgres::{self, PostgresStore};
use starledger_ledger::store::sqlite::SqliteStore;
use starledger_ledger::store::{CommitMode, EventStore};

use super::scratch::fund;

#[derive(Args)]
pub struct LedgerBench {
    /// PostgreSQL server to create the scratch database on (default: DATABASE_URL).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// Commands per batched run.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) commands: u64,
    /// Commands for the one-transaction-per-command run (it is much slower).
    #[arg(long, default_value_t = 5_000)]
    unbatched_commands: u64,
    /// Accounts the commands are spread over.
    #[arg(long, default_value_t = 1_000)]
    accounts: u64,
    /// Concurrent clients; a comma list (`16,512`) runs the many-accounts scenario once for
    /// each. The one-transaction-per-command run uses the smallest (at most 64), the hot
    /// account the largest.
    #[arg(long, value_delimiter = ',', default_value = "512", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) clients: Vec<u64>,
    /// Also run the batched scenario on the embedded SQLite file.
    #[arg(long)]
    sqlite: bool,
}

pub(crate) fn print_ledger_table(rows: &[Row]) {
    println!(
        "\n{:<52} {:>9} {:>9} {:>12} {:>9} {:>9}",
        "scenario", "commands", "seconds", "commands/s", "p50 ms", "p99 ms"
    );
    for row in rows {
        println!(
            "{:<52} {:>9} {:>9.2} {:>12.0} {:>9.2} {:>9.2}",
            row.name,
            row.commands,
            row.elapsed.as_secs_f64(),
            row.commands as f64 / row.elapsed.as_secs_f64(),
            row.p50.as_secs_f64() * 1e3,
            row.p99.as_secs_f64() * 1e3
        );
    }
    let naive = rows.iter().find(|r| r.name == NAIVE).map(Row::rate);
    for row in rows.iter().filter(|r| r.name.starts_with(MANY_ACCOUNTS)) {
        if let Some(naive) = naive {
            println!(
                "\ngroup commit vs. one transaction per command ({}): {:.1}×",
                row.name
                    .trim_start_matches(MANY_ACCOUNTS)
                    .trim_start_matches(", "),
                row.rate() / naive
            );
        }
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

/// Names of the ledger scenarios, as `bench all` looks them up (the many-accounts one through
/// [`many_accounts`]).
const MANY_ACCOUNTS: &str = "postgres, group commit, many accounts";
pub(crate) const NAIVE: &str = "postgres, one transaction per command";
pub(crate) const HOT_ACCOUNT: &str = "postgres, group commit, one hot account";

/// The name of the many-accounts row with `clients` clients.
pub(crate) fn many_accounts(clients: u64) -> String {
    format!("{MANY_ACCOUNTS}, {clients} clients")
}

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
    for (run, &clients) in options.clients.iter().enumerate() {
        // Each run its own keys: a repeated key would be answered from the idempotency record.
        let tag = format!("g{run}");
        rows.push(
            drive(
                &many_accounts(clients),
                Arc::new(Ledger::new(grouped.clone())),
                &accounts,
                options.commands,
                clients,
                &tag,
            )
            .await?,
        );
    }
    let fewest = options.clients.iter().copied().min().unwrap_or(1);
    let most = options.clients.iter().copied().max().unwrap_or(1);

    let naive: Arc<dyn EventStore> =
        Arc::new(PostgresStore::open(pool.clone(), CommitMode::PerAppend).await?);
    rows.push(
        drive(
            NAIVE,
            Arc::new(Ledger::new(naive)),
            &accounts,
            options.unbatched_commands,
            fewest.min(64),
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
            most,
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
                most,
                "s",
            )
            .await?,
        );
    }
    pool.close().await;
    Ok(rows)
}

/// `clients` tasks issue `commands` purchases in total, spread round-robin over `accounts`.
async fn drive(
    name: &str,
    ledger: Arc<Ledger>,
    accounts: &[UserId],
    commands: u64,
    clients: u64,
    tag: &str,
) -> anyhow::Result<Row> {
    let accounts: Arc<Vec<UserId>> = Arc::new(accounts.to_vec());
    let issued = Arc::new(AtomicU64::new(0));
    let price = Amount::parse("0.5")?;
    let stars = Stars::new(100)?;
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (ledger, accounts, issued) = (ledger.clone(), accounts.clone(), issued.clone());
        let tag = tag.to_owned();
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
