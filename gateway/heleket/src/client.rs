//! The real Heleket HTTP client: signed `POST`s to `/v1/payment` and `/v1/payment/info`,
//! with a per-attempt timeout, retries with backoff, and a circuit breaker.
//!
//! Both calls are safe to repeat (an invoice is keyed by its `order_id`, so creating it
//! twice returns the same invoice; reading is a read), so transient failures — timeouts,
//! connection errors, 5xx and 429 — are retried per [`RetryPolicy`] and count against the
//! [`CircuitBreaker`]. A refusal (other 4xx, or `state` ≠ 0) is final and proves Heleket is up.
//!
//! Each request body is serialized once and those exact bytes are both signed and sent, so
//! the signature always covers what Heleket receives. The API key never leaves this file: not
//! in `Debug`, not in logs, not in errors; logs carry no bodies and no signatures.

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::Value;
use tracing::{debug, warn};

use super::sign::request_signature;
use super::{CreatedInvoice, InvoiceRequest, OrderId, PaymentInfo, PaymentProvider, ProviderError};
use starledger_outbound::resilience::{BreakerSettings, BreakerState, CircuitBreaker, RetryPolicy};
use starledger_outbound::{
    self as outbound, describe, publish_breaker, read_limited, Attempt, RoundTripError, Unanswered,
};

/// Heleket's production API.
pub const DEFAULT_BASE_URL: &str = "https://api.heleket.com";

/// How long one attempt may take, connecting and reading the answer included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The provider label on logs and metrics.
const PROVIDER: &str = "heleket";

/// Answers are a few hundred bytes; reading stops here so a broken proxy cannot make us
/// buffer without bound (the cut-off answer then fails to parse).
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Provider messages are kept to this many characters in errors and logs.
const MAX_MESSAGE_CHARS: usize = 200;

/// How to reach Heleket and how patient to be with it.
#[derive(Clone)]
pub struct HeleketSettings {
    /// Without a trailing `/v1`; tests point it at a local mock server.
    pub base_url: String,
    /// Sent as the `merchant` header.
    pub merchant_uuid: String,
    /// The payment API key: signs requests, never sent itself.
    pub api_key: String,
    /// Per attempt, not per call: a call may take `retry.attempts` times this plus backoff.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub breaker: BreakerSettings,
}

impl HeleketSettings {
    /// Settings for the production API with the default timeout, retries and breaker.
    pub fn new(merchant_uuid: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            merchant_uuid: merchant_uuid.into(),
            api_key: api_key.into(),
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            breaker: BreakerSettings::default(),
        }
    }
}

impl fmt::Debug for HeleketSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeleketSettings")
            .field("base_url", &self.base_url)
            .field("merchant_uuid", &self.merchant_uuid)
            .field("api_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .finish()
    }
}

/// Why a [`HeleketClient`] could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Heleket base URL {0:?} is not an absolute http(s) URL")]
    BaseUrl(String),
    #[error("Heleket merchant uuid is empty or cannot be sent as an HTTP header")]
    MerchantUuid,
    #[error("Heleket API key is empty")]
    EmptyApiKey,
    #[error("could not build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The two API calls, as logs and metrics name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    CreateInvoice,
    PaymentInfo,
}

impl Call {
    fn as_str(self) -> &'static str {
        match self {
            Self::CreateInvoice => "create_invoice",
            Self::PaymentInfo => "payment_info",
        }
    }
}

/// The Heleket API behind a [`PaymentProvider`]. Cheap to share by reference; one per
/// merchant, so that its breaker sees every call to that merchant's API.
pub struct HeleketClient {
    http: reqwest::Client,
    base_url: String,
    payment_url: Url,
    info_url: Url,
    merchant: HeaderValue,
    api_key: String,
    timeout: Duration,
    retry: RetryPolicy,
    breaker: CircuitBreaker,
}

