//! Console sessions, kept on the server: a random token in an HttpOnly, `SameSite=Strict`
//! cookie names a session holding who signed in (an admin or auditor key's name and role) and
//! the session's CSRF token. A session ends when it has been idle for the idle timeout, when
//! it reaches its maximum age, or on sign-out.
//!
//! Like the API keys, sessions are held by the SHA-256 of their token, so memory holds no
//! usable cookie. Time is passed in (`now`), so the expiry rules are tested without waiting.
//! Sign-in attempts are throttled per client address, so a key cannot be guessed online.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::Caller;

/// The session cookie on plain HTTP.
pub const COOKIE: &str = "starledger_console";
/// The session cookie over TLS: the `__Host-` prefix makes the browser refuse it unless it
/// is `Secure`, has `Path=/` and no `Domain`, so no other host or path can plant one.
pub const SECURE_COOKIE: &str = "__Host-starledger_console";
/// The sign-in form's own token (double-submitted: cookie and form field), so no other site
/// can sign a browser in with a key of its choosing.
pub const SIGN_IN_COOKIE: &str = "starledger_console_sign_in";
/// The chosen language.
pub const LANG_COOKIE: &str = "starledger_console_lang";

/// Most sessions held at once; past it, expired ones are dropped and then the oldest.
const MAX_SESSIONS: usize = 10_000;

/// How long sessions last and how often one may try to sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// `CONSOLE_IDLE_TIMEOUT_SECS`: a session unused this long is over.
    pub idle_timeout: Duration,
    /// `CONSOLE_MAX_AGE_SECS`: a session is over this long after sign-in, used or not.
    pub max_age: Duration,
    /// Sign-in attempts one client address may make a minute (a burst of as many).
    pub sign_ins_per_minute: u32,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(15 * 60),
            max_age: Duration::from_secs(12 * 60 * 60),
            sign_ins_per_minute: 10,
        }
    }
}

/// A one-shot message for the next page (the outcome of an action, after its redirect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// Machine-readable: `delivered`, `failed`, `rebuild_started`, or an error code.
    pub code: String,
    pub ok: bool,
    pub message: String,
}

impl Flash {
    /// An action done.
    pub fn done(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            ok: true,
            message: message.into(),
        }
    }

    /// An action refused or failed, with why.
    pub fn refused(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            ok: false,
            message: message.into(),
        }
    }

    /// An action the API's rules refused, with the API's code and message.
    pub fn from_error(error: &crate::error::ApiError) -> Self {
        Self::refused(error.code().as_str(), error.message())
    }
}

/// Who is signed in, and the token every form of theirs must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
}

struct Stored {
    session: Session,
    created: Instant,
    last_seen: Instant,
    flash: Option<Flash>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the operating system gave no random bytes: {0}")]
    Random(getrandom::Error),
}

/// Every session of this process.
pub struct Sessions {
    settings: ConsoleSettings,
    held: Mutex<HashMap<[u8; 32], Stored>>,
    sign_ins: DefaultKeyedRateLimiter<IpAddr>,
}

impl Sessions {
    pub fn new(settings: ConsoleSettings) -> Self {
        let per_minute = NonZeroU32::new(settings.sign_ins_per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            settings,
            held: Mutex::new(HashMap::new()),
            sign_ins: RateLimiter::keyed(Quota::per_minute(per_minute)),
        }
    }

