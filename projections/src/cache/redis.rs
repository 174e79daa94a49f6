//! The Redis tier (L2): position-guarded rows shared by every gateway instance, and the
//! connection's life — timeouts, back-off and reconnection — so that Redis trouble costs
//! requests a database read, never an error and never a wait.
//!
//! Each entry is a hash `{pos, val}`. Writes go through a Lua script (`guarded_write.lua`)
//! that compares `pos` and writes (and sets the TTL) only when the new position is higher, so
//! two instances or a replaying projector cannot put an older row over a newer one.
//!
//! The connection is ours to manage rather than `redis::aio::ConnectionManager`'s: the manager
//! awaits its (re)connection inside requests, keeps retrying with its own back-off, and does
//! not reconnect after a timeout (a wedged connection stays). Here one `RedisConnection`
//! is shared; any failure or timeout drops it and marks Redis down for `backoff`; the first
//! request after that starts one reconnection in the background and carries on without Redis.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::redis_target::{RedisConnection, RedisSpec, RedisTarget};
use redis::{RedisError, Script};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use super::l1::Stored;
use super::stats::Counters;
use super::{CachedRow, RedisTiming};

/// At most one warning per this long about Redis trouble; the rest are counted in it.
const COMPLAINT_INTERVAL: Duration = Duration::from_secs(10);

