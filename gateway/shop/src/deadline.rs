//! What a piece of work that answers someone may still spend: the deadline of an HTTP
//! request, or of a bot reply held to the same `REQUEST_TIMEOUT_MS`.
//!
//! A plain value, so the shop core and anything else below the front doors can take it
//! without knowing where it came from: `http::deadline` sets one per request (and holds the
//! request to it), the bot builds one per reply (`bot::state::BotState::deadline`).
//!
//! A wait by choice (read-your-writes) takes its length from [`Deadline::budget`], so a
//! command that did commit answers with `"projected": false` well before the deadline instead
//! of running into it.

use std::time::Duration;

use tokio::time::Instant;

/// When the current request must be answered by.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    /// Kept back from optional waits for the work that follows them (building the answer,
    /// a read): a quarter of the timeout.
    reserve: Duration,
}

impl Deadline {
    pub fn after(timeout: Duration) -> Self {
        Self {
            at: Instant::now() + timeout,
            reserve: timeout / 4,
        }
    }

    /// The instant the answer is due; what `http::deadline`'s middleware times the request
    /// out at.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// How long an optional wait that would like `wanted` may take: never past the deadline
    /// less the reserve, so the request still answers on its own terms.
    pub fn budget(&self, wanted: Duration) -> Duration {
        let left = self.at.saturating_duration_since(Instant::now());
        wanted.min(left.saturating_sub(self.reserve))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_never_exceeds_what_is_wanted_or_what_is_left() {
        let deadline = Deadline::after(Duration::from_secs(4));
        assert_eq!(
            deadline.budget(Duration::from_millis(10)),
            Duration::from_millis(10)
        );
        assert!(deadline.budget(Duration::from_secs(60)) <= Duration::from_secs(3));
        let passed = Deadline {
            at: Instant::now(),
            reserve: Duration::from_secs(1),
        };
        assert_eq!(passed.budget(Duration::from_secs(2)), Duration::ZERO);
    }
}
