//! `starledger audit …`: verify the log and the read models, balances at a moment, export.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use starledger_ledger::store::CommitMode;
use starledger_projections::audit;

use crate::config::Config;
use starledger_projections::storage;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain, every event's postings, the trial balance, the account
    /// invariants, and each read model against a fresh replay. Exit 1 if anything is wrong.
    ///
    /// The log is checked from the last verified checkpoint on (recorded by the last sound
    /// run), after checking that the log still matches it; the read models are always
    /// compared with a replay of the whole log.
    Verify {
        /// Only the log, not the read models.
        #[arg(long)]
        log_only: bool,
        /// Check the whole log from position 1, whatever checkpoint there is (a new one is
        /// still recorded if the run is sound).
        #[arg(long)]
        full: bool,
    },
    /// Every balance as it stood at a moment, by replaying the log up to it.
    Balances {
        /// RFC 3339 time, e.g. 2026-11-25T12:00:00Z.
        #[arg(long)]
        at: String,
    },
    /// Every event with its hashes, one JSON object per line.
    Export {
        /// Start after this position.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(command: AuditCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let databases = storage::open(&config.storage, CommitMode::default())
        .await
        .context("cannot open the databases")?;
    let events = databases.events;
    match command {
        AuditCommand::Verify { log_only, full } => {
            let read = (!log_only).then_some(databases.read.as_ref());
            let checkpoints = if full {
                audit::Checkpoints::Full
            } else {
                audit::Checkpoints::Resume
            };
            let report = audit::verify_checkpointed(
                &events,
                read,
                audit::ReplaySettings::default(),
                checkpoints,
                |_, _| {},
            )
            .await?;
            let seconds = report.elapsed.as_secs_f64();
            println!(
                "verified {} events in {seconds:.2} s ({:.0} events/s); head {} {}",
                report.ledger.events,
                report.ledger.events as f64 / seconds.max(1e-9),
                report.ledger.head_position,
                report.ledger.head_hash
            );
            println!("mode: {}", report.mode);
            if read.is_some() {
                println!("read models: compared with a replay of the whole log");
            }
            for (currency, total) in &report.ledger.totals {
                println!("trial balance {currency}: {}", total.normalize());
            }
            for finding in &report.ledger.findings {
                println!("FINDING: {finding}");
            }
            for (table, (checkpoint, differences)) in &report.tables {
                let verdict = if differences.is_empty() {
                    "matches the replay".to_owned()
                } else {
                    format!("{} differences", differences.len())
                };
                println!("{:<13} at {checkpoint}: {verdict}", table.name());
                for d in differences {
                    println!(
                        "  {} {}: expected {}, found {}",
                        table.name(),
                        d.key,
                        d.expected.as_deref().unwrap_or("no row"),
                        d.found.as_deref().unwrap_or("no row")
                    );
                }
            }
            match &report.recorded {
                Some(Ok(position)) => println!("verified checkpoint recorded at {position}"),
                Some(Err(error)) => eprintln!("verified checkpoint not recorded: {error}"),
                None => {}
            }
            if report.is_sound() {
                println!("the ledger is sound");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("the ledger is NOT sound");
                Ok(ExitCode::FAILURE)
            }
        }
        AuditCommand::Balances { at } => {
            let at: DateTime<Utc> = DateTime::parse_from_rfc3339(&at)
                .with_context(|| format!("--at {at:?} is not an RFC 3339 time"))?
                .with_timezone(&Utc);
            let balances = audit::balances_at(&events, at).await?;
            println!(
                "{:>14} {:>8} {:>18} {:>18} {:>18} {:>18}",
                "user", "currency", "available", "reserved", "total", "debt"
            );
            for row in &balances {
                println!(
                    "{:>14} {:>8} {:>18} {:>18} {:>18} {:>18}",
                    row.user_id,
                    row.currency,
                    row.available.normalize(),
                    row.reserved.normalize(),
                    row.total().normalize(),
                    row.debt.normalize()
                );
            }
            println!("{} balances at {}", balances.len(), at.to_rfc3339());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export { from, out } => {
            let count = match out {
                Some(path) => {
                    let file = File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    let mut writer = BufWriter::new(file);
                    let count = audit::export(&events, from, &mut writer).await?;
                    writer.flush()?;
                    count
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut writer = BufWriter::new(stdout.lock());
                    let count = audit::export(&events, from, &mut writer).await?;
                    writer.flush()?;
                    count
                }
            };
            eprintln!("exported {count} events");
            Ok(ExitCode::SUCCESS)
        }
    }
}
