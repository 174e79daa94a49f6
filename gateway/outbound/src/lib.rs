//! Calling an outside HTTP API the same way for every provider (Heleket, toncenter, …): each
//! attempt through the provider's [`CircuitBreaker`], transient failures retried per its
//! [`RetryPolicy`], answers read only up to a size limit, failures described without secrets,
//! and every call counted and timed under the provider's label.
//!
//! The provider's client keeps what is particular to it: building the request and deciding
//! what an answer means (an [`Attempt`]). This module only runs the attempts and keeps the
//! books.
//!
//! Metrics (labels `provider`, `call`, and `outcome` on the counter):
//! `starledger_external_requests_total`, `starledger_external_request_seconds`, and the
//! `starledger_circuit_breaker_open` gauge (label `provider`).
//!
//! [`resilience`] holds the breaker, the retry policy and the injected clocks.
//!
//! May depend on: `starledger-telemetry`. Every provider adapter (Heleket, Fragment,
//! toncenter) depends on this crate; it knows none of them.

pub mod resilience;

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::info;

use crate::resilience::{CircuitBreaker, RetryPolicy};
use starledger_telemetry::metrics_catalog::{
    CIRCUIT_BREAKER_OPEN, EXTERNAL_REQUESTS, EXTERNAL_REQUEST_SECONDS,
};

/// What one attempt came to.
#[derive(Debug, PartialEq)]
pub enum Attempt<T> {
    /// The provider is up and answered this (a refusal included): do not retry.
    Answered(T),
    /// The provider is unwell (timeout, connection error, 5xx, 429): retry, and count it
    /// against the breaker. The text says why, without secrets.
    Transient(String),
}

/// Why a call ended without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    /// The breaker refused the first attempt: nothing was sent.
    CircuitOpen,
    /// Every attempt failed transiently (or the breaker opened between them); says why.
    Unavailable(String),
}

/// One logical call to a provider: which provider and call (for logs and metrics), what it
/// is about (for logs), and the breaker and retry policy it runs under.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub provider: &'static str,
    pub call: &'static str,
    /// What the call is about, for the logs: an order id, an address. Never a secret.
    pub subject: &'a str,
    pub breaker: &'a CircuitBreaker,
    pub retry: RetryPolicy,
}

impl Call<'_> {
    /// Makes attempts until one is answered, the attempts run out or the breaker says stop.
    /// Only for calls that are safe to repeat.
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, Unanswered>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let attempts = self.retry.max_attempts();
        let mut problem = String::new();
        for number in 1..=attempts {
            if number > 1 {
                tokio::time::sleep(self.retry.delay(number - 1)).await;
            }
            let Ok(permit) = self.breaker.acquire() else {
                // Opened by our own failures (or a neighbour's) while we were retrying: the
                // call was tried and failed, so say why rather than just "open".
                return Err(if number == 1 {
                    Unanswered::CircuitOpen
                } else {
                    Unanswered::Unavailable(format!("{problem}; circuit breaker opened"))
                });
            };
            match attempt().await {
                Attempt::Answered(answer) => {
                    permit.succeeded();
                    return Ok(answer);
                }
                Attempt::Transient(transient) => {
                    permit.failed();
                    info!(
                        provider = self.provider,
                        call = self.call,
                        subject = self.subject,
                        attempt = number,
                        attempts,
                        problem = %transient,
                        "attempt failed"
                    );
                    problem = transient;
                }
            }
        }
        Err(Unanswered::Unavailable(problem))
    }

    /// Counts and times the call's final outcome and publishes the breaker's state. `sent` is
    /// false for a call the breaker refused, which is not timed: it would drag latency down.
    pub fn record(&self, outcome: &'static str, started: Instant, sent: bool) {
        metrics::counter!(
            EXTERNAL_REQUESTS,
            "provider" => self.provider,
            "call" => self.call,
            "outcome" => outcome,
        )
        .increment(1);
        if sent {
            metrics::histogram!(
                EXTERNAL_REQUEST_SECONDS,
                "provider" => self.provider,
                "call" => self.call,
            )
            .record(started.elapsed().as_secs_f64());
        }
        publish_breaker(self.provider, self.breaker);
    }
}

/// The user agent our API clients send (Fragment's client sends a browser's instead).
pub const USER_AGENT: &str = concat!("starledger/", env!("CARGO_PKG_VERSION"));

/// An HTTP client for one provider: `timeout` per attempt, and redirects never followed — a
/// followed redirect would re-send a signed body, a key header or session cookies to
/// wherever it points, and none of our providers' APIs redirect a good request, so a
/// redirect is read as a refusal.
pub fn http_client(timeout: Duration, user_agent: &str) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
        .build()
}

/// `base` (without its trailing slashes) followed by `path`, if that is an http(s) URL with a
/// host.
pub fn endpoint(base: &str, path: &str) -> Option<reqwest::Url> {
    reqwest::Url::parse(&format!("{}{path}", base.trim_end_matches('/')))
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
}

/// Sets the `starledger_circuit_breaker_open` gauge of `provider` from its breaker, and
/// its row of [`breakers`].
pub fn publish_breaker(provider: &'static str, breaker: &CircuitBreaker) {
    publish_breaker_open(provider, breaker.is_open());
}

