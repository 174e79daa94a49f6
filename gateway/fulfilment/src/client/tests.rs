//! Tests of the session cookies and of building a client from its settings, without a
//! server.

use super::*;

const COOKIES: &str =
    "stel_ssid=aa11bb22; stel_dt=-180; stel_token=secret-token-value; stel_ton_token=ton-secret-9";

#[test]
fn cookies_parse_in_any_order_and_ignore_other_cookies() {
    let cookies = parse_fragment_cookies(
        " stel_token=t; _ga=GA1.2; stel_ton_token=tt;stel_dt=-180 ; stel_ssid=s; ",
    )
    .unwrap();
    let header = cookies.header().unwrap();
    assert_eq!(
        header.to_str().unwrap(),
        "stel_ssid=s; stel_dt=-180; stel_token=t; stel_ton_token=tt"
    );
    assert!(header.is_sensitive());
}

#[test]
fn a_missing_or_empty_cookie_is_named_and_no_value_is_shown() {
    let error =
        parse_fragment_cookies("stel_ssid=aa11; stel_dt=-180; stel_token=zz99").unwrap_err();
    assert_eq!(error, CookieError::Missing(vec!["stel_ton_token"]));
    let shown = error.to_string();
    assert!(shown.contains("stel_ton_token"), "{shown}");
    assert!(
        !shown.contains("aa11") && !shown.contains("zz99"),
        "{shown}"
    );

    let error = parse_fragment_cookies("stel_ssid=; stel_dt=-180").unwrap_err();
    assert_eq!(
        error,
        CookieError::Missing(vec!["stel_ssid", "stel_token", "stel_ton_token"])
    );
    assert!(matches!(
        parse_fragment_cookies(""),
        Err(CookieError::Missing(names)) if names.len() == 4
    ));
}

#[test]
fn malformed_duplicated_or_unsendable_cookies_are_refused_by_name() {
    assert_eq!(
        parse_fragment_cookies("stel_ssid=a; garbage; stel_dt=1"),
        Err(CookieError::Malformed(2))
    );
    assert_eq!(
        parse_fragment_cookies(&format!("{COOKIES}; stel_token=again")),
        Err(CookieError::Duplicate("stel_token"))
    );
    let error = parse_fragment_cookies("stel_ssid=a b; stel_dt=1; stel_token=t; stel_ton_token=u")
        .unwrap_err();
    assert_eq!(error, CookieError::InvalidValue("stel_ssid"));
    assert!(!error.to_string().contains("a b"));
    assert!(parse_fragment_cookies(
        "stel_ssid=\"quoted\"; stel_dt=1; stel_token=t; stel_ton_token=u"
    )
    .is_ok());
}

#[test]
fn debug_of_cookies_and_settings_shows_names_not_values() {
    let cookies = parse_fragment_cookies(COOKIES).unwrap();
    let settings = FragmentSettings::new(cookies);
    let shown = format!("{settings:?}");
    for secret in ["aa11bb22", "secret-token-value", "ton-secret-9"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("stel_ton_token") && shown.contains("<redacted>"));
    assert_eq!(
        format!("{:?}", ApiHash("abcdef0123".into())),
        "ApiHash(<redacted>)"
    );
}

#[test]
fn bad_base_urls_are_refused_at_construction() {
    let cookies = parse_fragment_cookies(COOKIES).unwrap();
    for url in ["not a url", "ftp://fragment.com", ""] {
        let mut settings = FragmentSettings::new(cookies.clone());
        settings.base_url = url.into();
        assert!(
            matches!(FragmentClient::new(settings), Err(ClientError::BaseUrl(_))),
            "{url}"
        );
    }
}
