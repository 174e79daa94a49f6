//! The HTTP API's keys and their roles, read from `STARLEDGER_API_KEYS`.
//!
//! The rest of what `serve` reads (address, limits, deadlines) is gathered by the binary's
//! configuration; only what the handlers themselves judge lives here.

use std::collections::HashSet;

use starledger_settings::{problem, ConfigError, Env, Secret};

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

/// The variable the keys are read from. Its text is a [`Secret`] as a whole (it holds every
/// key's secret), so neither reading it nor printing the struct can show one.
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", default)]
struct ApiKeyVars {
    starledger_api_keys: Option<Secret>,
}

/// `STARLEDGER_API_KEYS`: `name:role:secret,…`. The list is the domain's own format (a
/// secret may not be repeated, entries are counted for the message), so it is parsed here.
pub fn api_keys<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Vec<ApiKey>, ConfigError> {
    const VARIABLE: &str = "STARLEDGER_API_KEYS";
    let Some(text) = env.extract::<ApiKeyVars>()?.starledger_api_keys else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    let mut secrets = HashSet::new();
    for (index, entry) in text.expose().split(',').map(str::trim).enumerate() {
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
