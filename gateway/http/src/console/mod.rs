//! The operators' console at `/console`: HTML pages in which admins and auditors see and act
//! on the ledger without curl, served by `starledger serve` itself.
//!
//! - [`session`]: server-side sessions (cookie, idle timeout, maximum age), sign-in throttle.
//! - [`visit`]: the language, the session and the CSRF and role checks every handler starts
//!   from; [`visit::Refusal`], the HTML error page.
//! - [`sign_in`]: signing in with an admin or auditor key (never the service key), and out.
//! - [`overview`], [`users`], [`purchases`], [`projections`], [`audit`], [`events`]: the pages.
//! - [`api`]: the JSON the pages' script polls (documented in the API document).
//! - [`layout`]: the page shell, the error page, how money and times are shown.
//! - [`texts`]: every word of the pages, in English and Russian.
//! - [`assets`]: the stylesheet and the script, compiled in.
//!
//! Every action is an ordinary ledger command or job, the same the admin and audit APIs run,
//! with the signed-in key's name as actor. Auditors see everything and change nothing: each
//! action handler checks the role on the server, whatever the page showed.
//!
//! Every answer carries a Content-Security-Policy that allows only this server's own script
//! and stylesheet (no inline script, no other host), refuses framing, and is not cached.

pub mod api;
mod assets;
mod audit;
mod events;
mod layout;
mod overview;
mod projections;
mod purchases;
pub mod session;
mod sign_in;
pub mod texts;
mod users;
mod visit;

use actix_web::http::StatusCode;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::ApiError;
use crate::error_code::ErrorCode;
pub use session::{ConsoleSettings, Sessions};
use visit::{see_other, Visit};

/// The Content-Security-Policy of every console answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// Largest form body the console reads.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The console's pages (its JSON is registered with the API, see [`api::routes`]).
pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/console")
            .wrap(
                DefaultHeaders::new()
                    .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("X-Frame-Options", "DENY"))
                    .add(("Referrer-Policy", "no-referrer"))
                    .add(("Cache-Control", "no-store")),
            )
            .app_data(
                web::FormConfig::default()
                    .limit(MAX_FORM_BYTES)
                    .error_handler(|error, request| {
                        bad_input(request, "invalid_form", error.to_string())
                    }),
            )
            .app_data(web::QueryConfig::default().error_handler(|error, request| {
                bad_input(request, "invalid_query", error.to_string())
            }))
            .route("", web::get().to(home))
            .route("/", web::get().to(home))
            .route("/sign-in", web::get().to(sign_in::form))
            .route("/sign-in", web::post().to(sign_in::sign_in))
            .route("/sign-out", web::post().to(sign_in::sign_out))
            .route("/assets/{file}", web::get().to(assets::asset))
            .route("/overview", web::get().to(overview::overview))
            .route("/users", web::get().to(users::find))
            .route("/users/{id}", web::get().to(users::show))
            .route("/purchases", web::get().to(purchases::list))
            .route(
                "/purchases/{id}/deliver",
                web::post().to(purchases::deliver),
            )
            .route("/purchases/{id}/fail", web::get().to(purchases::fail_form))
            .route("/purchases/{id}/fail", web::post().to(purchases::fail))
            .route("/projections", web::get().to(projections::show))
            .route("/projections/rebuild", web::post().to(projections::rebuild))
            .route("/audit", web::get().to(audit::show))
            .route("/audit/verify", web::post().to(audit::verify))
            .route("/audit/balances", web::post().to(audit::balances))
            .route("/audit/export", web::get().to(audit::export))
            .route("/events", web::get().to(events::list))
            .route("/events/{position}", web::get().to(events::show))
            .default_service(web::to(not_found)),
    );
}

async fn home() -> HttpResponse {
    see_other("/console/overview")
}

/// No such page: an HTML error page, but under `/console/api/` (the console's JSON) the
/// API's JSON 404, as for any other path or method no route has.
async fn not_found(request: HttpRequest, visit: Visit) -> Result<HttpResponse, actix_web::Error> {
    if request.path().starts_with("/console/api/") {
        return Err(ApiError::new(ErrorCode::NotFound, "no such route").into());
    }
    Err(visit
        .refuse(StatusCode::NOT_FOUND, "not_found", visit.texts().no_page)
        .into())
}

fn bad_input(request: &HttpRequest, code: &str, detail: String) -> actix_web::Error {
    let visit = Visit::of(request);
    let message = format!("{}: {detail}", visit.texts().bad_input);
    visit.refuse(StatusCode::BAD_REQUEST, code, message).into()
}
