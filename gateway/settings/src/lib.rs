//! Reading settings from the environment: the one place a variable's text becomes a value,
//! and the [`Secret`] type that keeps keys and tokens out of every log line.
//!
//! Each crate of the gateway owns its settings (Heleket's, Fragment's, the bot's, the HTTP
//! server's) and reads them through [`Env`]; the `starledger` binary only gathers them. A
//! missing or malformed value is a [`ConfigError`] that names the variable; the binary turns
//! it into exit code 2.
//!
//! Depends on nothing else in the workspace.

pub mod secret;

use std::fmt;
use std::time::Duration;

pub use secret::Secret;

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

pub fn problem(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

/// Reads variables through a function, so tests need not touch the process environment.
pub struct Env<F: Fn(&str) -> Option<String>>(pub F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// A whole number within `range`, or `default` when unset.
    pub fn number<T>(
        &self,
        variable: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        match self.get(variable) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<T>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    problem(
                        variable,
                        format!(
                            "{text:?} is not a number from {} to {}",
                            range.start(),
                            range.end()
                        ),
                    )
                }),
        }
    }

    /// A number of seconds within `range`, or `default` when unset.
    pub fn seconds(
        &self,
        variable: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.number(variable, default, range)
            .map(Duration::from_secs)
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`), or `default` when unset.
    pub fn flag(&self, variable: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(variable).map(|t| t.trim().to_lowercase()) {
            None => Ok(default),
            Some(t) if ["true", "1", "yes"].contains(&t.as_str()) => Ok(true),
            Some(t) if ["false", "0", "no"].contains(&t.as_str()) => Ok(false),
            Some(t) => Err(problem(variable, format!("{t:?} is not true or false"))),
        }
    }
}

/// The entries of a comma-separated setting, trimmed, empty ones left out.
pub fn entries<F: Fn(&str) -> Option<String>>(env: &Env<F>, variable: &str) -> Vec<String> {
    env.get(variable)
        .map(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
