//! Ledger commands as the gateway runs them: counted and timed for `/metrics` by command and
//! outcome (recorded, replayed, the rejection's code, or a failure).

use std::time::Instant;

use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::{CommandContext, CommandError, Executed, Ledger};
use starledger_ledger::ids::UserId;

/// Runs `command` for `user` and records the outcome.
pub async fn execute(
    ledger: &Ledger,
    user: UserId,
    command: AccountCommand,
    context: &CommandContext,
) -> Result<Executed, CommandError> {
    let name = command.name();
    let started = Instant::now();
    let result = ledger.execute(user, command, context).await;
    let outcome = match &result {
        Ok(executed) if executed.replayed => "replayed",
        Ok(_) => "recorded",
        Err(CommandError::Rejected(rejection)) => rejection.code(),
        Err(CommandError::IdempotencyKeyReused(_)) => "idempotency_key_reused",
        Err(CommandError::TooManyConflicts(_)) => "too_many_conflicts",
        Err(_) => "failed",
    };
    metrics::counter!("starledger_commands_total", "command" => name, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("starledger_command_seconds", "command" => name)
        .record(started.elapsed().as_secs_f64());
    result
}
