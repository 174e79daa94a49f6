//! Tests of how toncenter's answers are read, without a server: envelopes, the wallet
//! contract's refusals of a broadcast, wallet information, get-method stacks and hashes.

use reqwest::StatusCode;
use serde_json::json;

use super::answers::{hash_hex, judge, read_seqno, read_wallet_information, Known};
use super::*;
use crate::ton::Nanotons;

fn judged(call: Call, status: u16, answer: &Value) -> Verdict {
    judge(
        call,
        StatusCode::from_u16(status).unwrap(),
        answer.to_string().as_bytes(),
    )
}

/// The liteserver's text for a message the wallet contract threw on, as toncenter relays it.
fn not_accepted(exit_code: i32) -> Value {
    json!({
        "ok": false,
        "error": format!(
            "LITE_SERVER_UNKNOWN: cannot apply external message to current state : External \
             message was not accepted\nCannot run message on account: inbound external message \
             rejected by transaction 4C6FE61A4B7925532DEE47DEED8367FB9E918D4B32A9B9EC270BEF9D9C65CA13:\
             \nexitcode={exit_code}, steps=49, gas_used=0\n"
        ),
        "code": 500
    })
}

#[test]
fn ok_answers_give_their_result() {
    assert_eq!(
        judged(
            Call::WalletState,
            200,
            &json!({"ok": true, "result": {"seqno": 1}})
        ),
        Attempt::Answered(Ok(Answer::Result(json!({"seqno": 1}))))
    );
}

#[test]
fn server_errors_and_rate_limits_are_transient_and_say_why() {
    assert_eq!(
        judged(
            Call::FindTransaction,
            429,
            &json!({"ok": false, "error": "Ratelimit exceeded", "code": 429})
        ),
        Attempt::Transient("HTTP 429: Ratelimit exceeded".into())
    );
    assert_eq!(
        judged(
            Call::WalletState,
            504,
            &json!({"ok": false, "error": "LITE_SERVER_NETWORK timeout", "code": 504})
        ),
        Attempt::Transient("HTTP 504: LITE_SERVER_NETWORK timeout".into())
    );
    assert_eq!(
        judge(
            Call::WalletState,
            StatusCode::BAD_GATEWAY,
            b"<html>bad gateway</html>"
        ),
        Attempt::Transient("HTTP 502: <html>bad gateway</html>".into())
    );
    // A liteserver trouble on a broadcast that is not the contract's verdict stays transient.
    assert_eq!(
        judged(
            Call::Broadcast,
            500,
            &json!({"ok": false, "error": "LITE_SERVER_UNKNOWN: cannot apply external message to current state : Failed to unpack account state", "code": 500})
        ),
        Attempt::Transient("HTTP 500: LITE_SERVER_UNKNOWN: cannot apply external message to current state : Failed to unpack account state".into())
    );
}

#[test]
fn client_errors_are_final_refusals() {
    for (status, answer, expected) in [
        (
            401,
            json!({"ok": false, "error": "API key does not exist", "code": 401}),
            "HTTP 401: API key does not exist",
        ),
        (
            422,
            json!({"ok": false, "error": "empty boc", "code": 422}),
            "HTTP 422: empty boc",
        ),
        (
            416,
            json!({"ok": false, "error": "Incorrect address", "code": 416}),
            "HTTP 416: Incorrect address",
        ),
    ] {
        assert_eq!(
            judged(Call::WalletState, status, &answer),
            Attempt::Answered(Err(ChainError::Refused(expected.into())))
        );
    }
    assert_eq!(
        judge(Call::WalletState, StatusCode::FORBIDDEN, b""),
        Attempt::Answered(Err(ChainError::Refused("HTTP 403".into())))
    );
}

#[test]
fn a_json_rpc_style_error_with_http_200_follows_its_code() {
    assert_eq!(
        judged(
            Call::WalletState,
            200,
            &json!({"ok": false, "error": "LITE_SERVER_NETWORK timeout", "code": 504})
        ),
        Attempt::Transient("HTTP 504: LITE_SERVER_NETWORK timeout".into())
    );
    assert_eq!(
        judged(
            Call::WalletState,
            200,
            &json!({"ok": false, "error": "Incorrect address", "code": 416})
        ),
        Attempt::Answered(Err(ChainError::Refused(
            "HTTP 416: Incorrect address".into()
        )))
    );
}

