//! Dialogue state between two messages of one user: what the bot is waiting for (a custom
//! amount, a number of stars, a recipient) and the one open Stars offer awaiting its confirm
//! button. Kept in Redis with a TTL (`CACHE_TTL_SESSION`, the seed's 30 minutes) so any
//! instance taking the next webhook continues the dialogue, or in this process's memory
//! without Redis or while Redis is unavailable.
//!
//! Sessions hold no money and no ledger state: losing one only means the user starts a step
//! again. A confirm button whose offer is gone is answered from the ledger's read side, never
//! by buying again (see `flows.rs`).

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use starledger_ledger::events::Stars;
use starledger_ledger::ids::Username;

use super::redis_link::RedisLink;

/// What the next plain text message from the user means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Awaiting {
    /// An amount to top up.
    RechargeAmount,
    /// A number of stars, for the user or as a gift to `recipient`.
    Stars { recipient: Option<Username> },
    /// The @username of a gift's recipient.
    Recipient,
}

/// A priced order shown with a confirm button. `token` names it in the button's data and
/// makes the purchase's idempotency key, so pressing confirm again cannot buy twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub token: u64,
    pub stars: Stars,
    pub recipient: Option<Username>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub awaiting: Option<Awaiting>,
    pub offer: Option<Offer>,
}

pub struct Sessions {
    redis: Option<Arc<RedisLink>>,
    ttl: Duration,
    /// This process's copy: the store without Redis, the fallback while Redis is down.
    local: Cache<i64, Session>,
}

impl Sessions {
    pub fn new(ttl: Duration, redis: Option<Arc<RedisLink>>) -> Self {
        Self {
            redis,
            ttl,
            local: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The user's session (empty when there is none or it expired).
    pub async fn get(&self, user: i64) -> Session {
        if let Some(redis) = &self.redis {
            let key = redis.key(&format!("session:{user}"));
            let stored = redis
                .run("session read", |mut connection| async move {
                    connection.get::<_, Option<String>>(key).await
                })
                .await;
            if let Ok(stored) = stored {
                // An entry that does not parse (written by another version) is no session.
                return stored
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .unwrap_or_default();
            }
        }
        self.local.get(&user).await.unwrap_or_default()
    }

    /// Stores the user's session (an empty one is removed).
    pub async fn put(&self, user: i64, session: &Session) {
        // Written here too, so a Redis outage in the middle of a dialogue loses nothing this
        // instance already knew.
        if *session == Session::default() {
            self.local.invalidate(&user).await;
        } else {
            self.local.insert(user, session.clone()).await;
        }
        let Some(redis) = &self.redis else {
            return;
        };
        let key = redis.key(&format!("session:{user}"));
        let ttl = self.ttl.as_secs().max(1);
        let text = match serde_json::to_string(session) {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(%error, "cannot encode a bot session");
                return;
            }
        };
        let empty = *session == Session::default();
        let _ = redis
            .run("session write", |mut connection| async move {
                if empty {
                    connection.del::<_, ()>(key).await
                } else {
                    connection.set_ex::<_, _, ()>(key, text, ttl).await
                }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starledger_projections::redis_target::RedisSpec;

    fn offer() -> Session {
        Session {
            awaiting: Some(Awaiting::Stars {
                recipient: Some(Username::parse("@friend_01").unwrap()),
            }),
            offer: Some(Offer {
                token: 42,
                stars: Stars::new(100).unwrap(),
                recipient: None,
            }),
        }
    }

    #[tokio::test]
    async fn in_process_sessions_round_trip_and_clear() {
        let sessions = Sessions::new(Duration::from_secs(60), None);
        assert_eq!(sessions.get(1).await, Session::default());
        sessions.put(1, &offer()).await;
        assert_eq!(sessions.get(1).await, offer());
        assert_eq!(sessions.get(2).await, Session::default());
        sessions.put(1, &Session::default()).await;
        assert_eq!(sessions.get(1).await, Session::default());
    }

    #[tokio::test]
    async fn unreachable_redis_keeps_the_session_in_process() {
        let link = Arc::new(
            RedisLink::new(&RedisSpec::Single("redis://127.0.0.1:1".into()), "test").unwrap(),
        );
        let sessions = Sessions::new(Duration::from_secs(60), Some(link));
        sessions.put(1, &offer()).await;
        assert_eq!(sessions.get(1).await, offer());
    }

    #[tokio::test]
    async fn sessions_are_shared_through_redis() {
        let Some(url) = starledger_ledger::testing::server_url(
            "TEST_REDIS_URL",
            "the shared-session test is skipped",
        ) else {
            return;
        };
        let prefix = format!("test_{}", uuid::Uuid::new_v4().simple());
        let first = Sessions::new(
            Duration::from_secs(60),
            Some(Arc::new(
                RedisLink::new(&RedisSpec::Single(url.clone()), &prefix).unwrap(),
            )),
        );
        let second = Sessions::new(
            Duration::from_secs(60),
            Some(Arc::new(
                RedisLink::new(&RedisSpec::Single(url.clone()), &prefix).unwrap(),
            )),
        );
        first.put(1, &offer()).await;
        assert_eq!(second.get(1).await, offer(), "another instance sees it");
        second.put(1, &Session::default()).await;
        assert_eq!(first.get(1).await, Session::default(), "and its removal");
    }
}
