//! Reading Fragment's answers into our types (orders, payments with TON amounts read exactly,
//! the confirmation it asks for, the buy page's state) and writing the parameters that
//! describe the shop wallet to it. No I/O.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use uuid::Uuid;

use super::id_text;
use crate::market::{MarketError, MarketOrder, PaymentRequest};
use crate::ton::{Nanotons, TransferMessage, WalletAccount};
use starledger_outbound::shorten;

/// TON Connect's id of the TON mainnet, which Fragment expects in `account.chain`.
const MAINNET_CHAIN: &str = "-239";

/// How long a payment stays valid when Fragment's answer names no `validUntil`. Short on
/// purpose: a wallet message that expires unexecuted is harmless, one that executes late
/// pays an order Fragment may have dropped.
const DEFAULT_PAYMENT_WINDOW: chrono::Duration = chrono::Duration::minutes(5);

/// initBuyStarsRequest's answer. `amount` stays raw JSON so a number is read from its text,
/// never through a float.
#[derive(Deserialize)]
struct InitAnswer {
    req_id: Option<Value>,
    amount: Option<Box<RawValue>>,
}

pub(crate) fn read_order(body: &[u8]) -> Result<MarketOrder, MarketError> {
    // Read from the bytes: `Value` has already turned a JSON number into a float.
    let init: InitAnswer = serde_json::from_slice(body)
        .map_err(|e| MarketError::BadResponse(format!("unreadable order: {e}")))?;
    let request_id = init
        .req_id
        .as_ref()
        .and_then(id_text)
        .ok_or_else(|| MarketError::BadResponse("the order has no req_id".into()))?;
    let amount = init
        .amount
        .ok_or_else(|| MarketError::BadResponse("the order has no amount".into()))?;
    let cost = parse_ton_amount(&amount).map_err(|e| MarketError::BadResponse(e.to_string()))?;
    Ok(MarketOrder { request_id, cost })
}

/// Why an amount Fragment gave is not a TON amount we accept. Each shown amount is the text
/// as Fragment wrote it, shortened.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum AmountError {
    #[error("the amount is not text")]
    NotText,
    #[error("the amount {0:?} is not a TON amount")]
    NotTon(String),
    #[error("the amount {0:?} is not positive")]
    NotPositive(String),
    #[error("the amount {0:?} has more than 9 decimals")]
    TooPrecise(String),
}

/// A TON amount as Fragment gives it: a JSON string (`"0.2345"`, `"0.2345 TON"`,
/// `"1,000.5"`) or a JSON number (`0.2345`), read exactly from its text. More than nine
/// decimals, a negative or zero amount, or another currency are refused.
fn parse_ton_amount(raw: &RawValue) -> Result<Nanotons, AmountError> {
    let literal = raw.get().trim();
    let text = if literal.starts_with('"') {
        serde_json::from_str::<String>(literal).map_err(|_| AmountError::NotText)?
    } else {
        literal.to_owned()
    };
    let shown = shorten(&text, 40);
    let trimmed = text.trim();
    let number = match trimmed.get(trimmed.len().saturating_sub(3)..) {
        Some(unit) if unit.eq_ignore_ascii_case("ton") => trimmed[..trimmed.len() - 3].trim_end(),
        _ => trimmed,
    };
    let Some(number) = without_thousands_separators(number) else {
        return Err(AmountError::NotTon(shown));
    };
    let ton = if number.contains(['e', 'E']) {
        Decimal::from_scientific(&number)
    } else {
        Decimal::from_str_exact(&number)
    };
    let Ok(ton) = ton else {
        return Err(AmountError::NotTon(shown));
    };
    if ton <= Decimal::ZERO {
        return Err(AmountError::NotPositive(shown));
    }
    Nanotons::from_ton(ton).ok_or(AmountError::TooPrecise(shown))
}

/// `1,234,567.5` → `1234567.5`; text without commas as it is; commas anywhere but between
/// groups of three integer digits (a decimal comma, say) → `None`.
fn without_thousands_separators(number: &str) -> Option<String> {
    if !number.contains(',') {
        return Some(number.to_owned());
    }
    let (integer, fraction) = match number.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (number, None),
    };
    let mut groups = integer.split(',');
    let first = groups.next()?;
    let digits = |g: &str| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit());
    if !digits(first) || first.len() > 3 {
        return None;
    }
    let mut joined = first.to_owned();
    for group in groups {
        if group.len() != 3 || !digits(group) {
            return None;
        }
        joined.push_str(group);
    }
    if let Some(fraction) = fraction {
        joined.push('.');
        joined.push_str(fraction);
    }
    Some(joined)
}

