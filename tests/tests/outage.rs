//! `starledger serve` while its dependencies go away and come back. A PostgreSQL outage turns
//! commands into clean 5xx answers (never a 2xx that the log lacks, never a hang, never a
//! crash), every answer comes within the request deadline (a generous bound, not a timing
//! claim), `/readyz` takes the instance out of rotation, and the service recovers by itself
//! when the database returns; the commands that failed, retried afterwards with the same
//! Idempotency-Key, are then recorded exactly once, whether or not the first try had in fact
//! committed. A Redis outage only degrades the instance: reads fall back to
//! the database and stay correct, and the cache is used again once Redis is back.
//!
//! Each test stops a server of its own (a private PostgreSQL cluster from the binaries
//! `pg_config --bindir` names, a private `redis-server`), never the shared ones other tests
//! use, and prints why it is skipped when the binaries (or `TEST_DATABASE_URL`) are missing;
//! under CI (`CI=true`) it fails instead.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::{json, Value};
use starledger_e2e::{free_port, starledger, ScratchDatabase};
use starledger_ledger::testing::{postgres_bin_dir, server_url, under_ci};
use uuid::Uuid;

const SERVICE_KEY: &str = "outage-service-key-0123456789";
/// How long any answer may take, outage or not. The server answers every request within
/// REQUEST_TIMEOUT_MS (5 s by default; without that deadline a purchase could wait for the
/// pool's 10 s acquire timeout twice plus the read-your-writes wait, over 20 s); the rest is
/// slack for a loaded machine, not a claim about speed.
const ANSWER_BOUND: Duration = Duration::from_secs(8);
/// When the client stops waiting and records a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Processes of our own, stopped when dropped (also when a test panics)

/// A PostgreSQL cluster in a temp dir, on a free port, with trust authentication.
struct PrivatePostgres {
    /// The server's programs (`initdb`, `pg_ctl`, `postgres`).
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Set when we run as root: initdb refuses root, so the cluster runs as `postgres`.
    run_as: Option<&'static str>,
}

