//! Starting `serve` with the bot for a test: on a database of its own (kept across restarts
//! of the app until the test drops it, see `support::app`), with the sandbox Heleket and the
//! fake Telegram.

use actix_web::web;
use serde_json::{json, Value};
use starledger_http::state::AppState;
use starledger_ledger::ids::PurchaseId;

use super::fake_telegram::FakeTelegram;
use super::support::app::{try_launch, Running};

pub use super::support::app::Database;

pub const SERVICE_KEY: &str = "service-key-0123456789";
pub const WEBHOOK_SECRET: &str = "telegram-webhook-secret-0123";

pub struct BotApp {
    pub base: String,
    pub state: web::Data<AppState>,
    pub http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts `serve` with the bot talking to `fake`, plus `extra` settings.
pub async fn start(database: &Database, fake: &FakeTelegram, extra: &[(&str, &str)]) -> BotApp {
    try_start(database, fake, extra)
        .await
        .expect("the app starts")
}

/// Starts `serve` as [`start`] does, or says why it would not start.
pub async fn try_start(
    database: &Database,
    fake: &FakeTelegram,
    extra: &[(&str, &str)],
) -> Result<BotApp, starledger_gateway::serve::StartError> {
    // RUST_LOG=starledger=debug shows the app's log lines in a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut settings = vec![
        (
            "API_KEY",
            "heleket-test-api-key-0123456789abcdef".to_owned(),
        ),
        ("TELEGRAM_TOKEN", fake.token.clone()),
        ("TELEGRAM_API_URL", fake.base.clone()),
        ("STARLEDGER_API_KEYS", format!("bot:service:{SERVICE_KEY}")),
    ];
    settings.extend(
        extra
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned())),
    );
    let Running {
        base,
        state,
        handle,
        server,
    } = try_launch(database, &settings).await?;
    Ok(BotApp {
        base,
        state,
        http: reqwest::Client::new(),
        handle,
        server,
    })
}

impl BotApp {
    /// Stops the app: HTTP first, then the bot and the reactors (as SIGTERM does).
    pub async fn stop(self) {
        drop(self.http);
        self.handle.stop(true).await;
        let _ = self.server.await;
    }

    /// Makes the sandbox pay an invoice with a signed webhook to our endpoint.
    pub async fn pay(&self, invoice_uuid: &str) {
        self.sandbox_webhook(invoice_uuid, json!({"status": "paid"}))
            .await;
    }

    /// Makes the sandbox send its signed webhook for `invoice_uuid` as `body` says (status,
    /// amount, payer_currency); returns what the ledger recorded.
    pub async fn sandbox_webhook(&self, invoice_uuid: &str, body: Value) -> Value {
        let answer: Value = self
            .http
            .post(format!(
                "{}/sandbox/heleket/invoices/{invoice_uuid}/pay",
                self.base
            ))
            .bearer_auth(SERVICE_KEY)
            .json(&body)
            .send()
            .await
            .expect("pay")
            .json()
            .await
            .expect("pay JSON");
        assert_eq!(answer["endpoint_answer"]["result"], "recorded", "{answer}");
        answer["endpoint_answer"]["detail"]["outcome"].clone()
    }

    /// The ids of `user`'s purchases, newest first, from the read model.
    pub async fn purchases(&self, user: i64) -> Vec<PurchaseId> {
        let page = self
            .state
            .queries
            .history(user, None, 200, None)
            .await
            .expect("history");
        page.transactions
            .iter()
            .filter(|t| t.kind.as_str() == "purchase")
            .map(|t| PurchaseId::from_uuid(t.id))
            .collect()
    }

    /// How many events the log holds.
    pub async fn log_length(&self) -> u64 {
        self.state
            .events
            .head()
            .await
            .expect("the log head")
            .position
    }
}

/// The invoice uuid in a sandbox payment link inside `text`.
pub fn invoice_uuid(text: &str) -> String {
    let at = text
        .find("/sandbox/heleket/invoices/")
        .unwrap_or_else(|| panic!("no sandbox invoice link in {text:?}"))
        + "/sandbox/heleket/invoices/".len();
    text[at..at + 36].to_owned()
}

/// The callback data of the button whose data starts with `prefix`, in a sent message.
pub fn button(call_body: &Value, prefix: &str) -> String {
    call_body["reply_markup"]["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row.as_array().into_iter().flatten())
        .filter_map(|b| b["callback_data"].as_str())
        .find(|data| data.starts_with(prefix))
        .unwrap_or_else(|| panic!("no button {prefix}… in {call_body:#}"))
        .to_owned()
}
