//! `starledger bench http`: the service measured through its front door.
//!
//! One run creates a scratch PostgreSQL database, starts the real [`Application`] in this
//! process on a free port (sandbox Heleket, Redis cache when given) and drives it over HTTP:
//!
//! - **webhooks**: distinct, correctly signed `paid` webhooks, each settling one pending
//!   recharge (signed webhook → durable event → 200);
//! - **balance reads**: `GET /v1/users/{id}/balance` with the service key, after a warm-up,
//!   so the answers come from the cache.
//!
//! The users and their pending recharges are appended straight through the ledger and every
//! webhook body is signed and serialised before the clock starts, so the timed phases measure
//! the server, not the set-up. At the end the log must verify and hold exactly one
//! `RechargeSettled` per webhook answered `recorded`; otherwise the run fails.
//!
//! The load generator shares the process and the cores with the server, so the figures are a
//! lower bound of what the server does with the machine to itself.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use starledger_gateway::config::server::ServerConfig;
use starledger_gateway::config::{Config, Env};
use starledger_gateway::heleket::sign::sign_webhook;
use starledger_gateway::heleket::OrderId;
use starledger_gateway::http::state::AppState;
use starledger_gateway::serve::Application;
use starledger_gateway::storage;
use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::{CommandContext, Ledger};
use starledger_ledger::events::{Actor, Invoice};
use starledger_ledger::ids::{IdempotencyKey, RechargeId, UserId};
use starledger_ledger::money::{Amount, Currency};
use starledger_ledger::store::EventStore;
use starledger_projections::cache::CacheStats;

use crate::bench::{server_url, with_scratch_database};

/// The key the sandbox signs webhooks with; the bench signs its own with the same one.
const HELEKET_KEY: &str = "bench-heleket-api-key-0123456789abcdef";
/// The service-role API key the balance reads present.
const SERVICE_KEY: &str = "bench-service-key-0123456789";
/// First user id: Telegram-sized ids, so nothing gets an easier path for small numbers.
pub(crate) const FIRST_USER: i64 = 7_000_000_000;
/// What each recharge asks and each webhook pays, in the ledger currency.
pub(crate) const RECHARGE_AMOUNT: &str = "10";
/// How many webhook and read answers that are not what we expect are kept to show.
const ERROR_SAMPLES: usize = 5;

#[derive(Args)]
pub struct HttpBench {
    /// Drive a server that is already running at this base URL (one instance, or several
    /// behind a load balancer) instead of starting one here. It must run
    /// HELEKET_MODE=sandbox; give its Heleket key and a service key in BENCH_HELEKET_KEY and
    /// BENCH_SERVICE_KEY. The database and server options below are then unused.
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// With --url: the target's Heleket API key (API_KEY), to sign the webhooks.
    #[arg(long, env = "BENCH_HELEKET_KEY", hide_env_values = true)]
    pub(crate) heleket_key: Option<String>,
    /// With --url: a service-role secret from the target's STARLEDGER_API_KEYS.
    #[arg(long, env = "BENCH_SERVICE_KEY", hide_env_values = true)]
    pub(crate) service_key: Option<String>,
    /// PostgreSQL server to create the scratch database on (default: DATABASE_URL).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Redis for the shared cache tier (default: in-process cache only).
    #[arg(long, env = "BENCH_REDIS_URL")]
    redis_url: Option<String>,
    /// Users the webhooks and reads are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) users: u64,
    /// Signed `paid` webhooks to post (one pending recharge is created for each).
    #[arg(long, default_value_t = 50_000)]
    pub(crate) webhooks: u64,
    /// Balance reads to issue after the warm-up.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) reads: u64,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 64)]
    pub(crate) connections: u64,
    /// Offer the webhooks at this many per second instead of as fast as the connections go
    /// (open loop: latency counts from when each request was due, so a slow server cannot
    /// hide its queue by slowing the client down).
    #[arg(long)]
    pub(crate) webhook_rate: Option<f64>,
    /// actix worker threads of the server (HTTP_WORKERS).
    #[arg(long, default_value_t = 2)]
    pub(crate) http_workers: usize,
    /// PostgreSQL connections of the server (DATABASE_POOL_SIZE).
    #[arg(long, default_value_t = 10)]
    pool_size: u32,
    /// Keep the scratch database (its name is printed) to inspect it afterwards.
    #[arg(long)]
    keep_database: bool,
}

