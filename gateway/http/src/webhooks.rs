//! `POST /webhooks/heleket`: Heleket tells us an invoice changed status.
//!
//! Order of checks, each refusal a 4xx that changes nothing: body size (the extractor, which
//! refuses a declared oversize body before reading it), sender address (when an allowlist is
//! configured), JSON and signature (the `sign` inside the body, verified over the PHP-style
//! re-encoding in constant time), then the fields. What a verified webhook does is decided
//! by [`starledger_shop::settlement`], shared with the reconciler: confirmed with `payment/info`, then
//! judged by the ledger's money rules (credit, partial credit, hold, review, failure or
//! reversal). Interim statuses are acknowledged and ignored.
//!
//! Answers: 200 once the outcome is committed, or once nothing is to be recorded (a payment
//! that needs review is recorded as such and answered 200, so Heleket stops retrying); 503
//! when Heleket cannot confirm the webhook or the ledger cannot record it, so it comes back.
//!
//! Log lines name the invoice, the order and the status, never the signature or the key.

use std::net::IpAddr;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use tracing::Instrument;

use super::body::Body;
use super::error::ApiError;
use super::error_code::ErrorCode;
use super::state::AppState;
use starledger_heleket::sign::{verify_webhook, SignatureError};
use starledger_heleket::{OrderId, PaymentStatus, Webhook};
use starledger_shop::settlement::{SettleError, Settled, Source};

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

fn refuse(code: ErrorCode, message: impl Into<String>) -> ApiError {
    count("refused");
    ApiError::new(code, message)
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
                ErrorCode::ForbiddenSender,
                "webhooks are accepted only from the payment provider's addresses",
            ));
        }
    }
    let verified = verify_webhook(&body.0, settings.api_key.expose()).map_err(|error| {
        tracing::warn!(%error, bytes = body.0.len(), "heleket webhook refused");
        match error {
            SignatureError::NotAnObject => refuse(
                ErrorCode::MalformedJson,
                "the webhook body is not a JSON object",
            ),
            SignatureError::Missing | SignatureError::Malformed | SignatureError::Mismatch => {
                refuse(ErrorCode::InvalidSignature, error.to_string())
            }
        }
    })?;
    let webhook = Webhook::from_verified(&verified).map_err(|error| {
        tracing::warn!(%error, "signed heleket webhook has unusable fields");
        refuse(ErrorCode::InvalidWebhook, error.to_string())
    })?;
    let span = tracing::info_span!(
        "heleket_webhook",
        uuid = %webhook.payment.uuid,
        order_id = %webhook.payment.order_id,
        status = webhook.payment.status.as_str()
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
    let Ok(order) = OrderId::parse(&webhook.payment.order_id) else {
        // Signed with our key but not one of our orders (another system on the same
        // merchant?): nothing of ours to change, and a 4xx would only make Heleket retry.
        tracing::warn!("heleket webhook for an order id we never issue");
        return Ok(acknowledged("ignored", json!("not our order id")));
    };
    if let PaymentStatus::Unknown(_) = webhook.payment.status {
        tracing::warn!("heleket webhook with an undocumented status; ignored");
        return Ok(acknowledged("ignored", json!("undocumented status")));
    }
    match state
        .settlement
        .settle(order, &webhook.payment, Source::Webhook)
        .await
    {
        Ok(settled) => {
            if let Settled::Recorded { position, .. } | Settled::Duplicate { position } = &settled {
                // Heleket is told only once a read here shows what it told us.
                state
                    .acknowledged(order.user, *position, &state.deadline())
                    .await;
            }
            let detail = match &settled {
                Settled::Recorded { outcome, position } => {
                    tracing::info!(outcome, position, "heleket webhook recorded");
                    json!({"outcome": outcome, "position": position})
                }
                Settled::Duplicate { position } => json!({"position": position}),
                Settled::Unconfirmed { why } | Settled::Ignored { why } => json!(why),
                Settled::Orphaned => json!("the order's user is not registered"),
            };
            Ok(acknowledged(settled.result(), detail))
        }
        Err(SettleError::Unconfirmable(error)) => {
            count("unconfirmable");
            tracing::warn!(%error, "heleket webhook cannot be confirmed now; asking for a retry");
            Err(ApiError::new(
                ErrorCode::PaymentProviderUnavailable,
                "the payment cannot be confirmed with the provider right now; deliver it again",
            ))
        }
        Err(SettleError::Unusable(why)) => {
            tracing::warn!(%why, "signed heleket webhook cannot be used");
            Err(refuse(ErrorCode::InvalidWebhook, why))
        }
        Err(SettleError::Command(error)) => {
            count("failed");
            Err(error.into())
        }
    }
}
