//! Signing in with an admin or auditor key, and out.
//!
//! The sign-in form is protected like every other form, without a session to hold its token:
//! the token is double-submitted (a `SameSite=Strict` cookie and a hidden field that must
//! match), so another site cannot sign a browser in with a key of its own choosing. The
//! service key (the bot's) cannot sign in. Each client address may try a few times a minute.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use maud::html;
use serde::Deserialize;

use super::layout::bare_page;
use super::session::{random_token, same_token, SIGN_IN_COOKIE};
use super::texts::Texts;
use super::visit::{see_other, signed, Refusal, Signed, Visit};
use crate::settings::Role;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
}

/// Where to go after signing in: only a console page of this site.
fn next_page(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with("/console/") && !n.starts_with("/console/sign-"))
        .filter(|n| !n.contains("//") && !n.contains('\\'))
        .unwrap_or("/console/overview")
        .to_owned()
}

/// The sign-in form, with a fresh double-submit token; someone signed in goes straight on.
pub async fn form(
    request: actix_web::HttpRequest,
    visit: Visit,
    query: web::Query<SignInQuery>,
) -> Result<HttpResponse, Refusal> {
    let next = next_page(query.next.as_deref());
    // The session's flash stays for the page it is sent to.
    if signed(&request, false).is_ok() {
        return Ok(see_other(&next));
    }
    show(&visit, &next, StatusCode::OK, None)
}

fn show(
    visit: &Visit,
    next: &str,
    status: StatusCode,
    problem: Option<(&str, &str)>,
) -> Result<HttpResponse, Refusal> {
    let t = visit.texts();
    let token = random_token().map_err(|e| {
        visit.refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })?;
    let body = html! {
        @if let Some((code, message)) = problem {
            p #flash .flash.error data-code=(code) role="alert" { (message) }
        }
        form #sign-in method="post" action="/console/sign-in" {
            input type="hidden" name="csrf" value=(token);
            input type="hidden" name="next" value=(next);
            label for="key" { (t.key_label) }
            input #key type="password" name="key" autocomplete="current-password" required autofocus;
            p.hint { (t.key_hint) }
            button type="submit" { (t.sign_in) }
        }
    };
    let mut response = bare_page(visit, t.sign_in_title, status, body);
    let _ = response.add_cookie(&visit.cookie(SIGN_IN_COOKIE, token));
    Ok(response)
}

#[derive(Deserialize)]
pub struct SignInForm {
    key: Option<String>,
    csrf: Option<String>,
    next: Option<String>,
}

/// Checks the key and opens a session.
pub async fn sign_in(
    request: actix_web::HttpRequest,
    visit: Visit,
    state: web::Data<AppState>,
    form: web::Form<SignInForm>,
) -> Result<HttpResponse, Refusal> {
    let t: &Texts = visit.texts();
    let next = next_page(form.next.as_deref());
    let expected = request.cookie(SIGN_IN_COOKIE).map(|c| c.value().to_owned());
    let token_ok = match (&form.csrf, &expected) {
        (Some(presented), Some(expected)) => same_token(presented, expected),
        _ => false,
    };
    if !token_ok {
        return Err(visit.refuse(StatusCode::FORBIDDEN, "csrf", t.csrf_refused));
    }
    if let Some(client) = visit.client {
        if !state.console.may_sign_in(client) {
            tracing::warn!(%client, "console: sign-in throttled");
            return show(
                &visit,
                &next,
                StatusCode::TOO_MANY_REQUESTS,
                Some(("throttled", t.sign_in_throttled)),
            );
        }
    }
    let key = form.key.as_deref().map(str::trim).unwrap_or_default();
    let Some(caller) = state.keys.find(key).filter(|_| !key.is_empty()) else {
        tracing::warn!(client = ?visit.client, "console: sign-in with an unknown key");
        return show(
            &visit,
            &next,
            StatusCode::UNAUTHORIZED,
            Some(("bad_key", t.bad_key)),
        );
    };
    if caller.role == Role::Service {
        tracing::warn!(name = %caller.name, "console: the service key may not sign in");
        return show(
            &visit,
            &next,
            StatusCode::FORBIDDEN,
            Some(("service_key", t.service_key_refused)),
        );
    }
    let name = caller.name.clone();
    let role = caller.role;
    let token = state.console.open(caller, Instant::now()).map_err(|e| {
        visit.refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })?;
    tracing::info!(%name, role = role.as_str(), client = ?visit.client, "console: signed in");
    let mut response = see_other(&next);
    let _ = response.add_cookie(&visit.cookie(visit.cookie_name(), token));
    let _ = response.add_cookie(&visit.removal(SIGN_IN_COOKIE));
    Ok(response)
}

#[derive(Deserialize)]
pub struct SignOutForm {
    csrf: Option<String>,
}

/// Ends the session.
pub async fn sign_out(
    signed: Signed,
    state: web::Data<AppState>,
    form: web::Form<SignOutForm>,
) -> Result<HttpResponse, Refusal> {
    signed.check_csrf(form.csrf.as_deref())?;
    state.console.close(&signed.token);
    tracing::info!(name = %signed.session.caller.name, "console: signed out");
    let mut response = see_other("/console/sign-in");
    let _ = response.add_cookie(&signed.visit.removal(signed.visit.cookie_name()));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::next_page;

    #[test]
    fn after_sign_in_only_console_pages_of_this_site() {
        assert_eq!(next_page(Some("/console/users/7")), "/console/users/7");
        for elsewhere in [
            "https://evil.example/",
            "//evil.example/console/",
            "/console/\\evil",
            "/v1/admin/purchases",
            "/console/sign-out",
        ] {
            assert_eq!(
                next_page(Some(elsewhere)),
                "/console/overview",
                "{elsewhere}"
            );
        }
        assert_eq!(next_page(None), "/console/overview");
    }
}
