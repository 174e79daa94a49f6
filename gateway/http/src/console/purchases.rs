//! Open purchases, oldest first, with deliver and fail. Each action is the same ledger command
//! the admin API runs (`crate::purchases::mark_delivered`, `mark_failed`), with the admin's
//! key name as actor and the same idempotency key, so a double click records once.
//!
//! Failing is a step of its own (a page with the reason): once a payment to Fragment is
//! recorded the order may have been delivered, and the ledger refuses to fail it unless the
//! operator ticks `force`, saying they checked on chain and with Fragment. The rule is the
//! ledger's; the page only shows its refusal and asks again.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;
use starledger_projections::rows::{TransactionKind, TransactionRow};
use starledger_projections::store::StatusFilter;

use super::layout::{csrf, money, page, page_with_status, time, Section};
use super::session::Flash;
use super::texts::Texts;
use super::visit::{Refusal, Signed};
use crate::error_code::ErrorCode;
use crate::purchases::{mark_delivered, mark_failed, waiting};
use crate::state::AppState;

/// Most purchases the page lists.
const LISTED: u32 = 200;

pub async fn list(signed: Signed, state: web::Data<AppState>) -> Result<HttpResponse, Refusal> {
    let t = signed.texts();
    let rows = waiting(&state, &StatusFilter::OpenPurchases, LISTED)
        .await
        .map_err(|e| signed.visit.api(e))?;
    let body = html! {
        p.hint { (t.purchases_hint) }
        @if !signed.is_admin() { p.muted #read-only { (t.read_only) } }
        @if rows.is_empty() {
            p.muted #no-purchases { (t.none_open) }
        } @else {
            div.scroll { table.stack #open-purchases {
                thead { tr {
                    th { (t.created) } th { (t.user) } th { (t.purchase) } th.num { (t.stars) }
                    th { (t.recipient) } th.num { (t.price) } th { (t.status) }
                    @if signed.is_admin() { th { (t.actions) } }
                } }
                tbody {
                    @for row in &rows {
                        tr data-purchase=(row.id) data-status=(row.status) {
                            td data-label=(t.created) { (time(row.created_at)) }
                            td data-label=(t.user) { a href={ "/console/users/" (row.user_id) } { (row.user_id) } }
                            td data-label=(t.purchase) { code { (row.id) } }
                            td.num data-label=(t.stars) { (field(row, "stars")) }
                            td data-label=(t.recipient) { (field(row, "deliver_to")) }
                            td.num data-label=(t.price) { (money(row.amount)) " " (row.currency) }
                            td data-label=(t.status) { span.status data-status=(row.status) { (row.status) } }
                            @if signed.is_admin() {
                                td.actions {
                                    form.deliver method="post" action={ "/console/purchases/" (row.id) "/deliver" } {
                                        (csrf(&signed))
                                        button type="submit" { (t.deliver) }
                                    }
                                    a.fail.button href={ "/console/purchases/" (row.id) "/fail" } { (t.fail) "…" }
                                }
                            }
                        }
                    }
                }
            } }
        }
    };
    Ok(page(&signed, Section::Purchases, t.open_purchases, body))
}

/// A text field of a purchase's details, or a dash.
fn field(row: &TransactionRow, name: &str) -> String {
    match row.metadata.get(name) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "—".to_owned(),
        Some(other) => other.to_string(),
    }
}

#[derive(Deserialize)]
pub struct DeliverForm {
    csrf: Option<String>,
}

pub async fn deliver(
    signed: Signed,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<DeliverForm>,
) -> Result<HttpResponse, Refusal> {
    signed.may_act(form.csrf.as_deref())?;
    let t = signed.texts();
    let flash = match mark_delivered(&state, &signed.session.caller, &path, Some("console")).await {
        Ok((user, _, executed)) => {
            shown(&state, user, executed.position).await;
            Flash::done("delivered", format!("{} {}", t.delivered, path.as_str()))
        }
        Err(error) => Flash::from_error(&error),
    };
    Ok(signed.redirect_with(&state, "/console/purchases", flash))
}

