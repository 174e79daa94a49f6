//! Races at the front door of the built `starledger serve`:
//!
//! - a flood of duplicate and out-of-order Heleket webhooks (a late `paid` after `cancel`,
//!   `check` after `paid`, `paid_over` and `paid` for one invoice, `refund_paid` after the
//!   credit, another coin, an AML hold, …), every webhook delivered several times at once, for
//!   many recharges at once: each invoice ends as the ledger's rules give for the order its
//!   webhooks were recorded in (credited at most once, a failure after a credit reversed, a
//!   foreign coin or a missing amount reviewed), and each balance is the sum of what stays
//!   credited;
//! - many clients buying from one account at once, with distinct idempotency keys and some
//!   keys sent twice at the same moment: never overdrawn, exactly floor(balance / price)
//!   purchases succeed, the rest are 422 `insufficient_funds`, a repeated key buys once.
//!
//! Both end with `starledger audit verify`. Each runs on PostgreSQL (with Redis when
//! `TEST_REDIS_URL` is set; skipped with a reason without `TEST_DATABASE_URL`, a failure
//! under CI) and on the embedded SQLite file. `STARLEDGER_RACE_SCALE` multiplies the
//! recharges and the buyers for a soak (1 in CI).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use starledger_e2e::{
    audit_result, log_length, order_id, sign_webhook, soak, wait_for_projections, Deployment,
    Server, HELEKET_KEY, SERVICE_KEY,
};

/// What every recharge of the flood asks for (the invoice `amount`).
const INVOICE_AMOUNT: &str = "10";
/// How many copies of each webhook are delivered at the same moment.
const COPIES: usize = 4;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|_| panic!("{text:?} is not a decimal"))
}

/// A decimal field of a JSON answer or event, which the API always writes as a string.
fn decimal_of(value: &Value) -> Decimal {
    decimal(
        value
            .as_str()
            .unwrap_or_else(|| panic!("{value} is not a string")),
    )
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// One webhook of a scenario: Heleket's status, the coin paid (`payer_currency`) and, for a
/// payment, the `payment_amount` (`None`: the field is absent).
#[derive(Debug, Clone, Copy)]
struct Delivery {
    status: &'static str,
    coin: &'static str,
    paid: Option<&'static str>,
}

const fn webhook(status: &'static str, paid: Option<&'static str>) -> Delivery {
    Delivery {
        status,
        coin: "TON",
        paid,
    }
}

const fn in_coin(status: &'static str, coin: &'static str, paid: &'static str) -> Delivery {
    Delivery {
        status,
        coin,
        paid: Some(paid),
    }
}

/// The sequences Heleket may send for one invoice, in the order it sends them.
const SCENARIOS: &[&[Delivery]] = &[
    // A late payment after the invoice was cancelled still counts: the money arrived.
    &[webhook("cancel", None), webhook("paid", Some("10"))],
    &[webhook("paid", Some("10")), webhook("check", None)],
    &[
        webhook("paid_over", Some("10.5")),
        webhook("paid", Some("10")),
    ],
    &[
        webhook("paid", Some("10")),
        webhook("paid_over", Some("10.5")),
    ],
    // A refund after the credit takes the credit back.
    &[webhook("paid", Some("10")), webhook("refund_paid", None)],
    // `paid` without `payment_amount` is not guessed: it waits for an operator.
    &[
        webhook("check", None),
        webhook("process", None),
        webhook("paid", None),
    ],
    // An underpayment credits what arrived.
    &[
        webhook("wrong_amount", Some("7")),
        webhook("paid_over", Some("10.5")),
    ],
    &[
        webhook("cancel", None),
        webhook("fail", None),
        webhook("system_fail", None),
    ],
    &[webhook("confirm_check", None)],
    // A final failure after the credit reverses it; a failed refund after that changes nothing.
    &[
        webhook("paid", Some("9.999999999")),
        webhook("cancel", None),
        webhook("refund_fail", None),
    ],
    // Another coin, or more than the tolerance: reviewed, never credited by itself.
    &[
        in_coin("paid", "USDT", "30"),
        webhook("paid_over", Some("10.5")),
    ],
    &[webhook("paid_over", Some("15"))],
    // An AML hold, then the payment.
    &[webhook("locked", Some("10")), webhook("paid", Some("10"))],
];

/// The tolerance the server runs with (the default).
const TOLERANCE: &str = "1.1";

/// Where a recharge stands, in the model of the ledger's rules the flood is checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Model {
    Pending,
    OnHold,
    Review,
    Failed,
    /// Closed by a failure after an operator had been asked to review it.
    FailedAfterReview,
    Settled(Decimal),
    Reversed,
}

