//! `schemas/openapi.json` against the code. The document is generated from the handlers
//! (`starledger_http::openapi`, with utoipa); these tests check that the checked-in copy is
//! exactly what the code generates, and then what a generator cannot promise by itself:
//! - the error codes: every code of `ErrorCode` the API answers is documented with each of
//!   its statuses, nothing else is, and each operation lists the codes its inputs and
//!   commands can cause;
//! - the document's own soundness (OpenAPI 3.1, unique operation ids, every `$ref`
//!   resolving, every example valid against its schema);
//! - the rules the ledger applies to amounts, usernames, user ids and Stars, against the
//!   schemas' patterns and bounds.
//!
//! Who may call each operation is checked against the running app, operation by operation
//! of the generated document, in `tests/api/auth.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use jsonschema::{Draft, JSONSchema};
use serde_json::{json, Value};
use starledger_ledger::events::Stars;
use starledger_ledger::ids::{UserId, Username};
use starledger_ledger::money::{Amount, SignedAmount};

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn checked_in_path() -> PathBuf {
    manifest_dir().join("../../schemas/openapi.json")
}

/// The checked-in document.
fn document() -> Value {
    let path = checked_in_path();
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The checked-in document is the one the code generates, byte for byte. With
/// `UPDATE_OPENAPI=1` the test writes the generated one instead (and still fails, so a run
/// that changed it is never green by accident).
#[test]
fn the_checked_in_document_is_the_generated_one() {
    let generated = starledger_http::openapi::document_json()
        .unwrap_or_else(|error| panic!("the document cannot be generated: {error}"));
    let path = checked_in_path();
    let checked_in = fs::read_to_string(&path).unwrap_or_default();
    if checked_in == generated {
        return;
    }
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        fs::write(&path, &generated)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        panic!(
            "{} rewritten from the code; run the tests again",
            path.display()
        );
    }
    let first_difference = checked_in
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(checked_in.lines().count().min(generated.lines().count()));
    panic!(
        "schemas/openapi.json is not what the handlers generate (first difference at line \
         {}); regenerate it with `cargo run -p starledger-gateway -- openapi > \
         schemas/openapi.json` (or UPDATE_OPENAPI=1 cargo test --test openapi) and review \
         the diff",
        first_difference + 1
    );
}

/// `(METHOD, path)` → the operation, for every operation of the document.
fn documented_operations(doc: &Value) -> BTreeMap<(String, String), &Value> {
    let mut operations = BTreeMap::new();
    let paths = doc["paths"].as_object().expect("paths is an object");
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for (key, operation) in item {
            if METHODS.contains(&key.as_str()) || key == "trace" {
                operations.insert((key.to_uppercase(), path.clone()), operation);
            }
        }
    }
    operations
}

fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer))
            .unwrap_or_else(|| panic!("unresolvable $ref {reference}")),
        None => value,
    }
}

/// The parameters of an operation (its path item's, then its own), `$ref`s resolved.
fn parameters<'a>(doc: &'a Value, path: &str, operation: &'a Value) -> Vec<&'a Value> {
    let shared = doc["paths"][path]["parameters"].as_array();
    let own = operation["parameters"].as_array();
    shared
        .into_iter()
        .chain(own)
        .flatten()
        .map(|parameter| resolve(doc, parameter))
        .collect()
}

fn parameter_names(parameters: &[&Value], location: &str) -> BTreeSet<String> {
    parameters
        .iter()
        .filter(|p| p["in"] == location)
        .filter_map(|p| p["name"].as_str())
        .map(str::to_owned)
        .collect()
}

