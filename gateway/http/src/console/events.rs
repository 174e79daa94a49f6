//! The event log: browsed by position (newest page first) or by stream, each event with its
//! type, actor, time, payload, `prev_hash` and hash. An event's own page recomputes its hash
//! from its stored fields and checks its link to the event before it, in the page.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;
use starledger_ledger::chain::Hash;
use starledger_ledger::ids::UserId;
use starledger_ledger::store::RecordedEvent;

use super::layout::{page, short_hash, time, Section};
use super::texts::Texts;
use super::visit::{Refusal, Signed};
use crate::position::MAX_POSITION;
use crate::state::AppState;

/// Events per page.
const PAGE: usize = 50;

#[derive(Deserialize)]
pub struct LogQuery {
    /// Events after this position (or, with `stream`, this stream version).
    from: Option<u64>,
    /// `account-N`: only that account's events.
    stream: Option<String>,
}

/// The stream named in a query: only `account-N` with a valid user id.
fn stream_of(text: &str) -> Option<String> {
    let id = text.trim().strip_prefix("account-")?.parse::<i64>().ok()?;
    UserId::new(id)
        .ok()
        .map(|user| user.stream().as_str().to_owned())
}

pub async fn list(
    signed: Signed,
    state: web::Data<AppState>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, Refusal> {
    let t = signed.texts();
    let store_error = |e| signed.visit.api(crate::error::ApiError::from(e));
    let stream_text = query.stream.as_deref().map(str::trim).unwrap_or_default();
    let stream = match stream_text {
        "" => None,
        text => Some(stream_of(text).ok_or_else(|| {
            signed
                .visit
                .refuse(StatusCode::BAD_REQUEST, "invalid_stream", t.invalid_stream)
        })?),
    };
    let from = query.from.unwrap_or(0).min(MAX_POSITION);
    let head = state.events.head().await.map_err(store_error)?.position;
    let (events, links) = match &stream {
        Some(stream) => {
            let mut events = state
                .events
                .read_stream(stream, from)
                .await
                .map_err(store_error)?;
            let more = events.len() > PAGE;
            events.truncate(PAGE);
            let next = events.last().map(|e| e.stream_version).filter(|_| more);
            let links = html! {
                @if from > 0 { a href={ "/console/events?stream=" (stream) } { "← " (t.first) } }
                @if let Some(next) = next { a #next-page href={ "/console/events?stream=" (stream) "&from=" (next) } { (t.next) " →" } }
            };
            (events, links)
        }
        None => {
            // Without `from`, the newest page.
            let from = query
                .from
                .map_or(head.saturating_sub(PAGE as u64), |_| from);
            let events = state
                .events
                .read_all(from, PAGE)
                .await
                .map_err(store_error)?;
            let links = html! {
                @if from > 0 { a #prev-page href={ "/console/events?from=" (from.saturating_sub(PAGE as u64)) } { "← " (t.older) } }
                @if from + (PAGE as u64) < head { a #next-page href={ "/console/events?from=" (from + PAGE as u64) } { (t.newer) " →" } }
            };
            (events, links)
        }
    };
    let body = html! {
        form #event-filter method="get" action="/console/events" {
            div.inline {
                label { (t.after_position) " " input name="from" type="number" min="0" value=[query.from]; }
                label { (t.stream) " " input name="stream" type="text" placeholder="account-42" value=(stream_text); }
                button type="submit" { (t.show) }
            }
        }
        p.muted { (t.log_head) ": " (head) }
        (event_rows(t, &events, "events"))
        nav.paging { (links) }
    };
    Ok(page(&signed, Section::Events, t.event_log, body))
}

/// A table of events, each with a link that checks its hash.
pub fn event_rows(t: &Texts, events: &[RecordedEvent], id: &str) -> Markup {
    html! {
        @if events.is_empty() {
            p.muted { (t.none) }
        } @else {
            div.scroll { table.events #(id) {
                thead { tr {
                    th.num { (t.position) } th { (t.stream) } th { (t.kind) } th { (t.actor) }
                    th { (t.time) } th { "prev_hash" } th { (t.hash) } th { (t.payload) }
                } }
                tbody {
                    @for e in events {
                        tr data-position=(e.position) {
                            td.num { a href={ "/console/events/" (e.position) } { (e.position) } }
                            td { a href={ "/console/events?stream=" (e.stream_id) } { (e.stream_id) } " v" (e.stream_version) }
                            td { (e.event_type) " v" (e.schema_version) }
                            td { (actor(e)) }
                            td { (time(e.recorded_at)) }
                            td { (short_hash(&e.prev_hash.to_hex())) }
                            td {
                                (short_hash(&e.hash.to_hex()))
                                " " a.verify-hash href={ "/console/events/" (e.position) } { (t.verify_hash) }
                            }
                            td { details { summary { (t.show) } pre { (pretty(&e.data)) } } }
                        }
                    }
                }
            } }
        }
    }
}

fn actor(event: &RecordedEvent) -> String {
    event
        .metadata_value()
        .ok()
        .and_then(|m| m.get("actor").and_then(|a| a.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "—".to_owned())
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_owned())
}

/// One event, its hash recomputed and its link to the event before it checked.
pub async fn show(
    signed: Signed,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let t = signed.texts();
    let store_error = |e| signed.visit.api(crate::error::ApiError::from(e));
    let not_found = || {
        signed
            .visit
            .refuse(StatusCode::NOT_FOUND, "not_found", t.no_event)
    };
    let position = path
        .parse::<u64>()
        .ok()
        .filter(|p| (1..=MAX_POSITION).contains(p))
        .ok_or_else(not_found)?;
    // The event and the one before it, in one read.
    let read = state
        .events
        .read_all(position.saturating_sub(2), 2)
        .await
        .map_err(store_error)?;
    let event = read
        .iter()
        .find(|e| e.position == position)
        .ok_or_else(not_found)?;
    let previous_hash = match position {
        1 => Some(Hash::GENESIS),
        _ => read
            .iter()
            .find(|e| e.position == position - 1)
            .map(|e| e.hash),
    };
    let recomputed = event.compute_hash();
    let hash_ok = recomputed == event.hash;
    let link_ok = previous_hash == Some(event.prev_hash);
    let body = html! {
        div #event data-position=(position) {
            dl.facts {
                dt { (t.position) } dd { (event.position) }
                dt { (t.stream) } dd { a href={ "/console/events?stream=" (event.stream_id) } { (event.stream_id) } " v" (event.stream_version) }
                dt { (t.kind) } dd { (event.event_type) " v" (event.schema_version) }
                dt { "event_id" } dd { code { (event.event_id.0) } }
                dt { (t.actor) } dd { (actor(event)) }
                dt { (t.time) } dd { (event.recorded_at.to_rfc3339()) }
                dt { "prev_hash" } dd { code.hash { (event.prev_hash.to_hex()) } }
                dt { (t.hash) } dd { code.hash { (event.hash.to_hex()) } }
            }
            div #hash-check data-ok=(hash_ok && link_ok) .flash .ok[hash_ok && link_ok] .error[!(hash_ok && link_ok)] {
                p data-check="hash" data-ok=(hash_ok) {
                    (if hash_ok { t.hash_matches } else { t.hash_differs })
                    @if !hash_ok { " " code.hash { (recomputed.to_hex()) } }
                }
                p data-check="link" data-ok=(link_ok) {
                    (if link_ok { t.link_matches } else { t.link_differs })
                }
            }
            h2 { (t.payload) }
            pre { (pretty(&event.data)) }
            h2 { (t.metadata) }
            pre { (pretty(&event.metadata)) }
            nav.paging {
                @if position > 1 { a href={ "/console/events/" (position - 1) } { "← " (position - 1) } }
                a href={ "/console/events?from=" (position.saturating_sub(1)) } { (t.event_log) }
                a href={ "/console/events/" (position + 1) } { (position + 1) " →" }
            }
        }
    };
    Ok(page(
        &signed,
        Section::Events,
        &format!("{} #{position}", t.event),
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::stream_of;

    #[test]
    fn only_account_streams_are_browsed() {
        assert_eq!(stream_of("account-42").as_deref(), Some("account-42"));
        assert_eq!(stream_of(" account-42 ").as_deref(), Some("account-42"));
        for bad in [
            "account-0",
            "account--1",
            "account-x",
            "accounts-1",
            "42",
            "",
        ] {
            assert_eq!(stream_of(bad), None, "{bad}");
        }
    }
}
