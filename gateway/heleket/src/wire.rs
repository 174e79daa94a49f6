//! Heleket's wire format, parsed into our types at the edge.
//!
//! - [`OrderId`]: the `order_id` we give an invoice. It names the user and the recharge, so a
//!   webhook (whose body is signed) tells us which account to credit without a lookup, and
//!   asking for an invoice twice with the same recharge returns the same invoice.
//! - [`PaymentStatus`]: every status Heleket documents, and what each means to us.
//! - [`PaymentFacts`]: what webhooks and `payment/info` both say about a payment (statuses,
//!   coins, amounts), and the ledger's [`PaymentReport`] built from them. Which of those facts
//!   may be credited is the ledger's rule, not this file's: amounts stay the provider's text
//!   here, so an unreadable one reaches the ledger (and an operator) instead of a 4xx that
//!   Heleket would retry forever.
//! - [`Webhook`]: a verified webhook body.
//! - [`PaymentInfo`]: the `result` of `POST /v1/payment` and `POST /v1/payment/info`.

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use starledger_ledger::account::{PaymentReport, ReportedOutcome};
use starledger_ledger::ids::{RechargeId, UserId};
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

/// Why a `payment/info` answer does not confirm a webhook: the fields it states differently,
/// in a fixed order (uuid, order_id, status, currency, payer_currency, payment_amount).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment/info differs in {}", .fields.join(", "))]
pub struct Disagreement {
    pub fields: Vec<&'static str>,
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
    /// Paid less than asked, for good: Heleket keeps what arrived (`wrong_amount`).
    WrongAmount,
    /// Held for an AML check (`locked`); a later status decides.
    Locked,
    /// Ended without the money staying with us: unpaid (`fail`, `cancel`, `system_fail`)
    /// or returned to the payer (`refund_paid`); the string is Heleket's.
    Failed(String),
    /// A refund to the payer failed (`refund_fail`): the money is still with us.
    RefundFailed,
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
            "wrong_amount" => Self::WrongAmount,
            "locked" => Self::Locked,
            "fail" | "cancel" | "system_fail" | "refund_paid" => Self::Failed(text.to_owned()),
            "refund_fail" => Self::RefundFailed,
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
            Self::WrongAmount => "wrong_amount",
            Self::Locked => "locked",
            Self::RefundFailed => "refund_fail",
            Self::Failed(s) | Self::Pending(s) | Self::Unknown(s) => s,
        }
    }

    /// What the ledger acts on for this status; `None` for interim and undocumented ones.
    pub fn outcome(&self) -> Option<ReportedOutcome> {
        match self {
            Self::Paid => Some(ReportedOutcome::Paid),
            Self::PaidOver => Some(ReportedOutcome::PaidOver),
            Self::WrongAmount => Some(ReportedOutcome::Underpaid),
            Self::Locked => Some(ReportedOutcome::Held),
            Self::Failed(_) => Some(ReportedOutcome::Failed),
            Self::RefundFailed => Some(ReportedOutcome::RefundFailed),
            Self::Pending(_) | Self::Unknown(_) => None,
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
/// Unreadable is `None`: used only where a missing value is harmless (the invoice amount of
/// an invoice we did not record).
fn decimal(object: &Map<String, Value>, field: &'static str) -> Option<Decimal> {
    amount_text(object, field).and_then(|raw| raw.trim().parse::<Decimal>().ok())
}

/// A money field as the provider wrote it: a string as is, a JSON number as its text
/// (serde_json keeps the number's digits, so no binary rounding happens here).
fn amount_text(object: &Map<String, Value>, field: &'static str) -> Option<String> {
    match object.get(field) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// The Heleket fields kept as the raw facts of a hold or a review: what an operator needs to
/// see, never the signature. Long values are cut.
const FACT_FIELDS: &[&str] = &[
    "type",
    "uuid",
    "order_id",
    "amount",
    "currency",
    "payment_amount",
    "payment_amount_usd",
    "payer_amount",
    "payer_currency",
    "merchant_amount",
    "commission",
    "network",
    "status",
    "payment_status",
    "is_final",
    "txid",
    "from",
    "convert",
];

/// Longest text kept per fact.
const MAX_FACT_CHARS: usize = 200;

fn facts_of(object: &Map<String, Value>) -> Value {
    fn cut(value: &Value) -> Value {
        match value {
            Value::String(s) if s.chars().count() > MAX_FACT_CHARS => {
                Value::String(s.chars().take(MAX_FACT_CHARS).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .take(16)
                    .map(|(k, v)| (k.chars().take(64).collect(), cut_flat(v)))
                    .collect(),
            ),
            Value::Array(_) => Value::String("[…]".into()),
            other => other.clone(),
        }
    }
    fn cut_flat(value: &Value) -> Value {
        match value {
            Value::Object(_) | Value::Array(_) => Value::String("{…}".into()),
            other => cut(other),
        }
    }
    Value::Object(
        FACT_FIELDS
            .iter()
            .filter_map(|field| object.get(*field).map(|v| ((*field).to_owned(), cut(v))))
            .collect(),
    )
}

/// What Heleket says about a payment, in a webhook and in `payment/info` alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFacts {
    pub uuid: String,
    pub order_id: String,
    pub status: PaymentStatus,
    /// The invoice amount, in `currency`.
    pub amount: Option<Decimal>,
    /// The invoice currency.
    pub currency: String,
    /// The coin the payer actually paid with.
    pub payer_currency: Option<String>,
    /// What the payer actually paid, in `payer_currency`, as Heleket wrote it.
    pub payment_amount: Option<String>,
    pub network: Option<String>,
    pub is_final: bool,
    pub txid: Option<String>,
    /// The fields above and a few more, as received, for an operator.
    pub raw: Value,
}

impl PaymentFacts {
    fn read(object: &Map<String, Value>, status: &str) -> Result<Self, WireError> {
        let uuid = text(object, "uuid")?.to_owned();
        if uuid.is_empty() || uuid.len() > 64 {
            return Err(malformed("uuid", "must be 1 to 64 characters"));
        }
        Ok(Self {
            uuid,
            order_id: text(object, "order_id")?.to_owned(),
            status: PaymentStatus::parse(status),
            amount: decimal(object, "amount"),
            currency: text(object, "currency")?.to_owned(),
            payer_currency: optional_text(object, "payer_currency"),
            payment_amount: amount_text(object, "payment_amount"),
            network: optional_text(object, "network"),
            is_final: matches!(object.get("is_final"), Some(Value::Bool(true))),
            txid: optional_text(object, "txid"),
            raw: facts_of(object),
        })
    }

    /// The ledger's view of these facts; `None` for a status the ledger does not act on.
    pub fn report(&self) -> Option<PaymentReport> {
        Some(PaymentReport {
            outcome: self.status.outcome()?,
            provider_status: self.status.as_str().to_owned(),
            invoice_currency: Some(self.currency.clone()),
            paid_currency: self.payer_currency.clone(),
            paid_amount: self.payment_amount.clone(),
            txid: self.txid.clone(),
            facts: self.raw.to_string(),
        })
    }

    /// Whether `other` states the same payment: the same invoice, status, coin and amount.
    /// What a `payment/info` answer must agree on before a webhook is acted upon.
    pub fn agrees_with(&self, other: &PaymentFacts) -> Result<(), Disagreement> {
        let same_amount = match (&self.payment_amount, &other.payment_amount) {
            (Some(a), Some(b)) => {
                a == b
                    || matches!((a.trim().parse::<Decimal>(), b.trim().parse::<Decimal>()), (Ok(x), Ok(y)) if x == y)
            }
            (None, None) => true,
            _ => false,
        };
        let differences = [
            (self.uuid != other.uuid, "uuid"),
            (self.order_id != other.order_id, "order_id"),
            (self.status != other.status, "status"),
            (self.currency != other.currency, "currency"),
            (
                self.payer_currency != other.payer_currency,
                "payer_currency",
            ),
            (!same_amount, "payment_amount"),
        ];
        let fields: Vec<&'static str> = differences
            .iter()
            .filter(|(differs, _)| *differs)
            .map(|(_, field)| *field)
            .collect();
        if fields.is_empty() {
            Ok(())
        } else {
            Err(Disagreement { fields })
        }
    }
}

/// A webhook whose signature has been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `payment` for invoices; `wallet` for static wallets, which we do not use.
    pub kind: String,
    pub payment: PaymentFacts,
}

impl Webhook {
    /// Reads the fields we use from a verified body.
    pub fn from_verified(body: &Value) -> Result<Self, WireError> {
        let object = body
            .as_object()
            .ok_or(malformed("body", "not a JSON object"))?;
        Ok(Self {
            kind: optional_text(object, "type").unwrap_or_else(|| "payment".into()),
            payment: PaymentFacts::read(object, text(object, "status")?)?,
        })
    }
}

/// An invoice as `POST /v1/payment` and `POST /v1/payment/info` describe it (`result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentInfo {
    pub payment: PaymentFacts,
    pub url: String,
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
            payment: PaymentFacts::read(object, status)?,
            url: optional_text(object, "url").unwrap_or_default(),
            expires_at,
        })
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
    fn statuses_are_sorted_into_what_the_ledger_acts_on() {
        let acted = [
            ("paid", ReportedOutcome::Paid),
            ("paid_over", ReportedOutcome::PaidOver),
            ("wrong_amount", ReportedOutcome::Underpaid),
            ("locked", ReportedOutcome::Held),
            ("fail", ReportedOutcome::Failed),
            ("cancel", ReportedOutcome::Failed),
            ("system_fail", ReportedOutcome::Failed),
            ("refund_paid", ReportedOutcome::Failed),
            ("refund_fail", ReportedOutcome::RefundFailed),
        ];
        for (text, outcome) in acted {
            let status = PaymentStatus::parse(text);
            assert_eq!(status.outcome(), Some(outcome), "{text}");
            assert_eq!(status.as_str(), text);
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
            assert_eq!(PaymentStatus::parse(waiting).outcome(), None);
        }
        assert_eq!(
            PaymentStatus::parse("PAID"),
            PaymentStatus::Unknown("PAID".into())
        );
        assert_eq!(PaymentStatus::parse("PAID").outcome(), None);
    }

    #[test]
    fn a_webhook_reports_the_coin_and_amount_paid_as_heleket_wrote_them() {
        let hook = Webhook::from_verified(&json!({
            "type": "payment", "uuid": "u-1", "order_id": "x", "amount": "10.00",
            "payment_amount": "12.5", "payer_amount": "12.5", "payer_currency": "USDT",
            "currency": "TON", "network": "tron", "status": "paid_over",
            "is_final": true, "txid": "abc", "sign": "never kept"
        }))
        .unwrap();
        let report = hook.payment.report().unwrap();
        assert_eq!(report.outcome, ReportedOutcome::PaidOver);
        assert_eq!(report.paid_currency.as_deref(), Some("USDT"));
        assert_eq!(report.paid_amount.as_deref(), Some("12.5"));
        assert_eq!(report.invoice_currency.as_deref(), Some("TON"));
        let facts: Value = serde_json::from_str(&report.facts).unwrap();
        assert_eq!(facts["network"], "tron");
        assert!(facts.get("sign").is_none());
        assert!(hook.payment.is_final);
    }

    #[test]
    fn unreadable_amounts_reach_the_ledger_as_text_instead_of_refusing_the_webhook() {
        for paid in [json!("-1"), json!("abc"), json!(1e30), json!(true)] {
            let body = json!({"uuid": "u", "order_id": "x", "payment_amount": paid,
                "currency": "TON", "payer_currency": "TON", "status": "paid"});
            let hook = Webhook::from_verified(&body).unwrap();
            let report = hook.payment.report().unwrap();
            if paid.is_boolean() {
                assert_eq!(report.paid_amount, None);
            } else {
                assert!(report.paid_amount.is_some(), "{paid}");
            }
        }
    }

    #[test]
    fn interim_statuses_report_nothing() {
        let hook = Webhook::from_verified(&json!({"uuid": "u", "order_id": "x",
            "currency": "TON", "status": "check"}))
        .unwrap();
        assert_eq!(hook.payment.report(), None);
    }

    #[test]
    fn payment_info_must_agree_on_status_coin_and_amount() {
        let webhook = json!({"uuid": "u", "order_id": "o", "amount": "5", "currency": "TON",
            "payer_currency": "TON", "payment_amount": "5.0", "status": "paid"});
        let hook = Webhook::from_verified(&webhook).unwrap();
        let same = PaymentInfo::from_result(&json!({"uuid": "u", "order_id": "o",
            "amount": "5", "currency": "TON", "payer_currency": "TON",
            "payment_amount": "5.00", "payment_status": "paid"}))
        .unwrap();
        assert_eq!(hook.payment.agrees_with(&same.payment), Ok(()));
        for (field, value) in [
            ("payment_status", json!("check")),
            ("payer_currency", json!("USDT")),
            ("payment_amount", json!("50")),
            ("uuid", json!("other")),
        ] {
            let mut answer = json!({"uuid": "u", "order_id": "o", "amount": "5",
                "currency": "TON", "payer_currency": "TON", "payment_amount": "5",
                "payment_status": "paid"});
            answer[field] = value;
            let info = PaymentInfo::from_result(&answer).unwrap();
            assert!(hook.payment.agrees_with(&info.payment).is_err(), "{field}");
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
        assert_eq!(info.payment.status, PaymentStatus::Pending("check".into()));
        assert_eq!(info.expires_at.unwrap().timestamp(), 1_700_000_000);
    }
}
