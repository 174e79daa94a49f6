//! Black-box tests of the `starledger` binary: they run it as a user would and look only at
//! its exit code, its output, its HTTP answers and the database it leaves behind. See
//! `tests/tests/`.
//!
//! What the suites share lives here: the built binary ([`starledger`]), a deployment to run
//! it against ([`Deployment`]: a scratch PostgreSQL database or a SQLite file, Redis when
//! configured, the API keys), a running `serve` that can be killed ([`Server`]), Heleket's
//! webhook signature ([`sign_webhook`]), and the operator's view of the result ([`Deployment::export`],
//! [`Deployment::verify`]).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use md5::{Digest, Md5};
use reqwest::StatusCode;
use serde_json::{json, Value};
use starledger_ledger::testing::server_url;

static BUILT: OnceLock<()> = OnceLock::new();

/// The `service` role's key in every [`Deployment`].
pub const SERVICE_KEY: &str = "service-key-0123456789";
/// The `auditor` role's key.
pub const AUDITOR_KEY: &str = "auditor-key-0123456789";
/// The `admin` role's key.
pub const ADMIN_KEY: &str = "admin-key-0123456789ab";
/// The Heleket API key the sandbox signs its webhooks with (and the tests sign theirs).
pub const HELEKET_KEY: &str = "heleket-e2e-test-api-key-0123456789abcdef";

/// The variables cargo gives a test process about the crate under test (see "Environment
/// variables Cargo sets for crates"), which were not in the environment of the `cargo test`
/// that built everything.
fn set_by_cargo_for_this_test(variable: &str) -> bool {
    variable.starts_with("CARGO_PKG_")
        || variable.starts_with("CARGO_BIN_")
        || matches!(
            variable,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// The `starledger` binary of this workspace, built (or brought up to date) once per test run:
/// `cargo test` does not build another package's binary, and a stale one would test old code.
pub fn starledger() -> Command {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("debug").join("starledger");
    BUILT.get_or_init(|| {
        // `cargo test --workspace --no-run`, not `cargo build --bin starledger`: the README's
        // test command has just built the binary with the features of the whole test build
        // (the ledger's `testing`, dev-dependencies' tokio and hyper features), so this finds
        // it fresh. A plain build resolves features without the dev-dependencies, and the
        // variables cargo sets for this test process would reach the build scripts that
        // watch them (ring's watches CARGO_MANIFEST_DIR): either rebuilt ring, rustls, sqlx
        // and everything above them, two to three minutes of every CI run.
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["test", "--workspace", "--no-run", "--quiet"])
            .current_dir(&root);
        for (variable, _) in std::env::vars_os() {
            if set_by_cargo_for_this_test(&variable.to_string_lossy()) {
                cargo.env_remove(&variable);
            }
        }
        let status = cargo.status().expect("run cargo test --no-run");
        assert!(status.success(), "building starledger failed");
    });
    let mut command = Command::new(binary);
    // A clean environment: no settings leak in from the developer's shell.
    for variable in [
        "DATABASE_URL",
        "STARLEDGER_SQLITE_PATH",
        "LEDGER_CURRENCY",
        "STAR_PRICE",
        "STAR_MARKUP_PERCENT",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "RUST_LOG",
        "REDIS_URL",
        "HELEKET_MODE",
        "MERCHANT_UUID",
        "API_KEY",
        "HELEKET_CALLBACK_URL",
        "PRODUCTION_DOMAIN",
        "STARLEDGER_API_KEYS",
        "WEBHOOK_HOST",
        "WEBHOOK_PORT",
        "MAX_BODY_BYTES",
        "REQUEST_TIMEOUT_MS",
        "READ_YOUR_WRITES_TIMEOUT_MS",
        "FRAGMENT_MODE",
        "FRAGMENT_COOKIES",
        "FRAGMENT_SEED_PHRASE",
        "TON_API_KEY",
        "TELEGRAM_TOKEN",
        "TELEGRAM_WEBHOOK_URL",
        "WEBHOOK_SECRET",
    ] {
        command.env_remove(variable);
    }
    command
}

/// A port nobody listens on right now (the OS picks it; a test binds it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A random number below `bound`, from a v4 UUID's random bits (no `rand` dependency).
pub fn random_below(bound: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(bound.max(1))) as u64
}

