//! Every metric `/metrics` shows, listed once: its name, its kind, its unit and its help text.
//!
//! Code records a metric through the name constant here (`metrics::counter!(COMMANDS, …)`),
//! and [`describe_all`] gives each one the `# HELP` line Prometheus expects. A constant and
//! its description are one entry of the list below, so a constant cannot be added without
//! one; a test checks that no metric is recorded under a name that is not here.
//!
//! The names are an interface: alerts and dashboards select on them (docs/api.md, "Metrics",
//! docs/fulfilment.md). Rename one only together with those.

use metrics::Unit;

/// How a metric is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Rendered as a Prometheus summary (quantiles, `_sum`, `_count`).
    Histogram,
}

/// One metric of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The constant's own name (`COMMANDS`), for the test that finds the record sites.
    pub constant: &'static str,
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
}

/// Declares each metric's name constant and its [`Metric`] entry from one line.
macro_rules! catalog {
    ($($kind:ident $constant:ident = $name:literal, $unit:expr, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $constant: &str = $name;
        )*

        /// Every metric the gateway records.
        pub const ALL: &[Metric] = &[$(Metric {
            constant: stringify!($constant),
            name: $name,
            kind: Kind::$kind,
            unit: $unit,
            help: $help,
        }),*];
    };
}

catalog! {
    // The HTTP gateway (http/mod.rs, webhooks.rs, telegram.rs).
    Counter HTTP_REQUESTS = "starledger_http_requests_total", Some(Unit::Count),
        "HTTP requests answered, by method, route pattern and status.";
    Histogram HTTP_REQUEST_SECONDS = "starledger_http_request_seconds", Some(Unit::Seconds),
        "Time to answer an HTTP request, by method and route pattern.";
    Counter WEBHOOKS = "starledger_webhooks_total", Some(Unit::Count),
        "Webhooks received, by provider (heleket, telegram) and outcome.";

    // The ledger (commands.rs, /metrics).
    Counter COMMANDS = "starledger_commands_total", Some(Unit::Count),
        "Ledger commands executed, by command and outcome (recorded, replayed, a rejection's code, failed).";
    Histogram COMMAND_SECONDS = "starledger_command_seconds", Some(Unit::Seconds),
        "Time to execute a ledger command, by command.";
    Counter LEDGER_CONFLICTS = "starledger_ledger_conflicts_total", Some(Unit::Count),
        "Appends that lost an optimistic-concurrency race on an account's stream and were retried.";
    Gauge LEDGER_CACHED_ACCOUNTS = "starledger_ledger_cached_accounts", Some(Unit::Count),
        "Account states the ledger holds in memory.";
    Gauge LOG_HEAD_POSITION = "starledger_log_head_position", None,
        "Position of the newest event in the log, read at scrape time.";
    Gauge PROJECTION_LAG_EVENTS = "starledger_projection_lag_events", Some(Unit::Count),
        "Events the log holds that a projector has not applied yet, by projector.";
    Gauge REDIS_HEALTHY = "starledger_redis_healthy", None,
        "1 if the Redis read cache answers, 0 if reads fall back to the database.";

    // Auditors' reads (http/audit_source.rs).
    Counter AUDIT_READS = "starledger_audit_reads_total", Some(Unit::Count),
        "Auditors' reads (event stream, verification, balances at a moment), by the database that served them (standby, primary).";

    // Recharges (settlement.rs).
    Counter RECHARGE_ALERTS = "starledger_recharge_alerts_total", Some(Unit::Count),
        "Recharges that need an operator, by kind (needs_review, on_hold, reversed, debt, unconfirmed_webhook, orphaned).";

    // Calls to outside services (outbound.rs, fragment/client/).
    Counter EXTERNAL_REQUESTS = "starledger_external_requests_total", Some(Unit::Count),
        "Calls to outside APIs, by provider, call and final outcome.";
    Histogram EXTERNAL_REQUEST_SECONDS = "starledger_external_request_seconds", Some(Unit::Seconds),
        "Time of a call to an outside API, retries included, by provider and call.";
    Gauge CIRCUIT_BREAKER_OPEN = "starledger_circuit_breaker_open", None,
        "1 while the circuit breaker of a provider is open (calls refused without trying), else 0.";

    // Stars fulfilment (fragment/fulfilment/).
    Gauge FULFILMENT_OPEN_ORDERS = "starledger_fulfilment_open_orders", Some(Unit::Count),
        "Purchases the fulfilment worker is carrying through Fragment.";
    Counter FULFILMENT_PAYMENTS = "starledger_fulfilment_payments_total", Some(Unit::Count),
        "TON payments for Fragment orders signed, recorded and sent.";
    Counter FULFILMENT_OUTCOMES = "starledger_fulfilment_outcomes_total", Some(Unit::Count),
        "Purchases finished by the fulfilment worker, by outcome (completed, refunded) and reason.";
    Counter FULFILMENT_ALERTS = "starledger_fulfilment_alerts_total", Some(Unit::Count),
        "Fulfilment problems that need an operator, by kind.";
    Gauge FULFILMENT_PAUSED = "starledger_fulfilment_paused", None,
        "1 while orders are paused because the Fragment session expired, else 0.";
    Gauge FRAGMENT_SESSION_EXPIRES_IN_SECONDS = "starledger_fragment_session_expires_in_seconds", Some(Unit::Seconds),
        "Seconds until the Fragment session expires (FRAGMENT_SESSION_EXPIRES_AT); negative once it has.";
    Gauge FULFILMENT_WALLET_BALANCE_TON = "starledger_fulfilment_wallet_balance_ton", None,
        "Balance of the shop's TON wallet, in TON (for dashboards; decisions use exact nanotons).";
    Gauge FULFILMENT_WALLET_LOW = "starledger_fulfilment_wallet_low", None,
        "1 while the shop wallet holds less than FRAGMENT_WALLET_MIN_BALANCE, else 0.";

    // The Telegram bot (bot/).
    Counter BOT_RATE_LIMITED = "starledger_bot_rate_limited_total", Some(Unit::Count),
        "Bot updates refused by a per-user limit, by limit.";
    Counter BOT_NOTIFICATIONS = "starledger_bot_notifications_total", Some(Unit::Count),
        "Notifications the bot tried to send, by outcome (sent, unreachable, rejected, flood_control, failed).";
}

