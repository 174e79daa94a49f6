//! Users: found by id or @username; a user's profile, balance (available, reserved, total,
//! debt), history a page at a time, their balance at a chosen moment (replayed from their
//! account's stream alone), and their events with the hashes that chain them.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;
use starledger_ledger::ids::{UserId, Username};
use starledger_projections::audit::user_balance_at;
use starledger_projections::rows::BalanceRow;

use super::events::event_rows;
use super::layout::{money, page, page_with_status, parse_moment, time, Section};
use super::texts::Texts;
use super::visit::{see_other, Refusal, Signed};
use crate::state::AppState;

/// History rows per page.
const HISTORY_PAGE: u32 = 20;
/// The user's newest events shown (the event log, filtered by stream, has them all).
const EVENTS_SHOWN: usize = 50;
/// Most users one name can list.
const NAMED: u32 = 20;

#[derive(Deserialize)]
pub struct FindQuery {
    q: Option<String>,
}

fn find_form(t: &Texts, q: &str) -> Markup {
    html! {
        form #find-user method="get" action="/console/users" {
            label for="q" { (t.find_user) }
            div.inline {
                input #q name="q" type="search" value=(q) placeholder="42 / @username" required autofocus;
                button type="submit" { (t.find) }
            }
        }
    }
}

pub async fn find(
    signed: Signed,
    state: web::Data<AppState>,
    query: web::Query<FindQuery>,
) -> Result<HttpResponse, Refusal> {
    let t = signed.texts();
    let q = query.q.as_deref().map(str::trim).unwrap_or_default();
    if q.is_empty() {
        return Ok(page(&signed, Section::Users, t.users, find_form(t, "")));
    }
    if let Ok(id) = q.parse::<i64>() {
        if UserId::new(id).is_ok() {
            return Ok(see_other(&format!("/console/users/{id}")));
        }
    }
    let found = match Username::parse(q) {
        Ok(name) => state
            .read
            .users_named(name.as_str(), NAMED)
            .await
            .map_err(|e| signed.visit.api(e.into()))?,
        Err(_) => Vec::new(),
    };
    if let [one] = found.as_slice() {
        return Ok(see_other(&format!("/console/users/{}", one.user_id)));
    }
    let body = html! {
        (find_form(t, q))
        @if found.is_empty() {
            p #flash .flash.error data-code="unknown_user" { (t.no_user) }
        } @else {
            p { (t.several_users) }
            ul #found-users {
                @for user in &found {
                    li { a href={ "/console/users/" (user.user_id) } { (user.user_id) } " @" (user.username.as_deref().unwrap_or("")) }
                }
            }
        }
    };
    let status = if found.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    Ok(page_with_status(
        &signed,
        Section::Users,
        t.users,
        body,
        status,
    ))
}

#[derive(Deserialize)]
pub struct UserQuery {
    /// History: the page before this cursor.
    before: Option<u64>,
    /// The moment to show the balance at.
    at: Option<String>,
}

