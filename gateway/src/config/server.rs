//! What only `starledger serve` reads: where to listen, the API keys and their roles, and
//! the Heleket credentials and mode (Fragment's are in [`super::fragment`]).
//!
//! Secrets are held in [`Secret`] (`crate::secret`, re-exported here), whose `Debug` prints
//! `<redacted>`, so a logged config can never leak one.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use super::{problem, ConfigError, Env};

pub use crate::secret::Secret;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The bot and other internal callers: users, balances, recharges, purchases.
    Service,
    /// Operators: adjustments, projections; may also read users.
    Admin,
    /// Auditors: the event stream, verify, balances at a moment; may also read users.
    Auditor,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "service" => Some(Self::Service),
            "admin" => Some(Self::Admin),
            "auditor" => Some(Self::Auditor),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Admin => "admin",
            Self::Auditor => "auditor",
        }
    }
}

/// One configured API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Who holds it: recorded as the actor of admin commands (`admin:NAME`).
    pub name: String,
    pub role: Role,
    pub secret: Secret,
}

/// Shortest accepted API key secret: guessing must not be an option.
pub const MIN_SECRET_LEN: usize = 16;

/// Which Heleket the gateway talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeleketMode {
    /// The real API: invoices cost nothing, but the money paid is real.
    Live {
        base_url: String,
        merchant_uuid: String,
        api_key: Secret,
    },
    /// Invoices created locally and paid by signed webhooks we send ourselves.
    Sandbox { api_key: Secret },
}

impl HeleketMode {
    /// The key webhooks are signed with.
    pub fn api_key(&self) -> &Secret {
        match self {
            Self::Live { api_key, .. } | Self::Sandbox { api_key } => api_key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeleketConfig {
    pub mode: HeleketMode,
    /// Where Heleket sends webhooks. `None` only in sandbox mode: then the server's own
    /// address is used.
    pub callback_url: Option<String>,
    pub invoice_lifetime_seconds: u32,
    /// Webhook senders allowed; empty allows any (the signature is what protects us).
    pub allowed_ips: Vec<IpAddr>,
    /// How often pending recharges past their expiry are checked with `payment/info`.
    pub reconcile_interval: Duration,
    /// Per-attempt timeout of calls to Heleket.
    pub request_timeout: Duration,
    /// `HELEKET_NETWORK`: the network of the ledger's coin, the only one invoices accept.
    pub network: String,
    /// `HELEKET_OVERPAY_TOLERANCE_PERCENT`: how far above the invoice a payment is still
    /// credited unattended; more waits for review.
    pub overpay_tolerance_percent: u32,
    /// `HELEKET_CONFIRM_WEBHOOKS`: read each acted-on webhook back with `payment/info`
    /// before it changes a recharge (default: on in live mode, off in the sandbox).
    pub confirm_webhooks: bool,
}

/// Shortest sandbox `API_KEY`: the sandbox signs webhooks with it, and a guessable key would
/// let anyone "pay" sandbox invoices.
pub const MIN_SANDBOX_KEY_LEN: usize = 32;

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
    pub heleket: HeleketConfig,
    /// The Telegram bot; `None` without `TELEGRAM_TOKEN` (the HTTP API runs alone).
    pub telegram: Option<super::telegram::TelegramConfig>,
    pub fragment: super::fragment::FragmentConfig,
}

impl ServerConfig {
    pub fn from_process_env() -> Result<Self, ConfigError> {
        Self::from_env(&Env(|name| std::env::var(name).ok()))
    }

    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            host: env.get("WEBHOOK_HOST").unwrap_or_else(|| "0.0.0.0".into()),
            port: env.number("WEBHOOK_PORT", 8001u16, 0..=65_535)?,
            workers: env.number("HTTP_WORKERS", cores, 1..=256)?,
            max_body_bytes: env.number("MAX_BODY_BYTES", 64 * 1024, 256..=16 * 1024 * 1024)?,
            read_your_writes: Duration::from_millis(env.number(
                "READ_YOUR_WRITES_TIMEOUT_MS",
                2_000u64,
                0..=60_000,
            )?),
            request_timeout: Duration::from_millis(env.number(
                "REQUEST_TIMEOUT_MS",
                5_000u64,
                500..=600_000,
            )?),
            shutdown_timeout: env.seconds("SHUTDOWN_TIMEOUT", 30, 1..=600)?,
            trust_proxy_headers: env.flag("TRUST_PROXY_HEADERS", false)?,
            api_keys: api_keys(env)?,
            heleket: heleket(env)?,
            telegram: super::telegram::telegram(env)?,
            fragment: super::fragment::fragment(env)?,
        }
        .with_modes_that_do_not_mix()
    }