pub async fn run(options: HttpBench, config: &Config) -> anyhow::Result<ExitCode> {
    let report = measure(&options, config).await?;
    report.print(&options);
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs both scenarios on a scratch database and returns what they found.
pub(crate) async fn measure(options: &HttpBench, config: &Config) -> anyhow::Result<Report> {
    anyhow::ensure!(
        options.users > 0 && options.connections > 0,
        "--users and --connections must be at least 1"
    );
    anyhow::ensure!(
        options
            .webhook_rate
            .is_none_or(|rate| rate.is_finite() && rate > 0.0),
        "--webhook-rate must be a positive number"
    );
    if let Some(url) = &options.url {
        return crate::bench_remote::measure(options, url).await;
    }
    let url = server_url(options.database_url.clone(), config)?;
    with_scratch_database(&url, options.keep_database, |db| bench(options, &url, db)).await
}

/// What a run found: the rows of the table and whether the log agrees with the answers.
pub(crate) struct Report {
    /// `/proc/loadavg` when the timed phases began: other work on the machine shows here.
    pub(crate) load_before: String,
    /// The webhooks, then the cached reads.
    pub(crate) rows: Vec<Row>,
    /// The cache's mode and what it counted during the timed reads (not seen with `--url`).
    pub(crate) cache: Option<(&'static str, CacheStats)>,
    pub(crate) problems: Vec<String>,
}

impl Report {
    pub(crate) fn passed(&self) -> bool {
        self.problems.is_empty() && self.rows.iter().all(|row| row.errors == 0)
    }

    fn print(&self, options: &HttpBench) {
        println!(
            "\n{:<30} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>9}",
            "scenario",
            "requests",
            "seconds",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "errors",
            "VmHWM MB"
        );
        for row in &self.rows {
            row.print();
        }
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        match (&self.cache, &options.url) {
            (Some((mode, stats)), _) => {
                println!(
                    "\ncache ({mode}) during the reads: L1 hits {}, L2 (Redis) hits {}, database loads {}, Redis errors {}",
                    stats.l1_hits, stats.l2_hits, stats.loads, stats.redis_errors
                );
                println!(
                    "\nThe load generator runs in this process and shares the {cores} cores with the server \
                     ({} HTTP workers), its projectors, PostgreSQL and Redis: the figures are a lower bound. \
                     Peak RSS (VmHWM) includes the client and the pre-signed webhook bodies.",
                    options.http_workers
                );
            }
            (None, url) => println!(
                "\nThe load generator ran in its own process against {}; the server's cache is \
                 not visible from here. This machine has {cores} cores; where the server shares \
                 them, the figures are a lower bound. Peak RSS (VmHWM) is the load generator's.",
                url.as_deref().unwrap_or("a running server")
            ),
        }
        for problem in &self.problems {
            println!("FAILED: {problem}");
        }
        for row in self.rows.iter().filter(|row| row.errors > 0) {
            println!("FAILED: {} had {} errors", row.name, row.errors);
        }
        println!(
            "load average (1, 5, 15 min) before the timed phases: {}; after: {}",
            self.load_before,
            load_average()
        );
        println!("command: {}", command_line());
    }
}

/// One timed scenario.
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) requests: u64,
    pub(crate) elapsed: Duration,
    /// Microseconds per request, sorted.
    latencies: Vec<u32>,
    pub(crate) errors: u64,
    /// Peak resident set size of the process after the scenario, in kB.
    pub(crate) peak_rss_kb: u64,
}

impl Row {
    pub(crate) fn percentile_ms(&self, p: f64) -> f64 {
        let index = ((self.latencies.len() as f64 * p) as usize)
            .min(self.latencies.len().saturating_sub(1));
        self.latencies.get(index).copied().unwrap_or_default() as f64 / 1e3
    }

    pub(crate) fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self) {
        println!(
            "{:<30} {:>9} {:>8.2} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>9.1}",
            self.name,
            self.requests,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.90),
            self.percentile_ms(0.99),
            self.latencies.last().copied().unwrap_or_default() as f64 / 1e3,
            self.errors,
            self.peak_rss_kb as f64 / 1024.0
        );
    }
}

