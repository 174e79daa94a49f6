//! What only `starledger serve` reads: where to listen, request limits and deadlines, and the
//! settings each adapter crate reads for itself (API keys: `starledger-http`; Heleket:
//! `starledger-heleket`; the bot: `starledger-bot`; Fragment: `starledger-fulfilment`),
//! gathered here and checked together (simulated and real money never mix).
//!
//! Secrets are held in [`Secret`], whose `Debug` prints `<redacted>`, so a logged config can
//! never leak one.

use std::time::Duration;

use starledger_bot::settings::TelegramConfig;
use starledger_fulfilment::settings::{FragmentConfig, FragmentMode};
pub use starledger_heleket::settings::{HeleketConfig, HeleketMode, MIN_SANDBOX_KEY_LEN};
pub use starledger_http::console::ConsoleSettings;
pub use starledger_http::settings::{ApiKey, Role};
pub use starledger_settings::Secret;
use starledger_settings::{problem, within, ConfigError, Env, Flag};

/// The variables only `serve` reads for itself, as given (figment fills it; `from_env` judges
/// it). The adapters' variables are read by their crates.
#[derive(serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", default)]
struct ServerVars {
    webhook_host: String,
    webhook_port: u16,
    /// Unset: one worker per core.
    http_workers: Option<usize>,
    max_body_bytes: usize,
    read_your_writes_timeout_ms: u64,
    request_timeout_ms: u64,
    shutdown_timeout: u64,
    trust_proxy_headers: Flag,
    console_idle_timeout_secs: u64,
    console_max_age_secs: u64,
    console_sign_ins_per_minute: u32,
}

