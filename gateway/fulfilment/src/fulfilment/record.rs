//! Recording a purchase's progress in the ledger, under one idempotency key per step
//! (`fragment:{purchase}:{step}`), and telling a purchase that moved on elsewhere from a
//! ledger that cannot record now.

use starledger_ledger::account::{AccountCommand, Rejection};
use starledger_ledger::commands::{CommandContext, CommandError};
use starledger_ledger::events::{AccountEvent, Actor};
use starledger_ledger::ids::IdempotencyKey;

use super::{Progress, Worker};
use crate::orders::OpenOrder;

impl Worker {
    pub(super) async fn record(
        &mut self,
        order: &OpenOrder,
        command: AccountCommand,
        step: &str,
    ) -> Progress {
        match self.execute(order, command, step).await {
            Ok(_) | Err(Recorded::Elsewhere) => Progress::Moved,
            Err(Recorded::Failed) => self.backoff(order.purchase_id),
        }
    }

    /// Runs a command for the purchase under the key `fragment:{purchase}:{step}`; returns
    /// the event on record for it.
    pub(super) async fn execute(
        &mut self,
        order: &OpenOrder,
        command: AccountCommand,
        step: &str,
    ) -> Result<Option<AccountEvent>, Recorded> {
        let key = IdempotencyKey::parse(&format!("fragment:{}:{step}", order.purchase_id))
            .map_err(|_| Recorded::Failed)?;
        let context = CommandContext::new(key, Actor::System);
        match starledger_telemetry::commands::execute(
            &self.fulfilment.ledger,
            order.user,
            command,
            &context,
        )
        .await
        {
            Ok(executed) => Ok(executed.events.into_iter().next()),
            Err(
                CommandError::IdempotencyKeyReused(_)
                | CommandError::Rejected(
                    Rejection::PurchaseNotOpen { .. }
                    | Rejection::PaymentAttemptOutOfOrder { .. }
                    | Rejection::PaymentRecorded(_),
                ),
            ) => {
                // Someone else (an admin, another instance) moved this purchase on — paid it,
                // in the last case, so this worker's failure must not refund it; the log has
                // the truth and the next fold shows it.
                tracing::info!(purchase = %order.purchase_id, step, "purchase moved on elsewhere");
                Err(Recorded::Elsewhere)
            }
            Err(error) => {
                tracing::warn!(purchase = %order.purchase_id, step, %error, "cannot record the purchase's progress; will retry");
                Err(Recorded::Failed)
            }
        }
    }
}

/// Why a command for a purchase did not record what this worker asked.
pub(super) enum Recorded {
    /// The purchase moved on without it.
    Elsewhere,
    /// The ledger could not record it now.
    Failed,
}
