//! Whom Stars "for myself" go to: the username Telegram shows for the buyer when they press
//! Confirm, recorded on the order — never the name they registered with, which they may have
//! given up (and someone else taken) since. A buyer without a username is asked to set one or
//! buy as a gift; profile changes seen in updates reach the users table; 4-character
//! (collectible) usernames can receive gifts.

use serde_json::Value;
use starledger_ledger::events::AccountEvent;
use starledger_ledger::ids::UserId;

use super::fake_telegram::{Call, FakeTelegram};
use super::harness::{self, button, invoice_uuid, BotApp, Database};

const CLARA: i64 = 4_100_000_301;
const DAN: i64 = 4_100_000_302;
const EVE: i64 = 4_100_000_303;

fn text(call: &Call) -> String {
    call.body["text"].as_str().unwrap_or_default().to_owned()
}

/// Registers `user` and tops their balance up with 10 TON through the sandbox.
async fn funded(fake: &FakeTelegram, app: &BotApp, user: i64) {
    fake.send_text(user, "en", "/start");
    fake.text(user, "This bot sells Telegram Stars").await;
    fake.send_text(user, "en", "/recharge 10");
    let invoice = fake.text(user, "Invoice for 10 TON created").await;
    app.pay(&invoice_uuid(&text(&invoice))).await;
    fake.text(user, "Payment received").await;
}

/// The `PurchaseRequested` events of `user`, from the log.
async fn orders(app: &BotApp, user: i64) -> Vec<Value> {
    let user = UserId::new(user).unwrap();
    let events = app
        .state
        .events
        .read_stream(user.stream().as_str(), 0)
        .await
        .unwrap();
    events
        .iter()
        .filter_map(|e| match starledger_ledger::commands::decode(e).unwrap() {
            AccountEvent::PurchaseRequested(p) => Some(serde_json::to_value(&p).unwrap()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn stars_for_oneself_go_to_the_name_shown_at_confirm_not_the_registered_one() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    // The sandbox Fragment knows no recipient whose name contains `notfound`: a worker that
    // delivered to the registered name would refund this order instead of delivering it.
    let app = harness::start(&database, &fake, &[("FRAGMENT_MODE", "sandbox")]).await;
    fake.rename(CLARA, Some("clara_old_notfound"));
    funded(&fake, &app, CLARA).await;

    fake.send_text(CLARA, "en", "/buy_stars 100");
    let offer = fake.text(CLARA, "Order: 100 ⭐ for your own account").await;
    assert!(
        text(&offer).contains("@clara_old_notfound"),
        "{}",
        text(&offer)
    );

    // Before confirming, Clara gives that name up and takes another.
    fake.rename(CLARA, Some("clara_now"));
    fake.press(CLARA, "en", &offer.result, &button(&offer.body, "ok:"));
    let placed = text(&fake.text(CLARA, "Order placed: 100 ⭐").await);
    assert!(placed.contains("@clara_now"), "{placed}");

    let orders = orders(&app, CLARA).await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0]["deliver_to"], "clara_now");
    assert_eq!(orders[0]["recipient"], Value::Null, "not a gift");

    let delivered = text(&fake.text(CLARA, "Delivered").await);
    assert!(delivered.contains("100 Stars"), "{delivered}");
    assert_eq!(fake.count(CLARA, "could not deliver"), 0);

    // The press showed the new name: the profile change is recorded, and the users table
    // (what admins see) has it.
    let mut profile = None;
    for _ in 0..100 {
        profile = app.state.queries.user(CLARA).await.unwrap();
        if profile.as_ref().and_then(|p| p.username.as_deref()) == Some("clara_now") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        profile.and_then(|p| p.username).as_deref(),
        Some("clara_now")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_buyer_without_a_username_is_asked_to_set_one_or_buy_a_gift() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    let app = harness::start(&database, &fake, &[]).await;
    fake.rename(DAN, None);
    funded(&fake, &app, DAN).await;

    fake.send_text(DAN, "en", "/buy_stars 100");
    let asked = fake.text(DAN, "you have none").await;
    assert!(
        button(&asked.body, "gift").starts_with("gift"),
        "a gift button is offered: {:#}",
        asked.body
    );
    assert!(orders(&app, DAN).await.is_empty());

    // An offer made while Dan had a name, confirmed after he gave it up: nothing is bought.
    fake.rename(DAN, Some("dan_for_now"));
    fake.send_text(DAN, "en", "/buy_stars 100");
    let offer = fake.text(DAN, "@dan_for_now").await;
    fake.rename(DAN, None);
    fake.press(DAN, "en", &offer.result, &button(&offer.body, "ok:"));
    fake.nth_text(DAN, "you have none", 1).await;
    assert!(
        orders(&app, DAN).await.is_empty(),
        "no order without a name"
    );

    // A gift needs no name of his own.
    fake.send_text(DAN, "en", "/buy_stars 50 @gift_to_x");
    let gift = fake.text(DAN, "as a gift to @gift_to_x").await;
    fake.press(DAN, "en", &gift.result, &button(&gift.body, "ok:"));
    fake.text(DAN, "Order placed: 50 ⭐").await;
    let orders = orders(&app, DAN).await;
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["deliver_to"], "gift_to_x");
    assert_eq!(orders[0]["recipient"], "gift_to_x");
    app.stop().await;
}

#[tokio::test]
async fn a_four_character_collectible_username_can_receive_a_gift() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    let app = harness::start(&database, &fake, &[]).await;
    funded(&fake, &app, EVE).await;
    fake.send_text(EVE, "en", "/buy_stars 50 @abcd");
    let gift = fake.text(EVE, "as a gift to @abcd").await;
    fake.press(EVE, "en", &gift.result, &button(&gift.body, "ok:"));
    fake.text(EVE, "Order placed: 50 ⭐").await;
    let orders = orders(&app, EVE).await;
    assert_eq!(orders[0]["deliver_to"], "abcd");
    // Three characters is no Telegram username at all.
    fake.send_text(EVE, "en", "/buy_stars 50 @abc");
    fake.text(EVE, "That is not a Telegram username").await;
    app.stop().await;
}
