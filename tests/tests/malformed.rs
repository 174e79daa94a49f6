//! Malformed input against every endpoint of the built `starledger serve`: broken JSON,
//! wrong types, control characters and over-long unicode / right-to-left / SQL-looking text,
//! oversized bodies (declared and chunked), huge, negative and zero numbers, unknown users
//! and bad path ids, bad query strings and idempotency keys, undocumented methods.
//!
//! The endpoints, their parameters and their example bodies are read from
//! `schemas/openapi.json` (generated from the registered handlers, and kept equal to what they
//! generate by `gateway/starledger/tests/openapi.rs`), so a new route is swept as soon as it
//! exists. Every case must be answered with a
//! 4xx in the API's error format (`{"error":{"code","message"}}`), never a 5xx; afterwards
//! the process is still alive, `/healthz` answers 200, the log holds exactly as many events
//! as before, and `starledger audit verify` passes.
//!
//! Hostile text the rules legitimately accept (a short SQL-looking, right-to-left or emoji
//! username) is not malformed: it is checked separately, stored and read back byte for byte.
//!
//! Runs on PostgreSQL with Redis (skipped with a reason without `TEST_DATABASE_URL`, a
//! failure under CI) and on the embedded SQLite file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use starledger_e2e::{log_length, Deployment, Server, ADMIN_KEY, SERVICE_KEY};

/// The body limit the sweep's server runs with (the default, stated so the test knows it).
const MAX_BODY_BYTES: usize = 65_536;
/// A registered user without money: commands on it are refused for lack of funds at worst.
const REGISTERED: i64 = 51_001;
/// A well-formed user id nobody registered.
const UNKNOWN: i64 = 51_999;

/// One request of the sweep.
struct Case {
    what: String,
    method: Method,
    /// Path and query, already percent-encoded where the case needs it.
    target: String,
    idempotency_key: Option<Vec<u8>>,
    body: Option<Payload>,
}

enum Payload {
    /// Sent with a `Content-Length`.
    Sized(Vec<u8>),
    /// Sent with `Transfer-Encoding: chunked`, so the server cannot refuse it by its declared
    /// size and must count what it reads.
    Chunked(Vec<u8>),
}

/// An operation of the document, with what a valid request to it would carry.
struct Operation {
    method: Method,
    template: String,
    query: Vec<String>,
    idempotency_key: bool,
    /// A valid request body (from the document's examples), if it takes one.
    body: Option<Map<String, Value>>,
    /// The required properties of the body.
    required: Vec<String>,
}

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/openapi.json");
    let text = std::fs::read_to_string(path).expect("schemas/openapi.json");
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("unresolvable {reference}")),
        None => value,
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut found = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            // The path item's shared parameters, then the operation's own.
            let parameters: Vec<&Value> = item["parameters"]
                .as_array()
                .into_iter()
                .chain(operation["parameters"].as_array())
                .flatten()
                .map(|p| resolve(doc, p))
                .collect();
            let query = parameters
                .iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str())
                .map(str::to_owned)
                .collect();
            let idempotency_key = parameters
                .iter()
                .any(|p| p["in"] == "header" && p["name"] == "Idempotency-Key");
            let content = operation
                .get("requestBody")
                .map(|b| &resolve(doc, b)["content"]["application/json"]);
            // Every field any example shows, with the first example's value: the valid
            // request each case breaks one thing of.
            let body = content.map(|c| {
                let mut merged = Map::new();
                let examples = c["examples"]
                    .as_object()
                    .into_iter()
                    .flat_map(|e| e.values())
                    .map(|e| resolve(doc, e)["value"].clone())
                    .chain(c.get("example").cloned());
                for example in examples {
                    for (field, value) in example.as_object().into_iter().flatten() {
                        merged.entry(field.clone()).or_insert_with(|| value.clone());
                    }
                }
                merged
            });
            let required = content
                .map(|c| resolve(doc, &c["schema"]))
                .and_then(|schema| schema["required"].as_array())
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            found.push(Operation {
                method,
                template: template.clone(),
                query,
                idempotency_key,
                body,
                required,
            });
        }
    }
    found
}

