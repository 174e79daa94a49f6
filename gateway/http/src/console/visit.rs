//! What every console handler starts from: the [`Visit`] (language, whether the browser
//! reached us over TLS, the client's address) and, on every page but sign-in, the [`Signed`]
//! session. A request without a live session is sent to sign in (pages) or refused (forms).
//!
//! A form is checked in this order: session (401), CSRF token (403 `csrf`), role (403
//! `forbidden`), then what it asks. [`Refusal`] is every answer that is not the page: an
//! HTML error page in the visitor's language, with its status and a `data-code`.

use std::net::IpAddr;
use std::time::Instant;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use futures::future::{ready, Ready};

use super::layout;
use super::session::{same_token, Flash, Session, COOKIE, LANG_COOKIE, SECURE_COOKIE};
use super::texts::{Lang, Texts};
use crate::error::ApiError;
use crate::settings::Role;
use crate::state::AppState;
use crate::webhooks::client_ip;

/// Who is visiting, before any session.
#[derive(Debug, Clone)]
pub struct Visit {
    pub lang: Lang,
    /// `?lang=` chose the language on this request: the answer stores it in a cookie.
    pub chose_lang: bool,
    /// Reached over TLS (directly, or through a trusted proxy that says so): cookies are
    /// `Secure` and the session cookie takes the `__Host-` prefix.
    pub secure: bool,
    pub client: Option<IpAddr>,
    /// The path and query asked for.
    pub path: String,
}

impl Visit {
    pub fn of(request: &HttpRequest) -> Self {
        let trust_proxy = request
            .app_data::<web::Data<AppState>>()
            .is_some_and(|state| state.limits.trust_proxy_headers);
        let query_lang = web::Query::<LangQuery>::from_query(request.query_string())
            .ok()
            .and_then(|q| q.lang.as_deref().and_then(Lang::parse));
        let cookie_lang = request
            .cookie(LANG_COOKIE)
            .and_then(|c| Lang::parse(c.value()));
        let header_lang = request
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(Lang::from_accept_language);
        let forwarded_tls = trust_proxy
            && request
                .headers()
                .get("X-Forwarded-Proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        Self {
            lang: query_lang
                .or(cookie_lang)
                .or(header_lang)
                .unwrap_or(Lang::En),
            chose_lang: query_lang.is_some(),
            secure: request.app_config().secure() || forwarded_tls,
            client: client_ip(request, trust_proxy),
            path: match request.query_string() {
                "" => request.path().to_owned(),
                query => format!("{}?{query}", request.path()),
            },
        }
    }

    pub fn texts(&self) -> &'static Texts {
        self.lang.texts()
    }

    /// The session cookie's name for this visit.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            SECURE_COOKIE
        } else {
            COOKIE
        }
    }

    /// A cookie of the console's: HttpOnly, `SameSite=Strict`, `Path=/`, `Secure` over TLS.
    pub fn cookie(&self, name: &'static str, value: String) -> Cookie<'static> {
        Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .finish()
    }

    /// The same cookie, expired, so the browser forgets it.
    pub fn removal(&self, name: &'static str) -> Cookie<'static> {
        let mut cookie = self.cookie(name, String::new());
        cookie.make_removal();
        cookie
    }

    /// Stores the language chosen on this request, if one was.
    pub fn keep_lang(&self, response: &mut HttpResponse) {
        if self.chose_lang {
            let mut cookie = self.cookie(LANG_COOKIE, self.lang.code().to_owned());
            cookie.set_max_age(actix_web::cookie::time::Duration::days(365));
            let _ = response.add_cookie(&cookie);
        }
    }

    /// An error page.
    pub fn refuse(&self, status: StatusCode, code: &str, message: impl Into<String>) -> Refusal {
        Refusal::Page {
            lang: self.lang,
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// An API error as an error page, with its status and code.
    pub fn api(&self, error: ApiError) -> Refusal {
        self.refuse(error.status(), error.code().as_str(), error.message())
    }
}

#[derive(serde::Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

impl FromRequest for Visit {
    type Error = Refusal;
    type Future = Ready<Result<Self, Refusal>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Visit::of(request)))
    }
}

