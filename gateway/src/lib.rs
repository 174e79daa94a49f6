//! The gateway's library half: everything the `starledger` binary runs that is worth testing
//! on its own. The binary (`main.rs`) wires it to the CLI.
//!
//! - [`config`]: settings from the environment, parsed once at start-up.
//! - [`storage`]: opening the event log and the read models.
//! - [`commands`]: ledger commands run and counted for `/metrics`.
//! - [`external`]: what every client of an outside service shares (bounded reads, error
//!   descriptions without secrets, the external-call metrics).
//! - [`fragment`]: Stars fulfilment through Fragment, paid from the shop's TON wallet.
//! - [`heleket`]: the Heleket payment provider (signatures, wire types, client, sandbox).
//! - [`resilience`]: circuit breaker and retry policy for calls to outside services.
//! - [`http`]: the actix-web gateway: routes, auth, errors, webhooks, admin and audit API.
//! - [`reconciler`]: settles or fails recharges whose webhooks never came.
//! - [`serve`]: `starledger serve`, wiring all of it together and shutting it down in order.

pub mod commands;
pub mod config;
pub mod external;
pub mod fragment;
pub mod heleket;
pub mod http;
pub mod reconciler;
pub mod resilience;
pub mod serve;
pub mod storage;
