//! Notifications follow the event log once: a user who blocked the bot is skipped (tried
//! once, never again), Telegram's flood control is waited out and the message then goes
//! once, and a restarted app neither repeats a notification nor misses one.

use super::fake_telegram::{FakeTelegram, Scripted};
use super::harness::{self, invoice_uuid, Database};

const GIL: i64 = 4_400_000_001;
const HAL: i64 = 4_400_000_002;
const IDA: i64 = 4_400_000_003;
const JON: i64 = 4_400_000_004;
const KIT: i64 = 4_400_000_005;
const LEO: i64 = 4_400_000_006;

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

#[tokio::test]
async fn users_hear_of_partial_credits_holds_reviews_and_reversals_and_cannot_buy_in_debt() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    let app = harness::start(&database, &fake, &[("FRAGMENT_MODE", "manual")]).await;
    let invoice = |amount: &'static str| {
        let fake = &fake;
        async move {
            let before = fake.count(JON, &format!("Invoice for {amount} TON"));
            fake.send_text(JON, "en", &format!("/recharge {amount}"));
            let sent = fake
                .nth_text(JON, &format!("Invoice for {amount} TON"), before)
                .await;
            invoice_uuid(&text(&sent))
        }
    };

    // Underpaid: what arrived is credited, and the user is told it was partial.
    let under = invoice("10").await;
    let outcome = app
        .sandbox_webhook(
            &under,
            serde_json::json!({"status": "wrong_amount", "amount": "6"}),
        )
        .await;
    assert_eq!(outcome, "partial");
    let partial = text(&fake.text(JON, "Less than the invoice was paid").await);
    assert!(partial.contains("6 TON of 10 TON"), "{partial}");

    // Held for a check: the user is told a check is under way.
    let held = invoice("2").await;
    let outcome = app
        .sandbox_webhook(&held, serde_json::json!({"status": "locked"}))
        .await;
    assert_eq!(outcome, "on_hold");
    fake.text(JON, "is checking your payment").await;

    // Paid in another coin: reviewed, and the user is told so.
    let foreign = invoice("3").await;
    let outcome = app
        .sandbox_webhook(
            &foreign,
            serde_json::json!({"status": "paid", "amount": "30", "payer_currency": "USDT"}),
        )
        .await;
    assert_eq!(outcome, "needs_review");
    fake.text(JON, "needs a manual check").await;

    // Spend most of the partial credit on Stars (FRAGMENT_MODE=manual: the order waits), then
    // the payment is refunded: reversed, and what was spent is owed.
    fake.send_text(JON, "en", "/buy_stars 1000");
    let offer = fake.text(JON, "Order: 1000 ⭐").await;
    fake.press(
        JON,
        "en",
        &offer.result,
        &harness::button(&offer.body, "ok:"),
    );
    fake.text(JON, "Order placed: 1000 ⭐").await;
    let outcome = app
        .sandbox_webhook(&under, serde_json::json!({"status": "refund_paid"}))
        .await;
    assert_eq!(outcome, "reversed");
    let reversed = text(&fake.text(JON, "was refunded to you").await);
    assert!(reversed.contains("you owe 4.95 TON"), "{reversed}");

    // Purchases are paused while the debt is open.
    fake.send_text(JON, "en", "/buy_stars 50");
    let offer = fake.text(JON, "Order: 50 ⭐").await;
    fake.press(
        JON,
        "en",
        &offer.result,
        &harness::button(&offer.body, "ok:"),
    );
    fake.text(JON, "Purchases are paused").await;

    app.stop().await;
    database.drop_database().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_notification_telegram_refuses_for_good_is_skipped_and_the_later_ones_still_arrive() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    let app = harness::start(&database, &fake, &[]).await;

    fake.send_text(KIT, "en", "/recharge 1");
    let kit_invoice = fake.text(KIT, "Invoice for 1 TON").await;
    let mut leo_invoices = Vec::new();
    for amount in ["2", "3", "4"] {
        fake.send_text(LEO, "en", &format!("/recharge {amount}"));
        leo_invoices.push(fake.text(LEO, &format!("Invoice for {amount} TON")).await);
    }
    // From now on Telegram answers every message to KIT with a 400 it will never take back.
    fake.script(KIT, vec![Scripted::BadRequest("Bad Request: TOPIC_CLOSED")]);
    // KIT's payment is in the log first; LEO's three follow it.
    app.pay(&invoice_uuid(&text(&kit_invoice))).await;
    for invoice in &leo_invoices {
        app.pay(&invoice_uuid(&text(invoice))).await;
    }

    // LEO's notifications arrive, in the log's order, once each.
    fake.text(LEO, "4 TON added").await;
    let to_leo: Vec<String> = fake
        .calls_to("sendMessage", LEO)
        .iter()
        .map(text)
        .filter(|t| t.contains("Payment received"))
        .collect();
    assert_eq!(to_leo.len(), 3, "{to_leo:?}");
    for (message, amount) in to_leo.iter().zip(["2", "3", "4"]) {
        assert!(
            message.contains(&format!("{amount} TON added")),
            "{to_leo:?}"
        );
    }
    // KIT's was tried once, and skipped for good.
    let to_kit = fake
        .calls_to("sendMessage", KIT)
        .iter()
        .filter(|c| text(c).contains("Payment received"))
        .count();
    assert_eq!(to_kit, 1);

    app.stop().await;
    database.drop_database().await;
    fake.stop().await;
}
