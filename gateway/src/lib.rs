//! The gateway's library half: everything the `starledger` binary runs that is worth testing
//! on its own. The binary (`main.rs`) wires it to the CLI.
//!
//! - [`config`]: settings from the environment, parsed once at start-up.
//! - [`storage`]: opening the event log and the read models.
//! - [`heleket`]: the Heleket payment provider (signatures, wire types, client, sandbox).
//! - [`resilience`]: circuit breaker and retry policy for calls to outside services.

pub mod config;
pub mod heleket;
pub mod resilience;
pub mod storage;
