//! The operators' console's security, over plain HTTP (the browser tests in `tests/console/`
//! drive the same pages in Chromium): who may sign in, the session cookie, the CSRF token on
//! every form, the auditor's read-only role enforced by the server, cross-site requests, the
//! page protections, and that a refused form changes nothing.

use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{redirect, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

/// A browser's view of the console: its cookies, kept by hand, and no redirects followed.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.base.clone(),
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, response: &Response) {
        for header in response.headers().get_all(SET_COOKIE) {
            let text = header.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String, Response) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&response);
        let status = response.status();
        let location = location(&response);
        (status, location, response)
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String, String) {
        self.post_with(path, form, &[]).await
    }

    async fn post_with(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (StatusCode, String, String) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .form(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        self.keep(&response);
        let status = response.status();
        let location = location(&response);
        (status, location, response.text().await.unwrap())
    }

    async fn page(&mut self, path: &str) -> String {
        let (status, _, response) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        response.text().await.unwrap()
    }

    /// Signs in with `key`; the answer's status and body (a redirect's is empty).
    async fn sign_in(&mut self, key: &str) -> (StatusCode, String, String) {
        let form = self.page("/console/sign-in").await;
        let csrf = hidden(&form, "csrf");
        self.post(
            "/console/sign-in",
            &[("key", key), ("csrf", &csrf), ("next", "/console/overview")],
        )
        .await
    }

    /// The session's CSRF token, from the sign-out form of any page.
    async fn csrf(&mut self) -> String {
        let page = self.page("/console/overview").await;
        hidden(&page, "csrf")
    }
}

