//! How `starledger serve` fulfils Stars purchases: the `FRAGMENT_*` and `TON_*` settings.
//!
//! Three modes. `manual` (the default) moves no money by itself: purchases wait, funds
//! reserved, until an operator marks them delivered or failed through the admin API.
//! `sandbox` runs the fulfilment worker against an in-memory Fragment and chain. `live`
//! runs it against fragment.com and the TON blockchain, paying from the wallet of
//! `FRAGMENT_SEED_PHRASE`; it needs the Fragment session cookies too. The seed phrase and the
//! cookies are held as [`Secret`]s and never printed.

use std::time::Duration;

use rust_decimal::Decimal;

use crate::client::{parse_fragment_cookies, FragmentCookies};
use crate::wallet::WalletVersion;
use starledger_settings::Secret;
use starledger_settings::{problem, within, ConfigError, Env, Flag};

/// Where purchases are fulfilled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FragmentMode {
    /// Operators mark purchases delivered or failed through the admin API.
    Manual,
    /// The worker runs against an in-memory Fragment and chain.
    Sandbox,
    /// The worker buys on fragment.com and pays from the shop's TON wallet.
    Live(Box<LiveFragment>),
}

/// What the live mode needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFragment {
    pub fragment_url: String,
    /// `FRAGMENT_COOKIES`: `stel_ssid=…; stel_dt=…; stel_token=…; stel_ton_token=…`.
    pub cookies: FragmentCookies,
    /// `FRAGMENT_SEED_PHRASE`: the 24 words of the shop wallet.
    pub seed_phrase: Secret,
    pub wallet_version: WalletVersion,
    /// A TON HTTP API (toncenter v2 by default).
    pub ton_api_url: String,
    pub ton_api_key: Option<Secret>,
    /// `FRAGMENT_PAYMENT_ADDRESSES`: Fragment's payment addresses, the only destinations the
    /// wallet signs transfers to. Required in live mode (checked once the modes are known to
    /// go together, see `ServerConfig`); empty here means it was not set.
    pub payment_addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentConfig {
    pub mode: FragmentMode,
    /// Per-attempt timeout of calls to Fragment and to the TON API.
    pub request_timeout: Duration,
    /// Below this many TON in the wallet, operators are alerted.
    pub min_wallet_balance: Decimal,
    /// The most Fragment may charge per star, in TON. Unset: with a TON ledger, the price the
    /// customer pays is the ceiling; other ledger currencies must set it.
    pub max_ton_per_star: Option<Decimal>,
    /// How long a paid order may wait for Fragment's confirmation before operators are told.
    pub delivery_alert_after: Duration,
    /// `FRAGMENT_SESSION_CHECK_EVERY`: how often the session is checked between orders.
    pub session_check_every: Duration,
    /// `FRAGMENT_SESSION_EXPIRES_AT`: when the session cookies expire (RFC 3339), as the
    /// browser they were copied from shows it; operators are alerted three days before.
    pub session_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The test-only setting that lets live mode talk plain http (to local stand-ins of Fragment
/// and toncenter). Never set it in production: the Fragment cookies travel to
/// `FRAGMENT_API_URL`, and a plaintext TON API could be fed a false chain.
pub const ALLOW_PLAIN_HTTP: &str = "STARLEDGER_TEST_ALLOW_PLAIN_HTTP";

/// The variables every mode reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", default)]
struct FragmentVars {
    fragment_mode: Option<String>,
    fragment_timeout: u64,
    /// TON amounts are the domain's decimals (checked by [`ton_amount`]), read as text.
    fragment_wallet_min_balance: Option<String>,
    fragment_max_ton_per_star: Option<String>,
    fragment_delivery_alert_after: u64,
    fragment_session_check_every: u64,
    fragment_session_expires_at: Option<String>,
}

impl Default for FragmentVars {
    fn default() -> Self {
        Self {
            fragment_mode: None,
            fragment_timeout: 15,
            fragment_wallet_min_balance: None,
            fragment_max_ton_per_star: None,
            fragment_delivery_alert_after: 600,
            fragment_session_check_every: 300,
            fragment_session_expires_at: None,
        }
    }
}

/// The variables only live mode reads: in the other modes they are not looked at, so a
/// leftover wallet setting cannot stop a manual or sandbox start.
#[derive(serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", default)]
struct LiveVars {
    fragment_wallet_version: Option<String>,
    fragment_cookies: Option<Secret>,
    fragment_seed_phrase: Option<Secret>,
    fragment_api_url: String,
    ton_api_url: String,
    ton_api_key: Option<Secret>,
    /// Parsed by [`payment_addresses`]: its messages count entries as written.
    fragment_payment_addresses: Option<String>,
    starledger_test_allow_plain_http: Flag,
}

impl Default for LiveVars {
    fn default() -> Self {
        Self {
            fragment_wallet_version: None,
            fragment_cookies: None,
            fragment_seed_phrase: None,
            fragment_api_url: "https://fragment.com".into(),
            ton_api_url: "https://toncenter.com/api/v2".into(),
            ton_api_key: None,
            fragment_payment_addresses: None,
            starledger_test_allow_plain_http: Flag(false),
        }
    }
}

fn url(variable: &'static str, url: &str, plain_http: bool) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/').to_owned();
    if url.starts_with("https://") || (plain_http && url.starts_with("http://")) {
        Ok(url)
    } else if url.starts_with("http://") {
        Err(problem(
            variable,
            format!("must be an https URL (plain http only with the test setting {ALLOW_PLAIN_HTTP}=true)"),
        ))
    } else {
        Err(problem(variable, "must be an https URL"))
    }
}

fn ton_amount(variable: &'static str, text: Option<&str>) -> Result<Option<Decimal>, ConfigError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let amount: Decimal = text
        .trim()
        .parse()
        .map_err(|_| problem(variable, format!("{text:?} is not a decimal amount of TON")))?;
    if amount.is_sign_negative() || amount.scale() > 9 || amount > Decimal::from(1_000_000_000) {
        return Err(problem(
            variable,
            "must be a non-negative amount of TON with at most 9 decimals",
        ));
    }
    Ok(Some(amount))
}

/// `FRAGMENT_PAYMENT_ADDRESSES`: comma-separated TON addresses, raw or user-friendly.
fn payment_addresses(text: Option<&str>) -> Result<Vec<String>, ConfigError> {
    const VARIABLE: &str = "FRAGMENT_PAYMENT_ADDRESSES";
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let mut addresses = Vec::new();
    for (index, entry) in text.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        if !crate::wallet::is_address(entry) {
            return Err(problem(
                VARIABLE,
                format!(
                    "entry {} is not a TON address (raw 0:<64 hex> or user-friendly)",
                    index + 1
                ),
            ));
        }
        addresses.push(entry.to_owned());
    }
    Ok(addresses)
}

