//! Heleket's settings: the mode (live or sandbox), credentials, callback address, webhook
//! senders, the invoice coin's network and the money rules' tolerance.

use std::net::IpAddr;
use std::time::Duration;

use starledger_settings::{problem, within, ConfigError, Entries, Env, Flag, Secret};

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

/// The variables Heleket's settings are read from, as given (figment fills it; the checks
/// below judge it).
#[derive(serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", default)]
struct HeleketVars {
    heleket_mode: Option<String>,
    heleket_api_url: String,
    merchant_uuid: Option<String>,
    api_key: Option<Secret>,
    heleket_callback_url: Option<String>,
    production_domain: Option<String>,
    heleket_invoice_lifetime: u32,
    heleket_allowed_ips: Entries,
    heleket_reconcile_interval: u64,
    heleket_timeout: u64,
    heleket_network: Option<String>,
    /// The ledger's coin: which network invoices default to.
    ledger_currency: Option<String>,
    heleket_overpay_tolerance_percent: u32,
    /// Unset: on in live mode, off in the sandbox.
    heleket_confirm_webhooks: Option<Flag>,
}

impl Default for HeleketVars {
    fn default() -> Self {
        Self {
            heleket_mode: None,
            heleket_api_url: "https://api.heleket.com".into(),
            merchant_uuid: None,
            api_key: None,
            heleket_callback_url: None,
            production_domain: None,
            heleket_invoice_lifetime: 3_600,
            heleket_allowed_ips: Entries::default(),
            heleket_reconcile_interval: 60,
            heleket_timeout: 10,
            heleket_network: None,
            ledger_currency: None,
            heleket_overpay_tolerance_percent: 10,
            heleket_confirm_webhooks: None,
        }
    }
}

/// A credential live mode cannot go without.
fn required<T: Clone>(variable: &'static str, value: &Option<T>) -> Result<T, ConfigError> {
    value.clone().ok_or_else(|| {
        problem(
            variable,
            "is required with HELEKET_MODE=live (set HELEKET_MODE=sandbox to rehearse without money)",
        )
    })
}

/// Reads `HELEKET_MODE`, `API_KEY`, `MERCHANT_UUID` and the other `HELEKET_*` settings.
pub fn heleket<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<HeleketConfig, ConfigError> {
    let vars: HeleketVars = env.extract()?;
    let mode = match vars.heleket_mode.as_deref().map(str::trim) {
        None | Some("live") => HeleketMode::Live {
            base_url: vars.heleket_api_url.trim_end_matches('/').to_owned(),
            merchant_uuid: required("MERCHANT_UUID", &vars.merchant_uuid)?,
            api_key: required("API_KEY", &vars.api_key)?,
        },
        Some("sandbox") => HeleketMode::Sandbox {
            api_key: match &vars.api_key {
                // No published default: a fixed key would let anyone sign sandbox webhooks.
                None => Secret::new(format!(
                    "sandbox-{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                )),
                Some(key) if key.expose().chars().count() >= MIN_SANDBOX_KEY_LEN => key.clone(),
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
    let callback_url = match (vars.heleket_callback_url, vars.production_domain) {
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
    let allowed_ips = vars
        .heleket_allowed_ips
        .0
        .iter()
        .map(|ip| {
            ip.parse::<IpAddr>().map_err(|_| {
                problem(
                    "HELEKET_ALLOWED_IPS",
                    format!("{ip:?} is not an IP address"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let live = matches!(mode, HeleketMode::Live { .. });
    let network = match vars.heleket_network {
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
        None => match vars.ledger_currency.map(|c| c.trim().to_uppercase()) {
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
        invoice_lifetime_seconds: within(
            "HELEKET_INVOICE_LIFETIME",
            vars.heleket_invoice_lifetime,
            300..=43_200,
        )?,
        allowed_ips,
        reconcile_interval: Duration::from_secs(within(
            "HELEKET_RECONCILE_INTERVAL",
            vars.heleket_reconcile_interval,
            1..=86_400,
        )?),
        request_timeout: Duration::from_secs(within(
            "HELEKET_TIMEOUT",
            vars.heleket_timeout,
            1..=120,
        )?),
        network,
        overpay_tolerance_percent: within(
            "HELEKET_OVERPAY_TOLERANCE_PERCENT",
            vars.heleket_overpay_tolerance_percent,
            0..=starledger_ledger::account::MAX_TOLERANCE_PERCENT,
        )?,
        confirm_webhooks: vars.heleket_confirm_webhooks.map_or(live, |flag| flag.0),
    })
}