impl HeleketClient {
    pub fn new(settings: HeleketSettings) -> Result<Self, ClientError> {
        let base = settings.base_url.trim_end_matches('/');
        let endpoint = |path: &str| {
            outbound::endpoint(base, path)
                .ok_or_else(|| ClientError::BaseUrl(settings.base_url.clone()))
        };
        let payment_url = endpoint("/v1/payment")?;
        let info_url = endpoint("/v1/payment/info")?;
        let merchant = HeaderValue::from_str(&settings.merchant_uuid)
            .ok()
            .filter(|_| !settings.merchant_uuid.trim().is_empty())
            .ok_or(ClientError::MerchantUuid)?;
        if settings.api_key.is_empty() {
            return Err(ClientError::EmptyApiKey);
        }
        let http = outbound::http_client(settings.timeout, outbound::USER_AGENT)?;
        let breaker = CircuitBreaker::new(settings.breaker);
        publish_breaker(PROVIDER, &breaker);
        Ok(Self {
            http,
            base_url: base.to_owned(),
            payment_url,
            info_url,
            merchant,
            api_key: settings.api_key,
            timeout: settings.timeout,
            retry: settings.retry,
            breaker,
        })
    }

    /// The breaker's state, for health checks that want more than open/closed.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    async fn create(&self, request: &InvoiceRequest) -> Result<CreatedInvoice, ProviderError> {
        let order_id = request.order_id.to_string();
        let body = encode(&CreateBody {
            amount: request.amount.to_string(),
            currency: request.currency.as_str(),
            order_id: &order_id,
            url_callback: &request.url_callback,
            lifetime: request.lifetime_seconds,
            currencies: [Coin {
                currency: request.currency.as_str(),
                network: &request.network,
            }],
        })?;
        let result = self
            .send(Call::CreateInvoice, &self.payment_url, &body, &order_id)
            .await?;
        let info = read_info(&result, &order_id, None)?;
        if info.url.is_empty() {
            return Err(ProviderError::BadResponse("the invoice has no url".into()));
        }
        let expires_at = info
            .expires_at
            .ok_or_else(|| ProviderError::BadResponse("the invoice has no expired_at".into()))?;
        Ok(CreatedInvoice {
            uuid: info.payment.uuid,
            url: info.url,
            expires_at,
        })
    }

    async fn info(
        &self,
        order_id: &OrderId,
        uuid: Option<&str>,
    ) -> Result<PaymentInfo, ProviderError> {
        let order_id = order_id.to_string();
        // By uuid when we know it: it names exactly the invoice a webhook spoke of.
        let body = match uuid {
            Some(uuid) => encode(&InfoByUuid { uuid })?,
            None => encode(&InfoByOrder {
                order_id: &order_id,
            })?,
        };
        let result = self
            .send(Call::PaymentInfo, &self.info_url, &body, &order_id)
            .await?;
        read_info(&result, &order_id, uuid)
    }

    /// Sends `body` until Heleket answers, the attempts run out or the breaker says stop.
    /// Returns the `result` object of a `state: 0` answer.
    async fn send(
        &self,
        call: Call,
        url: &Url,
        body: &[u8],
        order_id: &str,
    ) -> Result<Value, ProviderError> {
        let mut sign = HeaderValue::from_str(&request_signature(body, &self.api_key))
            .map_err(|_| ProviderError::Refused("the request signature is not a header".into()))?;
        // Keeps the signature out of any `Debug` output of the request.
        sign.set_sensitive(true);
        let answer = self
            .outbound(call, order_id)
            .run(|| async {
                match self.exchange(url, body, &sign).await {
                    Ok((status, answer)) => judge(call, status, &answer, order_id),
                    Err(transient) => Attempt::Transient(transient.to_string()),
                }
            })
            .await;
        match answer {
            Ok(result) => result,
            Err(Unanswered::CircuitOpen) => Err(ProviderError::CircuitOpen),
            Err(Unanswered::Unavailable(problem)) => Err(ProviderError::Unavailable(problem)),
        }
    }

    /// `call` about `subject` (an order id) under this client's breaker and retry policy.
    fn outbound<'a>(&'a self, call: Call, subject: &'a str) -> outbound::Call<'a> {
        outbound::Call {
            provider: PROVIDER,
            call: call.as_str(),
            subject,
            breaker: &self.breaker,
            retry: self.retry,
        }
    }

    /// One HTTP round trip. `Err` is a transient problem, described without secrets.
    async fn exchange(
        &self,
        url: &Url,
        body: &[u8],
        sign: &HeaderValue,
    ) -> Result<(StatusCode, Vec<u8>), RoundTripError> {
        let response = self
            .http
            .post(url.clone())
            .header("merchant", self.merchant.clone())
            .header("sign", sign.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| describe(&e, self.timeout))?;
        read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| describe(&e, self.timeout))
    }

    /// Counts, times and logs one call's final outcome.
    fn observe<T>(&self, call: Call, started: Instant, result: &Result<T, ProviderError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(ProviderError::Refused(_)) => "refused",
            Err(ProviderError::NotFound(_)) => "not_found",
            Err(ProviderError::Unavailable(_)) => "unavailable",
            Err(ProviderError::CircuitOpen) => "circuit_open",
            Err(ProviderError::BadResponse(_)) => "bad_response",
        };
        // A call the breaker refused sent nothing; timing it would drag the latency down.
        let sent = !matches!(result, Err(ProviderError::CircuitOpen));
        self.outbound(call, "").record(outcome, started, sent);
        let open = self.breaker.is_open();
        match result {
            Ok(_) => debug!(provider = PROVIDER, call = call.as_str(), "Heleket call ok"),
            Err(error) => warn!(
                provider = PROVIDER,
                call = call.as_str(),
                outcome,
                circuit_open = open,
                %error,
                "Heleket call failed"
            ),
        }
    }
}