impl Default for ServerVars {
    fn default() -> Self {
        Self {
            webhook_host: "0.0.0.0".into(),
            webhook_port: 8001,
            http_workers: None,
            max_body_bytes: 64 * 1024,
            read_your_writes_timeout_ms: 2_000,
            request_timeout_ms: 5_000,
            shutdown_timeout: 30,
            trust_proxy_headers: Flag(false),
            console_idle_timeout_secs: 15 * 60,
            console_max_age_secs: 12 * 60 * 60,
            console_sign_ins_per_minute: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// HTTP worker threads (actix workers).
    pub workers: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a command's answer waits for the projections to show it (never past the
    /// request's deadline).
    pub read_your_writes: Duration,
    /// Every request is answered within this (see `http::deadline`), 503 if its work is not
    /// done by then.
    pub request_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// Take the client address from `X-Forwarded-For` (only behind a proxy that overwrites it).
    pub trust_proxy_headers: bool,
    pub api_keys: Vec<ApiKey>,
    /// The operators' console's sessions and sign-in throttle.
    pub console: ConsoleSettings,
    pub heleket: HeleketConfig,
    /// The Telegram bot; `None` without `TELEGRAM_TOKEN` (the HTTP API runs alone).
    pub telegram: Option<TelegramConfig>,
    pub fragment: FragmentConfig,
}

impl ServerConfig {
    pub fn from_process_env() -> Result<Self, ConfigError> {
        Self::from_env(&starledger_settings::process_env())
    }

    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let vars: ServerVars = env.extract()?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let millis =
            |variable, value, range| within(variable, value, range).map(Duration::from_millis);
        Self {
            host: vars.webhook_host,
            // The type is the range: every u16 is a port (0 picks a free one).
            port: vars.webhook_port,
            workers: within("HTTP_WORKERS", vars.http_workers.unwrap_or(cores), 1..=256)?,
            max_body_bytes: within(
                "MAX_BODY_BYTES",
                vars.max_body_bytes,
                256..=16 * 1024 * 1024,
            )?,
            read_your_writes: millis(
                "READ_YOUR_WRITES_TIMEOUT_MS",
                vars.read_your_writes_timeout_ms,
                0..=60_000,
            )?,
            request_timeout: millis("REQUEST_TIMEOUT_MS", vars.request_timeout_ms, 500..=600_000)?,
            shutdown_timeout: Duration::from_secs(within(
                "SHUTDOWN_TIMEOUT",
                vars.shutdown_timeout,
                1..=600,
            )?),
            trust_proxy_headers: vars.trust_proxy_headers.0,
            api_keys: starledger_http::settings::api_keys(env)?,
            console: ConsoleSettings {
                idle_timeout: Duration::from_secs(within(
                    "CONSOLE_IDLE_TIMEOUT_SECS",
                    vars.console_idle_timeout_secs,
                    60..=24 * 60 * 60,
                )?),
                max_age: Duration::from_secs(within(
                    "CONSOLE_MAX_AGE_SECS",
                    vars.console_max_age_secs,
                    5 * 60..=7 * 24 * 60 * 60,
                )?),
                sign_ins_per_minute: within(
                    "CONSOLE_SIGN_INS_PER_MINUTE",
                    vars.console_sign_ins_per_minute,
                    1..=1_000,
                )?,
            },
            heleket: starledger_heleket::settings::heleket(env)?,
            telegram: starledger_bot::settings::telegram(env)?,
            fragment: starledger_fulfilment::settings::fragment(env)?,
        }
        .with_modes_that_do_not_mix()
    }

    /// Simulated and real money never meet: a sandbox Heleket with a live Fragment would let
    /// money nobody paid buy real Stars from the real wallet (and the sandbox key signs
    /// "payments" anyone can make), and a live Heleket with a sandbox Fragment would take real
    /// money for Stars nobody delivers. The manual Fragment mode moves no money and goes with
    /// either.
    fn with_modes_that_do_not_mix(self) -> Result<Self, ConfigError> {
        let heleket_live = matches!(self.heleket.mode, HeleketMode::Live { .. });
        match (&self.fragment.mode, heleket_live) {
            (FragmentMode::Live(_), false) => Err(problem(
                "FRAGMENT_MODE",
                "FRAGMENT_MODE=live with HELEKET_MODE=sandbox would let simulated money buy real Stars; use FRAGMENT_MODE=sandbox or manual with the sandbox, or HELEKET_MODE=live",
            )),
            (FragmentMode::Sandbox, true) => Err(problem(
                "FRAGMENT_MODE",
                "FRAGMENT_MODE=sandbox with HELEKET_MODE=live would take real money for simulated Stars; use FRAGMENT_MODE=live or manual with HELEKET_MODE=live, or HELEKET_MODE=sandbox",
            )),
            // The wallet signs transfers only to Fragment's own addresses: without the list it
            // would sign nothing, so live mode does not start without it.
            (FragmentMode::Live(live), true) if live.payment_addresses.is_empty() => Err(problem(
                "FRAGMENT_PAYMENT_ADDRESSES",
                "is required with FRAGMENT_MODE=live: the comma-separated TON addresses Fragment has orders paid to (the `address` of getBuyStarsLink's messages); the wallet signs transfers to no other address",
            )),
            _ => Ok(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ServerConfig::from_env(&Env(move |name| vars.get(name).cloned()))
    }

    const SANDBOX: (&str, &str) = ("HELEKET_MODE", "sandbox");

    #[test]
    fn sandbox_needs_no_credentials() {
        let config = config(&[SANDBOX]).unwrap();
        assert_eq!(config.port, 8001);
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert!(config.api_keys.is_empty());
        assert_eq!(config.console, ConsoleSettings::default());
        assert!(matches!(config.heleket.mode, HeleketMode::Sandbox { .. }));
        assert_eq!(config.heleket.callback_url, None);
    }

    #[test]
    fn live_mode_names_each_missing_credential() {
        assert_eq!(config(&[]).unwrap_err().variable, "MERCHANT_UUID");
        assert_eq!(
            config(&[("MERCHANT_UUID", "m")]).unwrap_err().variable,
            "API_KEY"
        );
        assert_eq!(
            config(&[("MERCHANT_UUID", "m"), ("API_KEY", "k")])
                .unwrap_err()
                .variable,
            "HELEKET_CALLBACK_URL"
        );
        let live = config(&[
            ("MERCHANT_UUID", "m"),
            ("API_KEY", "k"),
            ("PRODUCTION_DOMAIN", "shop.example"),
        ])
        .unwrap();
        assert_eq!(
            live.heleket.callback_url.as_deref(),
            Some("https://shop.example/webhooks/heleket")
        );
    }

    #[test]
    fn api_keys_are_parsed_with_roles() {
        let config = config(&[
            SANDBOX,
            (
                "STARLEDGER_API_KEYS",
                "bot:service:0123456789abcdef, alice:admin:fedcba9876543210xx",
            ),
        ])
        .unwrap();
        assert_eq!(config.api_keys.len(), 2);
        assert_eq!(config.api_keys[1].name, "alice");
        assert_eq!(config.api_keys[1].role, Role::Admin);
        assert_eq!(config.api_keys[1].secret.expose(), "fedcba9876543210xx");
    }

    #[test]
    fn malformed_values_name_their_variable_and_never_echo_a_secret() {
        for (variable, value) in [
            ("STARLEDGER_API_KEYS", "bot:service"),
            ("STARLEDGER_API_KEYS", "bot:root:0123456789abcdef"),
            ("STARLEDGER_API_KEYS", "bot:service:short-secret"),
            (
                "STARLEDGER_API_KEYS",
                "a:service:0123456789abcdef,b:admin:0123456789abcdef",
            ),
            ("STARLEDGER_API_KEYS", "b@d:service:0123456789abcdef"),
            ("WEBHOOK_PORT", "70000"),
            ("MAX_BODY_BYTES", "1"),
            ("REQUEST_TIMEOUT_MS", "0"),
            ("REQUEST_TIMEOUT_MS", "5s"),
            ("HELEKET_MODE", "test"),
            ("HELEKET_ALLOWED_IPS", "31.133.220.8, nope"),
            ("HELEKET_INVOICE_LIFETIME", "60"),
            ("HELEKET_CALLBACK_URL", "ftp://x"),
            ("TRUST_PROXY_HEADERS", "maybe"),
        ] {
            let mut vars = vec![(variable, value)];
            if variable != "HELEKET_MODE" {
                vars.push(SANDBOX);
            }
            let error = config(&vars).unwrap_err();
            assert_eq!(error.variable, variable, "{value}");
            assert!(!error.to_string().contains("0123456789abcdef"));
        }
    }

    #[test]
    fn webhooks_are_confirmed_by_default_in_live_mode_only() {
        let live = [
            ("MERCHANT_UUID", "m"),
            ("API_KEY", "k"),
            ("PRODUCTION_DOMAIN", "shop.example"),
        ];
        let parsed = config(&live).unwrap();
        assert!(parsed.heleket.confirm_webhooks);
        assert_eq!(parsed.heleket.overpay_tolerance_percent, 10);
        assert_eq!(parsed.heleket.network, "ton");
        assert!(!config(&[SANDBOX]).unwrap().heleket.confirm_webhooks);
        let mut off = live.to_vec();
        off.push(("HELEKET_CONFIRM_WEBHOOKS", "false"));
        assert!(!config(&off).unwrap().heleket.confirm_webhooks);
        let mut usdt = live.to_vec();
        usdt.push(("LEDGER_CURRENCY", "USDT"));
        assert_eq!(config(&usdt).unwrap_err().variable, "HELEKET_NETWORK");
        usdt.push(("HELEKET_NETWORK", "tron"));
        assert_eq!(config(&usdt).unwrap().heleket.network, "tron");
        for (variable, value) in [
            ("HELEKET_OVERPAY_TOLERANCE_PERCENT", "101"),
            ("HELEKET_OVERPAY_TOLERANCE_PERCENT", "-1"),
            ("HELEKET_CONFIRM_WEBHOOKS", "sometimes"),
            ("HELEKET_NETWORK", "TON Mainnet"),
        ] {
            assert_eq!(
                config(&[SANDBOX, (variable, value)]).unwrap_err().variable,
                variable
            );
        }
    }

    #[test]
    fn the_sandbox_has_no_published_key() {
        let error = config(&[SANDBOX, ("API_KEY", "sandbox-api-key")]).unwrap_err();
        assert_eq!(error.variable, "API_KEY");
        assert!(!error.to_string().contains("sandbox-api-key"));
        let first = config(&[SANDBOX]).unwrap();
        let second = config(&[SANDBOX]).unwrap();
        let key = first.heleket.mode.api_key().expose().to_owned();
        assert!(key.len() >= MIN_SANDBOX_KEY_LEN);
        assert_ne!(key, second.heleket.mode.api_key().expose());
        let long = "0123456789abcdef0123456789abcdef";
        let chosen = config(&[SANDBOX, ("API_KEY", long)]).unwrap();
        assert_eq!(chosen.heleket.mode.api_key().expose(), long);
    }

    #[test]
    fn sandbox_and_live_money_never_mix() {
        let live_fragment = [
            ("FRAGMENT_MODE", "live"),
            (
                "FRAGMENT_COOKIES",
                "stel_ssid=a; stel_dt=-180; stel_token=b; stel_ton_token=c",
            ),
            (
                "FRAGMENT_SEED_PHRASE",
                "words are checked when the wallet is made",
            ),
        ];
        let mut mixed = live_fragment.to_vec();
        mixed.push(SANDBOX);
        let error = config(&mixed).unwrap_err();
        assert_eq!(error.variable, "FRAGMENT_MODE");
        assert!(
            error.to_string().contains("HELEKET_MODE=sandbox"),
            "{error}"
        );
        let live_heleket = [
            ("MERCHANT_UUID", "m"),
            ("API_KEY", "k"),
            ("PRODUCTION_DOMAIN", "shop.example"),
        ];
        let mut mixed = live_heleket.to_vec();
        mixed.push(("FRAGMENT_MODE", "sandbox"));
        let error = config(&mixed).unwrap_err();
        assert!(error.to_string().contains("HELEKET_MODE=live"), "{error}");
        // Live with live, sandbox with sandbox, and manual with either start.
        let mut live = live_heleket.to_vec();
        live.extend(live_fragment);
        // Live Fragment needs the addresses its wallet may pay, and nothing else does.
        let error = config(&live).unwrap_err();
        assert_eq!(error.variable, "FRAGMENT_PAYMENT_ADDRESSES");
        live.push((
            "FRAGMENT_PAYMENT_ADDRESSES",
            "EQBAjaOyi2wGWlk-EDkSabqqnF-MrrwMadnwqrurKpkla9nE, 0:5a4d5f0b7e2c9a1d3f6b8e0c2a4d6f8b1e3c5a7d9f0b2e4c6a8d0f1b3e5c7a9d",
        ));
        assert!(config(&live).is_ok());
        let mut wrong = live.clone();
        wrong.pop();
        wrong.push((
            "FRAGMENT_PAYMENT_ADDRESSES",
            "EQBAjaOyi2wGWlk-EDkSabqqnF, fragment",
        ));
        let error = config(&wrong).unwrap_err();
        assert_eq!(error.variable, "FRAGMENT_PAYMENT_ADDRESSES");
        assert!(error.problem.contains("entry 1"), "{error}");
        assert!(config(&[SANDBOX, ("FRAGMENT_MODE", "sandbox")]).is_ok());
        assert!(config(&[SANDBOX, ("FRAGMENT_MODE", "manual")]).is_ok());
        assert!(config(&live_heleket).is_ok());
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let config = config(&[
            ("HELEKET_MODE", "sandbox"),
            ("API_KEY", "heleket-secret-key-0123456789abcdef"),
            ("STARLEDGER_API_KEYS", "bot:service:0123456789abcdef"),
        ])
        .unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("heleket-secret-key"));
        assert!(
            !printed.contains("sandbox-"),
            "a generated key is secret too"
        );
        assert!(!printed.contains("0123456789abcdef"));
    }
}
