//! One Fragment API call on the wire: retries, the circuit breaker, the API hash scraped
//! from the buy page (and scraped again when stale), the round trip with the site's headers
//! and cookies, and the metrics and logs of each call's outcome.

use std::time::Instant;

use reqwest::header::{HeaderMap, ACCEPT, COOKIE, ORIGIN, REFERER};
use reqwest::StatusCode;
use tracing::{debug, info, warn};

use super::{Call, FragmentClient, MAX_ANSWER_BYTES, PROVIDER};
use crate::market::MarketError;
use crate::wire::{judge_api, judge_page, Answer, ApiHash, Failure, Verdict};
use starledger_outbound::{self as outbound, describe, read_limited, RoundTripError};

impl FragmentClient {
    /// Calls `method` until Fragment answers, the attempts run out or the breaker says stop.
    /// Returns the answer when it carries no error.
    pub(super) async fn call(
        &self,
        call: Call,
        method: &str,
        params: &[(&str, String)],
    ) -> Result<Answer, Failure> {
        let attempts = self.retry.max_attempts();
        let mut attempt = 0;
        let mut rescraped = false;
        let mut problem = String::new();
        while attempt < attempts {
            attempt += 1;
            if attempt > 1 {
                tokio::time::sleep(self.retry.delay(attempt - 1)).await;
            }
            let Ok(permit) = self.breaker.acquire() else {
                // Opened by our own failures (or a neighbour's) while we were retrying: the
                // call was tried and failed, so say why rather than just "open".
                return Err(if attempt == 1 {
                    Failure::CircuitOpen
                } else {
                    Failure::Market(MarketError::Unavailable(format!(
                        "{problem}; circuit breaker opened"
                    )))
                });
            };
            let (verdict, used) = match self.current_hash().await {
                Ok(hash) => {
                    let verdict = match self.post(&hash, method, params).await {
                        Ok((status, headers, body)) => judge_api(status, &headers, body)
                            .about(matches!(call, Call::FindRecipient | Call::OpenOrder)),
                        Err(transient) => Verdict::Transient(transient.to_string()),
                    };
                    (verdict, Some(hash))
                }
                Err(verdict) => (verdict, None),
            };
            match verdict {
                Verdict::Answered(result) => {
                    permit.succeeded();
                    return result;
                }
                Verdict::StaleHash(why) => {
                    // Fragment is up and said so.
                    permit.succeeded();
                    if rescraped {
                        return Err(Failure::Market(MarketError::BadResponse(format!(
                            "{why} even with a freshly scraped API hash"
                        ))));
                    }
                    // Scrape once more and go again, without spending an attempt or waiting.
                    info!(provider = PROVIDER, method, problem = %why, "Fragment API hash is stale; scraping it again");
                    if let Some(hash) = used {
                        self.forget_hash(&hash).await;
                    }
                    rescraped = true;
                    attempt -= 1;
                }
                Verdict::Transient(transient) => {
                    permit.failed();
                    info!(
                        provider = PROVIDER,
                        call = call.as_str(),
                        method,
                        attempt,
                        attempts,
                        problem = %transient,
                        "Fragment attempt failed"
                    );
                    problem = transient;
                }
            }
        }
        Err(Failure::Market(MarketError::Unavailable(problem)))
    }

    /// The cached API hash, scraping the page first if there is none. `Err` is the verdict on
    /// a failed scrape.
    async fn current_hash(&self) -> Result<ApiHash, Verdict> {
        let mut cached = self.hash.lock().await;
        if let Some(hash) = cached.as_ref() {
            return Ok(hash.clone());
        }
        let hash = self.scrape().await?;
        *cached = Some(hash.clone());
        Ok(hash)
    }

    /// Drops `stale` from the cache unless someone already replaced it.
    async fn forget_hash(&self, stale: &ApiHash) {
        let mut cached = self.hash.lock().await;
        if cached.as_ref() == Some(stale) {
            *cached = None;
        }
    }

    /// Loads the buy page as a browser navigation (not an XHR, or Fragment answers JSON
    /// without the hash) and finds the API hash in it.
    pub(super) async fn scrape(&self) -> Result<ApiHash, Verdict> {
        let response = self
            .http
            .get(self.page_url.clone())
            .header(
                ACCEPT,
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )
            .header(REFERER, format!("{}/", self.base_url))
            .header(COOKIE, self.cookie.clone())
            .send()
            .await
            .map_err(|e| Verdict::Transient(describe(&e, self.timeout).to_string()))?;
        let headers = response.headers().clone();
        let (status, body) = read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| Verdict::Transient(describe(&e, self.timeout).to_string()))?;
        judge_page(status, &headers, &body)
    }

    /// One API round trip. `Err` is a transient problem, described without secrets.
    async fn post(
        &self,
        hash: &ApiHash,
        method: &str,
        params: &[(&str, String)],
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), RoundTripError> {
        let mut url = self.api_url.clone();
        url.query_pairs_mut().append_pair("hash", &hash.0);
        let mut form: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        form.push(("method", method));
        let response = self
            .http
            .post(url)
            .header(ACCEPT, "application/json, text/javascript, */*; q=0.01")
            .header("X-Requested-With", "XMLHttpRequest")
            .header(ORIGIN, self.origin.clone())
            .header(REFERER, self.referer.clone())
            .header(COOKIE, self.cookie.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| describe(&e, self.timeout))?;
        let headers = response.headers().clone();
        let (status, body) = read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| describe(&e, self.timeout))?;
        Ok((status, headers, body))
    }

    /// Counts, times and logs one call's final outcome.
    pub(super) fn observe<T>(&self, call: Call, started: Instant, result: &Result<T, Failure>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(Failure::CircuitOpen) => "circuit_open",
            Err(Failure::UnknownMethod(_)) => "bad_response",
            Err(Failure::Market(error)) => error.code(),
        };
        // A call the breaker refused sent nothing; timing it would drag the latency down.
        let sent = !matches!(result, Err(Failure::CircuitOpen));
        outbound::Call {
            provider: PROVIDER,
            call: call.as_str(),
            subject: "",
            breaker: &self.breaker,
            retry: self.retry,
        }
        .record(outcome, started, sent);
        match result {
            Ok(_) => debug!(
                provider = PROVIDER,
                call = call.as_str(),
                "Fragment call ok"
            ),
            Err(error) => warn!(
                provider = PROVIDER,
                call = call.as_str(),
                outcome,
                circuit_open = self.breaker.is_open(),
                error = %error,
                "Fragment call failed"
            ),
        }
    }
}
