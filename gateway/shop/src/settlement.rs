//! Settling a recharge from what Heleket says about its payment: the one path by which a
//! signed webhook and the reconciler's `payment/info` answer reach the ledger.
//!
//! The money rules are the ledger's (`RecordPayment` in `decide`: our coin only, an amount
//! read in that coin, at most the invoice plus the tolerance, underpayments credited as
//! partial, holds, reviews, reversals). What lives here is the protocol around them:
//!
//! - **Confirm before acting** (`HELEKET_CONFIRM_WEBHOOKS`, on by default in live mode): a
//!   signed webhook is only a claim. Heleket's test-webhook API signs bodies for any invoice,
//!   and so does anyone holding a leaked key. Before a webhook changes a recharge, the same
//!   invoice is read back with `payment/info` (by uuid), and the webhook is acted on only if
//!   that answer states the same status, coin and amount. If Heleket cannot be asked, the
//!   webhook is answered 503 so Heleket delivers it again (and the reconciler finishes it
//!   otherwise). Cost: one `payment/info` call per delivery of a webhook the ledger acts on
//!   (typically one per payment); none for interim statuses.
//! - **One idempotency key** per invoice and status, `heleket:{uuid}:{status}`, for both
//!   sources, so whichever arrives second records nothing.
//! - **Adoption**: a paid invoice whose recharge was never recorded (the append failed after
//!   the invoice was created) is recorded from the provider's own facts first.
//! - **Alerts**: a payment that needs review, a hold, a reversal that leaves a debt, or an
//!   unconfirmed webhook is logged at warn/error level and counted in
//!   `starledger_recharge_alerts_total{kind}`.

use std::sync::Arc;

use chrono::Utc;
use starledger_ledger::account::{AccountCommand, Rejection, ReviewDecision};
use starledger_ledger::commands::{CommandContext, CommandError, Executed, Ledger};
use starledger_ledger::events::{AccountEvent, Actor, Invoice};
use starledger_ledger::ids::{IdempotencyKey, RechargeId, UserId};
use starledger_ledger::money::{Amount, Currency};

use starledger_heleket::{OrderId, PaymentFacts, PaymentProvider, ProviderError};
use starledger_telemetry::metrics_catalog::RECHARGE_ALERTS;

/// Where the facts being settled came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A webhook whose signature verified: confirmed with `payment/info` first when the
    /// settlement is configured to.
    Webhook,
    /// The provider's own `payment/info` answer (the reconciler): already what confirmation
    /// would read.
    PaymentInfo,
}

/// What settling did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The ledger recorded this event kind (`settled`, `partial`, `on_hold`,
    /// `needs_review`, `failed`, `reversed`) at this position.
    Recorded {
        outcome: &'static str,
        position: u64,
    },
    /// Already recorded under the same key: nothing new.
    Duplicate { position: u64 },
    /// `payment/info` does not state what the webhook claims; nothing recorded.
    Unconfirmed { why: String },
    /// Nothing for the ledger to do (an interim status, a state that does not change).
    Ignored { why: String },
    /// Our order, for a user this ledger does not have: money may wait for a person.
    Orphaned,
}