/// Why a Redis operation did not give an answer. Never leaves the cache: every one of these
/// ends as a fallback to L1 and the loader.
#[derive(Debug, thiserror::Error)]
pub(crate) enum L2Error {
    #[error("Redis is down; backing off before reconnecting")]
    BackingOff,
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis failed: {0}")]
    Redis(#[from] RedisError),
    #[error("the guarded write answered {0}, which it never returns")]
    UnexpectedReply(i64),
    #[error("the Redis URL does not parse ({0:?})")]
    InvalidUrl(redis::ErrorKind),
    #[error("cannot encode the row as JSON: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The `pos` and `val` fields of an entry, as raw bytes.
type EntryFields = (Option<Vec<u8>>, Option<Vec<u8>>);

/// What Redis holds for a key.
pub(crate) enum Fetched<R> {
    Found(R),
    Missing,
    /// There was an entry but it did not parse (it has been counted and removed).
    Unreadable,
    /// Redis could not be asked.
    Unavailable,
}

/// The shared Redis tier of one [`ReadCache`](super::ReadCache). Cheap to clone.
#[derive(Clone)]
pub(crate) struct RedisTier {
    link: Arc<Link>,
}

struct Link {
    client: RedisTarget,
    /// `host:port` for log lines; the URL itself may carry a password and is never logged.
    address: String,
    /// The password, if any, so it can be blanked out of error texts before they are logged.
    secret: Option<String>,
    timing: RedisTiming,
    state: Mutex<State>,
    healthy: AtomicBool,
    counters: Arc<Counters>,
    complaints: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
    guarded_write: Script,
    discard_unreadable: Script,
}

enum State {
    Up {
        connection: RedisConnection,
        generation: u64,
    },
    /// A reconnection is under way in the background.
    Connecting {
        since: Instant,
        generation: u64,
    },
    Down {
        retry_at: Instant,
        generation: u64,
    },
}

impl RedisTier {
    /// Connects once (bounded by the connect timeout). On failure the tier starts down and
    /// reconnects in the background after the back-off; only a URL that does not parse is an
    /// error, since there is nothing to reconnect to.
    pub(crate) async fn connect(
        spec: &RedisSpec,
        timing: RedisTiming,
        counters: Arc<Counters>,
    ) -> Result<Self, L2Error> {
        // The parse error may quote the URL, password included; only its kind is kept.
        let client = RedisTarget::open(spec, timing.connect_timeout, timing.operation_timeout)
            .map_err(L2Error::InvalidUrl)?;
        let link = Arc::new(Link {
            client,
            address: RedisTarget::address(spec),
            secret: RedisTarget::password(spec),
            timing,
            state: Mutex::new(State::Connecting {
                since: Instant::now(),
                generation: 0,
            }),
            healthy: AtomicBool::new(false),
            counters,
            complaints: Mutex::new(None),
            suppressed: AtomicU64::new(0),
            guarded_write: guarded_write_script(),
            discard_unreadable: discard_unreadable_script(),
        });
        Link::reconnect(Arc::clone(&link), 0).await;
        Ok(RedisTier { link })
    }

    /// The text stored under `key` (`Some(None)`: nothing there); `None` when Redis could not
    /// be asked.
    pub(crate) async fn get_text(&self, key: &str) -> Option<Option<String>> {
        self.link
            .run(|mut connection| async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<String>>(&mut connection)
                    .await
            })
            .await
            .ok()
    }

    /// Sets the watermark under `key` to `text` (`{position}:{hash}`) unless it already names
    /// a position at least `position`: it only moves forward, whoever writes it. `None` when
    /// Redis could not be asked.
    pub(crate) async fn raise_watermark(&self, key: &str, position: u64, text: &str) -> Option<()> {
        let script = Script::new(
            "local held = redis.call('GET', KEYS[1]) \
             if held then local p = tonumber(string.match(held, '^(%d+):')) \
               if p and p >= tonumber(ARGV[1]) then return 0 end end \
             redis.call('SET', KEYS[1], ARGV[2]) return 1",
        );
        self.link
            .run(|mut connection| async move {
                script
                    .key(key)
                    .arg(position)
                    .arg(text)
                    .invoke_async::<i64>(&mut connection)
                    .await
            })
            .await
            .ok()
            .map(|_| ())
    }

    /// Moves the generation counter under `key` from `seen` to `seen + 1`, unless another
    /// instance already moved it; answers the generation now. `None` when Redis could not be
    /// asked. One key: safe on a cluster, where a scan for keys to delete would not be.
    pub(crate) async fn next_generation(&self, key: &str, seen: u64) -> Option<u64> {
        let script = Script::new(
            "local held = tonumber(redis.call('GET', KEYS[1]) or '0') \
             if held == tonumber(ARGV[1]) then \
               held = held + 1 redis.call('SET', KEYS[1], tostring(held)) end \
             return held",
        );
        self.link
            .run(|mut connection| async move {
                script
                    .key(key)
                    .arg(seen)
                    .invoke_async::<u64>(&mut connection)
                    .await
            })
            .await
            .ok()
    }

    /// Whether the last Redis operation (or connection attempt) succeeded.
    pub(crate) fn healthy(&self) -> bool {
        self.link.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn address(&self) -> &str {
        &self.link.address
    }

    /// Reads the row stored under `key`. An entry that does not parse, or whose `pos` does not
    /// match its row, is removed and reported as [`Fetched::Unreadable`].
    pub(crate) async fn fetch<R: CachedRow + DeserializeOwned>(&self, key: &str) -> Fetched<R> {
        let reply = self
            .link
            .run(|mut connection| async move {
                // Bytes, not strings: a field that is not UTF-8 is a bad entry, not a Redis
                // failure.
                let fields: Result<EntryFields, RedisError> = redis::cmd("HMGET")
                    .arg(key)
                    .arg("pos")
                    .arg("val")
                    .query_async(&mut connection)
                    .await;
                match fields {
                    Ok(fields) => Ok(Some(fields)),
                    // Something that is not our hash sits under the key: the server is fine,
                    // the entry is debris.
                    Err(error) if error.code() == Some("WRONGTYPE") => Ok(None),
                    Err(error) => Err(error),
                }
            })
            .await;
        let seen = match reply {
            Err(_) => return Fetched::Unavailable,
            Ok(Some((None, None))) => return Fetched::Missing,
            Ok(Some((pos, Some(val)))) => {
                match serde_json::from_slice::<R>(&val) {
                    Ok(row) if pos.as_deref() == Some(row.position().to_string().as_bytes()) => {
                        return Fetched::Found(row)
                    }
                    Ok(_) => tracing::debug!(key, "cached row disagrees with its position"),
                    Err(error) => tracing::debug!(key, %error, "cached row does not parse"),
                }
                Some(val)
            }
            Ok(Some((Some(_), None))) | Ok(None) => None,
        };
        Counters::bump(&self.link.counters.unreadable_entries);
        self.discard(key, seen).await;
        Fetched::Unreadable
    }

    /// Writes `row` under `key` unless Redis holds a row with a higher position; sets the TTL
    /// whenever it writes. `None` when Redis could not be asked.
    pub(crate) async fn put<R: CachedRow + Serialize>(
        &self,
        key: &str,
        row: &R,
        ttl: Duration,
    ) -> Option<Stored> {
        let json = match serde_json::to_vec(row) {
            Ok(json) => json,
            Err(error) => {
                // Not a Redis failure: the cache simply does not share this row.
                tracing::warn!(key, error = %L2Error::from(error), "row not written to Redis");
                return None;
            }
        };
        let position = row.position().to_string();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let script = &self.link.guarded_write;
        let outcome = self
            .link
            .run(|mut connection| async move {
                let mut invocation = script.key(key);
                invocation.arg(position).arg(json).arg(ttl_ms);
                invocation.invoke_async::<i64>(&mut connection).await
            })
            .await;
        match outcome {
            Ok(1) => Some(Stored::Written),
            Ok(0) => Some(Stored::Same),
            Ok(-1) => Some(Stored::Refused),
            Ok(other) => {
                self.link.failed(None, &L2Error::UnexpectedReply(other));
                None
            }
            Err(_) => None,
        }
    }

    /// Removes an unreadable entry unless it changed since `seen` was read.
    async fn discard(&self, key: &str, seen: Option<Vec<u8>>) {
        let script = &self.link.discard_unreadable;
        // Failures are already counted and logged by `run`; the entry then simply stays a miss.
        let _ = self
            .link
            .run(|mut connection| async move {
                let mut invocation = script.key(key);
                if let Some(seen) = seen {
                    invocation.arg(seen);
                }
                invocation.invoke_async::<i64>(&mut connection).await
            })
            .await;
    }
}

impl Link {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, and every state is valid on its own.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one operation on the shared connection, bounded by the operation timeout. Skips
    /// Redis (without waiting) while it is down; a failure marks it down.
    async fn run<T, F, Fut>(self: &Arc<Self>, operation: F) -> Result<T, L2Error>
    where
        F: FnOnce(RedisConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let Some((connection, generation)) = self.checkout() else {
            Counters::bump(&self.counters.redis_skipped);
            return Err(L2Error::BackingOff);
        };
        let limit = self.timing.operation_timeout;
        let error = match tokio::time::timeout(limit, operation(connection)).await {
            Ok(Ok(value)) => {
                self.healthy.store(true, Ordering::Relaxed);
                return Ok(value);
            }
            Ok(Err(error)) => L2Error::Redis(error),
            Err(_) => L2Error::Timeout(limit),
        };
        self.failed(Some(generation), &error);
        Err(error)
    }

    /// The shared connection, or `None` while Redis is down. The first call after the back-off
    /// starts a reconnection in the background; no request waits for it.
    fn checkout(self: &Arc<Self>) -> Option<(RedisConnection, u64)> {
        let mut state = self.state();
        match &*state {
            State::Up {
                connection,
                generation,
            } => Some((connection.clone(), *generation)),
            State::Connecting { since, generation } => {
                // An attempt outlives its own timeout only if its task died with the runtime
                // it was spawned on; then it will never report, so start another.
                let abandoned = since.elapsed() > self.timing.connect_timeout * 2;
                let generation = *generation;
                if abandoned {
                    self.start_reconnect(&mut state, generation);
                }
                None
            }
            State::Down {
                retry_at,
                generation,
            } => {
                let generation = *generation;
                if Instant::now() >= *retry_at {
                    self.start_reconnect(&mut state, generation);
                }
                None
            }
        }
    }

    fn start_reconnect(self: &Arc<Self>, state: &mut State, generation: u64) {
        // Without a runtime there is nothing to reconnect on; stay as we are and try later.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        *state = State::Connecting {
            since: Instant::now(),
            generation,
        };
        runtime.spawn(Self::reconnect(Arc::clone(self), generation));
    }

    async fn reconnect(link: Arc<Link>, generation: u64) {
        let attempt = link.client.connect();
        let result = match tokio::time::timeout(link.timing.connect_timeout, attempt).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(L2Error::Redis(error)),
            Err(_) => Err(L2Error::Timeout(link.timing.connect_timeout)),
        };
        match result {
            Ok(connection) => {
                *link.state() = State::Up {
                    connection,
                    generation: generation + 1,
                };
                link.healthy.store(true, Ordering::Relaxed);
                if generation > 0 {
                    tracing::info!(redis = %link.address, "Redis is reachable again");
                }
            }
            Err(error) => {
                *link.state() = State::Down {
                    retry_at: Instant::now() + link.timing.backoff,
                    generation,
                };
                link.healthy.store(false, Ordering::Relaxed);
                Counters::bump(&link.counters.redis_errors);
                link.complain("cannot connect to Redis", &error);
            }
        }
    }

