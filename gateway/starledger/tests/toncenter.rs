//! Black-box tests of the toncenter client against a local mock server speaking toncenter's
//! API v2 wire format (`{"ok":true,"result":…}` envelopes, `{"ok":false,"error":…,"code":…}`
//! errors, `getWalletInformation` / `getTransactions` / `sendBocReturnHash` shapes), and of the
//! shop wallet and the client together against a stateful fake chain that executes what the
//! wallet signs.
//!
//! Retry delays are a few milliseconds so the suite stays quick; nothing asserts on timing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use starledger_fulfilment::ton::{
    ChainError, Nanotons, SignedTransfer, TonChain, TransferMessage, WalletState,
};
use starledger_fulfilment::toncenter::{Toncenter, ToncenterSettings};
use starledger_fulfilment::wallet::{same_address, ShopWallet, WalletVersion};
use starledger_outbound::resilience::{BreakerSettings, RetryPolicy};
use starledger_settings::Secret;
use wiremock::matchers::{body_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

#[allow(dead_code)] // each test binary uses its own part of the shared fakes
mod support;

use support::toncenter::{
    comment, error, executed, not_accepted, ok, transaction, Clock, FakeChain, FEE,
    FRAGMENT_ADDRESS, TEST_PHRASE,
};

const API_KEY: &str = "toncenter-test-key-77ab";

fn settings(server: &MockServer) -> ToncenterSettings {
    ToncenterSettings {
        base_url: format!("{}/api/v2", server.uri()),
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
        page_size: 3,
        max_pages: 5,
        ..ToncenterSettings::new(Some(API_KEY.into()))
    }
}

fn client(settings: ToncenterSettings) -> Toncenter {
    Toncenter::new(settings).unwrap()
}

fn wallet() -> ShopWallet {
    ShopWallet::from_seed_phrase(&Secret::new(TEST_PHRASE), WalletVersion::V4R2).unwrap()
}

fn at(unix: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(unix, 0).unwrap()
}

fn payment() -> Vec<TransferMessage> {
    vec![TransferMessage {
        destination: FRAGMENT_ADDRESS.into(),
        amount: Nanotons(2_500_000_000),
        payload: Some(comment("Ref#abc123")),
    }]
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

// ---- wallet state ---------------------------------------------------------------------------

#[tokio::test]
async fn wallet_state_of_a_deployed_wallet_sends_the_api_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/getWalletInformation"))
        .and(query_param("address", "0:abc"))
        .and(header("X-API-Key", API_KEY))
        .respond_with(ok(json!({
            "@type": "ext.accounts.walletInformation",
            "wallet": true,
            "balance": "12500000000",
            "account_state": "active",
            "wallet_type": "wallet v4 r2",
            "seqno": 17,
            "wallet_id": 698983191,
            "last_transaction_id": {"@type": "internal.transactionId", "lt": "48000000000003", "hash": "R7vI2AxqgpQQYxQaxZsQwtZXHxE6rw6mDNtKJ3LtPVM="}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let state = client(settings(&server))
        .wallet_state("0:abc")
        .await
        .unwrap();
    assert_eq!(
        state,
        WalletState {
            balance: Nanotons(12_500_000_000),
            seqno: 17,
            deployed: true
        }
    );
}

#[tokio::test]
async fn wallet_state_of_a_wallet_never_deployed_is_seqno_zero() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/getWalletInformation"))
        .respond_with(ok(json!({
            "wallet": false,
            "balance": 0,
            "account_state": "uninitialized",
            "wallet_type": null,
            "seqno": null,
            "last_transaction_id": {"@type": "internal.transactionId", "lt": "0", "hash": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
        })))
        .mount(&server)
        .await;
    let state = client(settings(&server))
        .wallet_state("0:abc")
        .await
        .unwrap();
    assert_eq!(
        state,
        WalletState {
            balance: Nanotons(0),
            seqno: 0,
            deployed: false
        }
    );
}

#[tokio::test]
async fn a_contract_toncenter_does_not_recognise_is_asked_for_its_seqno() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/getWalletInformation"))
        .respond_with(ok(
            json!({"wallet": false, "balance": "700", "account_state": "active"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/runGetMethod"))
        .and(body_json(json!({"address": "0:abc", "method": "seqno", "stack": []})))
        .respond_with(ok(json!({"@type": "smc.runResult", "gas_used": 652, "stack": [["num", "0x2a"]], "exit_code": 0})))
        .expect(1)
        .mount(&server)
        .await;
    let state = client(settings(&server))
        .wallet_state("0:abc")
        .await
        .unwrap();
    assert_eq!(
        state,
        WalletState {
            balance: Nanotons(700),
            seqno: 42,
            deployed: true
        }
    );
}

// ---- broadcast ------------------------------------------------------------------------------

fn signed(seqno: u32) -> SignedTransfer {
    wallet()
        .sign_transfer(seqno, at(1_900_000_000), &payment())
        .unwrap()
}

#[tokio::test]
async fn a_broadcast_posts_the_bag_of_cells() {
    let server = MockServer::start().await;
    let transfer = signed(3);
    let hash_norm = STANDARD.encode(hex::decode(&transfer.message_hash).unwrap());
    Mock::given(method("POST"))
        .and(path("/api/v2/sendBocReturnHash"))
        .and(header("X-API-Key", API_KEY))
        .and(body_json(json!({"boc": transfer.message})))
        .respond_with(ok(json!({"@type": "raw.extMessageInfo", "hash": hash_norm, "hash_norm": hash_norm, "@extra": "1:2:3"})))
        .expect(1)
        .mount(&server)
        .await;
    client(settings(&server))
        .broadcast(&transfer)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_broadcast_of_a_message_whose_seqno_is_used_is_not_a_failure() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/sendBocReturnHash"))
        .respond_with(not_accepted(33))
        .expect(1)
        .mount(&server)
        .await;
    client(settings(&server))
        .broadcast(&signed(3))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_broadcast_of_an_expired_message_is_refused_once() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/sendBocReturnHash"))
        .respond_with(not_accepted(36))
        .expect(1)
        .mount(&server)
        .await;
    let refused = client(settings(&server)).broadcast(&signed(3)).await;
    assert!(
        matches!(&refused, Err(ChainError::Refused(why)) if why.contains("expired")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_until_toncenter_answers() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/sendBocReturnHash"))
        .respond_with(error(502, "Bad Gateway"))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(path("/api/v2/sendBocReturnHash"))
        .respond_with(ok(json!({"@type": "raw.extMessageInfo", "hash": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="})))
        .mount(&server)
        .await;
    client(settings(&server))
        .broadcast(&signed(3))
        .await
        .unwrap();
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn rate_limits_are_retried_too() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/getWalletInformation"))
        .respond_with(error(429, "Ratelimit exceeded"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v2/getWalletInformation"))
        .respond_with(ok(
            json!({"wallet": true, "balance": "1", "account_state": "active", "seqno": 2}),
        ))
        .mount(&server)
        .await;
    let state = client(settings(&server))
        .wallet_state("0:abc")
        .await
        .unwrap();
    assert_eq!(state.seqno, 2);
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn a_server_that_keeps_failing_is_unavailable_after_the_allowed_attempts() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/getWalletInformation"))
        .respond_with(error(504, "LITE_SERVER_NETWORK timeout"))
        .expect(3)
        .mount(&server)
        .await;
    let result = client(settings(&server)).wallet_state("0:abc").await;
    assert_eq!(
        result,
        Err(ChainError::Unavailable(
            "HTTP 504: LITE_SERVER_NETWORK timeout".into()
        ))
    );
}

#[tokio::test]
async fn a_refused_api_key_is_final() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/getWalletInformation"))
        .respond_with(error(401, "API key does not exist"))
        .expect(1)
        .mount(&server)
        .await;
    let result = client(settings(&server)).wallet_state("0:abc").await;
    assert_eq!(
        result,
        Err(ChainError::Refused(
            "HTTP 401: API key does not exist".into()
        ))
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/getWalletInformation"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "http://127.0.0.1:9/steal"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let result = client(settings(&server)).wallet_state("0:abc").await;
    assert!(matches!(result, Err(ChainError::Refused(_))), "{result:?}");
}

#[tokio::test]
async fn an_endless_answer_is_cut_off_and_unusable() {
    let server = MockServer::start().await;
    let endless = format!("{{\"ok\": true, \"result\": \"{}\"}}", "x".repeat(5 << 20));
    Mock::given(path("/api/v2/getWalletInformation"))
        .respond_with(ResponseTemplate::new(200).set_body_string(endless))
        .expect(1)
        .mount(&server)
        .await;
    let result = client(settings(&server)).wallet_state("0:abc").await;
    assert_eq!(
        result,
        Err(ChainError::BadResponse("the answer is not JSON".into()))
    );
}

#[tokio::test]
async fn after_the_threshold_of_failures_calls_are_refused_without_reaching_toncenter() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/getWalletInformation"))
        .respond_with(error(503, "Service Unavailable"))
        .mount(&server)
        .await;
    let chain = client(ToncenterSettings {
        breaker: BreakerSettings {
            failure_threshold: 2,
            cool_down: Duration::from_secs(60),
        },
        ..settings(&server)
    });
    let first = chain.wallet_state("0:abc").await;
    assert!(
        matches!(&first, Err(ChainError::Unavailable(why)) if why.contains("circuit breaker opened")),
        "{first:?}"
    );
    let sent = requests(&server).await.len();
    assert_eq!(sent, 2);
    let second = chain.wallet_state("0:abc").await;
    assert!(
        matches!(&second, Err(ChainError::Unavailable(why)) if why.contains("circuit breaker is open")),
        "{second:?}"
    );
    assert_eq!(requests(&server).await.len(), sent, "nothing was sent");
}

// ---- finding the transaction ----------------------------------------------------------------

#[tokio::test]
async fn the_transaction_is_found_on_the_second_page() {
    let server = MockServer::start().await;
    let wallet = wallet();
    let friendly = wallet.friendly_address(true, false);
    let transfer = signed(5);
    let (mut in_msg, out_msgs) = executed(&transfer.message, &friendly);
    // As if a relay had re-wrapped the signed body (say, inlined it): the plain message hash
    // changes, the normalised one does not.
    in_msg["hash"] = json!(STANDARD.encode([9u8; 32]));
    let since = at(1_800_000_000);
    let page1 = json!([
        transaction(&friendly, 900, 1_800_000_900, None, json!([])),
        transaction(&friendly, 800, 1_800_000_800, None, json!([])),
        transaction(&friendly, 700, 1_800_000_700, None, json!([])),
    ]);
    let page2 = json!([
        transaction(&friendly, 700, 1_800_000_700, None, json!([])),
        transaction(&friendly, 600, 1_800_000_600, Some(in_msg), out_msgs),
        transaction(&friendly, 500, 1_800_000_500, None, json!([])),
    ]);
    let cursor_hash = STANDARD.encode([(700 % 251) as u8 + 1; 32]);
    Mock::given(path("/api/v2/getTransactions"))
        .and(query_param("address", wallet.address()))
        .and(query_param("limit", "3"))
        .and(query_param_is_missing("lt"))
        .respond_with(ok(page1))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v2/getTransactions"))
        .and(query_param("lt", "700"))
        .and(query_param("hash", cursor_hash.as_str()))
        .respond_with(ok(page2))
        .expect(1)
        .mount(&server)
        .await;
    let found = client(settings(&server))
        .find_transaction(&wallet.address(), &transfer.message_hash, since)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(found.lt, 600);
    assert_eq!(found.at, at(1_800_000_600));
    assert_eq!(found.hash, hex::encode([(600 % 251) as u8 + 1; 32]));
    assert_eq!(found.message_hash, transfer.message_hash);
    assert_eq!(found.transfers.len(), 1);
    let sent = &found.transfers[0];
    assert!(same_address(&sent.destination, FRAGMENT_ADDRESS));
    assert_eq!(sent.amount, Nanotons(2_500_000_000));
    assert_eq!(sent.payload, transfer.transfers[0].payload);
}

#[tokio::test]
async fn the_search_stops_at_since_and_finds_nothing() {
    let server = MockServer::start().await;
    let wallet = wallet();
    let friendly = wallet.friendly_address(true, false);
    Mock::given(path("/api/v2/getTransactions"))
        .respond_with(ok(json!([
            transaction(&friendly, 900, 1_800_000_900, None, json!([])),
            transaction(&friendly, 800, 1_799_999_000, None, json!([])),
            transaction(&friendly, 700, 1_799_998_000, None, json!([])),
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let found = client(settings(&server))
        .find_transaction(
            &wallet.address(),
            &signed(5).message_hash,
            at(1_800_000_000),
        )
        .await
        .unwrap();
    assert_eq!(found, None);
}

#[tokio::test]
async fn a_search_that_never_reaches_since_is_an_error_not_a_miss() {
    let server = MockServer::start().await;
    let wallet = wallet();
    let friendly = wallet.friendly_address(true, false);
    let lts = Arc::new(Mutex::new(10_000u64));
    let pages = move |_: &Request| {
        let mut lt = lts.lock().unwrap();
        let page: Vec<Value> = (0..3)
            .map(|i| transaction(&friendly, *lt - i, 1_800_000_900, None, json!([])))
            .collect();
        *lt -= 2;
        ok(Value::Array(page))
    };
    Mock::given(path("/api/v2/getTransactions"))
        .respond_with(pages)
        .mount(&server)
        .await;
    let result = client(settings(&server))
        .find_transaction(
            &wallet.address(),
            &signed(5).message_hash,
            at(1_800_000_000),
        )
        .await;
    assert!(
        matches!(result, Err(ChainError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(requests(&server).await.len(), 5);
}

// ---- the wallet and the client against a chain that executes what they send ---------------

#[tokio::test]
async fn a_payment_signed_by_the_wallet_executes_once_and_is_found() {
    let server = MockServer::start().await;
    let wallet = wallet();
    let now = 1_850_000_000;
    let fake = FakeChain::new(
        &wallet,
        Nanotons(10 * Nanotons::PER_TON),
        0,
        Clock::Fixed(now),
    );
    Mock::given(wiremock::matchers::any())
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    let chain = client(ToncenterSettings {
        page_size: 50,
        ..settings(&server)
    });
    let address = wallet.address();
    let since = at(now - 60);

    let state = chain.wallet_state(&address).await.unwrap();
    assert_eq!((state.seqno, state.deployed), (0, false));

    // The first payment deploys the wallet.
    let first = wallet
        .sign_transfer(state.seqno, at(now + 300), &payment())
        .unwrap();
    chain.broadcast(&first).await.unwrap();
    // Broadcasting the same bytes again is harmless, and not an error.
    chain.broadcast(&first).await.unwrap();
    let found = chain
        .find_transaction(&address, &first.message_hash, since)
        .await
        .unwrap()
        .expect("the first payment executed");
    assert_eq!(found.message_hash, first.message_hash);
    assert_eq!(found.transfers.len(), 1);
    assert!(same_address(
        &found.transfers[0].destination,
        FRAGMENT_ADDRESS
    ));
    assert_eq!(found.transfers[0].amount, first.transfers[0].amount);
    assert_eq!(found.transfers[0].payload, first.transfers[0].payload);

    let state = chain.wallet_state(&address).await.unwrap();
    assert_eq!((state.seqno, state.deployed), (1, true));

    // A second payment, not yet sent, is not found; sent, it is, and the first still is.
    let second = wallet
        .sign_transfer(state.seqno, at(now + 300), &payment())
        .unwrap();
    assert_eq!(
        chain
            .find_transaction(&address, &second.message_hash, since)
            .await
            .unwrap(),
        None
    );
    chain.broadcast(&second).await.unwrap();
    let found = chain
        .find_transaction(&address, &second.message_hash, since)
        .await
        .unwrap()
        .expect("the second payment executed");
    assert_eq!(found.message_hash, second.message_hash);
    assert!(chain
        .find_transaction(&address, &first.message_hash, since)
        .await
        .unwrap()
        .is_some());

    // A message that expired before it was sent is refused and never executes.
    let late = wallet.sign_transfer(2, at(now - 1), &payment()).unwrap();
    assert!(matches!(
        chain.broadcast(&late).await,
        Err(ChainError::Refused(_))
    ));
    assert_eq!(chain.wallet_state(&address).await.unwrap().seqno, 2);

    // Two messages executed, each once, however often they were sent; each paid 2.5 TON
    // and its fee.
    let executions: Vec<u32> = fake.executed().iter().map(|e| e.seqno).collect();
    assert_eq!(executions, vec![0, 1]);
    assert_eq!(fake.broadcasts().len(), 4);
    assert_eq!(
        fake.balance(),
        Nanotons(10 * Nanotons::PER_TON - 2 * (2_500_000_000 + FEE))
    );
    assert_eq!(
        fake.executed()
            .iter()
            .map(|e| e.hash_norm.clone())
            .collect::<Vec<_>>(),
        vec![first.message_hash, second.message_hash],
        "the wallet's message hash is the TEP-467 normalised hash"
    );
}
