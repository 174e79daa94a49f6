//! Audit: start a verification and read its report (hash chain, postings, trial balance,
//! each table against the replay, with the differences listed); every balance at a moment, a
//! page at a time; a range of the log exported as NDJSON. The jobs are the auditors' API jobs
//! (`crate::audit_jobs`), one at a time per instance; auditors and admins may run them (they
//! change nothing). The page's script follows a running job through `/console/api/audit-job`.

use actix_web::http::{header, StatusCode};
use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use maud::{html, Markup};
use serde::Deserialize;
use starledger_projections::audit::export_line;

use super::layout::{csrf, page, parse_moment, time, Section};
use super::session::Flash;
use super::texts::Texts;
use super::visit::{Refusal, Signed};
use crate::audit_jobs::{begin, AuditJob, AuditRequest, AuditResult, JobState, VerifyAnswer};
use crate::position::MAX_POSITION;
use crate::state::AppState;

/// Balances on one page of the result.
const BALANCES_PAGE: usize = 50;
/// Events read per page of an export.
const EXPORT_PAGE: usize = 1_000;

#[derive(Deserialize)]
pub struct AuditQuery {
    cursor: Option<u64>,
}

pub async fn show(
    signed: Signed,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, Refusal> {
    let t = signed.texts();
    let job = state.audit_jobs.get();
    let balances = match job.as_ref().and_then(|j| j.result.clone()) {
        Some(AuditResult::Balances(spool)) => {
            let cursor = query.cursor.unwrap_or(0).min(spool.rows());
            let reader = spool.clone();
            let rows = web::block(move || reader.page(cursor, BALANCES_PAGE))
                .await
                .ok()
                .and_then(Result::ok);
            Some((cursor, spool.rows(), rows))
        }
        _ => None,
    };
    let head = state.events.head().await.map(|h| h.position).unwrap_or(0);
    let body = html! {
        div.cards {
            form.card #verify method="post" action="/console/audit/verify" {
                h2 { (t.verify) }
                p.hint { (t.verify_hint) }
                (csrf(&signed))
                label for="scope" { (t.scope) }
                select #scope name="scope" {
                    option value="all" selected { (t.scope_all) }
                    option value="log" { (t.scope_log) }
                }
                button type="submit" { (t.start_verify) }
            }
            form.card #balances method="post" action="/console/audit/balances" {
                h2 { (t.balances_at_all) }
                (csrf(&signed))
                label for="balances-at-input" { (t.moment) }
                input #balances-at-input name="at" type="text" placeholder="2026-12-01T00:00:00Z" value=(Utc::now().format("%Y-%m-%dT%H:%M:%SZ"));
                button type="submit" { (t.start_balances) }
            }
            form.card #export method="get" action="/console/audit/export" {
                h2 { (t.export) }
                p.hint { (t.export_hint) }
                label for="export-from" { (t.after_position) }
                input #export-from name="from" type="number" min="0" value="0";
                label for="export-to" { (t.up_to_position) }
                input #export-to name="to" type="number" min="0" value=(head);
                button type="submit" { (t.download) }
            }
        }
        @match &job {
            None => p.muted #no-audit-job { (t.no_audit_job) },
            Some(job) => (job_box(t, job, balances)),
        }
    };
    Ok(page(&signed, Section::Audit, t.audit, body))
}