    /// Counts a failure, and if it happened on the current connection, drops that connection
    /// and backs off. A late failure from an already-replaced connection changes nothing.
    fn failed(&self, generation: Option<u64>, error: &L2Error) {
        self.healthy.store(false, Ordering::Relaxed);
        Counters::bump(&self.counters.redis_errors);
        {
            let mut state = self.state();
            if let State::Up {
                generation: current,
                ..
            } = &*state
            {
                let current = *current;
                if generation.is_none_or(|failed| failed == current) {
                    *state = State::Down {
                        retry_at: Instant::now() + self.timing.backoff,
                        generation: current,
                    };
                }
            }
        }
        self.complain("Redis operation failed", error);
    }

    /// Logs at most one warning per [`COMPLAINT_INTERVAL`], with how many were held back.
    fn complain(&self, what: &str, error: &L2Error) {
        let now = Instant::now();
        {
            let mut last = self
                .complaints
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|last| now.duration_since(last) < COMPLAINT_INTERVAL) {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            *last = Some(now);
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        let mut text = error.to_string();
        if let Some(secret) = &self.secret {
            text = text.replace(secret.as_str(), "***");
        }
        tracing::warn!(
            redis = %self.address,
            error = %text,
            suppressed,
            "{what}; reading from memory and the database, retrying every {:?}",
            self.timing.backoff
        );
    }
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("address", &self.link.address)
            .field("healthy", &self.healthy())
            .finish()
    }
}

fn guarded_write_script() -> Script {
    Script::new(include_str!("guarded_write.lua"))
}

fn discard_unreadable_script() -> Script {
    Script::new(include_str!("discard_unreadable.lua"))
}
