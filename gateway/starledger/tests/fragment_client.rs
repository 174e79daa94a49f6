//! Black-box tests of the Fragment client against a local server that speaks Fragment's web
//! API as the open-source clients recorded it: the buy page whose JavaScript config carries
//! the API hash, form-encoded `POST /api?hash=…` calls checked for their method, parameters,
//! cookies and XHR headers, and JSON answers shaped like Fragment's (errors in `error`,
//! `need_verify`, TON amounts as strings or numbers, TON Connect transactions).
//!
//! Retry delays are a few milliseconds so the suite stays quick; nothing asserts on timing.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use starledger_fulfilment::client::{
    parse_fragment_cookies, CookieError, FragmentClient, FragmentSettings,
};
use starledger_fulfilment::market::{MarketError, OrderState, Recipient, StarsMarket};
use starledger_fulfilment::ton::{Nanotons, WalletAccount};
use starledger_ledger::events::Stars;
use starledger_ledger::ids::Username;
use starledger_outbound::resilience::{BreakerSettings, RetryPolicy};
use wiremock::matchers::{header, header_exists, method, path, query_param};
use wiremock::{Match, Mock, MockBuilder, MockServer, Request, ResponseTemplate};

#[allow(dead_code)] // each test binary uses its own part of the shared fakes
mod support;

use support::fragment::{
    answer, buy_page, cookie_config, form, login_page, HASH, SSID, TOKEN, TON_TOKEN,
};

const NEW_HASH: &str = "f00dfeed12345678ab";
const REQ_ID: &str = "srK7xXWm2Hbd9pLz";
const RECIPIENT_ID: &str = "pq3yV6Q0SmT8B2wz5rYj0IjsGx4hKd";
const FRAGMENT_ADDRESS: &str = "EQBAjaOyi2wGWlk-EDkSabqqnF-MrrwMadnwqrurKpkla9nE";
const PAYLOAD: &str = "te6ccgEBAQEAMgAAYAAAAABUZWxlZ3JhbSBTdGFycyAKClJlZiNaNkM2YmZuSFk";

fn settings(server: &MockServer) -> FragmentSettings {
    FragmentSettings {
        base_url: server.uri(),
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        // Out of the way unless a test is about it.
        breaker: BreakerSettings {
            failure_threshold: 1_000,
            cool_down: Duration::from_secs(60),
        },
        ..FragmentSettings::new(parse_fragment_cookies(&cookie_config()).unwrap())
    }
}

fn client(settings: FragmentSettings) -> FragmentClient {
    FragmentClient::new(settings).unwrap()
}

fn username() -> Username {
    Username::parse("@durov_fan").unwrap()
}

fn stars(count: i64) -> Stars {
    Stars::new(count).unwrap()
}

fn wallet() -> WalletAccount {
    WalletAccount {
        address: "0:83dfd552e63729b472fcbcc8c45ebcc6691702558b68ec7527e1ba403a0f31a8".into(),
        public_key: "2c4be43a6f3bd0c8e1a4ec2e2b0f3b3f1c8e9a27d5a3c1b0e9f8d7c6b5a4f3e2".into(),
        state_init: "te6ccsEBAwEAUQAFQFECASIAATQD".into(),
    }
}

fn recipient() -> Recipient {
    Recipient {
        username: username(),
        recipient_id: RECIPIENT_ID.into(),
        name: Some("Durov Fan".into()),
    }
}

fn raw_answer(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.to_owned(), "application/json")
}

