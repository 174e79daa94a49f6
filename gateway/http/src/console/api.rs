//! The console's JSON: the progress of the running rebuild and audit job, which the pages'
//! script polls to update them in place. Authenticated by the console's session cookie (not
//! an API key), read-only, open to admins and auditors alike; in the API document under the
//! `console` tag.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{get, web, FromRequest, HttpRequest, HttpResponse};
use futures::future::{ready, Ready};
use utoipa_actix_web::service_config::ServiceConfig;

use super::visit::signed;
use crate::audit_jobs::{AuditResult, JobResult};
use crate::error::ApiError;
use crate::error_code::ErrorCode;
use crate::state::AppState;

/// The name of the console's cookie security scheme in the API document.
pub const CONSOLE_SESSION: &str = "console_session";

pub fn routes(config: &mut ServiceConfig) {
    config.service(rebuild).service(audit_job);
}

/// A console session, for JSON: 401 `unauthenticated` (as JSON) without one.
pub struct Session;

impl FromRequest for Session {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(signed(request, false).map(|_| Session).map_err(|_| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "sign in to the console first (/console/sign-in)",
            )
        }))
    }
}

fn fresh(body: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// Follow the console's rebuild
///
/// The last rebuild this instance started (from the console or the admin API), and how it
/// is going: what `GET /v1/admin/projections/rebuild` answers, for a console session.
#[utoipa::path(
    operation_id = "consoleRebuild",
    tag = "console",
    security(("console_session" = ["admin", "auditor"])),
    responses((status = 200, description = "The rebuild.", body = crate::admin::RebuildStatus)),
)]
#[get("/console/api/rebuild")]
async fn rebuild(state: web::Data<AppState>, _session: Session) -> Result<HttpResponse, ApiError> {
    match state.rebuilds.get() {
        Some(status) => Ok(fresh(status)),
        None => Err(ApiError::new(
            ErrorCode::NoRebuild,
            "no rebuild has been started by this instance",
        )),
    }
}

/// Follow the console's audit job
///
/// The last audit job of this instance (verify or balances at a moment), with a verify
/// job's report once it succeeded; a balances job's rows are read on the audit page.
#[utoipa::path(
    operation_id = "consoleAuditJob",
    tag = "console",
    security(("console_session" = ["admin", "auditor"])),
    responses((status = 200, description = "The job.", body = crate::audit_jobs::AuditJobAnswer)),
)]
#[get("/console/api/audit-job")]
async fn audit_job(
    state: web::Data<AppState>,
    _session: Session,
) -> Result<HttpResponse, ApiError> {
    let job = state
        .audit_jobs
        .get()
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownJob, "no audit job on this instance"))?;
    let result = match &job.result {
        Some(AuditResult::Verify(report)) => Some(JobResult::Verify(report.as_ref().clone())),
        _ => None,
    };
    Ok(fresh(job.answer(result)))
}