fn job_box(
    t: &Texts,
    job: &AuditJob,
    balances: Option<(u64, u64, Option<Vec<serde_json::Value>>)>,
) -> Markup {
    let state = match job.state {
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
    };
    let kind = match job.request {
        AuditRequest::Verify { .. } => "verify",
        AuditRequest::Balances { .. } => "balances",
    };
    html! {
        section #audit-job .job data-state=(state) data-kind=(kind) data-poll="/console/api/audit-job" {
            h2 { (t.last_audit_job) ": " (kind) }
            p {
                span.status data-field="state" data-status=(state) { (state) }
                " · " (t.started_by) " " (job.started_by) " · " (time(job.started_at))
                @if let AuditRequest::Balances { .. } = job.request { " · " (t.moment) " " (time(job.at)) }
            }
            progress max=(job.events_total.max(1)) value=(job.events_done.min(job.events_total.max(1))) {}
            p { span data-field="events_done" { (job.events_done) } " / " span data-field="events_total" { (job.events_total) } " " (t.events) }
            @if let Some(error) = &job.error { p.flash.error { (error) } }
            @if job.state == JobState::Running { p.noscript { a href="/console/audit" { (t.refresh) } } }
            @match (&job.result, balances) {
                (Some(AuditResult::Verify(report)), _) => (verify_report(t, report)),
                (Some(AuditResult::Balances(_)), Some((cursor, count, rows))) => (balances_page(t, job, cursor, count, rows)),
                _ => {},
            }
        }
    }
}

