//! A local stand-in for the Telegram Bot API, speaking its real JSON: `getMe`, `getUpdates`
//! (long polling: held until an update is queued or about a second passes), `sendMessage`,
//! `editMessageText`, `answerCallbackQuery`, `setWebhook`, `deleteWebhook`. It records every
//! call the bot makes, queues the updates a test "types", and can be told to fail
//! `sendMessage` or `editMessageText` in a chat the way Telegram does (403 blocked, 429 with
//! `retry_after`, a 400 it will never stop answering), refuse a method, and refuse a button's
//! answer that comes too late, as Telegram does.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};
use tokio::sync::Notify;

pub const BOT_ID: i64 = 7_000_000_001;
pub const BOT_USERNAME: &str = "starledger_test_bot";

/// One Bot API call the bot made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    /// What the fake answered in `result` (`null` for an error answer).
    pub result: Value,
}

/// A scripted answer to `sendMessage` (or, with [`FakeTelegram::script_edits`],
/// `editMessageText`) in one chat.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// 403, as for a user who blocked the bot.
    Blocked,
    /// 429 with `retry_after`.
    FloodWait(u64),
    /// 400 with this description, forever (a message Telegram will never take).
    BadRequest(&'static str),
}

#[derive(Default)]
struct Inner {
    updates: VecDeque<Value>,
    calls: Vec<Call>,
    /// Per chat: answers to give instead of delivering (`None` in the queue's place: the
    /// script is done). A `Blocked` stays forever.
    failures: HashMap<i64, VecDeque<Scripted>>,
    /// The same for `editMessageText`.
    edit_failures: HashMap<i64, VecDeque<Scripted>>,
    /// Per method: an error answered to every call of it (`setWebhook` refused, …).
    method_failures: HashMap<String, (u16, &'static str)>,
    /// When each callback query was made: Telegram refuses an answer that comes too late.
    pressed: HashMap<String, std::time::Instant>,
    /// Users who changed their username (`None`: they have none); others are `user_{id}`.
    renamed: HashMap<i64, Option<String>>,
}

/// How long after a button press Telegram still takes `answerCallbackQuery` (it documents no
/// number; answers after about 15 s are refused as "query is too old").
pub const ANSWER_WINDOW: Duration = Duration::from_secs(15);

pub struct FakeTelegram {
    pub base: String,
    pub token: String,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    next_update: AtomicI64,
    next_message: Arc<AtomicI64>,
    handle: actix_web::dev::ServerHandle,
}

struct Shared {
    token: String,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    next_message: Arc<AtomicI64>,
}

impl FakeTelegram {
    pub async fn start() -> Self {
        let token = format!("{BOT_ID}:test-token-{}", uuid::Uuid::new_v4().simple());
        let inner = Arc::new(Mutex::new(Inner::default()));
        let changed = Arc::new(Notify::new());
        let next_message = Arc::new(AtomicI64::new(100));
        let shared = web::Data::new(Shared {
            token: token.clone(),
            inner: inner.clone(),
            changed: changed.clone(),
            next_message: next_message.clone(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .route("/{bot}/{method}", web::post().to(handle))
        })
        .workers(1)
        .shutdown_timeout(1)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base: format!("http://127.0.0.1:{port}"),
            token,
            inner,
            changed,
            next_update: AtomicI64::new(1_000),
            next_message,
            handle,
        }
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    fn queue(&self, update: Value) {
        self.inner.lock().unwrap().updates.push_back(update);
        self.changed.notify_waiters();
    }

    fn next_update_id(&self) -> i64 {
        self.next_update.fetch_add(1, Ordering::SeqCst)
    }

    /// A message as a user sends it; returns the update (for webhook mode, to post it).
    pub fn message_update(&self, user: i64, language: &str, text: &str) -> Value {
        let message_id = self.next_message.fetch_add(1, Ordering::SeqCst);
        let mut message = json!({
            "message_id": message_id,
            "date": chrono::Utc::now().timestamp(),
            "chat": {"id": user, "type": "private", "first_name": "Ann", "username": self.username(user)},
            "from": self.person(user, language),
            "text": text,
        });
        if text.starts_with('/') {
            let length = text
                .split_whitespace()
                .next()
                .unwrap_or(text)
                .encode_utf16()
                .count();
            message["entities"] = json!([{"type": "bot_command", "offset": 0, "length": length}]);
        }
        json!({"update_id": self.next_update_id(), "message": message})
    }

    /// From now on `user`'s updates show `username` (`None`: no username at all), as after
    /// they change it in Telegram's settings.
    pub fn rename(&self, user: i64, username: Option<&str>) {
        self.inner
            .lock()
            .unwrap()
            .renamed
            .insert(user, username.map(str::to_owned));
    }

    fn username(&self, user: i64) -> Value {
        match self.inner.lock().unwrap().renamed.get(&user) {
            Some(Some(name)) => json!(name),
            Some(None) => Value::Null,
            None => json!(format!("user_{user}")),
        }
    }

    fn person(&self, user: i64, language: &str) -> Value {
        let mut person = json!({
            "id": user, "is_bot": false, "first_name": "Ann", "language_code": language,
        });
        let username = self.username(user);
        if !username.is_null() {
            person["username"] = username;
        }
        person
    }

    /// Queues a message for `getUpdates`.
    pub fn send_text(&self, user: i64, language: &str, text: &str) -> i64 {
        let update = self.message_update(user, language, text);
        let id = update["update_id"].as_i64().unwrap();
        self.queue(update);
        id
    }

    /// Queues a button press on one of the bot's messages (as the bot sent it).
    pub fn press(&self, user: i64, language: &str, message: &Value, data: &str) -> i64 {
        let id = self.next_update_id();
        self.inner
            .lock()
            .unwrap()
            .pressed
            .insert(format!("cbq-{id}"), std::time::Instant::now());
        self.queue(json!({
            "update_id": id,
            "callback_query": {
                "id": format!("cbq-{id}"),
                "from": self.person(user, language),
                "message": message,
                "chat_instance": format!("ci-{user}"),
                "data": data,
            }
        }));
        id
    }

    /// Makes `sendMessage` to `chat` answer with `scripted` (in order) before delivering.
    pub fn script(&self, chat: i64, scripted: Vec<Scripted>) {
        self.inner
            .lock()
            .unwrap()
            .failures
            .insert(chat, scripted.into_iter().collect());
    }

    /// Makes `editMessageText` in `chat` answer with `scripted` (in order) before editing.
    pub fn script_edits(&self, chat: i64, scripted: Vec<Scripted>) {
        self.inner
            .lock()
            .unwrap()
            .edit_failures
            .insert(chat, scripted.into_iter().collect());
    }

    /// Answers every call of `method` with this error from now on.
    pub fn fail_method(&self, method: &str, status: u16, description: &'static str) {
        self.inner
            .lock()
            .unwrap()
            .method_failures
            .insert(method.to_owned(), (status, description));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Every call of `method` to `chat` (by `chat_id`).
    pub fn calls_to(&self, method: &str, chat: i64) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.body["chat_id"].as_i64() == Some(chat))
            .collect()
    }

