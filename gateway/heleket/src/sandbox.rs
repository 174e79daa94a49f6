//! The sandbox Heleket (`HELEKET_MODE=sandbox`): operators rehearse the whole top-up flow
//! without money.
//!
//! It creates invoices in memory (the same `order_id` returns the same invoice, as Heleket
//! does) and "pays" one by sending our own webhook endpoint a webhook in Heleket's shape,
//! signed with the configured key, over HTTP. So a sandbox payment goes through exactly the
//! code a real one does: body limit, signature check, status mapping, idempotency, ledger.
//!
//! Its `payment/info` answer is read from the very body its last webhook carried, so a
//! confirmed webhook agrees with it, as a real one agrees with Heleket's.
//!
//! Invoices live in this process's memory: after a restart, or on another instance, they are
//! unknown (`payment/info` answers not-found, and the reconciler fails the expired ones).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use dashmap::DashMap;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use super::sign::sign_webhook;
use super::wire::{PaymentInfo, PaymentStatus};
use super::{CreatedInvoice, InvoiceRequest, OrderId, PaymentProvider, ProviderError};
use starledger_settings::secret::Secret;

/// Namespace of sandbox invoice uuids (derived from the order id, so they are stable).
const INVOICE_NAMESPACE: Uuid = Uuid::from_u128(0x5a4d_b0c5_6e1e_4e7a_9c61_8a5d_3b1f_0e21);

#[derive(Debug, Clone)]
struct SandboxInvoice {
    request: InvoiceRequest,
    created: CreatedInvoice,
    status: PaymentStatus,
    payment_amount: Option<Decimal>,
    /// The coin the "payer" used: the invoice's unless a rehearsal says otherwise.
    payer_currency: Option<String>,
    txid: Option<String>,
}

/// Why a sandbox payment could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no sandbox invoice {0}")]
    UnknownInvoice(String),
    #[error("{0:?} is not a Heleket status")]
    UnknownStatus(String),
    #[error("the webhook could not be delivered: {0}")]
    Delivery(String),
}

/// What our endpoint answered to a sandbox webhook.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook: Value,
    pub status: u16,
    pub answer: Value,
}

pub struct Sandbox {
    api_key: Secret,
    /// Where invoice pages are served: `{public_base}/sandbox/heleket/invoices/{uuid}`.
    public_base: String,
    by_order: DashMap<String, SandboxInvoice>,
    order_of_uuid: DashMap<String, String>,
    http: reqwest::Client,
}

impl Sandbox {
    pub fn new(api_key: Secret, public_base: String) -> Result<Arc<Self>, reqwest::Error> {
        Ok(Arc::new(Self {
            api_key,
            public_base,
            by_order: DashMap::new(),
            order_of_uuid: DashMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        }))
    }

    /// The invoice as `payment/info` would describe it.
    pub fn invoice(&self, uuid: &str) -> Option<PaymentInfo> {
        let order = self.order_of_uuid.get(uuid)?.clone();
        self.by_order.get(&order).and_then(|i| describe(&i).ok())
    }

    /// Moves a sandbox invoice to `status` and sends the signed webhook to its callback.
    /// `paid_amount` is what the payer "paid" (default: the invoice amount), `payer_currency`
    /// the coin they "paid" it in (default: the invoice's), so operators can rehearse an
    /// underpayment, an overpayment or a payment in the wrong coin.
    pub async fn pay(
        &self,
        uuid: &str,
        status: &str,
        paid_amount: Option<Decimal>,
        payer_currency: Option<String>,
    ) -> Result<Delivery, SandboxError> {
        let status = match PaymentStatus::parse(status) {
            PaymentStatus::Unknown(s) => return Err(SandboxError::UnknownStatus(s)),
            known => known,
        };
        let order = self
            .order_of_uuid
            .get(uuid)
            .map(|o| o.clone())
            .ok_or_else(|| SandboxError::UnknownInvoice(uuid.to_owned()))?;
        let (webhook, callback) = {
            let mut invoice = self
                .by_order
                .get_mut(&order)
                .ok_or_else(|| SandboxError::UnknownInvoice(uuid.to_owned()))?;
            let amount = invoice.request.amount.value();
            if matches!(
                status,
                PaymentStatus::Paid
                    | PaymentStatus::PaidOver
                    | PaymentStatus::WrongAmount
                    | PaymentStatus::Locked
            ) {
                invoice.payment_amount = Some(paid_amount.unwrap_or(amount));
                invoice.txid = Some(format!("sandbox-tx-{}", Uuid::new_v4().simple()));
            }
            if let Some(coin) = payer_currency {
                invoice.payer_currency = Some(coin);
            }
            invoice.status = status;
            (webhook_body(&invoice), invoice.request.url_callback.clone())
        };
        let signed = sign_webhook(webhook, self.api_key.expose());
        let response = self
            .http
            .post(&callback)
            .json(&signed)
            .send()
            .await
            .map_err(|e| SandboxError::Delivery(e.without_url().to_string()))?;
        let code = response.status().as_u16();
        let answer = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok(Delivery {
            webhook: signed,
            status: code,
            answer,
        })
    }
}

