//! `starledger projections …`: status, blue/green rebuild with a progress bar, and a
//! foreground projector process.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use starledger_ledger::store::{CommitMode, EventStore};
use starledger_projections::cache::ReadCache;
use starledger_projections::cache_projector;
use starledger_projections::model::Table;
use starledger_projections::rebuild::{rebuild, RebuildSettings};
use starledger_projections::runtime::{Runner, RunnerSettings};
use starledger_projections::store::ReadStore;
use tokio::sync::watch;

use crate::config::Config;
use starledger_projections::storage;

#[derive(Subcommand)]
pub enum ProjectionsCommand {
    /// Each projector's checkpoint and lag behind the log, in events and seconds.
    Status,
    /// Rebuild read models from position 0 into new tables, then swap them in atomically.
    /// Reads keep working throughout.
    Rebuild {
        /// users, balances, transactions, or all.
        name: String,
        /// Events read from the log at a time while replaying.
        #[arg(long, default_value_t = starledger_projections::rebuild::DEFAULT_PAGE_SIZE)]
        batch: usize,
    },
    /// Run the projectors in the foreground until interrupted (Ctrl-C).
    Run,
}

pub async fn run(command: ProjectionsCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let databases = storage::open(&config.storage, CommitMode::default())
        .await
        .context("cannot open the databases")?;
    let (events, read) = (databases.events, databases.read);
    match command {
        ProjectionsCommand::Status => status(events.as_ref(), read.as_ref()).await,
        ProjectionsCommand::Rebuild { name, batch } => {
            let tables: Vec<Table> = match name.as_str() {
                "all" => Table::ALL.to_vec(),
                other => vec![Table::parse(other).with_context(|| {
                    format!(
                        "unknown projection {other:?}: use users, balances, transactions or all"
                    )
                })?],
            };
            let bar = ProgressBar::new(events.head().await?.position.max(1));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} rebuilding [{bar:40}] {pos}/{len} events {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let report = rebuild(
                &events,
                &read,
                &tables,
                RebuildSettings {
                    page_size: batch.max(1),
                    ..RebuildSettings::default()
                },
                |position, head| {
                    bar.set_length(head.max(1));
                    bar.set_position(position);
                },
            )
            .await;
            bar.finish_and_clear();
            let report = report.context("rebuild failed; the live tables are untouched")?;
            let names: Vec<&str> = report.tables.iter().map(|t| t.name()).collect();
            let seconds = report.elapsed.as_secs_f64();
            println!(
                "rebuilt {} from {} events in {seconds:.2} s ({:.0} events/s); live at position {}",
                names.join(", "),
                report.events,
                report.events as f64 / seconds.max(1e-9),
                report.position
            );
            Ok(ExitCode::SUCCESS)
        }
        ProjectionsCommand::Run => {
            let runner = Runner::start(events.clone(), read.clone(), RunnerSettings::default());
            let cache = Arc::new(ReadCache::new(config.cache_settings()).await);
            let (stop, stopped) = watch::channel(false);
            let cache_projector =
                cache_projector::start(events.clone(), read.clone(), cache.clone(), stopped);
            println!(
                "projectors running (cache: {}); Ctrl-C stops them after their current page",
                cache.mode()
            );
            tokio::signal::ctrl_c()
                .await
                .context("cannot wait for Ctrl-C")?;
            let _ = stop.send(true);
            let _ = cache_projector.await;
            runner.shutdown().await;
            status(events.as_ref(), read.as_ref()).await
        }
    }
}

async fn status(events: &dyn EventStore, read: &dyn ReadStore) -> anyhow::Result<ExitCode> {
    let (head, statuses) = starledger_projections::status::status(events, read).await?;
    println!("log head: position {head}");
    println!(
        "{:<14} {:>12} {:>14} {:>10}  updated",
        "projector", "checkpoint", "lag (events)", "lag (s)"
    );
    for s in statuses {
        println!(
            "{:<14} {:>12} {:>14} {:>10.1}  {}",
            s.name,
            s.checkpoint,
            s.lag_events,
            s.lag_seconds,
            s.updated_at
                .map_or("never".to_owned(), |at| at.to_rfc3339())
        );
    }
    Ok(ExitCode::SUCCESS)
}
