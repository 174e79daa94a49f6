//! Projections: each projector's checkpoint and lag, and a blue/green rebuild started and
//! followed until its swap. The rebuild is the one the admin API starts
//! (`crate::admin::start_rebuild_job`); the page's script follows it through
//! `/console/api/rebuild` and updates the progress in place; without script, a link reloads.

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;
use starledger_projections::model::Table;
use starledger_projections::status::status;

use super::layout::{csrf, page, time, Section};
use super::overview::projector_table;
use super::session::Flash;
use super::texts::Texts;
use super::visit::{Refusal, Signed};
use crate::admin::{start_rebuild_job, RebuildStatus};
use crate::state::AppState;

pub async fn show(signed: Signed, state: web::Data<AppState>) -> Result<HttpResponse, Refusal> {
    let t = signed.texts();
    let projectors = status(state.events.as_ref(), state.read.as_ref())
        .await
        .ok()
        .map(|(_, p)| p);
    let rebuild = state.rebuilds.get();
    let body = html! {
        (projector_table(t, projectors.as_deref()))
        h2 { (t.rebuild) }
        p.hint { (t.rebuild_hint) }
        @if signed.is_admin() {
            form #rebuild method="post" action="/console/projections/rebuild" {
                (csrf(&signed))
                label for="projection" { (t.rebuild_which) }
                select #projection name="projection" {
                    option value="all" selected { (t.all_tables) }
                    @for table in Table::ALL { option value=(table.name()) { (table.name()) } }
                }
                button type="submit" disabled[rebuild.as_ref().is_some_and(|r| r.state == "running")] { (t.start_rebuild) }
            }
        } @else {
            p.muted #read-only { (t.read_only) }
        }
        @if let Some(rebuild) = &rebuild { (rebuild_status(t, rebuild)) }
    };
    Ok(page(&signed, Section::Projections, t.projections, body))
}

/// The last rebuild: what it rebuilds, its progress, how it ended. The script replaces the
/// parts marked `data-field` as the JSON at `data-poll` changes.
fn rebuild_status(t: &Texts, r: &RebuildStatus) -> Markup {
    html! {
        section #rebuild-status .job data-state=(r.state) data-poll="/console/api/rebuild" {
            h3 { (t.last_rebuild) ": " span data-field="tables" { (r.tables.join(", ")) } }
            p {
                span.status data-field="state" data-status=(r.state) { (r.state) }
                " · " (t.started_by) " " (r.started_by) " · " (time(r.started_at))
            }
            progress #rebuild-progress max=(r.head.max(1)) value=(r.position.min(r.head)) {}
            p {
                span data-field="position" { (r.position) } " / " span data-field="head" { (r.head) }
                " " (t.events)
            }
            @if let Some(events) = r.events { p { (t.events_replayed) ": " (events) } }
            @if let Some(error) = &r.error { p.flash.error data-field="error" { (error) } }
            @if r.state == "running" { p.noscript { a href="/console/projections" { (t.refresh) } } }
        }
    }
}

#[derive(Deserialize)]
pub struct RebuildForm {
    csrf: Option<String>,
    projection: Option<String>,
}

pub async fn rebuild(
    signed: Signed,
    state: web::Data<AppState>,
    form: web::Form<RebuildForm>,
) -> Result<HttpResponse, Refusal> {
    signed.may_act(form.csrf.as_deref())?;
    let t = signed.texts();
    let tables = match form.projection.as_deref().unwrap_or("all") {
        "all" => Some(Table::ALL.to_vec()),
        name => Table::parse(name).map(|table| vec![table]),
    };
    let flash = match tables {
        None => Flash::refused("unknown_projection", t.unknown_projection),
        Some(tables) => {
            match start_rebuild_job(&state, &signed.session.caller.name, tables).await {
                Ok(_) => Flash::done("rebuild_started", t.rebuild_started),
                Err(error) => Flash::from_error(&error),
            }
        }
    };
    Ok(signed.redirect_with(&state, "/console/projections", flash))
}
