//! `starledger recharges …`: what an operator does, from a shell, about recharges the ledger
//! would not credit by itself (needs review, on hold): list them, credit what arrived with a
//! reason, or reject them. The same ledger command the admin API runs
//! (`settlement::resolve`), recorded as `admin:NAME`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use starledger_ledger::account::ReviewDecision;
use starledger_ledger::commands::Ledger;
use starledger_ledger::events::AccountEvent;
use starledger_ledger::ids::{RechargeId, UserId};
use starledger_ledger::money::Amount;
use starledger_ledger::store::CommitMode;
use starledger_projections::rows::TransactionKind;
use starledger_projections::store::{ReadStore, StatusFilter};
use starledger_shop::settlement;
use uuid::Uuid;

use crate::config::Config;
use starledger_projections::storage;

#[derive(Subcommand)]
pub enum RechargesCommand {
    /// Recharges that need review or are on hold, oldest first, one JSON object per line
    /// (as the projections last saw them: run beside `serve`, or after `projections run`).
    Review {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Credit a recharge that needs review or is on hold with what arrived, in the ledger's
    /// coin.
    Credit {
        /// The recharge id (a UUID).
        id: Uuid,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        reason: String,
        /// Who decides: recorded as admin:NAME.
        #[arg(long)]
        admin: String,
    },
    /// Close a recharge that needs review or is on hold without crediting it.
    Reject {
        id: Uuid,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        admin: String,
    },
}

pub async fn run(command: RechargesCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let databases = storage::open(&config.storage, CommitMode::default())
        .await
        .context("cannot open the databases")?;
    let (events, read) = (databases.events, databases.read);
    let (id, decision, reason, admin) = match command {
        RechargesCommand::Review { limit } => {
            let rows = read
                .transactions_in_status(
                    &StatusFilter::RechargesAwaitingDecision,
                    Utc::now(),
                    limit.clamp(1, 500),
                )
                .await?;
            for row in rows {
                println!("{}", serde_json::to_string(&row)?);
            }
            return Ok(ExitCode::SUCCESS);
        }
        RechargesCommand::Credit {
            id,
            amount,
            reason,
            admin,
        } => {
            let amount = Amount::parse(&amount).context("--amount")?;
            (id, ReviewDecision::Credit(amount), reason, admin)
        }
        RechargesCommand::Reject { id, reason, admin } => {
            (id, ReviewDecision::Reject, reason, admin)
        }
    };
    let user = owner(read.as_ref(), id).await?;
    let ledger = Arc::new(Ledger::new(events));
    let executed = settlement::resolve(
        &ledger,
        user,
        RechargeId::from_uuid(id),
        decision,
        &admin,
        &reason,
    )
    .await
    .context("the ledger refused the decision")?;
    let status = match executed.events.first() {
        Some(AccountEvent::RechargeSettled(e)) => format!("credited {} {}", e.credited, e.currency),
        _ => "rejected".to_owned(),
    };
    let again = if executed.replayed {
        " (already decided so)"
    } else {
        ""
    };
    println!(
        "recharge {id} {status} by admin:{admin} at position {}{again}",
        executed.position
    );
    Ok(ExitCode::SUCCESS)
}

/// The user a recharge belongs to, from the read model.
async fn owner(read: &dyn ReadStore, id: Uuid) -> anyhow::Result<UserId> {
    let row = read
        .transaction(id)
        .await?
        .filter(|row| row.kind == TransactionKind::Recharge)
        .with_context(|| format!("no recharge {id} in the read models (are they projected?)"))?;
    Ok(UserId::new(row.user_id)?)
}
