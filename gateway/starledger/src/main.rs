//! `starledger`: the command-line entry point.
//!
//! - `starledger serve`: the HTTP gateway with the projectors and the reconciler.
//! - `starledger demo`: one account's whole life on the embedded ledger, verified at the end.
//! - `starledger migrate`: create or upgrade the database schema.
//! - `starledger projections status|rebuild|run`: the read models.
//! - `starledger audit verify|balances|export`: what auditors run.
//! - `starledger recharges review|credit|reject`: recharges that wait for an operator.
//! - `starledger bench ledger|projections|http|all`: throughput on PostgreSQL and over HTTP;
//!   `all` judges every DESIGN.md target in one table. The benchmarks are a binary of their
//!   own, `starledger-bench` (built beside this one); `bench` runs it with the same arguments.
//!
//! Errors become `anyhow` only here, at the edge, and are printed with their causes.

mod audit_cmd;
mod bench;
mod demo;
mod projections_cmd;
mod recharges_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use starledger_gateway::{config, logs};
use starledger_projections::storage;

/// mimalloc instead of the system allocator: under many concurrent commands glibc's malloc
/// spends a large share of the time in arena lock contention (seen in `perf` on the bench).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "starledger",
    version,
    about = "Event-sourced ledger of a Telegram Stars shop"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP gateway (webhooks, API, health, metrics) with the projectors, the cache
    /// projector and the reconciler, until SIGTERM or Ctrl-C.
    Serve,
    /// Walk one user through register, recharge, purchase, refund and adjustment on the
    /// embedded ledger; print balances and the event log; verify the hash chain and the
    /// trial balance.
    Demo {
        /// Keep the ledger in this SQLite file (default: a fresh temporary file).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Create or upgrade the schema of the configured database (DATABASE_URL, or the
    /// embedded SQLite file).
    Migrate,
    /// Read models: status, rebuild, run the projectors.
    Projections {
        #[command(subcommand)]
        command: projections_cmd::ProjectionsCommand,
    },
    /// Auditors: verify, balances at a moment, export.
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Recharges that need review or are on hold: list, credit, reject.
    Recharges {
        #[command(subcommand)]
        command: recharges_cmd::RechargesCommand,
    },
    /// Print the API document (OpenAPI 3.1, JSON), generated from the HTTP handlers;
    /// `schemas/openapi.json` holds it. Reads no configuration.
    Openapi,
    /// Benchmarks: runs `starledger-bench` (built beside this binary) with these arguments;
    /// `starledger bench --help` lists them.
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        return openapi();
    }
    let config = match config::Config::from_process_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    logs::init(&config, matches!(cli.command, Command::Demo { .. }));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `starledger openapi`: the document on standard output.
fn openapi() -> ExitCode {
    match starledger_http::openapi::document_json() {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: the API document cannot be put together: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: config::Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => serve(config).await,
        Command::Demo { db } => demo::run(&config, db).await,
        Command::Migrate => {
            storage::migrate(&config.storage)
                .await
                .context("migration failed")?;
            println!("schema is up to date ({})", describe(&config.storage));
            Ok(ExitCode::SUCCESS)
        }
        Command::Projections { command } => projections_cmd::run(command, &config).await,
        Command::Audit { command } => audit_cmd::run(command, &config).await,
        Command::Recharges { command } => recharges_cmd::run(command, &config).await,
        Command::Bench { args } => Ok(bench::run(&args)),
        Command::Openapi => Ok(openapi()),
    }
}

async fn serve(config: config::Config) -> anyhow::Result<ExitCode> {
    let server = match config::server::ServerConfig::from_process_env() {
        Ok(server) => server,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let app = match starledger_gateway::serve::Application::build(config, server).await {
        Ok(app) => app,
        Err(starledger_gateway::serve::StartError::Config(error)) => {
            eprintln!("configuration error: {error}");
            return Ok(ExitCode::from(2));
        }
        Err(error) => return Err(anyhow::Error::new(error).context("cannot start")),
    };
    app.run_until_stopped().await.context("server failed")?;
    Ok(ExitCode::SUCCESS)
}

fn describe(storage: &config::Storage) -> String {
    match storage {
        config::Storage::Sqlite { path } => format!("SQLite file {}", path.display()),
        config::Storage::Postgres { .. } => "PostgreSQL".into(),
    }
}
