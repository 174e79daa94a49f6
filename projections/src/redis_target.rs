//! Where Redis is — one server (`REDIS_URL`), a Redis Cluster (`REDIS_CLUSTER_NODES`), or a
//! master that Redis Sentinel names (`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`) — and
//! one connection type for both, so every Redis user (the read cache, the bot's rate limits
//! and sessions) runs unchanged on either.
//!
//! Every key we write is a key of its own and every script touches one key (`KEYS[1]`), so
//! each command and script lands in one slot: nothing needs hash tags. The cluster connection
//! follows `MOVED`/`ASK` redirections and re-reads the slot map when a replica is promoted.
//! With Sentinel, each (re)connection asks the sentinels which server is the master now: a
//! connection that fails after a failover is dropped by its user, and the next one goes to
//! the promoted replica.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

/// Where Redis is, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisSpec {
    /// `REDIS_URL`.
    Single(String),
    /// `REDIS_CLUSTER_NODES`: some of the cluster's nodes (the rest are discovered).
    Cluster(Vec<String>),
    /// `REDIS_SENTINELS` (as `redis://host:port` URLs) and `REDIS_SENTINEL_MASTER`.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

impl RedisSpec {
    /// The one URL, or the first node's or sentinel's: what logs name.
    fn first_url(&self) -> Option<&str> {
        match self {
            RedisSpec::Single(url) => Some(url.as_str()),
            RedisSpec::Cluster(nodes) => nodes.first().map(String::as_str),
            RedisSpec::Sentinel { sentinels, .. } => sentinels.first().map(String::as_str),
        }
    }
}

/// A Redis client for a [`RedisSpec`].
pub enum RedisTarget {
    /// The client and its connect and response timeouts.
    Single(Client, Duration, Duration),
    Cluster(ClusterClient),
    /// The sentinels, and the connect and response timeouts for the master they name.
    Sentinel(tokio::sync::Mutex<SentinelClient>, Duration, Duration),
}

/// A connection to one server or to the cluster. Cheap to clone (both kinds multiplex).
#[derive(Clone)]
pub enum RedisConnection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl RedisTarget {
    /// A client for `spec`, whose connections bound each attempt by `connect` and each
    /// command by `response`. `Err` only for an address that does not parse (its text, which
    /// may hold a password, is not repeated).
    pub fn open(
        spec: &RedisSpec,
        connect: Duration,
        response: Duration,
    ) -> Result<Self, redis::ErrorKind> {
        match spec {
            RedisSpec::Single(url) => Client::open(url.as_str())
                .map(|client| RedisTarget::Single(client, connect, response))
                .map_err(|error| error.kind()),
            RedisSpec::Cluster(nodes) => {
                ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(connect)
                    .response_timeout(response)
                    // A failover takes the cluster a moment: a few quick retries ride it out.
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(500)
                    .build()
                    .map(RedisTarget::Cluster)
                    .map_err(|error| error.kind())
            }
            RedisSpec::Sentinel { sentinels, master } => SentinelClient::build(
                sentinels.iter().map(String::as_str).collect(),
                master.clone(),
                None,
                SentinelServerType::Master,
            )
            .map(|client| RedisTarget::Sentinel(tokio::sync::Mutex::new(client), connect, response))
            .map_err(|error| error.kind()),
        }
    }

    /// `host:port` (the first node, for a cluster), for log lines: never the URL.
    pub fn address(spec: &RedisSpec) -> String {
        let address = spec
            .first_url()
            .and_then(|url| Client::open(url).ok())
            .map(|client| client.get_connection_info().addr().to_string())
            .unwrap_or_else(|| "redis".to_owned());
        match spec {
            RedisSpec::Single(_) => address,
            RedisSpec::Cluster(nodes) => format!("cluster {address} (+{} more)", nodes.len() - 1),
            RedisSpec::Sentinel { master, .. } => format!("master {master} via sentinel {address}"),
        }
    }

    /// The password in the address, if any, so it can be blanked out of error texts.
    pub fn password(spec: &RedisSpec) -> Option<String> {
        Client::open(spec.first_url()?)
            .ok()?
            .get_connection_info()
            .redis_settings()
            .password()
            .filter(|password| !password.is_empty())
            .map(str::to_owned)
    }

    /// Connects (bounded as the client was opened).
    pub async fn connect(&self) -> Result<RedisConnection, RedisError> {
        match self {
            RedisTarget::Single(client, connect, response) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(*connect))
                    .set_response_timeout(Some(*response));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(RedisConnection::Single)
            }
            RedisTarget::Cluster(client) => client
                .get_async_connection()
                .await
                .map(RedisConnection::Cluster),
            RedisTarget::Sentinel(sentinels, connect, response) => {
                // The master as the sentinels name it now.
                let master = sentinels.lock().await.async_get_client().await?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(*connect))
                    .set_response_timeout(Some(*response));
                master
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(RedisConnection::Single)
            }
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(connection) => connection.req_packed_command(cmd),
            RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            RedisConnection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(connection) => connection.get_db(),
            RedisConnection::Cluster(connection) => connection.get_db(),
        }
    }
}