pub(crate) fn read_payment(
    answer: &Value,
    now: DateTime<Utc>,
) -> Result<PaymentRequest, MarketError> {
    let bad = |why: &str| MarketError::BadResponse(why.to_owned());
    let transaction = answer
        .get("transaction")
        .filter(|t| t.is_object())
        .ok_or_else(|| bad("the answer has no transaction"))?;
    let messages = transaction
        .get("messages")
        .and_then(Value::as_array)
        .filter(|messages| !messages.is_empty())
        .ok_or_else(|| bad("the transaction has no messages"))?
        .iter()
        .map(read_message)
        .collect::<Result<Vec<_>, _>>()?;
    let valid_until = match transaction.get("validUntil") {
        None | Some(Value::Null) => now + DEFAULT_PAYMENT_WINDOW,
        Some(value) => {
            let seconds = match value {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            seconds
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .ok_or_else(|| bad("the transaction's validUntil is not a time"))?
        }
    };
    Ok(PaymentRequest {
        messages,
        valid_until,
    })
}

fn read_message(message: &Value) -> Result<TransferMessage, MarketError> {
    let bad = |why: &str| MarketError::BadResponse(why.to_owned());
    let destination = message
        .get("address")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("a message has no address"))?
        .to_owned();
    // Nanotons, as TON Connect sends them: a decimal string, or a JSON integer (which
    // serde_json keeps exact); a fraction is refused, never rounded.
    let amount = match message.get("amount") {
        Some(Value::String(text)) => Nanotons::parse(text.trim()),
        Some(Value::Number(n)) => n.as_u64().map(Nanotons),
        _ => None,
    }
    .filter(|amount| amount.0 > 0)
    .ok_or_else(|| bad("a message's amount is not a positive count of nanotons"))?;
    let payload = match message.get("payload") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(p.trim().to_owned()),
        Some(_) => return Err(bad("a message's payload is not base64 text")),
    };
    // The wallet sends plain transfers; a message that needs a contract deployed with it
    // cannot be paid as asked.
    if message.get("stateInit").is_some_and(|s| !s.is_null()) {
        return Err(bad(
            "a message asks for a stateInit the wallet does not attach",
        ));
    }
    Ok(TransferMessage {
        destination,
        amount,
        payload,
    })
}

/// The `account` parameter: the shop wallet as a TON Connect wallet reports itself.
pub(crate) fn account_json(wallet: &WalletAccount) -> String {
    json!({
        "address": wallet.address,
        "chain": MAINNET_CHAIN,
        "walletStateInit": wallet.state_init,
        "publicKey": wallet.public_key,
    })
    .to_string()
}

/// The `device` parameter: a TON Connect device descriptor like a wallet app sends. Four
/// messages at most, what a v4r2 wallet can sign in one transfer, so Fragment never asks for
/// more than the shop wallet can send.
pub(crate) fn device_json() -> String {
    json!({
        "platform": "windows",
        "appName": "Tonkeeper",
        "appVersion": "4.0.0",
        "maxProtocolVersion": 2,
        "features": [
            "SendTransaction",
            {"name": "SendTransaction", "maxMessages": 4},
        ],
    })
    .to_string()
}

/// The confirmation Fragment asks for when a payment is sent: `getBuyStarsLink`'s
/// `confirm_method` (a method of its API) and `confirm_params` (the form parameters that name
/// the order), followed as given, the way the public clients do; `confirmReq(id)` when the
/// answer names none. Our own `account`, `device` and `boc` are added to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Confirmation {
    pub(crate) method: String,
    pub(crate) params: Vec<(String, String)>,
}

/// The confirmation method when Fragment names none.
const DEFAULT_CONFIRM_METHOD: &str = "confirmReq";

/// Parameters we set ourselves, never taken from Fragment's `confirm_params`.
const OWN_CONFIRM_PARAMS: [&str; 4] = ["method", "account", "device", "boc"];