/// The codes a documented response allows in `error.code` (`$ref`s resolved).
fn error_codes(doc: &Value, response: &Value) -> BTreeSet<String> {
    let response = resolve(doc, response);
    let schema = &response["content"]["application/json"]["schema"];
    schema["allOf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|part| part.pointer("/properties/error/properties/code/enum"))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_operation_under_the_request_deadline_documents_its_503() {
    use starledger_http::deadline::UNBOUNDED;
    let doc = document();
    let operations = documented_operations(&doc);
    for path in UNBOUNDED {
        assert!(
            operations.keys().any(|(_, documented)| documented == path),
            "{path} is exempt from the deadline but is no route"
        );
    }
    let mut problems = Vec::new();
    for ((method, path), operation) in &operations {
        if UNBOUNDED.contains(&path.as_str()) {
            continue;
        }
        let Some(response) = operation["responses"].get("503") else {
            problems.push(format!("{method} {path}: no 503 response"));
            continue;
        };
        if !error_codes(&doc, response).contains("deadline_exceeded") {
            problems.push(format!("{method} {path}: 503 without `deadline_exceeded`"));
        }
        if resolve(&doc, response)["headers"]
            .get("Retry-After")
            .is_none()
        {
            problems.push(format!("{method} {path}: 503 without Retry-After"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Every `(code, status)` an operation's error responses list, with the operations that list
/// it (`"METHOD /path"`).
fn documented_errors(doc: &Value) -> BTreeMap<(String, u16), BTreeSet<String>> {
    let mut found = BTreeMap::<(String, u16), BTreeSet<String>>::new();
    for ((method, path), operation) in documented_operations(doc) {
        for (status, response) in operation["responses"].as_object().into_iter().flatten() {
            let codes = error_codes(doc, response);
            if codes.is_empty() {
                continue;
            }
            let status: u16 = status
                .parse()
                .unwrap_or_else(|_| panic!("{method} {path}: error codes under {status}"));
            for code in codes {
                found
                    .entry((code, status))
                    .or_default()
                    .insert(format!("{method} {path}"));
            }
        }
    }
    found
}

/// The codes `operation` documents under `status` (none when it has no such response).
fn codes_at(doc: &Value, operation: &Value, status: &str) -> BTreeSet<String> {
    operation["responses"]
        .get(status)
        .map(|response| error_codes(doc, response))
        .unwrap_or_default()
}

#[test]
fn every_error_the_api_answers_is_documented_with_its_status() {
    use starledger_http::error_code::ErrorCode;
    let documented = documented_errors(&document());
    let mut problems = Vec::new();
    for code in ErrorCode::ALL.iter().filter(|code| code.is_answered()) {
        for status in code.statuses() {
            let key = (code.as_str().to_owned(), status.as_u16());
            if !documented.contains_key(&key) {
                problems.push(format!(
                    "{code:?}: no operation documents `{}` under {}",
                    code.as_str(),
                    status.as_u16()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "add each to the operations that can answer it (or, if no route can, to \
         ErrorCode::NOT_ANSWERED with why):\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_documented_error_is_one_the_api_answers() {
    use starledger_http::error_code::ErrorCode;
    let documented = documented_errors(&document());
    assert!(
        documented.len() >= 50,
        "only {} documented (code, status) pairs: the walk is broken",
        documented.len()
    );
    let mut problems = Vec::new();
    for ((text, status), operations) in &documented {
        let Some(code) = ErrorCode::ALL.iter().find(|code| code.as_str() == text) else {
            problems.push(format!("`{text}` ({operations:?}) is no ErrorCode"));
            continue;
        };
        if !code.is_answered() {
            problems.push(format!(
                "`{text}` ({operations:?}) is in ErrorCode::NOT_ANSWERED: no route answers it"
            ));
        }
        if !code.statuses().any(|listed| listed.as_u16() == *status) {
            problems.push(format!(
                "`{text}` is documented under {status} ({operations:?}), the code answers it \
                 with {:?}",
                code.statuses().map(|s| s.as_u16()).collect::<Vec<_>>()
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Operations that record a ledger command: those that may answer `Idempotent-Replayed`, and
/// the Heleket webhook (which records payments under keys of its own).
fn records_a_command(doc: &Value, operation: &Value) -> bool {
    operation["operationId"] == "heleketWebhook"
        || operation["responses"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(status, _)| status.starts_with('2'))
            .any(|(_, response)| {
                resolve(doc, response)["headers"]
                    .get("Idempotent-Replayed")
                    .is_some()
            })
}

#[test]
fn operations_document_the_errors_their_inputs_and_commands_can_cause() {
    let doc = document();
    let mut problems = Vec::new();
    let mut commands = 0;
    for ((method, path), operation) in documented_operations(&doc) {
        let mut expect = |status: &str, code: &str, why: &str| {
            if !codes_at(&doc, operation, status).contains(code) {
                problems.push(format!(
                    "{method} {path}: {why}, but {status} does not list `{code}`"
                ));
            }
        };
        let parameters = parameters(&doc, &path, operation);
        let query = parameter_names(&parameters, "query");
        if !query.is_empty() {
            expect("400", "invalid_query", "reads a query string");
        }
        for name in ["min_position", "from"] {
            if query.contains(name) {
                expect("400", "invalid_position", &format!("reads `{name}`"));
            }
        }
        let key = parameters
            .iter()
            .find(|p| p["in"] == "header" && p["name"] == "Idempotency-Key");
        if let Some(key) = key {
            expect("400", "invalid_idempotency_key", "reads Idempotency-Key");
            expect("422", "idempotency_key_reused", "reads Idempotency-Key");
            if key["required"] == true {
                expect("400", "missing_idempotency_key", "requires Idempotency-Key");
            }
        }
        if operation.get("requestBody").is_some() {
            expect("400", "malformed_json", "reads a body");
            expect("400", "unreadable_body", "reads a body");
            expect("413", "body_too_large", "reads a body");
        }
        let security = operation.get("security").unwrap_or(&doc["security"]);
        let schemes = |name: &str| {
            security
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get(name).is_some()))
        };
        if schemes("bearer") {
            expect("401", "unauthenticated", "needs a key");
            expect("403", "forbidden", "needs a role");
        }
        // Only admins and auditors can sign in to the console, and its JSON is open to both.
        if schemes("console_session") {
            expect("401", "unauthenticated", "needs a console session");
        }
        if records_a_command(&doc, operation) {
            commands += 1;
            expect("503", "busy", "records a ledger command");
            expect("503", "unavailable", "records a ledger command");
        }
    }
    assert!(
        commands >= 9,
        "only {commands} operations found that record a command: the marker is lost"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Every `$ref` anywhere in `value`, with where it is.
fn references<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                if key == "$ref" {
                    if let Some(reference) = child.as_str() {
                        out.push((at.clone(), reference));
                    }
                }
                references(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                references(child, format!("{at}/{index}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_is_sound_openapi_3_1() {
    let doc = document();
    let mut problems = Vec::new();
    if !doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1"))
    {
        problems.push(format!("openapi is {}, not 3.1.x", doc["openapi"]));
    }
    for field in ["title", "version"] {
        if !doc["info"][field].is_string() {
            problems.push(format!("info.{field} is missing"));
        }
    }
    let schemes = &doc["components"]["securitySchemes"];
    let mut operation_ids = BTreeMap::<&str, String>::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with('/') {
            problems.push(format!("path {path} does not start with /"));
        }
        for key in item.as_object().expect("a path item").keys() {
            let known = METHODS.contains(&key.as_str())
                || ["trace", "summary", "description", "servers", "parameters"]
                    .contains(&key.as_str());
            if !known {
                problems.push(format!("{path}: unknown path item field {key}"));
            }
        }
    }
    for ((method, path), operation) in documented_operations(&doc) {
        let name = format!("{method} {path}");
        match operation["operationId"].as_str() {
            Some(id) if !id.is_empty() => {
                if let Some(first) = operation_ids.insert(id, name.clone()) {
                    problems.push(format!("operationId {id} is used by {first} and {name}"));
                }
            }
            _ => problems.push(format!("{name}: no operationId")),
        }
        match operation["responses"].as_object() {
            Some(responses) if !responses.is_empty() => {
                for status in responses.keys() {
                    let valid = status == "default"
                        || (status.len() == 3
                            && status.bytes().all(|b| b.is_ascii_digit() || b == b'X'));
                    if !valid {
                        problems.push(format!("{name}: response key {status}"));
                    }
                }
            }
            _ => problems.push(format!("{name}: no responses")),
        }
        let security = operation.get("security").unwrap_or(&doc["security"]);
        for requirement in security.as_array().into_iter().flatten() {
            for scheme in requirement.as_object().into_iter().flatten().map(|r| r.0) {
                if schemes.get(scheme).is_none() {
                    problems.push(format!("{name}: unknown security scheme {scheme}"));
                }
            }
        }
    }
    let mut found = Vec::new();
    references(&doc, String::from("#"), &mut found);
    assert!(!found.is_empty(), "no $ref at all: the walk is broken");
    for (at, reference) in found {
        let resolved = reference
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer));
        if resolved.is_none() {
            problems.push(format!("{at}: $ref {reference} does not resolve"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// A validator for `schema`, whose `$ref`s point into the document's components.
fn validator(doc: &Value, schema: &Value) -> JSONSchema {
    let wrapper = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    JSONSchema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .compile(&wrapper)
        .unwrap_or_else(|e| panic!("{schema} does not compile: {e}"))
}

fn errors(validator: &JSONSchema, instance: &Value) -> Vec<String> {
    match validator.validate(instance) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect(),
    }
}

#[test]
fn examples_match_their_schemas() {
    let doc = document();
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut check = |place: String, schema: &Value, example: &Value| {
        checked += 1;
        for error in errors(&validator(&doc, schema), example) {
            problems.push(format!("{place}: {error}"));
        }
    };
    for ((method, path), operation) in documented_operations(&doc) {
        let bodies = operation
            .get("requestBody")
            .map(|b| ("requestBody".to_owned(), resolve(&doc, b)));
        let responses = operation["responses"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(status, response)| (status.clone(), resolve(&doc, response)));
        for (place, holder) in bodies.into_iter().chain(responses) {
            for (media_type, media) in holder["content"].as_object().into_iter().flatten() {
                let at = format!("{method} {path} {place} {media_type}");
                let examples = media["examples"].as_object().into_iter().flatten();
                for (name, example) in examples {
                    check(
                        format!("{at} example {name}"),
                        &media["schema"],
                        &example["value"],
                    );
                }
                if let Some(example) = media.get("example") {
                    check(format!("{at} example"), &media["schema"], example);
                }
            }
        }
    }
    let mut schemas = Vec::new();
    schemas_with_examples(
        &doc["components"]["schemas"],
        "#/components/schemas".to_owned(),
        &mut schemas,
    );
    for (at, schema) in schemas {
        let examples = schema["examples"].as_array().into_iter().flatten();
        for example in examples.chain(schema.get("example")) {
            check(at.clone(), schema, example);
        }
    }
    assert!(checked >= 30, "only {checked} examples checked");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Every schema under `value` (itself, its properties, items, and the parts of its
/// compositions) that carries an `example` or `examples`, with where it is.
fn schemas_with_examples<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    let Some(object) = value.as_object() else {
        return;
    };
    if at == "#/components/schemas" {
        for (name, schema) in object {
            schemas_with_examples(schema, format!("{at}/{name}"), out);
        }
        return;
    }
    if object.contains_key("example") || object.contains_key("examples") {
        out.push((at.clone(), value));
    }
    for (name, schema) in object
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        schemas_with_examples(schema, format!("{at}/properties/{name}"), out);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(schema) = object.get(key) {
            schemas_with_examples(schema, format!("{at}/{key}"), out);
        }
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for (i, schema) in object
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            schemas_with_examples(schema, format!("{at}/{key}/{i}"), out);
        }
    }
}

/// The schema at `pointer` in the document accepts exactly what the code's parser accepts.
fn agrees(doc: &Value, pointer: &str, cases: &[Value], code_accepts: impl Fn(&Value) -> bool) {
    let schema = doc
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in the document"));
    let validator = validator(doc, schema);
    let disagreements: Vec<String> = cases
        .iter()
        .filter(|case| validator.is_valid(case) != code_accepts(case))
        .map(|case| {
            format!(
                "{case}: the code {}, the document {}",
                if code_accepts(case) {
                    "accepts"
                } else {
                    "refuses"
                },
                if validator.is_valid(case) {
                    "accepts"
                } else {
                    "refuses"
                }
            )
        })
        .collect();
    assert!(
        disagreements.is_empty(),
        "{pointer}:\n{}",
        disagreements.join("\n")
    );
}

fn strings(cases: &[&str]) -> Vec<Value> {
    cases.iter().map(|case| json!(case)).collect()
}

const AMOUNTS: &[&str] = &[
    "10.5",
    "0.000000001",
    "7.50",
    "1",
    "007",
    "1.100000000000",
    "999999999.999999999",
    "1000000000",
    "1000000000.000",
    "01000000000",
    "",
    "0",
    "0.0",
    "000",
    "1.",
    ".5",
    "1e5",
    " 1",
    "1 ",
    "1,5",
    "abc",
    "0x10",
    "NaN",
    "１",
    "0.0000000001",
    "1.0000000001",
    "1000000000.1",
    "1000000001",
    "99999999999",
    "-1",
    "+1",
    "--1",
    "-+1",
    "+-1",
    "-0",
    "-2.5",
];

#[test]
fn money_and_identifier_rules_match_the_ledger() {
    let doc = document();
    let schemas = "/components/schemas";
    let text = |case: &Value| case.as_str().map(str::to_owned);

    agrees(
        &doc,
        &format!("{schemas}/AmountInput"),
        &strings(AMOUNTS),
        |case| text(case).is_some_and(|t| Amount::parse(&t).is_ok()),
    );
    agrees(
        &doc,
        &format!("{schemas}/SignedAmountInput"),
        &strings(AMOUNTS),
        |case| text(case).is_some_and(|t| SignedAmount::parse(&t).is_ok()),
    );
    agrees(
        &doc,
        &format!("{schemas}/PurchaseRequest/properties/recipient"),
        &[
            json!("alice"),
            json!("@alice"),
            json!("Bob_99"),
            json!("a2345678901234567890123456789012"),
            json!(null),
            json!("a234567890123456789012345678901234"),
            json!("@@alice"),
            json!("alic"),
            json!("_alice"),
            json!("9alice"),
            json!("ali ce"),
            json!("alice!"),
            json!("алиса"),
        ],
        |case| case.is_null() || text(case).is_some_and(|t| Username::parse(&t).is_ok()),
    );
    agrees(
        &doc,
        &format!("{schemas}/RegisterRequest/properties/user_id"),
        &[
            json!(1),
            json!(123_456_789),
            json!(UserId::MAX - 1),
            json!(UserId::MAX),
            json!(0),
            json!(-5),
        ],
        |case| case.as_i64().is_some_and(|id| UserId::new(id).is_ok()),
    );
    agrees(
        &doc,
        &format!("{schemas}/PurchaseRequest/properties/stars"),
        &[
            json!(50),
            json!(100),
            json!(1_000_000),
            json!(49),
            json!(0),
            json!(-100),
            json!(1_000_001),
        ],
        |case| case.as_i64().is_some_and(|n| Stars::new(n).is_ok()),
    );
}

#[test]
fn request_bodies_refuse_what_the_handlers_refuse() {
    let doc = document();
    let body = |operation: &str| {
        let (_, found) = documented_operations(&doc)
            .into_iter()
            .find(|(_, op)| op["operationId"] == operation)
            .unwrap_or_else(|| panic!("no operation {operation}"));
        validator(
            &doc,
            &resolve(&doc, &found["requestBody"])["content"]["application/json"]["schema"],
        )
    };
    // deny_unknown_fields, required fields, and money never as a JSON number.
    for (operation, refused) in [
        ("registerUser", json!({"user_id": 1, "first_name": "Alice"})),
        ("registerUser", json!({"username": "alice"})),
        ("registerUser", json!({"user_id": "1"})),
        ("createRecharge", json!({"amount": 10.5})),
        ("createRecharge", json!({"amount": "10", "currency": "TON"})),
        ("createPurchase", json!({"stars": "100"})),
        ("createPurchase", json!({"stars": 100.5})),
        ("createPurchase", json!({"stars": 100, "price": "1"})),
        ("createAdjustment", json!({"amount": "2.5"})),
        ("createAdjustment", json!({"amount": -2.5, "reason": "x"})),
        ("startRebuild", json!({"projection": "cache"})),
        ("paySandboxInvoice", json!({"status": "paid", "amount": 12})),
        ("paySandboxInvoice", json!({"status": "refunded"})),
        (
            "heleketWebhook",
            json!({"uuid": "u", "order_id": "o", "status": "paid", "currency": "TON"}),
        ),
    ] {
        assert!(
            !body(operation).is_valid(&refused),
            "{operation} accepts {refused}, which the handler refuses"
        );
    }
}
