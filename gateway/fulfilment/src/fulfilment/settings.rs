//! The worker's timing and limits, and the defaults they start from.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::ton::Nanotons;

/// Timing and limits of the worker.
#[derive(Debug, Clone)]
pub struct FulfilmentSettings {
    /// How long a signed payment may execute: short, so an unexecuted one is provably dead
    /// soon and the purchase can move on.
    pub payment_window: Duration,
    /// How far past a payment's deadline the worker waits before calling it expired: covers
    /// the difference between our clock and the validators'.
    pub expiry_margin: Duration,
    /// How often a pending payment is broadcast again.
    pub rebroadcast_every: Duration,
    /// How long a paid order may stay undelivered before an operator is alerted.
    pub delivery_alert_after: Duration,
    /// How long orders pause after Fragment says the session expired, before trying again.
    pub session_pause: Duration,
    /// Below this wallet balance an operator is alerted, before orders start waiting for funds.
    pub min_wallet_balance: Nanotons,
    /// Kept in the wallet beyond a payment's amount, for network fees.
    pub fee_reserve: Nanotons,
    /// The most Fragment may charge per star. `None`: only when the ledger currency is TON,
    /// and then the customer's reserved price is the ceiling (the shop never sells at a loss).
    pub max_ton_per_star: Option<Decimal>,
    /// How often the worker looks at waiting purchases when no new event wakes it.
    pub tick: Duration,
    /// Fragment's payment addresses (any form): the only destinations the wallet signs
    /// transfers to. Anything else is refused with an alert, never signed; empty refuses all.
    pub payment_addresses: Vec<String>,
    /// How often the Fragment session is checked between orders (the first check comes this
    /// long after start).
    pub session_check_every: Duration,
    /// When the session's cookies expire, if the operator said (`FRAGMENT_SESSION_EXPIRES_AT`).
    pub session_expires_at: Option<DateTime<Utc>>,
    /// How long before that operators are alerted to renew them.
    pub session_warn_before: Duration,
}

impl Default for FulfilmentSettings {
    fn default() -> Self {
        Self {
            payment_window: Duration::from_secs(120),
            expiry_margin: Duration::from_secs(60),
            rebroadcast_every: Duration::from_secs(15),
            delivery_alert_after: Duration::from_secs(600),
            session_pause: Duration::from_secs(60),
            min_wallet_balance: Nanotons(10 * Nanotons::PER_TON),
            fee_reserve: Nanotons(Nanotons::PER_TON / 10),
            max_ton_per_star: None,
            tick: Duration::from_secs(2),
            payment_addresses: Vec::new(),
            session_check_every: Duration::from_secs(300),
            session_expires_at: None,
            session_warn_before: Duration::from_secs(3 * 86_400),
        }
    }
}
