//! Heleket, the crypto payment processor users top up through.
//!
//! - [`sign`]: request signatures and webhook signature verification.

pub mod sign;
