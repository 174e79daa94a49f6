//! Black-box tests of the Heleket client against a local mock server that speaks Heleket's
//! wire format: signed requests, `{"state":0,"result":…}` answers, error bodies, retries of
//! transient failures only, the circuit breaker, and a `Debug` that hides the API key.
//!
//! Retry delays are a few milliseconds so the suite stays quick; nothing asserts on timing.

use std::time::Duration;

use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use starledger_heleket::client::{HeleketClient, HeleketSettings};
use starledger_heleket::{InvoiceRequest, OrderId, PaymentProvider, PaymentStatus, ProviderError};
use starledger_ledger::ids::{RechargeId, UserId};
use starledger_ledger::money::{Amount, Currency};
use starledger_outbound::resilience::{BreakerSettings, RetryPolicy};
use uuid::Uuid;
use wiremock::matchers::{header, method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

const MERCHANT: &str = "8b03432e-385b-4670-8d06-064591096795";
const API_KEY: &str = "test-key-4f1d9c0b7e2a";
const EXPIRES: i64 = 1_900_000_000;

/// Matches only requests whose `sign` header is md5(base64(body bytes) + key), computed here
/// independently of the client's signing code.
struct SignedWith(&'static str);

impl Match for SignedWith {
    fn matches(&self, request: &Request) -> bool {
        let Some(sign) = request.headers.get("sign").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        sign == expected_sign(&request.body, self.0)
    }
}

fn expected_sign(body: &[u8], key: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    hex::encode(Md5::digest(format!("{encoded}{key}").as_bytes()))
}

fn settings(server: &MockServer) -> HeleketSettings {
    HeleketSettings {
        base_url: server.uri(),
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        // Out of the way unless a test is about it.
        breaker: BreakerSettings {
            failure_threshold: 1_000,
            cool_down: Duration::from_secs(60),
        },
        ..HeleketSettings::new(MERCHANT, API_KEY)
    }
}

fn client(settings: HeleketSettings) -> HeleketClient {
    HeleketClient::new(settings).unwrap()
}

fn order() -> OrderId {
    OrderId::new(
        UserId::new(42).unwrap(),
        RechargeId::from_uuid(Uuid::new_v4()),
    )
}

fn invoice_request(order_id: OrderId) -> InvoiceRequest {
    InvoiceRequest {
        amount: Amount::parse("12.50").unwrap(),
        currency: Currency::parse("USDT").unwrap(),
        network: "tron".into(),
        order_id,
        url_callback: "https://shop.example/heleket/webhook".into(),
        lifetime_seconds: 3_600,
    }
}

/// A `result` as Heleket returns it for a fresh invoice or a payment-info read.
fn invoice_result(order_id: &OrderId, status: &str) -> Value {
    json!({
        "uuid": "26109ba0-b05b-4ee0-93d1-fd62c822ce95",
        "order_id": order_id.to_string(),
        "amount": "12.50",
        "payment_amount": if status == "paid" { json!("12.50") } else { Value::Null },
        "payer_amount": null,
        "discount_percent": null,
        "discount": "0.00000000",
        "payer_currency": null,
        "currency": "USDT",
        "merchant_amount": null,
        "network": null,
        "address": null,
        "from": null,
        "txid": if status == "paid" { json!("0xabc") } else { Value::Null },
        "payment_status": status,
        "url": "https://pay.heleket.com/pay/26109ba0-b05b-4ee0-93d1-fd62c822ce95",
        "expired_at": EXPIRES,
        "status": status,
        "is_final": status == "paid",
        "additional_data": null,
        "created_at": "2025-01-01T12:00:00+03:00",
        "updated_at": "2025-01-01T12:00:00+03:00"
    })
}

fn ok(result: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"state": 0, "result": result}))
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

