//! `starledger bench http --url URL`: a service that is already running, measured from this
//! process alone, through its public interface only.
//!
//! The target runs `HELEKET_MODE=sandbox`, so that we may sign webhooks with its Heleket key
//! (`BENCH_HELEKET_KEY`), and has a service key (`BENCH_SERVICE_KEY`). It may be one instance
//! or several behind a load balancer. The set-up goes through the API as any client's would:
//! register the users, ask one invoice per webhook to come (`POST /v1/users/{id}/recharges`),
//! note each balance. Then the timed phases of `bench http`: the signed `paid` webhooks,
//! cached balance reads, and (only here) balance reads of users who registered and have not
//! paid, which a wave of new bot users makes.
//!
//! Nothing here can read the server's log, so correctness is judged from outside: every
//! webhook must be answered `recorded`, and every user's balance must have grown by exactly
//! what its webhooks paid (polled until it shows, across instances). The server's log can be
//! checked afterwards with `starledger audit verify` on its database.
//!
//! Depends on [`super::load`] only; [`super::http`] chooses it for `--url`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::AUTHORIZATION;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use starledger_ledger::ids::{RechargeId, UserId};

use super::load::{
    balance_urls, load_average, paid_webhook, post_webhooks, read_balances, warm_up, HttpBench,
    Report, FIRST_USER, RECHARGE_AMOUNT,
};

/// How long every balance may take to show what the webhooks paid.
const VISIBLE_WITHIN: Duration = Duration::from_secs(60);

/// The credentials the target was started with.
struct Keys {
    heleket: String,
    authorization: String,
}

/// One pending invoice, and the webhook that pays it.
struct Pending {
    user: usize,
    body: Vec<u8>,
}

pub(crate) async fn measure(options: &HttpBench, url: &str) -> anyhow::Result<Report> {
    let keys = Keys {
        heleket: options
            .heleket_key
            .clone()
            .context("--url needs the target's Heleket key: set BENCH_HELEKET_KEY")?,
        authorization: format!(
            "Bearer {}",
            options
                .service_key
                .as_deref()
                .context("--url needs a service key of the target: set BENCH_SERVICE_KEY")?
        ),
    };
    let base = url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(options.connections as usize)
        .timeout(Duration::from_secs(30))
        .build()?;
    let ready = client.get(format!("{base}/readyz")).send().await;
    match ready {
        Ok(answer) if answer.status() == StatusCode::OK => {}
        Ok(answer) => bail!("{base}/readyz answered {}", answer.status()),
        Err(error) => bail!("cannot reach {base}: {error}"),
    }

    let started = Instant::now();
    let connections = options.connections as usize;
    let users = fresh_users(options.users)?;
    register_all(&client, &base, &keys, &users, connections).await?;
    let before: Vec<Decimal> = stream::iter(
        users
            .iter()
            .map(|user| balance(&client, &base, &keys, *user)),
    )
    .buffered(connections)
    .try_collect()
    .await?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let pending: Vec<Pending> = stream::iter((0..options.webhooks).map(|n| {
        let index = (n % options.users) as usize;
        let key = format!("bench-{tag}-{}", n / options.users);
        invoice(&client, &base, &keys, users[index], index, key)
    }))
    .buffer_unordered(connections)
    .try_collect()
    .await?;
    eprintln!(
        "set up {} users and {} pending invoices through {base} in {:.1} s",
        users.len(),
        pending.len(),
        started.elapsed().as_secs_f64()
    );

    let mut paid = vec![0u64; users.len()];
    let mut queues: Vec<Vec<Vec<u8>>> = (0..connections).map(|_| Vec::new()).collect();
    for (n, invoice) in pending.into_iter().enumerate() {
        paid[invoice.user] += 1;
        queues[n % connections].push(invoice.body);
    }
    let load_before = load_average();
    let mut problems = Vec::new();
    let webhook_url = format!("{base}/webhooks/heleket");
    let (row, recorded) = post_webhooks(&client, &webhook_url, queues, options.webhook_rate).await;
    eprintln!(
        "webhooks: {:.0} requests/s, {recorded} recorded, {} errors",
        row.rate(),
        row.errors
    );
    if recorded != options.webhooks {
        problems.push(format!(
            "{recorded} of {} webhooks were answered `recorded`",
            options.webhooks
        ));
    }
    let mut rows = vec![row];

    let amount: Decimal = RECHARGE_AMOUNT.parse()?;
    let expected: Vec<Decimal> = before
        .iter()
        .zip(&paid)
        .map(|(was, count)| was + amount * Decimal::from(*count))
        .collect();
    let wrong = balances_shown(&client, &base, &keys, &users, &expected).await?;
    if wrong > 0 {
        problems.push(format!(
            "{wrong} users' balances did not grow by what their recorded webhooks paid within {} s",
            VISIBLE_WITHIN.as_secs()
        ));
    }

    let funded_urls = balance_urls(&base, &users);
    warm_up(
        &client,
        &keys.authorization,
        &funded_urls,
        options.connections,
        &mut problems,
    )
    .await;
    rows.push(
        read_balances(
            &client,
            &keys.authorization,
            &funded_urls,
            options.reads,
            options.connections,
            "cached balance reads",
        )
        .await,
    );

    // Users who registered and have not paid: most bot users read their balance before they
    // ever pay, and that read must be as cheap as any cached one (issue 17, point 5).
    let newcomers = fresh_users(options.users)?;
    register_all(&client, &base, &keys, &newcomers, connections).await?;
    let newcomer_urls = balance_urls(&base, &newcomers);
    warm_up(
        &client,
        &keys.authorization,
        &newcomer_urls,
        options.connections,
        &mut problems,
    )
    .await;
    rows.push(
        read_balances(
            &client,
            &keys.authorization,
            &newcomer_urls,
            options.reads,
            options.connections,
            "balance reads, users with no money yet",
        )
        .await,
    );
    Ok(Report {
        load_before,
        rows,
        cache: None,
        problems,
    })
}

