//! The reconciler: recharges still pending after their invoice expired are asked about with
//! `payment/info`, and settled or failed from the answer.
//!
//! Webhooks can be lost (our endpoint down for longer than Heleket retries, a proxy
//! misconfigured). The reconciler uses the same idempotency key a webhook with that status
//! would (`heleket:{uuid}:{status}`), so whichever arrives second records nothing. An invoice
//! the provider does not know is failed, not credited; if it is paid later after all, the
//! late `paid` is still credited (the ledger allows a settle after a local failure).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use starledger_ledger::account::{AccountCommand, Rejection};
use starledger_ledger::commands::{CommandContext, CommandError, Ledger};
use starledger_ledger::events::{Actor, PaidStatus};
use starledger_ledger::ids::{IdempotencyKey, RechargeId, UserId};
use starledger_projections::rows::TransactionRow;
use starledger_projections::store::{ReadStore, StatusFilter};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::heleket::{OrderId, PaymentProvider, PaymentStatus, ProviderError};

/// How long after expiry an invoice is left to its webhooks before being asked about.
pub const GRACE: Duration = Duration::from_secs(120);

/// Pending recharges examined per round.
const BATCH: u32 = 200;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub examined: usize,
    pub settled: usize,
    pub failed: usize,
    pub still_pending: usize,
}

pub struct Reconciler {
    pub ledger: Arc<Ledger>,
    pub read: Arc<dyn ReadStore>,
    pub provider: Arc<dyn PaymentProvider>,
}

impl Reconciler {
    /// Runs every `interval` until `stop` turns true.
    pub fn start(self, interval: Duration, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            while !*stop.borrow() {
                match self.round(Utc::now()).await {
                    Ok(round) if round.examined > 0 => {
                        tracing::info!(?round, "reconciled pending recharges")
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "reconciliation round stopped early"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.changed() => {}
                }
            }
        })
    }

    /// One pass over the pending recharges whose invoices expired before `now - GRACE`.
    pub async fn round(&self, now: DateTime<Utc>) -> Result<Round, ProviderError> {
        let mut round = Round::default();
        let cutoff = now - chrono::Duration::from_std(GRACE).unwrap_or_default();
        let pending = match self
            .read
            .transactions_in_status(&StatusFilter::PendingRecharges, cutoff, BATCH)
            .await
        {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "reconciler cannot read pending recharges");
                return Ok(round);
            }
        };
        for row in pending {
            let expired = expires_at(&row).is_none_or(|at| at < cutoff);
            if !expired {
                continue;
            }
            round.examined += 1;
            match self.reconcile(&row).await? {
                Outcome::Settled => round.settled += 1,
                Outcome::Failed => round.failed += 1,
                Outcome::Pending => round.still_pending += 1,
            }
        }
        Ok(round)
    }

    /// Asks about one recharge and records what the provider says. Provider outages end the
    /// round (`Err`); a refusal by the ledger is logged and the next recharge is tried.
    async fn reconcile(&self, row: &TransactionRow) -> Result<Outcome, ProviderError> {
        let Ok(user) = UserId::new(row.user_id) else {
            return Ok(Outcome::Pending);
        };
        let order = OrderId::new(user, RechargeId::from_uuid(row.id));
        let recharge_id = order.recharge;
        let invoice_uuid = row.external_id.clone().unwrap_or_default();
        let (key, command, outcome) = match self.provider.payment_info(&order).await {
            Ok(info) => match &info.status {
                PaymentStatus::Paid | PaymentStatus::PaidOver => {
                    let Ok(paid) = info.credited() else {
                        tracing::warn!(%order, "paid invoice without a usable amount; left pending");
                        return Ok(Outcome::Pending);
                    };
                    let status = if info.status == PaymentStatus::PaidOver {
                        PaidStatus::PaidOver
                    } else {
                        PaidStatus::Paid
                    };
                    (
                        format!("heleket:{}:{}", info.uuid, info.status.as_str()),
                        AccountCommand::SettleRecharge {
                            recharge_id,
                            status,
                            paid,
                            txid: info.txid.clone(),
                        },
                        Outcome::Settled,
                    )
                }
                PaymentStatus::Failed(status) => (
                    format!("heleket:{}:{status}", info.uuid),
                    AccountCommand::FailRecharge {
                        recharge_id,
                        reason: format!("heleket status {status}"),
                    },
                    Outcome::Failed,
                ),
                PaymentStatus::Pending(_) | PaymentStatus::Unknown(_) => {
                    return Ok(Outcome::Pending)
                }
            },
            Err(ProviderError::NotFound(_)) => (
                format!("reconcile:{}:not_found", recharge_id),
                AccountCommand::FailRecharge {
                    recharge_id,
                    reason: format!("invoice {invoice_uuid} unknown to the payment provider"),
                },
                Outcome::Failed,
            ),
            Err(ProviderError::Refused(reason) | ProviderError::BadResponse(reason)) => {
                tracing::warn!(%order, %reason, "payment/info unusable; left pending");
                return Ok(Outcome::Pending);
            }
            Err(error) => return Err(error),
        };
        let Ok(key) = IdempotencyKey::parse(&key) else {
            return Ok(Outcome::Pending);
        };
        let context = CommandContext::new(key, Actor::System);
        match crate::commands::execute(&self.ledger, user, command, &context).await {
            Ok(_) => Ok(outcome),
            Err(CommandError::Rejected(
                Rejection::RechargeAlreadySettled(_) | Rejection::RechargeAlreadyFailed(_),
            )) => Ok(outcome),
            Err(error) => {
                tracing::warn!(%order, %error, "reconciler could not record the invoice's state");
                Ok(Outcome::Pending)
            }
        }
    }
}

enum Outcome {
    Settled,
    Failed,
    Pending,
}

fn expires_at(row: &TransactionRow) -> Option<DateTime<Utc>> {
    row.metadata
        .get("expires_at")
        .and_then(|v| v.as_str())
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}
