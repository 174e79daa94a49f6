//! Configuration from the environment, with the seed's variable names.
//!
//! Every value is parsed here, once; a missing or malformed value is an error that names the
//! variable, never a panic deeper in. [`Config`] is what every command needs; the settings
//! only `starledger serve` needs (ports, API keys, Heleket credentials) are in [`server`], read
//! only by `serve`, so `demo` or `audit` never ask for a payment key.

pub mod server;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rust_decimal::Decimal;
use starledger_ledger::money::{Amount, Currency};
use starledger_ledger::pricing::StarPricing;
pub use starledger_projections::storage::Storage;
use starledger_settings::{problem, within, Entries, Secret};
pub use starledger_settings::{ConfigError, Env};

#[derive(Clone)]
pub struct Config {
    pub storage: Storage,
    /// Redis for the shared cache; `None` caches in process only.
    pub redis_url: Option<String>,
    /// `DATABASE_READ_URL`: a streaming standby of the PostgreSQL primary, for projection
    /// reads (balances, profiles, history); commands, projectors and leases stay on the primary.
    pub database_read_url: Option<String>,
    /// `REDIS_CLUSTER_NODES`: a Redis Cluster's nodes, instead of `REDIS_URL`.
    pub redis_cluster_nodes: Vec<String>,
    /// `REDIS_SENTINELS` (as `redis://host:port`) and `REDIS_SENTINEL_MASTER`: the master
    /// Redis Sentinel names, instead of `REDIS_URL`.
    pub redis_sentinels: Vec<String>,
    pub redis_sentinel_master: String,
    pub cache_ttl_user: Duration,
    pub cache_ttl_payment: Duration,
    /// First part of every Redis key: deployments (or tests) sharing one Redis stay apart.
    pub cache_key_prefix: String,
    pub currency: Currency,
    pub pricing: StarPricing,
    pub log_level: String,
    /// Whether `LOG_LEVEL` was set, not defaulted: `demo` is quieter by default.
    pub log_level_set: bool,
    pub log_format: LogFormat,
}

/// `LOG_FORMAT`: how log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, coloured only on a terminal.
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

/// `redis://…` or `rediss://…`.
fn is_redis_url(url: &str) -> bool {
    url.starts_with("redis://") || url.starts_with("rediss://")
}

impl Config {
    /// The cache settings: the seed's TTLs (balances share the user TTL, as in the seed).
    pub fn cache_settings(&self) -> starledger_projections::cache::CacheSettings {
        starledger_projections::cache::CacheSettings {
            redis_url: self.redis_url.clone(),
            redis_cluster_nodes: self.redis_cluster_nodes.clone(),
            redis_sentinels: self.redis_sentinels.clone(),
            redis_sentinel_master: self.redis_sentinel_master.clone(),
            ttl_user: self.cache_ttl_user,
            ttl_balance: self.cache_ttl_user,
            ttl_payment: self.cache_ttl_payment,
            key_prefix: self.cache_key_prefix.clone(),
            ..Default::default()
        }
    }