/// Matches a form-encoded API call to one method that carries the session cookies.
struct ApiCall(&'static str);

impl Match for ApiCall {
    fn matches(&self, request: &Request) -> bool {
        let cookies = request
            .headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let all_cookies = [
            format!("stel_ssid={SSID}"),
            "stel_dt=-180".to_owned(),
            format!("stel_token={TOKEN}"),
            format!("stel_ton_token={TON_TOKEN}"),
        ]
        .iter()
        .all(|pair| cookies.split("; ").any(|sent| sent == pair));
        all_cookies && form(request).get("method").map(String::as_str) == Some(self.0)
    }
}

/// `POST /api?hash=<hash>` of one method, as the site's XHR sends it.
fn api(name: &'static str, hash: &str) -> MockBuilder {
    Mock::given(method("POST"))
        .and(path("/api"))
        .and(query_param("hash", hash))
        .and(header("x-requested-with", "XMLHttpRequest"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(header_exists("origin"))
        .and(header_exists("referer"))
        .and(ApiCall(name))
}

fn page() -> MockBuilder {
    Mock::given(method("GET")).and(path("/stars/buy"))
}

/// A local Fragment whose buy page carries [`HASH`]; each test mounts the API answers.
async fn fragment_with_buy_page() -> MockServer {
    let server = MockServer::start().await;
    page().respond_with(buy_page(HASH)).mount(&server).await;
    server
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

async fn api_requests(server: &MockServer, name: &str) -> Vec<HashMap<String, String>> {
    requests(server)
        .await
        .iter()
        .filter(|r| r.url.path() == "/api")
        .map(form)
        .filter(|f| f.get("method").map(String::as_str) == Some(name))
        .collect()
}

async fn page_loads(server: &MockServer) -> usize {
    requests(server)
        .await
        .iter()
        .filter(|r| r.url.path() == "/stars/buy")
        .count()
}

fn link_answer() -> Value {
    json!({
        "ok": true,
        "transaction": {
            "validUntil": 1_900_000_000,
            "messages": [{
                "address": FRAGMENT_ADDRESS,
                "amount": "234500000",
                "payload": PAYLOAD
            }]
        },
        "confirm_method": "confirmStarsPayment",
        "confirm_params": {"id": REQ_ID, "ref": "cr-77", "boc": "not Fragment's to set"}
    })
}

/// A Fragment that knows the shop's session and sells: every call answers as on a good day.
async fn mount_good_day(server: &MockServer) {
    page().respond_with(buy_page(HASH)).mount(server).await;
    api("searchStarsRecipient", HASH)
        .respond_with(answer(json!({
            "ok": true,
            "found": {"myself": false, "recipient": RECIPIENT_ID, "photo": "<img src=\"https://cdn4.cdn-telegram.org/file/x.jpg\">", "name": "Durov Fan"}
        })))
        .mount(server)
        .await;
    api("updateStarsBuyState", HASH)
        .respond_with(answer(
            json!({"ok": true, "mode": "done", "need_update": false, "dh": "1"}),
        ))
        .mount(server)
        .await;
    api("initBuyStarsRequest", HASH)
        .respond_with(raw_answer(&format!(
            r#"{{"req_id":"{REQ_ID}","myself":false,"to_bot":false,"amount":"0.2345","item_title":"50 Telegram Stars","content":"<div class=\"tm-form\"></div>","button":"Buy"}}"#
        )))
        .mount(server)
        .await;
    api("getBuyStarsLink", HASH)
        .respond_with(answer(link_answer()))
        .mount(server)
        .await;
    api("confirmStarsPayment", HASH)
        .respond_with(answer(json!({"ok": true})))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_whole_order_goes_through_every_call_with_fragments_wire_format() {
    let server = MockServer::start().await;
    mount_good_day(&server).await;
    let fragment = client(settings(&server));

    let found = fragment
        .find_recipient(&username(), stars(50))
        .await
        .unwrap();
    assert_eq!(found, recipient());

    let order = fragment.open_order(&found, stars(50)).await.unwrap();
    assert_eq!(order.request_id, REQ_ID);
    assert_eq!(order.cost, Nanotons(234_500_000));

    let payment = fragment.payment_request(REQ_ID, &wallet()).await.unwrap();
    assert_eq!(payment.valid_until.timestamp(), 1_900_000_000);
    assert_eq!(payment.messages.len(), 1);
    assert_eq!(payment.messages[0].destination, FRAGMENT_ADDRESS);
    assert_eq!(payment.messages[0].amount, Nanotons(234_500_000));
    assert_eq!(payment.messages[0].payload.as_deref(), Some(PAYLOAD));

    fragment
        .confirm_payment(REQ_ID, &wallet(), "te6signedexternalmessage")
        .await
        .unwrap();
    assert_eq!(
        fragment.order_state(REQ_ID).await.unwrap(),
        OrderState::Delivered
    );

    // The page was loaded once; the hash served every call after.
    assert_eq!(page_loads(&server).await, 1);

    let search = &api_requests(&server, "searchStarsRecipient").await[0];
    assert_eq!(search["query"], "durov_fan");
    assert_eq!(search["quantity"], "50");

    let sync = &api_requests(&server, "updateStarsBuyState").await[0];
    assert_eq!(sync["mode"], "new");
    assert_eq!(sync["lv"], "false");
    assert!(sync["dh"].parse::<u64>().is_ok());

    let init = &api_requests(&server, "initBuyStarsRequest").await[0];
    assert_eq!(init["recipient"], RECIPIENT_ID);
    assert_eq!(init["quantity"], "50");
    assert_eq!(init["payment_method"], "ton");

    let link = &api_requests(&server, "getBuyStarsLink").await[0];
    assert_eq!(link["id"], REQ_ID);
    assert_eq!(link["transaction"], "1");
    assert_eq!(link["show_sender"], "0");
    let account: Value = serde_json::from_str(&link["account"]).unwrap();
    assert_eq!(account["address"], wallet().address);
    assert_eq!(account["chain"], "-239");
    assert_eq!(account["publicKey"], wallet().public_key);
    assert_eq!(account["walletStateInit"], wallet().state_init);
    let device: Value = serde_json::from_str(&link["device"]).unwrap();
    assert_eq!(device["appName"], "Tonkeeper");
    assert!(device["features"].is_array());

    // The payment is confirmed the way the link said: its method, its parameters, and our
    // own boc, account and device.
    assert!(api_requests(&server, "confirmReq").await.is_empty());
    let confirm = &api_requests(&server, "confirmStarsPayment").await[0];
    assert_eq!(confirm["id"], REQ_ID);
    assert_eq!(confirm["ref"], "cr-77");
    assert_eq!(confirm["boc"], "te6signedexternalmessage");
    assert!(confirm.contains_key("account") && confirm.contains_key("device"));

    // Completion is learnt from the buy page's state, as the public clients do; no checkReq.
    let polls = api_requests(&server, "updateStarsBuyState").await;
    assert_eq!(
        polls.len(),
        2,
        "one sync before the order, one poll after paying"
    );
    assert_eq!(polls[1]["mode"], "new");
    assert!(api_requests(&server, "checkReq").await.is_empty());

    // The page load is a browser navigation with the cookies; API calls look like the
    // site's XHR and come from the buy page.
    let all = requests(&server).await;
    let page_load = all.iter().find(|r| r.url.path() == "/stars/buy").unwrap();
    assert!(page_load.headers.get("x-requested-with").is_none());
    assert!(page_load.headers["cookie"]
        .to_str()
        .unwrap()
        .contains("stel_token="));
    let call = all.iter().find(|r| r.url.path() == "/api").unwrap();
    assert_eq!(call.headers["origin"].to_str().unwrap(), server.uri());
    assert_eq!(
        call.headers["referer"].to_str().unwrap(),
        format!("{}/stars/buy", server.uri())
    );
    assert!(call.headers["user-agent"]
        .to_str()
        .unwrap()
        .starts_with("Mozilla/5.0"));
}

#[tokio::test]
async fn a_price_given_as_a_json_number_is_read_exactly() {
    let server = fragment_with_buy_page().await;
    api("updateStarsBuyState", HASH)
        .respond_with(answer(json!({"ok": true})))
        .mount(&server)
        .await;
    // Thirteen significant digits, read from the JSON text rather than through a float.
    api("initBuyStarsRequest", HASH)
        .respond_with(raw_answer(&format!(
            r#"{{"req_id":"{REQ_ID}","amount":1234.567891023}}"#
        )))
        .mount(&server)
        .await;
    let order = client(settings(&server))
        .open_order(&recipient(), stars(1_000_000))
        .await
        .unwrap();
    assert_eq!(order.cost, Nanotons(1_234_567_891_023));
}

#[tokio::test]
async fn a_price_with_more_than_nine_decimals_is_a_bad_response_not_a_rounding() {
    let server = fragment_with_buy_page().await;
    api("updateStarsBuyState", HASH)
        .respond_with(answer(json!({"ok": true})))
        .mount(&server)
        .await;
    api("initBuyStarsRequest", HASH)
        .respond_with(raw_answer(&format!(
            r#"{{"req_id":"{REQ_ID}","amount":"0.2345000001"}}"#
        )))
        .mount(&server)
        .await;
    let error = client(settings(&server))
        .open_order(&recipient(), stars(50))
        .await
        .unwrap_err();
    assert!(matches!(error, MarketError::BadResponse(_)), "{error:?}");
}

#[tokio::test]
async fn an_unknown_username_is_recipient_not_found_and_asked_once() {
    let server = fragment_with_buy_page().await;
    api("searchStarsRecipient", HASH)
        .respond_with(answer(json!({"error": "No Telegram users found."})))
        .expect(1)
        .mount(&server)
        .await;
    let error = client(settings(&server))
        .find_recipient(&username(), stars(50))
        .await
        .unwrap_err();
    assert!(
        matches!(error, MarketError::RecipientNotFound(_)),
        "{error:?}"
    );
    assert!(error.is_definite());
}

#[tokio::test]
async fn a_username_that_is_no_user_is_recipient_not_found() {
    let server = fragment_with_buy_page().await;
    api("searchStarsRecipient", HASH)
        .respond_with(answer(json!({
            "error": "This username is not assigned to a user. Stars can only be sent to Telegram users."
        })))
        .mount(&server)
        .await;
    let error = client(settings(&server))
        .find_recipient(&username(), stars(50))
        .await
        .unwrap_err();
    assert!(
        matches!(error, MarketError::RecipientNotFound(_)),
        "{error:?}"
    );

    // An answer without a recipient says the same.
    let server = fragment_with_buy_page().await;
    api("searchStarsRecipient", HASH)
        .respond_with(answer(json!({"ok": true, "found": {}})))
        .mount(&server)
        .await;
    let error = client(settings(&server))
        .find_recipient(&username(), stars(50))
        .await
        .unwrap_err();
    assert!(
        matches!(error, MarketError::RecipientNotFound(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_account_that_needs_kyc_gets_kyc_required() {
    let server = fragment_with_buy_page().await;
    api("getBuyStarsLink", HASH)
        .respond_with(answer(json!({"ok": true, "need_verify": true})))
        .expect(1)
        .mount(&server)
        .await;
    let error = client(settings(&server))
        .payment_request(REQ_ID, &wallet())
        .await
        .unwrap_err();
    assert!(matches!(error, MarketError::KycRequired(_)), "{error:?}");
    assert!(error.is_definite());
}

#[tokio::test]
async fn a_login_page_instead_of_the_buy_page_is_session_expired_without_retries() {
    let server = MockServer::start().await;
    page().respond_with(login_page()).mount(&server).await;
    let fragment = client(settings(&server));
    let error = fragment
        .find_recipient(&username(), stars(50))
        .await
        .unwrap_err();
    assert!(matches!(error, MarketError::SessionExpired(_)), "{error:?}");
    assert!(!error.is_definite());
    assert_eq!(page_loads(&server).await, 1, "no retry storm");
    assert_eq!(requests(&server).await.len(), 1, "and no API call");
}

#[tokio::test]
async fn access_denied_from_the_api_is_session_expired_without_retries() {
    let server = fragment_with_buy_page().await;
    api("searchStarsRecipient", HASH)
        .respond_with(answer(json!({"error": "Access denied"})))
        .expect(1)
        .mount(&server)
        .await;
    let error = client(settings(&server))
        .find_recipient(&username(), stars(50))
        .await
        .unwrap_err();
    assert!(matches!(error, MarketError::SessionExpired(_)), "{error:?}");
    assert_eq!(page_loads(&server).await, 1);
}

#[tokio::test]
async fn a_redirect_or_401_is_session_expired_and_is_not_followed() {
    for response in [
        ResponseTemplate::new(302).insert_header("location", "/login?from=%2Fapi%3Fhash%3Dx"),
        ResponseTemplate::new(401),
    ] {
        let server = MockServer::start().await;
        page().respond_with(buy_page(HASH)).mount(&server).await;
        api("getBuyStarsLink", HASH)
            .respond_with(response)
            .expect(1)
            .mount(&server)
            .await;
        let error = client(settings(&server))
            .payment_request(REQ_ID, &wallet())
            .await
            .unwrap_err();
        assert!(matches!(error, MarketError::SessionExpired(_)), "{error:?}");
        assert!(!error.to_string().contains("hash"), "{error}");
        assert!(
            requests(&server)
                .await
                .iter()
                .all(|r| r.url.path() != "/login"),
            "redirects are not followed"
        );
    }
}

#[tokio::test]
async fn a_session_without_a_connected_wallet_names_its_ton_token() {
    let server = fragment_with_buy_page().await;
    api("updateStarsBuyState", HASH)
        .respond_with(answer(json!({"ok": true})))
        .mount(&server)
        .await;
    api("initBuyStarsRequest", HASH)
        .respond_with(answer(json!({"ok": true, "need_ton": true})))
        .expect(1)
        .mount(&server)
        .await;
    let error = client(settings(&server))
        .open_order(&recipient(), stars(50))
        .await
        .unwrap_err();
    assert!(matches!(error, MarketError::SessionExpired(_)), "{error:?}");
    assert!(error.to_string().contains("stel_ton_token"), "{error}");
    assert!(!error.to_string().contains(TON_TOKEN), "{error}");
}

#[tokio::test]
async fn a_stale_hash_is_scraped_again_once_and_the_call_succeeds() {
    let server = MockServer::start().await;
    // The first page load gives the old hash, later ones the new one.
    page()
        .respond_with(buy_page(HASH))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    page().respond_with(buy_page(NEW_HASH)).mount(&server).await;
    api("searchStarsRecipient", HASH)
        .respond_with(answer(json!({"error": "Bad request"})))
        .mount(&server)
        .await;
    api("searchStarsRecipient", NEW_HASH)
        .respond_with(answer(
            json!({"ok": true, "found": {"recipient": RECIPIENT_ID, "name": "Durov Fan"}}),
        ))
        .mount(&server)
        .await;
    let fragment = client(settings(&server));
    let found = fragment
        .find_recipient(&username(), stars(50))
        .await
        .unwrap();
    assert_eq!(found.recipient_id, RECIPIENT_ID);
    assert_eq!(page_loads(&server).await, 2);

    // The new hash is cached for what follows.
    fragment
        .find_recipient(&username(), stars(50))
        .await
        .unwrap();
    assert_eq!(page_loads(&server).await, 2);
}

#[tokio::test]
async fn a_hash_that_stays_stale_is_scraped_only_once_then_a_bad_response() {
    let server = fragment_with_buy_page().await;
    api("searchStarsRecipient", HASH)
        .respond_with(answer(json!({"error": "Bad request"})))
        .mount(&server)
        .await;
    let error = client(settings(&server))
        .find_recipient(&username(), stars(50))
        .await
        .unwrap_err();
    assert!(matches!(error, MarketError::BadResponse(_)), "{error:?}");
    assert_eq!(page_loads(&server).await, 2);
    assert_eq!(api_requests(&server, "searchStarsRecipient").await.len(), 2);
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried_until_fragment_answers() {
    for failing in [
        ResponseTemplate::new(502),
        ResponseTemplate::new(429).insert_header("retry-after", "1"),
    ] {
        let server = MockServer::start().await;
        page().respond_with(buy_page(HASH)).mount(&server).await;
        api("updateStarsBuyState", HASH)
            .respond_with(failing)
            .up_to_n_times(2)
            .with_priority(1)
            .mount(&server)
            .await;
        api("updateStarsBuyState", HASH)
            .respond_with(answer(
                json!({"ok": true, "mode": "new", "need_update": false}),
            ))
            .mount(&server)
            .await;
        let state = client(settings(&server)).order_state(REQ_ID).await.unwrap();
        assert_eq!(state, OrderState::Pending);
        assert_eq!(api_requests(&server, "updateStarsBuyState").await.len(), 3);
    }
}

#[tokio::test]
async fn a_fragment_that_keeps_failing_is_unavailable_after_exactly_the_allowed_attempts() {
    let server = fragment_with_buy_page().await;
    api("searchStarsRecipient", HASH)
        .respond_with(ResponseTemplate::new(503))
        .expect(3)
        .mount(&server)
        .await;
    let error = client(settings(&server))
        .find_recipient(&username(), stars(50))
        .await
        .unwrap_err();
    assert_eq!(error, MarketError::Unavailable("HTTP 503".into()));
    assert!(!error.is_definite());
}

#[tokio::test]
async fn a_cloudflare_challenge_is_retried_and_then_unavailable() {
    let server = MockServer::start().await;
    let challenge = r#"<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title></head>
<body><script src="/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1?ray=8f"></script></body></html>"#;
    page()
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("cf-mitigated", "challenge")
                .set_body_raw(challenge, "text/html"),
        )
        .expect(3)
        .mount(&server)
        .await;
    let error = client(settings(&server))
        .find_recipient(&username(), stars(50))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, MarketError::Unavailable(why) if why.contains("Cloudflare")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_slow_fragment_times_out_as_unavailable() {
    let server = fragment_with_buy_page().await;
    api("searchStarsRecipient", HASH)
        .respond_with(answer(json!({"ok": true})).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    let mut settings = settings(&server);
    settings.timeout = Duration::from_millis(200);
    settings.retry.attempts = 2;
    let error = client(settings)
        .find_recipient(&username(), stars(50))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, MarketError::Unavailable(why) if why.contains("timed out")),
        "{error:?}"
    );
    assert_eq!(api_requests(&server, "searchStarsRecipient").await.len(), 2);
}

#[tokio::test]
async fn after_the_threshold_of_failures_calls_are_refused_without_reaching_fragment() {
    let server = fragment_with_buy_page().await;
    api("updateStarsBuyState", HASH)
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let mut settings = settings(&server);
    settings.retry = RetryPolicy::no_retries();
    settings.breaker = BreakerSettings {
        failure_threshold: 2,
        cool_down: Duration::from_secs(60),
    };
    let fragment = client(settings);
    for _ in 0..2 {
        assert_eq!(
            fragment.order_state(REQ_ID).await.unwrap_err(),
            MarketError::Unavailable("HTTP 500".into())
        );
    }
    assert!(fragment.circuit_open());
    let before = requests(&server).await.len();
    let error = fragment.order_state(REQ_ID).await.unwrap_err();
    assert!(
        matches!(&error, MarketError::Unavailable(why) if why.contains("circuit breaker")),
        "{error:?}"
    );
    assert_eq!(requests(&server).await.len(), before, "nothing was sent");
}

#[tokio::test]
async fn refusals_do_not_open_the_breaker() {
    let server = fragment_with_buy_page().await;
    api("searchStarsRecipient", HASH)
        .respond_with(answer(json!({"error": "No Telegram users found."})))
        .mount(&server)
        .await;
    let mut settings = settings(&server);
    settings.breaker.failure_threshold = 1;
    let fragment = client(settings);
    for _ in 0..3 {
        let error = fragment
            .find_recipient(&username(), stars(50))
            .await
            .unwrap_err();
        assert!(matches!(error, MarketError::RecipientNotFound(_)));
    }
    assert!(!fragment.circuit_open());
}

#[tokio::test]
async fn a_moving_price_is_synced_and_tried_again_then_refused_as_price_changed() {
    let server = fragment_with_buy_page().await;
    api("updateStarsBuyState", HASH)
        .respond_with(answer(json!({"ok": true})))
        .mount(&server)
        .await;
    api("initBuyStarsRequest", HASH)
        .respond_with(answer(json!({"error": "Price was changed"})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    api("initBuyStarsRequest", HASH)
        .respond_with(raw_answer(&format!(
            r#"{{"req_id":"{REQ_ID}","amount":"0.2345"}}"#
        )))
        .mount(&server)
        .await;
    let order = client(settings(&server))
        .open_order(&recipient(), stars(50))
        .await
        .unwrap();
    assert_eq!(order.cost, Nanotons(234_500_000));
    assert_eq!(api_requests(&server, "updateStarsBuyState").await.len(), 2);

    let server = fragment_with_buy_page().await;
    api("updateStarsBuyState", HASH)
        .respond_with(answer(json!({"ok": true})))
        .mount(&server)
        .await;
    api("initBuyStarsRequest", HASH)
        .respond_with(answer(json!({"error": "Price was changed"})))
        .expect(3)
        .mount(&server)
        .await;
    let error = client(settings(&server))
        .open_order(&recipient(), stars(50))
        .await
        .unwrap_err();
    assert!(matches!(error, MarketError::PriceChanged(_)), "{error:?}");
    assert!(error.is_definite());
}

#[tokio::test]
async fn order_state_is_unknown_when_fragment_cannot_say() {
    for body in [
        json!({"error": "Invalid method"}),
        json!({"ok": true}),
        json!({"error": "Request not found"}),
    ] {
        let server = MockServer::start().await;
        page().respond_with(buy_page(HASH)).mount(&server).await;
        api("updateStarsBuyState", HASH)
            .respond_with(answer(body.clone()))
            .mount(&server)
            .await;
        assert_eq!(
            client(settings(&server)).order_state(REQ_ID).await.unwrap(),
            OrderState::Unknown,
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_garbled_answer_is_a_bad_response() {
    let server = fragment_with_buy_page().await;
    api("getBuyStarsLink", HASH)
        .respond_with(raw_answer(
            r#"{"ok":true,"transaction":{"messages":[{"address":"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let error = client(settings(&server))
        .payment_request(REQ_ID, &wallet())
        .await
        .unwrap_err();
    assert!(matches!(error, MarketError::BadResponse(_)), "{error:?}");
}

#[test]
fn a_missing_cookie_in_the_config_is_named() {
    let config = format!("stel_ssid={SSID}; stel_dt=-180; stel_token={TOKEN}");
    let error = parse_fragment_cookies(&config).unwrap_err();
    assert_eq!(error, CookieError::Missing(vec!["stel_ton_token"]));
    let shown = error.to_string();
    assert!(shown.contains("stel_ton_token"), "{shown}");
    assert!(!shown.contains(SSID) && !shown.contains(TOKEN), "{shown}");
}

#[tokio::test]
async fn debug_output_never_shows_the_cookies_or_the_api_hash() {
    let server = MockServer::start().await;
    mount_good_day(&server).await;
    let settings = settings(&server);
    let fragment = client(settings.clone());
    // After a call the hash is cached inside the client.
    fragment
        .find_recipient(&username(), stars(50))
        .await
        .unwrap();
    for shown in [format!("{settings:?}"), format!("{fragment:?}")] {
        for secret in [SSID, TOKEN, TON_TOKEN, HASH] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
