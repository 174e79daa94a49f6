//! `starledger bench all`: every performance target of DESIGN.md in one run and one table.
//!
//! It runs the three benches in turn, each on a scratch database of its own and with its
//! own default sizes: `http` first (so the peak RSS it reports is the serving process's under
//! load, not the rebuild's later), then `ledger`, then `projections`. Each figure is then set
//! beside its target and marked met or missed. The table is Markdown, to paste into
//! docs/benchmarks.md as it is; the load average before and after says whether the machine
//! was quiet.
//!
//! A missed target does not fail the command (it is a figure, not an error); a bench whose
//! own checks fail (an answer that was not what it should be, a log that does not verify)
//! does.
//!
//! Depends on [`super::http`], [`super::ledger`], [`super::projections`], [`super::load`] and
//! [`super::scratch`].

use std::process::ExitCode;

use clap::{Args, FromArgMatches};

use super::http::measure;
use super::ledger::{
    run_scenarios, LedgerBench, Row as LedgerRow, HOT_ACCOUNT, MANY_ACCOUNTS, NAIVE,
};
use super::load::{command_line, load_average, HttpBench, Report};
use super::projections::{
    projections_bench, ProjectionRow, ProjectionsBench, REBUILD, VERIFY_INCREMENTAL, VERIFY_LOG,
};
use super::scratch::{server_url, with_scratch_database};
use starledger_gateway::config::Config;

#[derive(Args)]
pub struct AllBench {
    /// PostgreSQL server to create the scratch databases on (default: DATABASE_URL).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Redis for the HTTP bench's shared cache tier (default: in-process cache only).
    #[arg(long, env = "BENCH_REDIS_URL")]
    redis_url: Option<String>,
    /// A tenth of every size: checks that the whole run works in a minute or two. Its
    /// figures are not the ones to quote (warm-up dominates).
    #[arg(long)]
    quick: bool,
}

/// One DESIGN.md target and what the run measured for it.
struct Line {
    what: &'static str,
    measured: String,
    target: String,
    /// `None`: a figure shown beside the targets, with none of its own.
    met: Option<bool>,
}

