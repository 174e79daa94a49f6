//! The Telegram bot's settings, read by `starledger serve`: the token, which Bot API server
//! to talk to, long polling or webhook, the per-user rate limits and the dialogue session TTL.
//!
//! The bot is optional: without `TELEGRAM_TOKEN` there is no [`TelegramConfig`] and `serve`
//! runs the HTTP API alone. The token and the webhook secret are [`Secret`]s, so neither can
//! reach a log line through `Debug`, and no error message here repeats them.

use std::time::Duration;

use starledger_settings::Secret;
use starledger_settings::{problem, within, ConfigError, Env};

/// How updates reach the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelegramMode {
    /// `getUpdates` long polling. Telegram refuses two pollers of one bot at once, so exactly
    /// one instance may run in this mode.
    Polling,
    /// Telegram posts updates to `url` (our `POST /webhooks/telegram`), each carrying
    /// `secret` in `X-Telegram-Bot-Api-Secret-Token`.
    Webhook { url: String, secret: Secret },
}

/// Per-user limits within one window (the seed's "per minute").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Every message and button press.
    pub messages: u32,
    /// Everything that reads or writes the ledger (balance, history, registration, offers).
    pub operations: u32,
    /// Invoices and purchases: what moves money or asks Heleket for an invoice.
    pub payments: u32,
    /// Length of the counting window.
    pub window: Duration,
}

