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
//!
//! [`measure`] is also where `--url` hands over to [`super::remote`]. Depends on
//! [`super::remote`], [`super::load`] and [`super::scratch`].

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use sqlx::postgres::PgConnectOptions;
use starledger_gateway::config::server::ServerConfig;
use starledger_gateway::config::{Config, Env};
use starledger_gateway::serve::Application;
use starledger_http::state::AppState;
use starledger_ledger::account::AccountCommand;
use starledger_ledger::commands::{CommandContext, Ledger};
use starledger_ledger::events::{Actor, Invoice};
use starledger_ledger::ids::{IdempotencyKey, RechargeId, UserId};
use starledger_ledger::money::{Amount, Currency};
use starledger_ledger::store::EventStore;
use starledger_projections::cache::CacheStats;
use starledger_projections::storage;

use super::load::{
    balance_urls, load_average, paid_webhook, post_webhooks, read_balances, status_kb, warm_up,
    HttpBench, Report, FIRST_USER, RECHARGE_AMOUNT,
};
use super::scratch::{database_url, server_url, with_scratch_database};

/// The key the sandbox signs webhooks with; the bench signs its own with the same one.
pub(crate) const HELEKET_KEY: &str = "bench-heleket-api-key-0123456789abcdef";
/// The service-role API key the balance reads present.
pub(crate) const SERVICE_KEY: &str = "bench-service-key-0123456789";

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
        return super::remote::measure(options, url).await;
    }
    let url = server_url(options.database_url.clone(), config)?;
    with_scratch_database(&url, options.keep_database, |db| bench(options, &url, db)).await
}

/// Starts the app on the scratch database, runs both scenarios and stops the app, whatever
/// happened in between.
async fn bench(
    options: &HttpBench,
    server_url: &str,
    database: PgConnectOptions,
) -> anyhow::Result<Report> {
    let database_url = database_url(server_url, &database)?;
    // A prefix of its own: runs sharing one Redis never read each other's balances, and
    // the keys of this run can be removed afterwards.
    let prefix = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let app = start(options, &database_url, &prefix).await?;
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
pub(crate) async fn remove_cache_keys(url: &str, prefix: &str) -> anyhow::Result<u64> {
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

/// The environment `starledger serve` is started with, here or in a process of its own
/// (`bench all`): the scratch database, sandbox Heleket with our key, a service key, the
/// server options, and Redis under `cache_prefix` when given. `WEBHOOK_PORT` 0: any free port.
pub(crate) fn server_vars(
    options: &HttpBench,
    database_url: &str,
    cache_prefix: &str,
) -> BTreeMap<&'static str, String> {
    let mut vars = BTreeMap::from([
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
    vars
}

/// Builds the real application as `starledger serve` would, from an environment of our own.
async fn start(
    options: &HttpBench,
    database_url: &str,
    cache_prefix: &str,
) -> anyhow::Result<Application> {
    let vars = server_vars(options, database_url, cache_prefix);
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
    let users = set_up(&state.ledger, &state.shop.currency, options).await?;
    let bodies = sign_webhooks(&users, &state.shop.currency, options.webhooks)?;
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
    let balance_urls = balance_urls(base, &users);
    // Warm-up: every user's balance read once (fills the caches), then the timed reads.
    let authorization = format!("Bearer {SERVICE_KEY}");
    warm_up(
        &client,
        &authorization,
        &balance_urls,
        options.connections,
        &mut problems,
    )
    .await;
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
        bodies.push(paid_webhook(
            &invoice_uuid(recharge),
            user,
            recharge,
            currency.as_str(),
            &format!("bench-tx-{n}"),
            HELEKET_KEY,
        )?);
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
