//! The account aggregate: one event stream per Telegram user.
//!
//! `state` folds events into the current account (evolve); `decide` turns a command and the
//! current state into new events or a typed rejection, with the money rules for what a
//! provider's report credits in `payments`, the refusals in `rejection` and the rule for free
//! text in `text`. All pure: no I/O, no clock, so they are tested as tables of
//! given/when/then and replayed by auditors.

mod decide;
mod payments;
mod rejection;
mod state;
mod text;

pub use decide::{decide, AccountCommand};
pub use payments::{PaymentReport, ReportedOutcome, ReviewDecision, MAX_TOLERANCE_PERCENT};
pub use rejection::Rejection;
pub use state::{
    Account, InvariantViolation, Profile, Purchase, PurchaseStatus, Recharge, RechargeStatus,
};
pub use text::{checked_text, is_clean_text_char, MAX_REASON_LEN};

#[cfg(test)]
mod tests;
