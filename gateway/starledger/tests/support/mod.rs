//! Fakes of the outside services the Fragment fulfilment talks to, speaking their real wire
//! formats, shared by the test binaries that need them:
//!
//! - [`toncenter`]: toncenter API v2 over a one-wallet chain that executes what the shop
//!   wallet signs (seqno, expiry, signature and balance checked as the wallet contract does),
//!   plus the JSON shapes of its answers;
//! - [`fragment`]: Fragment's web API (buy page with the API hash, form-encoded `/api` calls)
//!   over orders that are delivered once the fake chain shows them paid;
//! - [`shop`]: a real ledger with customers buying Stars, and the worker stepped against it;
//! - [`app`]: the real `serve` on a database and Redis prefix of its own;
//! - [`wall_clock`]: a wall clock the test moves by hand, shared by the worker and the fakes.
//!
//! Each test binary uses only part of this, hence `allow(dead_code)` where it is declared.

pub mod app;
pub mod fragment;
pub mod pg_standby;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod servers;
pub mod shop;
pub mod toncenter;
pub mod wall_clock;
