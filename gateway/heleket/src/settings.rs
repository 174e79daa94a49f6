//! Heleket's settings: the mode (live or sandbox), credentials, callback address, webhook
//! senders, the invoice coin's network and the money rules' tolerance.

use std::net::IpAddr;
use std::time::Duration;

use starledger_settings::{problem, ConfigError, Env, Secret};

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

/// Reads `HELEKET_MODE`, `API_KEY`, `MERCHANT_UUID` and the other `HELEKET_*` settings.
pub fn heleket<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<HeleketConfig, ConfigError> {
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
