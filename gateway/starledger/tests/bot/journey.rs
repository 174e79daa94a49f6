//! A user's whole way through the shop over the bot, checking what the bot shows at each
//! step against the ledger: /start → /balance → /recharge → (signed sandbox webhook) →
//! notification → /buy_stars → confirm → delivered (by the fulfilment worker against the
//! sandbox Fragment); then a gift to a recipient Fragment does not know, refunded; history
//! paging; the Russian texts.

use serde_json::Value;

use super::fake_telegram::FakeTelegram;
use super::harness::{self, button, invoice_uuid, Database};

const ANN: i64 = 4_100_000_001;
const BORIS: i64 = 4_100_000_002;

fn text(call: &super::fake_telegram::Call) -> String {
    call.body["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_user_tops_up_buys_and_is_told_each_step() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    // Purchases are fulfilled by the real worker against the sandbox Fragment, where a
    // recipient whose name contains `notfound` does not exist.
    let app = harness::start(&database, &fake, &[("FRAGMENT_MODE", "sandbox")]).await;

    // /start registers the user and shows the main menu.
    fake.send_text(ANN, "en", "/start");
    let welcome = fake.text(ANN, "This bot sells Telegram Stars").await;
    assert_eq!(button(&welcome.body, "bal"), "bal");
    let profile = app.state.queries.user(ANN).await.unwrap();
    let profile = profile.expect("the bot registered the user in the ledger");
    assert_eq!(profile.language.as_deref(), Some("en"));
    assert_eq!(profile.username.as_deref(), Some("user_4100000001"));

    // A second /start is fine: nothing new is recorded.
    let events = app.log_length().await;
    fake.send_text(ANN, "en", "/start");
    fake.nth_text(ANN, "This bot sells Telegram Stars", 1).await;
    assert_eq!(
        app.log_length().await,
        events,
        "a repeated /start records nothing"
    );

    fake.send_text(ANN, "en", "/balance");
    let balance = text(&fake.text(ANN, "Balance\nAvailable:").await);
    assert!(balance.contains("Available: 0 TON"), "{balance}");
    assert!(balance.contains("Reserved for orders: 0 TON"), "{balance}");

    // /recharge 10 creates the invoice and answers with its link.
    fake.send_text(ANN, "en", "/recharge 10");
    let invoice = fake.text(ANN, "Invoice for 10 TON created").await;
    let uuid = invoice_uuid(&text(&invoice));
    assert!(
        invoice.body["reply_markup"]["inline_keyboard"][0][0]["url"]
            .as_str()
            .is_some_and(|url| url.contains(&uuid)),
        "a Pay button links to the invoice: {:#}",
        invoice.body
    );

    // Heleket (the sandbox) pays with a signed webhook; the bot tells the user.
    app.pay(&uuid).await;
    let paid = text(&fake.text(ANN, "Payment received").await);
    assert!(paid.contains("10 TON added"), "{paid}");
    assert!(paid.contains("Available: 10 TON"), "{paid}");

    fake.send_text(ANN, "en", "/balance");
    let balance = text(&fake.text(ANN, "Balance\nAvailable: 10 TON").await);
    assert!(balance.contains("Reserved for orders: 0 TON"), "{balance}");

    // /buy_stars 100: the price is shown with a confirm button; nothing is reserved yet.
    fake.send_text(ANN, "en", "/buy_stars 100");
    let offer = fake.text(ANN, "Order: 100 ⭐ for your own account").await;
    assert!(
        text(&offer).contains("Price: 0.495 TON"),
        "{}",
        text(&offer)
    );
    assert!(text(&offer).contains("Available balance: 10 TON"));
    assert!(
        app.purchases(ANN).await.is_empty(),
        "no purchase before confirming"
    );

    let confirm = button(&offer.body, "ok:");
    fake.press(ANN, "en", &offer.result, &confirm);
    let placed = fake.text(ANN, "Order placed: 100 ⭐").await;
    assert_eq!(
        placed.method, "editMessageText",
        "the offer is replaced by its outcome"
    );
    let placed = text(&placed);
    assert!(placed.contains("0.495 TON reserved"), "{placed}");
    // Read at the purchase's position or later: never the balance from before it. (The
    // worker may already have delivered, which leaves available as it is and reserved at 0.)
    assert!(
        placed.contains("Available: 9.505 TON, reserved: 0.495 TON")
            || placed.contains("Available: 9.505 TON, reserved: 0 TON"),
        "the reply shows the reservation it made: {placed}"
    );
    fake.wait_for("the button press answered", |calls| {
        calls
            .iter()
            .find(|c| c.method == "answerCallbackQuery")
            .cloned()
    })
    .await;

    // The fulfilment worker (sandbox Fragment) delivers: the user hears of it.
    let delivered = text(&fake.text(ANN, "Delivered").await);
    assert!(
        delivered.contains("100 Stars for your own account"),
        "{delivered}"
    );
    assert_eq!(app.purchases(ANN).await.len(), 1);

    // A gift whose delivery fails: reserved, then refunded, and the user is told.
    fake.send_text(ANN, "en", "/buy_stars 250 @friend_notfound");
    let gift = fake.text(ANN, "as a gift to @friend_notfound").await;
    assert!(text(&gift).contains("Price: 1.2375 TON"), "{}", text(&gift));
    fake.press(ANN, "en", &gift.result, &button(&gift.body, "ok:"));
    let placed = text(&fake.text(ANN, "Order placed: 250 ⭐").await);
    // Reserved on top of 9.505 available (unless the refund already came back).
    assert!(
        placed.contains("Available: 8.2675 TON, reserved: 1.2375 TON")
            || placed.contains("Available: 9.505 TON, reserved: 0 TON"),
        "{placed}"
    );
    // The sandbox Fragment finds no such recipient: the worker refunds the purchase.
    let refunded = text(&fake.text(ANN, "could not deliver").await);
    assert!(
        refunded.contains("250 ⭐ as a gift to @friend_notfound"),
        "{refunded}"
    );
    assert!(refunded.contains("1.2375 TON was returned"), "{refunded}");
    assert!(refunded.contains("Available: 9.505 TON"), "{refunded}");

    fake.send_text(ANN, "en", "/balance");
    let balance = text(&fake.text(ANN, "Balance\nAvailable: 9.505 TON").await);
    assert!(balance.contains("Reserved for orders: 0 TON"), "{balance}");

    // The ledger agrees with everything the bot said.
    let row = app.state.queries.balance(ANN, None).await.unwrap().unwrap();
    assert_eq!(row.available.normalize().to_string(), "9.505");
    assert_eq!(row.reserved.normalize().to_string(), "0");

    fake.send_text(ANN, "en", "/history");
    let history = text(&fake.text(ANN, "Your transactions:").await);
    assert!(history.contains("Top-up · 10 TON · done"), "{history}");
    assert!(
        history.contains("Purchase · 100 ⭐ · 0.495 TON · done"),
        "{history}"
    );
    assert!(
        history.contains("Purchase · 250 ⭐ → @friend_notfound · 1.2375 TON · refunded"),
        "{history}"
    );

    app.stop().await;
    database.drop_database().await;
    fake.stop().await;
}

#[tokio::test]
async fn history_pages_with_buttons_and_texts_follow_the_language() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    // More top-ups than the default five payments a minute.
    let limits = [
        ("RATE_LIMIT_USER_PAYMENTS", "100"),
        ("RATE_LIMIT_USER_OPERATIONS", "100"),
    ];
    let app = harness::start(&database, &fake, &limits).await;

    fake.send_text(BORIS, "ru", "/start");
    let welcome = text(&fake.text(BORIS, "Здравствуйте").await);
    assert!(welcome.contains("Telegram Stars"), "{welcome}");

    // Seven top-ups from the preset menu: one invoice per press of a different message.
    for n in 1..=7 {
        fake.send_text(BORIS, "ru", &format!("/recharge {n}"));
        fake.text(BORIS, &format!("Счёт на {n} TON создан")).await;
    }
    fake.send_text(BORIS, "ru", "/history");
    let first = fake.text(BORIS, "История операций:").await;
    let lines: Vec<String> = text(&first).lines().skip(1).map(str::to_owned).collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(
        lines[0].contains("Пополнение · 7 TON · ожидает оплаты"),
        "{lines:?}"
    );
    let older = button(&first.body, "h:");
    fake.press(BORIS, "ru", &first.result, &older);
    let second = fake.nth_text(BORIS, "История операций:", 1).await;
    assert_eq!(
        second.method, "editMessageText",
        "paging edits the message in place"
    );
    let lines: Vec<String> = text(&second).lines().skip(1).map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("Пополнение · 1 TON"), "{lines:?}");
    // The last page offers the way back, not further.
    let row: Vec<Value> = second.body["reply_markup"]["inline_keyboard"][0]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(row.len(), 1, "{row:?}");
    assert_eq!(row[0]["callback_data"], "h");

    // A custom amount through the dialogue: the button asks, the next message answers.
    fake.send_text(BORIS, "ru", "/recharge");
    let menu = fake.text(BORIS, "На сколько пополнить").await;
    fake.press(BORIS, "ru", &menu.result, "rc:other");
    fake.text(BORIS, "Отправьте сумму пополнения").await;
    fake.send_text(BORIS, "ru", "2,25");
    fake.text(BORIS, "Счёт на 2.25 TON создан").await;

    // A preset pressed twice on the same message is one top-up, one invoice.
    let before = app.log_length().await;
    let earlier = fake.count(BORIS, "Счёт на 5 TON создан");
    fake.press(BORIS, "ru", &menu.result, "rc:5");
    let first_invoice = text(&fake.nth_text(BORIS, "Счёт на 5 TON создан", earlier).await);
    fake.press(BORIS, "ru", &menu.result, "rc:5");
    let second_invoice = text(
        &fake
            .nth_text(BORIS, "Счёт на 5 TON создан", earlier + 1)
            .await,
    );
    assert_eq!(invoice_uuid(&first_invoice), invoice_uuid(&second_invoice));
    assert_eq!(app.log_length().await, before + 1, "one recharge recorded");

    app.stop().await;
    database.drop_database().await;
    fake.stop().await;
}
