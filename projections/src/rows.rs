//! The rows of the read models, as the gateway reads them and the caches store them.
//!
//! Every row carries `position`: the log position of the last event that changed it. Caches
//! use it to refuse an older write over a newer one; readers use it for read-your-writes.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One registered user (`users` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub user_id: i64,
    pub username: Option<String>,
    pub language: Option<String>,
    pub currency: String,
    pub registered_at: DateTime<Utc>,
    pub position: u64,
}

/// One user's balance in one currency (`balances` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceRow {
    pub user_id: i64,
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub available: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub reserved: Decimal,
    /// What the user owes after a refunded payment whose credit was spent (zero almost
    /// always). Nothing is available while it is open.
    #[serde(default, with = "rust_decimal::serde::str")]
    pub debt: Decimal,
    pub updated_at: DateTime<Utc>,
    pub position: u64,
    /// This row stands for a `balances` row that does not exist: the user is registered but
    /// no money event has touched their account. Its amounts are zero and its `position` is
    /// the balances projection's checkpoint when the absence was read (no balance event of
    /// this user is at or below it), so the cache holds it under the same position guard as
    /// any row and the first real row replaces it. Never true for a row of the table.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_money_events: bool,
}

impl BalanceRow {
    /// Available plus reserved: what the shop owes the user until orders complete.
    pub fn total(&self) -> Decimal {
        self.available + self.reserved
    }
}

/// What a `transactions` row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    Recharge,
    Purchase,
    Adjustment,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recharge => "recharge",
            Self::Purchase => "purchase",
            Self::Adjustment => "adjustment",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "recharge" => Some(Self::Recharge),
            "purchase" => Some(Self::Purchase),
            "adjustment" => Some(Self::Adjustment),
            _ => None,
        }
    }
}

/// One recharge, purchase or adjustment with its current status (`transactions` table).
///
/// Statuses: recharge `pending` → `completed` | `partial` (less arrived than invoiced) |
/// `on_hold` (the provider's AML check) | `needs_review` (an operator decides) | `failed`, and
/// `completed`/`partial` → `reversed` (refunded after the credit); purchase `reserved` →
/// `ordered` → `sent` → `completed` | `refunded`; adjustment `completed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRow {
    /// The recharge, purchase or adjustment id.
    pub id: Uuid,
    pub user_id: i64,
    pub kind: TransactionKind,
    pub status: String,
    /// Recharges: the invoice amount until settled, then what was credited. Purchases: the
    /// price. Adjustments: the signed change.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    pub description: Option<String>,
    /// Recharges: the Heleket invoice uuid. Purchases: the Fragment request id once placed.
    pub external_id: Option<String>,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Position of the event that created the row: the order of a user's history.
    pub created_position: u64,
    pub position: u64,
}