#[test]
fn unreadable_success_answers_are_bad_responses() {
    for answer in [&b"<html/>"[..], b"{\"result\": 1}", b"{\"ok\": true}"] {
        assert!(
            matches!(
                judge(Call::WalletState, StatusCode::OK, answer),
                Attempt::Answered(Err(ChainError::BadResponse(_)))
            ),
            "{}",
            String::from_utf8_lossy(answer)
        );
    }
}

#[test]
fn a_broadcast_the_wallet_refuses_for_its_seqno_is_not_a_failure() {
    for exit_code in [33, 133] {
        assert!(
            matches!(
                judged(Call::Broadcast, 500, &not_accepted(exit_code)),
                Attempt::Answered(Ok(Answer::SeqnoAlreadyUsed(_)))
            ),
            "{exit_code}"
        );
    }
    // The newer API servers' wording, with HTTP 500 too.
    assert!(matches!(
        judged(
            Call::Broadcast,
            500,
            &json!({"ok": false, "error": "Exit code 33 != 0", "code": 500})
        ),
        Attempt::Answered(Ok(Answer::SeqnoAlreadyUsed(_)))
    ));
}

#[test]
fn an_expired_broadcast_is_refused_and_says_to_look_it_up() {
    for exit_code in [36, 136] {
        let Attempt::Answered(Err(ChainError::Refused(why))) =
            judged(Call::Broadcast, 500, &not_accepted(exit_code))
        else {
            panic!("exit code {exit_code} is not a refusal");
        };
        assert!(why.contains("expired"), "{why}");
        assert!(why.contains("look it up"), "{why}");
    }
}

#[test]
fn other_refusals_of_a_broadcast_are_final() {
    for exit_code in [34, 35, 134, 135, 137, -13] {
        let verdict = judged(Call::Broadcast, 500, &not_accepted(exit_code));
        let Attempt::Answered(Err(ChainError::Refused(why))) = verdict else {
            panic!("exit code {exit_code}: {verdict:?}");
        };
        assert!(why.contains(&format!("exitcode={exit_code}")), "{why}");
    }
    let before_execution = json!({"ok": false, "code": 400, "error": "LITE_SERVER_UNKNOWN: cannot apply external message to current state : External message was not accepted: cannot run message on account: inbound external message rejected by account 3029B3EAEDA86A5381D86100F2A8B761C38DE45642EDB6E4BB1CCA2E6DD7FFED before smart-contract execution"});
    assert!(matches!(
        judged(Call::Broadcast, 400, &before_execution),
        Attempt::Answered(Err(ChainError::Refused(_)))
    ));
    let garbled = json!({"ok": false, "code": 500, "error": "cannot apply external message to current state : failed to parse external message cannot deserialize bag-of-cells: invalid header, error 0"});
    assert!(matches!(
        judged(Call::Broadcast, 500, &garbled),
        Attempt::Answered(Err(ChainError::Refused(_)))
    ));
    // The same texts on a read are only errors of that read.
    assert!(matches!(
        judged(Call::WalletState, 500, &not_accepted(33)),
        Attempt::Transient(_)
    ));
}

#[test]
fn wallet_information_of_an_active_wallet() {
    let info = json!({
        "@type": "ext.accounts.walletInformation",
        "wallet": true,
        "balance": "809401535972",
        "account_state": "active",
        "wallet_type": "wallet v4 r2",
        "seqno": 6,
        "wallet_id": 698983191,
        "last_transaction_id": {"@type": "internal.transactionId", "lt": "34789408000007", "hash": "R7vI2AxqgpQQYxQaxZsQwtZXHxE6rw6mDNtKJ3LtPVM="}
    });
    assert_eq!(
        read_wallet_information(&info),
        Ok(Known::State(WalletState {
            balance: Nanotons(809_401_535_972),
            seqno: 6,
            deployed: true
        }))
    );
}