/// A webhook body with Heleket's fields in Heleket's order.
fn webhook_body(invoice: &SandboxInvoice) -> Value {
    let amount = invoice.request.amount.value();
    let paid = invoice.payment_amount;
    json!({
        "type": "payment",
        "uuid": invoice.created.uuid,
        "order_id": invoice.request.order_id.to_string(),
        "amount": amount.to_string(),
        "payment_amount": paid.map(|p| p.to_string()),
        "payer_amount": paid.map(|p| p.to_string()),
        "merchant_amount": paid.map(|p| p.to_string()),
        "commission": "0",
        "is_final": !matches!(invoice.status, PaymentStatus::Pending(_)),
        "status": invoice.status.as_str(),
        "from": null,
        "network": invoice.request.network,
        "currency": invoice.request.currency.to_string(),
        "payer_currency": invoice
            .payer_currency
            .clone()
            .unwrap_or_else(|| invoice.request.currency.to_string()),
        // A slash, so the PHP-style `\/` escaping is exercised on every sandbox payment.
        "additional_data": "starledger/sandbox",
        "txid": invoice.txid,
    })
}

/// The invoice as `payment/info` answers: the webhook's fields, its page and its expiry, read
/// back through the same parser a real answer goes through.
fn describe(invoice: &SandboxInvoice) -> Result<PaymentInfo, ProviderError> {
    let mut result = webhook_body(invoice);
    result["payment_status"] = json!(invoice.status.as_str());
    result["url"] = json!(invoice.created.url);
    result["expired_at"] = json!(invoice.created.expires_at.timestamp());
    PaymentInfo::from_result(&result).map_err(|e| ProviderError::BadResponse(e.to_string()))
}

#[async_trait]
impl PaymentProvider for Sandbox {
    async fn create_invoice(
        &self,
        request: &InvoiceRequest,
    ) -> Result<CreatedInvoice, ProviderError> {
        let order = request.order_id.to_string();
        let invoice = self.by_order.entry(order.clone()).or_insert_with(|| {
            let uuid = Uuid::new_v5(&INVOICE_NAMESPACE, order.as_bytes()).to_string();
            SandboxInvoice {
                created: CreatedInvoice {
                    url: format!("{}/sandbox/heleket/invoices/{uuid}", self.public_base),
                    uuid,
                    expires_at: Utc::now()
                        + chrono::Duration::seconds(i64::from(request.lifetime_seconds)),
                },
                request: request.clone(),
                status: PaymentStatus::Pending("check".into()),
                payment_amount: None,
                payer_currency: None,
                txid: None,
            }
        });
        // Heleket answers an existing order id with its invoice, whatever else was sent.
        self.order_of_uuid
            .insert(invoice.created.uuid.clone(), order);
        Ok(invoice.created.clone())
    }

    async fn payment_info(
        &self,
        order_id: &OrderId,
        uuid: Option<&str>,
    ) -> Result<PaymentInfo, ProviderError> {
        let order = order_id.to_string();
        let invoice = self
            .by_order
            .get(&order)
            .filter(|invoice| uuid.is_none_or(|uuid| invoice.created.uuid == uuid))
            .ok_or(ProviderError::NotFound(order))?;
        let mut info = describe(&invoice)?;
        // An unpaid sandbox invoice past its expiry is cancelled, as Heleket's would be.
        if matches!(info.payment.status, PaymentStatus::Pending(_))
            && info.expires_at.is_some_and(|at| at < Utc::now())
        {
            info.payment.status = PaymentStatus::Failed("cancel".into());
            info.payment.is_final = true;
        }
        Ok(info)
    }

    fn name(&self) -> &'static str {
        "sandbox"
    }
}
