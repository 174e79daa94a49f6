//! Starts a real `starledger serve` (in this process, on a free port) against a fresh
//! database and a Redis key prefix of its own (see `support::app`), and talks to it over
//! HTTP. The Heleket side is the sandbox, which pays invoices by sending correctly signed
//! webhooks to the app's own endpoint.

use std::future::Future;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use starledger_heleket::sign::sign_webhook;

use crate::support::app::{launch, Database, Running};

pub const SERVICE_KEY: &str = "service-key-0123456789";
pub const ADMIN_KEY: &str = "admin-key-0123456789ab";
pub const AUDITOR_KEY: &str = "auditor-key-0123456789";
pub const HELEKET_KEY: &str = "heleket-test-api-key-0123456789abcdef";

pub struct TestApp {
    pub base: String,
    /// The app's shared state, for tests that drive background parts (the reconciler).
    pub state: actix_web::web::Data<starledger_http::state::AppState>,
    pub http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    database: Database,
}

/// Extra environment for one test's app.
#[derive(Default)]
pub struct Options {
    pub vars: Vec<(&'static str, String)>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    spawn_app_on(Database::new().await, options).await
}

/// The app on `database` (a backup restored, say).
fn base_settings() -> Vec<(&'static str, String)> {
    vec![
        ("API_KEY", HELEKET_KEY.to_owned()),
        (
            "STARLEDGER_API_KEYS",
            format!(
                "bot:service:{SERVICE_KEY},alice:admin:{ADMIN_KEY},carol:auditor:{AUDITOR_KEY}"
            ),
        ),
    ]
}

pub async fn spawn_app_on(database: Database, options: Options) -> TestApp {
    let mut settings = base_settings();
    settings.extend(options.vars);
    let Running {
        base,
        state,
        handle,
        server,
    } = launch(&database, &settings).await;
    TestApp {
        base,
        state,
        http: reqwest::Client::new(),
        handle,
        server,
        database,
    }
}

impl TestApp {
    /// Stops the server (draining requests) and drops the test database.
    pub async fn stop(self) {
        // Close our idle keep-alive connections first: a graceful stop waits for them.
        drop(self.http);
        self.handle.stop(true).await;
        self.server
            .await
            .expect("the server task ends without panicking")
            .expect("the server stops cleanly");
        // The database goes with `self.database`, here or when a failing test unwinds.
    }

    /// A second instance of the app on the same database and Redis (default settings).
    pub async fn another_instance(&self) -> Instance {
        let running = launch(&self.database, &base_settings()).await;
        Instance {
            running,
            http: reqwest::Client::new(),
        }
    }

