//! How a purchase's troubles end: failing it (which releases the customer's reservation),
//! and what a Fragment or TON API error means for it (fail, pause every order, or retry).

use starledger_ledger::account::AccountCommand;

use super::{Progress, Worker, FRAGMENT_FAILED};
use crate::market::MarketError;
use crate::orders::OpenOrder;
use crate::ton::ChainError;
use starledger_telemetry::metrics_catalog::FULFILMENT_OUTCOMES;

impl Worker {
    pub(super) async fn fail(
        &mut self,
        order: &OpenOrder,
        code: &'static str,
        detail: &str,
    ) -> Progress {
        let reason: String = format!("{code}: {detail}").chars().take(500).collect();
        let command = AccountCommand::FailPurchase {
            purchase_id: order.purchase_id,
            reason,
            // Fragment's own word that a paid order failed is the evidence `force` asks for;
            // every other failure comes before a payment is recorded, and the ledger refuses
            // it if one was recorded meanwhile.
            force: code == FRAGMENT_FAILED,
        };
        let progress = self.record(order, command, "failed").await;
        if progress == Progress::Moved {
            tracing::info!(purchase = %order.purchase_id, code, "purchase failed; reservation released");
            metrics::counter!(FULFILMENT_OUTCOMES, "outcome" => "refunded", "reason" => code)
                .increment(1);
        }
        progress
    }

    pub(super) async fn market_error(&mut self, order: &OpenOrder, error: MarketError) -> Progress {
        match &error {
            MarketError::SessionExpired(_) => {
                self.pause(&error);
                Progress::Wait(self.fulfilment.settings.session_pause)
            }
            error if error.is_definite() => {
                if matches!(error, MarketError::KycRequired(_)) {
                    self.alert(order.purchase_id, "kyc_required", &error.to_string());
                }
                self.fail(order, error.code(), &error.to_string()).await
            }
            MarketError::BadResponse(_) => {
                self.alert(order.purchase_id, "bad_response", &error.to_string());
                self.backoff(order.purchase_id)
            }
            _ => {
                tracing::warn!(purchase = %order.purchase_id, %error, "Fragment unavailable; will retry");
                self.backoff(order.purchase_id)
            }
        }
    }

    pub(super) fn chain_error(&mut self, order: &OpenOrder, error: ChainError) -> Progress {
        tracing::warn!(purchase = %order.purchase_id, %error, "TON API unavailable; will retry");
        self.backoff(order.purchase_id)
    }
}