fn live<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<LiveFragment, ConfigError> {
    let vars: LiveVars = env.extract()?;
    let required = |variable: &'static str, value: Option<Secret>| {
        value.ok_or_else(|| {
            problem(
                variable,
                "is required with FRAGMENT_MODE=live (FRAGMENT_MODE=sandbox rehearses without money, manual leaves delivery to operators)",
            )
        })
    };
    let wallet_version = match vars.fragment_wallet_version {
        None => WalletVersion::default(),
        Some(text) => text
            .parse()
            .map_err(|error| problem("FRAGMENT_WALLET_VERSION", format!("{error}")))?,
    };
    let cookies =
        parse_fragment_cookies(required("FRAGMENT_COOKIES", vars.fragment_cookies)?.expose())
            // The parser's messages name the variable and the cookie, never a value.
            .map_err(|error| problem("FRAGMENT_COOKIES", error.to_string()))?;
    let plain_http = vars.starledger_test_allow_plain_http.0;
    Ok(LiveFragment {
        fragment_url: url("FRAGMENT_API_URL", &vars.fragment_api_url, plain_http)?,
        cookies,
        seed_phrase: required("FRAGMENT_SEED_PHRASE", vars.fragment_seed_phrase)?,
        wallet_version,
        ton_api_url: url("TON_API_URL", &vars.ton_api_url, plain_http)?,
        ton_api_key: vars.ton_api_key,
        payment_addresses: payment_addresses(vars.fragment_payment_addresses.as_deref())?,
    })
}

