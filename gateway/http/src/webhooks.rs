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

use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::Serialize;
use tracing::Instrument;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::body::Body;
use super::error::ApiError;
use super::error_code::ErrorCode;
use super::state::AppState;
use starledger_heleket::sign::{verify_webhook, SignatureError};
use starledger_heleket::{OrderId, PaymentStatus, Webhook};
use starledger_shop::settlement::{SettleError, Settled, Source};

pub fn routes(config: &mut ServiceConfig) {
    config.service(heleket);
}

/// Counts a webhook's outcome for `/metrics` and the console's last hour.
fn count(outcome: &'static str) {
    metrics::counter!("starledger_webhooks_total", "provider" => "heleket", "outcome" => outcome)
        .increment(1);
    let tally = crate::webhook_tally::tally();
    tally.record(outcome, crate::webhook_tally::minute_of(chrono::Utc::now()));
}

fn acknowledged(outcome: &'static str, detail: Detail) -> HttpResponse {
    count(outcome);
    HttpResponse::Ok().json(WebhookAnswer {
        result: outcome,
        detail,
    })
}

/// Heleket's answer: any 2xx stops its retries. Sent only once the outcome is committed (or
/// once nothing is to be recorded).
#[derive(Serialize, ToSchema)]
pub struct WebhookAnswer {
    /// `recorded`: an outcome was appended (`detail.outcome` says which). `duplicate`: this
    /// webhook (uuid + status) was recorded before. `ignored`: nothing to do (not a payment
    /// webhook, not our order id, interim or undocumented status, a recharge already past
    /// this status). `orphaned`: our order id for a user this ledger does not have;
    /// acknowledged, logged as an error for an operator. `unconfirmed`: with
    /// `HELEKET_CONFIRM_WEBHOOKS` on, `payment/info` for the same invoice does not state the
    /// same status, coin and amount; nothing recorded.
    #[schema(example = "recorded")]
    result: &'static str,
    detail: Detail,
}

/// recorded / duplicate: where the event sits in the log (and for recorded what it is);
/// otherwise why nothing was recorded.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum Detail {
    Logged {
        /// recorded only: what the ledger made of the payment: `settled` (credited in full,
        /// or within the overpayment tolerance), `partial` (less than invoiced arrived and
        /// is credited), `on_hold` (Heleket holds it for an AML check), `needs_review` (not
        /// credited automatically; an operator decides), `failed` (closed unpaid),
        /// `reversed` (refunded after the credit, which is taken back).
        #[serde(skip_serializing_if = "Option::is_none")]
        outcome: Option<&'static str>,
        position: u64,
    },
    Why(String),
}

/// Heleket's payment webhook, as Heleket sends it. The body is verified as the bytes that
/// arrived before any field is read, so this type only describes it. Other fields Heleket
/// sends (`payer_amount`, `merchant_amount`, `network`, `additional_data`, …) are allowed:
/// they are covered by the signature and otherwise unused.
///
/// Checks, in order: the sender address (when `HELEKET_ALLOWED_IPS` is set), the body size,
/// JSON, the signature (`sign` = md5(base64(PHP-style json_encode of the body without
/// `sign`) + API key), compared in constant time), then the fields.
#[derive(ToSchema)]
#[allow(dead_code)]
struct HeleketWebhook {
    /// `payment` (the default when absent) for invoices; any other kind is acknowledged as
    /// `ignored`.
    #[schema(example = "payment")]
    r#type: Option<String>,
    /// Heleket's invoice id.
    #[schema(min_length = 1, max_length = 64)]
    uuid: String,
    /// Our order id, `sl_{user id}_{recharge id as 32 hex digits}`. Another shape is
    /// acknowledged as `ignored` (not our order).
    #[schema(example = "sl_123456789_0f8a6c1e2b3d4e5f8091a2b3c4d5e6f7")]
    order_id: String,
    /// The invoice amount, a decimal (Heleket writes strings, sometimes numbers; never read
    /// through a float).
    amount: Option<String>,
    /// What the payer actually paid, in the invoice currency; what `paid`/`paid_over`
    /// credit. For `paid` without it, `amount` is credited; `paid_over` without it is 422
    /// `invalid_webhook`.
    payment_amount: Option<String>,
    /// Must be the ledger currency (`LEDGER_CURRENCY`), else 422 `currency_mismatch`.
    currency: String,
    /// `paid`, `paid_over`: credit the recharge. `fail`, `cancel`, `system_fail`,
    /// `wrong_amount`, `locked`, `refund_paid`, `refund_fail`: fail it. `check`,
    /// `confirm_check`, `process`, `wrong_amount_waiting`, `refund_process` and undocumented
    /// statuses: acknowledged as `ignored`.
    status: String,
    /// Heleket's flag; informational.
    is_final: Option<bool>,
    /// The blockchain transaction id, recorded with the settlement.
    txid: Option<String>,
    /// The signature over the rest of the body. Missing, malformed or wrong: 401
    /// `invalid_signature`.
    #[schema(pattern = "^[0-9a-fA-F]{32}$")]
    sign: String,
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

/// Heleket's payment webhook
///
/// Where Heleket reports a payment. Signed with the merchant's API key, not an API key of
/// ours. Answered 200 only once the outcome is committed, so a lost answer makes Heleket
/// retry, and a retry records nothing twice.
#[utoipa::path(
    operation_id = "heleketWebhook",
    tag = "heleket",
    request_body = HeleketWebhook,
    responses((status = 200, description = "Acknowledged.", body = WebhookAnswer)),
)]
#[post("/webhooks/heleket")]
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
            Detail::Why(format!("{} webhooks are not used", webhook.kind)),
        ));
    }
    let Ok(order) = OrderId::parse(&webhook.payment.order_id) else {
        // Signed with our key but not one of our orders (another system on the same
        // merchant?): nothing of ours to change, and a 4xx would only make Heleket retry.
        tracing::warn!("heleket webhook for an order id we never issue");
        return Ok(acknowledged(
            "ignored",
            Detail::Why("not our order id".into()),
        ));
    };
    if let PaymentStatus::Unknown(_) = webhook.payment.status {
        tracing::warn!("heleket webhook with an undocumented status; ignored");
        return Ok(acknowledged(
            "ignored",
            Detail::Why("undocumented status".into()),
        ));
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
                    Detail::Logged {
                        outcome: Some(*outcome),
                        position: *position,
                    }
                }
                Settled::Duplicate { position } => Detail::Logged {
                    outcome: None,
                    position: *position,
                },
                Settled::Unconfirmed { why } | Settled::Ignored { why } => Detail::Why(why.clone()),
                Settled::Orphaned => Detail::Why("the order's user is not registered".into()),
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