/// Users of this run only: a random block of Telegram-sized ids, so runs against one
/// database do not share accounts (balances are compared as growth anyway).
fn fresh_users(count: u64) -> anyhow::Result<Vec<UserId>> {
    let block = uuid::Uuid::new_v4().as_u128() % 1_000_000;
    let first = FIRST_USER + block as i64 * 10_000;
    Ok((0..count as i64)
        .map(|n| UserId::new(first + n))
        .collect::<Result<_, _>>()?)
}

async fn register_all(
    client: &reqwest::Client,
    base: &str,
    keys: &Keys,
    users: &[UserId],
    connections: usize,
) -> anyhow::Result<()> {
    stream::iter(users.iter().map(|user| register(client, base, keys, *user)))
        .buffer_unordered(connections)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn register(
    client: &reqwest::Client,
    base: &str,
    keys: &Keys,
    user: UserId,
) -> anyhow::Result<()> {
    let answer = client
        .post(format!("{base}/v1/users"))
        .header(AUTHORIZATION, &keys.authorization)
        .json(&json!({"user_id": user.get(), "language": "en"}))
        .send()
        .await?;
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    let known = body["error"]["code"] == "already_registered";
    if status.is_success() || known {
        Ok(())
    } else {
        bail!("registering user {user} answered {status} {body}")
    }
}

/// The user's available balance, as a decimal.
async fn balance(
    client: &reqwest::Client,
    base: &str,
    keys: &Keys,
    user: UserId,
) -> anyhow::Result<Decimal> {
    // Behind a load balancer the read may reach an instance that has not yet seen the
    // registration another one acknowledged (it shows it within 250 ms): ask again briefly.
    for _ in 0..40 {
        let answer = client
            .get(format!("{base}/v1/users/{user}/balance"))
            .header(AUTHORIZATION, &keys.authorization)
            .send()
            .await?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        match body["available"].as_str().map(str::parse::<Decimal>) {
            Some(Ok(available)) if status == StatusCode::OK => return Ok(available),
            _ if status == StatusCode::NOT_FOUND => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            _ => bail!("the balance of user {user} answered {status} {body}"),
        }
    }
    bail!("user {user} is still unknown 2 s after being registered")
}

/// Asks an invoice of `RECHARGE_AMOUNT` for `user` and signs the `paid` webhook for it.
async fn invoice(
    client: &reqwest::Client,
    base: &str,
    keys: &Keys,
    user: UserId,
    index: usize,
    key: String,
) -> anyhow::Result<Pending> {
    let answer = client
        .post(format!("{base}/v1/users/{user}/recharges"))
        .header(AUTHORIZATION, &keys.authorization)
        .header("Idempotency-Key", key)
        .json(&json!({"amount": RECHARGE_AMOUNT}))
        .send()
        .await?;
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    let (Some(recharge), Some(uuid), Some(currency)) = (
        body["recharge_id"].as_str(),
        body["invoice_uuid"].as_str(),
        body["currency"].as_str(),
    ) else {
        bail!("asking an invoice for user {user} answered {status} {body}");
    };
    let recharge = RechargeId::from_uuid(recharge.parse().context("a recharge id")?);
    Ok(Pending {
        user: index,
        body: paid_webhook(
            uuid,
            user,
            recharge,
            currency,
            &format!("bench-tx-{recharge}"),
            &keys.heleket,
        )?,
    })
}

/// Polls every balance until it shows `expected` or [`VISIBLE_WITHIN`] passes; returns how
/// many never did.
async fn balances_shown(
    client: &reqwest::Client,
    base: &str,
    keys: &Keys,
    users: &[UserId],
    expected: &[Decimal],
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + VISIBLE_WITHIN;
    let mut waiting: Vec<usize> = (0..users.len()).collect();
    loop {
        let shown: Vec<Decimal> = stream::iter(
            waiting
                .iter()
                .map(|&i| balance(client, base, keys, users[i])),
        )
        .buffered(16)
        .try_collect()
        .await?;
        waiting = waiting
            .into_iter()
            .zip(shown)
            .filter(|(i, shown)| *shown != expected[*i])
            .map(|(i, _)| i)
            .collect();
        if waiting.is_empty() || Instant::now() >= deadline {
            for &i in waiting.iter().take(5) {
                eprintln!(
                    "user {}: balance not {} after the webhooks",
                    users[i], expected[i]
                );
            }
            return Ok(waiting.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