#[tokio::test]
async fn create_invoice_sends_a_signed_body_and_reads_the_invoice() {
    let server = MockServer::start().await;
    let order_id = order();
    Mock::given(method("POST"))
        .and(path("/v1/payment"))
        .and(header("merchant", MERCHANT))
        .and(header("content-type", "application/json"))
        .and(SignedWith(API_KEY))
        .respond_with(ok(invoice_result(&order_id, "check")))
        .expect(1)
        .mount(&server)
        .await;

    let invoice = client(settings(&server))
        .create_invoice(&invoice_request(order_id))
        .await
        .unwrap();

    assert_eq!(invoice.uuid, "26109ba0-b05b-4ee0-93d1-fd62c822ce95");
    assert_eq!(
        invoice.url,
        "https://pay.heleket.com/pay/26109ba0-b05b-4ee0-93d1-fd62c822ce95"
    );
    assert_eq!(invoice.expires_at.timestamp(), EXPIRES);

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1);
    let sign = sent[0].headers.get("sign").unwrap().to_str().unwrap();
    assert_eq!(sign, expected_sign(&sent[0].body, API_KEY));
    assert_ne!(sign, expected_sign(&sent[0].body, "another-key"));
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(
        body,
        json!({
            "amount": "12.5",
            "currency": "USDT",
            "order_id": order_id.to_string(),
            "url_callback": "https://shop.example/heleket/webhook",
            "lifetime": 3600,
            // The payer may pay only in the invoice's coin, on its network.
            "currencies": [{"currency": "USDT", "network": "tron"}]
        })
    );
    assert!(
        body["amount"].is_string(),
        "money travels as a decimal string"
    );
    // The key signs the request; it is never sent.
    let raw = format!(
        "{:?}{}",
        sent[0].headers,
        String::from_utf8_lossy(&sent[0].body)
    );
    assert!(!raw.contains(API_KEY));
}

#[tokio::test]
async fn asking_twice_for_the_same_order_sends_the_same_body_and_gets_the_same_invoice() {
    let server = MockServer::start().await;
    let order_id = order();
    Mock::given(method("POST"))
        .and(path("/v1/payment"))
        .and(SignedWith(API_KEY))
        .respond_with(ok(invoice_result(&order_id, "check")))
        .expect(2)
        .mount(&server)
        .await;
    let client = client(settings(&server));

    let first = client
        .create_invoice(&invoice_request(order_id))
        .await
        .unwrap();
    let second = client
        .create_invoice(&invoice_request(order_id))
        .await
        .unwrap();

    assert_eq!(first, second);
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].body, sent[1].body);
    assert_eq!(sent[0].headers.get("sign"), sent[1].headers.get("sign"));
}

