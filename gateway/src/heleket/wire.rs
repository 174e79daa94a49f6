//! Heleket's wire format, parsed into our types at the edge.
//!
//! - [`OrderId`]: the `order_id` we give an invoice. It names the user and the recharge, so a
//!   webhook (whose body is signed) tells us which account to credit without a lookup, and
//!   asking for an invoice twice with the same recharge returns the same invoice.
//! - [`PaymentStatus`]: every status Heleket documents, and what each means to us.
//! - [`Webhook`]: a verified webhook body, with amounts as decimals.
//! - [`PaymentInfo`]: the `result` of `POST /v1/payment` and `POST /v1/payment/info`.

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use starledger_ledger::ids::{RechargeId, UserId};
use starledger_ledger::money::Amount;
use uuid::Uuid;

/// Why a webhook or an API answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("field {0} is missing")]
    Missing(&'static str),
    #[error("field {field} is malformed: {problem}")]
    Malformed {
        field: &'static str,
        problem: String,
    },
}

fn malformed(field: &'static str, problem: impl Into<String>) -> WireError {
    WireError::Malformed {
        field,
        problem: problem.into(),
    }
}

/// `sl_{user}_{recharge uuid, 32 hex digits}`: within Heleket's 1–128 characters of
/// `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderId {
    pub user: UserId,
    pub recharge: RechargeId,
}

impl OrderId {
    pub fn new(user: UserId, recharge: RechargeId) -> Self {
        Self { user, recharge }
    }

    pub fn parse(text: &str) -> Result<Self, WireError> {
        let bad = || malformed("order_id", format!("{text:?} is not one of our order ids"));
        let rest = text.strip_prefix("sl_").ok_or_else(bad)?;
        let (user, recharge) = rest.split_once('_').ok_or_else(bad)?;
        if user.is_empty() || !user.bytes().all(|b| b.is_ascii_digit()) || recharge.len() != 32 {
            return Err(bad());
        }
        let user = user
            .parse::<i64>()
            .ok()
            .and_then(|id| UserId::new(id).ok())
            .ok_or_else(bad)?;
        let recharge = Uuid::try_parse(recharge).map_err(|_| bad())?;
        Ok(Self {
            user,
            recharge: RechargeId::from_uuid(recharge),
        })
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sl_{}_{}", self.user, self.recharge.uuid().simple())
    }
}

/// A Heleket payment status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Paid in full.
    Paid,
    /// Paid more than the invoice asked.
    PaidOver,
    /// Ended without the money arriving (`fail`, `cancel`, `system_fail`, `wrong_amount`,
    /// `locked`, `refund_paid`, `refund_fail`); the string is Heleket's.
    Failed(String),
    /// Not decided yet (`check`, `confirm_check`, `process`, `wrong_amount_waiting`,
    /// `refund_process`).
    Pending(String),
    /// A status Heleket does not document: acted on by nobody, logged.
    Unknown(String),
}

impl PaymentStatus {
    pub fn parse(text: &str) -> Self {
        match text {
            "paid" => Self::Paid,
            "paid_over" => Self::PaidOver,
            "fail" | "cancel" | "system_fail" | "wrong_amount" | "locked" | "refund_paid"
            | "refund_fail" => Self::Failed(text.to_owned()),
            "check" | "confirm_check" | "process" | "wrong_amount_waiting" | "refund_process" => {
                Self::Pending(text.to_owned())
            }
            other => Self::Unknown(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Paid => "paid",
            Self::PaidOver => "paid_over",
            Self::Failed(s) | Self::Pending(s) | Self::Unknown(s) => s,
        }
    }
}

fn text<'a>(object: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, WireError> {
    match object.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Null) | None => Err(WireError::Missing(field)),
        Some(_) => Err(malformed(field, "not a string")),
    }
}

fn optional_text(object: &Map<String, Value>, field: &'static str) -> Option<String> {
    match object.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// A decimal that Heleket writes as a string (sometimes as a JSON number): never via `f64`.
fn decimal(object: &Map<String, Value>, field: &'static str) -> Result<Option<Decimal>, WireError> {
    let raw = match object.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        // serde_json keeps the number's text, so no binary rounding happens here.
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(malformed(field, "not a decimal")),
    };
    raw.trim()
        .parse::<Decimal>()
        .map(Some)
        .map_err(|_| malformed(field, format!("{raw:?} is not a decimal")))
}

