//! The auditors' whole-log replays (`verify`, `balances` at a moment) as background jobs.
//!
//! A replay of a large log takes long and much memory, so a request only starts one (202 and
//! a `Location`) and the job runs on the main runtime, outside any HTTP worker and any
//! request deadline. One audit job at a time per process ([`JobSlot`]): asking for the running
//! job again returns it, asking for another one is refused. The last job is kept, with its
//! result, until the next one replaces it: a verify report is small and kept as JSON; the
//! balances go to a [`BalanceSpool`] on disk and are read back a page at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use serde::Serialize;
use starledger_ledger::store::{EventStore, StoreError};
use starledger_projections::audit::{self, ReplaySettings, VerifyReport};
use starledger_projections::runtime::ProjectionError;
use starledger_projections::store::ReadStore;
use tokio::task::JoinError;
use utoipa::ToSchema;
use uuid::Uuid;

use super::balance_spool::{BalanceAt, BalanceSpool, SpoolError, SpoolWriter};
use super::error::ApiError;
use super::error_code::ErrorCode;
use super::jobs::{Job, JobSlot};
use super::state::AppState;
use super::wire::DecimalText;

/// What an auditor asked for. Two requests for the same thing share one running job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditRequest {
    /// `with_tables`: also every read model (`scope=all`), not the log alone (`scope=log`).
    Verify { with_tables: bool },
    /// Every balance at `at`; `None`: when the job starts.
    Balances { at: Option<DateTime<Utc>> },
}

impl AuditRequest {
    fn kind(&self) -> &'static str {
        match self {
            Self::Verify { .. } => "verify",
            Self::Balances { .. } => "balances",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// What a finished job found.
#[derive(Debug, Clone)]
pub enum AuditResult {
    /// The report, as the API shows it.
    Verify(Arc<VerifyAnswer>),
    Balances(Arc<BalanceSpool>),
}

/// One audit job and how it is going.
#[derive(Debug, Clone)]
pub struct AuditJob {
    pub id: Uuid,
    pub request: AuditRequest,
    /// Balances: the moment replayed to (the request's `at`, or when the job started).
    pub at: DateTime<Utc>,
    pub state: JobState,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub started_by: String,
    pub events_done: u64,
    pub events_total: u64,
    pub result: Option<AuditResult>,
    pub error: Option<String>,
}

impl Job for AuditJob {
    fn is_running(&self) -> bool {
        self.state == JobState::Running
    }
}

/// The last audit job of this process.
pub type AuditJobs = JobSlot<AuditJob>;

impl AuditJob {
    pub fn location(&self) -> String {
        format!("/v1/audit/jobs/{}", self.id)
    }

    fn params(&self) -> JobParams {
        match &self.request {
            AuditRequest::Verify { with_tables } => JobParams::Verify {
                scope: if *with_tables { "all" } else { "log" },
            },
            AuditRequest::Balances { .. } => JobParams::Balances { at: self.at },
        }
    }

    /// The job as the API shows it, with `result` as given.
    pub fn answer(&self, result: Option<JobResult>) -> AuditJobAnswer {
        AuditJobAnswer {
            id: self.id,
            kind: self.request.kind(),
            params: self.params(),
            state: self.state.name(),
            started_at: self.started_at,
            finished_at: self.finished_at,
            started_by: self.started_by.clone(),
            progress: Progress {
                events_done: self.events_done,
                events_total: self.events_total,
            },
            result,
            error: self.error.clone(),
        }
    }
}

/// An audit job (verify or balances at a moment) and how it is going. Jobs are per process,
/// one at a time; the last one is kept, with its result, until the next one starts.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditJob)]
pub struct AuditJobAnswer {
    id: Uuid,
    /// `verify` or `balances`.
    #[schema(example = "verify")]
    kind: &'static str,
    params: JobParams,
    /// `running`, `succeeded` or `failed`.
    #[schema(example = "running")]
    state: &'static str,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    /// The name of the key that started it.
    started_by: String,
    progress: Progress,
    /// Null until it succeeds. verify: the report; balances: one page of it (`cursor`,
    /// `limit`).
    result: Option<JobResult>,
    /// Why it failed.
    error: Option<String>,
}

/// What the job was asked: verify `{"scope": "all"|"log"}`; balances `{"at": time}` (the
/// request's `at`, or when the job started).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
enum JobParams {
    Verify {
        /// `all` or `log`.
        scope: &'static str,
    },
    Balances {
        at: DateTime<Utc>,
    },
}

/// How far a job has read.
#[derive(Debug, Serialize, ToSchema)]
struct Progress {
    /// Events read so far (a large log is read once per replay pass).
    events_done: u64,
    /// Events the job expects to read in all.
    events_total: u64,
}

/// A finished job's result.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum JobResult {
    Verify(VerifyAnswer),
    Balances(BalancesAt),
}

/// A page of every balance at `at`, in (user, currency) order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalancesAt {
    pub at: DateTime<Utc>,
    /// The rows, as the spool holds them.
    #[schema(value_type = Vec<BalanceAt>)]
    pub balances: Vec<serde_json::Value>,
    /// Balances in the whole result.
    pub count: u64,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<u64>,
}

