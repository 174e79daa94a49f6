//! Starting `serve` with the bot for a test: a database of its own (kept across restarts of
//! the app until the test drops it), a Redis key prefix of its own, the sandbox Heleket and
//! the fake Telegram.

use std::collections::HashMap;

use actix_web::web;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use starledger_gateway::config::server::ServerConfig;
use starledger_gateway::config::{Config, Env};
use starledger_gateway::http::state::AppState;
use starledger_gateway::serve::Application;
use starledger_gateway::storage;
use starledger_ledger::ids::PurchaseId;
use starledger_ledger::testing;

use super::fake_telegram::FakeTelegram;

pub const SERVICE_KEY: &str = "service-key-0123456789";
pub const WEBHOOK_SECRET: &str = "telegram-webhook-secret-0123";

/// A database (and Redis prefix) that outlives one run of the app.
pub struct Database {
    vars: HashMap<String, String>,
    postgres: Option<(PgConnectOptions, String)>,
    _dir: tempfile::TempDir,
}

impl Database {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars = HashMap::new();
        let mut postgres = None;
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        {
            Some(url) => {
                let (server, name, database_url) = testing::create_database(&url).await;
                vars.insert("DATABASE_URL".into(), database_url);
                postgres = Some((server, name));
            }
            None => {
                eprintln!("TEST_DATABASE_URL unset: this bot test runs on SQLite");
                vars.insert(
                    "STARLEDGER_SQLITE_PATH".into(),
                    dir.path().join("ledger.db").display().to_string(),
                );
            }
        }
        if let Ok(redis) = std::env::var("TEST_REDIS_URL") {
            vars.insert("REDIS_URL".into(), redis);
            vars.insert(
                "CACHE_KEY_PREFIX".into(),
                format!("test_{}", uuid::Uuid::new_v4().simple()),
            );
        } else {
            eprintln!("TEST_REDIS_URL unset: limits and sessions are counted in process");
        }
        Self {
            vars,
            postgres,
            _dir: dir,
        }
    }

    pub async fn drop_database(self) {
        if let Some((server, name)) = self.postgres {
            testing::drop_database(&server, &name).await;
        }
    }
}

pub struct BotApp {
    pub base: String,
    pub state: web::Data<AppState>,
    pub http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts `serve` with the bot talking to `fake`, plus `extra` settings.
pub async fn start(database: &Database, fake: &FakeTelegram, extra: &[(&str, &str)]) -> BotApp {
    // RUST_LOG=starledger=debug shows the app's log lines in a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut vars = database.vars.clone();
    for (name, value) in [
        ("WEBHOOK_HOST", "127.0.0.1"),
        ("WEBHOOK_PORT", "0"),
        ("HTTP_WORKERS", "2"),
        ("HELEKET_MODE", "sandbox"),
        ("API_KEY", "heleket-test-api-key"),
        ("DATABASE_POOL_SIZE", "8"),
        ("TELEGRAM_TOKEN", fake.token.as_str()),
        ("TELEGRAM_API_URL", fake.base.as_str()),
    ] {
        vars.insert(name.into(), value.into());
    }
    vars.insert(
        "STARLEDGER_API_KEYS".into(),
        format!("bot:service:{SERVICE_KEY}"),
    );
    for (name, value) in extra {
        vars.insert((*name).into(), (*value).into());
    }
    let env = Env(move |name: &str| vars.get(name).cloned());
    let config = Config::from_env(&env).expect("test config");
    let server_config = ServerConfig::from_env(&env).expect("test server config");
    storage::migrate(&config.storage).await.expect("migrate");
    let app = Application::build(config, server_config)
        .await
        .expect("the app starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let state = app.state();
    let server = tokio::spawn(app.run_until_stopped());
    BotApp {
        base,
        state,
        http: reqwest::Client::new(),
        handle,
        server,
    }
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
        let answer: Value = self
            .http
            .post(format!(
                "{}/sandbox/heleket/invoices/{invoice_uuid}/pay",
                self.base
            ))
            .bearer_auth(SERVICE_KEY)
            .json(&json!({"status": "paid"}))
            .send()
            .await
            .expect("pay")
            .json()
            .await
            .expect("pay JSON");
        assert_eq!(answer["endpoint_answer"]["result"], "recorded", "{answer}");
    }

    /// The ids of `user`'s purchases, newest first, from the read model.
    pub async fn purchases(&self, user: i64) -> Vec<PurchaseId> {
        let page = self
            .state
            .queries
            .history(user, None, 200)
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