/// What a paid invoice credits: what was actually paid; for `paid` without
/// `payment_amount`, the invoice amount (paid in full). Never more than an [`Amount`] allows.
fn credited(
    status: &PaymentStatus,
    payment_amount: Option<Decimal>,
    amount: Option<Decimal>,
) -> Result<Amount, WireError> {
    let paid = match (status, payment_amount, amount) {
        (_, Some(paid), _) => paid,
        (PaymentStatus::Paid, None, Some(amount)) => amount,
        _ => return Err(WireError::Missing("payment_amount")),
    };
    Amount::new(paid).map_err(|e| malformed("payment_amount", e.to_string()))
}

/// A webhook whose signature has been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `payment` for invoices; `wallet` for static wallets, which we do not use.
    pub kind: String,
    pub uuid: String,
    pub order_id: String,
    pub status: PaymentStatus,
    /// The invoice amount.
    pub amount: Option<Decimal>,
    /// What the payer actually paid, in the invoice currency.
    pub payment_amount: Option<Decimal>,
    pub currency: String,
    pub is_final: bool,
    pub txid: Option<String>,
}

impl Webhook {
    /// Reads the fields we use from a verified body.
    pub fn from_verified(body: &Value) -> Result<Self, WireError> {
        let object = body
            .as_object()
            .ok_or(malformed("body", "not a JSON object"))?;
        let uuid = text(object, "uuid")?.to_owned();
        if uuid.is_empty() || uuid.len() > 64 {
            return Err(malformed("uuid", "must be 1 to 64 characters"));
        }
        Ok(Self {
            kind: optional_text(object, "type").unwrap_or_else(|| "payment".into()),
            uuid,
            order_id: text(object, "order_id")?.to_owned(),
            status: PaymentStatus::parse(text(object, "status")?),
            amount: decimal(object, "amount")?,
            payment_amount: decimal(object, "payment_amount")?,
            currency: text(object, "currency")?.to_owned(),
            is_final: matches!(object.get("is_final"), Some(Value::Bool(true))),
            txid: optional_text(object, "txid"),
        })
    }

    /// The amount to credit for `paid` / `paid_over` (see `credited`).
    pub fn credited(&self) -> Result<Amount, WireError> {
        credited(&self.status, self.payment_amount, self.amount)
    }
}

