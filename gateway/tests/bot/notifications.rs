//! Notifications follow the event log once: a user who blocked the bot is skipped (tried
//! once, never again), Telegram's flood control is waited out and the message then goes
//! once, and a restarted app neither repeats a notification nor misses one.

use super::fake_telegram::{FakeTelegram, Scripted};
use super::harness::{self, invoice_uuid, Database};

const GIL: i64 = 4_400_000_001;
const HAL: i64 = 4_400_000_002;
const IDA: i64 = 4_400_000_003;

fn text(call: &super::fake_telegram::Call) -> String {
    call.body["text"].as_str().unwrap_or_default().to_owned()
}

/// Tops `user` up by `amount` through the bot and the sandbox.
async fn top_up(fake: &FakeTelegram, app: &harness::BotApp, user: i64, amount: &str) {
    let before = fake.count(user, &format!("Invoice for {amount} TON"));
    fake.send_text(user, "en", &format!("/recharge {amount}"));
    let invoice = fake
        .nth_text(user, &format!("Invoice for {amount} TON"), before)
        .await;
    app.pay(&invoice_uuid(&text(&invoice))).await;
}

#[tokio::test]
async fn blocked_users_are_skipped_and_flood_control_is_waited_out() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    let app = harness::start(&database, &fake, &[]).await;

    // Both ask for an invoice while the bot can still write to them.
    fake.send_text(GIL, "en", "/recharge 1");
    let gil_invoice = fake.text(GIL, "Invoice for 1 TON").await;
    fake.send_text(HAL, "en", "/recharge 2");
    let hal_invoice = fake.text(HAL, "Invoice for 2 TON").await;

    // Then GIL blocks the bot, and HAL's next message meets flood control once.
    fake.script(GIL, vec![Scripted::Blocked]);
    fake.script(HAL, vec![Scripted::FloodWait(1)]);
    // GIL's payment is in the log before HAL's.
    app.pay(&invoice_uuid(&text(&gil_invoice))).await;
    app.pay(&invoice_uuid(&text(&hal_invoice))).await;

    // HAL's notification arrives once, after the 429 (the first attempt is recorded too).
    let paid = text(&fake.nth_text(HAL, "Payment received", 1).await);
    assert!(paid.contains("2 TON added"), "{paid}");
    let to_hal: Vec<_> = fake
        .calls_to("sendMessage", HAL)
        .into_iter()
        .filter(|c| text(c).contains("Payment received"))
        .collect();
    assert_eq!(to_hal.len(), 2, "one refused with 429, one delivered");
    assert!(to_hal[0].result.is_null() && !to_hal[1].result.is_null());
    // GIL's was tried exactly once (403) and skipped.
    let to_gil = || {
        fake.calls_to("sendMessage", GIL)
            .into_iter()
            .filter(|c| text(c).contains("Payment received"))
            .count()
    };
    assert_eq!(to_gil(), 1);

    // Later notifications still flow (the reactor did not stall on GIL), and GIL's is never
    // tried again.
    top_up(&fake, &app, HAL, "4").await;
    fake.text(HAL, "4 TON added").await;
    assert_eq!(to_gil(), 1);

    app.stop().await;
    database.drop_database().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_restart_neither_repeats_nor_misses_a_notification() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;

    let app = harness::start(&database, &fake, &[]).await;
    top_up(&fake, &app, IDA, "1").await;
    fake.text(IDA, "1 TON added").await;
    app.stop().await;

    // The restarted notifier continues from its checkpoint: the next payment is told, the
    // first is not told again.
    let app = harness::start(&database, &fake, &[]).await;
    top_up(&fake, &app, IDA, "2").await;
    fake.text(IDA, "2 TON added").await;
    assert_eq!(
        fake.count(IDA, "Payment received"),
        2,
        "one message per payment"
    );
    assert_eq!(
        fake.count(IDA, "1 TON added"),
        1,
        "the first is not repeated"
    );
    let balance = text(&fake.text(IDA, "2 TON added").await);
    assert!(balance.contains("Available: 3 TON"), "{balance}");
    app.stop().await;

    database.drop_database().await;
    fake.stop().await;
}