#[tokio::test]
async fn server_errors_are_retried_until_heleket_answers() {
    let server = MockServer::start().await;
    let order_id = order();
    Mock::given(path("/v1/payment"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(path("/v1/payment"))
        .respond_with(ok(invoice_result(&order_id, "check")))
        .mount(&server)
        .await;

    let invoice = client(settings(&server))
        .create_invoice(&invoice_request(order_id))
        .await
        .unwrap();

    assert_eq!(invoice.expires_at.timestamp(), EXPIRES);
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 3);
    assert!(
        sent.windows(2).all(|w| w[0].body == w[1].body),
        "retries resend the same order"
    );
}

#[tokio::test]
async fn rate_limits_are_retried_too() {
    let server = MockServer::start().await;
    let order_id = order();
    Mock::given(path("/v1/payment/info"))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/payment/info"))
        .respond_with(ok(invoice_result(&order_id, "check")))
        .mount(&server)
        .await;

    let info = client(settings(&server))
        .payment_info(&order_id, None)
        .await
        .unwrap();

    assert_eq!(info.payment.status, PaymentStatus::Pending("check".into()));
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn a_server_that_keeps_failing_is_unavailable_after_exactly_the_allowed_attempts() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/payment"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let mut settings = settings(&server);
    settings.retry.attempts = 4;

    let error = client(settings)
        .create_invoice(&invoice_request(order()))
        .await
        .unwrap_err();

    assert_eq!(error, ProviderError::Unavailable("HTTP 500".into()));
    assert_eq!(requests(&server).await.len(), 4);
}

#[tokio::test]
async fn a_validation_refusal_is_final_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/payment"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "state": 1,
            "errors": {"amount": ["The amount must be at least 1."]}
        })))
        .mount(&server)
        .await;

    let error = client(settings(&server))
        .create_invoice(&invoice_request(order()))
        .await
        .unwrap_err();

    assert_eq!(
        error,
        ProviderError::Refused("amount: The amount must be at least 1.".into())
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_refusal_with_http_200_and_a_message_is_final() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/payment"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"state": 1, "message": "Merchant not active"})),
        )
        .mount(&server)
        .await;

    let error = client(settings(&server))
        .create_invoice(&invoice_request(order()))
        .await
        .unwrap_err();

    assert_eq!(error, ProviderError::Refused("Merchant not active".into()));
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_slow_server_times_out_as_unavailable() {
    let server = MockServer::start().await;
    let order_id = order();
    Mock::given(path("/v1/payment"))
        .respond_with(ok(invoice_result(&order_id, "check")).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let mut settings = settings(&server);
    settings.timeout = Duration::from_millis(200);
    settings.retry.attempts = 2;

    let error = client(settings)
        .create_invoice(&invoice_request(order_id))
        .await
        .unwrap_err();

    match error {
        ProviderError::Unavailable(reason) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Bind a port, then free it: nothing listens there any more. (Not a dropped MockServer:
    // wiremock pools its servers, so their ports keep answering.)
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut settings = HeleketSettings::new(MERCHANT, API_KEY);
    settings.base_url = format!("http://{address}");
    settings.retry = RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };

    let error = client(settings)
        .payment_info(&order(), None)
        .await
        .unwrap_err();

    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn an_invoice_without_an_expiry_or_in_garbled_json_is_a_bad_response() {
    let server = MockServer::start().await;
    let order_id = order();
    let mut result = invoice_result(&order_id, "check");
    result.as_object_mut().unwrap().remove("expired_at");
    Mock::given(path("/v1/payment"))
        .respond_with(ok(result))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/payment"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"state\":0,\"result\":"))
        .mount(&server)
        .await;
    let client = client(settings(&server));

    for _ in 0..2 {
        let error = client
            .create_invoice(&invoice_request(order_id))
            .await
            .unwrap_err();
        assert!(matches!(error, ProviderError::BadResponse(_)), "{error:?}");
    }
    assert_eq!(
        requests(&server).await.len(),
        2,
        "bad answers are not retried"
    );
}

#[tokio::test]
async fn an_invoice_for_another_order_is_not_accepted() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/payment/info"))
        .respond_with(ok(invoice_result(&order(), "paid")))
        .mount(&server)
        .await;

    let error = client(settings(&server))
        .payment_info(&order(), None)
        .await
        .unwrap_err();

    assert!(matches!(error, ProviderError::BadResponse(_)), "{error:?}");
}

#[tokio::test]
async fn after_the_threshold_of_failures_calls_are_refused_without_reaching_heleket() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/payment"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let mut settings = settings(&server);
    settings.retry = RetryPolicy::no_retries();
    settings.breaker = BreakerSettings {
        failure_threshold: 3,
        cool_down: Duration::from_secs(600),
    };
    let client = client(settings);

    for _ in 0..3 {
        let error = client
            .create_invoice(&invoice_request(order()))
            .await
            .unwrap_err();
        assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
    }
    assert!(client.circuit_open());
    for _ in 0..5 {
        let error = client
            .create_invoice(&invoice_request(order()))
            .await
            .unwrap_err();
        assert_eq!(error, ProviderError::CircuitOpen);
        assert_eq!(
            client.payment_info(&order(), None).await.unwrap_err(),
            ProviderError::CircuitOpen
        );
    }
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn a_breaker_that_opens_mid_call_stops_the_retries() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/payment"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let mut settings = settings(&server);
    settings.retry.attempts = 5;
    settings.breaker = BreakerSettings {
        failure_threshold: 2,
        cool_down: Duration::from_secs(600),
    };
    let client = client(settings);

    let error = client
        .create_invoice(&invoice_request(order()))
        .await
        .unwrap_err();

    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
    assert_eq!(requests(&server).await.len(), 2);
    assert!(client.circuit_open());
}

#[tokio::test]
async fn refusals_do_not_open_the_breaker() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/payment"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"state": 1, "message": "Unauthorized"})),
        )
        .mount(&server)
        .await;
    let mut settings = settings(&server);
    settings.breaker.failure_threshold = 2;
    let client = client(settings);

    for _ in 0..4 {
        let error = client
            .create_invoice(&invoice_request(order()))
            .await
            .unwrap_err();
        assert_eq!(error, ProviderError::Refused("Unauthorized".into()));
    }
    assert!(!client.circuit_open());
    assert_eq!(requests(&server).await.len(), 4);
}

