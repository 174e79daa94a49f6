//! The price of a Stars order in the ledger currency: stars × price per star × (1 + markup).

use rust_decimal::{Decimal, RoundingStrategy};

use crate::events::Stars;
use crate::money::{Amount, AmountError, MAX_SCALE};

/// Prices from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StarPricing {
    /// What Fragment charges per star, in the ledger currency.
    pub price_per_star: Amount,
    /// The shop's margin in percent (0 to 1000).
    pub markup_percent: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("markup must be between 0 and 1000 percent, got {0}")]
    Markup(Decimal),
    #[error("price out of range: {0}")]
    Price(#[from] AmountError),
}

impl StarPricing {
    pub fn new(price_per_star: Amount, markup_percent: Decimal) -> Result<Self, PricingError> {
        if markup_percent < Decimal::ZERO || markup_percent > Decimal::from(1000) {
            return Err(PricingError::Markup(markup_percent));
        }
        Ok(Self {
            price_per_star,
            markup_percent,
        })
    }

    /// The customer price, rounded up to the currency's smallest unit so the shop never
    /// sells below cost through rounding.
    pub fn quote(&self, stars: Stars) -> Result<Amount, PricingError> {
        let base = self.price_per_star.value() * Decimal::from(stars.get());
        let with_markup = base * (Decimal::ONE + self.markup_percent / Decimal::ONE_HUNDRED);
        let rounded = with_markup.round_dp_with_strategy(MAX_SCALE, RoundingStrategy::AwayFromZero);
        Ok(Amount::new(rounded)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_applies_markup_and_rounds_up() {
        let pricing =
            StarPricing::new(Amount::parse("0.0045").unwrap(), Decimal::from(10)).unwrap();
        assert_eq!(
            pricing.quote(Stars::new(100).unwrap()).unwrap().to_string(),
            "0.495"
        );
        let odd =
            StarPricing::new(Amount::parse("0.000000001").unwrap(), Decimal::new(5, 1)).unwrap();
        // 50 × 0.000000001 × 1.005 = 0.00000005025, rounded up to nine places.
        assert_eq!(
            odd.quote(Stars::new(50).unwrap()).unwrap().to_string(),
            "0.000000051"
        );
    }

    #[test]
    fn markup_is_bounded() {
        let price = Amount::parse("1").unwrap();
        assert!(StarPricing::new(price, Decimal::from(-1)).is_err());
        assert!(StarPricing::new(price, Decimal::from(1001)).is_err());
    }
}
