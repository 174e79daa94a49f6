//! `starledger-bench ledger|projections|http|all` (also run as `starledger bench …`):
//! throughput on PostgreSQL and over HTTP. A binary of its own, so none of this is in the
//! production binary; it starts the service through the same `starledger_gateway` library.
//!
//! This file is the command-line surface only: the [`Target`] subcommands and [`run`], which
//! hands each to its bench. Nothing below imports it.
//!
//! - `ledger` ([`ledger`]): how many purchase commands per second the ledger sustains.
//! - `projections` ([`projections`]): rebuild and `audit verify` over a generated log.
//! - `http` ([`http`], [`remote`] with `--url`): the running service, over HTTP.
//! - `all` ([`all`]): the three in turn, judged against DESIGN.md's targets; the server and
//!   the CLI commands it measures run as processes of their own ([`child`]).
//!
//! The files depend on each other in one direction only. In this order, each file imports
//! only from files after it (`use super::…`):
//!
//! ```text
//! mod.rs          → all, http, ledger, projections, load (HttpBench), scratch
//! all.rs          → http (server_vars), remote, ledger, projections, child, load, scratch
//! http.rs         → remote (the `--url` mode), load, scratch
//! remote.rs       → load
//! ledger.rs       → scratch
//! projections.rs  → load (status_kb), scratch
//! child.rs        → load (status_file_kb)
//! load.rs         → (nothing in bench)
//! scratch.rs      → (nothing in bench)
//! ```
//!
//! Whether `bench http` measures a server started here or one at `--url` is chosen in
//! `http::measure`, which `remote` does not import; the options and the report both need
//! live in `load`, below them.

mod all;
mod child;
mod http;
mod ledger;
mod load;
mod projections;
mod reader;
mod remote;
mod scratch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ledger::{print_ledger_table, run_scenarios, LedgerBench};
use projections::{print_projections_table, projections_bench, ProjectionsBench};
use scratch::{server_url, with_scratch_database};
use starledger_gateway::config::Config;
use starledger_gateway::logs;

/// mimalloc, as in `starledger`: the in-process benches measure the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "starledger bench",
    bin_name = "starledger bench",
    version,
    about = "Benchmarks of starledger: the ledger, the projections and the HTTP gateway"
)]
struct Cli {
    #[command(subcommand)]
    target: Target,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_process_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    logs::init(&config, false);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.target, &config)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Subcommand)]
enum Target {
    /// Purchase commands per second: batched vs. one transaction per command, and one hot account.
    Ledger(LedgerBench),
    /// Rebuilding every projection and `audit verify` over a generated log.
    Projections(ProjectionsBench),
    /// The running service over HTTP: signed webhooks and cached balance reads.
    Http(load::HttpBench),
    /// Every DESIGN.md performance target (the three above in turn), in one table.
    All(all::AllBench),
}

async fn run(target: Target, config: &Config) -> anyhow::Result<ExitCode> {
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
        Target::Http(options) => return http::run(options, config).await,
        Target::All(options) => return all::run(options, config).await,
    }
    Ok(ExitCode::SUCCESS)
}