#[async_trait]
impl PaymentProvider for HeleketClient {
    async fn create_invoice(
        &self,
        request: &InvoiceRequest,
    ) -> Result<CreatedInvoice, ProviderError> {
        let started = Instant::now();
        let result = self.create(request).await;
        self.observe(Call::CreateInvoice, started, &result);
        result
    }

    async fn payment_info(
        &self,
        order_id: &OrderId,
        uuid: Option<&str>,
    ) -> Result<PaymentInfo, ProviderError> {
        let started = Instant::now();
        let result = self.info(order_id, uuid).await;
        self.observe(Call::PaymentInfo, started, &result);
        result
    }

    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }
}

impl fmt::Debug for HeleketClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeleketClient")
            .field("base_url", &self.base_url)
            .field("merchant", &self.merchant)
            .field("api_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .finish()
    }
}

/// The body of `POST /v1/payment`. Field order is the order Heleket's docs show.
#[derive(Serialize)]
struct CreateBody<'a> {
    /// A decimal string, never a JSON number: no float ever touches money.
    amount: String,
    currency: &'a str,
    order_id: &'a str,
    url_callback: &'a str,
    lifetime: u32,
    /// The only coin and network the payer may use: the ledger's. Without it the payment page
    /// offers every coin the merchant accepts, and a TON invoice can be paid in USDT.
    currencies: [Coin<'a>; 1],
}

/// One entry of `currencies`.
#[derive(Serialize)]
struct Coin<'a> {
    currency: &'a str,
    network: &'a str,
}

/// The bodies of `POST /v1/payment/info`: one invoice by its uuid, or by our order id.
#[derive(Serialize)]
struct InfoByUuid<'a> {
    uuid: &'a str,
}

#[derive(Serialize)]
struct InfoByOrder<'a> {
    order_id: &'a str,
}

fn encode(body: &impl Serialize) -> Result<Vec<u8>, ProviderError> {
    // Cannot fail for these plain structs; if it ever did, resending would not help.
    serde_json::to_vec(body)
        .map_err(|e| ProviderError::Refused(format!("could not encode the request: {e}")))
}

