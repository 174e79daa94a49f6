//! `/metrics` as Prometheus reads it: every metric has a `# HELP` line, and `promtool check
//! metrics` finds nothing to fix. promtool runs when it is on the PATH (Debian's `prometheus`
//! package; `.ci/run` installs it); under CI a missing promtool fails the test.

use std::io::Write;
use std::process::{Command, Stdio};

use metrics_exporter_prometheus::PrometheusBuilder;
use reqwest::StatusCode;
use starledger_ledger::testing::under_ci;
use starledger_telemetry::metrics_catalog::{self, Kind, ALL};

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_metric_the_app_shows_has_help_and_promtool_finds_nothing() {
    let app = spawn_app().await;
    // Something for the counters and histograms: commands, a signed webhook that credits a
    // recharge and one refused for its missing signature, HTTP requests of several routes.
    app.funded_user(7301, "5").await;
    let refused = app.webhook_raw("{}").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    app.readyz().await;

    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let exposition = response.text().await.unwrap();
    for name in [
        metrics_catalog::HTTP_REQUESTS,
        metrics_catalog::HTTP_REQUEST_SECONDS,
        metrics_catalog::WEBHOOKS,
        metrics_catalog::COMMANDS,
        metrics_catalog::COMMAND_SECONDS,
        metrics_catalog::LOG_HEAD_POSITION,
        metrics_catalog::REDIS_HEALTHY,
    ] {
        assert!(
            exposition.contains(&format!("# HELP {name} ")),
            "no help for {name} in:\n{exposition}"
        );
    }
    assert_every_type_has_help(&exposition);
    promtool_finds_nothing(&exposition);
    app.stop().await;
}

/// The app above cannot be made to record every metric (the fulfilment worker's, the bot's):
/// the whole catalog, recorded into a recorder of its own, renders with help and passes too.
#[test]
fn every_catalogued_metric_renders_with_help_and_promtool_finds_nothing() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        metrics_catalog::describe_all();
        for metric in ALL {
            match metric.kind {
                Kind::Counter => metrics::counter!(metric.name).increment(1),
                Kind::Gauge => metrics::gauge!(metric.name).set(1.0),
                Kind::Histogram => metrics::histogram!(metric.name).record(0.25),
            }
        }
    });
    let exposition = handle.render();
    for metric in ALL {
        assert!(
            exposition.contains(&format!("# HELP {} {}\n", metric.name, metric.help)),
            "no help for {} in:\n{exposition}",
            metric.name
        );
    }
    assert_every_type_has_help(&exposition);
    promtool_finds_nothing(&exposition);
}

/// Every `# TYPE name …` line has a `# HELP name …` line, whatever promtool would say.
fn assert_every_type_has_help(exposition: &str) {
    let named = |prefix: &str| -> Vec<String> {
        exposition
            .lines()
            .filter_map(|line| line.strip_prefix(prefix))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    };
    let typed = named("# TYPE ");
    let helped = named("# HELP ");
    assert!(!typed.is_empty(), "no metrics at all in:\n{exposition}");
    let missing: Vec<&String> = typed.iter().filter(|n| !helped.contains(n)).collect();
    assert!(missing.is_empty(), "metrics without # HELP: {missing:?}");
}

/// `promtool check metrics` reads the exposition from stdin and prints what it would fix.
fn promtool_finds_nothing(exposition: &str) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                !under_ci(),
                "promtool is not installed, and under CI this check may not be skipped \
                 (apt-get install prometheus, as .ci/run does)"
            );
            eprintln!("promtool is not installed: the promtool half of this test is skipped");
            return;
        }
        Err(error) => panic!("cannot run promtool: {error}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics ({}):\n{}{}\nof:\n{exposition}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