/// The ledger's rules for one delivery, as docs/api.md, "Heleket webhooks", states them: the new
/// state, or `None` when the delivery changes nothing.
fn step(state: Model, delivery: &Delivery) -> Option<Model> {
    use Model::*;
    let invoice = decimal(INVOICE_AMOUNT);
    let creditable = matches!(state, Pending | OnHold | Failed);
    match delivery.status {
        // Once reviewed, every report of money goes to the operator again.
        "paid" | "paid_over" | "wrong_amount" | "refund_fail"
            if matches!(state, Review | FailedAfterReview) =>
        {
            Some(Review)
        }
        "paid" | "paid_over" | "wrong_amount" if creditable => {
            let Some(paid) = delivery.paid.map(decimal) else {
                return Some(Review);
            };
            let consistent = match delivery.status {
                "wrong_amount" => paid < invoice,
                "paid_over" => paid > invoice,
                _ => true,
            };
            if delivery.coin != "TON" || !consistent || paid > invoice * decimal(TOLERANCE) {
                Some(Review)
            } else {
                Some(Settled(paid))
            }
        }
        "locked" if state == Pending => Some(OnHold),
        "fail" | "cancel" | "system_fail" | "refund_paid" => match state {
            Pending | OnHold => Some(Failed),
            Review => Some(FailedAfterReview),
            Settled(_) => Some(Reversed),
            Failed | FailedAfterReview | Reversed => None,
        },
        "refund_fail" if creditable => Some(Review),
        _ => None,
    }
}

/// What a flow ends as when its deliveries are recorded in `order`, and how many events that
/// records.
fn model(order: &[Delivery]) -> (Model, usize) {
    let mut state = Model::Pending;
    let mut recorded = 0;
    for delivery in order {
        if let Some(next) = step(state, delivery) {
            state = next;
            recorded += 1;
        }
    }
    (state, recorded)
}

/// One recharge of the flood and what happened to its webhooks.
struct Flow {
    user: i64,
    recharge_id: String,
    scenario: &'static [Delivery],
    /// Status by status, each status's copies awaited before the next (the order Heleket
    /// chose); otherwise every copy of every status at once, in no particular order.
    ordered: bool,
    bodies: Vec<Value>,
    /// `result` of every answer, by status.
    results: BTreeMap<&'static str, Vec<String>>,
    problems: Vec<String>,
}

fn signed_webhook(user: i64, recharge: &Value, delivery: &Delivery) -> Value {
    let mut body = json!({
        "type": "payment",
        "uuid": recharge["invoice_uuid"],
        "order_id": order_id(user, recharge),
        "amount": INVOICE_AMOUNT,
    });
    if let Some(paid) = delivery.paid {
        body["payment_amount"] = json!(paid);
        body["payer_amount"] = json!(paid);
        body["merchant_amount"] = json!(paid);
    }
    body["network"] = json!("ton");
    body["currency"] = json!("TON");
    body["payer_currency"] = json!(delivery.coin);
    body["status"] = json!(delivery.status);
    body["is_final"] = json!(!matches!(
        delivery.status,
        "check" | "process" | "confirm_check" | "locked"
    ));
    body["txid"] = json!(format!(
        "tx-{}",
        recharge["invoice_uuid"].as_str().unwrap_or("")
    ));
    sign_webhook(body, HELEKET_KEY)
}

/// Delivers `body` `copies` times at once; returns each answer's `result`, or what was
/// wrong with the answer.
async fn deliver(
    http: &reqwest::Client,
    base: &str,
    body: &Value,
    copies: usize,
) -> Vec<Result<String, String>> {
    let text = body.to_string();
    let sends = (0..copies).map(|_| {
        http.post(format!("{base}/webhooks/heleket"))
            .header("Content-Type", "application/json")
            .body(text.clone())
            .send()
    });
    let mut results = Vec::new();
    for answer in join_all(sends).await {
        let result = match answer {
            Ok(response) => {
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                match body["result"].as_str() {
                    Some(result @ ("recorded" | "duplicate" | "ignored"))
                        if status == StatusCode::OK =>
                    {
                        Ok(result.to_owned())
                    }
                    _ => Err(format!("{status} {body}")),
                }
            }
            Err(error) => Err(format!("no answer: {error}")),
        };
        results.push(result);
    }
    results
}

