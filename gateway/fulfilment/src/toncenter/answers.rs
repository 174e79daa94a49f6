//! Reading toncenter's answers, no I/O: an answer sorted into a result, a refusal or a
//! transient failure (with what the wallet contract's refusal of a broadcast means), wallet
//! information and get-method stacks, hashes, and the transactions a lookup pages through,
//! matched to our message by its TEP-467 normalised hash.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use chrono::DateTime;
use reqwest::StatusCode;
use serde_json::Value;

use super::{Answer, Call, Verdict, MAX_MESSAGE_CHARS};
use crate::body;
use crate::ton::{ChainError, ChainTransaction, Nanotons, TransferMessage, WalletState};
use crate::wallet::{normalized_message_hash, payload_from_body, raw_form};
use starledger_outbound::{self as outbound, Attempt};

/// Sorts an answer into result, refusal or transient failure.
pub(super) fn judge(call: Call, status: StatusCode, answer: &[u8]) -> Verdict {
    let json: Option<Value> = serde_json::from_slice(answer).ok();
    let error = json
        .as_ref()
        .filter(|json| json.get("ok") != Some(&Value::Bool(true)))
        .and_then(|json| json.get("error"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        // A proxy's plain-text error page still says what the liteserver said.
        .or_else(|| {
            (!status.is_success() && json.is_none())
                .then(|| String::from_utf8_lossy(answer).into_owned())
        });
    if call == Call::Broadcast {
        if let Some(verdict) = error.as_deref().and_then(external_verdict) {
            return Attempt::Answered(verdict);
        }
    }
    let code = json
        .as_ref()
        .and_then(|json| json.get("code"))
        .and_then(Value::as_u64)
        .and_then(|code| u16::try_from(code).ok())
        .and_then(|code| StatusCode::from_u16(code).ok());
    let unwell =
        |status: StatusCode| status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
    let explain = |status: StatusCode| match error.as_deref().map(str::trim) {
        Some(error) if !error.is_empty() => format!(
            "HTTP {}: {}",
            status.as_u16(),
            outbound::shorten(error, MAX_MESSAGE_CHARS)
        ),
        _ => format!("HTTP {}", status.as_u16()),
    };
    if unwell(status) {
        return Attempt::Transient(explain(status));
    }
    if !status.is_success() {
        return Attempt::Answered(Err(ChainError::Refused(explain(status))));
    }
    let Some(json) = json else {
        return Attempt::Answered(Err(ChainError::BadResponse(
            "the answer is not JSON".into(),
        )));
    };
    match (json.get("ok").and_then(Value::as_bool), json.get("result")) {
        (Some(true), Some(result)) => Attempt::Answered(Ok(Answer::Result(result.clone()))),
        (Some(false), _) => match code {
            Some(code) if unwell(code) => Attempt::Transient(explain(code)),
            _ => Attempt::Answered(Err(ChainError::Refused(explain(code.unwrap_or(status))))),
        },
        _ => Attempt::Answered(Err(ChainError::BadResponse(
            "the answer has no ok and result".into(),
        ))),
    }
}

/// What the wallet contract's refusal of a broadcast message means, if the error is one.
fn external_verdict(error: &str) -> Option<Result<Answer, ChainError>> {
    let lower = error.to_ascii_lowercase();
    let rejected = lower.contains("external message was not accepted")
        || lower.contains("inbound external message rejected");
    let exit_code = exit_code(&lower);
    if !rejected && exit_code.is_none() {
        if lower.contains("cannot apply external message")
            && (lower.contains("deserialize") || lower.contains("failed to parse"))
        {
            return Some(Err(ChainError::Refused(format!(
                "the message is malformed: {}",
                outbound::shorten(error, MAX_MESSAGE_CHARS)
            ))));
        }
        return None;
    }
    let why = outbound::shorten(error, MAX_MESSAGE_CHARS);
    Some(match exit_code {
        Some(33 | 133) => Ok(Answer::SeqnoAlreadyUsed(why)),
        Some(36 | 136) => Err(ChainError::Refused(format!(
            "the message expired (valid_until passed) and can no longer execute; it may \
             have executed before: look it up. {why}"
        ))),
        _ => Err(ChainError::Refused(format!(
            "the wallet did not accept the message: {why}"
        ))),
    })
}

/// The contract's exit code in a liteserver error: `exitcode=33` (liteserver) or
/// `exit code 33` (newer API servers).
fn exit_code(lower: &str) -> Option<i32> {
    ["exitcode=", "exit code "].iter().find_map(|marker| {
        let start = lower.find(marker)? + marker.len();
        let digits: String = lower[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        digits.parse().ok()
    })
}

/// What `getWalletInformation` says, once read.
#[derive(Debug, PartialEq)]
pub(super) enum Known {
    State(WalletState),
    /// Deployed, but toncenter did not recognise the contract and so gave no seqno.
    ActiveWithoutSeqno(Nanotons),
}

pub(super) fn read_wallet_information(info: &Value) -> Result<Known, ChainError> {
    let balance = info
        .get("balance")
        .and_then(read_amount)
        .ok_or_else(|| ChainError::BadResponse("the wallet information has no balance".into()))?;
    let state = info.get("account_state").and_then(Value::as_str);
    match state {
        Some("uninitialized" | "uninit" | "nonexist") => Ok(Known::State(WalletState {
            balance,
            seqno: 0,
            deployed: false,
        })),
        Some("active") => match info.get("seqno") {
            Some(seqno) => {
                let seqno = seqno
                    .as_u64()
                    .and_then(|seqno| u32::try_from(seqno).ok())
                    .ok_or_else(|| ChainError::BadResponse(format!("seqno {seqno} is unusable")))?;
                Ok(Known::State(WalletState {
                    balance,
                    seqno,
                    deployed: true,
                }))
            }
            None => Ok(Known::ActiveWithoutSeqno(balance)),
        },
        // Storage fees unpaid: the wallet cannot send until someone tops it up.
        Some("frozen") => Err(ChainError::Refused(
            "the wallet account is frozen (storage fees unpaid); top it up".into(),
        )),
        other => Err(ChainError::BadResponse(format!(
            "unknown account state {other:?}"
        ))),
    }
}

/// The seqno from `runGetMethod seqno`: `{"exit_code":0,"stack":[["num","0x1b"]]}`.
pub(super) fn read_seqno(result: &Value) -> Result<u32, ChainError> {
    let bad = |why: &str| ChainError::BadResponse(format!("runGetMethod seqno: {why}"));
    if result.get("exit_code").and_then(Value::as_i64) != Some(0) {
        return Err(bad("the get method failed"));
    }
    let entry = result
        .get("stack")
        .and_then(|stack| stack.get(0))
        .ok_or_else(|| bad("empty stack"))?;
    let number = match (entry.get(0).and_then(Value::as_str), entry.get(1)) {
        (Some("num"), Some(Value::String(number))) => number.as_str(),
        _ => return Err(bad("the stack does not start with a number")),
    };
    let parsed = match number.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => number.parse().ok(),
    };
    parsed.ok_or_else(|| bad("the number is not a seqno"))
}

/// An amount in nanotons, sent as a decimal string or a JSON number. toncenter reports a
/// negative balance (a debt) as 0, and so do we.
fn read_amount(value: &Value) -> Option<Nanotons> {
    match value {
        Value::String(text) if text.starts_with('-') => Some(Nanotons(0)),
        Value::String(text) => Nanotons::parse(text),
        Value::Number(number) if number.as_i64().is_some_and(|n| n < 0) => Some(Nanotons(0)),
        Value::Number(number) => number.as_u64().map(Nanotons),
        _ => None,
    }
}

/// A 32-byte hash as lowercase hex, from hex or base64 (either alphabet).
pub(super) fn hash_hex(text: &str) -> Option<String> {
    let text = text.trim();
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(text.to_ascii_lowercase());
    }
    [STANDARD, URL_SAFE]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .filter(|bytes| bytes.len() == 32)
        .map(hex::encode)
}

/// Where a transaction sits in the account's history: what `getTransactions` pages by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TransactionId {
    pub(super) lt: u64,
    /// As toncenter gave it (base64), to be handed back unchanged.
    pub(super) hash: String,
}