/// Texts no field accepts: control characters, Unicode format characters (bidi overrides and
/// isolates, zero-width characters, a byte-order mark), blank, and far over any length limit
/// (mixing Arabic, SQL and emoji).
fn hostile_texts() -> Vec<String> {
    let long: String = "مرحبا'; DROP TABLE events;--😀"
        .chars()
        .cycle()
        .take(5_000)
        .collect();
    vec![
        String::new(),
        "   \t ".to_owned(),
        "alice\u{0}bob".to_owned(),
        "\u{0}".to_owned(),
        "\u{1b}[31mred".to_owned(),
        "x\u{85}y".to_owned(),
        "line\nbreak".to_owned(),
        "alice\u{202e}gnp.exe".to_owned(),
        "isolate\u{2067}x\u{2069}".to_owned(),
        "zero\u{200b}width".to_owned(),
        "\u{feff}bom".to_owned(),
        long,
    ]
}

/// Path values that are not a user id, and one that is an id nobody registered.
fn bad_user_ids() -> Vec<String> {
    let mut ids: Vec<String> = [
        "0",
        "-1",
        "abc",
        "1.5",
        "1e3",
        "+7",
        "99999999999999999999",
        "9007199254740993",
        "%00",
        "1%00",
        "%F0%9F%98%80",
        "%E2%80%AE123",
        "%D9%A1%D9%A0",
        "1%20OR%201%3D1",
        "1'%3B%20DROP%20TABLE%20events%3B--",
        "%FF%FE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ids.push("9".repeat(300));
    ids.push(UNKNOWN.to_string());
    ids
}

fn bad_other_path_values() -> Vec<String> {
    [
        "unknown-invoice",
        "%00",
        "x%00y",
        "%F0%9F%98%80",
        "%E2%80%AEabc",
        "'%20OR%20'1'%3D'1",
        "%FF",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["x".repeat(2_000), uuid_like_but_unknown()])
    .collect()
}

fn uuid_like_but_unknown() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn bad_query_values() -> Vec<&'static str> {
    vec![
        "abc",
        "-1",
        "1.5",
        "99999999999999999999999",
        "",
        "%00",
        "1%3B%20DROP%20TABLE%20events",
        "%E2%80%AE1",
        "%F0%9F%98%80",
    ]
}

fn bad_idempotency_keys() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        b"has space".to_vec(),
        vec![b'k'; 151],
        vec![0xff, 0xfe],
        "caf\u{e9}".as_bytes().to_vec(),
        b"'; DROP TABLE events;--".to_vec(),
        b"tab\tkey".to_vec(),
    ]
}

/// Bodies that are not JSON or not an object.
fn broken_bodies() -> Vec<(String, Vec<u8>)> {
    let mut bodies: Vec<(String, Vec<u8>)> = [
        "",
        "{",
        "{\"",
        "[",
        "nul",
        "{}}",
        "{\"a\":1,}",
        "{'single':'quotes'}",
        "\u{feff}{}",
        "[]",
        "\"text\"",
        "42",
        "null",
        "true",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":1e99999}",
    ]
    .iter()
    .map(|b| (format!("body {b:?}"), b.as_bytes().to_vec()))
    .collect();
    bodies.push(("invalid UTF-8".into(), b"{\"a\":\"\xff\xfe\"}".to_vec()));
    bodies.push((
        "10,000 nested arrays".into(),
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
    ));
    bodies.push((
        "3,000 nested objects".into(),
        format!("{}1{}", "{\"a\":".repeat(3_000), "}".repeat(3_000)).into_bytes(),
    ));
    bodies
}

/// Replacements for a field holding a number or an amount: what no amount, count or id
/// accepts (out of range, signless zero, not finite, over-precise, not numbers at all).
/// `Err` values are raw JSON number tokens serde cannot even hold as a float.
fn hostile_numbers(string_form: bool) -> Vec<Result<Value, &'static str>> {
    if string_form {
        [
            "0",
            "-0",
            "0.0",
            "1e9999",
            "-1e9999",
            "NaN",
            "Infinity",
            "99999999999999999999999",
            "1000000000.000000001",
            "0.0000000001",
            "1;DROP TABLE events",
            "١٠",
            "1,5",
            " 1",
        ]
        .iter()
        .map(|s| Ok(json!(s)))
        .collect()
    } else {
        vec![
            Ok(json!(0)),
            Ok(json!(-1)),
            Ok(json!(1.5)),
            Ok(json!(i64::MIN)),
            Ok(json!(u64::MAX)),
            Err("99999999999999999999999999999"),
            Err("1e400"),
            Err("-1e400"),
        ]
    }
}

fn with_field(base: &Map<String, Value>, field: &str, value: &Value) -> Vec<u8> {
    let mut body = base.clone();
    body.insert(field.to_owned(), value.clone());
    Value::Object(body).to_string().into_bytes()
}