/// The job a request started, or the same job already running.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditJobAccepted {
    job: AuditJobAnswer,
}

/// Starts the job `request` asks for, or finds it running; answers 202 with the job and its
/// `Location`. Another audit job running is 409 `audit_job_running`.
pub fn start(
    state: &AppState,
    started_by: &str,
    request: AuditRequest,
) -> Result<HttpResponse, ApiError> {
    let job = begin(state, started_by, request)?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", job.location()))
        .json(AuditJobAccepted {
            job: job.answer(None),
        }))
}

/// Starts the job `request` asks for, or finds it running with the same request, and returns
/// it; another audit job running is 409 `audit_job_running`.
pub fn begin(
    state: &AppState,
    started_by: &str,
    request: AuditRequest,
) -> Result<AuditJob, ApiError> {
    let now = Utc::now();
    let job = AuditJob {
        id: Uuid::new_v4(),
        at: match &request {
            AuditRequest::Balances { at: Some(at) } => *at,
            _ => now,
        },
        request,
        state: JobState::Running,
        started_at: now,
        finished_at: None,
        started_by: started_by.to_owned(),
        events_done: 0,
        events_total: 0,
        result: None,
        error: None,
    };
    let job = match state.audit_jobs.claim(job.clone()) {
        Ok(()) => {
            tracing::info!(id = %job.id, kind = job.request.kind(), by = started_by, "audit job started");
            spawn(state, &job);
            job
        }
        Err(Some(running)) if running.request == job.request => running,
        Err(Some(running)) => {
            return Err(ApiError::new(
                ErrorCode::AuditJobRunning,
                format!(
                    "audit job {} ({}) is running; one at a time: follow it at {} and ask again \
                     when it has finished",
                    running.id,
                    running.request.kind(),
                    running.location()
                ),
            ))
        }
        Err(None) => {
            return Err(ApiError::unavailable(
                "the audit jobs cannot be read",
                &"a job slot's lock is poisoned",
            ))
        }
    };
    Ok(job)
}

