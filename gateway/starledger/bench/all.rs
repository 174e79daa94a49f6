//! `starledger bench all`: every performance target of DESIGN.md (the table of issue 17) in
//! one run and one table, each figure beside its target and marked met or missed.
//!
//! Three phases, each on a scratch database of its own:
//!
//! 1. **projections** (first, so this process's peak RSS is the projections bench's alone):
//!    generate the log, time a rebuild and the verifies in this process, then run
//!    `starledger audit verify --full` and `starledger projections rebuild all` on the same
//!    database as processes of their own, for their peak RSS;
//! 2. **ledger**: purchases over many accounts at 16 and at 512 clients, one transaction per
//!    command, one hot account;
//! 3. **http**: `starledger migrate` and `starledger serve` as processes of their own; this
//!    process is the load generator (`bench http --url`): signed webhooks offered at a fixed
//!    5,000/s, cached balance reads, and reads of users with no money yet. The server's peak
//!    RSS is read when it has drained and exited.
//!
//! The table is Markdown, to paste into docs/benchmarks.md as it is; the load average before
//! and after says whether the machine was quiet. A missed target does not fail the command
//! (it is a figure, not an error); a bench whose own checks fail (an answer that was not what
//! it should be, a log that does not verify) does.
//!
//! Depends on [`super::http`], [`super::remote`], [`super::ledger`],
//! [`super::projections`], [`super::child`], [`super::load`] and [`super::scratch`].

use std::process::ExitCode;

use clap::{Args, FromArgMatches};

use super::child::{self, Finished};
use super::http::{remove_cache_keys, server_vars, HELEKET_KEY, SERVICE_KEY};
use super::ledger::{
    many_accounts, run_scenarios, LedgerBench, Row as LedgerRow, HOT_ACCOUNT, NAIVE,
};
use super::load::{command_line, load_average, peak_rss_kb, HttpBench, Report, Row as HttpRow};
use super::projections::{
    projections_bench, ProjectionRow, ProjectionsBench, REBUILD, VERIFY_INCREMENTAL, VERIFY_LOG,
    VERIFY_WITH_PROJECTIONS,
};
use super::remote;
use super::scratch::{database_url, server_url, with_scratch_database};
use starledger_gateway::config::Config;

/// The offered rate of signed webhooks, from DESIGN.md.
const WEBHOOK_RATE: f64 = 5_000.0;
/// The client counts of the ledger's many-accounts rows.
const FEW_CLIENTS: u64 = 16;
const MANY_CLIENTS: u64 = 512;
/// cqrs-es + postgres-es at 16 clients on this machine (issue 17's table): the library that
/// does one transaction per command, which the targets are set against.
const LIBRARY_RATE: f64 = 2_909.0;

#[derive(Args)]
pub struct AllBench {
    /// PostgreSQL server to create the scratch databases on (default: DATABASE_URL).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Redis for the server's shared cache tier (default: in-process cache only).
    #[arg(long, env = "BENCH_REDIS_URL")]
    redis_url: Option<String>,
    /// A tenth of every size: checks that the whole run works in a few minutes. Its figures
    /// are not the ones to quote (warm-up dominates).
    #[arg(long)]
    quick: bool,
}

/// One DESIGN.md target and what the run measured for it.
struct Line {
    what: String,
    measured: String,
    target: String,
    /// `None`: a figure shown beside the targets, with none of its own.
    met: Option<bool>,
}

fn line(what: impl Into<String>, measured: String, target: &str, met: bool) -> Line {
    Line {
        what: what.into(),
        measured,
        target: target.to_owned(),
        met: Some(met),
    }
}

/// Builds a sub-bench's options the way its own command line would, so `bench all` runs each
/// with exactly the defaults `starledger bench <name>` has.
fn options<T: Args + FromArgMatches>(name: &'static str, args: &[String]) -> anyhow::Result<T> {
    let command = T::augment_args(clap::Command::new(name));
    let matches = command
        .try_get_matches_from(std::iter::once(name.to_owned()).chain(args.iter().cloned()))?;
    Ok(T::from_arg_matches(&matches)?)
}