/// Reads an invoice and checks it is the one we asked about, so a confused answer can never
/// attach someone else's invoice to this recharge.
fn read_info(
    result: &Value,
    order_id: &str,
    uuid: Option<&str>,
) -> Result<PaymentInfo, ProviderError> {
    let info =
        PaymentInfo::from_result(result).map_err(|e| ProviderError::BadResponse(e.to_string()))?;
    if info.payment.order_id != order_id {
        return Err(ProviderError::BadResponse(format!(
            "the answer is about order {}, not {order_id}",
            shorten(&info.payment.order_id)
        )));
    }
    if uuid.is_some_and(|uuid| uuid != info.payment.uuid) {
        return Err(ProviderError::BadResponse(format!(
            "the answer is about invoice {}, not the one asked for",
            shorten(&info.payment.uuid)
        )));
    }
    Ok(info)
}

/// What one HTTP answer means: a result or refusal (Heleket is up; do not retry), or a
/// transient failure (5xx, 429: retry, and count it against the breaker).
type Verdict = Attempt<Result<Value, ProviderError>>;

/// Sorts an answer into result, refusal, "not found" or transient failure. No I/O.
fn judge(call: Call, status: StatusCode, answer: &[u8], order_id: &str) -> Verdict {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Verdict::Transient(format!("HTTP {}", status.as_u16()));
    }
    let json: Option<Value> = serde_json::from_slice(answer).ok();
    if !status.is_success() {
        // Other 4xx, and 1xx/3xx which Heleket never sends: the status is the refusal even
        // when the body (a proxy's HTML page, say) is unreadable.
        return Verdict::Answered(Err(refusal(call, status, json.as_ref(), order_id)));
    }
    let Some(json) = json else {
        return Verdict::Answered(Err(ProviderError::BadResponse(
            "the answer is not JSON".into(),
        )));
    };
    let state = json.get("state").and_then(|state| {
        state
            .as_i64()
            .or_else(|| state.as_str().and_then(|s| s.parse().ok()))
    });
    Verdict::Answered(match state {
        Some(0) => match json.get("result") {
            Some(result @ Value::Object(_)) => Ok(result.clone()),
            _ => Err(ProviderError::BadResponse(
                "the answer has no result object".into(),
            )),
        },
        Some(_) => Err(refusal(call, status, Some(&json), order_id)),
        None => Err(ProviderError::BadResponse("the answer has no state".into())),
    })
}

fn refusal(call: Call, status: StatusCode, json: Option<&Value>, order_id: &str) -> ProviderError {
    let message = json
        .and_then(provider_message)
        .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    let not_found = status == StatusCode::NOT_FOUND || message.to_lowercase().contains("not found");
    if call == Call::PaymentInfo && not_found {
        ProviderError::NotFound(order_id.to_owned())
    } else {
        ProviderError::Refused(shorten(&message))
    }
}

/// Heleket's explanation: `message`, `errors` (`{"field": ["why", …]}`), or both.
fn provider_message(json: &Value) -> Option<String> {
    let message = json
        .get("message")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty());
    let errors = json.get("errors").and_then(flatten_errors);
    match (message, errors) {
        (Some(message), Some(errors)) => Some(format!("{message}: {errors}")),
        (Some(message), None) => Some(message.to_owned()),
        (None, errors) => errors,
    }
}

fn flatten_errors(errors: &Value) -> Option<String> {
    let list = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map_or_else(|| item.to_string(), str::to_owned)
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    let text = match errors {
        Value::Object(fields) => fields
            .iter()
            .map(|(field, why)| format!("{field}: {}", list(why)))
            .collect::<Vec<_>>()
            .join("; "),
        Value::Null => String::new(),
        other => list(other),
    };
    Some(text).filter(|t| !t.is_empty())
}