/// Why an audit job failed. Its text is the job's `error`, as auditors read it.
#[derive(Debug, thiserror::Error)]
enum AuditJobError {
    #[error("the event log is unavailable: {0}")]
    LogUnavailable(StoreError),
    /// The job's task panicked or was cancelled.
    #[error("the audit job stopped: {0}")]
    Stopped(JoinError),
    #[error(transparent)]
    Replay(#[from] ProjectionError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The task finishing the spool panicked or was cancelled.
    #[error(transparent)]
    SpoolStopped(JoinError),
}

/// Runs the job on the main runtime (not on the HTTP worker's), and records how it ended.
fn spawn(state: &AppState, job: &AuditJob) {
    let audit = state.audit.clone();
    let jobs = state.audit_jobs.clone();
    let (id, request, at) = (job.id, job.request.clone(), job.at);
    let runtime = state.runtime.clone();
    state.runtime.spawn(async move {
        let progress_jobs = jobs.clone();
        let progress = move |done, total| {
            progress_jobs.update(|j| {
                if j.id == id {
                    (j.events_done, j.events_total) = (done, total);
                }
            })
        };
        // A task of its own, so that even a panic ends the job as failed instead of leaving
        // it running forever (which would refuse every later audit).
        let work = runtime.spawn(async move {
            // On the standby only if it holds everything the primary holds now.
            let source = audit
                .complete()
                .await
                .map_err(AuditJobError::LogUnavailable)?;
            tracing::info!(%id, source = source.name, "audit job reads its copy of the log");
            run(source.events, source.read, request, at, progress).await
        });
        let outcome = work
            .await
            .unwrap_or_else(|error| Err(AuditJobError::Stopped(error)));
        jobs.update(|j| {
            if j.id != id {
                return;
            }
            j.finished_at = Some(Utc::now());
            match outcome {
                Ok(result) => {
                    j.state = JobState::Succeeded;
                    j.events_total = j.events_done;
                    j.result = Some(result);
                }
                Err(error) => {
                    tracing::error!(%id, %error, "audit job failed");
                    j.state = JobState::Failed;
                    j.error = Some(error.to_string());
                }
            }
        });
    });
}

async fn run(
    events: Arc<dyn EventStore>,
    read: Arc<dyn ReadStore>,
    request: AuditRequest,
    at: DateTime<Utc>,
    progress: impl FnMut(u64, u64) + Send,
) -> Result<AuditResult, AuditJobError> {
    let settings = ReplaySettings::default();
    match request {
        AuditRequest::Verify { with_tables } => {
            let read = with_tables.then_some(read.as_ref());
            let report = audit::verify_with(&events, read, settings, progress).await?;
            Ok(AuditResult::Verify(Arc::new(VerifyAnswer::from(&report))))
        }
        AuditRequest::Balances { .. } => {
            let mut writer = SpoolWriter::default();
            let mut failed = None;
            audit::balances_at_with(&events, at, settings, progress, |pass, row| {
                if failed.is_none() {
                    failed = writer.push(pass, &row).err();
                }
            })
            .await?;
            if let Some(error) = failed {
                return Err(error.into());
            }
            let spool = tokio::task::spawn_blocking(move || writer.finish())
                .await
                .map_err(AuditJobError::SpoolStopped)??;
            Ok(AuditResult::Balances(Arc::new(spool)))
        }
    }
}

/// A verification. Answered whether or not the ledger is sound: read `sound`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = VerifyReport)]
pub struct VerifyAnswer {
    /// No finding and no table difference.
    pub(crate) sound: bool,
    pub(crate) events: u64,
    pub(crate) head_position: u64,
    /// The hash of the last event, 64 hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub(crate) head_hash: String,
    /// Sum of all postings per currency; zero in a sound ledger.
    pub(crate) trial_balance: BTreeMap<String, DecimalText>,
    /// Broken hashes, postings or invariants.
    pub(crate) findings: Vec<String>,
    /// Each read model (by table name) against a fresh replay; empty with `scope=log`.
    pub(crate) tables: BTreeMap<String, TableCheck>,
    pub(crate) elapsed_ms: u64,
}

/// One read model against the replay.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TableCheck {
    /// The position the table reflected, compared at.
    pub(crate) checkpoint: u64,
    pub(crate) differences: Vec<TableDifference>,
}

/// A row that differs from the replay.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TableDifference {
    pub(crate) key: String,
    /// What the replay says (null: no such row).
    pub(crate) expected: Option<String>,
    /// What the table holds (null: missing).
    pub(crate) found: Option<String>,
}

impl From<&VerifyReport> for VerifyAnswer {
    fn from(report: &VerifyReport) -> Self {
        let tables = report
            .tables
            .iter()
            .map(|(table, (checkpoint, differences))| {
                let differences = differences
                    .iter()
                    .map(|d| TableDifference {
                        key: d.key.clone(),
                        expected: d.expected.clone(),
                        found: d.found.clone(),
                    })
                    .collect();
                (
                    table.name().to_owned(),
                    TableCheck {
                        checkpoint: *checkpoint,
                        differences,
                    },
                )
            })
            .collect();
        let trial_balance = report
            .ledger
            .totals
            .iter()
            .map(|(currency, total)| (currency.to_string(), DecimalText::normalized(*total)))
            .collect();
        Self {
            sound: report.is_sound(),
            events: report.ledger.events,
            head_position: report.ledger.head_position,
            head_hash: report.ledger.head_hash.to_hex(),
            trial_balance,
            findings: report
                .ledger
                .findings
                .iter()
                .map(|f| f.to_string())
                .collect(),
            tables,
            elapsed_ms: report.elapsed.as_millis() as u64,
        }
    }
}