/// A signed-in visit.
#[derive(Debug, Clone)]
pub struct Signed {
    pub visit: Visit,
    pub session: Session,
    /// The session's cookie value.
    pub token: String,
    /// The message an action left for this page.
    pub flash: Option<Flash>,
}

impl Signed {
    pub fn texts(&self) -> &'static Texts {
        self.visit.texts()
    }

    pub fn role(&self) -> Role {
        self.session.caller.role
    }

    pub fn is_admin(&self) -> bool {
        self.role() == Role::Admin
    }

    /// A form's CSRF token checked, then the admin role: what every action needs.
    pub fn may_act(&self, csrf: Option<&str>) -> Result<(), Refusal> {
        self.check_csrf(csrf)?;
        if !self.is_admin() {
            tracing::warn!(who = %self.session.caller.name, path = %self.visit.path, "console: an auditor's action refused");
            return Err(self.visit.refuse(
                StatusCode::FORBIDDEN,
                "forbidden",
                self.texts().forbidden,
            ));
        }
        Ok(())
    }

    /// A form's CSRF token checked (auditors' own actions: verify, balances).
    pub fn check_csrf(&self, csrf: Option<&str>) -> Result<(), Refusal> {
        if csrf.is_some_and(|presented| same_token(presented, &self.session.csrf)) {
            return Ok(());
        }
        tracing::warn!(who = %self.session.caller.name, path = %self.visit.path, "console: a form without its CSRF token refused");
        Err(self
            .visit
            .refuse(StatusCode::FORBIDDEN, "csrf", self.texts().csrf_refused))
    }

    /// Leaves `flash` for the next page and sends the browser to `to` (303).
    pub fn redirect_with(&self, state: &AppState, to: &str, flash: Flash) -> HttpResponse {
        state.console.flash(&self.token, flash);
        see_other(to)
    }
}

/// 303 See Other: after a form, the browser fetches `to` with GET.
pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_owned()))
        .finish()
}

impl FromRequest for Signed {
    type Error = Refusal;
    type Future = Ready<Result<Self, Refusal>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(signed(request, true))
    }
}

/// The visit's session; `take_flash`: this is the page that shows the session's flash (the
/// console's JSON leaves it for the page).
pub fn signed(request: &HttpRequest, take_flash: bool) -> Result<Signed, Refusal> {
    let visit = Visit::of(request);
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return Err(visit.refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server is misconfigured",
        ));
    };
    // A request another site started (a link or form on its page) never acts on a session,
    // whatever it carries; browsers say so in Sec-Fetch-Site.
    let cross_site = request
        .headers()
        .get("Sec-Fetch-Site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    let found = request
        .cookie(visit.cookie_name())
        .map(|c| c.value().to_owned())
        .filter(|_| !(cross_site && request.method() != Method::GET))
        .and_then(|token| {
            state
                .console
                .find(&token, Instant::now(), take_flash)
                .map(|(session, flash)| (token, session, flash))
        });
    match found {
        Some((token, session, flash)) => Ok(Signed {
            visit,
            session,
            token,
            flash,
        }),
        None if request.method() == Method::GET => Err(Refusal::SignIn {
            next: visit.path.clone(),
        }),
        None => Err(visit.refuse(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            visit.texts().session_over,
        )),
    }
}

/// A console answer that is not the page asked for.
#[derive(Debug)]
pub enum Refusal {
    /// No session: to the sign-in page, and back to `next` afterwards.
    SignIn { next: String },
    Page {
        lang: Lang,
        status: StatusCode,
        code: String,
        message: String,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SignIn { .. } => f.write_str("sign in first"),
            Self::Page { code, message, .. } => write!(f, "{code}: {message}"),
        }
    }
}

impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::SignIn { .. } => StatusCode::SEE_OTHER,
            Self::Page { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::SignIn { next } => {
                let query =
                    serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default();
                see_other(&format!("/console/sign-in?{query}"))
            }
            Self::Page {
                lang,
                status,
                code,
                message,
            } => layout::error_page(*lang, *status, code, message),
        }
    }
}