    pub fn from_process_env() -> Result<Config, ConfigError> {
        Self::from_env(&starledger_settings::process_env())
    }

    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Config, ConfigError> {
        let vars: ConfigVars = env.extract()?;
        let pool_size = within("DATABASE_POOL_SIZE", vars.database_pool_size, 1..=500)?;
        let storage = match vars.database_url.as_ref().map(Secret::expose) {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Storage::Postgres { url: url.to_owned(), pool_size }
            }
            Some(url) if url.starts_with("sqlite://") => Storage::Sqlite {
                path: PathBuf::from(url.trim_start_matches("sqlite://")),
            },
            Some(_) => {
                return Err(problem(
                    "DATABASE_URL",
                    "must start with postgres://, postgresql:// or sqlite:// (unset it for the embedded SQLite file)",
                ))
            }
            None => Storage::Sqlite {
                path: PathBuf::from(vars.starledger_sqlite_path),
            },
        };
        let currency = match &vars.ledger_currency {
            None => Currency::ton(),
            Some(code) => {
                Currency::parse(code).map_err(|e| problem("LEDGER_CURRENCY", e.to_string()))?
            }
        };
        let price_per_star =
            Amount::parse(&vars.star_price).map_err(|e| problem("STAR_PRICE", e.to_string()))?;
        let markup_text = vars.star_markup_percent;
        let markup: Decimal = markup_text.parse().map_err(|_| {
            problem(
                "STAR_MARKUP_PERCENT",
                format!("{markup_text:?} is not a decimal number"),
            )
        })?;
        let pricing = StarPricing::new(price_per_star, markup)
            .map_err(|e| problem("STAR_MARKUP_PERCENT", e.to_string()))?;
        let database_read_url = match vars.database_read_url.as_ref().map(Secret::expose) {
            None => None,
            Some(url)
                if (url.starts_with("postgres://") || url.starts_with("postgresql://"))
                    && matches!(storage, Storage::Postgres { .. }) =>
            {
                Some(url.to_owned())
            }
            Some(_) => {
                return Err(problem(
                    "DATABASE_READ_URL",
                    "must be a postgres:// URL of a standby of the PostgreSQL DATABASE_URL",
                ))
            }
        };
        let redis_url = match vars.redis_url.as_ref().map(Secret::expose) {
            None => None,
            Some(url) if is_redis_url(url) => Some(url.to_owned()),
            Some(_) => {
                return Err(problem(
                    "REDIS_URL",
                    "must start with redis:// or rediss://",
                ))
            }
        };
        let redis_cluster_nodes = vars.redis_cluster_nodes.0;
        if !redis_cluster_nodes.iter().all(|node| is_redis_url(node)) {
            return Err(problem(
                "REDIS_CLUSTER_NODES",
                "must be comma-separated redis:// or rediss:// URLs of cluster nodes",
            ));
        }
        if !redis_cluster_nodes.is_empty() && redis_url.is_some() {
            return Err(problem(
                "REDIS_CLUSTER_NODES",
                "and REDIS_URL are both set: use one (the cluster's nodes, or one server)",
            ));
        }
        let redis_sentinels: Vec<String> = vars
            .redis_sentinels
            .0
            .iter()
            .map(|node| format!("redis://{node}"))
            .collect();
        let redis_sentinel_master = vars
            .redis_sentinel_master
            .unwrap_or_default()
            .trim()
            .to_owned();
        if !redis_sentinels.is_empty() {
            if redis_sentinels
                .iter()
                .any(|url| redis::Client::open(url.as_str()).is_err() || url.contains('@'))
            {
                return Err(problem(
                    "REDIS_SENTINELS",
                    "must be comma-separated host:port of Redis Sentinels",
                ));
            }
            if redis_sentinel_master.is_empty() {
                return Err(problem(
                    "REDIS_SENTINEL_MASTER",
                    "is required with REDIS_SENTINELS: the name of the master the sentinels watch",
                ));
            }
            if redis_url.is_some() || !redis_cluster_nodes.is_empty() {
                return Err(problem(
                    "REDIS_SENTINELS",
                    "and REDIS_URL or REDIS_CLUSTER_NODES are both set: use one",
                ));
            }
        }
        let ttl = |variable, value| within(variable, value, 1..=86_400).map(Duration::from_secs);
        let cache_ttl_user = ttl("CACHE_TTL_USER", vars.cache_ttl_user)?;
        let cache_ttl_payment = ttl("CACHE_TTL_PAYMENT", vars.cache_ttl_payment)?;
        let cache_key_prefix = vars.cache_key_prefix;
        if cache_key_prefix.len() > 64 || cache_key_prefix.chars().any(|c| c.is_whitespace()) {
            return Err(problem(
                "CACHE_KEY_PREFIX",
                "must be at most 64 characters without spaces",
            ));
        }
        let log_level_set = vars.log_level.is_some();
        let log_level = vars
            .log_level
            .unwrap_or_else(|| "info".into())
            .to_lowercase();
        if !["trace", "debug", "info", "warn", "warning", "error"].contains(&log_level.as_str()) {
            return Err(problem(
                "LOG_LEVEL",
                format!("{log_level:?} is not one of trace, debug, info, warn, error"),
            ));
        }
        let log_format = match vars.log_format.map(|t| t.trim().to_lowercase()) {
            None => LogFormat::Text,
            Some(t) if t == "text" => LogFormat::Text,
            Some(t) if t == "json" => LogFormat::Json,
            Some(t) => {
                return Err(problem(
                    "LOG_FORMAT",
                    format!("{t:?} is not one of text, json"),
                ))
            }
        };
        Ok(Config {
            storage,
            database_read_url,
            redis_url,
            redis_cluster_nodes,
            redis_sentinels,
            redis_sentinel_master,
            cache_ttl_user,
            cache_ttl_payment,
            cache_key_prefix,
            currency,
            pricing,
            log_level: log_level.replace("warning", "warn"),
            log_level_set,
            log_format,
        })
    }
}