fn location(response: &Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The value of the first hidden input named `name`.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

fn data_code(page: &str) -> &str {
    let marker = "data-code=\"";
    let start = page.find(marker).map(|i| i + marker.len()).unwrap_or(0);
    &page[start..start + page[start..].find('"').unwrap_or(0)]
}

async fn open_purchase(app: &TestApp, user: i64, key: &str) -> String {
    let bought = app
        .post_with_key(
            &format!("/v1/users/{user}/purchases"),
            SERVICE_KEY,
            key,
            &json!({"stars": 100, "recipient": "@console_buyer"}),
        )
        .await;
    assert_eq!(bought.status(), StatusCode::CREATED);
    let bought: Value = bought.json().await.unwrap();
    bought["purchase_id"].as_str().unwrap().to_owned()
}

async fn still_open(app: &TestApp, purchase: &str) -> bool {
    let listed: Value = app
        .get("/v1/admin/purchases", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    listed["purchases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["purchase"]["id"] == purchase)
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_and_auditors_sign_in_the_service_key_and_other_sites_never() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);

    // No session: every page sends the browser to sign in, and back afterwards.
    let (status, to, _) = browser.get("/console/users/7").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(to, "/console/sign-in?next=%2Fconsole%2Fusers%2F7");

    let (status, _, page) = browser.sign_in(SERVICE_KEY).await;
    assert_eq!(
        (status, data_code(&page)),
        (StatusCode::FORBIDDEN, "service_key")
    );
    let (status, _, page) = browser.sign_in("admin-key-0123456789xx").await;
    assert_eq!(
        (status, data_code(&page)),
        (StatusCode::UNAUTHORIZED, "bad_key")
    );
    // A sign-in form another site made: no matching token.
    let (status, _, page) = browser
        .post(
            "/console/sign-in",
            &[("key", ADMIN_KEY), ("csrf", &"0".repeat(64))],
        )
        .await;
    assert_eq!((status, data_code(&page)), (StatusCode::FORBIDDEN, "csrf"));

    let form = browser.page("/console/sign-in").await;
    let csrf = hidden(&form, "csrf");
    let response = browser
        .http
        .post(app.url("/console/sign-in"))
        .header(COOKIE, browser.cookie_header())
        .form(&[
            ("key", ADMIN_KEY),
            ("csrf", &csrf),
            ("next", "/console/users/7"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/console/users/7");
    let session_cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("starledger_console="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    assert!(
        !session_cookie.contains("Secure"),
        "plain HTTP: {session_cookie}"
    );
    browser.keep(&response);

    let (status, _, overview) = browser.get("/console/overview").await;
    assert_eq!(status, StatusCode::OK);
    let policy = overview.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe"),
        "{policy}"
    );
    assert_eq!(overview.headers()["X-Frame-Options"], "DENY");
    assert_eq!(overview.headers()["Cache-Control"], "no-store");
    let page = overview.text().await.unwrap();
    assert!(page.contains(r#"id="who" data-role="admin""#));
    assert!(!page.contains("<script>"), "no inline script");
    assert!(!page.contains(" style="), "no inline style");

    // A form posted from another site, even with the right token, finds no session.
    let csrf = browser.csrf().await;
    let (status, _, page) = browser
        .post_with(
            "/console/audit/verify",
            &[("csrf", &csrf), ("scope", "log")],
            &[("Sec-Fetch-Site", "cross-site")],
        )
        .await;
    assert_eq!(
        (status, data_code(&page)),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    assert!(app.state.audit_jobs.get().is_none(), "no job was started");

    // Sign-out ends the session on the server, not just in this browser.
    let cookie = browser.cookie_header();
    let (status, to, _) = browser.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/console/sign-in")
    );
    let replayed = browser
        .http
        .get(app.url("/console/overview"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::SEE_OTHER);

    // The console's JSON wants a session too, and says so in JSON.
    let json = reqwest::get(app.url("/console/api/rebuild")).await.unwrap();
    assert_eq!(
        error_code(json).await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".into())
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auditors_change_nothing_and_forms_without_their_token_change_nothing() {
    let app = spawn_app().await;
    app.funded_user(7101, "10").await;
    let first = open_purchase(&app, 7101, "console-1").await;
    let second = open_purchase(&app, 7101, "console-2").await;

    let mut auditor = Browser::new(&app);
    assert_eq!(auditor.sign_in(AUDITOR_KEY).await.0, StatusCode::SEE_OTHER);
    let listed = auditor.page("/console/purchases").await;
    assert!(
        listed.contains(&format!("data-purchase=\"{first}\"")),
        "{listed}"
    );
    assert!(
        !listed.contains("class=\"deliver\""),
        "no action is offered"
    );
    assert!(!auditor
        .page("/console/projections")
        .await
        .contains("id=\"rebuild\""));
    let csrf = auditor.csrf().await;
    for (path, form) in [
        (
            format!("/console/purchases/{first}/deliver"),
            vec![("csrf", csrf.as_str())],
        ),
        (
            format!("/console/purchases/{first}/fail"),
            vec![
                ("csrf", csrf.as_str()),
                ("reason", "audit"),
                ("force", "on"),
            ],
        ),
        (
            "/console/projections/rebuild".to_owned(),
            vec![("csrf", csrf.as_str()), ("projection", "all")],
        ),
    ] {
        let (status, _, page) = auditor.post(&path, &form).await;
        assert_eq!(
            (status, data_code(&page)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{path}"
        );
    }
    assert!(app.state.rebuilds.get().is_none(), "no rebuild started");
    // Auditors do run audits: they change nothing.
    let (status, to, _) = auditor
        .post(
            "/console/audit/verify",
            &[("csrf", &csrf), ("scope", "log")],
        )
        .await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/console/audit")
    );
    let job = app
        .state
        .audit_jobs
        .get()
        .expect("the auditor's verification");
    assert_eq!(job.started_by, "carol");
    app.finished_job(&job.location()).await;

    let mut admin = Browser::new(&app);
    assert_eq!(admin.sign_in(ADMIN_KEY).await.0, StatusCode::SEE_OTHER);
    // A forged form: no token, a wrong one, or the auditor's.
    for token in [None, Some("f".repeat(64)), Some(csrf.clone())] {
        let mut form = vec![];
        if let Some(token) = &token {
            form.push(("csrf", token.as_str()));
        }
        let (status, _, page) = admin
            .post(&format!("/console/purchases/{first}/deliver"), &form)
            .await;
        assert_eq!(
            (status, data_code(&page)),
            (StatusCode::FORBIDDEN, "csrf"),
            "{token:?}"
        );
    }
    assert!(still_open(&app, &first).await && still_open(&app, &second).await);

    // With its token the admin's decision is an ordinary ledger command, in their name.
    let csrf = admin.csrf().await;
    let (status, to, _) = admin
        .post(
            &format!("/console/purchases/{first}/deliver"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/console/purchases")
    );
    let after = admin.page("/console/purchases").await;
    assert!(after.contains("data-code=\"delivered\""), "{after}");
    assert!(!still_open(&app, &first).await);
    // Failing needs a reason.
    let (status, _, page) = admin
        .post(
            &format!("/console/purchases/{second}/fail"),
            &[("csrf", &csrf), ("reason", " ")],
        )
        .await;
    assert_eq!(
        (status, data_code(&page)),
        (StatusCode::UNPROCESSABLE_ENTITY, "reason_required")
    );
    assert!(still_open(&app, &second).await);
    let (status, _, _) = admin
        .post(
            &format!("/console/purchases/{second}/fail"),
            &[("csrf", &csrf), ("reason", "recipient unknown")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(!still_open(&app, &second).await);

    let log = app
        .get("/v1/audit/events?limit=1000", AUDITOR_KEY)
        .await
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decisions: Vec<&Value> = events
        .iter()
        .filter(|e| {
            ["PurchaseCompleted", "PurchaseFailed"].contains(&e["event_type"].as_str().unwrap())
        })
        .collect();
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    for event in decisions {
        assert_eq!(event["metadata"]["actor"], "admin:alice", "{event}");
    }
    app.assert_sound().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_tls_proxy_the_session_cookie_is_secure_and_host_only() {
    let app = spawn_app_with(Options {
        vars: vec![("TRUST_PROXY_HEADERS", "true".into())],
    })
    .await;
    let http = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap();
    let tls = [("X-Forwarded-Proto", "https")];
    let mut request = http.get(app.url("/console/sign-in"));
    for (name, value) in tls {
        request = request.header(name, value);
    }
    let form = request.send().await.unwrap();
    let sign_in_cookie = form.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(sign_in_cookie.contains("; Secure"), "{sign_in_cookie}");
    let token = sign_in_cookie.split(';').next().unwrap().to_owned();
    let csrf = hidden(&form.text().await.unwrap(), "csrf");
    let signed = http
        .post(app.url("/console/sign-in"))
        .header("X-Forwarded-Proto", "https")
        .header(COOKIE, token)
        .form(&[("key", ADMIN_KEY), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let session = signed
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-starledger_console="))
        .expect("the __Host- cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Domain"), "{session}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auditors_export_the_log_and_read_every_balance_at_a_moment() {
    let app = spawn_app().await;
    for user in [7201, 7202, 7203] {
        app.funded_user(user, "5").await;
    }
    let mut auditor = Browser::new(&app);
    assert_eq!(auditor.sign_in(AUDITOR_KEY).await.0, StatusCode::SEE_OTHER);

    // The export is the audit API's lines, streamed as a download.
    let (status, _, export) = auditor.get("/console/audit/export?from=2&to=7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(export.headers()["Content-Type"], "application/x-ndjson");
    assert!(export.headers()["Content-Disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment;"));
    let exported = export.text().await.unwrap();
    let api = app
        .get("/v1/audit/events?from=2&limit=5", AUDITOR_KEY)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(exported.lines().count(), 5);
    assert_eq!(exported, api);
    let (status, _, refused) = auditor.get("/console/audit/export?from=7&to=2").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        data_code(&refused.text().await.unwrap()),
        "invalid_position"
    );

    // Every balance at a moment, as a job, then read on the page.
    let csrf = auditor.csrf().await;
    let (status, _, _) = auditor
        .post(
            "/console/audit/balances",
            &[("csrf", &csrf), ("at", "yesterday")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(auditor
        .page("/console/audit")
        .await
        .contains("data-code=\"invalid_time\""));
    assert!(
        app.state.audit_jobs.get().is_none(),
        "no job for a moment that is not one"
    );
    let (status, _, _) = auditor
        .post("/console/audit/balances", &[("csrf", &csrf), ("at", "")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let job = app.state.audit_jobs.get().expect("the balances job");
    app.finished_job(&job.location()).await;
    let page = auditor.page("/console/audit").await;
    assert!(page.contains(r#"data-kind="balances""#) && page.contains(r#"data-state="succeeded""#));
    let table = &page[page.find(r#"id="balances-at""#).expect("the balances")..];
    for user in [7201, 7202, 7203] {
        assert!(table.contains(&format!(">{user}</a>")), "{user}: {table}");
    }
    assert!(
        !page.contains(r#"id="next-page""#),
        "three balances fit one page"
    );
    app.stop().await;
}
