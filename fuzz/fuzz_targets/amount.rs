//! Amounts as users, admins and Heleket write them (`Amount::parse`, `SignedAmount::parse`).
//!
//! Never a panic; whatever is accepted is strictly positive (or, signed, non-zero), at most
//! `MAX_AMOUNT`, at most nine decimals, the same number `rust_decimal` reads from the text,
//! and prints back to text that parses to the same amount.
#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;
use starledger_ledger::money::{Amount, SignedAmount, MAX_AMOUNT, MAX_SCALE};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(amount) = Amount::parse(text) {
        let value = amount.value();
        assert!(
            value > Decimal::ZERO && value <= MAX_AMOUNT,
            "{text:?} gave {value}"
        );
        assert!(value.scale() <= MAX_SCALE, "{text:?} gave {value}");
        assert_eq!(Decimal::from_str(text).ok(), Some(value), "{text:?}");
        assert_eq!(Amount::parse(&amount.to_string()), Ok(amount), "{text:?}");
    }
    if let Ok(signed) = SignedAmount::parse(text) {
        let value = signed.value();
        assert!(
            !value.is_zero() && value.abs() <= MAX_AMOUNT,
            "{text:?} gave {value}"
        );
        assert!(value.scale() <= MAX_SCALE, "{text:?} gave {value}");
        let printed = if signed.negative {
            format!("-{}", signed.magnitude)
        } else {
            signed.magnitude.to_string()
        };
        assert_eq!(SignedAmount::parse(&printed), Ok(signed), "{text:?}");
    }
});
