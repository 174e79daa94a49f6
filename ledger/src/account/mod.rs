//! The account aggregate: one event stream per Telegram user.
//!
//! `state` folds events into the current account (evolve); `decide` turns a command and the
//! current state into new events or a typed rejection. Both are pure: no I/O, no clock, so
//! they are tested as tables of given/when/then and replayed by auditors.

mod decide;
mod state;

pub use decide::{
    checked_text, decide, is_clean_text_char, AccountCommand, PaymentReport, Rejection,
    ReportedOutcome, ReviewDecision, MAX_REASON_LEN, MAX_TOLERANCE_PERCENT,
};
pub use state::{
    Account, InvariantViolation, Profile, Purchase, PurchaseStatus, Recharge, RechargeStatus,
};

#[cfg(test)]
mod tests;