/// Starts the app on the scratch database, runs both scenarios and stops the app, whatever
/// happened in between.
async fn bench(
    options: &HttpBench,
    server_url: &str,
    database: PgConnectOptions,
) -> anyhow::Result<Report> {
    let name = database
        .get_database()
        .context("the scratch database has no name")?;
    let mut database_url =
        reqwest::Url::parse(server_url).context("--database-url is not a URL")?;
    database_url.set_path(&format!("/{name}"));
    // A prefix of its own: runs sharing one Redis never read each other's balances, and
    // the keys of this run can be removed afterwards.
    let prefix = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let app = start(options, database_url.as_str(), &prefix).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());
    let outcome = scenarios(options, &state, &base).await;
    drop(state);
    handle.stop(true).await;
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "the server stopped with an error"),
        Err(error) => tracing::error!(%error, "the server task failed"),
    }
    if let Some(redis) = &options.redis_url {
        // The shared Redis must not keep a run's tens of thousands of entries until their
        // TTLs run out; a failure here spoils nothing measured, so it is only reported.
        match remove_cache_keys(redis, &prefix).await {
            Ok(removed) => eprintln!("removed {removed} Redis keys under {prefix}:"),
            Err(error) => eprintln!("could not remove the Redis keys under {prefix}: {error:#}"),
        }
    }
    outcome
}

/// Deletes every key under `prefix:` (SCAN, then UNLINK per page, so Redis never blocks).
async fn remove_cache_keys(url: &str, prefix: &str) -> anyhow::Result<u64> {
    let client = redis::Client::open(url).context("--redis-url is not a Redis URL")?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let (mut cursor, mut removed) = (0u64, 0u64);
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut connection)
            .await?;
        if !keys.is_empty() {
            let unlinked: u64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut connection)
                .await?;
            removed += unlinked;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

/// Builds the real application as `starledger serve` would, from an environment of our own.
async fn start(
    options: &HttpBench,
    database_url: &str,
    cache_prefix: &str,
) -> anyhow::Result<Application> {
    let mut vars: BTreeMap<&'static str, String> = BTreeMap::from([
        ("DATABASE_URL", database_url.to_owned()),
        ("DATABASE_POOL_SIZE", options.pool_size.to_string()),
        ("WEBHOOK_HOST", "127.0.0.1".into()),
        ("WEBHOOK_PORT", "0".into()),
        ("HTTP_WORKERS", options.http_workers.to_string()),
        ("HELEKET_MODE", "sandbox".into()),
        ("API_KEY", HELEKET_KEY.into()),
        (
            "STARLEDGER_API_KEYS",
            format!("bench:service:{SERVICE_KEY}"),
        ),
    ]);
    if let Some(redis) = &options.redis_url {
        vars.insert("REDIS_URL", redis.clone());
        vars.insert("CACHE_KEY_PREFIX", cache_prefix.to_owned());
    }
    let env = Env(move |name: &str| vars.get(name).cloned());
    let config = Config::from_env(&env).context("bench configuration")?;
    let server = ServerConfig::from_env(&env).context("bench server configuration")?;
    storage::migrate(&config.storage)
        .await
        .context("cannot migrate the scratch database")?;
    Application::build(config, server)
        .await
        .context("the application does not start")
}

