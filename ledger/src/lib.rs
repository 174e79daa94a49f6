//! starledger's money core: the domain, its events, the command handler and the event store.
//!
//! - [`money`], [`ids`]: newtypes parsed at the edge (amounts, currencies, users, derived ids).
//! - [`events`]: the account events, their schema versions and upcasting.
//! - [`postings`]: double-entry postings, the chart of accounts, the trial balance.
//! - [`account`]: the aggregate as pure `decide` / `evolve` functions.
//! - [`pricing`]: what a Stars order costs.
//! - [`commands`]: the handler: load, decide, append with retry; idempotency.
//! - [`store`]: the `EventStore` trait, SQLite and PostgreSQL backends, group commit, tailing.
//! - [`chain`]: the hash chain over the log.
//! - [`audit`]: one-pass verification of the chain and the ledger invariants;
//!   [`parallel_audit`] runs it over the cores, [`checkpoint`] lets it start from a verified
//!   checkpoint.
//!
//! Nothing here knows about HTTP, Telegram or Redis.

pub mod account;
pub mod audit;
pub mod chain;
pub mod checkpoint;
pub mod commands;
pub mod events;
pub mod ids;
pub mod money;
pub mod parallel_audit;
pub mod postings;
pub mod pricing;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