impl Default for RateLimits {
    /// The seed's defaults: 30 messages, 20 operations, 5 payments per minute.
    fn default() -> Self {
        Self {
            messages: 30,
            operations: 20,
            payments: 5,
            window: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramConfig {
    pub token: Secret,
    /// Base URL of the Bot API (`https://api.telegram.org`, or a local server in tests and
    /// for operators who run their own Bot API server).
    pub api_url: String,
    pub mode: TelegramMode,
    pub limits: RateLimits,
    /// How long a dialogue step (waiting for an amount or a recipient, an open offer) lives.
    pub session_ttl: Duration,
}

/// Shortest webhook secret accepted: it is the only thing standing between the internet and
/// the bot's update stream.
pub const MIN_WEBHOOK_SECRET_LEN: usize = 16;

/// `TELEGRAM_TOKEN` alone: without it the bot's other settings are not read at all (a stray
/// rate limit does not stop an HTTP-only gateway).
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", default)]
struct TokenVars {
    telegram_token: Option<Secret>,
}

/// The bot's other variables, read once there is a token.
#[derive(serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", default)]
struct TelegramVars {
    telegram_api_url: String,
    telegram_webhook_url: Option<String>,
    production_domain: Option<String>,
    webhook_secret: Option<Secret>,
    rate_limit_user_messages: u32,
    rate_limit_user_operations: u32,
    rate_limit_user_payments: u32,
    cache_ttl_rate_limit: u64,
    cache_ttl_session: u64,
}

impl Default for TelegramVars {
    fn default() -> Self {
        let limits = RateLimits::default();
        Self {
            telegram_api_url: "https://api.telegram.org".into(),
            telegram_webhook_url: None,
            production_domain: None,
            webhook_secret: None,
            rate_limit_user_messages: limits.messages,
            rate_limit_user_operations: limits.operations,
            rate_limit_user_payments: limits.payments,
            cache_ttl_rate_limit: limits.window.as_secs(),
            cache_ttl_session: 1800,
        }
    }
}

/// Reads the bot's settings; `Ok(None)` when `TELEGRAM_TOKEN` is unset.
pub fn telegram<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<TelegramConfig>, ConfigError> {
    let Some(token) = env.extract::<TokenVars>()?.telegram_token else {
        return Ok(None);
    };
    let vars: TelegramVars = env.extract()?;
    let token = token.expose().trim().to_owned();
    // `123456789:AA…`: the bot id, a colon, the secret part. Checked only for shape; the
    // token itself never goes into the message.
    let shaped = token.split_once(':').is_some_and(|(id, rest)| {
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty()
    }) && token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-:".contains(&b));
    if !shaped {
        return Err(problem(
            "TELEGRAM_TOKEN",
            "is not a bot token of the form <digits>:<letters, digits, _ or ->",
        ));
    }
    let api_url = vars
        .telegram_api_url
        .trim()
        .trim_end_matches('/')
        .to_owned();
    if !is_http_url(&api_url) {
        return Err(problem("TELEGRAM_API_URL", "must be an http(s) URL"));
    }
    let url = match (vars.telegram_webhook_url, vars.production_domain) {
        (Some(url), _) if is_http_url(url.trim()) => Some(url.trim().to_owned()),
        (Some(_), _) => {
            return Err(problem("TELEGRAM_WEBHOOK_URL", "must be an http(s) URL"));
        }
        (None, Some(domain)) => Some(format!(
            "https://{}/webhooks/telegram",
            domain.trim().trim_end_matches('/')
        )),
        (None, None) => None,
    };
    if let Some(url) = &url {
        webhook_url_telegram_accepts(url)?;
    }
    let mode = match url {
        None => TelegramMode::Polling,
        Some(url) => {
            let secret = vars.webhook_secret.ok_or_else(|| {
                problem(
                    "WEBHOOK_SECRET",
                    "is required when the bot takes webhooks (PRODUCTION_DOMAIN or TELEGRAM_WEBHOOK_URL is set)",
                )
            })?;
            // Telegram's own rule for secret_token: 1–256 of A–Z, a–z, 0–9, _ and -.
            let text = secret.expose();
            let valid = (MIN_WEBHOOK_SECRET_LEN..=256).contains(&text.len())
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return Err(problem(
                    "WEBHOOK_SECRET",
                    format!("must be {MIN_WEBHOOK_SECRET_LEN} to 256 letters, digits, '_' or '-'"),
                ));
            }
            TelegramMode::Webhook { url, secret }
        }
    };
    let limit = |variable, value| within(variable, value, 1..=100_000);
    Ok(Some(TelegramConfig {
        token: Secret::new(token),
        api_url,
        mode,
        limits: RateLimits {
            messages: limit("RATE_LIMIT_USER_MESSAGES", vars.rate_limit_user_messages)?,
            operations: limit(
                "RATE_LIMIT_USER_OPERATIONS",
                vars.rate_limit_user_operations,
            )?,
            payments: limit("RATE_LIMIT_USER_PAYMENTS", vars.rate_limit_user_payments)?,
            window: Duration::from_secs(within(
                "CACHE_TTL_RATE_LIMIT",
                vars.cache_ttl_rate_limit,
                1..=86_400,
            )?),
        },
        session_ttl: Duration::from_secs(within(
            "CACHE_TTL_SESSION",
            vars.cache_ttl_session,
            60..=86_400,
        )?),
    }))
}

/// Ports Telegram delivers webhooks to.
pub const WEBHOOK_PORTS: [u16; 4] = [443, 80, 88, 8443];

/// Telegram posts webhooks only to https URLs on ports 443, 80, 88 or 8443; `setWebhook`
/// refuses anything else, so say so at start with the variable's name.
fn webhook_url_telegram_accepts(url: &str) -> Result<(), ConfigError> {
    let variable = "TELEGRAM_WEBHOOK_URL";
    let parsed = reqwest::Url::parse(url).map_err(|_| {
        problem(
            variable,
            "is not a URL (nor is https://PRODUCTION_DOMAIN/…)",
        )
    })?;
    if parsed.scheme() != "https" || parsed.host_str().is_none() {
        return Err(problem(
            variable,
            "must be an https URL with a host: Telegram sends webhooks only over https",
        ));
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    if !WEBHOOK_PORTS.contains(&port) {
        return Err(problem(
            variable,
            format!("port {port} is not one Telegram sends webhooks to (443, 80, 88 or 8443)"),
        ));
    }
    Ok(())
}

fn is_http_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && !url.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const TOKEN: &str = "123456:secret-part_ABC";

    fn parse(vars: &[(&str, &str)]) -> Result<Option<TelegramConfig>, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        telegram(&Env(move |name| vars.get(name).cloned()))
    }

    #[test]
    fn the_webhook_url_is_https_on_a_port_telegram_posts_to() {
        for good in [
            "https://shop.example/webhooks/telegram",
            "https://shop.example:8443/webhooks/telegram",
            "https://shop.example:88/hook",
            "https://shop.example:443/hook",
        ] {
            let parsed = parse(&[
                ("TELEGRAM_TOKEN", TOKEN),
                ("TELEGRAM_WEBHOOK_URL", good),
                ("WEBHOOK_SECRET", "0123456789abcdef"),
            ]);
            assert!(parsed.is_ok(), "{good}: {parsed:?}");
        }
        for bad in [
            "http://shop.example/webhooks/telegram",
            "https://shop.example:8080/webhooks/telegram",
            "https://shop.example:8444/hook",
            "https://:443/hook",
        ] {
            let error = parse(&[
                ("TELEGRAM_TOKEN", TOKEN),
                ("TELEGRAM_WEBHOOK_URL", bad),
                ("WEBHOOK_SECRET", "0123456789abcdef"),
            ])
            .unwrap_err();
            assert_eq!(error.variable, "TELEGRAM_WEBHOOK_URL", "{bad}");
        }
        // A domain with a port Telegram does not post to is refused the same way.
        let error = parse(&[
            ("TELEGRAM_TOKEN", TOKEN),
            ("PRODUCTION_DOMAIN", "shop.example:9000"),
            ("WEBHOOK_SECRET", "0123456789abcdef"),
        ])
        .unwrap_err();
        assert_eq!(error.variable, "TELEGRAM_WEBHOOK_URL");
    }

    #[test]
    fn no_token_means_no_bot() {
        assert_eq!(parse(&[]).unwrap(), None);
        // Without a token the bot's other settings are not read, as before.
        assert_eq!(
            parse(&[("RATE_LIMIT_USER_MESSAGES", "many")]).unwrap(),
            None
        );
        assert_eq!(parse(&[("TELEGRAM_TOKEN", "  ")]).unwrap(), None);
    }

    #[test]
    fn polling_with_the_seed_defaults() {
        let config = parse(&[("TELEGRAM_TOKEN", TOKEN)]).unwrap().unwrap();
        assert_eq!(config.mode, TelegramMode::Polling);
        assert_eq!(config.api_url, "https://api.telegram.org");
        assert_eq!(config.limits, RateLimits::default());
        assert_eq!(config.session_ttl, Duration::from_secs(1800));
    }

    #[test]
    fn a_domain_selects_webhooks_and_needs_a_secret() {
        let missing = parse(&[
            ("TELEGRAM_TOKEN", TOKEN),
            ("PRODUCTION_DOMAIN", "shop.example"),
        ])
        .unwrap_err();
        assert_eq!(missing.variable, "WEBHOOK_SECRET");
        let config = parse(&[
            ("TELEGRAM_TOKEN", TOKEN),
            ("PRODUCTION_DOMAIN", "shop.example/"),
            ("WEBHOOK_SECRET", "0123456789abcdef-_"),
        ])
        .unwrap()
        .unwrap();
        let TelegramMode::Webhook { url, secret } = config.mode else {
            panic!("webhook mode expected");
        };
        assert_eq!(url, "https://shop.example/webhooks/telegram");
        assert_eq!(secret.expose(), "0123456789abcdef-_");
    }

    #[test]
    fn malformed_values_name_their_variable_and_never_echo_a_secret() {
        for (variable, value) in [
            ("TELEGRAM_TOKEN", "not a token"),
            ("TELEGRAM_TOKEN", "abc:def"),
            ("TELEGRAM_API_URL", "ftp://x"),
            ("TELEGRAM_WEBHOOK_URL", "shop.example"),
            ("WEBHOOK_SECRET", "short"),
            ("WEBHOOK_SECRET", "has spaces in it, 0123456789"),
            ("RATE_LIMIT_USER_MESSAGES", "0"),
            ("RATE_LIMIT_USER_OPERATIONS", "many"),
            ("RATE_LIMIT_USER_PAYMENTS", "-1"),
            ("CACHE_TTL_RATE_LIMIT", "0"),
            ("CACHE_TTL_SESSION", "10"),
        ] {
            let mut vars = vec![(variable, value)];
            for default in [
                ("TELEGRAM_TOKEN", TOKEN),
                ("WEBHOOK_SECRET", "0123456789abcdef"),
                ("TELEGRAM_WEBHOOK_URL", "https://x.example/w"),
            ] {
                if default.0 != variable {
                    vars.push(default);
                }
            }
            let error = parse(&vars).unwrap_err();
            assert_eq!(error.variable, variable, "{value}");
            let text = error.to_string();
            assert!(!text.contains("secret-part"), "{text}");
            if variable == "WEBHOOK_SECRET" {
                assert!(!text.contains(value), "{text}");
            }
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let config = parse(&[
            ("TELEGRAM_TOKEN", TOKEN),
            ("TELEGRAM_WEBHOOK_URL", "https://x.example/w"),
            ("WEBHOOK_SECRET", "webhook-secret-0123"),
        ])
        .unwrap()
        .unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("secret-part") && !printed.contains("webhook-secret"));
    }
}