/// The body with `field` set to a raw JSON token (one that `Value` cannot hold).
fn with_raw_field(base: &Map<String, Value>, field: &str, raw: &str) -> Vec<u8> {
    let marker = "\"__sweep_raw__\"";
    let mut body = base.clone();
    body.insert(field.to_owned(), json!("__sweep_raw__"));
    Value::Object(body)
        .to_string()
        .replacen(marker, raw, 1)
        .into_bytes()
}

/// Every case for one operation. `path_values` are the placeholders' valid values.
fn cases_for(operation: &Operation, invoice: &str) -> Vec<Case> {
    let valid_value = |name: &str| match name {
        "id" => REGISTERED.to_string(),
        _ => invoice.to_owned(),
    };
    let fill = |overrides: &[(&str, &str)]| {
        let mut path = operation.template.clone();
        while let Some(start) = path.find('{') {
            let end = start + path[start..].find('}').expect("a closing brace");
            let name = path[start + 1..end].to_owned();
            let value = overrides
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| valid_value(&name));
            path.replace_range(start..=end, &value);
        }
        path
    };
    let key = operation.idempotency_key.then(|| b"sweep-key-1".to_vec());
    let mut base_body = operation.body.clone();
    if let Some(body) = base_body.as_mut() {
        // A registration must name a user nobody has, or a repeat would be a valid replay.
        if body.contains_key("user_id") {
            body.insert("user_id".into(), json!(UNKNOWN));
        }
    }
    let sized = |bytes: Vec<u8>| Some(Payload::Sized(bytes));
    let base_payload = || {
        base_body
            .as_ref()
            .and_then(|b| sized(Value::Object(b.clone()).to_string().into_bytes()))
    };
    let name = format!("{} {}", operation.method, operation.template);
    let mut cases = Vec::new();
    let mut case = |what: String, target: String, key: Option<Vec<u8>>, body: Option<Payload>| {
        cases.push(Case {
            what: format!("{name}: {what}"),
            method: operation.method.clone(),
            target,
            idempotency_key: key,
            body,
        })
    };

    // Path placeholders.
    let placeholders: Vec<String> = operation
        .template
        .split('{')
        .skip(1)
        .filter_map(|part| part.split('}').next())
        .map(str::to_owned)
        .collect();
    for placeholder in &placeholders {
        let values = if placeholder == "id" {
            bad_user_ids()
        } else {
            bad_other_path_values()
        };
        for value in values {
            let shown: String = value.chars().take(40).collect();
            case(
                format!("{{{placeholder}}} = {shown}"),
                fill(&[(placeholder, &value)]),
                key.clone(),
                base_payload(),
            );
        }
    }
    // Query parameters.
    for parameter in &operation.query {
        for value in bad_query_values() {
            case(
                format!("?{parameter}={value}"),
                format!("{}?{parameter}={value}", fill(&[])),
                key.clone(),
                base_payload(),
            );
        }
    }
    // The Idempotency-Key header.
    if operation.idempotency_key {
        for bad in bad_idempotency_keys() {
            case(
                format!("Idempotency-Key {:?}", String::from_utf8_lossy(&bad)),
                fill(&[]),
                Some(bad),
                base_payload(),
            );
        }
    }
    // The body.
    if let Some(base) = &base_body {
        for (what, bytes) in broken_bodies() {
            case(what, fill(&[]), key.clone(), sized(bytes));
        }
        let oversized = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_BODY_BYTES));
        case(
            "oversized body".into(),
            fill(&[]),
            key.clone(),
            sized(oversized.clone().into_bytes()),
        );
        case(
            "oversized chunked body".into(),
            fill(&[]),
            key.clone(),
            Some(Payload::Chunked(oversized.into_bytes())),
        );
        let mut unknown = base.clone();
        unknown.insert("x_sweep_unknown".into(), json!(1));
        case(
            "an unknown field".into(),
            fill(&[]),
            key.clone(),
            sized(Value::Object(unknown).to_string().into_bytes()),
        );
        for field in &operation.required {
            let mut missing = base.clone();
            missing.remove(field);
            case(
                format!("without {field}"),
                fill(&[]),
                key.clone(),
                sized(Value::Object(missing).to_string().into_bytes()),
            );
        }
        for (field, value) in base {
            let others: Vec<Value> = match value {
                Value::String(_) => vec![json!(12345), json!(true), json!([]), json!({})],
                Value::Number(_) => vec![json!("12345"), json!(true), json!([1]), json!({})],
                _ => vec![json!("text"), json!(12345), json!([]), json!({})],
            };
            for other in others {
                case(
                    format!("{field} = {other}"),
                    fill(&[]),
                    key.clone(),
                    sized(with_field(base, field, &other)),
                );
            }
            let numeric = value.is_number() || field.ends_with("amount");
            if numeric {
                for number in hostile_numbers(value.is_string()) {
                    let (what, bytes) = match number {
                        Ok(number) => (
                            format!("{field} = {number}"),
                            with_field(base, field, &number),
                        ),
                        Err(raw) => (format!("{field} = {raw}"), with_raw_field(base, field, raw)),
                    };
                    case(what, fill(&[]), key.clone(), sized(bytes));
                }
            } else if value.is_string() {
                for text in hostile_texts() {
                    let shown: String = text.chars().take(24).collect();
                    case(
                        format!("{field} = {shown:?}"),
                        fill(&[]),
                        key.clone(),
                        sized(with_field(base, field, &json!(text))),
                    );
                }
            }
        }
    }
    cases
}