/// A database of its own on the shared PostgreSQL server, dropped however the test ends.
pub use starledger_ledger::testing::ScratchDatabase;

/// Where a deployment keeps its ledger.
pub enum Backend {
    /// Boxed: the connection options are large beside a path.
    Postgres(Box<ScratchDatabase>),
    /// The embedded default: one SQLite file (in the deployment's directory).
    Sqlite(PathBuf),
}

/// Everything a `starledger` process of one test is started with: the ledger, Redis (or the
/// in-process cache), a fixed port (a restarted server keeps the clients' address), the API
/// keys of every role, the sandbox Heleket and any extra settings.
pub struct Deployment {
    pub backend: Backend,
    /// Redis URL and a key prefix of this test's own.
    pub redis: Option<(String, String)>,
    pub port: u16,
    /// The servers' stderr files and the SQLite file.
    pub dir: tempfile::TempDir,
    /// Extra settings for every process (`REQUEST_TIMEOUT_MS`, `STAR_PRICE`, …).
    pub env: Vec<(String, String)>,
}

impl Deployment {
    /// A scratch database on `TEST_DATABASE_URL`'s server, with `TEST_REDIS_URL` (when set)
    /// under a prefix of its own; migrated. `None` (after saying why) without PostgreSQL;
    /// under CI either server missing fails the test (see [`server_url`]).
    pub async fn postgres(test: &str) -> Option<Deployment> {
        let url = server_url(
            "TEST_DATABASE_URL",
            &format!("{test} on PostgreSQL is skipped; set it to postgres://… to run it"),
        )?;
        let redis = server_url(
            "TEST_REDIS_URL",
            &format!("{test} on PostgreSQL uses the in-process cache"),
        );
        let deployment = Deployment {
            backend: Backend::Postgres(Box::new(ScratchDatabase::create(&url).await)),
            redis: redis.map(|url| (url, format!("e2e_{}", uuid::Uuid::new_v4().simple()))),
            port: free_port(),
            dir: tempfile::tempdir().expect("a temp dir"),
            env: Vec::new(),
        };
        deployment.migrate();
        Some(deployment)
    }

    /// The embedded default: a fresh SQLite file and the in-process cache, no servers.
    pub fn sqlite() -> Deployment {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("ledger.db");
        let deployment = Deployment {
            backend: Backend::Sqlite(file),
            redis: None,
            port: free_port(),
            dir,
            env: Vec::new(),
        };
        deployment.migrate();
        deployment
    }

    /// Adds a setting for every process of this deployment.
    pub fn with(mut self, variable: &str, value: impl Into<String>) -> Deployment {
        self.env.push((variable.to_owned(), value.into()));
        self
    }