impl PrivatePostgres {
    fn init() -> Option<PrivatePostgres> {
        let bin = postgres_bin_dir(
            &["initdb", "pg_ctl", "postgres"],
            "the PostgreSQL outage test",
        )?;
        let root = run(Command::new("id").arg("-u")).stdout == b"0\n";
        let cluster = PrivatePostgres {
            bin,
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
            run_as: root.then_some("postgres"),
        };
        std::fs::create_dir(cluster.dir.path().join("socket")).expect("socket dir");
        if let Some(user) = cluster.run_as {
            // The temp dir is root's and private; the server's user must own what it writes.
            std::fs::set_permissions(cluster.dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod temp dir");
            run(Command::new("chown")
                .args(["-R", user])
                .arg(cluster.dir.path()));
        }
        let data = cluster.data();
        cluster.tool(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs one of the cluster's programs as the cluster's user; panics with its output on
    /// failure.
    fn tool(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        };
        run(command.args(args))
    }

    /// Starts the server and waits until it accepts connections (`pg_ctl -w`).
    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().join("socket").display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        let data = self.data();
        self.tool(
            "pg_ctl",
            &[
                "start", "-w", "-t", "30", "-D", &data, "-l", &log, "-o", &options,
            ],
        );
    }

    /// `immediate` is a crash (no checkpoint, connections cut); `fast` an orderly stop.
    fn stop(&self, mode: &str) {
        let data = self.data();
        self.tool("pg_ctl", &["stop", "-w", "-m", mode, "-D", &data]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let path = self.bin.join("pg_ctl");
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        };
        // Already stopped is fine; this only makes sure no server outlives the test.
        let _ = command
            .args(["stop", "-m", "immediate", "-D", &data])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A `redis-server` of our own on a fixed port, so a restarted one is found at the same URL.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start(port: u16) -> Option<PrivateRedis> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let redis = PrivateRedis {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer PING in 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(redis)
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut answer = [0u8; 7];
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .is_ok()
            && stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `starledger serve` on a free port, its stderr in a file for failure messages.
struct Server {
    child: Child,
    port: u16,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(env: &[(&str, String)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let stderr = dir.path().join("serve.stderr");
        let port = free_port();
        let mut command = starledger();
        command
            .arg("serve")
            .env("HELEKET_MODE", "sandbox")
            .env("STARLEDGER_API_KEYS", format!("bot:service:{SERVICE_KEY}"))
            .env("WEBHOOK_HOST", "127.0.0.1")
            .env("WEBHOOK_PORT", port.to_string())
            .env("HTTP_WORKERS", "2")
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("stderr file"));
        for (name, value) in env {
            command.env(name, value);
        }
        let mut server = Server {
            child: command.spawn().expect("start starledger serve"),
            port,
            stderr,
            _dir: dir,
        };
        let api = Api::new(port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            server.assert_running();
            if let Ok(answer) = api.send(Method::GET, "/healthz", None, None).await {
                if answer.status == 200 {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "serve did not answer /healthz in 30 s; stderr:\n{}",
                server.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last 80 lines the process wrote to stderr, for failure messages.
    fn stderr(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }

    /// Panics (with the process's stderr) if `serve` has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("serve exited with {status}; stderr:\n{}", self.stderr());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a program to completion; panics with its output unless it succeeds.
fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed with {}:\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `starledger <args>` against `database_url`.
fn starledger_with(database_url: &str, args: &[&str]) -> Output {
    starledger()
        .args(args)
        .env("DATABASE_URL", database_url)
        .output()
        .expect("run starledger")
}

fn migrate(database_url: &str) {
    let output = starledger_with(database_url, &["migrate"]);
    assert!(
        output.status.success(),
        "starledger migrate failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// The HTTP API as a client sees it

#[derive(Clone)]
struct Api {
    client: Client,
    base: String,
}

#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    /// `Idempotent-Replayed: true`: the answer repeats an earlier request's.
    replayed: bool,
    /// `Null` when the body is not JSON.
    body: Value,
}

impl Api {
    fn new(port: u16) -> Api {
        Api {
            client: Client::builder()
                .timeout(CLIENT_TIMEOUT)
                .build()
                .expect("HTTP client"),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(SERVICE_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let replayed = response.headers().contains_key("Idempotent-Replayed");
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            retry_after,
            replayed,
            body,
        })
    }

    /// A request that must get an answer (the dependencies it needs are up).
    async fn must(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let key = Uuid::new_v4().to_string();
        self.send(method.clone(), path, body, Some(&key))
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: no answer: {error}"))
    }

    async fn readyz(&self) -> Answer {
        self.must(Method::GET, "/readyz", None).await
    }
}

/// Registers `user` and credits `amount` through a paid sandbox invoice; returns once the
/// balance shows it.
async fn fund(api: &Api, user: i64, amount: &str) {
    let answer = api
        .must(
            Method::POST,
            "/v1/users",
            Some(json!({"user_id": user, "username": format!("buyer{user}")})),
        )
        .await;
    assert_eq!(answer.status, 201, "register: {answer:?}");
    let path = format!("/v1/users/{user}/recharges");
    let answer = api
        .must(Method::POST, &path, Some(json!({"amount": amount})))
        .await;
    assert_eq!(answer.status, 201, "recharge: {answer:?}");
    let invoice = answer.body["invoice_uuid"].as_str().expect("invoice_uuid");
    let path = format!("/sandbox/heleket/invoices/{invoice}/pay");
    let answer = api
        .must(Method::POST, &path, Some(json!({"status": "paid"})))
        .await;
    assert_eq!(answer.status, 200, "pay: {answer:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = api
            .must(Method::GET, &format!("/v1/users/{user}/balance"), None)
            .await;
        if answer.status == 200 && answer.body["available"] == amount {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the paid recharge did not show in 15 s: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Load: commands and reads from a few tasks, every answer judged

/// A command the service acknowledged with a 2xx: the log must hold it at `position`, and
/// that event's data must mention `needle` (the user, recharge or purchase id).
#[derive(Debug)]
struct Acknowledged {
    what: &'static str,
    needle: String,
    position: u64,
}

#[derive(Default)]
struct Tally {
    acknowledged: Vec<Acknowledged>,
    /// Clean failures by `"<status> <code>"`.
    failed: BTreeMap<String, usize>,
    /// Answers that break the contract: a 2xx without what it promises, a 4xx for a valid
    /// request, a 5xx without an error code or `Retry-After`, or no answer in time.
    violations: Vec<String>,
    /// The longest any answer took, and what it was.
    slowest: Duration,
    slowest_what: String,
    /// Commands answered 5xx, with the Idempotency-Key they were sent with: retried after the
    /// outage with the same key, each must then be recorded exactly once.
    unanswered_commands: Vec<(Op, String)>,
}

impl Tally {
    fn failures(&self) -> usize {
        self.failed.values().sum()
    }

    /// Failures and violations so far, for a failure message.
    fn summary(&self) -> String {
        format!(
            "{} acknowledged; clean failures {:?}; violations:\n{}",
            self.acknowledged.len(),
            self.failed,
            self.violations.join("\n")
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Register(i64),
    Recharge(i64),
    Purchase(i64),
    ReadBalance(i64),
}

/// Sends one operation and records how it went. Returns whether it succeeded.
/// What `op` sends: a name for messages, the method, the path and the body.
fn request_of(op: Op) -> (&'static str, Method, String, Option<Value>) {
    match op {
        Op::Register(user) => (
            "register",
            Method::POST,
            "/v1/users".to_owned(),
            Some(json!({"user_id": user, "username": format!("load{user}")})),
        ),
        Op::Recharge(user) => (
            "recharge",
            Method::POST,
            format!("/v1/users/{user}/recharges"),
            Some(json!({"amount": "1"})),
        ),
        Op::Purchase(user) => (
            "purchase",
            Method::POST,
            format!("/v1/users/{user}/purchases"),
            Some(json!({"stars": 50})),
        ),
        Op::ReadBalance(user) => (
            "balance",
            Method::GET,
            format!("/v1/users/{user}/balance"),
            None,
        ),
    }
}

/// Sends one operation with a fresh Idempotency-Key and records how it went. Returns whether
/// it succeeded.
async fn attempt(api: &Api, op: Op, tally: &Mutex<Tally>) -> bool {
    let key = Uuid::new_v4().to_string();
    let (what, method, path, body) = request_of(op);
    let sent = Instant::now();
    let answer = api.send(method, &path, body, Some(&key)).await;
    let mut tally = tally.lock().unwrap();
    if sent.elapsed() > tally.slowest {
        tally.slowest = sent.elapsed();
        tally.slowest_what = format!("{what}: {answer:?}");
    }
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            tally.violations.push(format!(
                "{what}: no answer within {CLIENT_TIMEOUT:?}: {error}"
            ));
            return false;
        }
    };
    match answer.status {
        200..=299 => {
            let needle = match op {
                Op::Register(user) => Some(format!("\"user_id\":{user}")),
                Op::Recharge(_) => answer.body["recharge_id"].as_str().map(str::to_owned),
                Op::Purchase(_) => answer.body["purchase_id"].as_str().map(str::to_owned),
                Op::ReadBalance(_) => return true,
            };
            match (needle, answer.body["position"].as_u64()) {
                (Some(needle), Some(position)) => tally.acknowledged.push(Acknowledged {
                    what,
                    needle,
                    position,
                }),
                _ => tally.violations.push(format!(
                    "{what}: 2xx without an id or a position: {answer:?}"
                )),
            }
            true
        }
        500..=599 => {
            let code = answer.body["error"]["code"].as_str().map(str::to_owned);
            match code {
                Some(code) if answer.status != 503 || answer.retry_after.is_some() => {
                    *tally
                        .failed
                        .entry(format!("{what} {} {code}", answer.status))
                        .or_default() += 1;
                    if !matches!(op, Op::ReadBalance(_)) {
                        tally.unanswered_commands.push((op, key));
                    }
                }
                _ => tally.violations.push(format!(
                    "{what}: 5xx without an error code or Retry-After: {answer:?}"
                )),
            }
            false
        }
        _ => {
            tally
                .violations
                .push(format!("{what}: unexpected answer {answer:?}"));
            false
        }
    }
}

/// One task of the load: register new users, recharge and buy for `buyer`, read its balance,
/// until `stop`.
async fn load(
    api: Api,
    buyer: i64,
    next_user: Arc<AtomicI64>,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
) {
    let mut turn = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let op = match turn % 4 {
            0 => Op::Register(next_user.fetch_add(1, Ordering::Relaxed)),
            1 => Op::Recharge(buyer),
            2 => Op::Purchase(buyer),
            _ => Op::ReadBalance(buyer),
        };
        attempt(&api, op, &tally).await;
        turn += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The log as `starledger audit export` writes it, by position.
fn export(database_url: &str) -> HashMap<u64, Value> {
    let output = starledger_with(database_url, &["audit", "export"]);
    assert!(
        output.status.success(),
        "audit export failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("export is UTF-8")
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("export line is JSON");
            (event["position"].as_u64().expect("position"), event)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_answers_503_without_false_acks_and_the_service_recovers_by_itself() {
    let Some(postgres) = PrivatePostgres::init() else {
        return;
    };
    postgres.start();
    let database_url = postgres.url();
    migrate(&database_url);
    // A small pool: during the outage every request waits for a connection, and the pool's
    // 10 s acquire timeout must still end each one well inside CLIENT_TIMEOUT.
    let mut server = Server::start(&[
        ("DATABASE_URL", database_url.clone()),
        ("DATABASE_POOL_SIZE", "3".to_owned()),
    ])
    .await;
    let api = Api::new(server.port);
    let buyer = 1_000_001;
    fund(&api, buyer, "500").await;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let next_user = Arc::new(AtomicI64::new(2_000_000));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(load(
                api.clone(),
                buyer,
                Arc::clone(&next_user),
                Arc::clone(&tally),
                Arc::clone(&stop),
            ))
        })
        .collect();
    let acknowledged = || tally.lock().unwrap().acknowledged.len();

    // Healthy: the load goes through.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged() < 20 {
        assert!(
            Instant::now() < deadline,
            "fewer than 20 commands acknowledged in 20 s before the outage; stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The database crashes under load.
    postgres.stop("immediate");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        server.assert_running();
        let answer = api.readyz().await;
        if answer.status == 503 {
            assert_eq!(answer.body["database"], "unavailable", "{answer:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not report 503 within 20 s of the database stopping: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Stay down long enough for the load to meet the outage (two failed operations per load
    // task, so more than one kind of command fails); the process must stay up.
    let failed_before = tally.lock().unwrap().failures();
    let deadline = Instant::now() + Duration::from_secs(40);
    let outage_started = Instant::now();
    while tally.lock().unwrap().failures() < failed_before + 8
        || outage_started.elapsed() < Duration::from_secs(3)
    {
        server.assert_running();
        if Instant::now() >= deadline {
            let summary = tally.lock().unwrap().summary();
            panic!(
                "the load met fewer than 8 clean failures in 40 s of outage: {summary}\n\
                 stderr:\n{}",
                server.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = api.readyz().await;
    assert_eq!(
        answer.status, 503,
        "/readyz while the database is down: {answer:?}"
    );

    // The database comes back; the service must find it again by itself.
    postgres.start();
    let recovery = Instant::now();
    let deadline = recovery + Duration::from_secs(30);
    let probe_user = next_user.fetch_add(1, Ordering::Relaxed);
    let mut probe_ok = false;
    loop {
        server.assert_running();
        if !probe_ok {
            probe_ok = attempt(&api, Op::Register(probe_user), &tally).await;
        }
        let ready = api.readyz().await;
        if probe_ok && ready.status == 200 {
            break;
        }
        if Instant::now() >= deadline {
            let summary = tally.lock().unwrap().summary();
            panic!(
                "no recovery within 30 s of the database restarting: probe registration ok = \
                 {probe_ok}, /readyz = {ready:?}; {summary}\nstderr:\n{}",
                server.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("recovered {:?} after the restart", recovery.elapsed());
    // The load's own commands go through again, not only the probe.
    let recovered_at = acknowledged();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged() < recovered_at + 20 {
        if Instant::now() >= deadline {
            let summary = tally.lock().unwrap().summary();
            panic!(
                "the load did not get 20 more commands through in 20 s after recovery: \
                 {summary}\nstderr:\n{}",
                server.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("load task");
    }
    server.assert_running();

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    eprintln!(
        "acknowledged {} commands; clean failures {:?}; slowest answer {:?} ({})",
        tally.acknowledged.len(),
        tally.failed,
        tally.slowest,
        tally.slowest_what
    );
    assert!(
        tally.violations.is_empty(),
        "answers that break the contract:\n{}\nstderr:\n{}",
        tally.violations.join("\n"),
        server.stderr()
    );
    assert!(
        tally.slowest < ANSWER_BOUND,
        "an answer took {:?} (bound {ANSWER_BOUND:?}): {}",
        tally.slowest,
        tally.slowest_what
    );

    // The commands answered 5xx, sent again now with the same key: each must be recorded
    // exactly once, whether or not the first try committed before its 503 (then the retry
    // is a replay of it).
    assert!(
        !tally.unanswered_commands.is_empty(),
        "no command failed during the outage: the retries test nothing"
    );
    let mut retried = Vec::new();
    let mut replays = 0;
    for (op, key) in &tally.unanswered_commands {
        let (what, method, path, body) = request_of(*op);
        let answer = api
            .send(method, &path, body, Some(key))
            .await
            .unwrap_or_else(|error| panic!("retry of {what} {key}: no answer: {error}"));
        assert!(
            (200..300).contains(&answer.status),
            "the retry of {what} {key} after the outage: {answer:?}"
        );
        replays += usize::from(answer.replayed);
        retried.push((*op, answer.body));
    }
    eprintln!(
        "{} commands that failed during the outage retried with their keys ({:?}); {replays} of \
         them had been recorded all the same (they finished after their 503)",
        retried.len(),
        retried.iter().map(|(op, _)| op).collect::<Vec<_>>()
    );

    // Every acknowledged command is in the log, and the log and read models are sound.
    let log = export(&database_url);
    for (op, answer) in &retried {
        let (event_type, field, id) = match op {
            Op::Register(user) => ("UserRegistered", "user_id", json!(user)),
            Op::Recharge(_) => (
                "RechargeRequested",
                "recharge_id",
                answer["recharge_id"].clone(),
            ),
            Op::Purchase(_) => (
                "PurchaseRequested",
                "purchase_id",
                answer["purchase_id"].clone(),
            ),
            Op::ReadBalance(_) => continue,
        };
        let count = log
            .values()
            .filter(|e| e["event_type"] == event_type && e["data"][field] == id)
            .count();
        assert_eq!(
            count, 1,
            "{op:?} retried after the outage: {event_type} {id} in the log {count} times"
        );
    }
    for ack in &tally.acknowledged {
        let event = log.get(&ack.position).unwrap_or_else(|| {
            panic!(
                "a {} was acknowledged at position {}, but the log has no event there",
                ack.what, ack.position
            )
        });
        assert!(
            event["data"].to_string().contains(&ack.needle),
            "a {} was acknowledged ({}) at position {}, but the event there is {event}",
            ack.what,
            ack.needle,
            ack.position
        );
    }
    let verify = starledger_with(&database_url, &["audit", "verify"]);
    assert!(
        verify.status.success(),
        "audit verify after the outage:\n{}\n{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_degrades_reads_to_the_database_and_the_cache_comes_back_by_itself() {
    let Some(server_url) = server_url(
        "TEST_DATABASE_URL",
        "the Redis outage test is skipped; set it to postgres://… to run it",
    ) else {
        return;
    };
    let redis_port = free_port();
    let Some(mut redis) = PrivateRedis::start(redis_port) else {
        assert!(
            !under_ci(),
            "redis-server is not installed; .ci/run installs it (package redis-server)"
        );
        eprintln!("skipping the Redis outage test: no redis-server binary");
        return;
    };
    // Declared before the server, so dropped after it.
    let database = ScratchDatabase::create(&server_url).await;
    migrate(database.url());
    let mut server = Server::start(&[
        ("DATABASE_URL", database.url().to_owned()),
        ("DATABASE_POOL_SIZE", "4".to_owned()),
        ("REDIS_URL", redis.url()),
    ])
    .await;
    let api = Api::new(server.port);
    let user = 3_000_001;
    fund(&api, user, "100").await;
    let balance_path = format!("/v1/users/{user}/balance");
    let history_path = format!("/v1/users/{user}/transactions");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = api.readyz().await;
        if ready.status == 200 && ready.body["status"] == "ready" {
            assert_eq!(ready.body["redis"], "ok", "{ready:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz not ready with Redis up in 15 s: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Read twice, so the second comes from the cache.
    let funded = api.must(Method::GET, &balance_path, None).await;
    assert_eq!(funded.status, 200, "{funded:?}");
    let cached = api.must(Method::GET, &balance_path, None).await;
    assert_eq!(cached.body, funded.body, "a cached balance differs");
    assert_eq!(funded.body["available"], "100", "{funded:?}");
    let history = api.must(Method::GET, &history_path, None).await;
    assert_eq!(history.status, 200, "{history:?}");

    redis.kill();
    server.assert_running();
    let balance = api.must(Method::GET, &balance_path, None).await;
    assert_eq!(
        (balance.status, &balance.body),
        (200, &funded.body),
        "balance with Redis down"
    );
    let during = api.must(Method::GET, &history_path, None).await;
    assert_eq!(
        (during.status, &during.body),
        (200, &history.body),
        "history with Redis down"
    );
    let purchase = api
        .must(
            Method::POST,
            &format!("/v1/users/{user}/purchases"),
            Some(json!({"stars": 50})),
        )
        .await;
    assert_eq!(
        purchase.status, 201,
        "purchase with Redis down: {purchase:?}"
    );
    let position = purchase.body["position"].as_u64().expect("position");
    let price = purchase.body["price"].clone();
    let path = format!("{balance_path}?min_position={position}");
    let after = api.must(Method::GET, &path, None).await;
    assert_eq!(after.status, 200, "{after:?}");
    assert_eq!(
        after.body["reserved"], price,
        "the purchase reserves its price"
    );
    assert_eq!(after.body["total"], "100", "a reservation keeps the total");
    assert_eq!(
        after.body, purchase.body["balance"],
        "read after the purchase"
    );
    let purchase_id = purchase.body["purchase_id"].as_str().expect("purchase_id");
    let history = api.must(Method::GET, &history_path, None).await;
    assert!(
        history.body.to_string().contains(purchase_id),
        "history with Redis down lacks the purchase: {history:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = api.readyz().await;
        assert_eq!(
            ready.status, 200,
            "Redis down must not make the instance unready"
        );
        if ready.body["status"] == "degraded" {
            assert_eq!(ready.body["redis"], "unavailable", "{ready:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not say degraded within 15 s of Redis going: {ready:?}"
        );
        // Reads are what notices Redis is gone.
        api.must(Method::GET, &balance_path, None).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let redis = PrivateRedis::start(redis_port).expect("restart redis-server");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        server.assert_running();
        let balance = api.must(Method::GET, &balance_path, None).await;
        assert_eq!(
            (balance.status, &balance.body),
            (200, &after.body),
            "balance while Redis comes back"
        );
        let ready = api.readyz().await;
        assert_eq!(ready.status, 200, "{ready:?}");
        if ready.body["status"] == "ready" {
            assert_eq!(ready.body["redis"], "ok", "{ready:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz not ready again within 30 s of Redis restarting: {ready:?}; stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Through the cache again: twice, so the second read is a cache hit.
    for _ in 0..2 {
        let balance = api.must(Method::GET, &balance_path, None).await;
        assert_eq!((balance.status, &balance.body), (200, &after.body));
        let again = api.must(Method::GET, &history_path, None).await;
        assert_eq!((again.status, &again.body), (200, &history.body));
    }
    drop(redis);
}
