//! Set-up shared by the benches that run on PostgreSQL: which server to use, a scratch
//! database on it for the length of one run, and funded accounts to spend from.
//!
//! Depends on nothing else in `bench` (only the crate's `config` and the ledger crate).

use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Executor};
use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::{CommandContext, Ledger};
use starledger_ledger::events::{Actor, Invoice, PaidStatus};
use starledger_ledger::ids::{IdempotencyKey, RechargeId, UserId};
use starledger_ledger::money::{Amount, Currency};
use starledger_ledger::store::EventStore;

use starledger_gateway::config::Config;

pub(crate) fn server_url(flag: Option<String>, config: &Config) -> anyhow::Result<String> {
    flag.or_else(|| match &config.storage {
        starledger_projections::storage::Storage::Postgres { url, .. } => Some(url.clone()),
        starledger_projections::storage::Storage::Sqlite { .. } => None,
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

/// The URL of `database` (a scratch database) on the server at `server_url`: what a
/// `starledger` process is given as `DATABASE_URL` to work on it.
pub(crate) fn database_url(
    server_url: &str,
    database: &PgConnectOptions,
) -> anyhow::Result<String> {
    let name = database
        .get_database()
        .context("the scratch database has no name")?;
    let mut url = reqwest::Url::parse(server_url).context("--database-url is not a URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.into())
}

/// Registers `count` users from `first` on and credits each one with plenty.
pub(crate) async fn fund(
    store: &Arc<dyn EventStore>,
    first: i64,
    count: u64,
) -> anyhow::Result<Vec<UserId>> {
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
