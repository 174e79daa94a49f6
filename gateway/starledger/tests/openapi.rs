//! `schemas/openapi.json` against the code: the routes `gateway/http/src/*.rs` registers, who
//! may call each one, the query parameters, `Idempotency-Key` header and body each handler
//! reads, the rules the ledger applies to amounts, usernames, user ids and Stars, and the error
//! codes (every code of `ErrorCode` the API answers is documented with each of its statuses,
//! nothing else is, and each operation lists the codes its inputs and commands can cause);
//! plus the document's own soundness (OpenAPI 3.1, unique operation ids, every `$ref`
//! resolving, every example valid against its schema).
//!
//! The routes are read from the source text, not from a running app: actix-web cannot list
//! what was registered, and reading the source needs no database. The scanner understands the
//! one form the modules use, `.route("/path/{param}", web::METHOD().to(handler))` (path and
//! method possibly on separate lines), and refuses every other way of registering a route, so
//! a route added another way cannot slip past it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use jsonschema::{Draft, JSONSchema};
use serde_json::{json, Value};
use starledger_ledger::events::Stars;
use starledger_ledger::ids::{UserId, Username};
use starledger_ledger::money::{Amount, SignedAmount};

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

/// Ways of registering a route the scanner does not understand.
const UNSCANNED_REGISTRATIONS: [&str; 10] = [
    "web::resource(",
    "web::scope(",
    ".service(",
    "#[get(",
    "#[post(",
    "#[put(",
    "#[patch(",
    "#[delete(",
    "#[route(",
    "#[routes]",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn document() -> Value {
    let path = manifest_dir().join("../../schemas/openapi.json");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// One file of `gateway/http/src/`, without comment lines and without its unit tests (whose
/// test apps may register routes of their own).
struct Source {
    name: String,
    text: String,
}

fn http_sources() -> Vec<Source> {
    let dir = manifest_dir().join("../http/src");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = fs::read_to_string(path).expect("a readable source file");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            Source {
                name: file_name(path),
                text: code
                    .lines()
                    .map(|line| {
                        if line.trim_start().starts_with("//") {
                            ""
                        } else {
                            line
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            }
        })
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One `.route(…)` call.
#[derive(Debug)]
struct Route {
    method: String,
    path: String,
    handler: String,
    file: String,
}

/// Every `.route(` call of a file: the first string literal between `.route(` and `.to(` is the
/// path, the `web::METHOD()` there the method, the argument of `.to(` the handler.
fn registered_routes(source: &Source) -> Vec<Route> {
    let mut routes = Vec::new();
    let mut rest = source.text.as_str();
    while let Some(start) = rest.find(".route(") {
        rest = &rest[start + ".route(".len()..];
        let end = rest
            .find(".to(")
            .unwrap_or_else(|| panic!("{}: a .route( with no .to( after it", source.name));
        let call = &rest[..end];
        let path = string_literal(call)
            .unwrap_or_else(|| panic!("{}: no path literal in .route({call}", source.name));
        let methods: Vec<&str> = METHODS
            .into_iter()
            .filter(|method| call.contains(&format!("web::{method}()")))
            .collect();
        assert_eq!(
            methods.len(),
            1,
            "{}: .route({call} must name exactly one web::METHOD()",
            source.name
        );
        let after = &rest[end + ".to(".len()..];
        let handler = after[..after.find(')').expect("the end of .to(")].trim();
        routes.push(Route {
            method: methods[0].to_uppercase(),
            path: openapi_template(path),
            handler: handler.to_owned(),
            file: source.name.clone(),
        });
        rest = after;
    }
    routes
}

fn string_literal(text: &str) -> Option<&str> {
    let open = text.find('"')? + 1;
    let close = open + text[open..].find('"')?;
    Some(&text[open..close])
}

/// actix's `{id:\d+}` is OpenAPI's `{id}`.
fn openapi_template(path: &str) -> String {
    let mut out = String::new();
    let (mut in_param, mut in_pattern) = (false, false);
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' => (in_param, in_pattern) = (false, false),
            ':' if in_param => in_pattern = true,
            _ if in_pattern => continue,
            _ => {}
        }
        if !in_pattern {
            out.push(c);
        }
    }
    out
}

fn placeholders(path: &str) -> BTreeSet<String> {
    path.split('{')
        .skip(1)
        .filter_map(|part| part.split_once('}'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Every route the http modules register, checking on the way that each is registered in the
/// one way the scanner reads and that each module with routes is configured by `lib.rs`.
fn code_routes() -> Vec<Route> {
    let sources = http_sources();
    let module_tree = sources
        .iter()
        .find(|s| s.name == "lib.rs")
        .expect("gateway/http/src/lib.rs");
    let mut routes = Vec::new();
    for source in &sources {
        for form in UNSCANNED_REGISTRATIONS {
            assert!(
                !source.text.contains(form),
                "{} registers something with `{form}`, which this test cannot read; register \
                 routes with .route(\"/path\", web::METHOD().to(handler)) or teach the scanner",
                source.name
            );
        }
        let found = registered_routes(source);
        if !found.is_empty() && source.name != "lib.rs" {
            let module = source.name.trim_end_matches(".rs");
            assert!(
                module_tree
                    .text
                    .contains(&format!(".configure({module}::routes)")),
                "{} has routes, but lib.rs never calls .configure({module}::routes)",
                source.name
            );
        }
        routes.extend(found);
    }
    assert!(
        routes.len() >= 10,
        "only {} routes found in gateway/http/src: the scanner is broken",
        routes.len()
    );
    routes
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

#[test]
fn every_registered_route_is_documented_and_nothing_else() {
    let doc = document();
    let mut code = BTreeSet::new();
    for route in code_routes() {
        let key = (route.method.clone(), route.path.clone());
        assert!(code.insert(key), "{route:?} is registered twice");
    }
    let documented: BTreeSet<(String, String)> = documented_operations(&doc).into_keys().collect();

    let undocumented: Vec<_> = code.difference(&documented).collect();
    let not_in_code: Vec<_> = documented.difference(&code).collect();
    assert!(
        undocumented.is_empty() && not_in_code.is_empty(),
        "schemas/openapi.json and gateway/http/src disagree\n  \
         registered but not documented: {undocumented:?}\n  \
         documented but not registered: {not_in_code:?}"
    );
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
        if security.as_array().is_some_and(|s| !s.is_empty()) {
            expect("401", "unauthenticated", "needs a key");
            expect("403", "forbidden", "needs a role");
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

/// What a handler's source says about its callers and its inputs.
struct Handler {
    /// `Some(roles)` when the handler takes `Authorized<R>` (authenticated, role-checked).
    roles: Option<BTreeSet<String>>,
    takes_body: bool,
    /// `Some(required)` when the handler reads `Idempotency-Key`.
    idempotency_key: Option<bool>,
    query_fields: BTreeSet<String>,
}

fn read_handler(sources: &[Source], route: &Route) -> Handler {
    let source = sources
        .iter()
        .find(|s| s.name == route.file)
        .expect("the route's file");
    let start = source
        .text
        .find(&format!("async fn {}(", route.handler))
        .unwrap_or_else(|| panic!("{}: no async fn {}(", route.file, route.handler));
    let function = &source.text[start..];
    let function = &function[..function.find("\n}").unwrap_or(function.len())];
    let open = function
        .find("{\n")
        .unwrap_or_else(|| panic!("{}: no body", route.handler));
    let (signature, body) = function.split_at(open);
    // Forms this test cannot read, so no handler checks a role or reads the key in a way
    // that would slip past it: roles come only from `Authorized<R>`, the key only from
    // `IdempotencyHeader<P>`.
    for (form, text) in [
        ("Caller", signature),
        (".require(", body),
        ("RoleSet", body),
        ("idempotency_key(", body),
        ("\"Idempotency-Key\"", body),
        ("AUTHORIZATION", body),
        ("\"Authorization\"", body),
    ] {
        assert!(
            !text.contains(form),
            "{}: `{form}` is not read by this test; use Authorized<R> and IdempotencyHeader<P> \
             in the signature",
            route.handler
        );
    }
    let authorized = generic_arguments(signature, ": Authorized<", route);
    if authorized.is_some() {
        assert!(
            !signature.contains(": Body"),
            "{}: an authorized handler reads its body as Authorized<R, Body>, so 413 comes \
             before 403",
            route.handler
        );
    }
    let takes_body = signature.contains(": Body")
        || authorized
            .as_ref()
            .is_some_and(|arguments| arguments.get(1).map(String::as_str) == Some("Body"));
    Handler {
        roles: authorized.map(|arguments| role_set(sources, route, &arguments)),
        takes_body,
        idempotency_key: idempotency_key(signature, body, route),
        query_fields: query_fields(source, signature),
    }
}

/// The type arguments of the one parameter of type `prefix…>` in `signature`, if any.
fn generic_arguments(signature: &str, prefix: &str, route: &Route) -> Option<Vec<String>> {
    assert!(
        signature.matches(prefix).count() <= 1,
        "{}: more than one `{prefix}` (this test reads one)",
        route.handler
    );
    let start = signature.find(prefix)? + prefix.len();
    let end = signature[start..]
        .find('>')
        .unwrap_or_else(|| panic!("{}: `{prefix}` without `>`", route.handler));
    let arguments: Vec<String> = signature[start..start + end]
        .split(',')
        .map(|a| a.trim().to_owned())
        .collect();
    assert!(
        arguments
            .iter()
            .all(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')),
        "{}: `{prefix}{}>` is not plain type names (this test reads those)",
        route.handler,
        arguments.join(", ")
    );
    Some(arguments)
}

/// The roles of `Authorized<Marker, …>`: `impl RoleSet for Marker { const ROLES … = &[Role::…]; }`.
fn role_set(sources: &[Source], route: &Route, arguments: &[String]) -> BTreeSet<String> {
    assert!(
        arguments.len() <= 2,
        "{}: Authorized<{}> (this test reads Authorized<R> and Authorized<R, Body>)",
        route.handler,
        arguments.join(", ")
    );
    let marker = &arguments[0];
    let declaration = format!("impl RoleSet for {marker} {{");
    let list = sources
        .iter()
        .find_map(|s| {
            let at = s.text.find(&declaration)?;
            let rest = &s.text[at + declaration.len()..];
            let rest = &rest[..rest.find('}')?];
            let roles = "const ROLES: &'static [Role] = ";
            let rest = &rest[rest.find(roles)? + roles.len()..];
            Some(rest[..rest.find(';')?].to_owned())
        })
        .unwrap_or_else(|| {
            panic!(
                "{}: no `{declaration} const ROLES: &'static [Role] = …; }}`",
                route.handler
            )
        });
    assert!(
        list.trim_start().starts_with("&["),
        "{marker}: ROLES is not a `&[Role::…]` literal (this test reads those)"
    );
    list.split("Role::")
        .skip(1)
        .map(|variant| {
            variant
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_lowercase()
        })
        .collect()
}

/// `Some(required)` when the handler takes `name: IdempotencyHeader<P>`: required if it calls
/// `name.required(`, optional if `name.optional()`; anything else is refused.
fn idempotency_key(signature: &str, body: &str, route: &Route) -> Option<bool> {
    let prefix = ": IdempotencyHeader<";
    generic_arguments(signature, prefix, route)?;
    let before = &signature[..signature.find(prefix)?];
    let name = before
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| panic!("{}: IdempotencyHeader<…> without a name", route.handler));
    let required = body.contains(&format!("{name}.required("));
    let optional = body.contains(&format!("{name}.optional()"));
    assert!(
        required != optional && body.matches(&format!("{name}.")).count() == 1,
        "{}: use `{name}` exactly once, as `{name}.required(…)` or `{name}.optional()`",
        route.handler
    );
    Some(required)
}

/// The fields of the struct the handler takes as `web::Query<…>`.
fn query_fields(source: &Source, signature: &str) -> BTreeSet<String> {
    let Some(at) = signature.find("web::Query<") else {
        return BTreeSet::new();
    };
    let rest = &signature[at + "web::Query<".len()..];
    let name = &rest[..rest.find('>').expect("web::Query<…>")];
    let declaration = format!("struct {name} {{");
    let start = source
        .text
        .find(&declaration)
        .unwrap_or_else(|| panic!("{}: no {declaration}", source.name))
        + declaration.len();
    let block = &source.text[start..start + source.text[start..].find('}').expect("}")];
    assert!(
        !block.contains("rename"),
        "{name}: serde renames are not read by this test"
    );
    block
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(field, _)| field.trim().trim_start_matches("pub ").trim().to_owned())
        .collect()
}

#[test]
fn documented_operations_match_their_handlers() {
    let doc = document();
    let sources = http_sources();
    let operations = documented_operations(&doc);
    let mut problems = Vec::new();
    for route in code_routes() {
        let key = (route.method.clone(), route.path.clone());
        let Some(operation) = operations.get(&key) else {
            continue; // reported by every_registered_route_is_documented_and_nothing_else
        };
        let name = format!("{} {} ({})", route.method, route.path, route.handler);
        let handler = read_handler(&sources, &route);
        let mut problem = |text: String| problems.push(format!("{name}: {text}"));

        // Who may call it.
        let security = operation.get("security").unwrap_or(&doc["security"]);
        let documented_roles: Option<BTreeSet<String>> = match security.as_array() {
            Some(requirements) if requirements.is_empty() => None,
            Some(requirements) => Some(
                requirements
                    .iter()
                    .filter_map(|r| r["bearer"].as_array())
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ),
            None => {
                problem("security is not an array".into());
                None
            }
        };
        if documented_roles != handler.roles {
            problem(format!(
                "the code requires roles {:?}, the document's security says {:?} (None: open)",
                handler.roles, documented_roles
            ));
        }
        let description = operation["description"].as_str().unwrap_or_default();
        for role in handler.roles.iter().flatten() {
            if !description.contains(&format!("`{role}`")) {
                problem(format!("the description does not name the `{role}` role"));
            }
        }
        let responses = &operation["responses"];
        for status in ["401", "403"] {
            if handler.roles.is_some() && responses.get(status).is_none() {
                problem(format!("authenticated, but no {status} response"));
            }
        }

        // What it reads.
        let parameters = parameters(&doc, &route.path, operation);
        let documented_path = parameter_names(&parameters, "path");
        if documented_path != placeholders(&route.path) {
            problem(format!(
                "path parameters {documented_path:?} do not match the template"
            ));
        }
        if parameters
            .iter()
            .any(|p| p["in"] == "path" && p["required"] != true)
        {
            problem("a path parameter is not required: true".into());
        }
        let documented_query = parameter_names(&parameters, "query");
        if documented_query != handler.query_fields {
            problem(format!(
                "the code reads query parameters {:?}, the document lists {documented_query:?}",
                handler.query_fields
            ));
        }
        let key_header = parameters
            .iter()
            .find(|p| p["in"] == "header" && p["name"] == "Idempotency-Key")
            .map(|p| p["required"] == true);
        if key_header != handler.idempotency_key {
            problem(format!(
                "Idempotency-Key: the code reads {:?}, the document says {key_header:?} \
                 (Some(required))",
                handler.idempotency_key
            ));
        }
        let request_body = operation.get("requestBody").map(|b| resolve(&doc, b));
        if handler.takes_body != request_body.is_some() {
            problem(format!(
                "the handler {} a body, the document {} a requestBody",
                if handler.takes_body {
                    "reads"
                } else {
                    "reads no"
                },
                if request_body.is_some() {
                    "has"
                } else {
                    "has no"
                }
            ));
        }
        if handler.takes_body {
            if request_body.is_some_and(|b| b["required"] != true) {
                problem("the requestBody is not required: true".into());
            }
            for status in ["400", "413"] {
                if responses.get(status).is_none() {
                    problem(format!("reads a body, but no {status} response"));
                }
            }
        }
    }
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
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        for example in schema["examples"].as_array().into_iter().flatten() {
            let reference = json!({ "$ref": format!("#/components/schemas/{name}") });
            check(format!("components.schemas.{name}"), &reference, example);
        }
    }
    assert!(checked >= 10, "only {checked} examples checked");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
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
        &format!("{schemas}/UserId"),
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