    /// Simulated and real money never meet: a sandbox Heleket with a live Fragment would let
    /// money nobody paid buy real Stars from the real wallet (and the sandbox key signs
    /// "payments" anyone can make), and a live Heleket with a sandbox Fragment would take real
    /// money for Stars nobody delivers. The manual Fragment mode moves no money and goes with
    /// either.
    fn with_modes_that_do_not_mix(self) -> Result<Self, ConfigError> {
        use super::fragment::FragmentMode;
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

fn api_keys<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Vec<ApiKey>, ConfigError> {
    const VARIABLE: &str = "STARLEDGER_API_KEYS";
    let Some(text) = env.get(VARIABLE) else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    let mut secrets = HashSet::new();
    for (index, entry) in text.split(',').map(str::trim).enumerate() {
        let n = index + 1;
        let mut parts = entry.splitn(3, ':');
        let (Some(name), Some(role), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(problem(
                VARIABLE,
                format!("entry {n} is not name:role:secret"),
            ));
        };
        let name_ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !name_ok {
            return Err(problem(
                VARIABLE,
                format!("entry {n}: the name must be 1 to 32 letters, digits, '_', '.' or '-'"),
            ));
        }
        let role = Role::parse(role).ok_or_else(|| {
            problem(
                VARIABLE,
                format!("entry {n}: the role must be service, admin or auditor"),
            )
        })?;
        // The secret itself never goes into an error message.
        if secret.len() < MIN_SECRET_LEN || secret.chars().any(|c| c.is_whitespace()) {
            return Err(problem(
                VARIABLE,
                format!(
                    "entry {n}: the secret must be at least {MIN_SECRET_LEN} characters without spaces"
                ),
            ));
        }
        if !secrets.insert(secret.to_owned()) {
            return Err(problem(
                VARIABLE,
                format!("entry {n}: the same secret is given twice"),
            ));
        }
        keys.push(ApiKey {
            name: name.to_owned(),
            role,
            secret: Secret::new(secret),
        });
    }
    Ok(keys)
}

fn heleket<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<HeleketConfig, ConfigError> {
    let required = |variable: &'static str| {
        env.get(variable).ok_or_else(|| {
            problem(
                variable,
                "is required with HELEKET_MODE=live (set HELEKET_MODE=sandbox to rehearse without money)",
            )
        })
    };
    let mode = match env.get("HELEKET_MODE").as_deref().map(str::trim) {
        None | Some("live") => HeleketMode::Live {
            base_url: env
                .get("HELEKET_API_URL")
                .unwrap_or_else(|| "https://api.heleket.com".into())
                .trim_end_matches('/')
                .to_owned(),
            merchant_uuid: required("MERCHANT_UUID")?,
            api_key: Secret::new(required("API_KEY")?),
        },
        Some("sandbox") => HeleketMode::Sandbox {
            api_key: match env.get("API_KEY") {
                // No published default: a fixed key would let anyone sign sandbox webhooks.
                None => Secret::new(format!(
                    "sandbox-{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                )),
                Some(key) if key.chars().count() >= MIN_SANDBOX_KEY_LEN => Secret::new(key),
                Some(_) => {
                    return Err(problem(
                        "API_KEY",
                        format!("must be at least {MIN_SANDBOX_KEY_LEN} characters in sandbox mode (or unset: a random key is made per process)"),
                    ))
                }
            },
        },
        Some(other) => {
            return Err(problem(
                "HELEKET_MODE",
                format!("{other:?} is not live or sandbox"),
            ))
        }
    };
    if let HeleketMode::Live { base_url, .. } = &mode {
        if !base_url.starts_with("https://") && !base_url.starts_with("http://") {
            return Err(problem("HELEKET_API_URL", "must be an http(s) URL"));
        }
    }
    let callback_url = match (
        env.get("HELEKET_CALLBACK_URL"),
        env.get("PRODUCTION_DOMAIN"),
    ) {
        (Some(url), _) if url.starts_with("https://") || url.starts_with("http://") => Some(url),
        (Some(_), _) => {
            return Err(problem("HELEKET_CALLBACK_URL", "must be an http(s) URL"));
        }
        (None, Some(domain)) => Some(format!(
            "https://{}/webhooks/heleket",
            domain.trim().trim_end_matches('/')
        )),
        (None, None) if matches!(mode, HeleketMode::Sandbox { .. }) => None,
        (None, None) => {
            return Err(problem(
                "HELEKET_CALLBACK_URL",
                "is required with HELEKET_MODE=live unless PRODUCTION_DOMAIN is set",
            ))
        }
    };
    let allowed_ips = match env.get("HELEKET_ALLOWED_IPS") {
        None => Vec::new(),
        Some(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|ip| {
                ip.parse::<IpAddr>().map_err(|_| {
                    problem(
                        "HELEKET_ALLOWED_IPS",
                        format!("{ip:?} is not an IP address"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let live = matches!(mode, HeleketMode::Live { .. });
    let network = match env.get("HELEKET_NETWORK") {
        Some(network) => {
            let network = network.trim().to_owned();
            let valid = (2..=32).contains(&network.len())
                && network
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b));
            if !valid {
                return Err(problem(
                    "HELEKET_NETWORK",
                    "must be a Heleket network code such as ton, tron or bsc",
                ));
            }
            network
        }
        None => match env.get("LEDGER_CURRENCY").map(|c| c.trim().to_uppercase()) {
            None => "ton".to_owned(),
            Some(coin) if coin == "TON" => "ton".to_owned(),
            Some(coin) if !live => coin.to_lowercase(),
            Some(coin) => {
                return Err(problem(
                    "HELEKET_NETWORK",
                    format!("is required with LEDGER_CURRENCY={coin}: the network invoices of that coin accept"),
                ))
            }
        },
    };
    Ok(HeleketConfig {
        mode,
        callback_url,
        invoice_lifetime_seconds: env.number("HELEKET_INVOICE_LIFETIME", 3_600u32, 300..=43_200)?,
        allowed_ips,
        reconcile_interval: env.seconds("HELEKET_RECONCILE_INTERVAL", 60, 1..=86_400)?,
        request_timeout: env.seconds("HELEKET_TIMEOUT", 10, 1..=120)?,
        network,
        overpay_tolerance_percent: env.number(
            "HELEKET_OVERPAY_TOLERANCE_PERCENT",
            10u32,
            0..=starledger_ledger::account::MAX_TOLERANCE_PERCENT,
        )?,
        confirm_webhooks: env.flag("HELEKET_CONFIRM_WEBHOOKS", live)?,
    })
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