    /// A backup of the app's database as it is now, restored into another database behind
    /// the same Redis prefix.
    pub async fn backup(&self) -> Database {
        self.database.backup().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    // These build the request at once and return a future that owns it, so callers can
    // pass temporaries (`&json!(…)`) and collect the futures to send them concurrently.

    pub fn get(&self, path: &str, key: &str) -> impl Future<Output = Response> {
        let request = self.http.get(self.url(path)).bearer_auth(key);
        async move { request.send().await.expect("request") }
    }

    pub fn post(&self, path: &str, key: &str, body: &Value) -> impl Future<Output = Response> {
        let request = self.http.post(self.url(path)).bearer_auth(key).json(body);
        async move { request.send().await.expect("request") }
    }

    pub fn post_with_key(
        &self,
        path: &str,
        key: &str,
        idempotency_key: &str,
        body: &Value,
    ) -> impl Future<Output = Response> {
        let request = self
            .http
            .post(self.url(path))
            .bearer_auth(key)
            .header("Idempotency-Key", idempotency_key)
            .json(body);
        async move { request.send().await.expect("request") }
    }

    pub async fn register(&self, user: i64) {
        let response = self
            .post(
                "/v1/users",
                SERVICE_KEY,
                &json!({"user_id": user, "username": "tester_one", "language": "en"}),
            )
            .await;
        assert!(response.status().is_success(), "register {user}");
    }

    /// Requests a recharge; returns the answer (recharge id, invoice uuid, …).
    pub async fn recharge(&self, user: i64, amount: &str) -> Value {
        let response = self
            .post(
                &format!("/v1/users/{user}/recharges"),
                SERVICE_KEY,
                &json!({"amount": amount}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("recharge JSON")
    }

    /// Makes the sandbox send our endpoint a signed webhook with `status`.
    pub async fn pay(&self, invoice_uuid: &str, status: &str, amount: Option<&str>) -> Value {
        let mut body = json!({"status": status});
        if let Some(amount) = amount {
            body["amount"] = json!(amount);
        }
        let response = self
            .post(
                &format!("/sandbox/heleket/invoices/{invoice_uuid}/pay"),
                SERVICE_KEY,
                &body,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("pay JSON")
    }

    /// A registered user with `amount` credited through a sandbox payment.
    pub async fn funded_user(&self, user: i64, amount: &str) {
        self.register(user).await;
        self.top_up(user, amount).await;
    }

    /// A recharge of `amount`, paid with a signed sandbox webhook the app answered `recorded`.
    pub async fn top_up(&self, user: i64, amount: &str) {
        let recharge = self.recharge(user, amount).await;
        let paid = self
            .pay(recharge["invoice_uuid"].as_str().unwrap(), "paid", None)
            .await;
        assert_eq!(paid["endpoint_answer"]["result"], "recorded", "{paid}");
    }

    /// `GET /readyz`'s body.
    pub async fn readyz(&self) -> Value {
        let response = self.http.get(self.url("/readyz")).send().await.unwrap();
        response.json().await.unwrap()
    }

    /// Posts a raw body to the Heleket webhook endpoint.
    pub fn webhook_raw(&self, body: impl Into<reqwest::Body>) -> impl Future<Output = Response> {
        let request = self
            .http
            .post(self.url("/webhooks/heleket"))
            .header("Content-Type", "application/json")
            .body(body);
        async move { request.send().await.expect("request") }
    }

    /// Posts a webhook signed with `key`, as Heleket would.
    pub async fn webhook(&self, body: Value, key: &str) -> Response {
        let signed = sign_webhook(body, key);
        self.webhook_raw(signed.to_string()).await
    }

    pub async fn balance(&self, user: i64) -> Value {
        let response = self
            .get(&format!("/v1/users/{user}/balance"), SERVICE_KEY)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("balance JSON")
    }

    /// The balance once it reflects at least `position`.
    pub async fn balance_at_least(&self, user: i64, position: u64) -> Value {
        let response = self
            .get(
                &format!("/v1/users/{user}/balance?min_position={position}"),
                SERVICE_KEY,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("balance JSON")
    }

    /// The newest transaction of `user` once the history reflects at least `position`.
    pub async fn latest_transaction(&self, user: i64, position: u64) -> Value {
        let response = self
            .get(
                &format!("/v1/users/{user}/transactions?min_position={position}"),
                SERVICE_KEY,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let history: Value = response.json().await.expect("history JSON");
        history["transactions"][0].clone()
    }

    /// How many events the log holds (what "nothing was appended" is checked against).
    pub async fn log_length(&self) -> u64 {
        let mut count = 0;
        let mut from = 0;
        loop {
            let response = self
                .get(
                    &format!("/v1/audit/events?from={from}&limit=10000"),
                    AUDITOR_KEY,
                )
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            let next = response
                .headers()
                .get("Next-From")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            count += response.text().await.unwrap().lines().count() as u64;
            match next {
                Some(next) => from = next,
                None => return count,
            }
        }
    }

    /// `GET /v1/audit/verify`: the log and every read model agree with a replay.
    pub async fn assert_sound(&self) {
        let report = self.audit_result("/v1/audit/verify").await;
        assert_eq!(report["sound"], true, "{report:#}");
    }

    /// Starts an audit job with `GET path` (`/v1/audit/verify…`, `/v1/audit/balances…`) and
    /// returns its result once it has succeeded.
    pub async fn audit_result(&self, path: &str) -> Value {
        let started = self.get(path, AUDITOR_KEY).await;
        assert_eq!(started.status(), StatusCode::ACCEPTED, "GET {path}");
        let location = started.headers()["Location"].to_str().unwrap().to_owned();
        let job = self.finished_job(&location).await;
        assert_eq!(job["state"], "succeeded", "{job:#}");
        job["result"].clone()
    }

    /// Follows an audit job at `location` (at most 60 s) until it is no longer running.
    pub async fn finished_job(&self, location: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let response = self.get(location, AUDITOR_KEY).await;
            assert_eq!(response.status(), StatusCode::OK, "GET {location}");
            let job: Value = response.json().await.expect("job JSON");
            if job["state"] != "running" {
                return job;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the audit job runs past 60 s: {job:#}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The error code of an API error answer.
pub async fn error_code(response: Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or("<none>")
            .to_owned(),
    )
}

/// Another instance of the app beside a [`TestApp`], on its database.
pub struct Instance {
    running: Running,
    http: reqwest::Client,
}

impl Instance {
    /// The balance as a plain read here answers it (no `min_position`).
    pub async fn balance(&self, user: i64) -> Value {
        let response = self
            .http
            .get(format!("{}/v1/users/{user}/balance", self.running.base))
            .bearer_auth(SERVICE_KEY)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("balance JSON")
    }

    pub async fn stop(self) {
        drop(self.http);
        self.running.handle.stop(true).await;
        self.running
            .server
            .await
            .expect("the server task ends without panicking")
            .expect("the server stops cleanly");
    }
}
