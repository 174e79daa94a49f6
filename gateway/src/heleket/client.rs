//! TEMPORARY stand-in until the helper's client lands (not to be committed).
use super::{CreatedInvoice, InvoiceRequest, OrderId, PaymentInfo, PaymentProvider, ProviderError};
use async_trait::async_trait;
use std::time::Duration;
#[derive(Default)]
pub struct HeleketSettings {
    pub base_url: String,
    pub merchant_uuid: String,
    pub api_key: String,
    pub timeout: Duration,
}
pub struct HeleketClient;
impl HeleketClient {
    pub fn new(_: HeleketSettings) -> Result<Self, String> {
        Ok(Self)
    }
}
#[async_trait]
impl PaymentProvider for HeleketClient {
    async fn create_invoice(&self, _: &InvoiceRequest) -> Result<CreatedInvoice, ProviderError> {
        Err(ProviderError::CircuitOpen)
    }
    async fn payment_info(&self, _: &OrderId) -> Result<PaymentInfo, ProviderError> {
        Err(ProviderError::CircuitOpen)
    }
    fn name(&self) -> &'static str {
        "heleket"
    }
}