/// A transaction from `getTransactions`, with what we need of it.
pub(super) struct Transaction<'a> {
    pub(super) id: TransactionId,
    pub(super) utime: i64,
    raw: &'a Value,
}

impl<'a> Transaction<'a> {
    pub(super) fn read(raw: &'a Value) -> Result<Self, ChainError> {
        let bad = |why: &str| ChainError::BadResponse(format!("a transaction {why}"));
        let id = raw
            .get("transaction_id")
            .ok_or_else(|| bad("has no transaction_id"))?;
        let lt = id
            .get("lt")
            .and_then(read_u64)
            .ok_or_else(|| bad("has no lt"))?;
        let hash = id
            .get("hash")
            .and_then(Value::as_str)
            .filter(|hash| hash_hex(hash).is_some())
            .ok_or_else(|| bad("has no hash"))?
            .to_owned();
        let utime = raw
            .get("utime")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("has no utime"))?;
        Ok(Self {
            id: TransactionId { lt, hash },
            utime,
            raw,
        })
    }

    /// This transaction, if it executed the external message whose normalised hash (hex) is
    /// `target`.
    pub(super) fn executed(&self, target: &str) -> Result<Option<ChainTransaction>, ChainError> {
        let Some(in_msg) = self.raw.get("in_msg").filter(|m| !m.is_null()) else {
            return Ok(None);
        };
        // External messages have no source.
        if !address_text(in_msg.get("source")).is_empty() {
            return Ok(None);
        }
        let plain = in_msg
            .get("hash")
            .and_then(Value::as_str)
            .and_then(hash_hex);
        let matches = if plain.as_deref() == Some(target) {
            true
        } else {
            // Only we sign messages this wallet accepts, so an external message here that
            // cannot be read is ours in a form we do not understand: say so rather than
            // report "not found".
            let destination = address_text(in_msg.get("destination"));
            let body = raw_body(in_msg).ok_or_else(|| {
                ChainError::BadResponse("an incoming external message has no raw body".into())
            })?;
            let normalized = normalized_message_hash(destination, body).map_err(|why| {
                ChainError::BadResponse(format!("an incoming external message: {why}"))
            })?;
            normalized == target
        };
        if !matches {
            return Ok(None);
        }
        let out_msgs = match self.raw.get("out_msgs") {
            Some(Value::Array(out_msgs)) => out_msgs.as_slice(),
            None | Some(Value::Null) => &[],
            Some(_) => return Err(ChainError::BadResponse("out_msgs is not a list".into())),
        };
        let transfers = out_msgs
            .iter()
            .map(read_out_message)
            .collect::<Result<Vec<_>, _>>()?;
        let hash = hash_hex(&self.id.hash)
            .ok_or_else(|| ChainError::BadResponse("the transaction hash is unusable".into()))?;
        let at = DateTime::from_timestamp(self.utime, 0)
            .ok_or_else(|| ChainError::BadResponse("the transaction time is unusable".into()))?;
        Ok(Some(ChainTransaction {
            hash,
            lt: self.id.lt,
            at,
            message_hash: target.to_owned(),
            transfers,
        }))
    }
}

