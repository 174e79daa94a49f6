//! Stars fulfilment through Fragment, paid in TON from the shop's own wallet.
//!
//! - [`market`]: what we ask Fragment (find the recipient, open an order, get the transfer
//!   that pays it, ask how the order went): the [`market::StarsMarket`] interface.
//! - [`client`]: the live [`market::StarsMarket`] over Fragment's web API (API hash scraped
//!   from the page, session cookies from `FRAGMENT_COOKIES`, retries, circuit breaker);
//!   `wire` (private to it) says what Fragment's answers mean.
//! - [`ton`]: TON amounts, the shop wallet's signed transfers and the [`ton::TonChain`]
//!   interface to a TON HTTP API (wallet state, broadcast, finding a transaction).
//!
//! The live implementations ([`client`], `wallet`, `toncenter`), the sandbox and the
//! fulfilment worker build on these two interfaces, so the worker runs the same code against
//! Fragment and the blockchain, the sandbox, and the fakes the tests use.

pub mod client;
pub mod market;
pub mod ton;
mod wire;