async fn run_flow(mut flow: Flow, http: reqwest::Client, base: String) -> Flow {
    let mut outcomes = Vec::new();
    if flow.ordered {
        for (delivery, body) in flow.scenario.iter().zip(&flow.bodies) {
            let results = deliver(&http, &base, body, COPIES).await;
            outcomes.extend(results.into_iter().map(|r| (delivery.status, r)));
        }
    } else {
        let all = flow
            .scenario
            .iter()
            .zip(&flow.bodies)
            .map(|(delivery, body)| {
                let (http, base) = (&http, &base);
                async move {
                    let results = deliver(http, base, body, COPIES).await;
                    results.into_iter().map(move |r| (delivery.status, r))
                }
            });
        outcomes.extend(join_all(all).await.into_iter().flatten());
    }
    for (status, result) in outcomes {
        match result {
            Ok(result) => flow.results.entry(status).or_default().push(result),
            Err(problem) => flow
                .problems
                .push(format!("{} {status}: {problem}", flow.recharge_id)),
        }
    }
    flow
}

/// The recharge events a delivery can record.
const RECHARGE_OUTCOMES: &[&str] = &[
    "RechargeSettled",
    "RechargeFailed",
    "RechargeHeld",
    "RechargeReviewRequired",
    "RechargeReversed",
];

/// The events about `recharge_id` that webhooks recorded, in log order.
fn outcomes_of<'a>(log: &'a [Value], recharge_id: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|e| {
            RECHARGE_OUTCOMES.contains(&e["event_type"].as_str().unwrap_or_default())
                && e["data"]["recharge_id"] == recharge_id
        })
        .collect()
}

/// Every order in which a flow's statuses could have been recorded.
fn orders(scenario: &[Delivery]) -> Vec<Vec<Delivery>> {
    if scenario.len() <= 1 {
        return vec![scenario.to_vec()];
    }
    let mut all = Vec::new();
    for (i, first) in scenario.iter().enumerate() {
        let mut rest = scenario.to_vec();
        rest.remove(i);
        for mut tail in orders(&rest) {
            tail.insert(0, *first);
            all.push(tail);
        }
    }
    all
}

/// Checks one flow against the log; returns what it leaves credited.
fn check_flow(flow: &Flow, log: &[Value], problems: &mut Vec<String>) -> Decimal {
    let name = format!(
        "{} ({}, {:?})",
        flow.recharge_id,
        if flow.ordered { "in order" } else { "at once" },
        flow.scenario.iter().map(|d| d.status).collect::<Vec<_>>()
    );
    let events = outcomes_of(log, &flow.recharge_id);
    let recorded: usize = flow
        .results
        .values()
        .flatten()
        .filter(|r| r.as_str() == "recorded")
        .count();
    if recorded != events.len() {
        problems.push(format!(
            "{name}: {recorded} answers said `recorded`, the log holds {} events for it",
            events.len()
        ));
    }
    // What the log says it ended as.
    let mut ended = Model::Pending;
    for event in &events {
        ended = match event["event_type"].as_str().unwrap_or_default() {
            "RechargeSettled" => Model::Settled(decimal_of(&event["data"]["credited"])),
            "RechargeFailed" if ended == Model::Review => Model::FailedAfterReview,
            "RechargeFailed" => Model::Failed,
            "RechargeHeld" => Model::OnHold,
            "RechargeReviewRequired" => Model::Review,
            _ => Model::Reversed,
        };
    }
    // In order, exactly what the rules give; at once, what one of the possible orders gives.
    let possible: Vec<(Model, usize)> = if flow.ordered {
        vec![model(flow.scenario)]
    } else {
        orders(flow.scenario).iter().map(|o| model(o)).collect()
    };
    if !possible.contains(&(ended, events.len())) {
        problems.push(format!(
            "{name}: ended {ended:?} after {} events; the rules allow {possible:?}",
            events.len()
        ));
    }
    let settled = events
        .iter()
        .filter(|e| e["event_type"] == "RechargeSettled")
        .count();
    if settled > 1 {
        problems.push(format!("{name}: credited {settled} times"));
    }
    match ended {
        Model::Settled(credited) => credited,
        _ => Decimal::ZERO,
    }
}

