//! Read models built from the starledger event log.
//!
//! - [`rows`]: the rows the gateway reads (users, balances, transactions).
//! - [`model`]: what each event does to those rows (a pure fold).
//! - [`store`]: the read-model tables on PostgreSQL and SQLite, checkpoints.
//! - [`runtime`]: the checkpointed projectors that follow the log; read-your-writes waits.
//! - [`pages`]: reading the log a page ahead.
//! - [`rebuild`]: blue/green rebuild with an atomic swap.
//! - [`cache`]: Redis (L2) and in-process (L1) caches of rows, position-guarded.
//! - [`cache_projector`]: keeps the caches in step with the tables.
//! - [`cache_tail`]: each instance follows the log so other instances' writes show here soon.
//! - [`queries`]: what the gateway may read, through the cache.
//! - [`status`]: each projector's checkpoint and lag.
//! - [`audit`]: verify against a fresh replay, balances at a moment, NDJSON export.
//!
//! Nothing here writes events; projectors only read the log and write read models.

pub mod audit;
pub mod cache;
pub mod cache_projector;
pub mod cache_tail;
pub mod lease;
pub mod model;
pub mod pages;
pub mod queries;
pub mod reactor;
pub mod rebuild;
pub mod redis_target;
pub mod rows;
pub mod runtime;
pub mod status;
pub mod storage;
pub mod store;