fn verify_report(t: &Texts, report: &VerifyAnswer) -> Markup {
    html! {
        div #verify-result data-sound=(report.sound) {
            p.verdict .ok[report.sound] .error[!report.sound] {
                (if report.sound { t.sound } else { t.unsound })
            }
            dl {
                dt { (t.events) } dd { (report.events) }
                dt { (t.log_head) } dd { (report.head_position) }
                dt { (t.head_hash) } dd { code.hash { (report.head_hash) } }
                dt { (t.elapsed) } dd { (report.elapsed_ms) " ms" }
            }
            h3 { (t.trial_balance) }
            table #trial-balance { tbody {
                @for (currency, total) in &report.trial_balance {
                    tr { td { (currency) } td.num { (total) } }
                }
            } }
            h3 { (t.findings) }
            @if report.findings.is_empty() { p.muted #no-findings { (t.none) } }
            @else { ul #findings { @for f in &report.findings { li { (f) } } } }
            h3 { (t.tables) }
            @if report.tables.is_empty() { p.muted { (t.tables_not_checked) } }
            table #table-checks {
                thead { tr { th { (t.name) } th.num { (t.checkpoint) } th.num { (t.differences) } } }
                tbody {
                    @for (table, check) in &report.tables {
                        tr data-table=(table) data-differences=(check.differences.len()) {
                            td { (table) } td.num { (check.checkpoint) } td.num { (check.differences.len()) }
                        }
                    }
                }
            }
            @if report.tables.values().any(|c| !c.differences.is_empty()) {
                h3 { (t.differences) }
                div.scroll { table #differences {
                    thead { tr { th { (t.name) } th { (t.key) } th { (t.expected) } th { (t.found) } } }
                    tbody {
                        @for (table, check) in &report.tables {
                            @for d in &check.differences {
                                tr {
                                    td { (table) } td { code { (d.key) } }
                                    td { code { (d.expected.as_deref().unwrap_or("—")) } }
                                    td { code { (d.found.as_deref().unwrap_or("—")) } }
                                }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn balances_page(
    t: &Texts,
    job: &AuditJob,
    cursor: u64,
    count: u64,
    rows: Option<Vec<serde_json::Value>>,
) -> Markup {
    let text = |row: &serde_json::Value, field: &str| match row.get(field) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let next = cursor + BALANCES_PAGE as u64;
    html! {
        h3 { (t.balances_at_all) " " (time(job.at)) " (" (count) ")" }
        @match rows {
            None => p.flash.error { (t.unavailable) },
            Some(rows) => div.scroll { table #balances-at {
                thead { tr {
                    th { (t.user) } th { (t.currency) } th.num { (t.available) }
                    th.num { (t.reserved) } th.num { (t.total) } th.num { (t.debt) }
                } }
                tbody {
                    @for row in &rows {
                        tr {
                            td { a href={ "/console/users/" (text(row, "user_id")) } { (text(row, "user_id")) } }
                            td { (text(row, "currency")) }
                            td.num { (text(row, "available")) } td.num { (text(row, "reserved")) }
                            td.num { (text(row, "total")) } td.num { (text(row, "debt")) }
                        }
                    }
                }
            } },
        }
        nav.paging {
            @if cursor > 0 {
                a #prev-page href={ "/console/audit?cursor=" (cursor.saturating_sub(BALANCES_PAGE as u64)) } { "← " (t.previous) }
            }
            @if next < count { a #next-page href={ "/console/audit?cursor=" (next) } { (t.next) " →" } }
        }
    }
}

#[derive(Deserialize)]
pub struct VerifyForm {
    csrf: Option<String>,
    scope: Option<String>,
}

pub async fn verify(
    signed: Signed,
    state: web::Data<AppState>,
    form: web::Form<VerifyForm>,
) -> Result<HttpResponse, Refusal> {
    signed.check_csrf(form.csrf.as_deref())?;
    let with_tables = form.scope.as_deref() != Some("log");
    let request = AuditRequest::Verify { with_tables };
    Ok(started(&signed, &state, request, "verify_started"))
}

#[derive(Deserialize)]
pub struct BalancesForm {
    csrf: Option<String>,
    at: Option<String>,
}

pub async fn balances(
    signed: Signed,
    state: web::Data<AppState>,
    form: web::Form<BalancesForm>,
) -> Result<HttpResponse, Refusal> {
    signed.check_csrf(form.csrf.as_deref())?;
    let t = signed.texts();
    let at = match form.at.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match parse_moment(text) {
            Some(at) => Some(at),
            None => {
                let flash = Flash::refused("invalid_time", t.invalid_moment);
                return Ok(signed.redirect_with(&state, "/console/audit", flash));
            }
        },
    };
    Ok(started(
        &signed,
        &state,
        AuditRequest::Balances { at },
        "balances_started",
    ))
}

fn started(signed: &Signed, state: &AppState, request: AuditRequest, code: &str) -> HttpResponse {
    let t = signed.texts();
    let flash = match begin(state, &signed.session.caller.name, request) {
        Ok(_) => Flash::done(code, t.audit_started),
        Err(error) => Flash::from_error(&error),
    };
    signed.redirect_with(state, "/console/audit", flash)
}

#[derive(Deserialize)]
pub struct ExportQuery {
    from: Option<u64>,
    to: Option<u64>,
}

/// The events after `from` up to `to` (default: the head), one JSON object per line, as
/// `/v1/audit/events` writes them; streamed a page at a time.
pub async fn export(
    signed: Signed,
    state: web::Data<AppState>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, Refusal> {
    let head = state
        .events
        .head()
        .await
        .map_err(|e| signed.visit.api(e.into()))?
        .position;
    let from = query.from.unwrap_or(0);
    let to = query.to.unwrap_or(head).min(head);
    if from > MAX_POSITION || from > to {
        return Err(signed.visit.refuse(
            StatusCode::BAD_REQUEST,
            "invalid_position",
            signed.texts().invalid_range,
        ));
    }
    tracing::info!(who = %signed.session.caller.name, from, to, "console: log exported");
    let events = state.events.clone();
    let pages = futures::stream::try_unfold(from, move |after| {
        let events = events.clone();
        async move {
            if after >= to {
                return Ok(None);
            }
            let limit = EXPORT_PAGE.min((to - after) as usize);
            let page = events
                .read_all(after, limit)
                .await
                .map_err(actix_web::error::ErrorServiceUnavailable)?;
            let Some(last) = page.last().map(|e| e.position) else {
                return Ok(None);
            };
            let mut text = String::new();
            for event in &page {
                let line =
                    export_line(event).map_err(actix_web::error::ErrorInternalServerError)?;
                text.push_str(&line.to_string());
                text.push('\n');
            }
            Ok::<_, actix_web::Error>(Some((Bytes::from(text), last)))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"starledger-events-{from}-{to}.ndjson\""),
        ))
        .streaming(pages))
}
