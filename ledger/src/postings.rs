//! Double-entry postings: every money event moves value between ledger accounts.
//!
//! Invariant (DESIGN.md): the postings of every event sum to zero per currency, so the trial
//! balance over the whole log is zero. Customer accounts are `customer:{id}:available` and
//! `customer:{id}:reserved` and `customer:{id}:debt` (what a customer owes after a payment was
//! refunded once the credit was already spent: its balance is negative while the debt is open);
//! the shop's are `clearing:heleket` (money that came in through Heleket), `revenue:stars`
//! (delivered orders) and `equity:adjustments` (admin corrections).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::UserId;
use crate::money::{Amount, Currency};

/// One account of the chart of accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LedgerAccount {
    CustomerAvailable(UserId),
    CustomerReserved(UserId),
    /// Negative while the customer owes the shop: a refunded payment whose credit was spent.
    CustomerDebt(UserId),
    ClearingHeleket,
    RevenueStars,
    EquityAdjustments,
}

impl fmt::Display for LedgerAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CustomerAvailable(user) => write!(f, "customer:{user}:available"),
            Self::CustomerReserved(user) => write!(f, "customer:{user}:reserved"),
            Self::CustomerDebt(user) => write!(f, "customer:{user}:debt"),
            Self::ClearingHeleket => f.write_str("clearing:heleket"),
            Self::RevenueStars => f.write_str("revenue:stars"),
            Self::EquityAdjustments => f.write_str("equity:adjustments"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown ledger account {0:?}")]
pub struct UnknownAccount(String);

impl FromStr for LedgerAccount {
    type Err = UnknownAccount;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownAccount(text.to_owned());
        match text {
            "clearing:heleket" => return Ok(Self::ClearingHeleket),
            "revenue:stars" => return Ok(Self::RevenueStars),
            "equity:adjustments" => return Ok(Self::EquityAdjustments),
            _ => {}
        }
        let rest = text.strip_prefix("customer:").ok_or_else(unknown)?;
        let (id, kind) = rest.split_once(':').ok_or_else(unknown)?;
        let user = id
            .parse()
            .ok()
            .and_then(|n| UserId::new(n).ok())
            .ok_or_else(unknown)?;
        match kind {
            "available" => Ok(Self::CustomerAvailable(user)),
            "reserved" => Ok(Self::CustomerReserved(user)),
            "debt" => Ok(Self::CustomerDebt(user)),
            _ => Err(unknown()),
        }
    }
}

impl Serialize for LedgerAccount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LedgerAccount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One leg of a transfer: a signed amount on one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: LedgerAccount,
    pub currency: Currency,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

/// The two legs that move `amount` from `from` to `to`.
pub fn transfer(
    from: LedgerAccount,
    to: LedgerAccount,
    amount: Amount,
    currency: &Currency,
) -> Vec<Posting> {
    vec![
        Posting {
            account: from,
            currency: currency.clone(),
            amount: -amount.value(),
        },
        Posting {
            account: to,
            currency: currency.clone(),
            amount: amount.value(),
        },
    ]
}

/// Legs moving `amount` (a plain decimal, zero or more) out of `from` into each of `to`'s
/// accounts in turn; zero parts leave no leg. For splits such as "the debt first, the rest to
/// available", where the parts are computed and one may be zero.
pub fn split(
    from: LedgerAccount,
    to: &[(LedgerAccount, Decimal)],
    currency: &Currency,
) -> Vec<Posting> {
    let total: Decimal = to.iter().map(|(_, part)| *part).sum();
    let mut legs = Vec::with_capacity(to.len() + 1);
    if !total.is_zero() {
        legs.push(Posting {
            account: from,
            currency: currency.clone(),
            amount: -total,
        });
    }
    legs.extend(
        to.iter()
            .filter(|(_, part)| !part.is_zero())
            .map(|(account, part)| Posting {
                account: *account,
                currency: currency.clone(),
                amount: *part,
            }),
    );
    legs
}

/// The check behind the first invariant: does this set of postings balance per currency?
pub fn unbalanced_currencies(postings: &[Posting]) -> Vec<(Currency, Decimal)> {
    let mut sums: BTreeMap<&Currency, Decimal> = BTreeMap::new();
    for posting in postings {
        *sums.entry(&posting.currency).or_default() += posting.amount;
    }
    sums.into_iter()
        .filter(|(_, sum)| !sum.is_zero())
        .map(|(currency, sum)| (currency.clone(), sum))
        .collect()
}

/// Running balances of every ledger account, built by applying postings in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrialBalance {
    balances: BTreeMap<(LedgerAccount, Currency), Decimal>,
}

impl TrialBalance {
    pub fn apply(&mut self, postings: &[Posting]) {
        for posting in postings {
            *self
                .balances
                .entry((posting.account, posting.currency.clone()))
                .or_default() += posting.amount;
        }
    }

    pub fn balance(&self, account: LedgerAccount, currency: &Currency) -> Decimal {
        self.balances
            .get(&(account, currency.clone()))
            .copied()
            .unwrap_or_default()
    }

    /// Sum of all accounts per currency; every entry is zero in a sound ledger.
    pub fn totals(&self) -> BTreeMap<Currency, Decimal> {
        let mut totals = BTreeMap::new();
        for ((_, currency), amount) in &self.balances {
            *totals.entry(currency.clone()).or_default() += *amount;
        }
        totals
    }

    pub fn is_zero(&self) -> bool {
        self.totals().values().all(Decimal::is_zero)
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&LedgerAccount, &Currency, &Decimal)> {
        self.balances.iter().map(|((a, c), v)| (a, c, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_round_trip() {
        let user = UserId::new(5).unwrap();
        for account in [
            LedgerAccount::CustomerAvailable(user),
            LedgerAccount::CustomerReserved(user),
            LedgerAccount::CustomerDebt(user),
            LedgerAccount::ClearingHeleket,
            LedgerAccount::RevenueStars,
            LedgerAccount::EquityAdjustments,
        ] {
            assert_eq!(
                account.to_string().parse::<LedgerAccount>().unwrap(),
                account
            );
        }
        assert!("customer:5:spent".parse::<LedgerAccount>().is_err());
        assert!("customer:-5:available".parse::<LedgerAccount>().is_err());
    }

    #[test]
    fn a_transfer_balances_and_a_lone_leg_does_not() {
        let ton = Currency::ton();
        let legs = transfer(
            LedgerAccount::ClearingHeleket,
            LedgerAccount::RevenueStars,
            Amount::parse("3.5").unwrap(),
            &ton,
        );
        assert!(unbalanced_currencies(&legs).is_empty());
        assert_eq!(unbalanced_currencies(&legs[..1]).len(), 1);
        let mut trial = TrialBalance::default();
        trial.apply(&legs);
        assert!(trial.is_zero());
        assert_eq!(
            trial.balance(LedgerAccount::RevenueStars, &ton),
            Decimal::new(35, 1)
        );
    }
}