/// An outgoing message as a transfer: destination in raw form, amount, and body (`None` when
/// empty or not given as raw data).
fn read_out_message(message: &Value) -> Result<TransferMessage, ChainError> {
    let destination = address_text(message.get("destination"));
    let destination = raw_form(destination).ok_or_else(|| {
        ChainError::BadResponse(format!(
            "an outgoing message goes to {}, not an address",
            outbound::shorten(destination, 80)
        ))
    })?;
    let amount = message
        .get("value")
        .and_then(read_amount)
        .ok_or_else(|| ChainError::BadResponse("an outgoing message has no value".into()))?;
    fn unusable(why: impl std::fmt::Display) -> ChainError {
        ChainError::BadResponse(format!("an outgoing message's body: {why}"))
    }
    let payload = match (raw_body(message), text_body(message)) {
        (Some(body), _) => payload_from_body(body).map_err(unusable)?,
        // A comment shown as its text: the same body, written the way it was sent.
        (None, Some(text)) => {
            let text = text.map_err(unusable)?;
            Some(body::comment_payload(&text).map_err(unusable)?)
        }
        (None, None) => None,
    };
    Ok(TransferMessage {
        destination,
        amount,
        payload,
    })
}

/// An address as toncenter writes it: a string (`getTransactions`), or an object with
/// `account_address` (`getTransactionsStd`); empty for none.
fn address_text(value: Option<&Value>) -> &str {
    match value {
        Some(Value::String(text)) => text,
        Some(Value::Object(object)) => object
            .get("account_address")
            .and_then(Value::as_str)
            .unwrap_or(""),
        _ => "",
    }
}

/// The body of a message given as raw data (`msg.dataRaw`), base64 bag of cells.
fn raw_body(message: &Value) -> Option<&str> {
    let data = message.get("msg_data")?;
    if data.get("@type").and_then(Value::as_str) != Some("msg.dataRaw") {
        return None;
    }
    data.get("body")
        .and_then(Value::as_str)
        .filter(|body| !body.is_empty())
}

/// Why a comment toncenter shows as text (`msg.dataText`) cannot be read.
#[derive(Debug, thiserror::Error)]
enum CommentTextError {
    #[error("the comment is not base64")]
    NotBase64,
    #[error("the comment is not UTF-8")]
    NotUtf8,
}

/// The body of a message toncenter shows as a text comment (`msg.dataText`, the text
/// base64-encoded); `Some(Err)` when that text cannot be read.
fn text_body(message: &Value) -> Option<Result<String, CommentTextError>> {
    let data = message.get("msg_data")?;
    if data.get("@type").and_then(Value::as_str) != Some("msg.dataText") {
        return None;
    }
    let text = data.get("text").and_then(Value::as_str).unwrap_or("");
    Some(
        STANDARD
            .decode(text)
            .map_err(|_| CommentTextError::NotBase64)
            .and_then(|bytes| String::from_utf8(bytes).map_err(|_| CommentTextError::NotUtf8)),
    )
}

fn read_u64(value: &Value) -> Option<u64> {
    match value {
        Value::String(text) => text.parse().ok(),
        Value::Number(number) => number.as_u64(),
        _ => None,
    }
}