pub(crate) fn read_confirmation(
    answer: &Value,
    request_id: &str,
) -> Result<Confirmation, MarketError> {
    let bad = |why: String| MarketError::BadResponse(why);
    let is_name = |text: &str, first_letter: bool| {
        (1..=64).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && (!first_letter || text.as_bytes()[0].is_ascii_alphabetic())
    };
    let method = match answer.get("confirm_method") {
        None | Some(Value::Null) => DEFAULT_CONFIRM_METHOD.to_owned(),
        Some(Value::String(method)) if is_name(method, true) => method.clone(),
        Some(other) => {
            return Err(bad(format!(
                "the payment link names {} as its confirmation method",
                shorten(&other.to_string(), 40)
            )))
        }
    };
    let params = match answer.get("confirm_params") {
        None | Some(Value::Null) => vec![("id".to_owned(), request_id.to_owned())],
        Some(Value::Object(fields)) if fields.len() <= 16 => {
            let mut params = Vec::with_capacity(fields.len());
            for (name, value) in fields {
                if !is_name(name, false) {
                    return Err(bad("a confirmation parameter has an unusable name".into()));
                }
                if OWN_CONFIRM_PARAMS.contains(&name.as_str()) {
                    continue;
                }
                let text = match value {
                    Value::String(text) if text.len() <= 1_024 => text.clone(),
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    _ => {
                        return Err(bad(format!(
                            "the confirmation parameter {name} is not a short value"
                        )))
                    }
                };
                params.push((name.clone(), text));
            }
            params
        }
        Some(_) => {
            return Err(bad(
                "the payment link's confirm_params is not an object".into()
            ))
        }
    };
    Ok(Confirmation { method, params })
}

/// Where the buy page's state says an order is (`updateStarsBuyState`): its `mode`, and
/// whether the page needs to update again. `done` without `need_update` is delivered, as the
/// public clients read it.
pub(crate) fn read_buy_state(answer: &Value) -> Option<(String, bool)> {
    let mode = answer.get("mode").and_then(Value::as_str)?;
    let need_update = answer
        .get("need_update")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Some((shorten(mode, 32), mode == "done" && !need_update))
}

