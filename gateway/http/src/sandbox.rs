//! `/sandbox/heleket/…`, present only in `HELEKET_MODE=sandbox`: the invoice "payment page"
//! and the button that pays it (sends our webhook endpoint a signed webhook).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Act, Authorized};
use super::body::Body;
use super::error::ApiError;
use super::error_code::ErrorCode;
use super::state::AppState;
use starledger_heleket::sandbox::SandboxError;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/sandbox/heleket/invoices/{uuid}", web::get().to(invoice))
        .route("/sandbox/heleket/invoices/{uuid}/pay", web::post().to(pay));
}

fn sandbox(state: &AppState) -> Result<&starledger_heleket::sandbox::Sandbox, ApiError> {
    state.sandbox.as_deref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "the sandbox is off (HELEKET_MODE=live)",
        )
    })
}

/// The invoice page a sandbox payment URL points to. Open, like a real payment page.
async fn invoice(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let info = sandbox(&state)?
        .invoice(&path)
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownInvoice, "no such sandbox invoice"))?;
    let payment = &info.payment;
    Ok(HttpResponse::Ok().json(json!({
        "uuid": payment.uuid, "order_id": payment.order_id, "status": payment.status.as_str(),
        "amount": payment.amount.map(|a| a.to_string()), "currency": payment.currency,
        "payer_currency": payment.payer_currency,
        "payment_amount": payment.payment_amount,
        "expires_at": info.expires_at, "is_final": payment.is_final,
        "pay": format!("POST /sandbox/heleket/invoices/{}/pay {{\"status\":\"paid\"}}", payment.uuid),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PayRequest {
    /// Any Heleket status: `paid`, `paid_over`, `cancel`, `fail`, `check`, …
    status: String,
    /// What the payer paid (decimal string); default the invoice amount.
    amount: Option<String>,
    /// The coin the payer paid with; default the invoice's (rehearses a wrong-coin payment).
    payer_currency: Option<String>,
}

async fn pay(
    state: web::Data<AppState>,
    caller: Authorized<Act, Body>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let request: PayRequest = caller.body().json()?;
    let amount = request
        .amount
        .as_deref()
        .map(|text| super::users::amount("amount", text).map(|a| a.value()))
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
    Ok(HttpResponse::Ok().json(json!({
        "webhook": delivery.webhook,
        "endpoint_status": delivery.status,
        "endpoint_answer": delivery.answer,
    })))
}