async fn scenarios(options: &HttpBench, state: &AppState, base: &str) -> anyhow::Result<Report> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(options.connections as usize)
        .timeout(Duration::from_secs(30))
        .build()?;

    let started = Instant::now();
    let users = set_up(&state.ledger, &state.currency, options).await?;
    let bodies = sign_webhooks(&users, &state.currency, options.webhooks)?;
    let head = state.events.head().await?.position;
    let body_bytes: usize = bodies.iter().map(Vec::len).sum();
    eprintln!(
        "set up {} users and {} pending recharges ({head} events) in {:.1} s; \
         {:.1} MB of signed webhook bodies; VmRSS {:.1} MB before the timed phases",
        users.len(),
        options.webhooks,
        started.elapsed().as_secs_f64(),
        body_bytes as f64 / 1e6,
        status_kb("VmRSS:") as f64 / 1024.0
    );
    // Let the projectors finish the set-up's events, so they do not compete with the timed
    // phase for the cores.
    caught_up(state, head).await?;

    let load_before = load_average();
    let mut rows = Vec::new();
    let mut problems = Vec::new();

    let mut queues: Vec<Vec<Vec<u8>>> = (0..options.connections).map(|_| Vec::new()).collect();
    let connections = queues.len();
    for (n, body) in bodies.into_iter().enumerate() {
        queues[n % connections].push(body);
    }
    let webhook_url = format!("{base}/webhooks/heleket");
    let (row, recorded) = post_webhooks(&client, &webhook_url, queues, options.webhook_rate).await;
    eprintln!(
        "webhooks: {:.0} requests/s, {} recorded, {} errors",
        row.rate(),
        recorded,
        row.errors
    );
    rows.push(row);
    let after_webhooks = state.events.head().await?.position;
    if after_webhooks - head != recorded {
        problems.push(format!(
            "{recorded} webhooks were answered `recorded` but the log grew by {} events",
            after_webhooks - head
        ));
    }

    caught_up(state, after_webhooks).await?;
    let balance_urls: Vec<String> = users
        .iter()
        .map(|user| format!("{base}/v1/users/{}/balance", user.get()))
        .collect();
    let balance_urls = Arc::new(balance_urls);
    // Warm-up: every user's balance read once (fills the caches), then the timed reads.
    let authorization = format!("Bearer {SERVICE_KEY}");
    let warm = read_balances(
        &client,
        &authorization,
        &balance_urls,
        balance_urls.len() as u64,
        options.connections,
        "balance reads (warm-up)",
    )
    .await;
    if warm.errors > 0 {
        problems.push(format!("{} warm-up reads failed", warm.errors));
    }
    let cache = state.queries.cache();
    let before = cache.stats();
    let row = read_balances(
        &client,
        &authorization,
        &balance_urls,
        options.reads,
        options.connections,
        "cached balance reads",
    )
    .await;
    let after = cache.stats();
    rows.push(row);

    problems.extend(verify(state, recorded).await?);
    Ok(Report {
        load_before,
        rows,
        cache: Some((cache.mode(), difference(&before, &after))),
        problems,
    })
}

/// Registers the users and requests one pending recharge per webhook to come, straight
/// through the ledger (group commit, one task per user): seconds instead of minutes of HTTP.
async fn set_up(
    ledger: &Arc<Ledger>,
    currency: &Currency,
    options: &HttpBench,
) -> anyhow::Result<Vec<UserId>> {
    let mut tasks = Vec::new();
    for index in 0..options.users {
        let ledger = ledger.clone();
        let currency = currency.clone();
        let recharges = recharges_of(index, options.users, options.webhooks);
        tasks.push(tokio::spawn(async move {
            let user = UserId::new(FIRST_USER + index as i64)?;
            let context =
                CommandContext::new(IdempotencyKey::parse("bench-register")?, Actor::System);
            let register = AccountCommand::Register {
                username: None,
                language: Some("en".into()),
                currency: currency.clone(),
            };
            ledger.execute(user, register, &context).await?;
            let amount = Amount::parse(RECHARGE_AMOUNT)?;
            // Far from expiry: the reconciler must leave these recharges to their webhooks.
            let expires_at = Utc::now() + chrono::Duration::hours(6);
            for k in 0..recharges {
                let key = recharge_key(k)?;
                let recharge_id = RechargeId::derive(user, &key);
                let uuid = invoice_uuid(recharge_id);
                let command = AccountCommand::RequestRecharge {
                    recharge_id,
                    amount,
                    currency: currency.clone(),
                    invoice: Invoice {
                        url: format!("https://pay.heleket.com/pay/{uuid}"),
                        uuid,
                        expires_at,
                    },
                };
                ledger
                    .execute(user, command, &CommandContext::new(key, Actor::System))
                    .await?;
            }
            anyhow::Ok(user)
        }));
    }
    let mut users = Vec::with_capacity(tasks.len());
    for task in tasks {
        users.push(task.await??);
    }
    Ok(users)
}

/// Webhook `n` pays recharge `n / users` of user `n % users`: consecutive webhooks go to
/// different accounts, as real payments do. This is how many recharges user `index` gets.
fn recharges_of(index: u64, users: u64, webhooks: u64) -> u64 {
    webhooks / users + u64::from(index < webhooks % users)
}

fn recharge_key(k: u64) -> anyhow::Result<IdempotencyKey> {
    Ok(IdempotencyKey::parse(&format!("bench-recharge-{k}"))?)
}

fn invoice_uuid(recharge: RechargeId) -> String {
    recharge.uuid().to_string()
}

