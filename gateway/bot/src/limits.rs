//! Per-user rate limits (the seed's 30 messages, 20 operations and 5 payments a minute),
//! counted in Redis so every instance sees the same count, and always in this process's
//! memory as well: without Redis, or while it is in trouble (logged by the link), the
//! process's own count decides, so limits fail open only to per-instance limits, never to
//! none, and a count Redis lost in a failover does not start the window again.
//!
//! A window opens at a user's first counted action and lasts the configured length: Redis
//! increments the counter and sets its expiry in one Lua call, so a crash between the two
//! cannot leave a counter that never expires. (A window aligned to the clock would let a user
//! spend twice the limit across a boundary.)

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use moka::future::Cache;
use redis::Script;

use super::redis_link::RedisLink;
use crate::settings::RateLimits;

/// What a user is doing, each with its own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Any message or button press.
    Messages,
    /// Reading or writing the ledger: balance, history, registration, an offer.
    Operations,
    /// Creating an invoice or placing an order.
    Payments,
}

impl Limit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::Operations => "operations",
            Self::Payments => "payments",
        }
    }
}

/// The answer for one counted action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the limit. `first` is true for the first refusal of the window: that one gets a
    /// polite reply; later ones in the same window do not, so a flood of messages does not
    /// turn into a flood of our replies (which Telegram would rate-limit for every user).
    Refused {
        first: bool,
    },
}

/// Counts one action and returns the count within the window (1 for the first).
const COUNT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
";

pub struct RateLimiter {
    limits: RateLimits,
    redis: Option<Arc<RedisLink>>,
    script: Script,
    /// The in-process counters. An entry lives the window's length from its creation (moka's
    /// time-to-live counts from the insert, and counting never re-inserts).
    local: Cache<(Limit, i64), Arc<AtomicU32>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits, redis: Option<Arc<RedisLink>>) -> Self {
        Self {
            limits,
            redis,
            script: Script::new(COUNT_SCRIPT),
            local: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(limits.window)
                .build(),
        }
    }

    fn limit(&self, limit: Limit) -> u32 {
        match limit {
            Limit::Messages => self.limits.messages,
            Limit::Operations => self.limits.operations,
            Limit::Payments => self.limits.payments,
        }
    }

    /// Counts one `limit` action of `user` and says whether it is allowed.
    pub async fn check(&self, user: i64, limit: Limit) -> Verdict {
        // This process always counts too, so when Redis stops answering (a master failing
        // over, a restart that lost the counters) the count goes on from what this instance
        // has seen in the window instead of starting again at zero: a user never gets past
        // the limit through one instance, and across instances at most once per instance.
        let local = self.local_count(user, limit).await;
        let count = match self.shared_count(user, limit).await {
            Some(shared) => shared.max(local),
            None => local,
        };
        let allowed = self.limit(limit);
        if count <= u64::from(allowed) {
            Verdict::Allowed
        } else {
            metrics::counter!("starledger_bot_rate_limited_total", "limit" => limit.as_str())
                .increment(1);
            Verdict::Refused {
                first: count == u64::from(allowed) + 1,
            }
        }
    }

    async fn shared_count(&self, user: i64, limit: Limit) -> Option<u64> {
        let redis = self.redis.as_ref()?;
        let key = redis.key(&format!("rate:{}:{user}", limit.as_str()));
        let window_ms = u64::try_from(self.limits.window.as_millis()).unwrap_or(u64::MAX);
        let script = &self.script;
        redis
            .run("rate limit", |mut connection| async move {
                let mut invocation = script.key(key);
                invocation.arg(window_ms);
                invocation.invoke_async::<u64>(&mut connection).await
            })
            .await
            .ok()
    }

    async fn local_count(&self, user: i64, limit: Limit) -> u64 {
        let counter = self
            .local
            .get_with((limit, user), async { Arc::new(AtomicU32::new(0)) })
            .await;
        u64::from(counter.fetch_add(1, Ordering::Relaxed).saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use starledger_projections::redis_target::RedisSpec;

    fn limits(messages: u32, window: Duration) -> RateLimits {
        RateLimits {
            messages,
            operations: 2,
            payments: 1,
            window,
        }
    }

    #[tokio::test]
    async fn in_process_limits_refuse_past_the_limit_and_say_so_once() {
        let limiter = RateLimiter::new(limits(3, Duration::from_secs(3600)), None);
        for _ in 0..3 {
            assert_eq!(limiter.check(7, Limit::Messages).await, Verdict::Allowed);
        }
        assert_eq!(
            limiter.check(7, Limit::Messages).await,
            Verdict::Refused { first: true }
        );
        assert_eq!(
            limiter.check(7, Limit::Messages).await,
            Verdict::Refused { first: false }
        );
        // Other users and other limits count apart.
        assert_eq!(limiter.check(8, Limit::Messages).await, Verdict::Allowed);
        assert_eq!(limiter.check(7, Limit::Payments).await, Verdict::Allowed);
        assert_eq!(
            limiter.check(7, Limit::Payments).await,
            Verdict::Refused { first: true }
        );
    }

    #[tokio::test]
    async fn a_window_ends_and_counting_starts_again() {
        let limiter = RateLimiter::new(limits(1, Duration::from_millis(200)), None);
        assert_eq!(limiter.check(7, Limit::Messages).await, Verdict::Allowed);
        assert!(matches!(
            limiter.check(7, Limit::Messages).await,
            Verdict::Refused { .. }
        ));
        // Bounded wait for the window to pass (moka expires lazily; ask until it has).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            limiter.local.run_pending_tasks().await;
            if limiter.local.get(&(Limit::Messages, 7)).await.is_none() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the window never ended"
            );
        }
        assert_eq!(limiter.check(7, Limit::Messages).await, Verdict::Allowed);
    }

    #[tokio::test]
    async fn unreachable_redis_falls_back_to_counting_in_process() {
        // Nothing listens on port 1: every Redis call fails fast.
        let link = Arc::new(
            RedisLink::new(&RedisSpec::Single("redis://127.0.0.1:1".into()), "test").unwrap(),
        );
        let limiter = RateLimiter::new(limits(2, Duration::from_secs(3600)), Some(link));
        assert_eq!(limiter.check(7, Limit::Messages).await, Verdict::Allowed);
        assert_eq!(limiter.check(7, Limit::Messages).await, Verdict::Allowed);
        assert_eq!(
            limiter.check(7, Limit::Messages).await,
            Verdict::Refused { first: true }
        );
    }

    #[tokio::test]
    async fn instances_sharing_redis_share_the_count() {
        let Some(url) = starledger_ledger::testing::server_url(
            "TEST_REDIS_URL",
            "the shared rate-limit test is skipped",
        ) else {
            return;
        };
        let prefix = format!("test_{}", uuid::Uuid::new_v4().simple());
        let instance = || {
            let link = Arc::new(RedisLink::new(&RedisSpec::Single(url.clone()), &prefix).unwrap());
            RateLimiter::new(limits(3, Duration::from_secs(3600)), Some(link))
        };
        let (first, second) = (instance(), instance());
        assert_eq!(first.check(7, Limit::Messages).await, Verdict::Allowed);
        assert_eq!(second.check(7, Limit::Messages).await, Verdict::Allowed);
        assert_eq!(first.check(7, Limit::Messages).await, Verdict::Allowed);
        // The fourth, on either instance, is over the shared limit of three.
        assert_eq!(
            second.check(7, Limit::Messages).await,
            Verdict::Refused { first: true }
        );
        assert_eq!(
            first.check(7, Limit::Messages).await,
            Verdict::Refused { first: false }
        );
    }
}