/// What the projections phase measured.
struct Projections {
    rows: Vec<ProjectionRow>,
    /// This process's peak RSS over the projections bench, in kB.
    bench_peak_kb: u64,
    verify_full: Finished,
    rebuild_all: Finished,
}

/// What the HTTP phase measured.
struct Http {
    report: Report,
    server: Finished,
}

pub async fn run(all: AllBench, config: &Config) -> anyhow::Result<ExitCode> {
    let url = server_url(all.database_url.clone(), config)?;
    let load_before = load_average();
    let database = vec!["--database-url".to_owned(), url.clone()];
    let with = |always: &[(&str, &str)], quick: &[(&str, &str)]| -> Vec<String> {
        let mut args = database.clone();
        let quick = if all.quick { quick } else { &[] };
        for (flag, value) in always.iter().chain(quick) {
            args.push((*flag).to_owned());
            args.push((*value).to_owned());
        }
        args
    };

    let projections: ProjectionsBench =
        options("projections", &with(&[], &[("--events", "100000")]))?;
    eprintln!("bench all: projections");
    let (bench, server) = (&projections, url.as_str());
    let projections = with_scratch_database(&url, false, |db| async move {
        let vars = cli_vars(database_url(server, &db)?);
        let rows = projections_bench(bench, db).await?;
        let bench_peak_kb = peak_rss_kb();
        eprintln!("bench all: starledger audit verify --full");
        let verify_full = child::run(&["audit", "verify", "--full"], &vars).await?;
        eprintln!("bench all: starledger projections rebuild all");
        let rebuild_all = child::run(&["projections", "rebuild", "all"], &vars).await?;
        anyhow::Ok(Projections {
            rows,
            bench_peak_kb,
            verify_full,
            rebuild_all,
        })
    })
    .await?;

    let clients = format!("{FEW_CLIENTS},{MANY_CLIENTS}");
    let ledger: LedgerBench = options(
        "ledger",
        &with(
            &[("--clients", &clients)],
            &[("--commands", "10000"), ("--unbatched-commands", "500")],
        ),
    )?;
    eprintln!("bench all: ledger");
    let ledger_rows = with_scratch_database(&url, false, |db| run_scenarios(&ledger, db)).await?;

    let rate = WEBHOOK_RATE.to_string();
    let mut http: HttpBench = options(
        "http",
        &with(
            &[("--webhook-rate", &rate)],
            &[
                ("--webhooks", "5000"),
                ("--reads", "20000"),
                ("--users", "200"),
            ],
        ),
    )?;
    http.redis_url = all.redis_url.clone();
    eprintln!("bench all: http, against `starledger serve` in a process of its own");
    let (bench, server) = (&mut http, url.as_str());
    let http = with_scratch_database(&url, false, |db| async move {
        served(bench, database_url(server, &db)?).await
    })
    .await?;

    let lines = judge(&ledger_rows, &http, &projections)?;
    print(&lines, &http.report, &load_before);
    for problem in &http.report.problems {
        println!("FAILED: {problem}");
    }
    Ok(if http.report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The environment of a `starledger` command run on the scratch database.
fn cli_vars(database_url: String) -> std::collections::BTreeMap<&'static str, String> {
    std::collections::BTreeMap::from([
        ("DATABASE_URL", database_url),
        ("RUST_LOG", "error".to_owned()),
    ])
}

/// Migrates the scratch database, starts `starledger serve` on it, measures it from here
/// (`bench http --url`), then stops it and reads its peak RSS.
async fn served(options: &mut HttpBench, database_url: String) -> anyhow::Result<Http> {
    child::run(&["migrate"], &cli_vars(database_url.clone())).await?;
    let prefix = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let mut vars = server_vars(options, &database_url, &prefix);
    let port = child::free_port()?;
    vars.insert("WEBHOOK_PORT", port.to_string());
    vars.insert("RUST_LOG", "error".to_owned());
    let base = format!("http://127.0.0.1:{port}");
    options.url = Some(base.clone());
    options.heleket_key = Some(HELEKET_KEY.to_owned());
    options.service_key = Some(SERVICE_KEY.to_owned());
    let server = child::Child::spawn(&["serve"], &vars)?;
    let measured = match server.wait_until_ready(&format!("{base}/readyz")).await {
        Ok(()) => remote::measure(options, &base).await,
        Err(error) => Err(error),
    };
    server.terminate()?;
    let stopped = server.wait().await?;
    if let Some(redis) = &options.redis_url {
        match remove_cache_keys(redis, &prefix).await {
            Ok(removed) => eprintln!("removed {removed} Redis keys under {prefix}:"),
            Err(error) => eprintln!("could not remove the Redis keys under {prefix}: {error:#}"),
        }
    }
    let report = measured?;
    anyhow::ensure!(
        stopped.code == Some(0),
        "starledger serve did not exit cleanly after SIGTERM: {:?}",
        stopped.code
    );
    Ok(Http {
        report,
        server: stopped,
    })
}

/// Sets each figure beside its DESIGN.md target.
fn judge(
    ledger: &[LedgerRow],
    http: &Http,
    projections: &Projections,
) -> anyhow::Result<Vec<Line>> {
    let ledger_row = |name: &str| {
        ledger
            .iter()
            .find(|row| row.name == name)
            .ok_or_else(|| anyhow::anyhow!("the ledger bench has no {name:?} row"))
    };
    let projection = |name: &str| {
        projections
            .rows
            .iter()
            .find(|(row, _, _)| *row == name)
            .ok_or_else(|| anyhow::anyhow!("the projections bench has no {name:?} row"))
    };
    let events_rate = |name: &str| {
        projection(name).map(|(_, events, elapsed)| *events as f64 / elapsed.as_secs_f64())
    };
    let [webhooks, reads, newcomers] = http.report.rows.as_slice() else {
        anyhow::bail!("the HTTP bench has {} rows, not 3", http.report.rows.len());
    };
    let few = ledger_row(&many_accounts(FEW_CLIENTS))?;
    let many = ledger_row(&many_accounts(MANY_CLIENTS))?;
    let naive = ledger_row(NAIVE)?;
    let hot = ledger_row(HOT_ACCOUNT)?;
    let commands = |row: &LedgerRow| {
        format!(
            "{} commands/s (p50 {:.1} ms, p99 {:.1} ms)",
            thousands(row.rate()),
            row.p50.as_secs_f64() * 1e3,
            row.p99.as_secs_f64() * 1e3
        )
    };
    let requests = |row: &HttpRow| {
        format!(
            "{} req/s (p50 {:.1} ms, p99 {:.1} ms)",
            thousands(row.rate()),
            row.percentile_ms(0.50),
            row.percentile_ms(0.99)
        )
    };
    let events = |rate: f64| format!("{} events/s", thousands(rate));
    let rebuild = events_rate(REBUILD)?;
    let verify = events_rate(VERIFY_LOG)?;
    let verify_all = events_rate(VERIFY_WITH_PROJECTIONS)?;
    let (_, whole_log, whole_time) = projection(VERIFY_LOG)?;
    let (_, new_events, incremental_time) = projection(VERIFY_INCREMENTAL)?;
    let megabytes = |kb: u64| kb as f64 / 1024.0;
    let command_rss = |finished: &Finished| {
        format!(
            "{:.0} MB ({:.1} s)",
            finished.peak_rss_mb(),
            finished.elapsed.as_secs_f64()
        )
    };
    let many_p99 = many.p99.as_secs_f64() * 1e3;
    Ok(vec![
        line(
            format!("purchases, many accounts, {FEW_CLIENTS} clients"),
            commands(few),
            "≥ 10,000/s and ≥ 3× the one-transaction-per-command library (2,909/s)",
            few.rate() >= 10_000.0 && few.rate() >= 3.0 * LIBRARY_RATE,
        ),
        line(
            format!("purchases, many accounts, {MANY_CLIENTS} clients"),
            commands(many),
            "≥ 50,000/s, p99 ≤ 30 ms",
            many.rate() >= 50_000.0 && many_p99 <= 30.0,
        ),
        line(
            "one transaction per command",
            commands(naive),
            "≥ the library's 2,909/s",
            naive.rate() >= LIBRARY_RATE,
        ),
        line(
            format!("group commit ({MANY_CLIENTS} clients) vs. one transaction per command"),
            format!("{:.1}×", many.rate() / naive.rate()),
            "≥ 10×",
            many.rate() >= 10.0 * naive.rate(),
        ),
        line(
            "one hot account",
            commands(hot),
            "≥ 5,000/s (32,776/s in issue 17: keep)",
            hot.rate() >= 5_000.0,
        ),
        line(
            "projection rebuild (users + balances + transactions)",
            events(rebuild),
            "≥ 200,000/s",
            rebuild >= 200_000.0,
        ),
        line(
            "audit verify (hash chain + trial balance)",
            events(verify),
            "≥ 1,000,000/s",
            verify >= 1_000_000.0,
        ),
        line(
            "audit verify with every projection",
            events(verify_all),
            "≥ 400,000/s",
            verify_all >= 400_000.0,
        ),
        Line {
            what: "audit verify, incremental (1% new events after a checkpoint)".to_owned(),
            measured: format!(
                "{:.2} s for {} new events ({:.2} s for the whole {} before)",
                incremental_time.as_secs_f64(),
                thousands(*new_events as f64),
                whole_time.as_secs_f64(),
                thousands(*whole_log as f64)
            ),
            target: "—".to_owned(),
            met: None,
        },
        line(
            format!(
                "signed webhook → event → 200, offered at a fixed {}/s from another process",
                thousands(WEBHOOK_RATE)
            ),
            requests(webhooks),
            "keeps up (≥ 98% of the offered rate), p99 < 10 ms",
            webhooks.rate() >= 0.98 * WEBHOOK_RATE && webhooks.percentile_ms(0.99) < 10.0,
        ),
        line(
            "cached balance reads, from another process",
            requests(reads),
            "≥ 50,000/s",
            reads.rate() >= 50_000.0,
        ),
        line(
            "balance reads of users with no money yet",
            requests(newcomers),
            "as fast as cached reads (≥ 90% of their rate)",
            newcomers.rate() >= 0.9 * reads.rate(),
        ),
        line(
            "peak RSS, `bench projections` (this process)",
            format!("{:.0} MB", megabytes(projections.bench_peak_kb)),
            "< 256 MB",
            megabytes(projections.bench_peak_kb) < 256.0,
        ),
        line(
            "peak RSS, `starledger audit verify --full`",
            command_rss(&projections.verify_full),
            "< 256 MB",
            projections.verify_full.peak_rss_mb() < 256.0,
        ),
        line(
            "peak RSS, `starledger projections rebuild all`",
            command_rss(&projections.rebuild_all),
            "< 256 MB",
            projections.rebuild_all.peak_rss_mb() < 256.0,
        ),
        line(
            "peak RSS, `starledger serve` through the HTTP phases",
            format!("{:.0} MB", http.server.peak_rss_mb()),
            "< 200 MB",
            http.server.peak_rss_mb() < 200.0,
        ),
    ])
}

fn print(lines: &[Line], http: &Report, load_before: &str) {
    println!("\n| DESIGN.md target | measured | target | |\n|---|---|---|---|");
    for line in lines {
        println!(
            "| {} | {} | {} | {} |",
            line.what,
            line.measured,
            line.target,
            match line.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "—",
            }
        );
    }
    let met = lines.iter().filter(|l| l.met == Some(true)).count();
    let targets = lines.iter().filter(|l| l.met.is_some()).count();
    println!("\n{met} of {targets} targets met.");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "{cores} cores, shared by PostgreSQL, the server process and this one (the load \
         generator). Load average (1, 5, 15 min): {load_before} at the start, {} when the HTTP \
         phases began, {} at the end.",
        http.load_before,
        load_average()
    );
    println!("command: {}", command_line());
}

/// `12345.6` as `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(28_320.4), "28,320");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn sub_bench_options_get_their_own_defaults() {
        let ledger: LedgerBench = options(
            "ledger",
            &["--database-url".into(), "postgres://x/y".into()],
        )
        .unwrap();
        assert_eq!(ledger.commands, 100_000);
        let quick: ProjectionsBench = options(
            "projections",
            &[
                "--database-url".into(),
                "postgres://x/y".into(),
                "--events".into(),
                "10".into(),
            ],
        )
        .unwrap();
        assert_eq!(quick.events, 10);
    }
}
