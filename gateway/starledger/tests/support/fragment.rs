//! [`FakeFragment`]: Fragment's web API as the open-source clients recorded it, over orders
//! that are paid on the [`FakeChain`](super::toncenter::FakeChain).
//!
//! - `GET /stars/buy`: the buy page, whose `Aj.init` config carries the API hash — or, without
//!   a live session, Fragment's page with a login button.
//! - `POST /api?hash=…`, form-encoded, the session cookies required: `searchStarsRecipient`
//!   (found or `No Telegram users found.` per username), `updateStarsBuyState`,
//!   `initBuyStarsRequest` (`req_id` and the TON price), `getBuyStarsLink` (a TON Connect
//!   transaction: `validUntil` and one message paying Fragment's address the price, with a
//!   `Telegram Stars … Ref#…` comment as payload, and the `confirm_method` and
//!   `confirm_params` to report the payment with: `confirmReq` by default, with an `id` and
//!   a `ref` token, both required), and that confirmation. A stale hash gets `Bad request`, a
//!   missing session `Access denied`; a method it does not know (`checkReq`, which no public
//!   client calls) `Invalid method`.
//! - `updateStarsBuyState` is the buy page's state, one per session, about the order whose
//!   payment was last confirmed: `mode: "done", need_update: false` once the chain shows that
//!   order's transfer (to Fragment's address, the price, the order's comment) *and* the
//!   confirmation brought a message the chain executed — as the site's own flow goes; `new`
//!   before.
//!
//! Switches: the session can be logged out (now, or right after a given call), and KYC can
//! be demanded (`need_verify` on the payment link, the call that would take the money).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use reqwest::Url;
use serde_json::{json, Value};
use wiremock::{Request, Respond, ResponseTemplate};

use super::toncenter::{comment, root, FakeChain, FRAGMENT_ADDRESS};

/// The API hash the buy page carries.
pub const HASH: &str = "8c1e4f2a9b3d5e70a1";
pub const SSID: &str = "5a6b7c8d9e0f1a2b3c_8734512093847561";
pub const DT: &str = "-180";
pub const TOKEN: &str = "73676e56735445e81a379cafdf21b955736e4c73676ab28c26a9d636da5858ea959";
pub const TON_TOKEN: &str = "Zm9vYmFyLXRvbi10b2tlbi1zZWNyZXQ";

/// How long a payment link stays valid, as Fragment's `validUntil` says.
const LINK_VALIDITY_SECONDS: i64 = 600;

/// `FRAGMENT_COOKIES` for the fake's session.
pub fn cookie_config() -> String {
    format!("stel_ssid={SSID}; stel_dt={DT}; stel_token={TOKEN}; stel_ton_token={TON_TOKEN}")
}

/// Whether a request carries all four session cookies with the fake's values.
pub fn has_session_cookies(request: &Request) -> bool {
    let sent = request
        .headers
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    [
        ("stel_ssid", SSID),
        ("stel_dt", DT),
        ("stel_token", TOKEN),
        ("stel_ton_token", TON_TOKEN),
    ]
    .iter()
    .all(|(name, value)| {
        sent.split(';')
            .any(|pair| pair.trim() == format!("{name}={value}"))
    })
}

