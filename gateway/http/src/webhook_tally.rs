//! Heleket webhooks of the last hour, by outcome, as this process answered them (the
//! console's overview shows them). One bucket per minute, sixty of them, so counting is a
//! few instructions under a lock and the memory is fixed. Time is passed in (minutes since
//! the epoch), so the window is tested without waiting.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// Minutes the tally covers.
pub const WINDOW_MINUTES: u64 = 60;

#[derive(Default)]
struct Bucket {
    minute: u64,
    counts: BTreeMap<&'static str, u64>,
}

/// The last hour's webhooks by outcome.
pub struct WebhookTally {
    buckets: Mutex<Vec<Bucket>>,
}

impl Default for WebhookTally {
    fn default() -> Self {
        Self {
            buckets: Mutex::new((0..WINDOW_MINUTES).map(|_| Bucket::default()).collect()),
        }
    }
}

impl WebhookTally {
    /// Counts one webhook answered with `outcome` in `minute`.
    pub fn record(&self, outcome: &'static str, minute: u64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = &mut buckets[(minute % WINDOW_MINUTES) as usize];
        if bucket.minute != minute {
            bucket.minute = minute;
            bucket.counts.clear();
        }
        *bucket.counts.entry(outcome).or_default() += 1;
    }

    /// The counts by outcome of the hour ending with `minute`.
    pub fn last_hour(&self, minute: u64) -> BTreeMap<&'static str, u64> {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut totals = BTreeMap::new();
        for bucket in buckets.iter() {
            if bucket.minute + WINDOW_MINUTES > minute && bucket.minute <= minute {
                for (outcome, count) in &bucket.counts {
                    *totals.entry(*outcome).or_default() += count;
                }
            }
        }
        totals
    }
}

/// This process's tally.
pub fn tally() -> &'static WebhookTally {
    static TALLY: std::sync::OnceLock<WebhookTally> = std::sync::OnceLock::new();
    TALLY.get_or_init(WebhookTally::default)
}

/// The minute `now` falls in, counted from the epoch.
pub fn minute_of(now: chrono::DateTime<chrono::Utc>) -> u64 {
    (now.timestamp().max(0) / 60) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_of_outcomes_is_kept_and_older_ones_drop_out() {
        let tally = WebhookTally::default();
        let start = 1_000_000;
        tally.record("recorded", start);
        tally.record("recorded", start);
        tally.record("refused", start + 30);
        tally.record("duplicate", start + 59);
        let hour = tally.last_hour(start + 59);
        assert_eq!(hour.get("recorded"), Some(&2));
        assert_eq!(hour.get("refused"), Some(&1));
        assert_eq!(hour.get("duplicate"), Some(&1));
        // An hour later the first minute has left the window.
        let later = tally.last_hour(start + 60);
        assert_eq!(later.get("recorded"), None);
        assert_eq!(later.get("refused"), Some(&1));
        // Its bucket is reused for a new minute without its old counts.
        tally.record("recorded", start + 60);
        assert_eq!(tally.last_hour(start + 60).get("recorded"), Some(&1));
        assert!(tally.last_hour(start + 200).is_empty());
    }
}