/// A case's answer: the status and the body (`Null` when it is not JSON), or why there was
/// none.
type Outcome = Result<(u16, Value), String>;

async fn send(http: &reqwest::Client, base: &str, case: &Case) -> Outcome {
    if let Some(Payload::Chunked(bytes)) = &case.body {
        return send_chunked(base, case, bytes.clone()).await;
    }
    let mut request = http
        .request(case.method.clone(), format!("{base}{}", case.target))
        .bearer_auth(ADMIN_KEY);
    if let Some(key) = &case.idempotency_key {
        let value = HeaderValue::from_bytes(key).map_err(|e| format!("header: {e}"))?;
        request = request.header(HeaderName::from_static("idempotency-key"), value);
    }
    if let Some(Payload::Sized(bytes)) = &case.body {
        request = request
            .header("Content-Type", "application/json")
            .body(bytes.clone());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| format!("body: {e}"))?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// reqwest (without its `stream` feature) always declares a length; a chunked body is
/// written by hand.
async fn send_chunked(base: &str, case: &Case, bytes: Vec<u8>) -> Outcome {
    let address = base.trim_start_matches("http://").to_owned();
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n{}Connection: close\r\n\r\n",
        case.method,
        case.target,
        case.idempotency_key
            .as_ref()
            .map(|k| format!("Idempotency-Key: {}\r\n", String::from_utf8_lossy(k)))
            .unwrap_or_default()
    );
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&address).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut request = head.into_bytes();
        for chunk in bytes.chunks(8_192) {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        // The server may answer and close before reading it all; what it answered counts.
        let _ = stream.write_all(&request);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .and_then(|(_, body)| serde_json::from_str(body).ok())
            .unwrap_or(Value::Null);
        Ok((status, body))
    })
    .await
    .map_err(|e| format!("the chunked sender failed: {e}"))?
}

/// What is wrong with an answer to a malformed request, if anything.
fn judge(answer: &Outcome) -> Option<String> {
    match answer {
        Err(error) => Some(error.clone()),
        Ok((status, body)) => {
            let code = body["error"]["code"].as_str().unwrap_or_default();
            let message = body["error"]["message"].as_str();
            if !(400..500).contains(status) {
                Some(format!("{status} {body}"))
            } else if code.is_empty() || message.is_none() {
                Some(format!("{status} without the JSON error format: {body}"))
            } else {
                None
            }
        }
    }
}

