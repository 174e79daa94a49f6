//! One toncenter request on the wire: retries and the circuit breaker (through
//! [`starledger_outbound`]), the HTTP round trip with the API key, and the metrics and logs of each
//! call's outcome. What an answer means is [`super::answers`]' job.

use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tracing::{debug, warn};

use super::answers::judge;
use super::{Answer, Call, Request, Toncenter, BREAKER_OPEN, MAX_ANSWER_BYTES, PROVIDER};
use crate::ton::ChainError;
use starledger_outbound::{
    self as outbound, describe, read_limited, Attempt, RoundTripError, Unanswered,
};

impl Toncenter {
    fn outbound<'a>(&'a self, call: Call, subject: &'a str) -> outbound::Call<'a> {
        outbound::Call {
            provider: PROVIDER,
            call: call.as_str(),
            subject,
            breaker: &self.breaker,
            retry: self.retry,
        }
    }

    /// Sends `request` until toncenter answers, the attempts run out or the breaker says stop.
    pub(super) async fn send(
        &self,
        call: Call,
        subject: &str,
        request: &Request<'_>,
    ) -> Result<Answer, ChainError> {
        let answer = self
            .outbound(call, subject)
            .run(|| async {
                match self.exchange(request).await {
                    Ok((status, answer)) => judge(call, status, &answer),
                    Err(transient) => Attempt::Transient(transient.to_string()),
                }
            })
            .await;
        match answer {
            Ok(answer) => answer,
            Err(Unanswered::CircuitOpen) => Err(ChainError::Unavailable(BREAKER_OPEN.into())),
            Err(Unanswered::Unavailable(problem)) => Err(ChainError::Unavailable(problem)),
        }
    }

    /// The `result` of an answer to a read.
    pub(super) async fn read(
        &self,
        call: Call,
        subject: &str,
        request: &Request<'_>,
    ) -> Result<Value, ChainError> {
        match self.send(call, subject, request).await? {
            Answer::Result(result) => Ok(result),
            Answer::SeqnoAlreadyUsed(_) => Err(ChainError::BadResponse(
                "a read was answered as a broadcast".into(),
            )),
        }
    }

    /// One HTTP round trip. `Err` is a transient problem, described without secrets.
    async fn exchange(
        &self,
        request: &Request<'_>,
    ) -> Result<(StatusCode, Vec<u8>), RoundTripError> {
        let url = self
            .base_url
            .join(request.method_name())
            .map_err(|_| RoundTripError::BadUrl)?;
        let builder = match request {
            Request::Get(_, query) => self.http.request(Method::GET, url).query(query),
            Request::Post(_, body) => self.http.request(Method::POST, url).json(body),
        };
        let builder = match &self.api_key {
            Some(key) => builder.header("X-API-Key", key.clone()),
            None => builder,
        };
        let response = builder
            .send()
            .await
            .map_err(|e| describe(&e, self.timeout))?;
        read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| describe(&e, self.timeout))
    }

    /// Counts, times and logs one call's final outcome.
    pub(super) fn observe<T>(&self, call: Call, started: Instant, result: &Result<T, ChainError>) {
        let refused_unsent =
            matches!(result, Err(ChainError::Unavailable(why)) if why == BREAKER_OPEN);
        let outcome = match result {
            Ok(_) => "ok",
            Err(ChainError::Refused(_)) => "refused",
            Err(ChainError::Unavailable(_)) if refused_unsent => "circuit_open",
            Err(ChainError::Unavailable(_)) => "unavailable",
            Err(ChainError::BadResponse(_)) => "bad_response",
        };
        // A call the breaker refused sent nothing; timing it would drag the latency down.
        self.outbound(call, "")
            .record(outcome, started, !refused_unsent);
        match result {
            Ok(_) => debug!(
                provider = PROVIDER,
                call = call.as_str(),
                "toncenter call ok"
            ),
            Err(error) => warn!(
                provider = PROVIDER,
                call = call.as_str(),
                outcome,
                circuit_open = self.breaker.is_open(),
                %error,
                "toncenter call failed"
            ),
        }
    }
}
