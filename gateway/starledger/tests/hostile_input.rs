//! Property tests of everything that parses outside input: webhook bodies and their
//! signatures, order ids, amounts and stored events. Random and adversarial inputs must give
//! a clear error, never a panic, and nothing invalid may ever be accepted.
//!
//! Beside the coverage-guided fuzz targets in `fuzz/` (see docs/testing.md, "Fuzzing"), which CI does
//! not run; what they found is pinned here as plain tests. Case counts are bounded so CI
//! stays quick; `PROPTEST_CASES=100000` runs a longer session.

use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use starledger_heleket::sign::{php_json_encode, sign_webhook, verify_webhook};
use starledger_heleket::{OrderId, Webhook};
use starledger_ledger::account::{decide, Account, AccountCommand};
use starledger_ledger::events::{AccountEvent, CURRENT_VERSIONS};
use starledger_ledger::ids::RechargeId;
use starledger_ledger::money::{Amount, MAX_AMOUNT, MAX_SCALE};
use starledger_ledger::testing::flow;

const KEY: &str = "merchant-test-key";

/// An account of user 1 with a pending recharge of 10 TON (the ledger's test builders).
fn pending_recharge_of_ten() -> (Account, RechargeId) {
    let user = flow::user(1);
    let mut account = Account::default();
    for command in [flow::register(), flow::request_recharge(user, "r1", "10")] {
        for event in decide(user, &account, &command).unwrap() {
            account.evolve(&event);
        }
    }
    (account, RechargeId::derive(user, &flow::key("r1")))
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

/// JSON values the way Heleket could send them: nested, unicode, slashes, numbers.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9/\\\\\"'<>&é€😀 .:-]{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z_/é]{1,8}", inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(("[a-z_/é]{1,10}", json_value()), 0..8)
        .prop_map(|fields| fields.into_iter().filter(|(k, _)| k != "sign").collect())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_verify_and_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(verify_webhook(&bytes, KEY).is_err());
    }

    #[test]
    fn arbitrary_text_with_a_random_sign_never_verifies(
        object in json_object(),
        sign in "[0-9a-f]{32}",
    ) {
        let mut object = object;
        object.insert("sign".into(), Value::String(sign));
        let body = Value::Object(object).to_string();
        prop_assert!(verify_webhook(body.as_bytes(), KEY).is_err());
    }

    #[test]
    fn a_signed_body_verifies_and_any_change_to_it_does_not(
        object in json_object(),
        extra in "[a-z]{1,6}",
        replacement in json_value(),
    ) {
        let signed = sign_webhook(Value::Object(object.clone()), KEY);
        let body = signed.to_string();
        let verified = verify_webhook(body.as_bytes(), KEY);
        prop_assert_eq!(verified, Ok(Value::Object(object.clone())));
        prop_assert!(verify_webhook(body.as_bytes(), "another-key").is_err());

        // A new field, or any field's value replaced by one Heleket would encode differently
        // (PHP decodes `{}` and `[]` alike, so those two are the same body to Heleket).
        let mut added = signed.clone();
        added[format!("x_{extra}")] = Value::Bool(true);
        prop_assert!(verify_webhook(added.to_string().as_bytes(), KEY).is_err());
        if let Some((name, old)) = object.iter().next() {
            if php_json_encode(old) != php_json_encode(&replacement) {
                let mut changed = signed.clone();
                changed[name] = replacement.clone();
                prop_assert!(verify_webhook(changed.to_string().as_bytes(), KEY).is_err());
            }
        }
    }

    #[test]
    fn webhook_fields_never_panic_and_never_credit_an_invalid_amount(
        object in json_object(),
        amount in json_value(),
        status in "(paid|paid_over|wrong_amount|locked|refund_fail|cancel|check|[a-z_]{0,12})",
        payer_currency in "(TON|USDT|ton|[A-Z]{0,6})",
    ) {
        let mut object = object;
        object.insert("uuid".into(), Value::from("u-1"));
        object.insert("order_id".into(), Value::from("sl_1_0123456789abcdef0123456789abcdef"));
        object.insert("currency".into(), Value::from("TON"));
        object.insert("payer_currency".into(), Value::from(payer_currency.clone()));
        object.insert("status".into(), Value::from(status));
        object.insert("payment_amount".into(), amount);
        if let Ok(webhook) = Webhook::from_verified(&Value::Object(object)) {
            // Whatever the fields say, the ledger credits only a valid amount, in its own
            // coin, within the invoice plus the tolerance.
            let Some(report) = webhook.payment.report() else { return Ok(()) };
            let (account, recharge_id) = pending_recharge_of_ten();
            let command = AccountCommand::RecordPayment {
                recharge_id,
                report,
                overpay_tolerance_percent: 10,
            };
            if let Ok(events) = decide(flow::user(1), &account, &command) {
                if let Some(AccountEvent::RechargeSettled(settled)) = events.first() {
                    let credited = settled.credited.value();
                    prop_assert_eq!(payer_currency.as_str(), "TON");
                    prop_assert!(credited > Decimal::ZERO);
                    prop_assert!(credited <= Decimal::from(11));
                    prop_assert!(credited <= MAX_AMOUNT);
                    prop_assert!(credited.scale() <= MAX_SCALE);
                }
            }
        }
    }

    #[test]
    fn order_ids_never_panic_and_round_trip_when_accepted(text in "(sl_[0-9]{0,20}_[0-9a-f]{0,34}|.{0,64})") {
        if let Ok(order) = OrderId::parse(&text) {
            prop_assert_eq!(OrderId::parse(&order.to_string()), Ok(order));
        }
    }

    #[test]
    fn accepted_amounts_are_positive_bounded_exact_and_round_trip(
        text in "([-+]?[0-9]{0,12}(\\.[0-9]{0,12})?([eE][-+]?[0-9]{1,3})?|.{0,20})",
    ) {
        if let Ok(amount) = Amount::parse(&text) {
            let value = amount.value();
            prop_assert!(value > Decimal::ZERO);
            prop_assert!(value <= MAX_AMOUNT);
            prop_assert!(value.scale() <= MAX_SCALE);
            prop_assert_eq!(Amount::parse(&amount.to_string()), Ok(amount));
        }
    }

    #[test]
    fn stored_events_that_do_not_decode_give_an_error_not_a_panic(
        index in 0..CURRENT_VERSIONS.len(),
        version in -1..4i32,
        data in prop_oneof![
            json_object().prop_map(|o| Value::Object(o).to_string()),
            ".{0,64}".prop_map(String::from),
        ],
    ) {
        let (event_type, _) = CURRENT_VERSIONS[index];
        let _ = AccountEvent::decode(event_type, version, &data);
        let _ = AccountEvent::decode("NoSuchEvent", version, &data);
    }
}

/// Found by `cargo fuzz` (target `webhook`): a float was read back from the text we signed as
/// a different float, so the re-encoding, and the signature, no longer matched.
#[test]
fn floats_in_a_signed_body_survive_the_round_trip() {
    for text in [
        r#"{"e":7e-31}"#,
        r#"{"rate":0.30000000000000004}"#,
        r#"{"a":1.7976931348623157e308,"b":5e-324}"#,
        r#"{"commission":0.1,"amount":"10.5"}"#,
    ] {
        let body: Value = serde_json::from_str(text).unwrap();
        let signed = sign_webhook(body.clone(), KEY).to_string();
        assert_eq!(verify_webhook(signed.as_bytes(), KEY), Ok(body), "{text}");
    }
}
