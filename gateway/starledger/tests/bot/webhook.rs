//! Webhook mode: the bot registers its webhook with the secret token at start, takes updates
//! from `POST /webhooks/telegram` only with that token, and a wrong or missing token is
//! refused with 401 and changes nothing. A polling bot does not take webhooks: 404.

use serde_json::Value;

use super::fake_telegram::FakeTelegram;
use super::harness::{self, Database, WEBHOOK_SECRET};

const JO: i64 = 4_500_000_001;
const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

#[tokio::test]
async fn webhook_mode_takes_updates_only_with_the_secret_token() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    let webhook_url = "https://shop.example/webhooks/telegram";
    let app = harness::start(
        &database,
        &fake,
        &[
            ("TELEGRAM_WEBHOOK_URL", webhook_url),
            ("WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    )
    .await;

    let registered = fake
        .wait_for("setWebhook", |calls| {
            calls.iter().find(|c| c.method == "setWebhook").cloned()
        })
        .await;
    assert_eq!(registered.body["url"], webhook_url);
    assert_eq!(registered.body["secret_token"], WEBHOOK_SECRET);
    assert!(
        !fake.calls().iter().any(|c| c.method == "getUpdates"),
        "a webhook bot does not poll"
    );

    let events = app.log_length().await;
    let url = format!("{}/webhooks/telegram", app.base);
    for secret in [None, Some("wrong-secret-0123456789"), Some("")] {
        let update = fake.message_update(JO, "en", "/start");
        let mut request = app.http.post(&url).json(&update);
        if let Some(secret) = secret {
            request = request.header(SECRET_HEADER, secret);
        }
        let response = request.send().await.expect("post");
        assert_eq!(response.status(), 401, "secret {secret:?}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "invalid_secret_token");
    }
    // A correct secret with a body that is no update is refused as well.
    let response = app
        .http
        .post(&url)
        .header(SECRET_HEADER, WEBHOOK_SECRET)
        .json(&serde_json::json!({"hello": "world"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 422);

    // The good one goes through and is answered like a polled one.
    let update = fake.message_update(JO, "en", "/start");
    let response = app
        .http
        .post(&url)
        .header(SECRET_HEADER, WEBHOOK_SECRET)
        .json(&update)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    fake.text(JO, "This bot sells Telegram Stars").await;
    // Exactly one registration, from the accepted update; the refused ones changed nothing.
    assert_eq!(app.log_length().await, events + 1);
    assert_eq!(
        fake.calls_to("sendMessage", JO).len(),
        1,
        "the refused updates got no answer"
    );

    // Telegram delivers an update again when our 200 got lost: the command it carries is
    // recorded once (its key is the message: chat, id and date) and the same invoice is
    // shown again.
    let recharge = fake.message_update(JO, "en", "/recharge 3");
    for _ in 0..2 {
        let response = app
            .http
            .post(&url)
            .header(SECRET_HEADER, WEBHOOK_SECRET)
            .json(&recharge)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 200);
    }
    let first = fake.nth_text(JO, "Invoice for 3 TON", 0).await;
    let second = fake.nth_text(JO, "Invoice for 3 TON", 1).await;
    let text = |c: &super::fake_telegram::Call| c.body["text"].as_str().unwrap().to_owned();
    assert_eq!(
        harness::invoice_uuid(&text(&first)),
        harness::invoice_uuid(&text(&second))
    );
    assert_eq!(
        app.log_length().await,
        events + 2,
        "one recharge for two deliveries"
    );

    // After a week without updates Telegram starts update ids again from a random number:
    // a new message may come with an update id seen before. It is a new command, not a
    // repeat of the old one.
    let mut later = fake.message_update(JO, "en", "/recharge 7");
    later["update_id"] = recharge["update_id"].clone();
    let response = app
        .http
        .post(&url)
        .header(SECRET_HEADER, WEBHOOK_SECRET)
        .json(&later)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    fake.text(JO, "Invoice for 7 TON").await;
    assert_eq!(app.log_length().await, events + 3, "a second recharge");

    app.stop().await;
    database.drop_database().await;
    fake.stop().await;
}

#[tokio::test]
async fn in_polling_mode_the_webhook_route_is_not_there() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    // The bot is configured for polling: the webhook route has nothing to feed.
    let app = harness::start(&database, &fake, &[]).await;
    let update = fake.message_update(JO, "en", "/start");
    let response = app
        .http
        .post(format!("{}/webhooks/telegram", app.base))
        .header(SECRET_HEADER, WEBHOOK_SECRET)
        .json(&update)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 404);
    app.stop().await;
    database.drop_database().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_webhook_telegram_refuses_stops_start_up_with_a_clear_message() {
    let fake = FakeTelegram::start().await;
    let database = Database::new().await;
    fake.fail_method(
        "setWebhook",
        400,
        "Bad Request: bad webhook: Failed to resolve host: Name or service not known",
    );
    let settings = [
        (
            "TELEGRAM_WEBHOOK_URL",
            "https://shop.invalid/webhooks/telegram",
        ),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];
    let refused = harness::try_start(&database, &fake, &settings).await;
    let Err(error) = refused else {
        panic!("the app started although Telegram refused its webhook");
    };
    let message = error.to_string();
    assert!(
        message.contains("refused setWebhook") && message.contains("Failed to resolve host"),
        "{message}"
    );
    assert!(
        !message.contains(&fake.token),
        "the token is never shown: {message}"
    );
    // Refused is final: asked once, not retried.
    let asked = fake
        .calls()
        .iter()
        .filter(|c| c.method == "setWebhook")
        .count();
    assert_eq!(asked, 1);

    // Telegram out of reach is tried a bounded number of times, then start-up stops too.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let api = format!("http://127.0.0.1:{closed}");
    let mut unreachable_settings = settings.to_vec();
    unreachable_settings.push(("TELEGRAM_API_URL", &api));
    let unreachable = harness::try_start(&database, &fake, &unreachable_settings).await;
    let Err(error) = unreachable else {
        panic!("the app started without a registered webhook");
    };
    assert!(error.to_string().contains("failed 3 times"), "{error}");
    assert!(!error.to_string().contains(&fake.token), "{error}");
    database.drop_database().await;
    fake.stop().await;
}
