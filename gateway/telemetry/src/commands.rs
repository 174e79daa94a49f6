//! Ledger commands as the gateway runs them: each in a task of its own, counted and timed for
//! `/metrics` by command and outcome (recorded, replayed, the rejection's code, or a failure).
//!
//! Why a task of its own: a request can be dropped half way (its deadline passed, see
//! `http::deadline`, or the client went away). The ledger copes with a dropped caller (it
//! forgets the account's cached state and reloads it from the log), but a command that has
//! started should still finish: its conflict retries run and its outcome is counted here, so
//! a 503 `deadline_exceeded` means "still in progress" and a retry with the same idempotency
//! key returns its result.

use std::sync::Arc;
use std::time::Instant;

use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::{CommandContext, CommandError, Executed, Ledger};
use starledger_ledger::ids::UserId;
use starledger_ledger::store::StoreError;

use crate::metrics_catalog::{COMMANDS, COMMAND_SECONDS};

/// Runs `command` for `user` to completion, whether or not the caller keeps waiting, and
/// records the outcome.
pub async fn execute(
    ledger: &Arc<Ledger>,
    user: UserId,
    command: AccountCommand,
    context: &CommandContext,
) -> Result<Executed, CommandError> {
    let (ledger, context) = (ledger.clone(), context.clone());
    let task = tokio::spawn(async move {
        let name = command.name();
        let started = Instant::now();
        let result = ledger.execute(user, command, &context).await;
        let outcome = match &result {
            Ok(executed) if executed.replayed => "replayed",
            Ok(_) => "recorded",
            Err(CommandError::Rejected(rejection)) => rejection.code(),
            Err(CommandError::IdempotencyKeyReused(_)) => "idempotency_key_reused",
            Err(CommandError::TooManyConflicts(_)) => "too_many_conflicts",
            Err(_) => "failed",
        };
        metrics::counter!(COMMANDS, "command" => name, "outcome" => outcome).increment(1);
        metrics::histogram!(COMMAND_SECONDS, "command" => name)
            .record(started.elapsed().as_secs_f64());
        result
    });
    match task.await {
        Ok(result) => result,
        // A panic in the ledger stays a panic, as if it had happened on the caller's task.
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Only a runtime shutting down cancels the task.
        Err(_) => Err(CommandError::Store(StoreError::Closed)),
    }
}