/// One signed `paid` webhook body per recharge, serialised, in the order they are sent.
fn sign_webhooks(
    users: &[UserId],
    currency: &Currency,
    webhooks: u64,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut bodies = Vec::with_capacity(webhooks as usize);
    for n in 0..webhooks {
        let user = users[(n % users.len() as u64) as usize];
        let recharge = RechargeId::derive(user, &recharge_key(n / users.len() as u64)?);
        let body = json!({
            "type": "payment",
            "uuid": invoice_uuid(recharge),
            "order_id": OrderId::new(user, recharge).to_string(),
            "amount": RECHARGE_AMOUNT,
            "payment_amount": RECHARGE_AMOUNT,
            "merchant_amount": RECHARGE_AMOUNT,
            "currency": currency.as_str(),
            "payer_currency": currency.as_str(),
            "payer_amount": RECHARGE_AMOUNT,
            "network": "ton",
            "status": "paid",
            "is_final": true,
            "txid": format!("bench-tx-{n}"),
            "additional_data": "starledger/bench",
        });
        bodies.push(serde_json::to_vec(&sign_webhook(body, HELEKET_KEY))?);
    }
    Ok(bodies)
}

/// Waits until the SQL projections show `position`.
async fn caught_up(state: &AppState, position: u64) -> anyhow::Result<()> {
    starledger_projections::runtime::wait_for(
        state.projections.clone(),
        position,
        Duration::from_secs(300),
    )
    .await
    .context("the projections did not catch up")
}

/// What one client connection saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    /// Answers that were what the scenario expects: `recorded` webhooks, balances.
    good: u64,
    errors: u64,
    samples: Vec<String>,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(what);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.good += other.good;
        self.errors += other.errors;
        for sample in other.samples {
            if self.samples.len() < ERROR_SAMPLES {
                self.samples.push(sample);
            }
        }
    }

    fn into_row(mut self, name: &str, requests: u64, elapsed: Duration) -> Row {
        for sample in &self.samples {
            eprintln!("{name}: unexpected answer: {sample}");
        }
        self.latencies.sort_unstable();
        Row {
            name: name.to_owned(),
            requests,
            elapsed,
            latencies: self.latencies,
            errors: self.errors,
            peak_rss_kb: peak_rss_kb(),
        }
    }
}

fn micros(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// One task per connection posts its queue of webhooks one after another, each as soon as
/// the previous answer is in or, with a `rate`, when it is due (webhook `n`, the `j`-th of
/// connection `k`, with `n = j * connections + k`, is due at `n / rate` seconds). Returns the
/// row and how many were answered `recorded`.
pub(crate) async fn post_webhooks(
    client: &reqwest::Client,
    url: &str,
    queues: Vec<Vec<Vec<u8>>>,
    rate: Option<f64>,
) -> (Row, u64) {
    let requests: u64 = queues.iter().map(|q| q.len() as u64).sum();
    let connections = queues.len() as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (k, queue) in queues.into_iter().enumerate() {
        let (client, url) = (client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally {
                latencies: Vec::with_capacity(queue.len()),
                ..Tally::default()
            };
            for (j, body) in queue.into_iter().enumerate() {
                let began = match rate {
                    Some(rate) => {
                        let n = j as u64 * connections + k as u64;
                        let due = started + Duration::from_secs_f64(n as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let answer = client
                    .post(&url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await;
                let outcome = match answer {
                    Ok(response) => {
                        let status = response.status();
                        response.bytes().await.map(|bytes| (status, bytes))
                    }
                    Err(error) => Err(error),
                };
                tally.latencies.push(micros(began));
                match outcome {
                    Ok((status, bytes)) => {
                        let result = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
                            v.get("result").and_then(Value::as_str).map(str::to_owned)
                        });
                        if status == reqwest::StatusCode::OK
                            && result.as_deref() == Some("recorded")
                        {
                            tally.good += 1;
                        } else {
                            tally.error(format!("{status} {}", String::from_utf8_lossy(&bytes)));
                        }
                    }
                    Err(error) => tally.error(error.to_string()),
                }
            }
            tally
        }));
    }
    let tally = gather(tasks).await;
    let elapsed = started.elapsed();
    let recorded = tally.good;
    let name = match rate {
        Some(rate) => format!("signed webhooks at {rate:.0}/s"),
        None => "signed webhooks → event → 200".to_owned(),
    };
    (tally.into_row(&name, requests, elapsed), recorded)
}

/// `connections` tasks read `requests` balances in total, round-robin over the users.
pub(crate) async fn read_balances(
    client: &reqwest::Client,
    authorization: &str,
    urls: &Arc<Vec<String>>,
    requests: u64,
    connections: u64,
    name: &str,
) -> Row {
    let issued = Arc::new(AtomicU64::new(0));
    let authorization = authorization.to_owned();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, urls, issued) = (client.clone(), urls.clone(), issued.clone());
        let authorization = authorization.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    return tally;
                }
                let url = &urls[(n % urls.len() as u64) as usize];
                let began = Instant::now();
                let answer = client
                    .get(url)
                    .header(AUTHORIZATION, &authorization)
                    .send()
                    .await;
                let outcome = match answer {
                    Ok(response) => {
                        let status = response.status();
                        response.bytes().await.map(|bytes| (status, bytes))
                    }
                    Err(error) => Err(error),
                };
                tally.latencies.push(micros(began));
                match outcome {
                    Ok((status, bytes)) if status == reqwest::StatusCode::OK => {
                        // A 200 must carry a balance, not some other JSON.
                        if serde_json::from_slice::<Value>(&bytes)
                            .is_ok_and(|v| v.get("available").is_some())
                        {
                            tally.good += 1;
                        } else {
                            tally.error(format!("200 {}", String::from_utf8_lossy(&bytes)));
                        }
                    }
                    Ok((status, bytes)) => {
                        tally.error(format!("{status} {}", String::from_utf8_lossy(&bytes)))
                    }
                    Err(error) => tally.error(error.to_string()),
                }
            }
        }));
    }
    let tally = gather(tasks).await;
    let row = tally.into_row(name, requests, started.elapsed());
    eprintln!(
        "{name}: {:.0} requests/s, {} errors",
        row.rate(),
        row.errors
    );
    row
}