/// Gives every metric of [`ALL`] its help text and unit in the installed recorder. Metrics
/// that have not been recorded yet stay absent from `/metrics`; the description waits for them.
pub fn describe_all() {
    for metric in ALL {
        match (metric.kind, metric.unit) {
            (Kind::Counter, Some(unit)) => {
                metrics::describe_counter!(metric.name, unit, metric.help)
            }
            (Kind::Counter, None) => metrics::describe_counter!(metric.name, metric.help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(metric.name, unit, metric.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(metric.name, metric.help),
            (Kind::Histogram, Some(unit)) => {
                metrics::describe_histogram!(metric.name, unit, metric.help)
            }
            (Kind::Histogram, None) => metrics::describe_histogram!(metric.name, metric.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};

    use super::*;

    #[test]
    fn names_are_unique_and_counters_end_in_total() {
        let mut seen = HashSet::new();
        for metric in ALL {
            assert!(seen.insert(metric.name), "{} listed twice", metric.name);
            assert!(metric.name.starts_with("starledger_"), "{}", metric.name);
            assert_eq!(
                metric.kind == Kind::Counter,
                metric.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                metric.name
            );
            assert!(
                !metric.help.trim().is_empty(),
                "{} has no help",
                metric.name
            );
        }
    }

    fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }

    /// Every `counter!(`, `gauge!(` and `histogram!(` in the gateway's crates' and the other
    /// crates' sources names a metric of this catalog: by its constant, or (in files not yet moved to
    /// the constants) by a string the catalog lists. A name outside it would have no help text.
    #[test]
    fn every_recorded_metric_is_in_the_catalog() {
        let constants: HashSet<&str> = ALL.iter().map(|metric| metric.constant).collect();
        let names: HashSet<&str> = ALL.iter().map(|metric| metric.name).collect();
        // Every crate of the gateway (the folder this crate is in), the bench binary, and
        // the projections and the ledger.
        let gateway = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut sources = vec![
            gateway.join("starledger/bench"),
            gateway.join("../projections/src"),
            gateway.join("../ledger/src"),
        ];
        for entry in std::fs::read_dir(&gateway).unwrap() {
            let source = entry.unwrap().path().join("src");
            if source.is_dir() {
                sources.push(source);
            }
        }
        assert!(
            sources.len() > 10,
            "found only {sources:?}: is the scan broken?"
        );
        let mut files = Vec::new();
        for source in sources {
            rust_files(&source, &mut files);
        }
        let mut sites = 0;
        let mut strays = Vec::new();
        // This file names the macros without recording anything.
        files.retain(|file| !file.ends_with("metrics_catalog.rs"));
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(macro_name) {
                    // `describe_counter!(` is the description, not a record site.
                    if text[..at].ends_with("describe_") {
                        continue;
                    }
                    sites += 1;
                    let argument = text[at + macro_name.len()..].trim_start();
                    let known = match argument.strip_prefix('"') {
                        Some(literal) => names.contains(literal.split('"').next().unwrap()),
                        None => {
                            let path: String = argument
                                .chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                                .collect();
                            constants.contains(path.rsplit("::").next().unwrap())
                        }
                    };
                    if !known {
                        let line = text[..at].lines().count();
                        strays.push(format!("{}:{line}", file.display()));
                    }
                }
            }
        }
        assert!(
            sites > 20,
            "found only {sites} record sites: is the scan broken?"
        );
        assert!(
            strays.is_empty(),
            "metrics recorded under a name metrics_catalog.rs does not list: {strays:#?}"
        );
    }
}