/// The `dh` nonce the buy page sends with its state updates: a random nine- or ten-digit
/// number.
pub(crate) fn state_nonce() -> String {
    // 31 random bits of a v4 UUID, kept in 100,000,000..=2,147,483,647 like the page's.
    let random = (Uuid::new_v4().as_u128() as u32) & 0x7FFF_FFFF;
    (100_000_000 + random % (2_147_483_647 - 100_000_000 + 1)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn ton_amounts_are_read_exactly_from_strings_and_numbers() {
        let cases: &[(&str, u64)] = &[
            (r#""0.2345""#, 234_500_000),
            ("0.2345", 234_500_000),
            ("1.123456789", 1_123_456_789),
            (r#""12.5 TON""#, 12_500_000_000),
            (r#""1,234.000000001""#, 1_234_000_000_001),
            ("0.100000000000000000", 100_000_000),
            ("2", 2_000_000_000),
            ("5e-3", 5_000_000),
            ("18446744073.709551615", u64::MAX),
        ];
        for (json, nano) in cases {
            assert_eq!(parse_ton_amount(&raw(json)), Ok(Nanotons(*nano)), "{json}");
        }
        for json in [
            "0.1234567891",
            r#""0,2345""#,
            r#""1.95 USDT""#,
            "-1",
            "0",
            "null",
            r#""""#,
            "99999999999999999999999999999999",
            "18446744073.709551616",
        ] {
            assert!(parse_ton_amount(&raw(json)).is_err(), "{json}");
        }
    }

    #[test]
    fn an_order_needs_a_request_id_and_a_price() {
        let order = read_order(br#"{"req_id":"a1B2c3","amount":0.2345,"ok":true}"#).unwrap();
        assert_eq!(order.request_id, "a1B2c3");
        assert_eq!(order.cost, Nanotons(234_500_000));
        assert_eq!(
            read_order(br#"{"req_id":77,"amount":"1"}"#)
                .unwrap()
                .request_id,
            "77"
        );
        assert!(read_order(br#"{"amount":"1"}"#).is_err());
        assert!(read_order(br#"{"req_id":"x"}"#).is_err());
    }

    #[test]
    fn a_payment_is_read_into_exact_transfers() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let answer = json!({"ok": true, "transaction": {"validUntil": 1_700_000_300, "messages": [
            {"address": "EQBAjaOyi2wGWlk-EDkSabqqnF-MrrwMadnwqrurKpkla9nE", "amount": "234500000", "payload": "te6ccgEBAQEAAgAAAA=="},
            {"address": "0:ab", "amount": 5}
        ]}});
        let payment = read_payment(&answer, now).unwrap();
        assert_eq!(payment.valid_until.timestamp(), 1_700_000_300);
        assert_eq!(payment.messages.len(), 2);
        assert_eq!(payment.messages[0].amount, Nanotons(234_500_000));
        assert_eq!(
            payment.messages[0].payload.as_deref(),
            Some("te6ccgEBAQEAAgAAAA==")
        );
        assert_eq!(payment.messages[1].amount, Nanotons(5));
        assert_eq!(payment.messages[1].payload, None);

        let without_deadline =
            json!({"transaction": {"messages": [{"address": "0:ab", "amount": "1"}]}});
        assert_eq!(
            read_payment(&without_deadline, now).unwrap().valid_until,
            now + DEFAULT_PAYMENT_WINDOW
        );
        for bad in [
            json!({}),
            json!({"transaction": {"messages": []}}),
            json!({"transaction": {"messages": [{"address": "0:ab", "amount": 0.5}]}}),
            json!({"transaction": {"messages": [{"address": "0:ab", "amount": "0.5"}]}}),
            json!({"transaction": {"messages": [{"amount": "1"}]}}),
            json!({"transaction": {"messages": [{"address": "0:ab", "amount": "1", "stateInit": "te6"}]}}),
            json!({"transaction": {"validUntil": "soon", "messages": [{"address": "0:ab", "amount": "1"}]}}),
        ] {
            assert!(read_payment(&bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_wallet_is_described_as_ton_connect_does() {
        let wallet = WalletAccount {
            address: "0:abc".into(),
            public_key: "ff".repeat(32),
            state_init: "te6cc".into(),
        };
        let account: Value = serde_json::from_str(&account_json(&wallet)).unwrap();
        assert_eq!(account["address"], "0:abc");
        assert_eq!(account["chain"], "-239");
        assert_eq!(account["walletStateInit"], "te6cc");
        assert_eq!(account["publicKey"], "ff".repeat(32));
        let device: Value = serde_json::from_str(&device_json()).unwrap();
        assert_eq!(device["maxProtocolVersion"], 2);
        assert_eq!(device["features"][1]["maxMessages"], 4);
    }

    #[test]
    fn the_confirmation_is_followed_as_fragment_names_it() {
        let named = json!({
            "confirm_method": "confirmStarsReq",
            "confirm_params": {"id": "req-9", "ref": 42, "boc": "not ours to take", "fast": true}
        });
        let confirmation = read_confirmation(&named, "req-9").unwrap();
        assert_eq!(confirmation.method, "confirmStarsReq");
        assert_eq!(
            confirmation.params,
            vec![
                ("id".to_owned(), "req-9".to_owned()),
                ("ref".to_owned(), "42".to_owned()),
                ("fast".to_owned(), "true".to_owned()),
            ]
        );
        let unnamed = read_confirmation(&json!({"ok": true}), "req-9").unwrap();
        assert_eq!(unnamed.method, "confirmReq");
        assert_eq!(unnamed.params, vec![("id".to_owned(), "req-9".to_owned())]);
        for bad in [
            json!({"confirm_method": "confirm Req"}),
            json!({"confirm_method": 7}),
            json!({"confirm_params": ["id"]}),
            json!({"confirm_params": {"id": {"nested": true}}}),
            json!({"confirm_params": {"bad name": "x"}}),
        ] {
            assert!(read_confirmation(&bad, "req-9").is_err(), "{bad}");
        }
    }

    #[test]
    fn the_buy_state_is_done_only_without_another_update() {
        let state = |v: Value| read_buy_state(&v);
        assert_eq!(
            state(json!({"mode": "done", "need_update": false})),
            Some(("done".into(), true))
        );
        assert_eq!(
            state(json!({"mode": "done", "need_update": true})),
            Some(("done".into(), false))
        );
        assert_eq!(state(json!({"mode": "new"})), Some(("new".into(), false)));
        assert_eq!(state(json!({"ok": true})), None);
    }

    #[test]
    fn state_nonces_stay_in_the_pages_range() {
        for _ in 0..1_000 {
            let nonce: u64 = state_nonce().parse().unwrap();
            assert!((100_000_000..=2_147_483_647).contains(&nonce), "{nonce}");
        }
    }
}
