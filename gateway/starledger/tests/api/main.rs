//! Black-box tests of `starledger serve`: each starts the app on a free port against real
//! PostgreSQL and Redis when `TEST_DATABASE_URL` / `TEST_REDIS_URL` are set (SQLite and
//! in-process caches otherwise; under CI both must be set) and drives it over HTTP only.

mod admin;
mod audit;
mod auth;
mod cluster;
mod cluster_limits;
mod console;
mod degraded;
mod fulfilment;
mod helpers;
mod input;
mod live_heleket;
mod metrics_help;
mod money_rules;
mod purchases;
mod recharges;
mod replica;
mod restore;
mod sentinel;
#[path = "../support/mod.rs"]
#[allow(dead_code)] // each test binary uses its own part of the shared support
mod support;
mod visibility;
mod webhooks;
