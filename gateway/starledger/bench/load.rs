//! The HTTP load generator and what it reports, shared by the in-process bench
//! ([`super::http`]) and the one against a running server ([`super::remote`]): the
//! [`HttpBench`] options, signed webhooks and balance reads driven over many connections,
//! the [`Report`] and its [`Row`]s, and the `/proc` figures printed beside them.
//!
//! Depends on nothing else in `bench` but the reads' own client ([`super::reader`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};
use starledger_heleket::sign::sign_webhook;
use starledger_heleket::OrderId;
use starledger_ledger::ids::{RechargeId, UserId};
use starledger_projections::cache::CacheStats;

use super::reader::{Reader, Target};

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
    pub(crate) database_url: Option<String>,
    /// Redis for the shared cache tier (default: in-process cache only).
    #[arg(long, env = "BENCH_REDIS_URL")]
    pub(crate) redis_url: Option<String>,
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
    pub(crate) pool_size: u32,
    /// Keep the scratch database (its name is printed) to inspect it afterwards.
    #[arg(long)]
    pub(crate) keep_database: bool,
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

    pub(crate) fn print(&self, options: &HttpBench) {
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

/// The status and body of a sent request, or why there is none.
async fn read_answer(
    sent: reqwest::Result<reqwest::Response>,
) -> reqwest::Result<(reqwest::StatusCode, Bytes)> {
    let response = sent?;
    let status = response.status();
    Ok((status, response.bytes().await?))
}

fn micros(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// The signed, serialised `paid` webhook for one invoice of `RECHARGE_AMOUNT`, as Heleket
/// would send it: what both the local and the `--url` bench post.
pub(crate) fn paid_webhook(
    invoice_uuid: &str,
    user: UserId,
    recharge: RechargeId,
    currency: &str,
    txid: &str,
    heleket_key: &str,
) -> serde_json::Result<Vec<u8>> {
    let body = json!({
        "type": "payment",
        "uuid": invoice_uuid,
        "order_id": OrderId::new(user, recharge).to_string(),
        "amount": RECHARGE_AMOUNT,
        "payment_amount": RECHARGE_AMOUNT,
        "merchant_amount": RECHARGE_AMOUNT,
        "currency": currency,
        "payer_currency": currency,
        "payer_amount": RECHARGE_AMOUNT,
        "network": "ton",
        "status": "paid",
        "is_final": true,
        "txid": txid,
        "additional_data": "starledger/bench",
    });
    serde_json::to_vec(&sign_webhook(body, heleket_key))
}

/// The balance URL of every user, which the read phases go round.
pub(crate) fn balance_urls(base: &str, users: &[UserId]) -> Arc<Vec<String>> {
    Arc::new(
        users
            .iter()
            .map(|user| format!("{base}/v1/users/{}/balance", user.get()))
            .collect(),
    )
}

/// Reads every user's balance once, so the timed reads find them cached; a failed read is a
/// problem of the run.
pub(crate) async fn warm_up(
    client: &reqwest::Client,
    authorization: &str,
    urls: &Arc<Vec<String>>,
    connections: u64,
    problems: &mut Vec<String>,
) {
    let warm = read_balances(
        client,
        authorization,
        urls,
        urls.len() as u64,
        connections,
        "balance reads (warm-up)",
    )
    .await;
    if warm.errors > 0 {
        problems.push(format!("{} warm-up reads failed", warm.errors));
    }
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
                let outcome = read_answer(answer).await;
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
    // Plain HTTP goes through the reads' own client (see `reader`); TLS through reqwest.
    let targets: Option<Vec<Target>> = urls.iter().map(|url| Target::parse(url)).collect();
    let targets = targets.map(Arc::new);
    let issued = Arc::new(AtomicU64::new(0));
    let authorization = authorization.to_owned();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, urls, issued) = (client.clone(), urls.clone(), issued.clone());
        let (authorization, targets) = (authorization.clone(), targets.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut reader = Reader::default();
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    return tally;
                }
                let index = (n % urls.len() as u64) as usize;
                let began = Instant::now();
                let outcome = match &targets {
                    Some(targets) => reader
                        .get(&targets[index], &authorization)
                        .await
                        .map_err(|error| format!("{error:#}")),
                    None => {
                        let sent = client
                            .get(&urls[index])
                            .header(AUTHORIZATION, &authorization)
                            .send()
                            .await;
                        read_answer(sent)
                            .await
                            .map(|(status, body)| (status.as_u16(), body))
                            .map_err(|error| error.to_string())
                    }
                };
                tally.latencies.push(micros(began));
                match outcome {
                    Ok((200, bytes)) => {
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
                    Err(error) => tally.error(error),
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

/// The process's peak resident set size (`VmHWM`), in kB.
pub(crate) fn peak_rss_kb() -> u64 {
    status_kb("VmHWM:")
}

/// A `kB` field of `/proc/self/status`; 0 where /proc is not there.
pub(crate) fn status_kb(field: &str) -> u64 {
    status_file_kb("/proc/self/status", field).unwrap_or(0)
}

/// A `kB` field (`VmHWM:`, say) of a `/proc/<pid>/status` file; `None` where the file or the
/// field is not there (an ended process keeps its file without the memory fields).
pub(crate) fn status_file_kb(path: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok().and_then(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
    })
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
