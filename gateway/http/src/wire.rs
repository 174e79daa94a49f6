//! Small types the API's JSON shares across routes, typed so the document's schemas come
//! from them: decimal strings for money, and the answer every command gives.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A balance, total or sum: a decimal string that may be negative (never a JSON number,
/// which would round money).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(
    as = Decimal,
    value_type = String,
    pattern = r"^-?[0-9]+(\.[0-9]+)?$",
    example = "0.495"
)]
#[serde(transparent)]
pub struct DecimalText(String);

impl std::fmt::Display for DecimalText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl DecimalText {
    /// `value` without trailing zeros, as balances and history show it.
    pub fn normalized(value: Decimal) -> Self {
        Self(value.normalize().to_string())
    }

    /// `value` as the ledger recorded it (an amount keeps the scale it was given with).
    pub fn exact(value: impl ToString) -> Self {
        Self(value.to_string())
    }
}

/// A positive amount of money as a decimal STRING (never a JSON number): digits, optionally
/// a dot and more digits; no sign, exponent, spaces or separators; at most 9 decimals
/// (trailing zeros aside); greater than 0 and at most 1000000000. Anything else is 422
/// `invalid_amount`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(
    value_type = String,
    pattern = r"^(0*[1-9][0-9]{0,8}(\.[0-9]{1,9}0*)?|0+\.[0-9]{0,8}[1-9]0*|0*1000000000(\.0+)?)$",
    example = "10.5"
)]
#[serde(transparent)]
pub struct AmountInput(pub String);

/// A non-zero signed amount as a decimal STRING: an optional `-` (debit) or `+` (credit)
/// followed by an amount with the rules of `AmountInput`. Anything else is 422
/// `invalid_amount`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(
    value_type = String,
    pattern = r"^[+-]?(0*[1-9][0-9]{0,8}(\.[0-9]{1,9}0*)?|0+\.[0-9]{0,8}[1-9]0*|0*1000000000(\.0+)?)$",
    example = "-2.5"
)]
#[serde(transparent)]
pub struct SignedAmountInput(pub String);
