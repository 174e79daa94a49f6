//! What every client of an outside service (Heleket, Fragment, …) does the same way around
//! one HTTP round trip: read the answer without letting a broken peer make us buffer without
//! bound, describe a failed round trip without leaking the URL (which may carry a secret),
//! keep the provider's own words short, and record the call in the shared metrics.
//!
//! The metrics are the same for every provider, so dashboards and alerts need one query:
//! - `starledger_external_requests_total{provider, call, outcome}`: calls by final outcome;
//! - `starledger_external_request_seconds{provider, call}`: how long a call took, retries
//!   included (calls the circuit breaker refused are not timed: nothing was sent);
//! - `starledger_circuit_breaker_open{provider}`: 1 while the provider's breaker is not closed.

use std::time::{Duration, Instant};

/// Reads the body of `response`, keeping at most `limit` bytes; the rest is dropped unread.
/// A cut-off answer then fails to parse, which is the right outcome for an answer that big.
pub async fn read_bounded(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut answer = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(answer.len());
        answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if answer.len() >= limit {
            break;
        }
    }
    Ok(answer)
}

/// A short reason for a failed round trip. reqwest's own message carries the URL, which can
/// hold a secret (Fragment's API hash) and is long anyway; the kind of failure is what an
/// operator needs.
pub fn describe_failure(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        format!("timed out after {timeout:?}")
    } else if error.is_connect() {
        "could not connect".into()
    } else if error.is_body() || error.is_decode() {
        "the answer was cut off".into()
    } else {
        "the request failed".into()
    }
}

/// At most `max_chars` characters of `text`, cut on a character boundary and marked with `…`.
pub fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// How one call to a provider ended, for [`record_call`].
#[derive(Debug, Clone, Copy)]
pub struct CallRecord {
    pub provider: &'static str,
    pub call: &'static str,
    /// `ok` or a short stable error code.
    pub outcome: &'static str,
    pub started: Instant,
    /// False when the circuit breaker refused the call before anything was sent.
    pub sent: bool,
    /// The breaker's state after the call.
    pub breaker_open: bool,
}

/// Counts and times one call and publishes the provider's breaker state.
pub fn record_call(record: CallRecord) {
    metrics::counter!(
        "starledger_external_requests_total",
        "provider" => record.provider,
        "call" => record.call,
        "outcome" => record.outcome,
    )
    .increment(1);
    if record.sent {
        metrics::histogram!(
            "starledger_external_request_seconds",
            "provider" => record.provider,
            "call" => record.call,
        )
        .record(record.started.elapsed().as_secs_f64());
    }
    metrics::gauge!("starledger_circuit_breaker_open", "provider" => record.provider)
        .set(if record.breaker_open { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_shortened_on_a_character_boundary() {
        let long = "ё".repeat(500);
        let short = shorten(&long, 200);
        assert_eq!(short.chars().count(), 201);
        assert!(short.ends_with('…'));
        assert_eq!(shorten("brief", 200), "brief");
        assert_eq!(shorten("exact", 5), "exact");
    }
}
