//! Status messages a user did not ask for: a top-up paid (in full or in part), held for a
//! check, waiting for review, closed unpaid or reversed after a refund; Stars delivered; an
//! order failed and refunded. They follow the event log as a checkpointed reactor
//! (`notifications`), so each goes out once even across restarts and with several instances
//! (one holds the lease), and none is invented for events from before the bot was switched on.
//!
//! Facts come from the event itself and from the read models (the order's stars and
//! recipient, the balance after it), never from the write side.
//!
//! Delivery failures: a chat that can never be written to (the user blocked the bot, or
//! never opened it), or a message Telegram refuses as it stands (any other 400), is skipped,
//! counted and logged, and the reactor moves on, so one undeliverable message never holds
//! back the ones after it; flood control (429) is honoured by waiting the `retry_after`
//! Telegram gives before the next attempt; only what may pass (network, 5xx) is retried by
//! the reactor, with growing pauses.

use std::sync::Arc;

use async_trait::async_trait;
use rust_decimal::Decimal;
use starledger_ledger::events::AccountEvent;
use starledger_projections::model::Projected;
use teloxide::prelude::Requester;
use teloxide::types::ChatId;
use teloxide::Bot;
use tokio::sync::watch;
use tokio::time::Instant;

use super::delivery::{self, Failure};
use super::state::BotState;
use super::texts::{Lang, Texts};
use starledger_projections::reactor::{Reacted, Reaction, ReactionError};
use starledger_settings::Secret;
use starledger_telemetry::metrics_catalog::BOT_NOTIFICATIONS;

/// The reactor's name: its checkpoint and its lease.
pub const NAME: &str = "notifications";

pub struct Notifier {
    bot: Bot,
    token: Secret,
    state: Arc<BotState>,
    /// Telegram asked us to wait until then (429 `retry_after`).
    not_before: Option<Instant>,
    stop: watch::Receiver<bool>,
}

impl Notifier {
    pub fn new(bot: Bot, token: Secret, state: Arc<BotState>, stop: watch::Receiver<bool>) -> Self {
        Self {
            bot,
            token,
            state,
            not_before: None,
            stop,
        }
    }