pub async fn show(
    signed: Signed,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<UserQuery>,
) -> Result<HttpResponse, Refusal> {
    let t = signed.texts();
    let unknown = || {
        signed
            .visit
            .refuse(StatusCode::NOT_FOUND, "unknown_user", t.no_user)
    };
    let id = path
        .parse::<i64>()
        .ok()
        .and_then(|id| UserId::new(id).ok())
        .ok_or_else(unknown)?;
    let api = |e: starledger_projections::store::ReadError| signed.visit.api(e.into());
    let user = state
        .read
        .user(id.get())
        .await
        .map_err(api)?
        .ok_or_else(unknown)?;
    let balance = state.read.balance(id.get()).await.map_err(api)?;
    let history = state
        .read
        .history(id.get(), query.before, HISTORY_PAGE)
        .await
        .map_err(api)?;
    let stream = id.stream();
    let mut events = state
        .events
        .read_stream(stream.as_str(), 0)
        .await
        .map_err(|e| signed.visit.api(e.into()))?;
    let total_events = events.len();
    events.drain(..total_events.saturating_sub(EVENTS_SHOWN));
    events.reverse();
    let at_text = query.at.as_deref().map(str::trim).unwrap_or_default();
    let balance_at = match parse_moment(at_text) {
        Some(at) => Some(Ok((
            at,
            user_balance_at(state.events.as_ref(), id, at)
                .await
                .map_err(|e| signed.visit.api(e.into()))?,
        ))),
        None if !at_text.is_empty() => Some(Err(())),
        None => None,
    };
    let currency = balance
        .as_ref()
        .map_or(user.currency.as_str(), |b| b.currency.as_str());
    let body = html! {
        (find_form(t, ""))
        div.cards {
            section.card #profile {
                h2 { (t.profile) }
                dl {
                    dt { (t.user_id) } dd #user-id { (user.user_id) }
                    dt { (t.username) } dd #username { @if let Some(name) = &user.username { "@" (name) } @else { "—" } }
                    dt { (t.language) } dd { (user.language.as_deref().unwrap_or("—")) }
                    dt { (t.currency) } dd { (user.currency) }
                    dt { (t.registered) } dd { (time(user.registered_at)) }
                }
            }
            section.card #balance {
                h2 { (t.balance) }
                (balance_list(t, balance.as_ref(), currency, ""))
            }
            section.card {
                h2 { (t.balance_at) }
                form #balance-at method="get" action={ "/console/users/" (user.user_id) } {
                    label for="at" { (t.moment) }
                    div.inline {
                        input #at name="at" type="text" value=(at_text) placeholder="2026-12-01T00:00:00Z" required;
                        button type="submit" { (t.show) }
                    }
                }
                @match &balance_at {
                    Some(Ok((at, row))) => div #balance-at-result data-total=(money(row.as_ref().map_or(rust_decimal::Decimal::ZERO, |b| b.total()))) {
                        p.muted { (time(*at)) }
                        (balance_list(t, row.as_ref(), currency, "at-"))
                    },
                    Some(Err(())) => p #flash .flash.error data-code="invalid_time" { (t.invalid_moment) },
                    None => {},
                }
            }
        }
        h2 { (t.history) }
        @if history.transactions.is_empty() {
            p.muted { (t.none) }
        } @else {
            div.scroll { table #history {
                thead { tr {
                    th { (t.created) } th { (t.kind) } th { (t.status) } th.num { (t.amount) }
                    th { (t.description) } th { "id" }
                } }
                tbody {
                    @for row in &history.transactions {
                        tr data-transaction=(row.id) {
                            td { (time(row.created_at)) }
                            td { (row.kind.as_str()) }
                            td { span.status data-status=(row.status) { (row.status) } }
                            td.num { (money(row.amount)) " " (row.currency) }
                            td { (row.description.as_deref().unwrap_or("")) }
                            td { code { (row.id) } }
                        }
                    }
                }
            } }
        }
        nav.paging {
            @if query.before.is_some() { a href={ "/console/users/" (user.user_id) } { "← " (t.newest) } }
            @if let Some(next) = history.next_cursor {
                a #older href={ "/console/users/" (user.user_id) "?before=" (next) } { (t.older) " →" }
            }
        }
        h2 { (t.user_events) " (" (total_events) ")" }
        p { a href={ "/console/events?stream=" (stream.as_str()) } { (t.all_in_event_log) } }
        (event_rows(t, &events, "user-events"))
    };
    Ok(page(&signed, Section::Users, t.user_title, body))
}

/// Available, reserved, total and debt; zero when there is no balance yet.
fn balance_list(t: &Texts, row: Option<&BalanceRow>, currency: &str, prefix: &str) -> Markup {
    let zero = rust_decimal::Decimal::ZERO;
    let field = |f: fn(&BalanceRow) -> rust_decimal::Decimal| money(row.map_or(zero, f));
    html! {
        dl.balance {
            dt { (t.available) } dd.num #{ (prefix) "balance-available" } { (field(|b| b.available)) }
            dt { (t.reserved) } dd.num #{ (prefix) "balance-reserved" } { (field(|b| b.reserved)) }
            dt { (t.total) } dd.num #{ (prefix) "balance-total" } { (field(|b| b.total())) }
            dt { (t.debt) } dd.num { (field(|b| b.debt)) }
            dt { (t.currency) } dd { (currency) }
        }
    }
}
