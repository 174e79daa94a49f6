//! Judging Fragment's answers: an API answer sorted into a result, a typed refusal, a stale
//! API hash or a transient failure, and the buy page into the API hash, a rejected session or
//! a transient failure. No I/O.

use reqwest::header::{HeaderMap, LOCATION};
use reqwest::StatusCode;
use serde_json::Value;

use super::{Answer, ApiHash, Failure, Verdict, MAX_MESSAGE_CHARS};
use crate::market::MarketError;
use starledger_outbound::shorten;

/// Sorts an API answer into result, refusal, stale hash or transient failure.
pub(crate) fn judge_api(status: StatusCode, headers: &HeaderMap, body: Vec<u8>) -> Verdict {
    if let Some(transient) = transient_problem(status, headers, &body) {
        return Verdict::Transient(transient);
    }
    if let Some(session) = rejected_session(status, headers) {
        return Verdict::Answered(Err(Failure::Market(MarketError::SessionExpired(session))));
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        if looks_like_login_page(&body) {
            return session_expired("the API answered with Fragment's login page");
        }
        return Verdict::Answered(Err(Failure::Market(MarketError::BadResponse(
            if status.is_success() {
                "the answer is not JSON".into()
            } else {
                format!("HTTP {}", status.as_u16())
            },
        ))));
    };
    let Value::Object(fields) = &json else {
        return Verdict::Answered(Err(Failure::Market(MarketError::BadResponse(
            "the answer is not a JSON object".into(),
        ))));
    };
    if let Some(error) = fields.get("error").and_then(error_text) {
        return judge_error(&error);
    }
    if !status.is_success() {
        return Verdict::Answered(Err(Failure::Market(MarketError::BadResponse(format!(
            "HTTP {}",
            status.as_u16()
        )))));
    }
    // Both say the account cannot buy until an operator acts: the TON wallet is not
    // connected to the session (its stel_ton_token is gone), or KYC is due.
    if truthy(fields.get("need_ton")) {
        return session_expired(
            "Fragment sees no TON wallet connected to the session (need_ton): renew stel_ton_token",
        );
    }
    if truthy(fields.get("need_verify")) {
        return Verdict::Answered(Err(Failure::Market(MarketError::KycRequired(
            "Fragment wants the account verified (need_verify) at fragment.com/my/profile".into(),
        ))));
    }
    Verdict::Answered(Ok(Answer { json, body }))
}

/// Sorts the buy page into the API hash, a rejected session or a transient failure.
pub(crate) fn judge_page(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ApiHash, Verdict> {
    if let Some(transient) = transient_problem(status, headers, body) {
        return Err(Verdict::Transient(transient));
    }
    if let Some(session) = rejected_session(status, headers) {
        return Err(Verdict::Answered(Err(Failure::Market(
            MarketError::SessionExpired(session),
        ))));
    }
    if !status.is_success() {
        return Err(Verdict::Answered(Err(Failure::Market(
            MarketError::BadResponse(format!("the buy page answered HTTP {}", status.as_u16())),
        ))));
    }
    if let Some(hash) = find_api_hash(&String::from_utf8_lossy(body)) {
        return Ok(ApiHash(hash));
    }
    if looks_like_login_page(body) {
        return Err(session_expired(
            "the buy page shows Fragment's login form instead of the API",
        ));
    }
    Err(Verdict::Answered(Err(Failure::Market(
        MarketError::BadResponse("the buy page carries no API hash".into()),
    ))))
}

/// 5xx, 429 and Cloudflare's challenge pages (which come as 403 or 503): try again later.
fn transient_problem(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let mitigated = headers
        .get("cf-mitigated")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("challenge"));
    if mitigated || looks_like_cloudflare_challenge(body) {
        return Some(format!("Cloudflare challenge (HTTP {})", status.as_u16()));
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Some(format!("HTTP {}", status.as_u16()));
    }
    None
}

/// 401/403 and redirects: Fragment turned the session away. Names where a redirect pointed
/// (path only: a query could carry anything).
fn rejected_session(status: StatusCode, headers: &HeaderMap) -> Option<String> {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Some(format!("HTTP {}: renew FRAGMENT_COOKIES", status.as_u16()));
    }
    if status.is_redirection() {
        let target = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|location| location.split(['?', '#']).next().unwrap_or_default())
            .map(|path| shorten(path, 80))
            .unwrap_or_else(|| "nowhere".into());
        return Some(format!(
            "Fragment redirected the request to {target}: renew FRAGMENT_COOKIES"
        ));
    }
    None
}