fn line(what: &'static str, measured: String, target: &str, met: bool) -> Line {
    Line {
        what,
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

pub async fn run(all: AllBench, config: &Config) -> anyhow::Result<ExitCode> {
    let url = server_url(all.database_url.clone(), config)?;
    let load_before = load_average();
    let database = vec!["--database-url".to_owned(), url.clone()];
    let quick = |flags: &[(&str, &str)]| -> Vec<String> {
        let mut args = database.clone();
        if all.quick {
            for (flag, value) in flags {
                args.push((*flag).to_owned());
                args.push((*value).to_owned());
            }
        }
        args
    };

    let mut http_args = quick(&[
        ("--webhooks", "5000"),
        ("--reads", "20000"),
        ("--users", "200"),
    ]);
    if let Some(redis) = &all.redis_url {
        http_args.extend(["--redis-url".to_owned(), redis.clone()]);
    }
    let http: HttpBench = options("http", &http_args)?;
    eprintln!("bench all: http");
    let report = measure(&http, config).await?;

    let ledger: LedgerBench = options(
        "ledger",
        &quick(&[
            ("--commands", "10000"),
            ("--unbatched-commands", "500"),
            ("--accounts", "100"),
        ]),
    )?;
    eprintln!("bench all: ledger");
    let ledger_rows = with_scratch_database(&url, false, |db| run_scenarios(&ledger, db)).await?;

    let projections: ProjectionsBench = options("projections", &quick(&[("--events", "100000")]))?;
    eprintln!("bench all: projections");
    let projection_rows =
        with_scratch_database(&url, false, |db| projections_bench(&projections, db)).await?;

    let lines = judge(&ledger_rows, &report, &projection_rows)?;
    print(&lines, &report, &load_before);
    for problem in &report.problems {
        println!("FAILED: {problem}");
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Sets each figure beside its DESIGN.md target.
fn judge(
    ledger: &[LedgerRow],
    http: &Report,
    projections: &[ProjectionRow],
) -> anyhow::Result<Vec<Line>> {
    let ledger_rate = |name: &str| {
        ledger
            .iter()
            .find(|row| row.name == name)
            .map(LedgerRow::rate)
            .ok_or_else(|| anyhow::anyhow!("the ledger bench has no {name:?} row"))
    };
    let events_rate = |name: &str| {
        projections
            .iter()
            .find(|(row, _, _)| *row == name)
            .map(|(_, events, elapsed)| *events as f64 / elapsed.as_secs_f64())
            .ok_or_else(|| anyhow::anyhow!("the projections bench has no {name:?} row"))
    };
    let [webhooks, reads] = http.rows.as_slice() else {
        anyhow::bail!("the HTTP bench has {} rows, not 2", http.rows.len());
    };
    let many = ledger_rate(MANY_ACCOUNTS)?;
    let naive = ledger_rate(NAIVE)?;
    let hot = ledger_rate(HOT_ACCOUNT)?;
    let rebuild = events_rate(REBUILD)?;
    let verify = events_rate(VERIFY_LOG)?;
    let row = |name: &str| {
        projections
            .iter()
            .find(|(row, _, _)| *row == name)
            .ok_or_else(|| anyhow::anyhow!("the projections bench has no {name:?} row"))
    };
    let (_, whole_log, whole_time) = row(VERIFY_LOG)?;
    let (_, new_events, incremental_time) = row(VERIFY_INCREMENTAL)?;
    let peak_mb = http.rows.iter().map(|r| r.peak_rss_kb).max().unwrap_or(0) as f64 / 1024.0;
    let per_second = |rate: f64, unit: &str| format!("{} {unit}/s", thousands(rate));
    let latency = |row: &super::load::Row| {
        format!(
            "{} req/s (p50 {:.1} ms, p99 {:.1} ms)",
            thousands(row.rate()),
            row.percentile_ms(0.50),
            row.percentile_ms(0.99)
        )
    };
    Ok(vec![
        line(
            "ledger commands, many accounts (group commit)",
            per_second(many, "commands"),
            "≥ 20,000/s",
            many >= 20_000.0,
        ),
        line(
            "group commit vs. one transaction per command",
            format!(
                "{:.1}× ({} commands/s naive)",
                many / naive,
                thousands(naive)
            ),
            "≥ 10×",
            many >= 10.0 * naive,
        ),
        line(
            "ledger commands, one hot account",
            per_second(hot, "commands"),
            "≥ 5,000/s",
            hot >= 5_000.0,
        ),
        line(
            "signed webhook → durable event → 200",
            latency(webhooks),
            "≥ 5,000/s",
            webhooks.rate() >= 5_000.0,
        ),
        line(
            "webhook p99",
            format!("{:.1} ms", webhooks.percentile_ms(0.99)),
            "< 10 ms",
            webhooks.percentile_ms(0.99) < 10.0,
        ),
        line(
            "projection rebuild (users + balances + transactions)",
            per_second(rebuild, "events"),
            "≥ 200,000/s",
            rebuild >= 200_000.0,
        ),
        line(
            "audit verify (hash chain + trial balance)",
            per_second(verify, "events"),
            "≥ 1,000,000/s",
            verify >= 1_000_000.0,
        ),
        Line {
            what: "audit verify, incremental (1% new events after a checkpoint)",
            measured: format!(
                "{:.2} s for {} new events ({:.2} s for the whole {} before)",
                incremental_time.as_secs_f64(),
                thousands(*new_events as f64),
                whole_time.as_secs_f64(),
                thousands(*whole_log as f64)
            ),
            target: "— (none in DESIGN.md)".to_owned(),
            met: None,
        },
        line(
            "cached balance read over HTTP",
            latency(reads),
            "≥ 30,000/s",
            reads.rate() >= 30_000.0,
        ),
        line(
            "peak RSS under load (server + load generator)",
            format!("{peak_mb:.0} MB"),
            "< 200 MB",
            peak_mb < 200.0,
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
        "{cores} cores; the load generators run in this process beside the server. Load average \
         (1, 5, 15 min): {load_before} at the start, {} when the HTTP phases began, {} at the end.",
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