pub fn fragment<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<FragmentConfig, ConfigError> {
    let vars: FragmentVars = env.extract()?;
    let mode = match vars.fragment_mode.as_deref().map(str::trim) {
        None | Some("manual") => FragmentMode::Manual,
        Some("sandbox") => FragmentMode::Sandbox,
        Some("live") => FragmentMode::Live(Box::new(live(env)?)),
        Some(other) => {
            return Err(problem(
                "FRAGMENT_MODE",
                format!("{other:?} is not manual, sandbox or live"),
            ))
        }
    };
    let seconds = |variable, value, range| within(variable, value, range).map(Duration::from_secs);
    Ok(FragmentConfig {
        mode,
        request_timeout: seconds("FRAGMENT_TIMEOUT", vars.fragment_timeout, 1..=120)?,
        min_wallet_balance: ton_amount(
            "FRAGMENT_WALLET_MIN_BALANCE",
            vars.fragment_wallet_min_balance.as_deref(),
        )?
        .unwrap_or(Decimal::from(10)),
        max_ton_per_star: ton_amount(
            "FRAGMENT_MAX_TON_PER_STAR",
            vars.fragment_max_ton_per_star.as_deref(),
        )?,
        delivery_alert_after: seconds(
            "FRAGMENT_DELIVERY_ALERT_AFTER",
            vars.fragment_delivery_alert_after,
            10..=86_400,
        )?,
        session_check_every: seconds(
            "FRAGMENT_SESSION_CHECK_EVERY",
            vars.fragment_session_check_every,
            10..=86_400,
        )?,
        session_expires_at: match vars.fragment_session_expires_at {
            None => None,
            Some(text) => Some(
                chrono::DateTime::parse_from_rfc3339(text.trim())
                    .map(|at| at.with_timezone(&chrono::Utc))
                    .map_err(|_| {
                        problem(
                            "FRAGMENT_SESSION_EXPIRES_AT",
                            "must be an RFC 3339 time, e.g. 2027-01-31T12:00:00Z",
                        )
                    })?,
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<FragmentConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        fragment(&Env(move |name| vars.get(name).cloned()))
    }

    const COOKIES: &str =
        "stel_ssid=cookie-value; stel_dt=-240; stel_token=token-value; stel_ton_token=ton-token-value";

    const WORDS: &str = "abandon ability able about above absent absorb abstract absurd abuse access accident account accuse achieve acid acoustic acquire across act action actor actress actual";

    #[test]
    fn manual_is_the_default_and_needs_nothing() {
        // Live-only settings are not read in the other modes, as before.
        let leftover = [(ALLOW_PLAIN_HTTP, "maybe"), ("FRAGMENT_API_URL", "ftp://x")];
        assert_eq!(config(&leftover).unwrap().mode, FragmentMode::Manual);
        let config = config(&[]).unwrap();
        assert_eq!(config.mode, FragmentMode::Manual);
        assert_eq!(config.min_wallet_balance, Decimal::from(10));
        assert_eq!(config.max_ton_per_star, None);
    }

    #[test]
    fn live_mode_names_each_missing_secret() {
        let live = ("FRAGMENT_MODE", "live");
        assert_eq!(config(&[live]).unwrap_err().variable, "FRAGMENT_COOKIES");
        let missing = config(&[live, ("FRAGMENT_COOKIES", "stel_ssid=cookie-value")]).unwrap_err();
        assert_eq!(missing.variable, "FRAGMENT_COOKIES");
        assert!(missing.problem.contains("stel_ton_token"), "{missing}");
        assert!(!missing.to_string().contains("cookie-value"), "{missing}");
        assert_eq!(
            config(&[live, ("FRAGMENT_COOKIES", COOKIES)])
                .unwrap_err()
                .variable,
            "FRAGMENT_SEED_PHRASE"
        );
        let config = config(&[
            live,
            ("FRAGMENT_COOKIES", COOKIES),
            ("FRAGMENT_SEED_PHRASE", WORDS),
            ("TON_API_URL", "https://testnet.toncenter.com/api/v2/"),
        ])
        .unwrap();
        let FragmentMode::Live(live) = &config.mode else {
            panic!("not live: {:?}", config.mode);
        };
        assert_eq!(live.ton_api_url, "https://testnet.toncenter.com/api/v2");
        assert_eq!(live.wallet_version, WalletVersion::V4R2);
        assert_eq!(live.cookies, parse_fragment_cookies(COOKIES).unwrap());
        let printed = format!("{config:?}");
        assert!(!printed.contains("cookie-value"), "{printed}");
        assert!(!printed.contains("ton-token-value"), "{printed}");
        assert!(!printed.contains("abandon"), "{printed}");
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (variable, value) in [
            ("FRAGMENT_MODE", "auto"),
            ("FRAGMENT_WALLET_MIN_BALANCE", "-1"),
            ("FRAGMENT_WALLET_MIN_BALANCE", "ten"),
            ("FRAGMENT_MAX_TON_PER_STAR", "0.0000000001"),
            ("FRAGMENT_TIMEOUT", "0"),
            ("FRAGMENT_DELIVERY_ALERT_AFTER", "1"),
        ] {
            assert_eq!(
                config(&[(variable, value)]).unwrap_err().variable,
                variable,
                "{value}"
            );
        }
        let live = [
            ("FRAGMENT_MODE", "live"),
            ("FRAGMENT_COOKIES", COOKIES),
            ("FRAGMENT_SEED_PHRASE", WORDS),
        ];
        for (variable, value) in [
            ("FRAGMENT_WALLET_VERSION", "v3"),
            ("TON_API_URL", "toncenter.com"),
            ("FRAGMENT_API_URL", "ftp://fragment.com"),
            ("FRAGMENT_API_URL", "http://fragment.com"),
            ("TON_API_URL", "http://toncenter.com/api/v2"),
        ] {
            let mut vars = live.to_vec();
            vars.push((variable, value));
            assert_eq!(config(&vars).unwrap_err().variable, variable, "{value}");
        }
        // Local stand-ins speak plain http, with the test-only setting only.
        let mut local = live.to_vec();
        local.push(("FRAGMENT_API_URL", "http://127.0.0.1:9000"));
        local.push(("TON_API_URL", "http://127.0.0.1:9001/api/v2"));
        assert!(config(&local).is_err());
        local.push((ALLOW_PLAIN_HTTP, "true"));
        assert!(config(&local).is_ok());
    }
}
