//! Calling outside services without letting their bad days become ours.
//!
//! - [`CircuitBreaker`]: after a run of consecutive failures it refuses calls for a cool-down,
//!   so a provider that is down costs us an instant error instead of a timeout per request,
//!   and is not hammered while it recovers. After the cool-down exactly one trial call goes
//!   through (half-open); its success closes the breaker, its failure re-opens it.
//! - [`RetryPolicy`]: how often and how long to wait before trying an idempotent call again,
//!   with exponential backoff and full jitter so that many callers who failed together do not
//!   retry together.
//!
//! What counts as a failure is the caller's decision: only answers that mean "the provider is
//! unwell" (timeouts, connection errors, 5xx, 429) should be recorded as failures. A refusal
//! (4xx) proves the provider is up and is recorded as a success.
//!
//! Both are plain values with no I/O: the breaker reads time from an injectable [`Clock`], so
//! its tests move time by hand instead of sleeping. Deadlines that are dates rather than
//! durations (a signed payment's `valid_until`, a session's expiry) are read from a
//! [`WallClock`], injectable the same way.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Where the breaker reads the time. Injectable so tests can move time forward by hand.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Where deadlines that are dates are read: what time it is, as the outside world (a chain's
/// validators, a cookie's expiry) counts it. Injectable so tests can move past a deadline by
/// hand instead of sleeping until it.
pub trait WallClock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// When a [`CircuitBreaker`] opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker. Zero is treated as one.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before letting one trial through.
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// What a breaker does with the next call, as metrics and health checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; failures are being counted.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// The cool-down is over: one trial call is allowed (or is in flight) and decides whether
    /// the breaker closes or opens again.
    HalfOpen,
}

/// The breaker refused the call without it being tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker is open")]
pub struct BreakerOpen;

/// Where the breaker is. `generation` changes on every transition so that outcomes of calls
/// let through in an earlier phase (say, a slow success that returns after the breaker opened)
/// do not decide the current one.
#[derive(Debug)]
struct Inner {
    phase: Phase,
    generation: u64,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed {
        failures: u32,
    },
    /// Refusing calls until `until`; after it the next call becomes the trial.
    Open {
        until: Instant,
    },
    /// The one trial call is in flight; everyone else is refused.
    Trial,
}

/// A thread-safe circuit breaker. Share it (by reference or `Arc`) between all callers of one
/// provider. Its lock is held only for a few instructions and never across an `.await`.
pub struct CircuitBreaker {
    settings: BreakerSettings,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker on the system clock.
    pub fn new(settings: BreakerSettings) -> Self {
        Self::with_clock(settings, Arc::new(SystemClock))
    }

    /// A closed breaker reading time from `clock`.
    pub fn with_clock(settings: BreakerSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            clock,
            inner: Mutex::new(Inner {
                phase: Phase::Closed { failures: 0 },
                generation: 0,
            }),
        }
    }

    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    /// Asks to make one call. The [`Permit`] must be told how the call went; dropping it
    /// untold (a cancelled call) counts as neither success nor failure.
    pub fn acquire(&self) -> Result<Permit<'_>, BreakerOpen> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let trial = match inner.phase {
            Phase::Closed { .. } => false,
            Phase::Open { until } if now < until => return Err(BreakerOpen),
            Phase::Open { .. } => {
                inner.phase = Phase::Trial;
                inner.generation += 1;
                true
            }
            Phase::Trial => return Err(BreakerOpen),
        };
        Ok(Permit {
            breaker: self,
            generation: inner.generation,
            trial,
            settled: false,
        })
    }

    pub fn state(&self) -> BreakerState {
        let now = self.clock.now();
        match self.lock().phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open,
            Phase::Open { .. } | Phase::Trial => BreakerState::HalfOpen,
        }
    }

    /// Whether the breaker is anything but closed: the provider failed recently and has not
    /// yet proved itself healthy again. This is what the `circuit_breaker_open` gauge shows.
    pub fn is_open(&self) -> bool {
        self.state() != BreakerState::Closed
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock, so a poisoned lock still holds a valid state.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn settle(&self, generation: u64, outcome: Outcome) {
        let now = self.clock.now();
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        let reopen = Phase::Open {
            until: now + self.settings.cool_down,
        };
        let next = match (inner.phase, outcome) {
            (Phase::Closed { .. }, Outcome::Success) => Phase::Closed { failures: 0 },
            (Phase::Closed { failures }, Outcome::Failure) => {
                let failures = failures.saturating_add(1);
                if failures >= self.settings.failure_threshold.max(1) {
                    reopen
                } else {
                    Phase::Closed { failures }
                }
            }
            (Phase::Closed { failures }, Outcome::Abandoned) => Phase::Closed { failures },
            (Phase::Trial, Outcome::Success) => Phase::Closed { failures: 0 },
            (Phase::Trial, Outcome::Failure) => reopen,
            // The trial was cancelled and proved nothing: the next caller may try at once.
            (Phase::Trial, Outcome::Abandoned) => Phase::Open { until: now },
            // Unreachable with a current generation (opening bumps it); keep the phase.
            (phase @ Phase::Open { .. }, _) => phase,
        };
        // Counting failures while closed is not a transition: those permits stay current.
        let transition = std::mem::discriminant(&inner.phase) != std::mem::discriminant(&next);
        inner.phase = next;
        if transition {
            inner.generation += 1;
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("settings", &self.settings)
            .field("state", &self.state())
            .finish()
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Success,
    Failure,
    Abandoned,
}

/// Leave to make one call through a [`CircuitBreaker`]. Holds no lock.
#[must_use = "tell the permit how the call went, or the breaker learns nothing from it"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    generation: u64,
    trial: bool,
    settled: bool,
}

impl Permit<'_> {
    /// Whether this is the half-open trial call.
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// The provider answered (including refusals: a 4xx proves it is up).
    pub fn succeeded(mut self) {
        self.settled = true;
        self.breaker.settle(self.generation, Outcome::Success);
    }

    /// The provider is unwell: timeout, connection error, 5xx or 429.
    pub fn failed(mut self) {
        self.settled = true;
        self.breaker.settle(self.generation, Outcome::Failure);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.settle(self.generation, Outcome::Abandoned);
        }
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("trial", &self.trial)
            .finish()
    }
}

