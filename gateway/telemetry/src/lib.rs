//! What the service tells its operators: the catalogue of every metric `/metrics` shows
//! ([`metrics_catalog`]), and ledger commands run and counted under those names
//! ([`commands`]).
//!
//! May depend on: `starledger-ledger`. Everything in the gateway that records a metric
//! depends on this crate, so it sits at the bottom, next to the ledger.

pub mod commands;
pub mod metrics_catalog;