async fn register(http: &reqwest::Client, base: &str, user: i64) {
    let answer = http
        .post(format!("{base}/v1/users"))
        .bearer_auth(SERVICE_KEY)
        .json(&json!({"user_id": user, "username": format!("racer_{user}"), "language": "en"}))
        .send()
        .await
        .expect("register");
    assert_eq!(answer.status(), StatusCode::CREATED, "register {user}");
}

async fn request_recharge(http: &reqwest::Client, base: &str, user: i64, amount: &str) -> Value {
    let answer = http
        .post(format!("{base}/v1/users/{user}/recharges"))
        .bearer_auth(SERVICE_KEY)
        .json(&json!({"amount": amount}))
        .send()
        .await
        .expect("recharge");
    assert_eq!(answer.status(), StatusCode::CREATED, "recharge for {user}");
    answer.json().await.expect("recharge JSON")
}

async fn balance(http: &reqwest::Client, base: &str, user: i64, position: u64) -> Value {
    let answer = http
        .get(format!(
            "{base}/v1/users/{user}/balance?min_position={position}"
        ))
        .bearer_auth(SERVICE_KEY)
        .send()
        .await
        .expect("balance");
    assert_eq!(answer.status(), StatusCode::OK, "balance of {user}");
    answer.json().await.expect("balance JSON")
}

/// Every balance the `/v1/audit/balances` job replays from the log: none may be negative.
async fn assert_no_negative_balance(http: &reqwest::Client, base: &str) {
    let balances = audit_result(http, base, "/v1/audit/balances").await;
    for row in balances["balances"].as_array().expect("balances") {
        for field in ["available", "reserved", "total"] {
            assert!(
                decimal_of(&row[field]) >= Decimal::ZERO,
                "negative {field} balance: {row}"
            );
        }
    }
}

