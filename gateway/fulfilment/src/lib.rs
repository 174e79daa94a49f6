//! Stars fulfilment through Fragment, paid in TON from the shop's own wallet.
//!
//! - [`market`]: what we ask Fragment (find the recipient, open an order, get the transfer
//!   that pays it, ask how the order went): the [`market::StarsMarket`] interface.
//! - [`client`]: the live [`market::StarsMarket`] over Fragment's web API (API hash scraped
//!   from the page, session cookies from `FRAGMENT_COOKIES`, retries, circuit breaker);
//!   `wire` (private to it) says what Fragment's answers mean.
//! - [`body`]: what a transfer's body says (Fragment's carry a comment naming the order).
//! - [`ton`]: TON amounts, the shop wallet's signed transfers and the [`ton::TonChain`]
//!   interface to a TON HTTP API (wallet state, broadcast, finding a transaction).
//! - [`wallet`]: the shop's wallet from its seed phrase: address, the `account` Fragment
//!   wants, and signed transfers (pure, no I/O).
//! - [`toncenter`]: the [`ton::TonChain`] over toncenter's HTTP API v2.
//! - [`orders`]: the open purchases, folded from the log.
//! - [`sandbox`]: an in-memory Fragment and chain where the recipient's name decides the
//!   outcome, for rehearsals, the demo and tests.
//! - [`setup`]: the worker `FRAGMENT_MODE` asks for, its settings checked at start-up.
//! - [`fulfilment`]: the worker that takes each purchase through Fragment and the wallet to
//!   delivered or refunded, safe to crash at any step.
//!
//! The live implementations ([`client`], `wallet`, `toncenter`), the sandbox and the
//! fulfilment worker build on these two interfaces, so the worker runs the same code against
//! Fragment and the blockchain, the sandbox, and the fakes the tests use.
//!
//! May depend on: the ledger, the projections (reactors, leases), `starledger-outbound`,
//! `starledger-settings` and `starledger-telemetry`. Not on the shop core or the front doors:
//! the worker records outcomes through the ledger's commands itself.

pub mod body;
pub mod client;
pub mod fulfilment;
pub mod market;
pub mod orders;
pub mod sandbox;
pub mod settings;
pub mod setup;
pub mod ton;
pub mod toncenter;
pub mod wallet;
mod wire;