    /// Waits (bounded) until `found` picks something out of the calls so far.
    pub async fn wait_for<T>(&self, what: &str, found: impl Fn(&[Call]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let notified = self.changed.notified();
            if let Some(value) = found(&self.calls()) {
                return value;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                if let Some(value) = found(&self.calls()) {
                    return value;
                }
                panic!(
                    "timed out waiting for {what}; calls so far:\n{:#?}",
                    self.calls()
                );
            }
        }
    }

    /// The `n`-th (from 0) message sent or edited into `chat` whose text contains `needle`.
    pub async fn nth_text(&self, chat: i64, needle: &str, n: usize) -> Call {
        let needle = needle.to_owned();
        self.wait_for(
            &format!("message #{n} to {chat} containing {needle:?}"),
            |calls| {
                calls
                    .iter()
                    .filter(|c| {
                        (c.method == "sendMessage" || c.method == "editMessageText")
                            && c.body["chat_id"].as_i64() == Some(chat)
                            && c.body["text"].as_str().is_some_and(|t| t.contains(&needle))
                    })
                    .nth(n)
                    .cloned()
            },
        )
        .await
    }

    /// The first message to `chat` containing `needle`.
    pub async fn text(&self, chat: i64, needle: &str) -> Call {
        self.nth_text(chat, needle, 0).await
    }

    /// How many messages (sent or edited) to `chat` contain `needle` right now.
    pub fn count(&self, chat: i64, needle: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| {
                (c.method == "sendMessage" || c.method == "editMessageText")
                    && c.body["chat_id"].as_i64() == Some(chat)
                    && c.body["text"].as_str().is_some_and(|t| t.contains(needle))
            })
            .count()
    }
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "Stars Shop", "username": BOT_USERNAME})
}

fn ok(result: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true, "result": result}))
}

fn error(status: u16, description: &str, parameters: Option<Value>) -> HttpResponse {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(body)
}

/// A message as the Bot API returns it for what the bot sent.
fn sent_message(shared: &Shared, body: &Value) -> Value {
    let message_id = body["message_id"]
        .as_i64()
        .unwrap_or_else(|| shared.next_message.fetch_add(1, Ordering::SeqCst));
    let mut message = json!({
        "message_id": message_id,
        "date": chrono::Utc::now().timestamp(),
        "chat": {"id": body["chat_id"], "type": "private", "first_name": "Ann"},
        "from": bot_user(),
        "text": body["text"],
    });
    if !body["reply_markup"].is_null() {
        message["reply_markup"] = body["reply_markup"].clone();
    }
    message
}