async fn webhook_flood(deployment: Deployment) {
    let scale = soak("STARLEDGER_RACE_SCALE", 1) as i64;
    let (users, per_user) = (6 * scale, 6);
    let http = http();
    let base = deployment.base();
    let mut server = Server::start_healthy(&deployment, &http).await;

    let mut flows = Vec::new();
    for u in 0..users {
        let user = 41_000 + u;
        register(&http, &base, user).await;
        for _ in 0..per_user {
            let recharge = request_recharge(&http, &base, user, INVOICE_AMOUNT).await;
            let n = flows.len();
            let scenario = SCENARIOS[n % SCENARIOS.len()];
            flows.push(Flow {
                user,
                recharge_id: recharge["recharge_id"]
                    .as_str()
                    .expect("recharge_id")
                    .to_owned(),
                scenario,
                ordered: (n / SCENARIOS.len()).is_multiple_of(2),
                bodies: scenario
                    .iter()
                    .map(|delivery| signed_webhook(user, &recharge, delivery))
                    .collect(),
                results: BTreeMap::new(),
                problems: Vec::new(),
            });
        }
    }
    let before = log_length(&http, &base).await;
    // Every recharge's webhooks at once, each one in several copies.
    let tasks: Vec<_> = flows
        .into_iter()
        .map(|flow| tokio::spawn(run_flow(flow, http.clone(), base.clone())))
        .collect();
    let mut flows = Vec::new();
    for task in tasks {
        flows.push(task.await.expect("a webhook flow panicked"));
    }
    let after_flood = log_length(&http, &base).await;

    // Heleket keeps retrying what it thinks we missed: every webhook once more, all at once.
    // None may record anything now.
    let again = flows
        .iter()
        .flat_map(|flow| flow.bodies.iter())
        .map(|body| {
            let (http, base) = (&http, &base);
            async move { deliver(http, base, body, 1).await }
        });
    let mut problems: Vec<String> = flows.iter().flat_map(|f| f.problems.clone()).collect();
    for result in join_all(again).await.into_iter().flatten() {
        match result {
            Ok(result) if result != "recorded" => {}
            other => problems.push(format!("a re-delivered webhook: {other:?}")),
        }
    }
    assert_eq!(
        log_length(&http, &base).await,
        after_flood,
        "re-delivered webhooks appended events"
    );
    server.assert_running();
    wait_for_projections(&http, &base).await;

    let log = deployment.export();
    let head = log.last().and_then(|e| e["position"].as_u64()).unwrap_or(0);
    let mut expected: HashMap<i64, Decimal> = HashMap::new();
    for flow in &flows {
        *expected.entry(flow.user).or_default() += check_flow(flow, &log, &mut problems);
    }
    let settled = log
        .iter()
        .filter(|e| e["event_type"] == "RechargeSettled")
        .count();
    let failed = log
        .iter()
        .filter(|e| e["event_type"] == "RechargeFailed")
        .count();
    let recharge_outcomes = log
        .iter()
        .filter(|e| RECHARGE_OUTCOMES.contains(&e["event_type"].as_str().unwrap_or_default()))
        .count();
    assert_eq!(
        (after_flood - before) as usize,
        recharge_outcomes,
        "the flood appended something that is not a recharge's outcome"
    );
    for (user, credited) in &expected {
        let answer = balance(&http, &base, *user, head).await;
        for field in ["available", "total"] {
            if decimal_of(&answer[field]) != *credited {
                problems.push(format!(
                    "user {user}: {field} {} but the credits add up to {credited}",
                    answer[field]
                ));
            }
        }
        if decimal_of(&answer["reserved"]) != Decimal::ZERO {
            problems.push(format!("user {user}: reserved {}", answer["reserved"]));
        }
    }
    assert!(
        problems.is_empty(),
        "on {}:\n{}\nstderr:\n{}",
        deployment.name(),
        problems.join("\n"),
        server.stderr_tail()
    );
    assert_no_negative_balance(&http, &base).await;
    eprintln!(
        "{}: {} recharges, {} webhooks delivered {COPIES} times at once and once more: {settled} \
         credits, {failed} failures, {} events in all",
        deployment.name(),
        flows.len(),
        flows.iter().map(|f| f.bodies.len()).sum::<usize>(),
        log.len()
    );
    server.stop().await;
    deployment.verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_and_out_of_order_webhooks_credit_each_invoice_once_on_postgres() {
    if let Some(deployment) = Deployment::postgres("the webhook flood").await {
        webhook_flood(deployment).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_and_out_of_order_webhooks_credit_each_invoice_once_on_sqlite() {
    webhook_flood(Deployment::sqlite()).await;
}

// ---------------------------------------------------------------------------------------------
// Purchases

/// What one purchase request got.
struct Bought {
    key: String,
    status: StatusCode,
    replayed: bool,
    body: Value,
}

async fn buy(http: reqwest::Client, base: String, user: i64, key: String) -> Bought {
    let response = http
        .post(format!("{base}/v1/users/{user}/purchases"))
        .bearer_auth(SERVICE_KEY)
        .header("Idempotency-Key", &key)
        .json(&json!({"stars": 50, "recipient": "@race_friend"}))
        .send()
        .await
        .unwrap_or_else(|error| panic!("purchase {key}: no answer: {error}"));
    let status = response.status();
    let replayed = response.headers().contains_key("Idempotent-Replayed");
    let body = response.json().await.unwrap_or(Value::Null);
    Bought {
        key,
        status,
        replayed,
        body,
    }
}

async fn purchase_race(deployment: Deployment) {
    let scale = soak("STARLEDGER_RACE_SCALE", 1) as usize;
    // 50 stars at 0.01 with no markup: 0.5 each, so 10.3 pays for exactly 20.
    let deployment = deployment
        .with("STAR_PRICE", "0.01")
        .with("STAR_MARKUP_PERCENT", "0");
    let (funds, keys, repeated) = ("10.3", 60 * scale, 20 * scale);
    let base = deployment.base();
    let setup = http();
    let mut server = Server::start_healthy(&deployment, &setup).await;
    let user = 42_001;
    register(&setup, &base, user).await;
    let recharge = request_recharge(&setup, &base, user, funds).await;
    let paid = setup
        .post(format!(
            "{base}/sandbox/heleket/invoices/{}/pay",
            recharge["invoice_uuid"].as_str().expect("invoice_uuid")
        ))
        .bearer_auth(SERVICE_KEY)
        .json(&json!({"status": "paid"}))
        .send()
        .await
        .expect("pay");
    assert_eq!(paid.status(), StatusCode::OK, "sandbox payment");
    let head = log_length(&setup, &base).await;
    assert_eq!(
        balance(&setup, &base, user, head).await["available"],
        funds,
        "the funding"
    );

    // Many clients (each its own connection pool), every key once, some keys twice at once.
    let clients: Vec<reqwest::Client> = (0..16).map(|_| http()).collect();
    let mut sends = Vec::new();
    for n in 0..keys {
        let key = format!("race-{n}");
        let copies = if n < repeated { 2 } else { 1 };
        for copy in 0..copies {
            let client = clients[(n + copy) % clients.len()].clone();
            sends.push(tokio::spawn(buy(client, base.clone(), user, key.clone())));
        }
    }
    let mut by_key: BTreeMap<String, Vec<Bought>> = BTreeMap::new();
    for send in sends {
        let bought = send.await.expect("a buyer panicked");
        by_key.entry(bought.key.clone()).or_default().push(bought);
    }

    let mut problems = Vec::new();
    let mut purchase_ids = Vec::new();
    let mut price = None;
    for (key, answers) in &by_key {
        let first = &answers[0];
        match first.status {
            StatusCode::CREATED => {
                let id = &first.body["purchase_id"];
                if answers
                    .iter()
                    .any(|a| a.status != StatusCode::CREATED || &a.body["purchase_id"] != id)
                {
                    problems.push(format!("{key}: copies answered differently"));
                }
                if answers.iter().filter(|a| !a.replayed).count() != 1 {
                    problems.push(format!("{key}: not exactly one copy recorded the purchase"));
                }
                purchase_ids.push(id.as_str().unwrap_or_default().to_owned());
                price = Some(decimal_of(&first.body["price"]));
            }
            StatusCode::UNPROCESSABLE_ENTITY
                if first.body["error"]["code"] == "insufficient_funds" =>
            {
                // Funds only ever shrink here, so a refused key stays refused.
                if answers.iter().any(|a| a.status != first.status) {
                    problems.push(format!("{key}: copies answered differently"));
                }
            }
            other => problems.push(format!("{key}: {other} {}", first.body)),
        }
    }
    let price = price.expect("no purchase succeeded");
    let affordable = (decimal(funds) / price).floor();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        Decimal::from(purchase_ids.len()),
        affordable,
        "{} purchases of {price} from {funds} succeeded",
        purchase_ids.len()
    );
    purchase_ids.sort();
    purchase_ids.dedup();
    assert_eq!(
        Decimal::from(purchase_ids.len()),
        affordable,
        "purchase ids repeat"
    );

    let head = log_length(&setup, &base).await;
    let after = balance(&setup, &base, user, head).await;
    let spent = price * affordable;
    assert_eq!(decimal_of(&after["reserved"]), spent, "{after}");
    assert_eq!(
        decimal_of(&after["available"]),
        decimal(funds) - spent,
        "{after}"
    );
    assert!(decimal_of(&after["available"]) >= Decimal::ZERO);
    assert_no_negative_balance(&setup, &base).await;
    wait_for_projections(&setup, &base).await;
    server.stop().await;
    let log = deployment.export();
    let recorded = log
        .iter()
        .filter(|e| e["event_type"] == "PurchaseRequested")
        .count();
    assert_eq!(
        Decimal::from(recorded),
        affordable,
        "the log holds {recorded} purchases"
    );
    eprintln!(
        "{}: {} requests for {keys} keys ({repeated} sent twice at once) on a balance of \
         {funds}: {recorded} purchases of {price}, the rest insufficient_funds",
        deployment.name(),
        keys + repeated,
    );
    deployment.verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_purchases_on_one_account_never_overdraw_on_postgres() {
    if let Some(deployment) = Deployment::postgres("the purchase race").await {
        purchase_race(deployment).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_purchases_on_one_account_never_overdraw_on_sqlite() {
    purchase_race(Deployment::sqlite()).await;
}