/// [`publish_breaker`] from what is known of the breaker: open or not.
pub fn publish_breaker_open(provider: &'static str, open: bool) {
    metrics::gauge!(CIRCUIT_BREAKER_OPEN, "provider" => provider).set(if open { 1.0 } else { 0.0 });
    if let Ok(mut board) = BREAKERS.lock() {
        board.insert(provider, open);
    }
}

/// What every breaker of this process last published, by provider: whether it was open.
/// Published when a client is built and after each call, so a breaker whose cool-down has
/// passed shows open until the next call tries it (as the gauge does).
static BREAKERS: std::sync::Mutex<std::collections::BTreeMap<&'static str, bool>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Every provider's breaker of this process and whether it was open when last published.
pub fn breakers() -> Vec<(&'static str, bool)> {
    BREAKERS
        .lock()
        .map(|board| board.iter().map(|(p, open)| (*p, *open)).collect())
        .unwrap_or_default()
}

/// The status and at most `limit` bytes of the answer. Reading stops there, so a broken proxy
/// cannot make us buffer without bound (the cut-off answer then fails to parse).
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(reqwest::StatusCode, Vec<u8>), reqwest::Error> {
    let status = response.status();
    let mut answer = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(answer.len());
        answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if answer.len() >= limit {
            break;
        }
    }
    Ok((status, answer))
}

/// Why a round trip to a provider got no answer: a transient problem, described without
/// secrets. reqwest's own message carries the URL, which may carry a key in its query and is
/// long anyway; the kind of failure is what an operator needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoundTripError {
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    #[error("could not connect")]
    CouldNotConnect,
    #[error("the answer was cut off")]
    CutOff,
    #[error("redirected, and redirects are not followed")]
    Redirected,
    #[error("the request failed")]
    Failed,
    #[error("could not build the request URL")]
    BadUrl,
}

/// The kind of failure of a round trip that ran into `error` with this `timeout`.
pub fn describe(error: &reqwest::Error, timeout: Duration) -> RoundTripError {
    if error.is_timeout() {
        RoundTripError::TimedOut(timeout)
    } else if error.is_connect() {
        RoundTripError::CouldNotConnect
    } else if error.is_body() || error.is_decode() {
        RoundTripError::CutOff
    } else if error.is_redirect() {
        RoundTripError::Redirected
    } else {
        RoundTripError::Failed
    }
}

/// At most `max_chars` characters, cut on a character boundary, `…` marking a cut.
pub fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::resilience::BreakerSettings;

    fn call(breaker: &CircuitBreaker, attempts: u32) -> Call<'_> {
        Call {
            provider: "test",
            call: "probe",
            subject: "",
            breaker,
            retry: RetryPolicy {
                attempts,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(2),
            },
        }
    }

    fn breaker(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(BreakerSettings {
            failure_threshold: threshold,
            cool_down: Duration::from_secs(60),
        })
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_an_answer() {
        let breaker = breaker(100);
        let tries = AtomicU32::new(0);
        let answer = call(&breaker, 3)
            .run(|| async {
                if tries.fetch_add(1, Ordering::SeqCst) < 2 {
                    Attempt::Transient("HTTP 503".into())
                } else {
                    Attempt::Answered(7)
                }
            })
            .await;
        assert_eq!(answer, Ok(7));
        assert_eq!(tries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_answer_is_never_retried_and_exhaustion_says_why() {
        let breaker = breaker(100);
        let tries = AtomicU32::new(0);
        let refused: Result<Result<(), &str>, _> = call(&breaker, 3)
            .run(|| async {
                tries.fetch_add(1, Ordering::SeqCst);
                Attempt::Answered(Err("no"))
            })
            .await;
        assert_eq!(refused, Ok(Err("no")));
        assert_eq!(tries.load(Ordering::SeqCst), 1);

        let down: Result<(), _> = call(&breaker, 2)
            .run(|| async { Attempt::Transient("HTTP 502".into()) })
            .await;
        assert_eq!(down, Err(Unanswered::Unavailable("HTTP 502".into())));
    }

    #[tokio::test]
    async fn an_open_breaker_refuses_before_anything_is_sent() {
        let breaker = breaker(1);
        let first: Result<(), _> = call(&breaker, 5)
            .run(|| async { Attempt::Transient("timed out".into()) })
            .await;
        assert_eq!(
            first,
            Err(Unanswered::Unavailable(
                "timed out; circuit breaker opened".into()
            ))
        );
        let tries = AtomicU32::new(0);
        let second: Result<(), _> = call(&breaker, 5)
            .run(|| async {
                tries.fetch_add(1, Ordering::SeqCst);
                Attempt::Answered(())
            })
            .await;
        assert_eq!(second, Err(Unanswered::CircuitOpen));
        assert_eq!(tries.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn long_messages_are_shortened_on_a_character_boundary() {
        let long = "ё".repeat(500);
        let short = shorten(&long, 200);
        assert_eq!(short.chars().count(), 201);
        assert!(short.ends_with('…'));
        assert_eq!(shorten("brief", 200), "brief");
    }
}
