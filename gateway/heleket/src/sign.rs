//! Heleket signatures: what we send and what we accept.
//!
//! Requests carry a header `sign: md5(base64(body) + API_KEY)` over the exact bytes sent.
//! Webhooks carry `sign` *inside* the JSON body; Heleket computes it over the body without
//! `sign`, encoded the way PHP's `json_encode` encodes it: keys in received order, no spaces,
//! `/` written as `\/`, non-ASCII characters left as they are. So verification decodes the
//! body keeping key order, removes `sign`, re-encodes it that way, and compares digests in
//! constant time. Nothing here logs: callers log outcomes without the key or the signature.

use base64::Engine;
use md5::{Digest, Md5};
use serde_json::Value;
use subtle::ConstantTimeEq;

/// Why a webhook body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("body has no sign field")]
    Missing,
    #[error("sign is not 32 hexadecimal digits")]
    Malformed,
    #[error("sign does not match the body")]
    Mismatch,
}

/// The `sign` header of a request with this exact body.
pub fn request_signature(body: &[u8], api_key: &str) -> String {
    digest(body, api_key)
}

fn digest(payload: &[u8], api_key: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
    let mut hasher = Md5::new();
    hasher.update(encoded.as_bytes());
    hasher.update(api_key.as_bytes());
    hex::encode(hasher.finalize())
}

/// Checks the `sign` inside a webhook body. On success returns the body without `sign`,
/// keys in received order, for the caller to parse.
pub fn verify_webhook(body: &[u8], api_key: &str) -> Result<Value, SignatureError> {
    let mut value: Value = serde_json::from_slice(body).map_err(|_| SignatureError::NotAnObject)?;
    let object = value.as_object_mut().ok_or(SignatureError::NotAnObject)?;
    let sign = match object.shift_remove("sign") {
        Some(Value::String(sign)) => sign,
        Some(_) => return Err(SignatureError::Malformed),
        None => return Err(SignatureError::Missing),
    };
    if sign.len() != 32 || !sign.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SignatureError::Malformed);
    }
    let expected = digest(php_json_encode(&value).as_bytes(), api_key);
    let matches: bool = expected
        .as_bytes()
        .ct_eq(sign.to_ascii_lowercase().as_bytes())
        .into();
    if matches {
        Ok(value)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Signs a webhook body the way Heleket does (our sandbox sends these to our own endpoint):
/// the object re-encoded PHP-style, with `sign` appended as its last key.
pub fn sign_webhook(mut body: Value, api_key: &str) -> Value {
    if let Some(object) = body.as_object_mut() {
        object.shift_remove("sign");
        let sign = digest(
            php_json_encode(&Value::Object(object.clone())).as_bytes(),
            api_key,
        );
        object.insert("sign".into(), Value::String(sign));
    }
    body
}

/// `json_encode($value, JSON_UNESCAPED_UNICODE)` as PHP writes it.
pub fn php_json_encode(value: &Value) -> String {
    let mut out = String::new();
    write_php(&mut out, value);
    out
}

fn write_php(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => out.push_str(&number.to_string()),
        Value::String(text) => write_php_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_php(out, item);
            }
            out.push(']');
        }
        // PHP decodes `{}` to an empty array, which it encodes back as `[]`.
        Value::Object(map) if map.is_empty() => out.push_str("[]"),
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_php_string(out, key);
                out.push(':');
                write_php(out, item);
            }
            out.push('}');
        }
    }
}

fn write_php_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const KEY: &str = "test-api-key";

    fn webhook() -> Value {
        json!({
            "type": "payment",
            "uuid": "62f88b36-a9d5-4fa6-aa26-e040c3dbf26d",
            "order_id": "r1001-0f5a",
            "amount": "10.00",
            "payment_amount": "10.50",
            "merchant_amount": "10.29",
            "currency": "TON",
            "status": "paid_over",
            "is_final": true,
            "url": "https://pay.heleket.com/pay/62f88b36",
            "txid": null,
            "comment": "ёлка / тест"
        })
    }

    #[test]
    fn php_encoding_escapes_slashes_and_keeps_unicode_and_key_order() {
        let encoded = php_json_encode(&json!({"z": "a/b", "a": "ёж", "n": 1, "x": [], "o": {}}));
        assert_eq!(encoded, r#"{"z":"a\/b","a":"ёж","n":1,"x":[],"o":[]}"#);
    }

    #[test]
    fn the_request_signature_is_md5_of_base64_body_and_key() {
        // md5(base64("{}") + "key") = md5("e30=key")
        let expected = hex::encode(Md5::digest(b"e30=key"));
        assert_eq!(request_signature(b"{}", "key"), expected);
    }

    #[test]
    fn a_signed_webhook_verifies_and_loses_its_sign() {
        let body = serde_json::to_vec(&sign_webhook(webhook(), KEY)).unwrap();
        let verified = verify_webhook(&body, KEY).unwrap();
        assert!(verified.get("sign").is_none());
        assert_eq!(verified["status"], "paid_over");
    }

    #[test]
    fn the_sign_covers_the_php_encoding_of_the_body_in_received_order() {
        let signed = sign_webhook(webhook(), KEY);
        let mut unsigned = signed.clone();
        unsigned.as_object_mut().unwrap().shift_remove("sign");
        let php = php_json_encode(&unsigned);
        assert!(php.starts_with(r#"{"type":"payment","uuid":"#), "{php}");
        assert!(
            php.contains(r#""url":"https:\/\/pay.heleket.com\/pay\/62f88b36""#),
            "{php}"
        );
        assert_eq!(signed["sign"], digest(php.as_bytes(), KEY));
        // The same body sent with spaces and unescaped slashes still verifies: the digest
        // is over the re-encoding, not over the bytes received.
        let pretty = serde_json::to_string_pretty(&signed).unwrap();
        assert!(verify_webhook(pretty.as_bytes(), KEY).is_ok());
    }

    #[test]
    fn forged_tampered_and_unsigned_webhooks_are_refused() {
        let signed = sign_webhook(webhook(), KEY);
        let bytes = |v: &Value| serde_json::to_vec(v).unwrap();
        assert_eq!(
            verify_webhook(&bytes(&signed), "another-key"),
            Err(SignatureError::Mismatch)
        );

        let mut tampered = signed.clone();
        tampered["payment_amount"] = json!("1000.00");
        assert_eq!(
            verify_webhook(&bytes(&tampered), KEY),
            Err(SignatureError::Mismatch)
        );

        let mut reordered = serde_json::Map::new();
        for (key, value) in signed.as_object().unwrap().iter().rev() {
            reordered.insert(key.clone(), value.clone());
        }
        assert_eq!(
            verify_webhook(&bytes(&Value::Object(reordered)), KEY),
            Err(SignatureError::Mismatch),
            "key order is part of what Heleket signs"
        );

        assert_eq!(
            verify_webhook(&bytes(&webhook()), KEY),
            Err(SignatureError::Missing)
        );
        let mut bad = signed.clone();
        bad["sign"] = json!("zz");
        assert_eq!(
            verify_webhook(&bytes(&bad), KEY),
            Err(SignatureError::Malformed)
        );
        bad["sign"] = json!(12345);
        assert_eq!(
            verify_webhook(&bytes(&bad), KEY),
            Err(SignatureError::Malformed)
        );
        for garbage in [&b"not json"[..], b"[1,2]", b"", b"\"sign\""] {
            assert_eq!(
                verify_webhook(garbage, KEY),
                Err(SignatureError::NotAnObject)
            );
        }
    }
}
