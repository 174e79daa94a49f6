//! The overview: the log head and its pace, each projector and reactor with its lag, the
//! databases' health, the circuit breakers, the last hour's webhooks, the open purchases by
//! state and the recharges waiting for an operator. Each part that cannot be read says so
//! instead of failing the page: the overview is what an operator opens during an outage.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use chrono::Utc;
use maud::{html, Markup};
use starledger_projections::status::{recorded_since, status, ProjectorStatus};
use starledger_projections::store::StatusFilter;

use super::layout::{page, time, Section};
use super::texts::Texts;
use super::visit::{Refusal, Signed};
use crate::state::AppState;
use crate::webhook_tally::{minute_of, tally};

/// How long the overview waits for each database read.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The log's head and pace.
struct Log {
    head: u64,
    last_minute: Option<u64>,
    per_minute_last_hour: Option<u64>,
}

pub async fn overview(signed: Signed, state: web::Data<AppState>) -> Result<HttpResponse, Refusal> {
    let t = signed.texts();
    let now = Utc::now();
    let events = state.events.as_ref();
    let log = match tokio::time::timeout(PROBE_TIMEOUT, events.head()).await {
        Ok(Ok(head)) => {
            let head = head.position;
            let minute = recorded_since(events, head, now - chrono::Duration::minutes(1));
            let hour = recorded_since(events, head, now - chrono::Duration::hours(1));
            let (minute, hour) = tokio::join!(
                tokio::time::timeout(PROBE_TIMEOUT, minute),
                tokio::time::timeout(PROBE_TIMEOUT, hour)
            );
            Some(Log {
                head,
                last_minute: minute.ok().and_then(Result::ok),
                per_minute_last_hour: hour.ok().and_then(Result::ok).map(|n| n.div_ceil(60)),
            })
        }
        _ => None,
    };
    let projectors = tokio::time::timeout(PROBE_TIMEOUT, status(events, state.read.as_ref()))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|(_, projectors)| projectors);
    let open = count(&state, StatusFilter::OpenPurchases).await;
    let review = count(&state, StatusFilter::RechargesAwaitingDecision).await;
    let cache = state.queries.cache();
    let redis = match cache.mode() {
        "in-process" => t.not_configured,
        _ if cache.redis_healthy() => t.ok,
        _ => t.unavailable,
    };
    let mut breakers = vec![(state.provider.name(), state.provider.circuit_open())];
    for (provider, open) in starledger_outbound::breakers() {
        if !breakers.iter().any(|(p, _)| *p == provider) {
            breakers.push((provider, open));
        }
    }
    let webhooks = tally().last_hour(minute_of(now));

    let body = html! {
        div.cards {
            section.card #log {
                h2 { (t.event_log) }
                @match &log {
                    Some(log) => {
                        dl {
                            dt { (t.log_head) } dd #log-head { (log.head) }
                            dt { (t.events_last_minute) } dd #events-last-minute { (optional(t, log.last_minute)) }
                            dt { (t.events_per_minute_hour) } dd { (optional(t, log.per_minute_last_hour)) }
                        }
                    }
                    None => p.flash.error { (t.log_unavailable) }
                }
            }
            section.card #health {
                h2 { (t.health) }
                dl {
                    dt { (t.database) } dd data-health=(if log.is_some() { "ok" } else { "unavailable" }) {
                        (if log.is_some() { t.ok } else { t.unavailable })
                    }
                    dt { "Redis" } dd { (redis) }
                }
                h3 { (t.breakers) }
                table #breakers {
                    tbody {
                        @for (provider, open) in &breakers {
                            tr data-provider=(provider) {
                                td { (provider) }
                                td.state.open[*open] data-open=(open) { (if *open { t.breaker_open } else { t.breaker_closed }) }
                            }
                        }
                    }
                }
            }
            section.card #purchases-by-state {
                h2 { a href="/console/purchases" { (t.open_purchases) } }
                (counts(t, &open))
                h3 { (t.recharges_review) }
                (counts(t, &review))
            }
            section.card #webhooks {
                h2 { (t.webhooks_last_hour) }
                @if webhooks.is_empty() {
                    p.muted { (t.none) }
                } @else {
                    table { tbody {
                        @for (outcome, n) in &webhooks {
                            tr data-outcome=(outcome) { td { (outcome) } td.num { (n) } }
                        }
                    } }
                }
                p.hint { (t.this_instance) }
            }
        }
        section #projectors-section {
            h2 { (t.projectors) }
            (projector_table(t, projectors.as_deref()))
        }
    };
    Ok(page(&signed, Section::Overview, t.overview, body))
}

async fn count(state: &AppState, filter: StatusFilter) -> Option<Vec<(String, u64)>> {
    tokio::time::timeout(PROBE_TIMEOUT, state.read.count_in_status(&filter))
        .await
        .ok()
        .and_then(Result::ok)
}

fn optional(t: &Texts, n: Option<u64>) -> Markup {
    html! {
        @match n { Some(n) => (n), None => span.muted { (t.unavailable) } }
    }
}

fn counts(t: &Texts, counts: &Option<Vec<(String, u64)>>) -> Markup {
    html! {
        @match counts {
            None => p.flash.error { (t.unavailable) },
            Some(rows) if rows.is_empty() => p.muted data-count="0" { (t.none) },
            Some(rows) => table { tbody {
                @for (status, n) in rows {
                    tr data-status=(status) { td { (status) } td.num { (n) } }
                }
            } },
        }
    }
}

/// Each projector and reactor: checkpoint, lag, when it last moved.
pub fn projector_table(t: &Texts, projectors: Option<&[ProjectorStatus]>) -> Markup {
    html! {
        @match projectors {
            None => p.flash.error { (t.unavailable) },
            Some(projectors) => div.scroll { table.stack #projectors {
                thead { tr {
                    th { (t.name) } th.num { (t.checkpoint) } th.num { (t.lag_events) }
                    th.num { (t.lag_seconds) } th { (t.updated) }
                } }
                tbody {
                    @for p in projectors {
                        tr data-projector=(p.name) data-lag=(p.lag_events) {
                            td data-label=(t.name) { (p.name) }
                            td.num data-label=(t.checkpoint) { (p.checkpoint) }
                            td.num.lagging[p.lag_events > 0] data-label=(t.lag_events) { (p.lag_events) }
                            td.num data-label=(t.lag_seconds) { (format!("{:.1}", p.lag_seconds)) }
                            td data-label=(t.updated) { @match p.updated_at { Some(at) => (time(at)), None => span.muted { (t.never) } } }
                        }
                    }
                }
            } },
        }
    }
}
