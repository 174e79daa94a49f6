//! The page shell every console page shares (navigation, who is signed in, the language
//! links, the one-shot message, the sign-out form), the error page, and how numbers, money
//! and times are shown. HTML is written with `maud`, which escapes every value it inserts.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use rust_decimal::Decimal;

use super::texts::{Lang, Texts};
use super::visit::{Signed, Visit};

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Users,
    Purchases,
    Projections,
    Audit,
    Events,
}

impl Section {
    const ALL: [Section; 6] = [
        Self::Overview,
        Self::Users,
        Self::Purchases,
        Self::Projections,
        Self::Audit,
        Self::Events,
    ];

    fn href(self) -> &'static str {
        match self {
            Self::Overview => "/console/overview",
            Self::Users => "/console/users",
            Self::Purchases => "/console/purchases",
            Self::Projections => "/console/projections",
            Self::Audit => "/console/audit",
            Self::Events => "/console/events",
        }
    }

    fn name(self, t: &Texts) -> &'static str {
        match self {
            Self::Overview => t.overview,
            Self::Users => t.users,
            Self::Purchases => t.purchases,
            Self::Projections => t.projections,
            Self::Audit => t.audit,
            Self::Events => t.event_log,
        }
    }
}

/// `<head>`: the stylesheet and script, both served by the binary.
fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="referrer" content="no-referrer";
        title { (title) " · starledger" }
        link rel="stylesheet" href=(*super::assets::CSS_PATH);
        script src=(*super::assets::JS_PATH) defer {}
    }
}

/// A signed-in page: the shell around `body`, answered 200.
pub fn page(signed: &Signed, section: Section, title: &str, body: Markup) -> HttpResponse {
    page_with_status(signed, section, title, body, StatusCode::OK)
}

/// [`page`] with another status (a form shown again with its problem).
pub fn page_with_status(
    signed: &Signed,
    section: Section,
    title: &str,
    body: Markup,
    status: StatusCode,
) -> HttpResponse {
    let t = signed.texts();
    let lang = signed.visit.lang;
    let caller = &signed.session.caller;
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head { (head(title)) }
            body {
                header {
                    a.brand href="/console/overview" { "starledger" }
                    nav #nav {
                        @for s in Section::ALL {
                            a href=(s.href()) aria-current=[(s == section).then_some("page")] { (s.name(t)) }
                        }
                    }
                    div.who {
                        span #who data-role=(caller.role.as_str()) {
                            (caller.name) " · " (role_name(t, caller.role))
                        }
                        (languages(&signed.visit))
                        form #sign-out method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(signed.session.csrf);
                            button type="submit" { (t.sign_out) }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(flash) = &signed.flash {
                        p #flash .flash .ok[flash.ok] .error[!flash.ok] data-code=(flash.code) role="status" { (flash.message) }
                    }
                    (body)
                }
            }
        }
    };
    respond(&signed.visit, status, markup)
}

fn role_name(t: &Texts, role: crate::settings::Role) -> &'static str {
    match role {
        crate::settings::Role::Admin => t.role_admin,
        crate::settings::Role::Auditor => t.role_auditor,
        crate::settings::Role::Service => "service",
    }
}

/// Links to the page in each language.
pub fn languages(visit: &Visit) -> Markup {
    let base = visit.path.split('?').next().unwrap_or("/console");
    html! {
        span.languages {
            @for lang in Lang::ALL {
                @if lang == visit.lang {
                    span aria-current="true" { (lang.label()) }
                } @else {
                    a href={ (base) "?lang=" (lang.code()) } hreflang=(lang.code()) lang=(lang.code()) { (lang.label()) }
                }
            }
        }
    }
}

/// A page outside a session (sign-in).
pub fn bare_page(visit: &Visit, title: &str, status: StatusCode, body: Markup) -> HttpResponse {
    let lang = visit.lang;
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head { (head(title)) }
            body.bare {
                header {
                    span.brand { "starledger" }
                    div.who { (languages(visit)) }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    respond(visit, status, markup)
}

fn respond(visit: &Visit, status: StatusCode, markup: Markup) -> HttpResponse {
    let mut response = HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string());
    visit.keep_lang(&mut response);
    response
}

/// An error page: what went wrong, its code, and a way back.
pub fn error_page(lang: Lang, status: StatusCode, code: &str, message: &str) -> HttpResponse {
    let t = lang.texts();
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head { (head(t.error_title)) }
            body.bare {
                header { a.brand href="/console/overview" { "starledger" } }
                main #error data-code=(code) data-status=(status.as_u16()) {
                    h1 { (t.error_title) " " (status.as_u16()) }
                    p.flash.error { (message) }
                    p { code { (code) } }
                    p { a href="/console/overview" { (t.back_to_console) } }
                }
            }
        }
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

/// A decimal as the ledger writes it: no exponent, no trailing zeros.
pub fn money(amount: Decimal) -> String {
    amount.normalize().to_string()
}

/// A time to the second, in UTC.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A hash shortened for a table cell (the whole one in its title).
pub fn short_hash(hex: &str) -> Markup {
    html! { code title=(hex) { (hex.get(..12).unwrap_or(hex)) "…" } }
}

/// A hidden CSRF field.
pub fn csrf(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.session.csrf); }
}

/// A moment typed into a form: RFC 3339 (`2026-12-01T10:00:00Z`, any offset), or a date and
/// time without offset (`2026-12-01T10:00`, `2026-12-01 10:00:00`, what a browser's
/// `datetime-local` sends), read as UTC.
pub fn parse_moment(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
    .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_read_as_utc_in_the_forms_browsers_send() {
        let noon = "2026-12-01T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        for text in [
            "2026-12-01T12:00:00Z",
            "2026-12-01T15:00:00+03:00",
            "2026-12-01T12:00",
            "2026-12-01 12:00:00",
            " 2026-12-01T12:00:00 ",
        ] {
            assert_eq!(parse_moment(text), Some(noon), "{text}");
        }
        for text in ["", "yesterday", "2026-13-01T00:00", "1700000000"] {
            assert_eq!(parse_moment(text), None, "{text}");
        }
    }

    #[test]
    fn money_is_shown_as_the_ledger_writes_it() {
        assert_eq!(money("12.500".parse().unwrap()), "12.5");
        assert_eq!(money("0.000".parse().unwrap()), "0");
        assert_eq!(money("-3".parse().unwrap()), "-3");
    }
}