/// Sorts Fragment's `error` text. Its texts as clients have seen them: `Bad request` (stale
/// hash), `Access denied` (no session), `No Telegram users found.`, `… not assigned to a
/// user …`, `Price was changed`, `Invalid method`; KYC is worded with "verif"/"KYC".
fn judge_error(error: &str) -> Verdict {
    let text = error.to_lowercase();
    let short = shorten(error, MAX_MESSAGE_CHARS);
    let answered = |error: MarketError| Verdict::Answered(Err(Failure::Market(error)));
    let has = |needles: &[&str]| needles.iter().any(|needle| text.contains(needle));
    if text.trim() == "bad request" || has(&["hash"]) {
        return Verdict::StaleHash(short);
    }
    if has(&[
        "access denied",
        "unauthorized",
        "not authorized",
        "log in",
        "login",
        "session",
    ]) {
        return answered(MarketError::SessionExpired(short));
    }
    if has(&["invalid method", "unknown method", "method not found"]) {
        return Verdict::Answered(Err(Failure::UnknownMethod(short)));
    }
    if has(&["too many requests", "flood", "try again later"]) {
        return Verdict::Transient(short);
    }
    if has(&["kyc", "verif", "identity"]) {
        return answered(MarketError::KycRequired(short));
    }
    if text.contains("price") && text.contains("chang") {
        return answered(MarketError::PriceChanged(short));
    }
    if has(&[
        "no telegram users",
        "user not found",
        "not found",
        "assigned to a user",
        "invalid username",
    ]) {
        return answered(MarketError::RecipientNotFound(short));
    }
    answered(MarketError::Refused(short))
}

fn session_expired(why: &str) -> Verdict {
    Verdict::Answered(Err(Failure::Market(MarketError::SessionExpired(
        why.to_owned(),
    ))))
}

/// Fragment's `error` is a string; anything else non-empty is shown as JSON.
fn error_text(error: &Value) -> Option<String> {
    match error {
        Value::Null | Value::Bool(false) => None,
        Value::String(text) if text.trim().is_empty() => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_u64() != Some(0),
        Some(Value::String(s)) => !s.is_empty() && s != "0" && s != "false",
        Some(_) => true,
    }
}

/// An id Fragment gives as a string or an integer, as text.
pub(crate) fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// The hash in the page's `/api?hash=<hex>` (JSON-escaped as `\/api?hash=` in the config).
pub(super) fn find_api_hash(page: &str) -> Option<String> {
    const MARK: &str = "/api?hash=";
    page.match_indices(MARK).find_map(|(at, _)| {
        let hash: String = page[at + MARK.len()..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        (hash.len() >= 8).then_some(hash)
    })
}

/// Cloudflare's "Just a moment…" interstitial and its block pages.
fn looks_like_cloudflare_challenge(body: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]).to_lowercase();
    [
        "cf-chl",
        "challenge-platform",
        "just a moment...",
        "attention required! | cloudflare",
    ]
    .iter()
    .any(|marker| head.contains(marker))
}

