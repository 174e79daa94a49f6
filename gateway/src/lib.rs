//! The gateway's library half: everything the `starledger` binary runs that is worth testing
//! on its own. The binary (`main.rs`) wires it to the CLI.
//!
//! - [`config`]: settings from the environment, parsed once at start-up.
//! - [`storage`]: opening the event log and the read models.
//! - [`commands`]: ledger commands run and counted for `/metrics`.
//! - [`deadline`]: what a request or a bot reply may still spend, as a plain value.
//! - [`fragment`]: Stars fulfilment through Fragment, paid from the shop's TON wallet.
//! - [`heleket`]: the Heleket payment provider (signatures, wire types, client, sandbox).
//! - [`resilience`]: circuit breaker and retry policy for calls to outside services.
//! - [`outbound`]: how every client calls an outside HTTP API: attempts through the breaker,
//!   retries, answers read up to a limit, the external-request metrics.
//! - [`http`]: the actix-web gateway: routes, auth, errors, webhooks, admin and audit API.
//! - [`lease`]: one instance at a time for background work that must not run twice.
//! - [`metrics_catalog`]: every metric `/metrics` shows, with its help text.
//! - [`reactor`]: checkpointed work that follows the log and acts outside the ledger.
//! - [`settlement`]: what Heleket says about a payment, confirmed and recorded through the
//!   ledger's money rules; one path for webhooks and the reconciler.
//! - [`reconciler`]: settles or fails recharges whose webhooks never came.
//! - [`shop`]: registering, topping up and buying Stars, shared by the HTTP API and the bot.
//! - [`bot`]: the Telegram bot (commands, keyboards, limits, sessions, notifications).
//! - [`telegram_inbox`]: where the webhook route queues Telegram's updates for the bot.
//! - [`serve`]: `starledger serve`, wiring all of it together and shutting it down in order.

pub mod bot;
pub mod commands;
pub mod config;
pub mod deadline;
pub mod fragment;
pub mod heleket;
pub mod http;
pub mod lease;
pub mod metrics_catalog;
pub mod outbound;
pub mod reactor;
pub mod reconciler;
pub mod resilience;
pub mod secret;
pub mod serve;
pub mod settlement;
pub mod shop;
pub mod storage;
pub mod telegram_inbox;