/// A `multipart/form-data` body (how teloxide sends methods that may carry a file, such as
/// `setWebhook`) as a JSON object of its fields; fields holding JSON are parsed.
fn form_fields(content_type: &str, body: &[u8]) -> Option<Value> {
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let text = String::from_utf8_lossy(body);
    let mut fields = serde_json::Map::new();
    for part in text.split(&format!("--{boundary}")) {
        let Some((headers, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = headers
            .split("name=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let parsed = serde_json::from_str::<Value>(value)
            .ok()
            .filter(|v| v.is_array() || v.is_object())
            .unwrap_or_else(|| Value::String(value.to_owned()));
        fields.insert(name.to_owned(), parsed);
    }
    Some(Value::Object(fields))
}

async fn handle(
    shared: web::Data<Shared>,
    request: actix_web::HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (bot, method) = path.into_inner();
    // Method names are case-insensitive in the Bot API (teloxide sends `SendMessage`): keep
    // the documented spelling.
    let method = documented(&method);
    if bot != format!("bot{}", shared.token) {
        return error(401, "Unauthorized", None);
    }
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = if body.is_empty() {
        json!({})
    } else if content_type.starts_with("multipart/form-data") {
        match form_fields(&content_type, &body) {
            Some(fields) => fields,
            None => return error(400, "Bad Request: the form does not parse", None),
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => value,
            Err(_) => return error(400, "Bad Request: the body is not JSON", None),
        }
    };
    if method == "getUpdates" {
        return get_updates(&shared, &body).await;
    }
    let method_failure = shared
        .inner
        .lock()
        .unwrap()
        .method_failures
        .get(&method)
        .copied();
    if let Some((status, description)) = method_failure {
        shared.inner.lock().unwrap().calls.push(Call {
            method: method.clone(),
            body: body.clone(),
            result: Value::Null,
        });
        return error(status, description, None);
    }
    if method == "answerCallbackQuery" {
        let query = body["callback_query_id"].as_str().unwrap_or_default();
        let pressed = shared.inner.lock().unwrap().pressed.get(query).copied();
        if pressed.is_some_and(|at| at.elapsed() > ANSWER_WINDOW) {
            shared.inner.lock().unwrap().calls.push(Call {
                method: method.clone(),
                body: body.clone(),
                result: Value::Null,
            });
            shared.changed.notify_waiters();
            return error(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
                None,
            );
        }
    }
    let scripted = {
        let chat = body["chat_id"].as_i64().unwrap_or_default();
        let mut inner = shared.inner.lock().unwrap();
        let scripts = match method.as_str() {
            "sendMessage" => Some(&mut inner.failures),
            "editMessageText" => Some(&mut inner.edit_failures),
            _ => None,
        };
        match scripts.and_then(|scripts| scripts.get_mut(&chat)) {
            Some(queue) => match queue.front().cloned() {
                Some(Scripted::Blocked) => Some(Scripted::Blocked),
                Some(Scripted::BadRequest(why)) => Some(Scripted::BadRequest(why)),
                Some(flood) => {
                    queue.pop_front();
                    Some(flood)
                }
                None => None,
            },
            None => None,
        }
    };
    let (response, result) = match scripted {
        Some(Scripted::Blocked) => (
            error(403, "Forbidden: bot was blocked by the user", None),
            Value::Null,
        ),
        Some(Scripted::BadRequest(why)) => (error(400, why, None), Value::Null),
        Some(Scripted::FloodWait(seconds)) => (
            error(
                429,
                &format!("Too Many Requests: retry after {seconds}"),
                Some(json!({"retry_after": seconds})),
            ),
            Value::Null,
        ),
        None => {
            let result = match method.as_str() {
                "getMe" => json!({
                    "id": BOT_ID, "is_bot": true, "first_name": "Stars Shop",
                    "username": BOT_USERNAME, "can_join_groups": false,
                    "can_read_all_group_messages": false, "supports_inline_queries": false,
                    "can_connect_to_business": false, "has_main_web_app": false,
                }),
                "setWebhook" | "deleteWebhook" | "answerCallbackQuery" => json!(true),
                "sendMessage" | "editMessageText" => sent_message(&shared, &body),
                _ => Value::Null,
            };
            if result.is_null() {
                (error(404, "Not Found: method not found", None), result)
            } else {
                (ok(result.clone()), result)
            }
        }
    };
    shared.inner.lock().unwrap().calls.push(Call {
        method,
        body,
        result,
    });
    shared.changed.notify_waiters();
    response
}

fn documented(method: &str) -> String {
    const METHODS: [&str; 7] = [
        "getMe",
        "getUpdates",
        "sendMessage",
        "editMessageText",
        "answerCallbackQuery",
        "setWebhook",
        "deleteWebhook",
    ];
    METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .map_or_else(|| method.to_owned(), |m| (*m).to_owned())
}

/// Long polling: answers at once when updates at or past `offset` are queued, else waits for
/// one (about a second at most) and answers with what there is.
async fn get_updates(shared: &Shared, body: &Value) -> HttpResponse {
    let offset = body["offset"].as_i64().unwrap_or(0);
    let limit = body["limit"].as_u64().unwrap_or(100) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1_000);
    loop {
        let notified = shared.changed.notified();
        {
            let mut inner = shared.inner.lock().unwrap();
            // Telegram forgets updates below the offset: they are confirmed.
            inner
                .updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            if !inner.updates.is_empty() {
                let batch: Vec<Value> = inner.updates.iter().take(limit).cloned().collect();
                return ok(Value::Array(batch));
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return ok(json!([]));
        }
    }
}
