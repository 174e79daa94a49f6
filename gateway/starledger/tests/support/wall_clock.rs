//! A wall clock that moves only when a test moves it: shared by the worker and the fakes of
//! the outside world, it takes them all past a deadline at once, without sleeping.

use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use starledger_outbound::resilience::WallClock;

/// Starts at the real time (so dates it gives look like today's), then stands still.
#[derive(Debug)]
pub struct ManualWallClock(Mutex<DateTime<Utc>>);

impl ManualWallClock {
    pub fn new() -> Self {
        Self(Mutex::new(Utc::now()))
    }

    /// Moves the clock `by` forward.
    pub fn advance(&self, by: std::time::Duration) {
        let by = chrono::Duration::from_std(by).expect("a duration a test can name");
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Default for ManualWallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl WallClock for ManualWallClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
