//! `POST /webhooks/heleket`: Heleket tells us an invoice changed status.
//!
//! Order of checks, each refusal a 4xx that changes nothing: body size (the extractor, which
//! refuses a declared oversize body before reading it), sender address (when an allowlist is
//! configured), JSON and signature (the `sign` inside the body, verified over the PHP-style
//! re-encoding in constant time), then the fields. Only `paid` and `paid_over` credit, with the amount actually paid; final
//! failures fail the recharge; interim statuses are acknowledged and ignored.
//!
//! Idempotency: the command key is `heleket:{uuid}:{status}`, so a webhook delivered many
//! times (Heleket retries until it gets a 2xx) records once. The 200 is sent only after the
//! event is committed: a webhook we could not record gets a 5xx and comes back.
//!
//! Log lines name the invoice, the order and the status, never the signature or the key.

use std::net::IpAddr;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde_json::json;
use starledger_ledger::account::{AccountCommand, Rejection};
use starledger_ledger::commands::{CommandContext, CommandError};
use starledger_ledger::events::{Actor, Invoice, PaidStatus};
use starledger_ledger::ids::IdempotencyKey;
use tracing::Instrument;

use super::body::Body;
use super::error::ApiError;
use super::state::AppState;
use crate::heleket::sign::{verify_webhook, SignatureError};
use crate::heleket::wire::WireError;
use crate::heleket::{OrderId, PaymentStatus, Webhook};

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/webhooks/heleket", web::post().to(heleket));
}

/// Counts a webhook's outcome for `/metrics`.
fn count(outcome: &'static str) {
    metrics::counter!("starledger_webhooks_total", "provider" => "heleket", "outcome" => outcome)
        .increment(1);
}

fn acknowledged(outcome: &'static str, detail: serde_json::Value) -> HttpResponse {
    count(outcome);
    HttpResponse::Ok().json(json!({"result": outcome, "detail": detail}))
}

/// The address the request came from: the proxy's `X-Forwarded-For` only when configured to
/// trust it (nginx in front overwrites it with the real peer), else the TCP peer.
pub fn client_ip(request: &HttpRequest, trust_proxy_headers: bool) -> Option<IpAddr> {
    if trust_proxy_headers {
        let forwarded = request
            .headers()
            .get("X-Forwarded-For")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|ip| ip.trim().parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    request.peer_addr().map(|addr| addr.ip())
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    count("refused");
    ApiError::new(status, code, message)
}

async fn heleket(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let settings = &state.heleket;
    if !settings.allowed_ips.is_empty() {
        let sender = client_ip(&request, state.limits.trust_proxy_headers);
        if !sender.is_some_and(|ip| settings.allowed_ips.contains(&ip)) {
            tracing::warn!(
                ?sender,
                "heleket webhook from an address not on the allowlist"
            );
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "forbidden_sender",
                "webhooks are accepted only from the payment provider's addresses",
            ));
        }
    }
    let verified = verify_webhook(&body.0, settings.api_key.expose()).map_err(|error| {
        tracing::warn!(%error, bytes = body.0.len(), "heleket webhook refused");
        match error {
            SignatureError::NotAnObject => refuse(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "the webhook body is not a JSON object",
            ),
            SignatureError::Missing | SignatureError::Malformed | SignatureError::Mismatch => {
                refuse(
                    StatusCode::UNAUTHORIZED,
                    "invalid_signature",
                    error.to_string(),
                )
            }
        }
    })?;
    let webhook = Webhook::from_verified(&verified).map_err(|error| {
        tracing::warn!(%error, "signed heleket webhook has unusable fields");
        refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_webhook",
            error.to_string(),
        )
    })?;
    let span = tracing::info_span!(
        "heleket_webhook",
        uuid = %webhook.uuid,
        order_id = %webhook.order_id,
        status = webhook.status.as_str()
    );
    handle(&state, webhook).instrument(span).await
}

/// Acts on a verified webhook.
async fn handle(state: &AppState, webhook: Webhook) -> Result<HttpResponse, ApiError> {
    if webhook.kind != "payment" {
        return Ok(acknowledged(
            "ignored",
            json!(format!("{} webhooks are not used", webhook.kind)),
        ));
    }
    let Ok(order) = OrderId::parse(&webhook.order_id) else {
        // Signed with our key but not one of our orders (another system on the same
        // merchant?): nothing of ours to change, and a 4xx would only make Heleket retry.
        tracing::warn!("heleket webhook for an order id we never issue");
        return Ok(acknowledged("ignored", json!("not our order id")));
    };
    if webhook.currency != state.currency.as_str() {
        tracing::error!(
            currency = %webhook.currency,
            "heleket webhook in another currency than the ledger's; not recorded"
        );
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "currency_mismatch",
            format!(
                "the ledger keeps {}, the webhook is in {}",
                state.currency, webhook.currency
            ),
        ));
    }
    let command = match &webhook.status {
        PaymentStatus::Paid | PaymentStatus::PaidOver => AccountCommand::SettleRecharge {
            recharge_id: order.recharge,
            status: match webhook.status {
                PaymentStatus::PaidOver => PaidStatus::PaidOver,
                _ => PaidStatus::Paid,
            },
            paid: webhook.credited().map_err(|error: WireError| {
                tracing::warn!(%error, "paid webhook without a usable amount");
                refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_webhook",
                    error.to_string(),
                )
            })?,
            txid: webhook.txid.clone(),
        },
        PaymentStatus::Failed(status) => AccountCommand::FailRecharge {
            recharge_id: order.recharge,
            reason: format!("heleket status {status}"),
        },
        PaymentStatus::Pending(_) => {
            return Ok(acknowledged("ignored", json!("interim status")));
        }
        PaymentStatus::Unknown(_) => {
            tracing::warn!("heleket webhook with an undocumented status; ignored");
            return Ok(acknowledged("ignored", json!("undocumented status")));
        }
    };
    record(state, &webhook, order, command).await
}

