//! Money in the ledger: amounts and currencies, parsed once at the edge.
//!
//! Money is always a `rust_decimal::Decimal` and travels as a decimal *string* in JSON, so no
//! value ever passes through a float. An [`Amount`] is strictly positive and bounded; signed
//! sums (balances, postings) are plain `Decimal`s produced by arithmetic on amounts.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most decimal places any amount may carry: TON has 9 (nanotons).
pub const MAX_SCALE: u32 = 9;

/// Largest single amount the ledger accepts. Far above any real top-up or order; anything
/// bigger is a typo or an attack and is rejected rather than stored.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// Why a piece of text or a number is not a valid amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("amount {0:?} is not a plain decimal number like \"10.5\"")]
    NotDecimal(String),
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount has more than {MAX_SCALE} decimal places")]
    TooPrecise,
    #[error("amount exceeds the maximum of {MAX_AMOUNT}")]
    TooLarge,
}

/// A strictly positive quantity of money with at most [`MAX_SCALE`] decimals and at most
/// [`MAX_AMOUNT`]. The only ways to build one check all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

impl Amount {
    /// Checks a decimal value against the amount rules.
    pub fn new(value: Decimal) -> Result<Self, AmountError> {
        if value <= Decimal::ZERO {
            return Err(AmountError::NotPositive);
        }
        if value.normalize().scale() > MAX_SCALE {
            return Err(AmountError::TooPrecise);
        }
        if value > MAX_AMOUNT {
            return Err(AmountError::TooLarge);
        }
        Ok(Self(value.normalize()))
    }

    /// Parses user or provider text: digits, optionally one dot and more digits. Signs,
    /// exponents, spaces, separators and anything else are refused.
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        if text.is_empty() {
            return Err(AmountError::Empty);
        }
        let (whole, fraction) = match text.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (text, None),
        };
        let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits_only(whole) || fraction.is_some_and(|f| !digits_only(f)) {
            return Err(AmountError::NotDecimal(truncate_for_message(text)));
        }
        // Longer than any valid amount: refuse before Decimal parsing can overflow.
        if whole.trim_start_matches('0').len() > 10 {
            return Err(AmountError::TooLarge);
        }
        if fraction.is_some_and(|f| f.trim_end_matches('0').len() > MAX_SCALE as usize) {
            return Err(AmountError::TooPrecise);
        }
        let value = Decimal::from_str(text)
            .map_err(|_| AmountError::NotDecimal(truncate_for_message(text)))?;
        Self::new(value)
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Amount::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A signed, non-zero change of a balance, used by admin adjustments ("-2.5" takes money
/// away, "2.5" gives it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedAmount {
    pub negative: bool,
    pub magnitude: Amount,
}

impl SignedAmount {
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        match text.strip_prefix('-') {
            Some(rest) => Ok(Self {
                negative: true,
                magnitude: Amount::parse(rest)?,
            }),
            None => Ok(Self {
                negative: false,
                magnitude: Amount::parse(text.strip_prefix('+').unwrap_or(text))?,
            }),
        }
    }

    pub fn value(self) -> Decimal {
        if self.negative {
            -self.magnitude.value()
        } else {
            self.magnitude.value()
        }
    }
}

impl fmt::Display for SignedAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value().fmt(f)
    }
}

impl Serialize for SignedAmount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value().to_string())
    }
}

impl<'de> Deserialize<'de> for SignedAmount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SignedAmount::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a currency code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("currency {0:?} is not a code of 2 to 10 upper-case letters or digits")]
pub struct CurrencyError(String);

/// A currency code such as `TON` or `USDT`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Currency(String);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, CurrencyError> {
        let valid = (2..=10).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if valid {
            Ok(Self(code.to_owned()))
        } else {
            Err(CurrencyError(truncate_for_message(code)))
        }
    }

    /// The ledger's default currency, as in the seed's schema (`currency DEFAULT 'TON'`).
    pub fn ton() -> Self {
        Self("TON".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Currency::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Keeps error messages short when the offending input is huge.
pub(crate) fn truncate_for_message(text: &str) -> String {
    const LIMIT: usize = 40;
    if text.chars().count() <= LIMIT {
        text.to_owned()
    } else {
        let head: String = text.chars().take(LIMIT).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_decimals() {
        assert_eq!(Amount::parse("10.5").unwrap().to_string(), "10.5");
        assert_eq!(
            Amount::parse("0.000000001").unwrap().to_string(),
            "0.000000001"
        );
        assert_eq!(Amount::parse("7.50").unwrap().to_string(), "7.5");
    }

    #[test]
    fn refuses_everything_that_is_not_a_positive_bounded_decimal() {
        for bad in [
            "", "-1", "+1", "1e5", " 1", "1 ", "1,5", "1.", ".5", "abc", "0x10", "NaN", "１",
        ] {
            assert!(Amount::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(Amount::parse("0"), Err(AmountError::NotPositive));
        assert_eq!(Amount::parse("0.0000000001"), Err(AmountError::TooPrecise));
        assert_eq!(Amount::parse("1000000000.1"), Err(AmountError::TooLarge));
        assert_eq!(Amount::parse(&"9".repeat(400)), Err(AmountError::TooLarge));
    }

    #[test]
    fn amounts_travel_as_strings() {
        let amount = Amount::parse("1.25").unwrap();
        assert_eq!(serde_json::to_string(&amount).unwrap(), "\"1.25\"");
        assert!(serde_json::from_str::<Amount>("1.25").is_err());
        assert!(serde_json::from_str::<Amount>("\"-1\"").is_err());
    }

    #[test]
    fn signed_amounts_keep_their_sign() {
        assert_eq!(
            SignedAmount::parse("-2.5").unwrap().value(),
            Decimal::new(-25, 1)
        );
        assert_eq!(
            SignedAmount::parse("2.5").unwrap().value(),
            Decimal::new(25, 1)
        );
        assert!(SignedAmount::parse("0").is_err());
        assert!(SignedAmount::parse("--1").is_err());
    }

    #[test]
    fn currency_codes_are_upper_case() {
        assert!(Currency::parse("TON").is_ok());
        assert!(Currency::parse("USDT").is_ok());
        assert!(Currency::parse("ton").is_err());
        assert!(Currency::parse("T").is_err());
    }
}
