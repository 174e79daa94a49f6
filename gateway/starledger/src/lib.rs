//! The `starledger` binary's library half: the settings every command reads, and `serve`,
//! which wires the gateway's crates together. The binary (`main.rs`) puts a CLI on it; the
//! black-box tests in `tests/` and `starledger-bench` start the same [`serve::Application`].
//!
//! - [`config`]: settings from the environment, gathered from the crates that own them and
//!   parsed once at start-up.
//! - [`logs`]: log lines on stderr, as text (coloured only on a terminal) or JSON.
//! - [`serve`]: `starledger serve`, wiring all of it together and shutting it down in order.
//!
//! May depend on every gateway crate; nothing depends on it except `starledger-bench`.
//! The gateway's crates, bottom up (each may depend only on the ones before it):
//!
//! - `starledger-telemetry`: the metric catalogue, counted ledger commands.
//! - `starledger-settings`: reading the environment, `Secret`.
//! - `starledger-outbound`: calling outside APIs (breaker, retries, clocks).
//! - `starledger-heleket`: the payment provider. `starledger-fulfilment`: Fragment and TON.
//! - `starledger-shop`: the core both front doors call; settlement; the reconciler.
//! - `starledger-bot` and `starledger-http`: the front doors; neither imports the other.

pub mod config;
pub mod logs;
pub mod prometheus;
pub mod serve;
