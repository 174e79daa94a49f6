//! Heleket webhook bodies: signature verification and field parsing.
//!
//! Any bytes: verifying them never panics, and whatever verifies yields fields that either
//! parse into a usable webhook or give an error, and a credit that is positive, bounded and
//! at most nine decimals. Any JSON object: signed the way Heleket signs, it verifies and
//! gives back exactly the object (the PHP-style encoding and the verification agree), and
//! under another key it does not verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;
use serde_json::Value;
use starledger_ledger::money::{MAX_AMOUNT, MAX_SCALE};

// The gateway's own Heleket modules, compiled here from their source files: they depend only
// on the ledger and small crates, and building them alone keeps the instrumented build short
// enough to run in CI (the whole gateway would add actix, reqwest, sqlx, teloxide and tonlib).
// Should either file start to use another gateway module, this build fails and says so.
#[path = "../../gateway/src/heleket/sign.rs"]
#[allow(dead_code)]
mod sign;
#[path = "../../gateway/src/heleket/wire.rs"]
#[allow(dead_code)]
mod wire;

use sign::{sign_webhook, verify_webhook};
use wire::Webhook;

const KEY: &str = "fuzz-merchant-key";

fuzz_target!(|data: &[u8]| {
    if let Ok(verified) = verify_webhook(data, KEY) {
        check_fields(&verified);
    }
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    object.shift_remove("sign");
    let unsigned = Value::Object(object);
    let signed = sign_webhook(unsigned.clone(), KEY).to_string();
    assert_eq!(
        verify_webhook(signed.as_bytes(), KEY),
        Ok(unsigned.clone()),
        "a body we signed does not verify: {signed}"
    );
    assert!(
        verify_webhook(signed.as_bytes(), "another-key").is_err(),
        "a body verifies under another key: {signed}"
    );
    check_fields(&unsigned);
});

fn check_fields(verified: &Value) {
    let Ok(webhook) = Webhook::from_verified(verified) else {
        return;
    };
    if let Ok(credited) = webhook.credited() {
        let value = credited.value();
        assert!(value > Decimal::ZERO, "credits {value}");
        assert!(value <= MAX_AMOUNT, "credits {value}");
        assert!(value.scale() <= MAX_SCALE, "credits {value}");
    }
}