/// Executes the webhook's command and turns the outcome into Heleket's answer.
async fn record(
    state: &AppState,
    webhook: &Webhook,
    order: OrderId,
    command: AccountCommand,
) -> Result<HttpResponse, ApiError> {
    let key = IdempotencyKey::parse(&format!(
        "heleket:{}:{}",
        webhook.uuid,
        webhook.status.as_str()
    ))
    .map_err(|_| {
        refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_webhook",
            "uuid or status contains characters we cannot use",
        )
    })?;
    let context = CommandContext::new(key, Actor::Heleket);
    let user = order.user;
    let mut result = crate::commands::execute(&state.ledger, user, command.clone(), &context).await;
    if let (
        Err(CommandError::Rejected(Rejection::UnknownRecharge(_))),
        AccountCommand::SettleRecharge { .. },
    ) = (&result, &command)
    {
        // Paid, but the recharge was never recorded: the invoice was created and then the
        // append failed (or the caller gave up). The money arrived, so record the recharge
        // from the signed webhook and credit it.
        tracing::warn!("paid invoice with no recorded recharge; adopting it from the webhook");
        adopt(state, webhook, order).await?;
        result = crate::commands::execute(&state.ledger, user, command, &context).await;
    }
    match result {
        Ok(executed) => {
            let outcome = if executed.replayed {
                "duplicate"
            } else {
                "recorded"
            };
            tracing::info!(outcome, position = executed.position, "heleket webhook");
            Ok(acknowledged(
                outcome,
                json!({"position": executed.position}),
            ))
        }
        Err(CommandError::Rejected(
            rejection
            @ (Rejection::RechargeAlreadySettled(_) | Rejection::RechargeAlreadyFailed(_)),
        )) => {
            // A settled recharge cannot fail and is not credited twice. A refund or a second
            // payment after `paid` needs a person: say so loudly, and stop the retries.
            tracing::warn!(%rejection, "heleket webhook conflicts with the recharge's state; needs an operator if money moved");
            Ok(acknowledged("ignored", json!(rejection.to_string())))
        }
        Err(CommandError::Rejected(Rejection::UnknownRecharge(_))) => {
            Ok(acknowledged("ignored", json!("no such recharge to fail")))
        }
        Err(CommandError::Rejected(Rejection::UnknownUser)) => {
            // Our order id, signed by Heleket, for a user this ledger does not have (a
            // database restored from before the registration?). Retries cannot fix that, so
            // acknowledge, and say loudly that money may be waiting for a person to place it.
            tracing::error!("heleket webhook for an unregistered user; needs an operator");
            Ok(acknowledged(
                "orphaned",
                json!("the order's user is not registered"),
            ))
        }
        Err(error) => {
            count("failed");
            Err(error.into())
        }
    }
}

/// Records the recharge a paid webhook refers to, from the webhook's own signed fields.
async fn adopt(state: &AppState, webhook: &Webhook, order: OrderId) -> Result<(), ApiError> {
    let amount = webhook
        .amount
        .map(starledger_ledger::money::Amount::new)
        .transpose()
        .ok()
        .flatten()
        .map_or_else(|| webhook.credited(), Ok)
        .map_err(|error| {
            refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_webhook",
                error.to_string(),
            )
        })?;
    let key = IdempotencyKey::parse(&format!("heleket:{}:adopt", webhook.uuid)).map_err(|_| {
        refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_webhook",
            "bad uuid",
        )
    })?;
    let command = AccountCommand::RequestRecharge {
        recharge_id: order.recharge,
        amount,
        currency: state.currency.clone(),
        invoice: Invoice {
            uuid: webhook.uuid.clone(),
            // The webhook does not carry the payment page; this is where Heleket serves it.
            url: format!("https://pay.heleket.com/pay/{}", webhook.uuid),
            expires_at: Utc::now(),
        },
    };
    match crate::commands::execute(
        &state.ledger,
        order.user,
        command,
        &CommandContext::new(key, Actor::Heleket),
    )
    .await
    {
        Ok(_) | Err(CommandError::Rejected(Rejection::DuplicateRecharge(_))) => Ok(()),
        Err(error) => {
            count("failed");
            Err(error.into())
        }
    }
}