/// The form fields of a request body, decoded as a browser encodes them.
pub fn form(request: &Request) -> HashMap<String, String> {
    let body = String::from_utf8_lossy(&request.body);
    // Url's query parser is the same application/x-www-form-urlencoded decoder.
    Url::parse(&format!("http://form.invalid/?{body}"))
        .map(|url| url.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// The buy page as a logged-in browser gets it: the API URL sits JSON-escaped in the
/// `Aj.init` config of an inline script.
pub fn buy_page(hash: &str) -> ResponseTemplate {
    let html = format!(
        r#"<!DOCTYPE html>
<html class=""><head><meta charset="utf-8"><title>Buy Telegram Stars</title></head>
<body><div class="tm-header"><span class="tm-header-avatar"></span></div>
<main class="tm-main js-main-content"><h1>Buy Stars</h1></main>
<script src="/js/auction.js?47"></script>
<script>Aj.init({{"version":1130,"apiUrl":"\/api?hash={hash}","uh":"5f6e","uns":true,"state":{{"mode":"new"}}}});</script>
</body></html>"#
    );
    ResponseTemplate::new(200).set_body_raw(html, "text/html; charset=utf-8")
}

/// Fragment's page for a visitor without a session: a login button, no API config.
pub fn login_page() -> ResponseTemplate {
    let html = r#"<!DOCTYPE html><html><head><title>Fragment</title></head>
<body><div class="tm-header"><button class="btn tm-header-button login-link" href="/login">Log in</button></div>
<main><p>Log in to buy Telegram Stars.</p></main></body></html>"#;
    ResponseTemplate::new(200).set_body_raw(html, "text/html; charset=utf-8")
}

pub fn answer(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.to_string(), "application/json")
}

fn refusal(text: &str) -> ResponseTemplate {
    answer(json!({ "error": text }))
}

/// A nanoton amount as Fragment writes TON prices: `"0.225"`.
fn ton_text(nanotons: u64) -> String {
    let text = format!(
        "{}.{:09}",
        nanotons / 1_000_000_000,
        nanotons % 1_000_000_000
    );
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// An order as the fake keeps it.
#[derive(Debug, Clone)]
pub struct FakeOrder {
    pub req_id: String,
    /// Nanotons.
    pub cost: u64,
    /// The comment the payment must carry, base64 bag of cells.
    pub payload: String,
    /// The messages the confirmation brought, in order.
    pub confirmations: Vec<String>,
    /// The `ref` the confirmation must carry (from `confirm_params`).
    pub confirm_ref: String,
}

struct Market {
    logged_in: bool,
    /// Log out right after answering this method.
    expire_after: Option<String>,
    kyc_required: bool,
    price_per_star: u64,
    /// Username (without `@`) → Fragment's recipient id.
    recipients: HashMap<String, String>,
    orders: Vec<FakeOrder>,
    login_pages: usize,
    access_denied: usize,
    /// `account` parameters received, as JSON.
    accounts: Vec<Value>,
    /// The method `getBuyStarsLink` names for confirming a payment.
    confirm_method: String,
    /// The order whose payment was confirmed last: what the buy page's state is about.
    last_confirmed: Option<String>,
    /// Where payment links send the money (Fragment's address unless changed).
    pay_to: String,
    /// Payment links without the order's comment.
    omit_payload: bool,
}

/// Fragment's web API. Cheap to clone: clones share the market.
#[derive(Clone)]
pub struct FakeFragment {
    market: Arc<Mutex<Market>>,
    chain: FakeChain,
}

impl FakeFragment {
    /// A logged-in Fragment selling stars at `price_per_star` nanotons, paid on `chain`.
    pub fn new(chain: FakeChain, price_per_star: u64) -> Self {
        Self {
            market: Arc::new(Mutex::new(Market {
                logged_in: true,
                expire_after: None,
                kyc_required: false,
                price_per_star,
                recipients: HashMap::new(),
                orders: Vec::new(),
                login_pages: 0,
                access_denied: 0,
                accounts: Vec::new(),
                confirm_method: "confirmReq".to_owned(),
                last_confirmed: None,
                pay_to: FRAGMENT_ADDRESS.to_owned(),
                omit_payload: false,
            })),
            chain,
        }
    }

    fn market(&self) -> std::sync::MutexGuard<'_, Market> {
        self.market.lock().expect("the fake Fragment's lock")
    }

    /// A Telegram user Fragment can send stars to.
    pub fn add_recipient(&self, username: &str) {
        let mut market = self.market();
        let id = format!("pq3yV6Q0{:08}", market.recipients.len() + 1);
        market
            .recipients
            .insert(username.trim_start_matches('@').to_owned(), id);
    }

    pub fn log_in(&self) {
        self.market().logged_in = true;
    }

    pub fn log_out(&self) {
        self.market().logged_in = false;
    }

    /// The session ends right after Fragment answers `method`.
    pub fn expire_session_after(&self, method: &str) {
        self.market().expire_after = Some(method.to_owned());
    }

    pub fn require_kyc(&self, on: bool) {
        self.market().kyc_required = on;
    }

    /// Payment links name `method` as the way to confirm a payment; only it is accepted.
    pub fn confirm_with(&self, method: &str) {
        self.market().confirm_method = method.to_owned();
    }

    /// Payment links send the money to `address` instead of Fragment's.
    pub fn pay_to(&self, address: &str) {
        self.market().pay_to = address.to_owned();
    }

    /// Payment links carry no comment naming the order.
    pub fn omit_payload(&self, on: bool) {
        self.market().omit_payload = on;
    }

    pub fn orders(&self) -> Vec<FakeOrder> {
        self.market().orders.clone()
    }

    /// How often the login page was served instead of the buy page.
    pub fn login_pages_served(&self) -> usize {
        self.market().login_pages
    }

    /// How often an API call was answered `Access denied`.
    pub fn access_denied_served(&self) -> usize {
        self.market().access_denied
    }

    /// The `account` parameters of `getBuyStarsLink` and `confirmReq`, as received.
    pub fn accounts_received(&self) -> Vec<Value> {
        self.market().accounts.clone()
    }

    /// Whether the chain shows `order` paid: its price to Fragment's address, carrying its
    /// comment.
    fn paid_on_chain(&self, order: &FakeOrder) -> bool {
        let comment = root(&order.payload).cell_hash();
        self.chain
            .paid_to(FRAGMENT_ADDRESS)
            .iter()
            .any(|out| out.amount == order.cost && out.body.cell_hash() == comment)
    }

    /// Whether `order` is delivered: paid on chain, by a message its confirmation brought.
    fn delivered(&self, order: &FakeOrder) -> bool {
        let executed: HashSet<String> = self
            .chain
            .executed()
            .into_iter()
            .map(|e| e.message)
            .collect();
        order.confirmations.iter().any(|c| executed.contains(c)) && self.paid_on_chain(order)
    }

    fn call(&self, market: &mut Market, method: &str, form: &HashMap<String, String>) -> Value {
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
        match method {
            "searchStarsRecipient" => {
                let username = field("query").trim_start_matches('@');
                match market.recipients.get(username) {
                    Some(id) => json!({
                        "ok": true,
                        "found": {
                            "myself": false,
                            "recipient": id,
                            "photo": "<img src=\"https://cdn4.cdn-telegram.org/file/x.jpg\">",
                            "name": format!("{username} (Telegram)")
                        }
                    }),
                    None => json!({"error": "No Telegram users found."}),
                }
            }
            "updateStarsBuyState" => {
                let done = market
                    .last_confirmed
                    .as_ref()
                    .and_then(|req_id| market.orders.iter().find(|o| &o.req_id == req_id))
                    .is_some_and(|order| self.delivered(order));
                let mode = if done { "done" } else { "new" };
                json!({"ok": true, "mode": mode, "need_update": false, "dh": field("dh")})
            }
            "initBuyStarsRequest" => {
                let known = market
                    .recipients
                    .values()
                    .any(|id| id == field("recipient"));
                let quantity: Option<u64> = field("quantity").parse().ok();
                match (known, quantity, field("payment_method")) {
                    (_, _, method) if method != "ton" => json!({"error": "Access denied"}),
                    (false, _, _) => json!({"error": "Recipient not found"}),
                    (true, None, _) => json!({"error": "Invalid quantity"}),
                    (true, Some(quantity), _) => {
                        let number = market.orders.len() + 1;
                        let order = FakeOrder {
                            req_id: format!("srK7xXWm{number:08}"),
                            cost: market.price_per_star * quantity,
                            payload: comment(&format!(
                                "{quantity} Telegram Stars \n\nRef#Z6C6bf{number:04}"
                            )),
                            confirmations: Vec::new(),
                            confirm_ref: format!("cr{number:06}x"),
                        };
                        let answer = json!({
                            "req_id": order.req_id,
                            "myself": false,
                            "to_bot": false,
                            "amount": ton_text(order.cost),
                            "item_title": format!("{quantity} Telegram Stars"),
                            "content": "<div class=\"tm-form\"></div>",
                            "button": "Buy"
                        });
                        market.orders.push(order);
                        answer
                    }
                }
            }
            "getBuyStarsLink" => {
                let Some(account) = read_account(field("account")) else {
                    return json!({"error": "Invalid account"});
                };
                market.accounts.push(account);
                if market.kyc_required {
                    return json!({"ok": true, "need_verify": true});
                }
                let Some(order) = market.orders.iter().find(|o| o.req_id == field("id")) else {
                    return json!({"error": "Request not found"});
                };
                let mut message = json!({
                    "address": market.pay_to,
                    "amount": order.cost.to_string(),
                    "payload": order.payload
                });
                if market.omit_payload {
                    message["payload"] = Value::Null;
                }
                json!({
                    "ok": true,
                    "transaction": {
                        "validUntil": Utc::now().timestamp() + LINK_VALIDITY_SECONDS,
                        "messages": [message]
                    },
                    "confirm_method": market.confirm_method,
                    "confirm_params": {"id": order.req_id, "ref": order.confirm_ref}
                })
            }
            confirm if confirm == market.confirm_method => {
                let Some(account) = read_account(field("account")) else {
                    return json!({"error": "Invalid account"});
                };
                market.accounts.push(account);
                let boc = field("boc").to_owned();
                let (id, reference) = (field("id"), field("ref"));
                match market
                    .orders
                    .iter_mut()
                    .find(|o| o.req_id == id && o.confirm_ref == reference)
                {
                    Some(order) => {
                        order.confirmations.push(boc);
                        market.last_confirmed = Some(id.to_owned());
                        json!({"ok": true})
                    }
                    None => json!({"error": "Request not found"}),
                }
            }
            _ => json!({"error": "Invalid method"}),
        }
    }
}

/// The `account` parameter as a TON Connect wallet sends it, if it has every field.
fn read_account(text: &str) -> Option<Value> {
    let account: Value = serde_json::from_str(text).ok()?;
    let complete = ["address", "chain", "walletStateInit", "publicKey"]
        .iter()
        .all(|field| account[field].as_str().is_some_and(|v| !v.is_empty()));
    complete.then_some(account)
}

impl Respond for FakeFragment {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut market = self.market();
        let session = market.logged_in && has_session_cookies(request);
        match (request.method.as_str(), request.url.path()) {
            ("GET", "/stars/buy") => {
                if session {
                    buy_page(HASH)
                } else {
                    market.login_pages += 1;
                    login_page()
                }
            }
            ("POST", "/api") => {
                let hash = request
                    .url
                    .query_pairs()
                    .find(|(name, _)| name == "hash")
                    .map(|(_, value)| value.into_owned());
                if hash.as_deref() != Some(HASH) {
                    return refusal("Bad request");
                }
                if !session {
                    market.access_denied += 1;
                    return refusal("Access denied");
                }
                let form = form(request);
                let method = form.get("method").cloned().unwrap_or_default();
                let result = self.call(&mut market, &method, &form);
                if market.expire_after.as_deref() == Some(method.as_str()) {
                    market.logged_in = false;
                    market.expire_after = None;
                }
                answer(result)
            }
            _ => ResponseTemplate::new(404).set_body_string("Not found"),
        }
    }
}
