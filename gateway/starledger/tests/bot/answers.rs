//! A button press is answered before the slow work it starts: a top-up waits for Heleket
//! (here 20 s, past the window in which Telegram takes a button's answer), and the pay link
//! still arrives, because the answer went first and a late or failed answer never stops the
//! reply.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use starledger_heleket::sign::request_signature;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::fake_telegram::{FakeTelegram, ANSWER_WINDOW};
use super::harness::{self, Database};

const MAY: i64 = 4_600_000_001;
const MERCHANT: &str = "8b2c5a4e-0000-4000-8000-000000000009";
const HELEKET_KEY: &str = "live-heleket-key-for-the-slow-test";
/// Longer than Telegram's window for a button's answer.
const HELEKET_TAKES: Duration = Duration::from_secs(20);

/// Heleket's `POST /v1/payment`, answered as Heleket does, after `HELEKET_TAKES`.
fn slow_invoice(request: &Request) -> ResponseTemplate {
    let signed = request.headers.get("sign").and_then(|v| v.to_str().ok());
    if signed != Some(&request_signature(&request.body, HELEKET_KEY)) {
        return ResponseTemplate::new(401).set_body_json(json!({"state": 1, "message": "sign"}));
    }
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let uuid = uuid::Uuid::new_v4().to_string();
    ResponseTemplate::new(200)
        .set_delay(HELEKET_TAKES)
        .set_body_json(json!({"state": 0, "result": {
            "uuid": uuid, "order_id": body["order_id"], "amount": body["amount"],
            "currency": body["currency"], "url": format!("https://pay.heleket.com/pay/{uuid}"),
            "expired_at": Utc::now().timestamp() + 3600, "payment_status": "check",
            "status": "check", "is_final": false,
        }}))
}

#[tokio::test]
async fn a_slow_top_up_answers_the_press_first_and_the_pay_link_still_arrives() {
    assert!(HELEKET_TAKES > ANSWER_WINDOW);
    let heleket = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment"))
        .respond_with(slow_invoice)
        .mount(&heleket)
        .await;
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    let uri = heleket.uri();
    let app = harness::start(
        &database,
        &fake,
        &[
            ("HELEKET_MODE", "live"),
            ("MERCHANT_UUID", MERCHANT),
            ("API_KEY", HELEKET_KEY),
            ("HELEKET_API_URL", &uri),
            (
                "HELEKET_CALLBACK_URL",
                "https://shop.example/webhooks/heleket",
            ),
            ("HELEKET_TIMEOUT", "40"),
            ("FRAGMENT_MODE", "manual"),
        ],
    )
    .await;

    fake.send_text(MAY, "en", "/recharge");
    let menu = fake.text(MAY, "How much would you like to top up").await;
    let button = harness::button(&menu.body, "rc:");
    fake.press(MAY, "en", &menu.result, &button);

    // The press is answered at once, while Heleket is still working on the invoice…
    fake.wait_for("the press answered", |calls| {
        calls
            .iter()
            .find(|c| c.method == "answerCallbackQuery" && !c.result.is_null())
            .cloned()
    })
    .await;
    assert_eq!(fake.count(MAY, "Invoice for"), 0, "the answer came first");
    // …and the pay link arrives once Heleket answers.
    let invoice = fake.text(MAY, "Invoice for").await;
    assert!(
        invoice.body["text"]
            .as_str()
            .unwrap_or_default()
            .contains("https://pay.heleket.com/pay/"),
        "{:?}",
        invoice.body
    );

    app.stop().await;
    database.drop_database().await;
    fake.stop().await;
}