/// How an idempotent call is retried: at most `attempts` tries in all, waiting before retry
/// `n` a random time between zero and `min(max_delay, base_delay × 2ⁿ⁻¹)` ("full jitter").
///
/// Only for calls that are safe to repeat: reads, and writes the provider de-duplicates (a
/// Heleket invoice is keyed by its `order_id`, so creating it twice returns the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included. Zero is treated as one.
    pub attempts: u32,
    /// The ceiling of the first wait; it doubles for each later retry.
    pub base_delay: Duration,
    /// No wait is ever longer than this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Never makes a second try.
    pub fn no_retries() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// Tries in all, at least one.
    pub fn max_attempts(&self) -> u32 {
        self.attempts.max(1)
    }

    /// The longest wait before retry `retry` (1 = the wait after the first failed try).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(64);
        let grown = self
            .base_delay
            .as_nanos()
            .saturating_mul(1u128 << doublings);
        let nanos = grown.min(self.max_delay.as_nanos()).min(u64::MAX as u128);
        Duration::from_nanos(nanos as u64)
    }

    /// A random wait before retry `retry`, between zero and [`ceiling`](Self::ceiling).
    pub fn delay(&self, retry: u32) -> Duration {
        // The low 64 bits of a v4 UUID: 62 random bits (two are the variant), plenty for a
        // wait and no extra dependency.
        self.delay_with(retry, Uuid::new_v4().as_u128() as u64)
    }

    /// The wait for a given random number: `random` reduced into `0..=ceiling`.
    fn delay_with(&self, retry: u32, random: u64) -> Duration {
        let ceiling = self.ceiling(retry).as_nanos() as u64;
        match ceiling.checked_add(1) {
            Some(span) => Duration::from_nanos(random % span),
            None => Duration::from_nanos(random),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::*;

    /// A clock that moves only when told to.
    struct ManualClock(Mutex<Instant>);

    impl ManualClock {
        fn new() -> Arc<Self> {
            Arc::new(Self(Mutex::new(Instant::now())))
        }

        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    const COOL_DOWN: Duration = Duration::from_secs(30);

    fn breaker(threshold: u32) -> (CircuitBreaker, Arc<ManualClock>) {
        let clock = ManualClock::new();
        let settings = BreakerSettings {
            failure_threshold: threshold,
            cool_down: COOL_DOWN,
        };
        (CircuitBreaker::with_clock(settings, clock.clone()), clock)
    }

    fn fail_times(breaker: &CircuitBreaker, times: u32) {
        for _ in 0..times {
            breaker.acquire().unwrap().failed();
        }
    }

    #[test]
    fn defaults_are_five_failures_and_thirty_seconds() {
        let settings = BreakerSettings::default();
        assert_eq!(settings.failure_threshold, 5);
        assert_eq!(settings.cool_down, Duration::from_secs(30));
    }

    #[test]
    fn a_new_breaker_is_closed_and_lets_calls_through() {
        let (breaker, _) = breaker(5);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(!breaker.is_open());
        let permit = breaker.acquire().unwrap();
        assert!(!permit.is_trial());
        permit.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn it_opens_on_the_threshold_th_consecutive_failure_and_not_before() {
        let (breaker, _) = breaker(5);
        fail_times(&breaker, 4);
        assert_eq!(breaker.state(), BreakerState::Closed);
        fail_times(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.is_open());
        assert_eq!(breaker.acquire().unwrap_err(), BreakerOpen);
    }

    #[test]
    fn a_success_resets_the_count_of_consecutive_failures() {
        let (breaker, _) = breaker(3);
        fail_times(&breaker, 2);
        breaker.acquire().unwrap().succeeded();
        fail_times(&breaker, 2);
        assert_eq!(breaker.state(), BreakerState::Closed);
        fail_times(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn a_zero_threshold_opens_on_the_first_failure() {
        let (breaker, _) = breaker(0);
        fail_times(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn an_open_breaker_refuses_until_the_cool_down_ends() {
        let (breaker, clock) = breaker(1);
        fail_times(&breaker, 1);
        clock.advance(COOL_DOWN - Duration::from_millis(1));
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.acquire().is_err());
        clock.advance(Duration::from_millis(1));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.is_open(), "half-open is not healthy yet");
    }

    #[test]
    fn after_the_cool_down_exactly_one_trial_goes_through() {
        let (breaker, clock) = breaker(1);
        fail_times(&breaker, 1);
        clock.advance(COOL_DOWN);
        let trial = breaker.acquire().unwrap();
        assert!(trial.is_trial());
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(breaker.acquire().unwrap_err(), BreakerOpen);
        clock.advance(COOL_DOWN * 10);
        assert_eq!(breaker.acquire().unwrap_err(), BreakerOpen);
        drop(trial);
    }

    #[test]
    fn a_successful_trial_closes_the_breaker() {
        let (breaker, clock) = breaker(2);
        fail_times(&breaker, 2);
        clock.advance(COOL_DOWN);
        breaker.acquire().unwrap().succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
        // Closed afresh: the failure count starts from zero.
        fail_times(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_failed_trial_reopens_for_a_whole_cool_down() {
        let (breaker, clock) = breaker(5);
        fail_times(&breaker, 5);
        clock.advance(COOL_DOWN);
        breaker.acquire().unwrap().failed();
        assert_eq!(breaker.state(), BreakerState::Open);
        clock.advance(COOL_DOWN - Duration::from_millis(1));
        assert!(breaker.acquire().is_err());
        clock.advance(Duration::from_millis(1));
        assert!(breaker.acquire().unwrap().is_trial());
    }

    #[test]
    fn an_abandoned_trial_lets_the_next_caller_try_at_once() {
        let (breaker, clock) = breaker(1);
        fail_times(&breaker, 1);
        clock.advance(COOL_DOWN);
        drop(breaker.acquire().unwrap());
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let next = breaker.acquire().unwrap();
        assert!(next.is_trial());
        next.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn an_abandoned_call_while_closed_changes_nothing() {
        let (breaker, _) = breaker(2);
        fail_times(&breaker, 1);
        drop(breaker.acquire().unwrap());
        fail_times(&breaker, 1);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn late_outcomes_of_calls_from_an_earlier_phase_are_ignored() {
        let (breaker, clock) = breaker(1);
        let slow = breaker.acquire().unwrap();
        let slower = breaker.acquire().unwrap();
        fail_times(&breaker, 1);
        // A success from before the breaker opened says nothing about the provider now.
        slow.succeeded();
        assert_eq!(breaker.state(), BreakerState::Open);
        clock.advance(COOL_DOWN);
        let trial = breaker.acquire().unwrap();
        // Nor does a failure from back then decide the trial.
        slower.failed();
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        trial.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn concurrent_callers_after_the_cool_down_get_one_trial_between_them() {
        let (breaker, clock) = breaker(1);
        fail_times(&breaker, 1);
        clock.advance(COOL_DOWN);
        let threads = 8;
        let barrier = Barrier::new(threads);
        let granted: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        // Keep the permit alive until everyone has asked.
                        let permit = breaker.acquire();
                        barrier.wait();
                        permit.is_ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(granted.iter().filter(|g| **g).count(), 1);
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }

    #[test]
    fn backoff_ceilings_double_from_the_base_and_stop_at_the_maximum() {
        let ceilings: Vec<u64> = (1..=6)
            .map(|n| policy().ceiling(n).as_millis() as u64)
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy().ceiling(0), Duration::from_millis(100));
        assert_eq!(policy().ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn huge_settings_do_not_overflow() {
        let huge = RetryPolicy {
            attempts: u32::MAX,
            base_delay: Duration::MAX,
            max_delay: Duration::MAX,
        };
        assert!(huge.ceiling(u32::MAX) <= Duration::MAX);
        let _ = huge.delay(u32::MAX);
        let _ = huge.delay_with(1, u64::MAX);
    }

    #[test]
    fn jittered_delays_stay_between_zero_and_the_ceiling() {
        for retry in 1..=8 {
            let ceiling = policy().ceiling(retry);
            assert_eq!(policy().delay_with(retry, 0), Duration::ZERO);
            let top = ceiling.as_nanos() as u64;
            assert_eq!(policy().delay_with(retry, top), ceiling);
            assert_eq!(policy().delay_with(retry, top + 1), Duration::ZERO);
            for _ in 0..200 {
                assert!(policy().delay(retry) <= ceiling);
            }
        }
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let delays: std::collections::HashSet<Duration> =
            (0..50).map(|_| policy().delay(3)).collect();
        // 400 million possible nanosecond values: fifty draws all alike means no jitter.
        assert!(delays.len() > 1);
    }

    #[test]
    fn at_least_one_attempt_is_always_made() {
        let never = RetryPolicy {
            attempts: 0,
            ..policy()
        };
        assert_eq!(never.max_attempts(), 1);
        assert_eq!(RetryPolicy::no_retries().max_attempts(), 1);
        assert_eq!(policy().max_attempts(), 5);
    }
}
