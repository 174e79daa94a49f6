//! The process's Prometheus recorder and its upkeep.
//!
//! The recorder keeps every histogram sample it has not folded into its summaries yet, and it
//! folds them only on upkeep. `/metrics` runs the upkeep when it is scraped; without a scraper
//! the samples would pile up for the life of the process (two per request, found as `serve`'s
//! resident set growing by about 20 bytes per balance read). [`start_upkeep`] runs it on a
//! timer as well, as the exporter's own HTTP listener does.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the histogram samples are folded without a scrape (the exporter's own default).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder (installed once; tests start many servers).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours stays unused
            // and /metrics shows only what it can.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// Runs `upkeep` every `interval` until `stopped` turns true (or its sender is gone).
pub fn start_upkeep(
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
    upkeep: impl Fn() + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; there is nothing to fold yet.
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => upkeep(),
                changed = stopped.changed() => {
                    if changed.is_err() || *stopped.borrow() {
                        return;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_upkeep_runs_on_its_timer_until_stopped() {
        let runs = Arc::new(AtomicU32::new(0));
        let (stop, stopped) = watch::channel(false);
        let counted = runs.clone();
        let task = start_upkeep(Duration::from_millis(5), stopped, move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        // Bounded wait for three runs (no assertion on how long they took).
        for _ in 0..2_000 {
            if runs.load(Ordering::SeqCst) >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(runs.load(Ordering::SeqCst) >= 3, "the upkeep did not run");

        stop.send(true).unwrap();
        task.await.unwrap();
        let after_stop = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            after_stop,
            "no upkeep after the stop"
        );
    }
}
