//! Pacing and telling operators: the retry backoff, the pause of every order while the
//! Fragment session is expired, one alert per purchase and kind, and the watch kept between
//! orders on the session (and its coming expiry) and the wallet's balance. Uses the worker's
//! state only, none of the steps.

use std::time::{Duration, Instant};

use starledger_ledger::ids::PurchaseId;

use super::{Progress, Worker};
use crate::market::MarketError;
use crate::ton::Nanotons;
use starledger_telemetry::metrics_catalog::{
    FRAGMENT_SESSION_EXPIRES_IN_SECONDS, FULFILMENT_ALERTS, FULFILMENT_PAUSED,
    FULFILMENT_WALLET_BALANCE_TON, FULFILMENT_WALLET_LOW,
};

impl Worker {
    /// Pauses every order until the session is renewed (or the pause runs out and a retry
    /// shows it works again). Nothing is refunded for it.
    pub(super) fn pause(&mut self, error: &MarketError) {
        if self.paused().is_none() {
            tracing::error!(%error, "Fragment session expired: orders are paused until FRAGMENT_COOKIES is renewed; nothing is refunded");
            metrics::counter!(FULFILMENT_ALERTS, "kind" => "session_expired").increment(1);
        }
        metrics::gauge!(FULFILMENT_PAUSED).set(1.0);
        self.paused_until = Some(Instant::now() + self.fulfilment.settings.session_pause);
    }

    pub(super) fn paused(&mut self) -> Option<Duration> {
        match self.paused_until {
            Some(until) if until > Instant::now() => Some(until - Instant::now()),
            Some(_) => {
                // The pause ran out: the next call tries the session again.
                self.paused_until = None;
                metrics::gauge!(FULFILMENT_PAUSED).set(0.0);
                None
            }
            None => None,
        }
    }

    pub(super) fn backoff(&mut self, purchase_id: PurchaseId) -> Progress {
        let retries = self.retries.entry(purchase_id).or_insert(0);
        *retries += 1;
        let pause = self.fulfilment.settings.tick * 2u32.saturating_pow((*retries).min(6));
        Progress::Wait(pause.min(Duration::from_secs(300)))
    }

    /// An operator alert: an error log line and a counter, once per purchase and kind.
    pub(super) fn alert(&mut self, purchase_id: PurchaseId, kind: &'static str, detail: &str) {
        if self.alerted.insert((purchase_id, kind)) {
            tracing::error!(purchase = %purchase_id, alert = kind, "{detail}");
            metrics::counter!(FULFILMENT_ALERTS, "kind" => kind).increment(1);
        }
    }

    /// Between orders: alerts when the session's cookies are about to expire (if their
    /// expiry is configured), and checks that the session still works, so an expired one
    /// pauses orders and alerts before an order runs into it.
    pub(super) async fn watch_session(&mut self) {
        if self.session_checked_at.elapsed() < self.fulfilment.settings.session_check_every {
            return;
        }
        self.session_checked_at = Instant::now();
        if let Some(expires_at) = self.fulfilment.settings.session_expires_at {
            let left = (expires_at - self.fulfilment.clock.now()).num_seconds();
            metrics::gauge!(FRAGMENT_SESSION_EXPIRES_IN_SECONDS).set(left as f64);
            let warn_before = self.fulfilment.settings.session_warn_before.as_secs() as i64;
            if left < warn_before && !self.expiry_alerted {
                self.expiry_alerted = true;
                tracing::error!(
                    alert = "session_expiring",
                    expires_at = %expires_at,
                    "the Fragment session expires in {}h: renew FRAGMENT_COOKIES (and FRAGMENT_SESSION_EXPIRES_AT) before orders stop",
                    left.max(0) / 3_600
                );
                metrics::counter!(FULFILMENT_ALERTS, "kind" => "session_expiring").increment(1);
            }
        }
        if let Err(error) = self.fulfilment.market.check_session().await {
            if matches!(error, MarketError::SessionExpired(_)) {
                self.pause(&error);
            }
        }
    }

    pub(super) async fn watch_wallet_balance(&mut self) {
        let recently = self
            .balance_checked_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(60));
        if recently {
            return;
        }
        self.balance_checked_at = Some(Instant::now());
        let address = self.fulfilment.wallet.account().address;
        match self.fulfilment.chain.wallet_state(&address).await {
            Ok(state) => self.observe_balance(state.balance),
            Err(error) => tracing::warn!(%error, "cannot read the wallet balance"),
        }
    }

    pub(super) fn observe_balance(&mut self, balance: Nanotons) {
        // A gauge for dashboards only; money decisions use the exact nanotons.
        let ton = balance.0 as f64 / Nanotons::PER_TON as f64;
        metrics::gauge!(FULFILMENT_WALLET_BALANCE_TON).set(ton);
        let low = balance < self.fulfilment.settings.min_wallet_balance;
        metrics::gauge!(FULFILMENT_WALLET_LOW).set(if low { 1.0 } else { 0.0 });
        let key = (PurchaseId::from_uuid(uuid::Uuid::nil()), "wallet_low");
        if low && self.alerted.insert(key) {
            tracing::error!(
                alert = "wallet_low",
                balance = %balance,
                minimum = %self.fulfilment.settings.min_wallet_balance,
                "the shop wallet is running low; top it up before orders start waiting"
            );
            metrics::counter!(FULFILMENT_ALERTS, "kind" => "wallet_low").increment(1);
        } else if !low {
            self.alerted.remove(&key);
        }
    }
}