/// An invoice as `POST /v1/payment` and `POST /v1/payment/info` describe it (`result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentInfo {
    pub uuid: String,
    pub order_id: String,
    pub url: String,
    pub status: PaymentStatus,
    pub amount: Option<Decimal>,
    pub payment_amount: Option<Decimal>,
    pub currency: String,
    pub is_final: bool,
    pub txid: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl PaymentInfo {
    /// Reads the `result` object of an answer. Heleket calls the status `payment_status`
    /// in these answers and `status` in webhooks; either is accepted.
    pub fn from_result(result: &Value) -> Result<Self, WireError> {
        let object = result
            .as_object()
            .ok_or(malformed("result", "not a JSON object"))?;
        let status = text(object, "payment_status").or_else(|_| text(object, "status"))?;
        let expires_at = match object.get("expired_at") {
            None | Some(Value::Null) => None,
            Some(value) => {
                let seconds = value
                    .as_i64()
                    .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                    .ok_or(malformed("expired_at", "not a Unix time"))?;
                Some(
                    Utc.timestamp_opt(seconds, 0)
                        .single()
                        .ok_or(malformed("expired_at", "out of range"))?,
                )
            }
        };
        Ok(Self {
            uuid: text(object, "uuid")?.to_owned(),
            order_id: text(object, "order_id")?.to_owned(),
            url: optional_text(object, "url").unwrap_or_default(),
            status: PaymentStatus::parse(status),
            amount: decimal(object, "amount")?,
            payment_amount: decimal(object, "payment_amount")?,
            currency: text(object, "currency")?.to_owned(),
            is_final: matches!(object.get("is_final"), Some(Value::Bool(true))),
            txid: optional_text(object, "txid"),
            expires_at,
        })
    }

    /// The amount to credit when this invoice is paid (see `credited`).
    pub fn credited(&self) -> Result<Amount, WireError> {
        credited(&self.status, self.payment_amount, self.amount)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn order_ids_round_trip_and_fit_heleket_rules() {
        let user = UserId::new(123_456_789).unwrap();
        let order = OrderId::new(user, RechargeId::from_uuid(Uuid::new_v4()));
        let text = order.to_string();
        assert!(text.len() <= 128);
        assert!(text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        assert_eq!(OrderId::parse(&text).unwrap(), order);
    }

    #[test]
    fn foreign_order_ids_are_refused() {
        for text in [
            "",
            "12345",
            "sl_",
            "sl_12_",
            "sl_-5_0123456789abcdef0123456789abcdef",
            "sl_abc_0123456789abcdef0123456789abcdef",
            "sl_12_0123456789abcdef0123456789abcdeg",
            "sl_12_0123456789abcdef0123456789abcdef00",
            "sl_99999999999999999999_0123456789abcdef0123456789abcdef",
        ] {
            assert!(OrderId::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn statuses_are_sorted_into_credit_failure_and_waiting() {
        assert_eq!(PaymentStatus::parse("paid"), PaymentStatus::Paid);
        assert_eq!(PaymentStatus::parse("paid_over"), PaymentStatus::PaidOver);
        for failed in [
            "fail",
            "cancel",
            "system_fail",
            "wrong_amount",
            "locked",
            "refund_paid",
            "refund_fail",
        ] {
            assert_eq!(
                PaymentStatus::parse(failed),
                PaymentStatus::Failed(failed.into())
            );
        }
        for waiting in [
            "check",
            "confirm_check",
            "process",
            "wrong_amount_waiting",
            "refund_process",
        ] {
            assert_eq!(
                PaymentStatus::parse(waiting),
                PaymentStatus::Pending(waiting.into())
            );
        }
        assert_eq!(
            PaymentStatus::parse("PAID"),
            PaymentStatus::Unknown("PAID".into())
        );
    }

    #[test]
    fn a_paid_over_webhook_credits_what_was_paid() {
        let hook = Webhook::from_verified(&json!({
            "type": "payment", "uuid": "u-1", "order_id": "x", "amount": "10.00",
            "payment_amount": "12.5", "currency": "TON", "status": "paid_over",
            "is_final": true, "txid": "abc"
        }))
        .unwrap();
        assert_eq!(hook.credited().unwrap().to_string(), "12.5");
        assert!(hook.is_final);
    }

    #[test]
    fn paid_without_payment_amount_credits_the_invoice_amount_but_paid_over_does_not() {
        let mut body = json!({"uuid": "u", "order_id": "x", "amount": "3", "currency": "TON", "status": "paid"});
        assert_eq!(
            Webhook::from_verified(&body)
                .unwrap()
                .credited()
                .unwrap()
                .to_string(),
            "3"
        );
        body["status"] = json!("paid_over");
        assert_eq!(
            Webhook::from_verified(&body).unwrap().credited(),
            Err(WireError::Missing("payment_amount"))
        );
    }

    #[test]
    fn absurd_amounts_are_not_credited() {
        for paid in ["-1", "0", "1e30", "99999999999", "0.0000000001", "abc"] {
            let body = json!({"uuid": "u", "order_id": "x", "payment_amount": paid, "currency": "TON", "status": "paid"});
            let credited = Webhook::from_verified(&body).and_then(|h| h.credited());
            assert!(credited.is_err(), "{paid}");
        }
    }

    #[test]
    fn payment_info_reads_unix_expiry_and_payment_status() {
        let info = PaymentInfo::from_result(&json!({
            "uuid": "u", "order_id": "o", "amount": "1.5", "payment_amount": null,
            "currency": "TON", "url": "https://pay.heleket.com/pay/u",
            "payment_status": "check", "status": "check", "is_final": false,
            "expired_at": 1_700_000_000
        }))
        .unwrap();
        assert_eq!(info.status, PaymentStatus::Pending("check".into()));
        assert_eq!(info.expires_at.unwrap().timestamp(), 1_700_000_000);
    }
}
