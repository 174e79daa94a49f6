//! Per-user rate limits kick in at the configured numbers (messages, operations, payments),
//! with one polite message for the first refusal of a window and nothing more after it; what
//! a refused step would have done is not done.

use super::fake_telegram::FakeTelegram;
use super::harness::{self, Database};

const DAN: i64 = 4_300_000_001;
const EVA: i64 = 4_300_000_002;
const FOX: i64 = 4_300_000_003;

fn rate_limited(metrics: &str, limit: &str) -> u64 {
    let prefix = format!("starledger_bot_rate_limited_total{{limit=\"{limit}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn rate_limits_refuse_past_the_configured_numbers_politely() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    let limits = [
        ("RATE_LIMIT_USER_MESSAGES", "4"),
        ("RATE_LIMIT_USER_OPERATIONS", "3"),
        ("RATE_LIMIT_USER_PAYMENTS", "2"),
        // Long windows: the test never runs into a window's end.
        ("CACHE_TTL_RATE_LIMIT", "3600"),
    ];
    let app = harness::start(&database, &fake, &limits).await;
    let metrics = || async {
        app.http
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    };
    let refused_messages_before = rate_limited(&metrics().await, "messages");

    // Messages: four answered, the fifth gets the polite refusal, the sixth nothing.
    for _ in 0..6 {
        fake.send_text(DAN, "en", "/help");
    }
    fake.nth_text(DAN, "Commands:", 3).await;
    fake.text(DAN, "You are sending messages too fast").await;
    // The sixth is refused too (counted), but not answered.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while rate_limited(&metrics().await, "messages") < refused_messages_before + 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sixth message was never counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(fake.count(DAN, "Commands:"), 4);
    assert_eq!(fake.count(DAN, "too fast"), 1);
    assert_eq!(
        fake.calls_to("sendMessage", DAN).len(),
        5,
        "nothing after the first refusal"
    );

    // Operations: three balance reads, then a refusal.
    for _ in 0..4 {
        fake.send_text(EVA, "en", "/balance");
    }
    fake.nth_text(EVA, "Available: 0 TON", 2).await;
    fake.text(EVA, "Too many requests in a minute").await;
    assert_eq!(fake.count(EVA, "Available:"), 3);

    // Payments: two invoices, the third is refused and records nothing.
    for amount in ["1", "2", "3"] {
        fake.send_text(FOX, "en", &format!("/recharge {amount}"));
    }
    fake.text(FOX, "Too many payments in a minute").await;
    fake.text(FOX, "Invoice for 1 TON").await;
    fake.text(FOX, "Invoice for 2 TON").await;
    assert_eq!(fake.count(FOX, "Invoice for 3 TON"), 0);
    let history = app
        .state
        .queries
        .history(FOX, None, 50, None)
        .await
        .unwrap();
    assert_eq!(
        history.transactions.len(),
        2,
        "the refused top-up made no invoice"
    );

    // A limited button press gets its alert in the callback answer.
    let menu = fake.calls_to("sendMessage", DAN)[0].result.clone();
    fake.press(DAN, "en", &menu, "bal");
    fake.wait_for("the refused press answered with an alert", |calls| {
        calls
            .iter()
            .find(|c| {
                c.method == "answerCallbackQuery"
                    && c.body["show_alert"] == true
                    && c.body["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("too fast"))
            })
            .cloned()
    })
    .await;

    app.stop().await;
    database.drop_database().await;
    fake.stop().await;
}
