//! `/sandbox/heleket/…`, present only in `HELEKET_MODE=sandbox`: the invoice "payment page"
//! and the button that pays it (sends our webhook endpoint a signed webhook).

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::{Act, Authorized};
use super::body::Body;
use super::error::ApiError;
use super::error_code::ErrorCode;
use super::state::AppState;
use super::wire::{AmountInput, DecimalText};
use starledger_heleket::sandbox::SandboxError;

pub fn routes(config: &mut ServiceConfig) {
    config.service(invoice).service(pay);
}

fn sandbox(state: &AppState) -> Result<&starledger_heleket::sandbox::Sandbox, ApiError> {
    state.sandbox.as_deref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "the sandbox is off (HELEKET_MODE=live)",
        )
    })
}

/// A sandbox invoice, as Heleket's `payment/info` would describe it.
#[derive(Serialize, ToSchema)]
struct SandboxInvoice {
    uuid: String,
    order_id: String,
    /// A Heleket status; `check` until paid.
    #[schema(example = "check")]
    status: String,
    amount: Option<DecimalText>,
    #[schema(example = "TON")]
    currency: String,
    /// The coin the payer paid with, once paid.
    payer_currency: Option<String>,
    /// What the payer paid, as Heleket writes it, once paid.
    payment_amount: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    is_final: bool,
    /// How to pay it, e.g. `POST /sandbox/heleket/invoices/{uuid}/pay {"status":"paid"}`.
    pay: String,
}

/// Read a sandbox invoice
///
/// The invoice page a sandbox payment URL points to. Open, like a real payment page; 404
/// when the sandbox is off (`HELEKET_MODE=live`).
#[utoipa::path(
    operation_id = "getSandboxInvoice",
    tag = "sandbox",
    params(("uuid" = String, Path, description = "The invoice's uuid (`invoice_uuid`).")),
    responses((status = 200, description = "The invoice.", body = SandboxInvoice)),
)]
#[get("/sandbox/heleket/invoices/{uuid}")]
async fn invoice(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let info = sandbox(&state)?
        .invoice(&path)
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownInvoice, "no such sandbox invoice"))?;
    let payment = &info.payment;
    Ok(HttpResponse::Ok().json(SandboxInvoice {
        uuid: payment.uuid.clone(),
        order_id: payment.order_id.clone(),
        status: payment.status.as_str().to_owned(),
        amount: payment.amount.map(DecimalText::exact),
        currency: payment.currency.clone(),
        payer_currency: payment.payer_currency.clone(),
        payment_amount: payment.payment_amount.clone(),
        expires_at: info.expires_at,
        is_final: payment.is_final,
        pay: format!(
            "POST /sandbox/heleket/invoices/{}/pay {{\"status\":\"paid\"}}",
            payment.uuid
        ),
    }))
}

/// How to "pay" a sandbox invoice.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "paid"}))]
struct PayRequest {
    /// Any status Heleket documents: `paid`, `paid_over` and `wrong_amount` report a payment
    /// (credited, or reviewed, by the ledger's rules); `locked` holds it; `fail`, `cancel`,
    /// `system_fail`, `refund_paid` close it (reversing a credit); `refund_fail` is
    /// reviewed; `check`, `confirm_check`, `process`, `wrong_amount_waiting`,
    /// `refund_process` are interim. Anything else is 422 `invalid_status`.
    #[schema(
        example = "paid",
        pattern = "^(paid|paid_over|fail|cancel|system_fail|wrong_amount|locked|refund_paid|refund_fail|check|confirm_check|process|wrong_amount_waiting|refund_process)$"
    )]
    status: String,
    /// What the payer paid; absent: the invoice amount.
    amount: Option<AmountInput>,
    /// The coin the payer "paid" with (any text); absent: the invoice's. Rehearses a payment
    /// in the wrong coin, which is reviewed, never credited.
    payer_currency: Option<String>,
}

/// The signed webhook the sandbox sent to our own `/webhooks/heleket`, and what that
/// endpoint answered. 200 even when the endpoint refused it: read `endpoint_status`.
#[derive(Serialize, ToSchema)]
struct SandboxDelivery {
    /// The webhook as sent, signed.
    #[schema(value_type = Object)]
    webhook: serde_json::Value,
    #[schema(minimum = 100, maximum = 599)]
    endpoint_status: u16,
    /// The endpoint's JSON answer (a `WebhookAnswer` or an `Error`), or null if it was not
    /// JSON.
    endpoint_answer: serde_json::Value,
}

/// Pay a sandbox invoice
///
/// Sends our own `/webhooks/heleket` the signed webhook Heleket would send for this invoice
/// in `status`, and answers what the endpoint answered: rehearses payments, overpayments,
/// wrong coins and refunds without Heleket. 404 when the sandbox is off.
#[utoipa::path(
    operation_id = "paySandboxInvoice",
    tag = "sandbox",
    security(("bearer" = ["service", "admin"])),
    params(("uuid" = String, Path, description = "The invoice's uuid (`invoice_uuid`).")),
    request_body = PayRequest,
    responses((status = 200, description = "Delivered.", body = SandboxDelivery)),
)]
#[post("/sandbox/heleket/invoices/{uuid}/pay")]
async fn pay(
    state: web::Data<AppState>,
    caller: Authorized<Act, Body>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let request: PayRequest = caller.body().json()?;
    let amount = request
        .amount
        .as_ref()
        .map(|text| super::users::amount("amount", &text.0).map(|a| a.value()))
        .transpose()?;
    let delivery = sandbox(&state)?
        .pay(&path, &request.status, amount, request.payer_currency)
        .await
        .map_err(|error| match error {
            SandboxError::UnknownInvoice(_) => {
                ApiError::new(ErrorCode::UnknownInvoice, error.to_string())
            }
            SandboxError::UnknownStatus(_) => {
                ApiError::new(ErrorCode::InvalidStatus, error.to_string())
            }
            SandboxError::Delivery(_) => {
                ApiError::unavailable("sandbox webhook delivery failed", &error)
            }
        })?;
    Ok(HttpResponse::Ok().json(SandboxDelivery {
        webhook: delivery.webhook,
        endpoint_status: delivery.status,
        endpoint_answer: delivery.answer,
    }))
}
