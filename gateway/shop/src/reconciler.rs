//! The reconciler: recharges still pending (or on hold) after their invoice expired are
//! asked about with `payment/info`, and settled from the answer through the same
//! [`Settlement`] a webhook goes through (same rules, same idempotency key
//! `heleket:{uuid}:{status}`, so whichever arrives second records nothing).
//!
//! Webhooks can be lost (our endpoint down for longer than Heleket retries, a proxy
//! misconfigured). An invoice
//! the provider does not know is failed, not credited; if it is paid later after all, the
//! late `paid` is still credited (the ledger allows a settle after a local failure).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::{CommandContext, CommandError};
use starledger_ledger::events::Actor;
use starledger_ledger::ids::{IdempotencyKey, RechargeId, UserId};
use starledger_projections::rows::TransactionRow;
use starledger_projections::store::{ReadStore, StatusFilter};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::settlement::{SettleError, Settled, Settlement, Source};
use starledger_heleket::{OrderId, ProviderError};

/// How long after expiry an invoice is left to its webhooks before being asked about.
pub const GRACE: Duration = Duration::from_secs(120);

/// Pending recharges examined per round.
const BATCH: u32 = 200;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub examined: usize,
    /// Recorded something from Heleket's answer (a credit, a hold, a review, a failure, …).
    pub settled: usize,
    /// Failed because Heleket does not know the invoice.
    pub failed: usize,
    pub still_pending: usize,
}

pub struct Reconciler {
    pub settlement: Arc<Settlement>,
    pub read: Arc<dyn ReadStore>,
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

    /// One pass over the pending and held recharges whose invoices expired before
    /// `now - GRACE`.
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

    /// Asks about one recharge and settles it from the answer, as a webhook would be.
    /// Provider outages end the round (`Err`); anything else is logged and the next recharge
    /// is tried.
    async fn reconcile(&self, row: &TransactionRow) -> Result<Outcome, ProviderError> {
        let Ok(user) = UserId::new(row.user_id) else {
            return Ok(Outcome::Pending);
        };
        let order = OrderId::new(user, RechargeId::from_uuid(row.id));
        let invoice_uuid = row.external_id.clone().unwrap_or_default();
        let settlement = &self.settlement;
        match settlement.provider.payment_info(&order, None).await {
            Ok(info) => match settlement
                .settle(order, &info.payment, Source::PaymentInfo)
                .await
            {
                Ok(Settled::Recorded { .. } | Settled::Duplicate { .. }) => Ok(Outcome::Settled),
                Ok(_) => Ok(Outcome::Pending),
                Err(SettleError::Unconfirmable(error)) => Err(error),
                Err(error) => {
                    tracing::warn!(%order, %error, "reconciler could not record the invoice's state");
                    Ok(Outcome::Pending)
                }
            },
            Err(ProviderError::NotFound(_)) => {
                let Ok(key) =
                    IdempotencyKey::parse(&format!("reconcile:{}:not_found", order.recharge))
                else {
                    return Ok(Outcome::Pending);
                };
                let command = AccountCommand::FailRecharge {
                    recharge_id: order.recharge,
                    reason: format!("invoice {invoice_uuid} unknown to the payment provider"),
                };
                let context = CommandContext::new(key, Actor::System);
                match starledger_telemetry::commands::execute(
                    &settlement.ledger,
                    user,
                    command,
                    &context,
                )
                .await
                {
                    Ok(_) | Err(CommandError::Rejected(_)) => Ok(Outcome::Failed),
                    Err(error) => {
                        tracing::warn!(%order, %error, "reconciler could not fail the recharge");
                        Ok(Outcome::Pending)
                    }
                }
            }
            Err(ProviderError::Refused(reason) | ProviderError::BadResponse(reason)) => {
                tracing::warn!(%order, %reason, "payment/info unusable; left pending");
                Ok(Outcome::Pending)
            }
            Err(error) => Err(error),
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
