//! The auditors' replays as background jobs: started with 202 and a `Location`, followed at
//! `/v1/audit/jobs/{id}` until they end with the report the synchronous routes used to give,
//! one at a time per instance, balances read back page by page.

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::Value;
use starledger_http::audit_jobs::{AuditJob, AuditRequest, JobState};

use crate::helpers::*;

/// A job that runs until the test says otherwise: real ones on a tiny log end too soon to
/// be caught running.
fn running(request: AuditRequest) -> AuditJob {
    AuditJob {
        id: uuid::Uuid::new_v4(),
        request,
        at: Utc::now(),
        state: JobState::Running,
        started_at: Utc::now(),
        finished_at: None,
        started_by: "carol".into(),
        events_done: 0,
        events_total: 10,
        result: None,
        error: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_starts_a_job_that_ends_with_the_report() {
    let app = spawn_app().await;
    app.funded_user(7001, "5").await;
    let events = app.log_length().await;

    let started = app.get("/v1/audit/verify", AUDITOR_KEY).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started.headers()["Location"].to_str().unwrap().to_owned();
    let body: Value = started.json().await.unwrap();
    let id = body["job"]["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/audit/jobs/{id}"));
    assert_eq!(body["job"]["kind"], "verify");
    assert_eq!(body["job"]["params"]["scope"], "all");
    assert_eq!(body["job"]["started_by"], "carol");

    let job = app.finished_job(&location).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["id"], id.as_str());
    assert!(job["finished_at"].is_string());
    assert_eq!(job["progress"]["events_done"], events);
    assert_eq!(job["progress"]["events_total"], events);
    let report = &job["result"];
    assert_eq!(report["sound"], true, "{report:#}");
    assert_eq!(report["events"], events);
    assert_eq!(report["head_position"], events);
    assert_eq!(report["head_hash"].as_str().unwrap().len(), 64);
    assert_eq!(report["trial_balance"]["TON"], "0");
    assert_eq!(report["findings"], serde_json::json!([]));
    for table in ["users", "balances", "transactions"] {
        assert_eq!(
            report["tables"][table]["differences"],
            serde_json::json!([])
        );
    }
    assert!(report["elapsed_ms"].is_u64());

    // POST works the same; the log-only scope compares no table.
    let log_only = app
        .http
        .post(app.url("/v1/audit/verify?scope=log"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(log_only.status(), StatusCode::ACCEPTED);
    let location = log_only.headers()["Location"].to_str().unwrap().to_owned();
    let job = app.finished_job(&location).await;
    assert_eq!(job["params"]["scope"], "log");
    assert_eq!(job["result"]["sound"], true);
    assert_eq!(job["result"]["tables"], serde_json::json!({}));
    // A new job replaced the last one.
    let replaced = app.get(&format!("/v1/audit/jobs/{id}"), AUDITOR_KEY).await;
    assert_eq!(
        error_code(replaced).await,
        (StatusCode::NOT_FOUND, "unknown_job".into())
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_audit_job_at_a_time_the_same_one_is_shared() {
    let app = spawn_app().await;
    let job = running(AuditRequest::Verify { with_tables: true });
    app.state.audit_jobs.claim(job.clone()).unwrap();
    let location = format!("/v1/audit/jobs/{}", job.id);

    // The same request joins the running job.
    for path in ["/v1/audit/verify", "/v1/audit/verify?scope=all"] {
        let same = app.get(path, AUDITOR_KEY).await;
        assert_eq!(same.status(), StatusCode::ACCEPTED, "{path}");
        assert_eq!(same.headers()["Location"], location.as_str());
        let body: Value = same.json().await.unwrap();
        assert_eq!(body["job"]["id"], job.id.to_string());
        assert_eq!(body["job"]["state"], "running");
    }
    // Another is refused, naming the running one.
    for path in ["/v1/audit/verify?scope=log", "/v1/audit/balances"] {
        let other = app.get(path, AUDITOR_KEY).await;
        assert_eq!(other.status(), StatusCode::CONFLICT, "{path}");
        let body: Value = other.json().await.unwrap();
        assert_eq!(body["error"]["code"], "audit_job_running");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&location), "{message}");
    }
    let followed: Value = app.get(&location, AUDITOR_KEY).await.json().await.unwrap();
    assert_eq!(followed["state"], "running");
    assert_eq!(followed["result"], Value::Null);
    assert_eq!(followed["progress"]["events_total"], 10);

    // Once it has ended, another job may start.
    app.state.audit_jobs.update(|j| j.state = JobState::Failed);
    let next = app.get("/v1/audit/balances", AUDITOR_KEY).await;
    assert_eq!(next.status(), StatusCode::ACCEPTED);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_jobs_need_an_auditor_and_a_known_id() {
    let app = spawn_app().await;
    for path in ["/v1/audit/verify", "/v1/audit/balances"] {
        let refused = app.get(path, SERVICE_KEY).await;
        assert_eq!(
            error_code(refused).await,
            (StatusCode::FORBIDDEN, "forbidden".into()),
            "{path}"
        );
        let refused = app
            .http
            .post(app.url(path))
            .bearer_auth(SERVICE_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "POST {path}");
    }
    let started = app.get("/v1/audit/verify", AUDITOR_KEY).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started.headers()["Location"].to_str().unwrap().to_owned();
    let refused = app.get(&location, SERVICE_KEY).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.finished_job(&location).await["state"], "succeeded");

    let unknown = format!("/v1/audit/jobs/{}", uuid::Uuid::new_v4());
    for path in [unknown.as_str(), "/v1/audit/jobs/not-a-job"] {
        assert_eq!(
            error_code(app.get(path, AUDITOR_KEY).await).await,
            (StatusCode::NOT_FOUND, "unknown_job".into()),
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn balances_come_back_page_by_page_in_user_order() {
    let app = spawn_app().await;
    for user in [7105, 7101, 7103, 7104, 7102] {
        app.funded_user(user, "2").await;
    }
    let started = app.get("/v1/audit/balances", AUDITOR_KEY).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started.headers()["Location"].to_str().unwrap().to_owned();
    let job = app.finished_job(&location).await;
    assert_eq!(job["kind"], "balances");
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["result"]["count"], 5);
    assert_eq!(job["result"]["at"], job["params"]["at"]);
    assert_eq!(job["result"]["balances"].as_array().unwrap().len(), 5);

    let page = |query: &str| {
        let request = app.get(&format!("{location}?{query}"), AUDITOR_KEY);
        async move {
            let response = request.await;
            assert_eq!(response.status(), StatusCode::OK);
            let job: Value = response.json().await.unwrap();
            job["result"].clone()
        }
    };
    let users = |result: &Value| -> Vec<i64> {
        result["balances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["user_id"].as_i64().unwrap())
            .collect()
    };
    let first = page("limit=2").await;
    assert_eq!(users(&first), [7101, 7102]);
    assert_eq!(first["next_cursor"], 2);
    assert_eq!(first["balances"][0]["available"], "2");
    assert_eq!(first["balances"][0]["total"], "2");
    let second = page("cursor=2&limit=2").await;
    assert_eq!(users(&second), [7103, 7104]);
    let last = page("cursor=4&limit=2").await;
    assert_eq!(users(&last), [7105]);
    assert_eq!(last["next_cursor"], Value::Null);

    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=10001", "invalid_limit"),
        ("cursor=6", "invalid_cursor"),
        ("cursor=x", "invalid_query"),
    ] {
        assert_eq!(
            error_code(app.get(&format!("{location}?{query}"), AUDITOR_KEY).await).await,
            (StatusCode::BAD_REQUEST, code.into()),
            "{query}"
        );
    }
    app.stop().await;
}