async fn sweep(deployment: Deployment) {
    let deployment = deployment.with("MAX_BODY_BYTES", MAX_BODY_BYTES.to_string());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client");
    let base = deployment.base();
    let mut server = Server::start_healthy(&deployment, &http).await;

    let registered = http
        .post(format!("{base}/v1/users"))
        .bearer_auth(SERVICE_KEY)
        .json(&json!({"user_id": REGISTERED, "username": "sweep_user"}))
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), StatusCode::CREATED);
    let recharge: Value = http
        .post(format!("{base}/v1/users/{REGISTERED}/recharges"))
        .bearer_auth(SERVICE_KEY)
        .json(&json!({"amount": "1"}))
        .send()
        .await
        .expect("recharge")
        .json()
        .await
        .expect("recharge JSON");
    let invoice = recharge["invoice_uuid"]
        .as_str()
        .expect("invoice_uuid")
        .to_owned();
    let before = log_length(&http, &base).await;

    let doc = document();
    let operations = operations(&doc);
    assert!(
        operations.len() >= 15,
        "only {} operations in openapi.json: the reader is broken",
        operations.len()
    );
    let mut cases = Vec::new();
    for operation in &operations {
        let found = cases_for(operation, &invoice);
        eprintln!(
            "{} {}: {} cases",
            operation.method,
            operation.template,
            found.len()
        );
        cases.extend(found);
    }
    // A method the path does not have, on every path: the JSON 404.
    let paths: BTreeSet<&str> = operations.iter().map(|o| o.template.as_str()).collect();
    for path in paths {
        let taken: Vec<&Method> = operations
            .iter()
            .filter(|o| o.template == path)
            .map(|o| &o.method)
            .collect();
        let method = [Method::DELETE, Method::PATCH, Method::PUT]
            .into_iter()
            .find(|m| !taken.contains(&m))
            .expect("a method the path does not have");
        let target = path
            .replace("{id}", &REGISTERED.to_string())
            .replace("{uuid}", &invoice);
        cases.push(Case {
            what: format!("{method} {path} (not a documented method)"),
            method,
            target,
            idempotency_key: None,
            body: None,
        });
    }

    let started = std::time::Instant::now();
    let answers: Vec<(String, Outcome)> = stream::iter(&cases)
        .map(|case| {
            let (http, base) = (&http, &base);
            async move { (case.what.clone(), send(http, base, case).await) }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let swept = started.elapsed();
    let failures: Vec<String> = answers
        .iter()
        .filter_map(|(what, answer)| judge(answer).map(|why| format!("{what}: {why}")))
        .collect();
    // Which refusals the sweep met. An API key refused would make every case a 4xx for the
    // wrong reason and the sweep worthless: none may be.
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for (_, answer) in &answers {
        if let Ok((status, body)) = answer {
            let code = body["error"]["code"].as_str().unwrap_or("?");
            *codes.entry(format!("{status} {code}")).or_default() += 1;
        }
    }
    eprintln!("{}: answers {codes:?}", deployment.name());
    let refused_key: Vec<&String> = codes
        .keys()
        .filter(|c| c.ends_with(" unauthenticated") || c.ends_with(" forbidden"))
        .collect();
    assert!(
        refused_key.is_empty(),
        "the sweep's API key was refused: {refused_key:?}"
    );
    server.assert_running();
    assert!(
        failures.is_empty(),
        "{} of {} malformed requests on {} were not a clear 4xx:\n{}\nstderr:\n{}",
        failures.len(),
        cases.len(),
        deployment.name(),
        failures.join("\n"),
        server.stderr_tail()
    );
    let healthz = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("/healthz");
    assert_eq!(healthz.status(), StatusCode::OK, "/healthz after the sweep");
    assert_eq!(
        log_length(&http, &base).await,
        before,
        "malformed requests appended events"
    );

    // Hostile but valid text is data: stored and given back exactly, through parameterised
    // queries, never interpreted.
    let texts = json!({
        "user_id": UNKNOWN,
        "username": "Robert'); DROP TABLE events;--",
        "language": "ar-مرحبا-😀",
    });
    let answer = http
        .post(format!("{base}/v1/users"))
        .bearer_auth(SERVICE_KEY)
        .json(&texts)
        .send()
        .await
        .expect("register with hostile text");
    assert_eq!(
        answer.status(),
        StatusCode::CREATED,
        "hostile but valid text"
    );
    let position = answer.json::<Value>().await.expect("JSON")["position"]
        .as_u64()
        .expect("position");
    let profile: Value = http
        .get(format!("{base}/v1/users/{UNKNOWN}"))
        .bearer_auth(SERVICE_KEY)
        .send()
        .await
        .expect("profile")
        .json()
        .await
        .expect("profile JSON");
    assert_eq!(profile["username"], texts["username"], "{profile}");
    assert_eq!(profile["language"], texts["language"], "{profile}");
    assert_eq!(log_length(&http, &base).await, before + 1);
    assert_eq!(position, before + 1);
    eprintln!(
        "{}: {} malformed requests over {} operations in {:.1} s, each a clear 4xx; nothing \
         appended",
        deployment.name(),
        cases.len(),
        operations.len(),
        swept.as_secs_f64()
    );
    server.stop().await;
    deployment.verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_endpoint_refuses_malformed_input_with_a_clear_4xx_on_postgres() {
    if let Some(deployment) = Deployment::postgres("the malformed-input sweep").await {
        sweep(deployment).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_endpoint_refuses_malformed_input_with_a_clear_4xx_on_sqlite() {
    sweep(Deployment::sqlite()).await;
}
