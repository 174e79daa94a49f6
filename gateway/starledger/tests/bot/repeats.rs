//! A stale or repeated button press does nothing twice: confirming one offer again, at once
//! or later, reserves its price once; a cancelled or replaced offer buys nothing.

use super::fake_telegram::FakeTelegram;
use super::harness::{self, button, invoice_uuid, Database};

const CLARA: i64 = 4_200_000_001;

fn text(call: &super::fake_telegram::Call) -> String {
    call.body["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_repeated_confirm_buys_once_and_a_dead_offer_buys_nothing() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    let app = harness::start(&database, &fake, &[]).await;

    fake.send_text(CLARA, "en", "/recharge 5");
    let invoice = fake.text(CLARA, "Invoice for 5 TON created").await;
    app.pay(&invoice_uuid(&text(&invoice))).await;
    fake.text(CLARA, "Payment received").await;

    fake.send_text(CLARA, "en", "/buy_stars 100");
    let offer = fake.text(CLARA, "Order: 100 ⭐").await;
    let confirm = button(&offer.body, "ok:");
    // Three presses of the same button: two at once (a double tap), one after the answer.
    fake.press(CLARA, "en", &offer.result, &confirm);
    fake.press(CLARA, "en", &offer.result, &confirm);
    fake.text(CLARA, "Order placed: 100 ⭐").await;
    fake.text(CLARA, "This order was already placed").await;
    fake.press(CLARA, "en", &offer.result, &confirm);
    fake.nth_text(CLARA, "This order was already placed", 1)
        .await;
    assert_eq!(fake.count(CLARA, "Order placed"), 1);
    assert_eq!(
        app.purchases(CLARA).await.len(),
        1,
        "one purchase in the ledger"
    );
    let balance = app
        .state
        .queries
        .balance(CLARA, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(balance.available.normalize().to_string(), "4.505");
    assert_eq!(balance.reserved.normalize().to_string(), "0.495");

    // Cancelled: its confirm button buys nothing.
    fake.send_text(CLARA, "en", "/buy_stars 50");
    let cancelled = fake.text(CLARA, "Order: 50 ⭐").await;
    fake.press(
        CLARA,
        "en",
        &cancelled.result,
        &button(&cancelled.body, "no:"),
    );
    fake.text(CLARA, "Order cancelled").await;
    fake.press(
        CLARA,
        "en",
        &cancelled.result,
        &button(&cancelled.body, "ok:"),
    );
    fake.text(CLARA, "This offer is no longer valid").await;

    // Replaced by a newer offer: the old button buys nothing, the new one buys.
    fake.send_text(CLARA, "en", "/buy_stars 250");
    let old = fake.text(CLARA, "Order: 250 ⭐").await;
    fake.send_text(CLARA, "en", "/buy_stars 500");
    let new = fake.text(CLARA, "Order: 500 ⭐").await;
    fake.press(CLARA, "en", &old.result, &button(&old.body, "ok:"));
    fake.nth_text(CLARA, "This offer is no longer valid", 1)
        .await;
    assert_eq!(
        app.purchases(CLARA).await.len(),
        1,
        "dead offers bought nothing"
    );
    fake.press(CLARA, "en", &new.result, &button(&new.body, "ok:"));
    let placed = text(&fake.text(CLARA, "Order placed: 500 ⭐").await);
    assert!(
        placed.contains("Available: 2.03 TON, reserved: 2.97 TON"),
        "{placed}"
    );
    assert_eq!(app.purchases(CLARA).await.len(), 2);

    app.stop().await;
    database.drop_database().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_confirm_without_the_money_is_refused_and_reserves_nothing() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    let app = harness::start(&database, &fake, &[]).await;

    fake.send_text(CLARA, "en", "/start");
    fake.text(CLARA, "This bot sells").await;
    fake.send_text(CLARA, "en", "/buy_stars 1000");
    let offer = fake.text(CLARA, "Order: 1000 ⭐").await;
    fake.press(CLARA, "en", &offer.result, &button(&offer.body, "ok:"));
    let refused = text(&fake.text(CLARA, "Not enough funds").await);
    assert!(
        refused.contains("the order costs 4.95 TON, you have 0 TON"),
        "{refused}"
    );
    assert!(app.purchases(CLARA).await.is_empty());

    app.stop().await;
    database.drop_database().await;
    fake.stop().await;
}