    /// The message for `event`, or `None` when it is not one users are told about.
    async fn compose(&self, event: &Projected) -> Result<Option<String>, ReactionError> {
        let transaction = match &event.event {
            AccountEvent::RechargeSettled(e) => e.recharge_id.uuid(),
            AccountEvent::RechargeFailed(e) => e.recharge_id.uuid(),
            AccountEvent::RechargeHeld(e) => e.recharge_id.uuid(),
            AccountEvent::RechargeReviewRequired(e) => e.recharge_id.uuid(),
            AccountEvent::RechargeReversed(e) => e.recharge_id.uuid(),
            AccountEvent::PurchaseCompleted(e) => e.purchase_id.uuid(),
            AccountEvent::PurchaseFailed(e) => e.purchase_id.uuid(),
            _ => return Ok(None),
        };
        let unreadable = |error: &dyn std::fmt::Display| {
            ReactionError(format!("cannot read the read models: {error}"))
        };
        // Bounded: a projection far behind still gets the message out, just without the
        // balance after it.
        let projected = self
            .state
            .projected(event.position, &self.state.deadline())
            .await;
        let profile = self
            .state
            .shop
            .queries
            .user(event.user_id)
            .await
            .map_err(|e| unreadable(&e))?;
        let texts = Texts(Lang::from_code(
            profile.as_ref().and_then(|p| p.language.as_deref()),
        ));
        let row = self
            .state
            .read
            .transaction(transaction)
            .await
            .map_err(|e| unreadable(&e))?;
        let available = if projected {
            self.state
                .shop
                .queries
                .balance(event.user_id, Some(event.position))
                .await
                .map_err(|e| unreadable(&e))?
                .map(|balance| balance.available)
        } else {
            None
        };
        let currency = row
            .as_ref()
            .map(|r| r.currency.clone())
            .unwrap_or_else(|| self.state.shop.currency.to_string());
        let stars = row
            .as_ref()
            .and_then(|r| r.metadata.get("stars"))
            .and_then(serde_json::Value::as_u64);
        let recipient = row
            .as_ref()
            .and_then(|r| r.metadata.get("recipient"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let amount: Option<Decimal> = row.as_ref().map(|r| r.amount);
        let text = match &event.event {
            AccountEvent::RechargeSettled(e) if e.partial => {
                let invoiced = row
                    .as_ref()
                    .and_then(|r| r.metadata.get("requested"))
                    .and_then(serde_json::Value::as_str)
                    .and_then(|a| a.parse::<Decimal>().ok());
                texts.recharge_partial(e.credited.value(), invoiced, available, e.currency.as_str())
            }
            AccountEvent::RechargeSettled(e) => {
                texts.recharge_settled(e.credited.value(), available, e.currency.as_str())
            }
            AccountEvent::RechargeHeld(_) => texts.recharge_on_hold(),
            AccountEvent::RechargeReviewRequired(_) => texts.recharge_in_review(),
            AccountEvent::RechargeReversed(e) => {
                texts.recharge_reversed(e.reversed.value(), e.debt, e.currency.as_str())
            }
            AccountEvent::RechargeFailed(_) => texts.recharge_failed(amount, &currency),
            AccountEvent::PurchaseCompleted(_) => texts.delivered(stars, recipient.as_deref()),
            AccountEvent::PurchaseFailed(_) => {
                texts.refunded(stars, recipient.as_deref(), amount, available, &currency)
            }
            _ => return Ok(None),
        };
        Ok(Some(text))
    }

    /// Waits out a flood-control pause, unless asked to stop.
    async fn wait_for_flood_control(&mut self) -> Result<(), ReactionError> {
        let Some(until) = self.not_before else {
            return Ok(());
        };
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = self.stop.changed() => {
                return Err(ReactionError("stopping".into()));
            }
        }
        self.not_before = None;
        Ok(())
    }
}

#[async_trait]
impl Reaction for Notifier {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn react(&mut self, event: &Projected) -> Result<Reacted, ReactionError> {
        let Some(text) = self.compose(event).await? else {
            return Ok(Reacted::Skipped);
        };
        self.wait_for_flood_control().await?;
        // A private chat's id is the user's id.
        let sent = self.bot.send_message(ChatId(event.user_id), text).await;
        let error = match sent {
            Ok(_) => {
                metrics::counter!(BOT_NOTIFICATIONS, "outcome" => "sent").increment(1);
                return Ok(Reacted::Acted);
            }
            Err(error) => error,
        };
        let described = delivery::describe(&error, &self.token);
        match delivery::classify(&error) {
            Failure::Unreachable => {
                metrics::counter!(BOT_NOTIFICATIONS, "outcome" => "unreachable").increment(1);
                tracing::info!(
                    user = event.user_id,
                    position = event.position,
                    error = %described,
                    "notification skipped: the user cannot be reached"
                );
                Ok(Reacted::Skipped)
            }
            Failure::Rejected => {
                metrics::counter!(BOT_NOTIFICATIONS, "outcome" => "rejected").increment(1);
                tracing::warn!(
                    user = event.user_id,
                    position = event.position,
                    error = %described,
                    "notification skipped: Telegram refuses it as it stands"
                );
                Ok(Reacted::Skipped)
            }
            Failure::RetryAfter(wait) => {
                metrics::counter!(BOT_NOTIFICATIONS, "outcome" => "flood_control").increment(1);
                self.not_before = Some(Instant::now() + wait);
                Err(ReactionError(format!(
                    "Telegram flood control: retry after {}s",
                    wait.as_secs()
                )))
            }
            Failure::Transient => {
                metrics::counter!(BOT_NOTIFICATIONS, "outcome" => "failed").increment(1);
                Err(ReactionError(format!("sending failed: {described}")))
            }
        }
    }
}