/// At most [`MAX_MESSAGE_CHARS`] characters, cut on a character boundary.
fn shorten(text: &str) -> String {
    outbound::shorten(text, MAX_MESSAGE_CHARS)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn judged(call: Call, status: u16, answer: &Value) -> Verdict {
        let status = StatusCode::from_u16(status).unwrap();
        judge(call, status, answer.to_string().as_bytes(), "sl_1_x")
    }

    #[test]
    fn server_errors_and_rate_limits_are_transient() {
        for status in [500, 502, 503, 504, 429] {
            assert_eq!(
                judged(Call::CreateInvoice, status, &json!({"state": 1})),
                Verdict::Transient(format!("HTTP {status}"))
            );
        }
    }

    #[test]
    fn validation_errors_become_a_readable_refusal() {
        let answer = json!({"state": 1, "errors": {"amount": ["too small", "not a number"], "currency": ["unknown"]}});
        assert_eq!(
            judged(Call::CreateInvoice, 422, &answer),
            Verdict::Answered(Err(ProviderError::Refused(
                "amount: too small, not a number; currency: unknown".into()
            )))
        );
        let answer = json!({"state": 1, "message": "Invalid sign"});
        assert_eq!(
            judged(Call::CreateInvoice, 401, &answer),
            Verdict::Answered(Err(ProviderError::Refused("Invalid sign".into())))
        );
    }

    #[test]
    fn a_nonzero_state_is_a_refusal_even_with_http_200() {
        let answer = json!({"state": 1, "message": "Merchant is blocked"});
        assert_eq!(
            judged(Call::CreateInvoice, 200, &answer),
            Verdict::Answered(Err(ProviderError::Refused("Merchant is blocked".into())))
        );
    }

    #[test]
    fn not_found_is_recognised_by_status_or_message_for_reads_only() {
        let not_found = Verdict::Answered(Err(ProviderError::NotFound("sl_1_x".into())));
        assert_eq!(judged(Call::PaymentInfo, 404, &json!({})), not_found);
        let answer = json!({"state": 1, "message": "Payment not found"});
        assert_eq!(judged(Call::PaymentInfo, 200, &answer), not_found);
        assert_eq!(judged(Call::PaymentInfo, 400, &answer), not_found);
        assert_eq!(
            judged(Call::CreateInvoice, 404, &answer),
            Verdict::Answered(Err(ProviderError::Refused("Payment not found".into())))
        );
    }

    #[test]
    fn unreadable_or_incomplete_success_answers_are_bad_responses() {
        let ok = StatusCode::OK;
        assert!(matches!(
            judge(Call::PaymentInfo, ok, b"<html>maintenance</html>", "o"),
            Verdict::Answered(Err(ProviderError::BadResponse(_)))
        ));
        for answer in [
            json!({"result": {}}),
            json!({"state": 0}),
            json!({"state": 0, "result": "x"}),
        ] {
            assert!(
                matches!(
                    judged(Call::PaymentInfo, 200, &answer),
                    Verdict::Answered(Err(ProviderError::BadResponse(_)))
                ),
                "{answer}"
            );
        }
    }

    #[test]
    fn a_refusal_without_a_readable_body_names_the_status() {
        assert_eq!(
            judge(Call::CreateInvoice, StatusCode::FORBIDDEN, b"<html/>", "o"),
            Verdict::Answered(Err(ProviderError::Refused("HTTP 403".into())))
        );
    }

    #[test]
    fn long_messages_are_shortened_on_a_character_boundary() {
        let long = "ё".repeat(500);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(short.ends_with('…'));
        assert_eq!(shorten("brief"), "brief");
    }

    #[test]
    fn bad_settings_are_refused_at_construction() {
        let mut settings = HeleketSettings::new("merchant", "key");
        settings.base_url = "not a url".into();
        assert!(matches!(
            HeleketClient::new(settings.clone()),
            Err(ClientError::BaseUrl(_))
        ));
        settings.base_url = "ftp://example.com".into();
        assert!(matches!(
            HeleketClient::new(settings.clone()),
            Err(ClientError::BaseUrl(_))
        ));
        settings.base_url = DEFAULT_BASE_URL.into();
        settings.merchant_uuid = "line\nbreak".into();
        assert!(matches!(
            HeleketClient::new(settings.clone()),
            Err(ClientError::MerchantUuid)
        ));
        settings.merchant_uuid = "merchant".into();
        settings.api_key = String::new();
        assert!(matches!(
            HeleketClient::new(settings),
            Err(ClientError::EmptyApiKey)
        ));
    }

    #[test]
    fn settings_debug_hides_the_key() {
        let settings = HeleketSettings::new("merchant", "s3cr3t-key");
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cr3t-key"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
