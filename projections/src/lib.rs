//! Read models built from the starledger event log.
//!
//! - [`rows`]: the rows the gateway reads (users, balances, transactions).
//! - [`cache`]: Redis (L2) and in-process (L1) caches of those rows, position-guarded.
//!
//! Nothing here writes events; projectors only read the log and write read models.

pub mod audit;
pub mod cache;
pub mod model;
pub mod pages;
pub mod rebuild;
pub mod rows;
pub mod runtime;
pub mod store;