#[test]
fn wallet_information_of_a_wallet_never_deployed() {
    // The classic server sends a zero balance as the number 0 and no seqno.
    for (balance, expected) in [(json!(0), 0), (json!("2500000000"), 2_500_000_000)] {
        let info = json!({
            "wallet": false,
            "balance": balance,
            "account_state": "uninitialized",
            "wallet_type": null,
            "seqno": null,
            "last_transaction_id": {"@type": "internal.transactionId", "lt": "0", "hash": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
        });
        assert_eq!(
            read_wallet_information(&info),
            Ok(Known::State(WalletState {
                balance: Nanotons(expected),
                seqno: 0,
                deployed: false
            }))
        );
    }
}

#[test]
fn wallet_information_without_a_seqno_or_frozen_or_garbled() {
    let unknown_contract = json!({"wallet": false, "balance": "5", "account_state": "active"});
    assert_eq!(
        read_wallet_information(&unknown_contract),
        Ok(Known::ActiveWithoutSeqno(Nanotons(5)))
    );
    let frozen = json!({"wallet": false, "balance": "0", "account_state": "frozen"});
    assert!(matches!(
        read_wallet_information(&frozen),
        Err(ChainError::Refused(_))
    ));
    for garbled in [
        json!({"balance": "5"}),
        json!({"account_state": "active", "seqno": 1}),
        json!({"balance": "1.5", "account_state": "active", "seqno": 1}),
        json!({"balance": "5", "account_state": "active", "seqno": -1}),
    ] {
        assert!(
            matches!(
                read_wallet_information(&garbled),
                Err(ChainError::BadResponse(_))
            ),
            "{garbled}"
        );
    }
}

#[test]
fn seqno_from_a_get_method_stack() {
    let result = |stack: Value, exit_code: i64| json!({"@type": "smc.runResult", "gas_used": 652, "stack": stack, "exit_code": exit_code});
    assert_eq!(read_seqno(&result(json!([["num", "0x1b"]]), 0)), Ok(27));
    assert_eq!(read_seqno(&result(json!([["num", "12"]]), 0)), Ok(12));
    for bad in [
        result(json!([["num", "0x1b"]]), -13),
        result(json!([]), 0),
        result(json!([["cell", {"bytes": ""}]]), 0),
        result(json!([["num", "0xzz"]]), 0),
    ] {
        assert!(read_seqno(&bad).is_err(), "{bad}");
    }
}

#[test]
fn hashes_are_read_from_hex_or_either_base64() {
    let hex = "47bbc8d80c6a82941063141ac59b10c2d6571f113aaf0ea60cdb4a2772ed3d53";
    assert_eq!(
        hash_hex("R7vI2AxqgpQQYxQaxZsQwtZXHxE6rw6mDNtKJ3LtPVM=").as_deref(),
        Some(hex)
    );
    assert_eq!(
        hash_hex("R7vI2AxqgpQQYxQaxZsQwtZXHxE6rw6mDNtKJ3LtPVM").as_deref(),
        None
    );
    assert_eq!(hash_hex(&hex.to_uppercase()).as_deref(), Some(hex));
    assert_eq!(hash_hex("AAAA"), None);
}

#[test]
fn settings_and_client_debug_hide_the_key() {
    let settings = ToncenterSettings::new(Some("s3cr3t-api-key".into()));
    let shown = format!("{settings:?}");
    assert!(!shown.contains("s3cr3t-api-key"), "{shown}");
    assert!(shown.contains("<redacted>"));
    let client = Toncenter::new(settings).unwrap();
    let shown = format!("{client:?}");
    assert!(!shown.contains("s3cr3t-api-key"), "{shown}");
}

#[test]
fn bad_settings_are_refused_at_construction() {
    let mut settings = ToncenterSettings::new(None);
    settings.base_url = "ftp://example.com".into();
    assert!(matches!(
        Toncenter::new(settings.clone()),
        Err(ClientError::BaseUrl(_))
    ));
    settings.base_url = DEFAULT_BASE_URL.into();
    settings.api_key = Some("line\nbreak".into());
    assert!(matches!(
        Toncenter::new(settings.clone()),
        Err(ClientError::ApiKey)
    ));
    settings.api_key = Some(String::new());
    assert!(matches!(
        Toncenter::new(settings.clone()),
        Err(ClientError::ApiKey)
    ));
    settings.api_key = None;
    settings.page_size = 101;
    assert!(matches!(
        Toncenter::new(settings.clone()),
        Err(ClientError::Paging)
    ));
    settings.page_size = 50;
    assert!(Toncenter::new(settings).is_ok());
    assert!(Toncenter::new(ToncenterSettings::testnet(None)).is_ok());
}