    pub fn settings(&self) -> ConsoleSettings {
        self.settings
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Stored>> {
        // Nothing panics while holding the lock: a poisoned map is still a valid map.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `client` may try to sign in now (each attempt counts, right or wrong).
    pub fn may_sign_in(&self, client: IpAddr) -> bool {
        let allowed = self.sign_ins.check_key(&client).is_ok();
        self.sign_ins.retain_recent();
        allowed
    }

    /// Opens a session for `caller`; returns the token for the cookie.
    pub fn open(&self, caller: Caller, now: Instant) -> Result<String, SessionError> {
        let token = random_token()?;
        let session = Session {
            caller,
            csrf: random_token()?,
        };
        let mut held = self.lock();
        if held.len() >= MAX_SESSIONS {
            held.retain(|_, s| self.alive(s, now));
        }
        if held.len() >= MAX_SESSIONS {
            if let Some(oldest) = held
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k)
            {
                held.remove(&oldest);
            }
        }
        held.insert(
            digest(&token),
            Stored {
                session,
                created: now,
                last_seen: now,
                flash: None,
            },
        );
        Ok(token)
    }

    fn alive(&self, stored: &Stored, now: Instant) -> bool {
        now.saturating_duration_since(stored.last_seen) < self.settings.idle_timeout
            && now.saturating_duration_since(stored.created) < self.settings.max_age
    }

    /// The session of `token`, its idle time started again, and (with `take_flash`) the flash
    /// it held, taken; `None` (and the session dropped) when unknown or over.
    pub fn find(
        &self,
        token: &str,
        now: Instant,
        take_flash: bool,
    ) -> Option<(Session, Option<Flash>)> {
        let key = digest(token);
        let mut held = self.lock();
        let stored = held.get_mut(&key)?;
        if !self.alive(stored, now) {
            held.remove(&key);
            return None;
        }
        stored.last_seen = now;
        let flash = if take_flash {
            stored.flash.take()
        } else {
            None
        };
        Some((stored.session.clone(), flash))
    }

    /// Leaves `flash` for the next page the session shows.
    pub fn flash(&self, token: &str, flash: Flash) {
        if let Some(stored) = self.lock().get_mut(&digest(token)) {
            stored.flash = Some(flash);
        }
    }

    /// Ends the session of `token` (sign-out).
    pub fn close(&self, token: &str) {
        self.lock().remove(&digest(token));
    }

    /// Sessions held (some may be over and not yet dropped).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// 32 bytes from the operating system's generator, as 64 hex digits.
pub fn random_token() -> Result<String, SessionError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(SessionError::Random)?;
    Ok(hex::encode(bytes))
}

/// Whether a presented token is the expected one, in time that does not depend on where
/// they differ.
pub fn same_token(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Role;

    fn admin() -> Caller {
        Caller {
            name: "ops".into(),
            role: Role::Admin,
        }
    }

    fn sessions() -> Sessions {
        Sessions::new(ConsoleSettings {
            idle_timeout: Duration::from_secs(60),
            max_age: Duration::from_secs(600),
            sign_ins_per_minute: 3,
        })
    }

    #[test]
    fn a_session_ends_after_its_idle_timeout_and_lives_while_used() {
        let sessions = sessions();
        let start = Instant::now();
        let token = sessions.open(admin(), start).unwrap();
        assert_eq!(token.len(), 64);
        let (session, _) = sessions
            .find(&token, start + Duration::from_secs(59), true)
            .unwrap();
        assert_eq!(session.caller, admin());
        assert_eq!(session.csrf.len(), 64);
        assert_ne!(session.csrf, token);
        // Used at 59 s, so alive until 119 s.
        assert!(sessions
            .find(&token, start + Duration::from_secs(118), true)
            .is_some());
        assert!(sessions
            .find(&token, start + Duration::from_secs(179), true)
            .is_none());
        assert!(sessions.is_empty(), "an expired session is dropped");
    }

    #[test]
    fn a_session_ends_at_its_maximum_age_however_busy() {
        let sessions = sessions();
        let start = Instant::now();
        let token = sessions.open(admin(), start).unwrap();
        for minute in 1..10 {
            let now = start + Duration::from_secs(minute * 59);
            assert!(
                sessions.find(&token, now, true).is_some(),
                "minute {minute}"
            );
        }
        assert!(sessions
            .find(&token, start + Duration::from_secs(600), true)
            .is_none());
    }

    #[test]
    fn sign_out_ends_it_and_unknown_tokens_find_nothing() {
        let sessions = sessions();
        let now = Instant::now();
        let token = sessions.open(admin(), now).unwrap();
        assert!(sessions.find("0".repeat(64).as_str(), now, true).is_none());
        sessions.close(&token);
        assert!(sessions.find(&token, now, true).is_none());
    }

    #[test]
    fn a_flash_is_shown_once() {
        let sessions = sessions();
        let now = Instant::now();
        let token = sessions.open(admin(), now).unwrap();
        let flash = Flash::done("delivered", "done");
        sessions.flash(&token, flash.clone());
        // Polling the console's JSON leaves it for the page.
        assert_eq!(sessions.find(&token, now, false).unwrap().1, None);
        assert_eq!(sessions.find(&token, now, true).unwrap().1, Some(flash));
        assert_eq!(sessions.find(&token, now, true).unwrap().1, None);
    }

    #[test]
    fn sign_ins_are_throttled_per_address() {
        let sessions = sessions();
        let (one, two): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(sessions.may_sign_in(one));
        }
        assert!(!sessions.may_sign_in(one));
        assert!(sessions.may_sign_in(two));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abd", "abc"));
        assert!(!same_token("ab", "abc"));
        assert!(!same_token("", "abc"));
    }
}