/// Waits (within a request's deadline) until the projections and `user`'s cached rows show
/// `position`, so the page the browser is sent to next shows the decision.
async fn shown(state: &AppState, user: starledger_ledger::ids::UserId, position: u64) {
    state.acknowledged(user, position, &state.deadline()).await;
}

/// The purchase in the path, as the read model shows it.
async fn purchase(signed: &Signed, state: &AppState, id: &str) -> Result<TransactionRow, Refusal> {
    let not_found = || {
        signed.visit.refuse(
            StatusCode::NOT_FOUND,
            "not_found",
            signed.texts().no_purchase,
        )
    };
    let uuid = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
    state
        .read
        .transaction(uuid)
        .await
        .map_err(|e| signed.visit.api(e.into()))?
        .filter(|row| row.kind == TransactionKind::Purchase)
        .ok_or_else(not_found)
}

/// The confirm step: the purchase, the reason, and `force` explained.
pub async fn fail_form(
    signed: Signed,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let row = purchase(&signed, &state, &path).await?;
    let body = fail_body(&signed, &row, "", false);
    Ok(page(
        &signed,
        Section::Purchases,
        signed.texts().fail_title,
        body,
    ))
}

fn fail_body(signed: &Signed, row: &TransactionRow, reason: &str, force: bool) -> Markup {
    let t: &Texts = signed.texts();
    let paid = row.status == "sent";
    html! {
        dl.facts {
            dt { (t.purchase) } dd { code { (row.id) } }
            dt { (t.user) } dd { a href={ "/console/users/" (row.user_id) } { (row.user_id) } }
            dt { (t.stars) } dd { (field(row, "stars")) " → " (field(row, "deliver_to")) }
            dt { (t.price) } dd { (money(row.amount)) " " (row.currency) }
            dt { (t.status) } dd { span.status data-status=(row.status) { (row.status) } }
        }
        @if paid { p.flash.error #paid-warning { (t.paid_warning) } }
        @if !signed.is_admin() { p.muted #read-only { (t.read_only) } }
        form #fail method="post" action={ "/console/purchases/" (row.id) "/fail" } {
            (csrf(signed))
            label for="reason" { (t.reason) }
            textarea #reason name="reason" required maxlength="500" rows="3" { (reason) }
            label.check {
                input type="checkbox" name="force" value="on" checked[force];
                " " (t.force_label)
            }
            p.hint { (t.force_hint) }
            div.buttons {
                button.danger type="submit" { (t.confirm_fail) }
                a.button href="/console/purchases" { (t.cancel) }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct FailForm {
    csrf: Option<String>,
    reason: Option<String>,
    force: Option<String>,
}

pub async fn fail(
    signed: Signed,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<FailForm>,
) -> Result<HttpResponse, Refusal> {
    signed.may_act(form.csrf.as_deref())?;
    let t = signed.texts();
    let reason = form.reason.as_deref().unwrap_or_default().trim();
    let force = form.force.as_deref() == Some("on");
    let again = |signed: &Signed, row: &TransactionRow, code: &str, message: String| {
        let mut shown = signed.clone();
        shown.flash = Some(Flash::refused(code, message));
        let body = fail_body(&shown, row, reason, force);
        page_with_status(
            &shown,
            Section::Purchases,
            t.fail_title,
            body,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    };
    let row = purchase(&signed, &state, &path).await?;
    if reason.is_empty() {
        return Ok(again(
            &signed,
            &row,
            "reason_required",
            t.reason_required.into(),
        ));
    }
    match mark_failed(&state, &signed.session.caller, &path, reason, force).await {
        Ok((user, _, executed)) => {
            shown(&state, user, executed.position).await;
            Ok(signed.redirect_with(
                &state,
                "/console/purchases",
                Flash::done("failed", format!("{} {}", t.failed, path.as_str())),
            ))
        }
        // The ledger's refusals (a paid order without force, a finished purchase): the form
        // again, with why.
        Err(error) if error.status().is_client_error() => {
            let message = match error.code() {
                ErrorCode::PaymentRecorded => format!("{} ({})", t.force_needed, error.message()),
                _ => error.message(),
            };
            Ok(again(&signed, &row, error.code().as_str(), message))
        }
        Err(error) => Err(signed.visit.api(error)),
    }
}
