//! The session cookies of the shop's Fragment account: `FRAGMENT_COOKIES` parsed into the
//! four Fragment's logged-in pages carry, and the `Cookie` header made of them. The values
//! are secrets: never in `Debug` or an error.

use std::fmt;

use reqwest::header::HeaderValue;

/// The session cookies Fragment's logged-in pages carry, in the order a browser sends them.
pub const COOKIE_NAMES: [&str; 4] = ["stel_ssid", "stel_dt", "stel_token", "stel_ton_token"];

/// The four session cookies of the shop's Fragment account. Built only by
/// [`parse_fragment_cookies`], so a value here is always complete and sendable. `Debug`
/// shows the names, never the values.
#[derive(Clone, PartialEq, Eq)]
pub struct FragmentCookies {
    /// In the order of [`COOKIE_NAMES`].
    values: [String; 4],
}

impl FragmentCookies {
    /// The `Cookie` header: `stel_ssid=…; stel_dt=…; stel_token=…; stel_ton_token=…`.
    pub(super) fn header(&self) -> Result<HeaderValue, reqwest::header::InvalidHeaderValue> {
        let text = COOKIE_NAMES
            .iter()
            .zip(&self.values)
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut header = HeaderValue::from_str(&text)?;
        // Keeps the cookies out of any `Debug` output of a request.
        header.set_sensitive(true);
        Ok(header)
    }
}

impl fmt::Debug for FragmentCookies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for name in COOKIE_NAMES {
            map.entry(&name, &"<redacted>");
        }
        map.finish()
    }
}

/// Why `FRAGMENT_COOKIES` cannot be used. Names cookies, never shows their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("FRAGMENT_COOKIES lacks the {} cookie (copy it from a logged-in fragment.com)", .0.join(", "))]
    Missing(Vec<&'static str>),
    #[error("FRAGMENT_COOKIES sets the {0} cookie more than once")]
    Duplicate(&'static str),
    #[error("FRAGMENT_COOKIES part {0} is not name=value (expected `stel_ssid=…; stel_dt=…; stel_token=…; stel_ton_token=…`)")]
    Malformed(usize),
    #[error("the {0} cookie in FRAGMENT_COOKIES has characters a cookie value cannot have")]
    InvalidValue(&'static str),
}

/// Parses `FRAGMENT_COOKIES` as a browser's cookie header string:
/// `stel_ssid=…; stel_dt=…; stel_token=…; stel_ton_token=…`, in any order, with or without
/// other cookies (which are ignored: only these four make the session). An empty value counts
/// as missing.
pub fn parse_fragment_cookies(text: &str) -> Result<FragmentCookies, CookieError> {
    let mut values: [Option<String>; 4] = Default::default();
    let parts = text
        .split(';')
        .map(str::trim)
        .enumerate()
        .filter(|(_, part)| !part.is_empty());
    for (index, part) in parts {
        let Some((name, value)) = part.split_once('=') else {
            return Err(CookieError::Malformed(index + 1));
        };
        let Some(slot) = COOKIE_NAMES.iter().position(|known| *known == name.trim()) else {
            continue;
        };
        let name = COOKIE_NAMES[slot];
        let value = value.trim();
        if !is_cookie_value(value) {
            return Err(CookieError::InvalidValue(name));
        }
        if value.is_empty() {
            continue;
        }
        if values[slot].replace(value.to_owned()).is_some() {
            return Err(CookieError::Duplicate(name));
        }
    }
    let missing: Vec<&'static str> = COOKIE_NAMES
        .iter()
        .zip(&values)
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(CookieError::Missing(missing));
    }
    Ok(FragmentCookies {
        values: values.map(Option::unwrap_or_default),
    })
}

/// RFC 6265 `cookie-value`: cookie octets, optionally inside one pair of double quotes.
fn is_cookie_value(value: &str) -> bool {
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    inner
        .bytes()
        .all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}
