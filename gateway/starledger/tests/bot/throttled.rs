//! Telegram's flood control delays a reply, never loses it: the fake Bot API answers a reply
//! (a new message, or an edit of the pressed one) with 429 and `retry_after`, and the reply
//! is sent again after the wait and arrives once.

use super::fake_telegram::{Call, FakeTelegram, Scripted};
use super::harness::{self, Database};

const NED: i64 = 4_700_000_001;
const OLA: i64 = 4_700_000_002;

fn says(call: &Call, needle: &str) -> bool {
    call.body["text"]
        .as_str()
        .is_some_and(|text| text.contains(needle))
}

/// Waits for a `method` call into `chat` saying `needle` that Telegram took (not a 429).
async fn delivered(fake: &FakeTelegram, method: &str, chat: i64, needle: &str) -> Call {
    fake.wait_for(
        &format!("{method} to {chat} saying {needle:?}, delivered"),
        |calls| {
            calls
                .iter()
                .find(|c| {
                    c.method == method
                        && c.body["chat_id"].as_i64() == Some(chat)
                        && !c.result.is_null()
                        && says(c, needle)
                })
                .cloned()
        },
    )
    .await
}

/// Sends one more command and waits for its answer: the dispatcher handles one chat's updates
/// in order, so whatever the earlier reply would still send has been sent by then.
async fn settle(fake: &FakeTelegram, chat: i64) {
    fake.send_text(chat, "en", "/balance");
    delivered(fake, "sendMessage", chat, "Available:").await;
}

#[tokio::test]
async fn a_reply_telegram_answers_with_flood_control_is_sent_after_the_wait_once() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    let app = harness::start(&database, &fake, &[]).await;

    fake.script(NED, vec![Scripted::FloodWait(1), Scripted::FloodWait(1)]);
    fake.send_text(NED, "en", "/help");
    delivered(&fake, "sendMessage", NED, "Commands:").await;
    settle(&fake, NED).await;

    let helps: Vec<Call> = fake
        .calls_to("sendMessage", NED)
        .into_iter()
        .filter(|c| says(c, "Commands:"))
        .collect();
    assert_eq!(helps.len(), 3, "two refused with 429, then one delivered");
    assert!(helps[0].result.is_null() && helps[1].result.is_null());
    assert!(!helps[2].result.is_null());

    app.stop().await;
    database.drop_database().await;
    fake.stop().await;
}

#[tokio::test]
async fn an_edit_telegram_answers_with_flood_control_is_made_after_the_wait_once() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    let app = harness::start(&database, &fake, &[]).await;

    fake.send_text(OLA, "en", "/help");
    let menu = delivered(&fake, "sendMessage", OLA, "Commands:").await;
    // The menu's history button turns the menu into the (empty) history page.
    assert_eq!(harness::button(&menu.body, "h"), "h");
    fake.script_edits(OLA, vec![Scripted::FloodWait(1)]);
    fake.press(OLA, "en", &menu.result, "h");
    delivered(&fake, "editMessageText", OLA, "No transactions yet.").await;
    settle(&fake, OLA).await;

    let edits = fake.calls_to("editMessageText", OLA);
    assert_eq!(edits.len(), 2, "one refused with 429, then one made");
    assert!(edits[0].result.is_null() && !edits[1].result.is_null());
    assert_eq!(
        fake.count(OLA, "No transactions yet."),
        2,
        "the page came as the edit, not also as a new message"
    );

    app.stop().await;
    database.drop_database().await;
    fake.stop().await;
}
