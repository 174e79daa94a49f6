//! Heleket webhook bodies: signature verification and field parsing.
//!
//! Any bytes: verifying them never panics, and whatever verifies yields fields that either
//! parse into a usable webhook or give an error; judged by the ledger's rules on a pending
//! recharge of 10 TON, a credit is only ever in TON, positive, at most nine decimals and at
//! most the invoice plus the 10% tolerance. Any JSON object: signed the way Heleket signs, it verifies and
//! gives back exactly the object (the PHP-style encoding and the verification agree), and
//! under another key it does not verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;
use serde_json::Value;
use starledger_ledger::account::{decide, Account, AccountCommand};
use starledger_ledger::events::{AccountEvent, Invoice};
use starledger_ledger::ids::{RechargeId, UserId};
use starledger_ledger::money::{Amount, Currency, MAX_AMOUNT, MAX_SCALE};

// The gateway's own Heleket crate, without its `client` feature: the signature and wire code
// only (the ledger and small crates), which keeps the instrumented build short enough to run
// in CI; the client (reqwest, the outbound crate) is not built.
use starledger_heleket::sign::{sign_webhook, verify_webhook};
use starledger_heleket::wire::Webhook;

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
    let Some(report) = webhook.payment.report() else {
        return;
    };
    let Some((user, account, recharge_id)) = pending_recharge_of_ten() else {
        return;
    };
    let paid_in = report.paid_currency.clone();
    let command = AccountCommand::RecordPayment {
        recharge_id,
        report,
        overpay_tolerance_percent: 10,
    };
    if let Ok(events) = decide(user, &account, &command) {
        if let Some(AccountEvent::RechargeSettled(settled)) = events.first() {
            let value = settled.credited.value();
            assert_eq!(paid_in.as_deref(), Some("TON"), "credited another coin");
            assert!(value > Decimal::ZERO, "credits {value}");
            assert!(value <= Decimal::from(11), "credits {value} on an invoice of 10");
            assert!(value <= MAX_AMOUNT, "credits {value}");
            assert!(value.scale() <= MAX_SCALE, "credits {value}");
        }
    }
}

/// User 1's account with a pending recharge of 10 TON.
fn pending_recharge_of_ten() -> Option<(UserId, Account, RechargeId)> {
    let user = UserId::new(1).ok()?;
    let recharge_id = RechargeId::from_uuid(uuid::Uuid::from_u128(7));
    let mut account = Account::default();
    let commands = [
        AccountCommand::Register {
            username: None,
            language: None,
            currency: Currency::ton(),
        },
        AccountCommand::RequestRecharge {
            recharge_id,
            amount: Amount::parse("10").ok()?,
            currency: Currency::ton(),
            invoice: Invoice {
                uuid: "u-1".into(),
                url: "https://pay.example/u-1".into(),
                expires_at: chrono::DateTime::from_timestamp(1_800_000_000, 0)?,
            },
        },
    ];
    for command in commands {
        for event in decide(user, &account, &command).ok()? {
            account.evolve(&event);
        }
    }
    Some((user, account, recharge_id))
}