impl Settled {
    /// The word answered to Heleket and counted in metrics.
    pub fn result(&self) -> &'static str {
        match self {
            Self::Recorded { .. } => "recorded",
            Self::Duplicate { .. } => "duplicate",
            Self::Unconfirmed { .. } => "unconfirmed",
            Self::Ignored { .. } => "ignored",
            Self::Orphaned => "orphaned",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// Heleket could not confirm the webhook right now: let it deliver again.
    #[error("cannot confirm the payment with Heleket now: {0}")]
    Unconfirmable(ProviderError),
    /// The facts cannot even name a ledger command (a uuid we cannot key on).
    #[error("{0}")]
    Unusable(String),
    /// The ledger could not record it (store down, conflicts): let it come again.
    #[error(transparent)]
    Command(CommandError),
}

/// Settles recharges for one ledger and one payment provider.
pub struct Settlement {
    pub ledger: Arc<Ledger>,
    pub provider: Arc<dyn PaymentProvider>,
    pub currency: Currency,
    /// `HELEKET_OVERPAY_TOLERANCE_PERCENT`.
    pub overpay_tolerance_percent: u32,
    /// `HELEKET_CONFIRM_WEBHOOKS`.
    pub confirm_webhooks: bool,
}

/// Counts an operator alert for `/metrics`.
fn alert(kind: &'static str) {
    metrics::counter!(RECHARGE_ALERTS, "kind" => kind).increment(1);
}

impl Settlement {
    /// Settles `order` from `facts`. The caller has already checked where the facts come
    /// from (a verified signature, or our own call to the provider).
    pub async fn settle(
        &self,
        order: OrderId,
        facts: &PaymentFacts,
        source: Source,
    ) -> Result<Settled, SettleError> {
        let Some(report) = facts.report() else {
            return Ok(Settled::Ignored {
                why: format!("status {} changes nothing", facts.status.as_str()),
            });
        };
        if source == Source::Webhook && self.confirm_webhooks {
            let info = self.provider.payment_info(&order, Some(&facts.uuid)).await;
            match info {
                Ok(info) => {
                    if let Err(why) = facts.agrees_with(&info.payment) {
                        alert("unconfirmed_webhook");
                        tracing::warn!(
                            %why,
                            confirmed_status = info.payment.status.as_str(),
                            "signed heleket webhook not confirmed by payment/info; nothing recorded"
                        );
                        return Ok(Settled::Unconfirmed {
                            why: why.to_string(),
                        });
                    }
                }
                Err(ProviderError::NotFound(_)) => {
                    alert("unconfirmed_webhook");
                    tracing::warn!("signed heleket webhook for an invoice payment/info does not know; nothing recorded");
                    return Ok(Settled::Unconfirmed {
                        why: "payment/info knows no such invoice".into(),
                    });
                }
                Err(error) => return Err(SettleError::Unconfirmable(error)),
            }
        }
        let key =
            IdempotencyKey::parse(&format!("heleket:{}:{}", facts.uuid, facts.status.as_str()))
                .map_err(|_| SettleError::Unusable("uuid or status cannot make a key".into()))?;
        let actor = match source {
            Source::Webhook => Actor::Heleket,
            Source::PaymentInfo => Actor::System,
        };
        let context = CommandContext::new(key, actor);
        let command = AccountCommand::RecordPayment {
            recharge_id: order.recharge,
            report,
            overpay_tolerance_percent: self.overpay_tolerance_percent,
        };
        let mut result = starledger_telemetry::commands::execute(
            &self.ledger,
            order.user,
            command.clone(),
            &context,
        )
        .await;
        if matches!(
            result,
            Err(CommandError::Rejected(Rejection::UnknownRecharge(_)))
        ) && facts.status.outcome().is_some_and(|o| o.brings_money())
        {
            // Paid, but the recharge was never recorded: the invoice was created and then the
            // append failed (or the caller gave up). The money arrived, so record the
            // recharge from the provider's facts, then judge the payment as any other.
            tracing::warn!("paid invoice with no recorded recharge; adopting it");
            self.adopt(order, facts).await?;
            result = starledger_telemetry::commands::execute(
                &self.ledger,
                order.user,
                command,
                &context,
            )
            .await;
        }
        self.outcome(result)
    }

    fn outcome(&self, result: Result<Executed, CommandError>) -> Result<Settled, SettleError> {
        match result {
            Ok(executed) if executed.replayed => Ok(Settled::Duplicate {
                position: executed.position,
            }),
            Ok(executed) => {
                let outcome = describe(executed.events.first());
                Ok(Settled::Recorded {
                    outcome,
                    position: executed.position,
                })
            }
            Err(CommandError::Rejected(rejection)) => match rejection {
                Rejection::UnknownUser => {
                    alert("orphaned");
                    tracing::error!("heleket payment for an unregistered user; needs an operator");
                    Ok(Settled::Orphaned)
                }
                Rejection::UnknownRecharge(_) => Ok(Settled::Ignored {
                    why: "no such recharge".into(),
                }),
                other => {
                    // The recharge is past this status (settled, failed, held, in review):
                    // nothing to change, and retries could not change it either.
                    tracing::info!(rejection = %other, "heleket status changes nothing");
                    Ok(Settled::Ignored {
                        why: other.to_string(),
                    })
                }
            },
            Err(error) => Err(SettleError::Command(error)),
        }
    }

