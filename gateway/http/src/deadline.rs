//! The per-request deadline: every request, except the few in [`UNBOUNDED`], is answered
//! within `REQUEST_TIMEOUT_MS`.
//!
//! Without it a request during a database outage waits for each of its steps in turn (the
//! pool's acquire timeout to load the account, the read-your-writes wait, the pool again for
//! the balance) and a caller could wait over 20 s for its 503. With it, when the deadline
//! passes the handler is dropped and the caller gets 503 `deadline_exceeded` with
//! `Retry-After`, in the API's error format.
//!
//! Dropping a handler must leave nothing half done. Ledger commands therefore run in a task
//! of their own ([`starledger_telemetry::commands::execute`]) that finishes by itself (and the ledger
//! forgets its cached state for any caller that goes away unanswered): a command may still
//! commit after its request was answered 503. So the answer says the outcome is unknown,
//! and the safe next step is what it always is after a 5xx, a retry with the same
//! Idempotency-Key (or the same webhook): it returns the first result if there was one and
//! records the command once if there was not. Everything else a handler awaits (reads, the
//! cache, the Heleket client with its circuit breaker) can be dropped at any point.
//!
//! A handler that waits by choice (read-your-writes) takes its wait from
//! [`Deadline::budget`], so a command that did commit answers 201 with `"projected": false`
//! well before the deadline instead of running into it. The [`Deadline`] value itself lives
//! in `starledger_shop::deadline`, so the shop core can take one without depending on actix; it is
//! re-exported here.

use std::future::{ready, Ready};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use super::error::ApiError;
use super::error_code::ErrorCode;
pub use starledger_shop::deadline::Deadline;

/// Routes without a deadline: the auditors' replays of the whole log (documented as long
/// requests on a large log), and the operations endpoints, which bound their own probes and
/// must keep their own answer shapes (`/readyz` answers 503 with its readiness body).
pub const UNBOUNDED: &[&str] = &[
    "/v1/audit/verify",
    "/v1/audit/balances",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// The configured `REQUEST_TIMEOUT_MS`, registered as app data by `serve`.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub Duration);

impl Default for RequestTimeout {
    fn default() -> Self {
        Self(Duration::from_secs(5))
    }
}

/// The extractor: handlers take `RequestDeadline(deadline): RequestDeadline`, the deadline the
/// middleware set; outside it (a route in [`UNBOUNDED`], a test app without the middleware) a
/// fresh one from the configured timeout. A wrapper, because [`Deadline`] belongs to the shop
/// core, which knows nothing of actix.
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadline(pub Deadline);

impl FromRequest for RequestDeadline {
    type Error = ApiError;
    type Future = Ready<Result<RequestDeadline, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let deadline = request.extensions().get::<Deadline>().copied();
        ready(Ok(RequestDeadline(deadline.unwrap_or_else(|| {
            Deadline::after(timeout_of(request.app_data::<RequestTimeout>()))
        }))))
    }
}

fn timeout_of(setting: Option<&RequestTimeout>) -> Duration {
    setting.copied().unwrap_or_default().0
}

/// The answer when the deadline passes.
pub fn exceeded(timeout: Duration) -> ApiError {
    ApiError::new(
        ErrorCode::DeadlineExceeded,
        format!(
            "the request did not finish within {} ms (is a dependency down?); a command may or \
             may not have been recorded: retry it with the same Idempotency-Key, which is safe",
            timeout.as_millis()
        ),
    )
}

/// The middleware: runs the rest of the chain under the deadline.
///
/// A passed deadline is returned as an error rather than built into a response here: a
/// response needs the `HttpRequest`, which cannot be cloned before routing has run (actix
/// mutates it in place then), and actix turns the error into the same JSON answer through
/// [`ApiError`]'s `ResponseError`.
pub async fn enforce(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let route = request.match_pattern();
    if route
        .as_deref()
        .is_some_and(|pattern| UNBOUNDED.contains(&pattern))
    {
        return next.call(request).await;
    }
    let timeout = timeout_of(request.app_data::<RequestTimeout>());
    let deadline = Deadline::after(timeout);
    request.extensions_mut().insert(deadline);
    let method = request.method().clone();
    match tokio::time::timeout_at(deadline.at(), next.call(request)).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::warn!(
                %method,
                route = route.as_deref().unwrap_or("unmatched"),
                timeout_ms = timeout.as_millis() as u64,
                "request deadline passed; answered 503"
            );
            Err(exceeded(timeout).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::middleware::from_fn;
    use actix_web::test as actix_test;
    use actix_web::{web, App, HttpResponse};
    use serde_json::Value;

    use super::*;

    async fn slow(RequestDeadline(deadline): RequestDeadline) -> HttpResponse {
        // Ignores the budget on purpose: this handler stands for one stuck on a dependency.
        let _ = deadline;
        tokio::time::sleep(Duration::from_secs(30)).await;
        HttpResponse::Ok().finish()
    }

    async fn budgeted(RequestDeadline(deadline): RequestDeadline) -> HttpResponse {
        let wait = deadline.budget(Duration::from_secs(30));
        tokio::time::sleep(wait).await;
        HttpResponse::Ok().body(wait.as_millis().to_string())
    }

    /// A test app whose requests have 400 ms.
    macro_rules! app {
        () => {
            actix_test::init_service(
                App::new()
                    .app_data(RequestTimeout(Duration::from_millis(400)))
                    .wrap(from_fn(enforce))
                    .route("/slow", web::get().to(slow))
                    .route("/budgeted", web::get().to(budgeted)),
            )
            .await
        };
    }

    #[actix_web::test]
    async fn a_stuck_request_gets_a_json_503_with_retry_after_at_its_deadline() {
        let service = app!();
        let started = std::time::Instant::now();
        let request = actix_test::TestRequest::get().uri("/slow").to_request();
        let error = match actix_test::try_call_service(&service, request).await {
            Ok(response) => panic!("answered {} instead of timing out", response.status()),
            Err(error) => error,
        };
        let waited = started.elapsed();
        // What actix's dispatcher sends for a service error.
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        let bytes = actix_web::body::to_bytes(response.into_body())
            .await
            .expect("a body");
        let body: Value = serde_json::from_slice(&bytes).expect("a JSON body");
        assert_eq!(body["error"]["code"], "deadline_exceeded", "{body}");
        assert!(waited >= Duration::from_millis(400), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
    }

    #[actix_web::test]
    async fn an_optional_wait_ends_before_the_deadline_and_leaves_the_reserve() {
        let service = app!();
        let response = actix_test::call_service(
            &service,
            actix_test::TestRequest::get().uri("/budgeted").to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let waited: u64 = String::from_utf8(actix_test::read_body(response).await.to_vec())
            .unwrap()
            .parse()
            .unwrap();
        // 400 ms less the 100 ms reserve, less what the request took to get there.
        assert!((1..=300).contains(&waited), "{waited}");
    }

    #[actix_web::test]
    async fn unbounded_routes_are_not_cut() {
        let service = actix_test::init_service(
            App::new()
                .app_data(RequestTimeout(Duration::from_millis(100)))
                .wrap(from_fn(enforce))
                .route(
                    "/healthz",
                    web::get().to(|| async {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        HttpResponse::Ok().finish()
                    }),
                ),
        )
        .await;
        let response = actix_test::call_service(
            &service,
            actix_test::TestRequest::get().uri("/healthz").to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}