async fn gather(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut total = Tally::default();
    for task in tasks {
        match task.await {
            Ok(tally) => total.merge(tally),
            Err(error) => total.error(format!("client task failed: {error}")),
        }
    }
    total
}

/// The log must verify, and hold exactly one `RechargeSettled` per webhook answered
/// `recorded` (the set-up appends none). Returns what is wrong, if anything.
async fn verify(state: &AppState, recorded: u64) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let report = starledger_projections::audit::verify(&state.events, None).await?;
    if !report.is_sound() {
        tracing::error!(findings = ?report.ledger.findings, "the log does not verify");
        problems.push(format!(
            "audit verify found {} problems in the log",
            report.ledger.findings.len()
        ));
    }
    let settled = count_events(&state.events, "RechargeSettled").await?;
    if settled != recorded {
        problems.push(format!(
            "{recorded} webhooks were answered `recorded` but the log holds {settled} RechargeSettled events"
        ));
    }
    eprintln!(
        "verified {} events: {}; {settled} RechargeSettled for {recorded} recorded webhooks",
        report.ledger.events,
        if report.is_sound() {
            "sound"
        } else {
            "NOT SOUND"
        }
    );
    Ok(problems)
}

async fn count_events(events: &Arc<dyn EventStore>, event_type: &str) -> anyhow::Result<u64> {
    let (mut after, mut count) = (0, 0);
    loop {
        let page = events.read_all(after, 10_000).await?;
        let Some(last) = page.last() else {
            return Ok(count);
        };
        after = last.position;
        count += page.iter().filter(|e| e.event_type == event_type).count() as u64;
    }
}

fn difference(before: &CacheStats, after: &CacheStats) -> CacheStats {
    CacheStats {
        l1_hits: after.l1_hits - before.l1_hits,
        l2_hits: after.l2_hits - before.l2_hits,
        loads: after.loads - before.loads,
        redis_errors: after.redis_errors - before.redis_errors,
        ..*after
    }
}

/// The process's peak resident set size (`VmHWM`), in kB.
fn peak_rss_kb() -> u64 {
    status_kb("VmHWM:")
}

/// A `kB` field of `/proc/self/status`; 0 where /proc is not there.
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The first three fields of `/proc/loadavg`: whether something else was using the cores.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// The command as it was typed, with any password in a URL replaced: the line is meant to be
/// pasted into reports.
pub(crate) fn command_line() -> String {
    std::env::args()
        .map(|arg| {
            let (flag, value) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (format!("{flag}="), value),
                _ => (String::new(), arg.as_str()),
            };
            match reqwest::Url::parse(value) {
                Ok(mut url) if url.password().is_some() => {
                    let _ = url.set_password(Some("***"));
                    format!("{flag}{url}")
                }
                _ => arg.clone(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