/// A Fragment page offering to log in (its login button, the Telegram login widget).
fn looks_like_login_page(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_lowercase();
    text.trim_start().starts_with('<')
        && ["login-link", "href=\"/login", "telegram-login", ">log in<"]
            .iter()
            .any(|marker| text.contains(marker))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;
    use serde_json::json;

    use super::*;

    fn judged(status: u16, body: &str) -> Verdict {
        let status = StatusCode::from_u16(status).unwrap();
        judge_api(status, &HeaderMap::new(), body.as_bytes().to_vec())
    }

    fn market_error(verdict: Verdict) -> MarketError {
        match verdict {
            Verdict::Answered(Err(Failure::Market(error))) => error,
            other => panic!("expected a market error, got {other:?}"),
        }
    }

    #[test]
    fn the_api_hash_is_found_in_the_escaped_page_config() {
        let page = r#"<script>Aj.init({"version":1,"apiUrl":"\/api?hash=0a1b2c3d4e5f6789","uh":"x"});</script>"#;
        assert_eq!(find_api_hash(page).as_deref(), Some("0a1b2c3d4e5f6789"));
        let plain = r#"<a href="/api?hash=zz">x</a> fetch("/api?hash=deadbeefcafe")"#;
        assert_eq!(find_api_hash(plain).as_deref(), Some("deadbeefcafe"));
        assert_eq!(find_api_hash("<html>no api here</html>"), None);
        assert_eq!(
            find_api_hash("/api?hash=abc"),
            None,
            "too short to be a hash"
        );
    }

    #[test]
    fn the_page_gives_a_hash_a_rejected_session_or_a_transient_failure() {
        let ok = StatusCode::OK;
        let none = HeaderMap::new();
        let page =
            br#"<html><script>Aj.init({"apiUrl":"\/api?hash=0123456789abcdef"})</script></html>"#;
        assert_eq!(
            judge_page(ok, &none, page),
            Ok(ApiHash("0123456789abcdef".into()))
        );
        let login = br#"<html><a class="btn login-link" href="/login">Log in</a></html>"#;
        assert!(matches!(
            judge_page(ok, &none, login),
            Err(Verdict::Answered(Err(Failure::Market(
                MarketError::SessionExpired(_)
            ))))
        ));
        assert!(matches!(
            judge_page(ok, &none, b"<html>maintenance</html>"),
            Err(Verdict::Answered(Err(Failure::Market(
                MarketError::BadResponse(_)
            ))))
        ));
        let challenge = b"<html><title>Just a moment...</title><script src=\"/cdn-cgi/challenge-platform/x\"></script></html>";
        assert!(matches!(
            judge_page(StatusCode::FORBIDDEN, &none, challenge),
            Err(Verdict::Transient(_))
        ));
        assert!(matches!(
            judge_page(StatusCode::BAD_GATEWAY, &none, b""),
            Err(Verdict::Transient(_))
        ));
        let mut redirect = HeaderMap::new();
        redirect.insert(LOCATION, HeaderValue::from_static("/login?return=secret"));
        let Err(verdict) = judge_page(StatusCode::FOUND, &redirect, b"") else {
            panic!("a redirect is no page");
        };
        let error = market_error(verdict);
        assert!(matches!(error, MarketError::SessionExpired(_)));
        assert!(error.to_string().contains("/login") && !error.to_string().contains("secret"));
    }

    #[test]
    fn server_errors_rate_limits_and_challenges_are_transient() {
        for status in [500, 502, 503, 504, 429] {
            assert_eq!(
                judged(status, "{}"),
                Verdict::Transient(format!("HTTP {status}"))
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert("cf-mitigated", HeaderValue::from_static("challenge"));
        assert!(matches!(
            judge_api(StatusCode::FORBIDDEN, &headers, b"<html></html>".to_vec()),
            Verdict::Transient(_)
        ));
        assert!(matches!(
            judged(200, r#"{"error":"Too many requests, try again later"}"#),
            Verdict::Transient(_)
        ));
    }

    #[test]
    fn fragments_error_texts_become_typed_errors() {
        let cases: &[(&str, &str)] = &[
            ("No Telegram users found.", "recipient_not_found"),
            (
                "This username is not assigned to a user.",
                "recipient_not_found",
            ),
            ("Access denied", "session_expired"),
            ("Please log in to continue", "session_expired"),
            ("Price was changed, please try again", "price_changed"),
            ("Please pass KYC verification to continue", "kyc_required"),
            ("Not enough stars left", "refused"),
        ];
        for (text, code) in cases {
            let body = json!({ "error": text }).to_string();
            assert_eq!(market_error(judged(200, &body)).code(), *code, "{text}");
        }
        assert_eq!(
            judged(200, r#"{"error":"Bad request"}"#),
            Verdict::StaleHash("Bad request".into())
        );
        assert!(matches!(
            judged(200, r#"{"error":"Invalid method"}"#),
            Verdict::Answered(Err(Failure::UnknownMethod(_)))
        ));
    }

    #[test]
    fn not_found_means_the_recipient_only_where_one_is_looked_up() {
        let body = r#"{"error":"Request not found"}"#;
        assert_eq!(
            market_error(judged(200, body).about(true)).code(),
            "recipient_not_found"
        );
        assert_eq!(
            market_error(judged(200, body).about(false)).code(),
            "refused"
        );
    }

    #[test]
    fn flags_and_statuses_that_stop_all_orders_are_not_refusals() {
        for answer in [
            judged(200, r#"{"ok":true,"need_ton":true}"#),
            judged(401, "{}"),
            judged(403, "<html>Forbidden</html>"),
            judged(
                200,
                r#"<!DOCTYPE html><html><a class="login-link" href="/login">Log in</a></html>"#,
            ),
        ] {
            assert!(
                matches!(market_error(answer), MarketError::SessionExpired(_)),
                "session"
            );
        }
        assert!(matches!(
            market_error(judged(200, r#"{"ok":true,"need_verify":true}"#)),
            MarketError::KycRequired(_)
        ));
        assert!(matches!(
            judged(200, r#"{"ok":true,"need_verify":false,"need_ton":0}"#),
            Verdict::Answered(Ok(_))
        ));
    }

    #[test]
    fn unreadable_answers_are_bad_responses() {
        for (status, body) in [
            (200, "<html>hello</html>"),
            (200, "[1,2]"),
            (404, "nope"),
            (400, "{}"),
        ] {
            assert!(
                matches!(
                    market_error(judged(status, body)),
                    MarketError::BadResponse(_)
                ),
                "{status} {body}"
            );
        }
    }
}