#[tokio::test]
async fn after_the_cool_down_one_trial_call_goes_through_and_closes_the_breaker() {
    let server = MockServer::start().await;
    let order_id = order();
    Mock::given(path("/v1/payment"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/payment"))
        .respond_with(ok(invoice_result(&order_id, "check")))
        .mount(&server)
        .await;
    let cool_down = Duration::from_millis(100);
    let mut settings = settings(&server);
    settings.retry = RetryPolicy::no_retries();
    settings.breaker = BreakerSettings {
        failure_threshold: 1,
        cool_down,
    };
    let client = client(settings);

    let error = client
        .create_invoice(&invoice_request(order_id))
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
    assert!(client.circuit_open());

    // Sleeping at least the cool-down guarantees it is over; how much longer does not matter.
    tokio::time::sleep(cool_down * 2).await;
    let invoice = client
        .create_invoice(&invoice_request(order_id))
        .await
        .unwrap();

    assert_eq!(invoice.expires_at.timestamp(), EXPIRES);
    assert!(!client.circuit_open());
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn payment_info_reads_a_paid_invoice() {
    let server = MockServer::start().await;
    let order_id = order();
    Mock::given(method("POST"))
        .and(path("/v1/payment/info"))
        .and(header("merchant", MERCHANT))
        .and(SignedWith(API_KEY))
        .respond_with(ok(invoice_result(&order_id, "paid")))
        .expect(1)
        .mount(&server)
        .await;

    let info = client(settings(&server))
        .payment_info(&order_id, None)
        .await
        .unwrap();

    assert_eq!(info.payment.status, PaymentStatus::Paid);
    assert!(info.payment.is_final);
    assert_eq!(info.payment.order_id, order_id.to_string());
    assert_eq!(info.payment.payment_amount.as_deref(), Some("12.50"));
    assert_eq!(info.payment.txid.as_deref(), Some("0xabc"));
    let sent = requests(&server).await;
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body, json!({"order_id": order_id.to_string()}));
}

#[tokio::test]
async fn payment_info_by_uuid_asks_for_that_invoice_and_refuses_an_answer_about_another() {
    let server = MockServer::start().await;
    let order_id = order();
    Mock::given(method("POST"))
        .and(path("/v1/payment/info"))
        .and(SignedWith(API_KEY))
        .respond_with(ok(invoice_result(&order_id, "paid")))
        .mount(&server)
        .await;
    let client = client(settings(&server));

    let info = client
        .payment_info(&order_id, Some("26109ba0-b05b-4ee0-93d1-fd62c822ce95"))
        .await
        .unwrap();
    assert_eq!(info.payment.uuid, "26109ba0-b05b-4ee0-93d1-fd62c822ce95");
    let sent = requests(&server).await;
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(
        body,
        json!({"uuid": "26109ba0-b05b-4ee0-93d1-fd62c822ce95"})
    );

    let error = client
        .payment_info(&order_id, Some("0b6b2a2c-0000-4000-8000-000000000000"))
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::BadResponse(_)), "{error:?}");
}

#[tokio::test]
async fn an_unknown_order_is_not_found() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/payment/info"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"state": 1, "message": "Payment not found"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/payment/info"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"state": 1, "message": "Payment not found"})),
        )
        .mount(&server)
        .await;
    let client = client(settings(&server));

    for _ in 0..2 {
        let order_id = order();
        assert_eq!(
            client.payment_info(&order_id, None).await.unwrap_err(),
            ProviderError::NotFound(order_id.to_string())
        );
    }
    assert_eq!(requests(&server).await.len(), 2, "not found is not retried");
}

#[tokio::test]
async fn debug_output_never_shows_the_api_key() {
    let server = MockServer::start().await;
    let settings = settings(&server);
    assert!(!format!("{settings:?}").contains(API_KEY));

    let client = client(settings);
    let shown = format!("{client:?}");

    assert!(!shown.contains(API_KEY), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(shown.contains(MERCHANT), "{shown}");
    assert_eq!(client.name(), "heleket");
}
