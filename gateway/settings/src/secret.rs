//! A value that must never appear in a log line: API keys, tokens, the wallet's seed phrase.
//!
//! Its `Debug` prints `<redacted>`, so a logged configuration or error can never leak one.
//! It depends on nothing else in the crate, so the configuration and every adapter (Heleket,
//! Fragment, the bot) can hold secrets without depending on each other.

use std::fmt;

/// A value that must never appear in a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