/// The variables every command reads, as given (figment fills it; `from_env` judges it). The
/// URLs that can carry a password are [`Secret`]s: never printed, never quoted by an error.
#[derive(serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", default)]
struct ConfigVars {
    database_url: Option<Secret>,
    database_pool_size: u32,
    starledger_sqlite_path: String,
    database_read_url: Option<Secret>,
    redis_url: Option<Secret>,
    redis_cluster_nodes: Entries,
    redis_sentinels: Entries,
    redis_sentinel_master: Option<String>,
    cache_ttl_user: u64,
    cache_ttl_payment: u64,
    cache_key_prefix: String,
    ledger_currency: Option<String>,
    /// Prices are the ledger's decimals (`Amount`, `Decimal`), parsed by the domain.
    star_price: String,
    star_markup_percent: String,
    log_level: Option<String>,
    log_format: Option<String>,
}

impl Default for ConfigVars {
    fn default() -> Self {
        Self {
            database_url: None,
            database_pool_size: 10,
            starledger_sqlite_path: "starledger.db".into(),
            database_read_url: None,
            redis_url: None,
            redis_cluster_nodes: Entries::default(),
            redis_sentinels: Entries::default(),
            redis_sentinel_master: None,
            cache_ttl_user: 1800,
            cache_ttl_payment: 900,
            cache_key_prefix: "starledger".into(),
            ledger_currency: None,
            star_price: "0.0045".into(),
            star_markup_percent: "10".into(),
            log_level: None,
            log_format: None,
        }
    }
}

/// A URL for `Debug`: its user part (`user:password@`) and its query (libpq also reads
/// `?password=`) replaced. Cut at the last `@`, so a raw `@`, `?` or `/` in a password
/// over-hides rather than shows a piece of it.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redacted>".to_owned();
    };
    let (user, rest) = match rest.rsplit_once('@') {
        Some((_, host)) => ("<redacted>@", host),
        None => ("", rest),
    };
    let (rest, query) = match rest.find(['?', '#']) {
        Some(at) => (&rest[..at], "?<redacted>"),
        None => (rest, ""),
    };
    format!("{scheme}://{user}{rest}{query}")
}