    /// Records the recharge a paid invoice refers to, from the provider's facts.
    async fn adopt(&self, order: OrderId, facts: &PaymentFacts) -> Result<(), SettleError> {
        if facts.currency != self.currency.as_str() {
            return Err(SettleError::Unusable(format!(
                "an unrecorded invoice in {} cannot be adopted into a {} ledger",
                facts.currency, self.currency
            )));
        }
        let amount = facts
            .amount
            .and_then(|a| Amount::new(a).ok())
            .ok_or_else(|| SettleError::Unusable("the invoice amount is unreadable".into()))?;
        let key = IdempotencyKey::parse(&format!("heleket:{}:adopt", facts.uuid))
            .map_err(|_| SettleError::Unusable("bad uuid".into()))?;
        let command = AccountCommand::RequestRecharge {
            recharge_id: order.recharge,
            amount,
            currency: self.currency.clone(),
            invoice: Invoice {
                uuid: facts.uuid.clone(),
                // Neither source carries the payment page; this is where Heleket serves it.
                url: format!("https://pay.heleket.com/pay/{}", facts.uuid),
                expires_at: Utc::now(),
            },
        };
        let context = CommandContext::new(key, Actor::Heleket);
        match starledger_telemetry::commands::execute(&self.ledger, order.user, command, &context)
            .await
        {
            Ok(_) | Err(CommandError::Rejected(Rejection::DuplicateRecharge(_))) => Ok(()),
            Err(error) => Err(SettleError::Command(error)),
        }
    }
}

/// An operator's decision on a recharge that needs review or is on hold: credit what they
/// established arrived, or reject it, recorded with the admin's name; the admin API and the
/// CLI both come here. The key names the recharge and the decision, so the same decision
/// sent twice records once, and a different one after it is refused by the ledger (the
/// recharge no longer waits for a decision).
pub async fn resolve(
    ledger: &Arc<Ledger>,
    user: UserId,
    recharge_id: RechargeId,
    decision: ReviewDecision,
    admin: &str,
    reason: &str,
) -> Result<Executed, CommandError> {
    let what = match &decision {
        ReviewDecision::Credit(amount) => format!("credit:{amount}"),
        ReviewDecision::Reject => "reject".to_owned(),
    };
    let key = IdempotencyKey::parse(&format!("admin:resolve:{recharge_id}:{what}"))
        .map_err(|_| CommandError::Invariant("a recharge id and a decision make a key".into()))?;
    let command = AccountCommand::ResolveRecharge {
        recharge_id,
        decision,
        admin: admin.to_owned(),
        reason: reason.to_owned(),
    };
    let context = CommandContext::new(key, Actor::Admin(admin.to_owned()));
    let executed = starledger_telemetry::commands::execute(ledger, user, command, &context).await?;
    tracing::warn!(admin, recharge = %recharge_id, "recharge resolved by an operator");
    Ok(executed)
}

/// The name of what the ledger recorded, and the alert it raises.
fn describe(event: Option<&AccountEvent>) -> &'static str {
    match event {
        Some(AccountEvent::RechargeSettled(e)) if e.partial => {
            tracing::warn!(credited = %e.credited, "underpaid recharge credited with what arrived");
            "partial"
        }
        Some(AccountEvent::RechargeSettled(_)) => "settled",
        Some(AccountEvent::RechargeHeld(_)) => {
            alert("on_hold");
            tracing::warn!("recharge on hold: Heleket is checking the payment (AML)");
            "on_hold"
        }
        Some(AccountEvent::RechargeReviewRequired(e)) => {
            alert("needs_review");
            tracing::error!(reason = e.reason.as_str(), detail = %e.detail, "recharge needs an operator's review; nothing credited");
            "needs_review"
        }
        Some(AccountEvent::RechargeFailed(_)) => "failed",
        Some(AccountEvent::RechargeReversed(e)) => {
            alert("reversed");
            if e.debt.is_zero() {
                tracing::warn!(reversed = %e.reversed, "credited payment refunded; credit reversed");
            } else {
                alert("debt");
                tracing::error!(reversed = %e.reversed, debt = %e.debt, "credited payment refunded after it was spent; the customer owes the rest");
            }
            "reversed"
        }
        _ => "recorded",
    }
}