    pub fn name(&self) -> &'static str {
        match self.backend {
            Backend::Postgres(_) => "PostgreSQL",
            Backend::Sqlite(_) => "SQLite",
        }
    }

    /// `starledger <subcommand>` with this deployment's settings.
    pub fn command(&self, subcommand: &[&str]) -> Command {
        let mut command = starledger();
        command
            .args(subcommand)
            .env("HELEKET_MODE", "sandbox")
            .env("API_KEY", HELEKET_KEY)
            .env("WEBHOOK_HOST", "127.0.0.1")
            .env("WEBHOOK_PORT", self.port.to_string())
            .env("HTTP_WORKERS", "2")
            .env(
                "STARLEDGER_API_KEYS",
                format!(
                    "bot:service:{SERVICE_KEY},aud:auditor:{AUDITOR_KEY},ops:admin:{ADMIN_KEY}"
                ),
            );
        match &self.backend {
            Backend::Postgres(database) => command.env("DATABASE_URL", database.url()),
            Backend::Sqlite(file) => command.env("STARLEDGER_SQLITE_PATH", file),
        };
        if let Some((url, prefix)) = &self.redis {
            command
                .env("REDIS_URL", url)
                .env("CACHE_KEY_PREFIX", prefix);
        }
        for (variable, value) in &self.env {
            command.env(variable, value);
        }
        command
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn migrate(&self) {
        let output = self.run(&["migrate"]);
        assert!(
            output.status.success(),
            "starledger migrate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs a CLI command of this deployment to completion.
    pub fn run(&self, subcommand: &[&str]) -> Output {
        self.command(subcommand)
            .output()
            .unwrap_or_else(|error| panic!("cannot run starledger {subcommand:?}: {error}"))
    }

    /// `starledger audit verify` (the operator's tool, not the server): panics with its report
    /// unless the log, the hash chain, the trial balance and every projection are sound.
    pub fn verify(&self) {
        let output = self.run(&["audit", "verify"]);
        assert!(
            output.status.success(),
            "audit verify found the {} ledger unsound ({}):\n{}{}",
            self.name(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The whole log as `starledger audit export` writes it, in position order.
    pub fn export(&self) -> Vec<Value> {
        let output = self.run(&["audit", "export"]);
        assert!(
            output.status.success(),
            "audit export failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("UTF-8 export")
            .lines()
            .map(|line| serde_json::from_str(line).expect("an NDJSON line"))
            .collect()
    }
}

/// A running `starledger serve`; killed if the test panics, so no server outlives it.
pub struct Server {
    child: Option<Child>,
    stderr: PathBuf,
}

impl Server {
    /// Starts an instance of `deployment`; `generation` names its stderr file, kept for
    /// failure messages (a restarted server gets the next one).
    pub fn start(deployment: &Deployment, generation: u32) -> Server {
        let stderr = deployment
            .dir
            .path()
            .join(format!("serve-{generation}.log"));
        let file = std::fs::File::create(&stderr).expect("create the stderr file");
        let child = deployment
            .command(&["serve"])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start starledger serve");
        Server {
            child: Some(child),
            stderr,
        }
    }

    /// Starts an instance and waits until it answers `/healthz`.
    pub async fn start_healthy(deployment: &Deployment, http: &reqwest::Client) -> Server {
        let mut server = Server::start(deployment, 0);
        server.wait_healthy(http, &deployment.base()).await;
        server
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the server is running")
    }

    /// The last 40 lines the process wrote to stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr)
    }

    /// Whether the process's stderr (its log) has a line containing every one of `parts`.
    pub fn logged(&self, parts: &[&str]) -> bool {
        std::fs::read_to_string(&self.stderr)
            .unwrap_or_default()
            .lines()
            .any(|line| parts.iter().all(|part| line.contains(part)))
    }

    /// Panics (with the process's stderr) if `serve` has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child().try_wait().expect("try_wait") {
            panic!(
                "serve exited with {status}; stderr:\n{}",
                self.stderr_tail()
            );
        }
    }

    pub async fn wait_healthy(&mut self, http: &reqwest::Client, base: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(answer) = http.get(format!("{base}/healthz")).send().await {
                if answer.status() == StatusCode::OK {
                    return;
                }
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "serve did not answer /healthz within 60 s; stderr:\n{}",
                self.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` (`KILL`, `TERM`) and waits for the process to end.
    pub async fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let pid = self.child().id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child().try_wait().expect("wait for serve") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop within 40 s of SIG{signal}; stderr:\n{}",
                self.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, and the process must exit cleanly.
    pub async fn stop(&mut self) {
        let status = self.signal_and_wait("TERM").await;
        assert!(
            status.success(),
            "serve did not stop cleanly on SIGTERM ({status}); stderr:\n{}",
            self.stderr_tail()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Signs a webhook as Heleket does: `md5(base64(body) + API_KEY)`, the body encoded as PHP's
/// `json_encode` writes it. Written out here rather than taken from `starledger-gateway`: a
/// dev-dependency on the gateway makes every `cargo test` of this crate and the binary build
/// in [`starledger`] rebuild the gateway in turn. For the bodies the suites send (no `/`,
/// ASCII only, keys in insertion order) serde_json writes exactly PHP's bytes.
pub fn sign_webhook(mut body: Value, api_key: &str) -> Value {
    let encoded = base64::engine::general_purpose::STANDARD.encode(body.to_string());
    let mut hasher = Md5::new();
    hasher.update(encoded.as_bytes());
    hasher.update(api_key.as_bytes());
    body["sign"] = json!(hex::encode(hasher.finalize()));
    body
}

/// Heleket's order id for a recharge answer of `POST /v1/users/{user}/recharges`.
pub fn order_id(user: i64, recharge: &Value) -> String {
    let recharge_id = recharge["recharge_id"]
        .as_str()
        .expect("recharge_id")
        .replace('-', "");
    format!("sl_{user}_{recharge_id}")
}

/// Runs an audit job (`path`: `/v1/audit/verify…` or `/v1/audit/balances…`) to its end,
/// following `/v1/audit/jobs/{id}` for at most 60 s, and returns its result: a verify
/// report, or the balances (every page of them, under `balances`).
pub async fn audit_result(http: &reqwest::Client, base: &str, path: &str) -> Value {
    let started = http
        .get(format!("{base}{path}"))
        .bearer_auth(AUDITOR_KEY)
        .send()
        .await
        .expect("start an audit job");
    assert_eq!(started.status(), StatusCode::ACCEPTED, "GET {path}");
    let location = started
        .headers()
        .get("Location")
        .and_then(|value| value.to_str().ok())
        .expect("the job's Location")
        .to_owned();
    let read = |cursor: u64| {
        let request = http
            .get(format!("{base}{location}?cursor={cursor}&limit=10000"))
            .bearer_auth(AUDITOR_KEY);
        async move {
            let answer = request.send().await.expect("GET the audit job");
            assert_eq!(answer.status(), StatusCode::OK, "GET the audit job");
            answer.json::<Value>().await.expect("the job's JSON")
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut job = read(0).await;
    while job["state"] == "running" {
        assert!(
            Instant::now() < deadline,
            "the audit job runs past 60 s: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        job = read(0).await;
    }
    assert_eq!(job["state"], "succeeded", "{job}");
    let mut result = job["result"].clone();
    if let Some(rows) = result["balances"].as_array_mut() {
        let mut next = job["result"]["next_cursor"].as_u64();
        while let Some(cursor) = next {
            let page = read(cursor).await;
            rows.extend(
                page["result"]["balances"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            next = page["result"]["next_cursor"].as_u64();
        }
    }
    result
}

/// How many events the log holds, read page by page through `GET /v1/audit/events`.
pub async fn log_length(http: &reqwest::Client, base: &str) -> u64 {
    let (mut count, mut from) = (0, 0);
    loop {
        let response = http
            .get(format!("{base}/v1/audit/events?from={from}&limit=10000"))
            .bearer_auth(AUDITOR_KEY)
            .send()
            .await
            .expect("GET /v1/audit/events");
        assert_eq!(response.status(), StatusCode::OK, "GET /v1/audit/events");
        let next = response
            .headers()
            .get("Next-From")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        count += response
            .text()
            .await
            .expect("the event page")
            .lines()
            .count() as u64;
        match next {
            Some(next) => from = next,
            None => return count,
        }
    }
}

/// Waits until the SQL projectors have applied the whole log (lag 0), so what the read
/// models say can be compared with the log.
pub async fn wait_for_projections(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: Value = http
            .get(format!("{base}/v1/admin/projections"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("GET /v1/admin/projections")
            .json()
            .await
            .expect("projection status JSON");
        let behind = status["projectors"]
            .as_array()
            .expect("projectors")
            .iter()
            .any(|p| {
                matches!(
                    p["name"].as_str(),
                    Some("users" | "balances" | "transactions")
                ) && p["lag_events"] != 0
            });
        if !behind {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "projections did not catch up within 30 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A number of rounds from an environment variable (a soak), or `default` in CI.
pub fn soak(variable: &str, default: u64) -> u64 {
    std::env::var(variable)
        .ok()
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{variable} is not a whole number: {value:?}"))
        })
        .unwrap_or(default)
}