impl fmt::Debug for Config {
    /// As derived, but the database and Redis URLs without their passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let storage = match &self.storage {
            Storage::Postgres { url, pool_size } => {
                format!(
                    "Postgres {{ url: {:?}, pool_size: {pool_size} }}",
                    without_password(url)
                )
            }
            other => format!("{other:?}"),
        };
        let hide = |url: &Option<String>| url.as_deref().map(without_password);
        let nodes: Vec<String> = self
            .redis_cluster_nodes
            .iter()
            .map(|n| without_password(n))
            .collect();
        f.debug_struct("Config")
            .field("storage", &format_args!("{storage}"))
            .field("redis_url", &hide(&self.redis_url))
            .field("database_read_url", &hide(&self.database_read_url))
            .field("redis_cluster_nodes", &nodes)
            .field("redis_sentinels", &self.redis_sentinels)
            .field("redis_sentinel_master", &self.redis_sentinel_master)
            .field("cache_ttl_user", &self.cache_ttl_user)
            .field("cache_ttl_payment", &self.cache_ttl_payment)
            .field("cache_key_prefix", &self.cache_key_prefix)
            .field("currency", &self.currency)
            .field("pricing", &self.pricing)
            .field("log_level", &self.log_level)
            .field("log_level_set", &self.log_level_set)
            .field("log_format", &self.log_format)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env(&Env(move |name| vars.get(name).cloned()))
    }

    #[test]
    fn defaults_to_the_embedded_sqlite_file() {
        let config = config(&[]).unwrap();
        assert_eq!(
            config.storage,
            Storage::Sqlite {
                path: "starledger.db".into()
            }
        );
        assert_eq!(config.currency, Currency::ton());
        assert_eq!(config.log_level, "info");
        assert!(!config.log_level_set);
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(
            config(&[("LOG_FORMAT", "json")]).unwrap().log_format,
            LogFormat::Json
        );
        assert_eq!(
            config(&[("LOG_FORMAT", " Text ")]).unwrap().log_format,
            LogFormat::Text
        );
        let explicit = config(&[("LOG_LEVEL", "info")]).unwrap();
        assert!(explicit.log_level_set);
    }

    #[test]
    fn a_postgres_url_selects_postgres() {
        let config = config(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("DATABASE_POOL_SIZE", "20"),
        ])
        .unwrap();
        assert_eq!(
            config.storage,
            Storage::Postgres {
                url: "postgres://u@h/db".into(),
                pool_size: 20
            }
        );
    }

    #[test]
    fn a_redis_cluster_is_one_redis_or_the_other() {
        let nodes = "redis://10.0.0.1:7000, redis://10.0.0.2:7000,redis://10.0.0.3:7000";
        let cluster = config(&[("REDIS_CLUSTER_NODES", nodes)]).unwrap();
        assert_eq!(cluster.redis_cluster_nodes.len(), 3);
        assert!(matches!(
            cluster.cache_settings().redis_spec(),
            Some(starledger_projections::redis_target::RedisSpec::Cluster(ref n)) if n.len() == 3
        ));
        let both = config(&[
            ("REDIS_CLUSTER_NODES", nodes),
            ("REDIS_URL", "redis://10.0.0.9:6379"),
        ]);
        assert_eq!(both.unwrap_err().variable, "REDIS_CLUSTER_NODES");
        let wrong = config(&[("REDIS_CLUSTER_NODES", "10.0.0.1:7000")]);
        assert_eq!(wrong.unwrap_err().variable, "REDIS_CLUSTER_NODES");
    }

    #[test]
    fn a_read_replica_goes_with_a_postgres_primary() {
        let primary = ("DATABASE_URL", "postgres://u@primary/db");
        let standby = ("DATABASE_READ_URL", "postgres://u@standby/db");
        let both = config(&[primary, standby]).unwrap();
        assert_eq!(
            both.database_read_url.as_deref(),
            Some("postgres://u@standby/db")
        );
        // Not without a PostgreSQL primary, and not anything but PostgreSQL.
        assert_eq!(
            config(&[standby]).unwrap_err().variable,
            "DATABASE_READ_URL"
        );
        let wrong = config(&[primary, ("DATABASE_READ_URL", "mysql://standby/db")]);
        assert_eq!(wrong.unwrap_err().variable, "DATABASE_READ_URL");
    }

    #[test]
    fn sentinels_need_the_masters_name_and_stand_alone() {
        let sentinels = ("REDIS_SENTINELS", "10.0.0.1:26379,10.0.0.2:26379");
        let watched = ("REDIS_SENTINEL_MASTER", "shop");
        let found = config(&[sentinels, watched]).unwrap();
        assert!(matches!(
            found.cache_settings().redis_spec(),
            Some(starledger_projections::redis_target::RedisSpec::Sentinel { ref sentinels, ref master })
                if sentinels.len() == 2 && master == "shop"
        ));
        assert_eq!(
            config(&[sentinels]).unwrap_err().variable,
            "REDIS_SENTINEL_MASTER"
        );
        let both = config(&[sentinels, watched, ("REDIS_URL", "redis://10.0.0.9:6379")]);
        assert_eq!(both.unwrap_err().variable, "REDIS_SENTINELS");
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (variable, value) in [
            ("DATABASE_URL", "mysql://x"),
            ("DATABASE_POOL_SIZE", "0"),
            ("LEDGER_CURRENCY", "ton"),
            ("STAR_PRICE", "-1"),
            ("STAR_MARKUP_PERCENT", "lots"),
            ("LOG_LEVEL", "loud"),
            ("LOG_FORMAT", "bogus"),
            ("REDIS_URL", "http://cache"),
            ("CACHE_TTL_USER", "0"),
            ("CACHE_TTL_PAYMENT", "forever"),
        ] {
            let error = config(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable);
            assert!(error.to_string().starts_with(variable));
        }
    }

    #[test]
    fn a_malformed_number_says_what_is_wrong() {
        let error = config(&[("DATABASE_POOL_SIZE", "lots")]).unwrap_err();
        assert_eq!(error.variable, "DATABASE_POOL_SIZE");
        assert_eq!(
            error.to_string(),
            "DATABASE_POOL_SIZE: \"lots\" is not a whole number"
        );
        let error = config(&[("CACHE_TTL_USER", "90000")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "CACHE_TTL_USER: 90000 is not a number from 1 to 86400"
        );
    }

    #[test]
    fn a_password_in_a_url_never_shows() {
        for (variable, value) in [
            ("DATABASE_URL", "mysql://shop:hunter2-pw@db/shop"),
            ("DATABASE_READ_URL", "mysql://shop:hunter2-pw@standby/shop"),
            ("REDIS_URL", "http://:hunter2-pw@cache:6379"),
            (
                "REDIS_CLUSTER_NODES",
                "redis://:hunter2-pw@a:7000, http://:hunter2-pw@b",
            ),
        ] {
            let mut vars = vec![(variable, value)];
            if variable == "DATABASE_READ_URL" {
                vars.push(("DATABASE_URL", "postgres://shop:hunter2-pw@db/shop"));
            }
            let error = config(&vars).unwrap_err();
            assert_eq!(error.variable, variable);
            assert!(!error.to_string().contains("hunter2"), "{error}");
            assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
        }
        let config = config(&[
            ("DATABASE_URL", "postgres://shop:hunter2-pw@db:5432/shop"),
            (
                "DATABASE_READ_URL",
                "postgresql://shop:hunter2-pw@standby/shop",
            ),
            ("REDIS_URL", "redis://:hunter2-pw@cache:6379/0"),
        ])
        .unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("postgres://<redacted>@db:5432/shop"),
            "{printed}"
        );
        assert!(
            printed.contains("redis://<redacted>@cache:6379/0"),
            "{printed}"
        );
        for (url, shown) in [
            ("postgres://u@h/db", "postgres://<redacted>@h/db"),
            ("postgres://h/db?password=pw", "postgres://h/db?<redacted>"),
            ("postgres://u:p@s?s/w@h/db", "postgres://<redacted>@h/db"),
            ("redis://cache:6379", "redis://cache:6379"),
        ] {
            assert_eq!(without_password(url), shown);
        }
    }
}
