//! Redis with Sentinel for a test: a master, a replica and three sentinels (Debian's
//! `redis-server`, the sentinels as `redis-server … --sentinel`) on free loopback ports, each
//! a child process killed when this is dropped (or by the test, to make the sentinels promote
//! the replica).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::servers::{free_port, redis_cli as cli, wait_until};

/// The name the sentinels know the master by.
pub const MASTER_NAME: &str = "starledger-test";

pub struct RedisSentinel {
    pub master: u16,
    pub replica: u16,
    pub sentinels: Vec<u16>,
    servers: Vec<(u16, Option<Child>)>,
    _dir: tempfile::TempDir,
}

fn spawn(args: &[String]) -> Child {
    Command::new("redis-server")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts")
}

impl RedisSentinel {
    pub fn start() -> RedisSentinel {
        let dir = tempfile::tempdir().expect("temp dir");
        let (master, replica) = (free_port(), free_port());
        let server = |port: u16, extra: &[&str]| {
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.push("--dir".into());
            args.push(dir.path().display().to_string());
            args.extend(extra.iter().map(|s| s.to_string()));
            spawn(&args)
        };
        let mut servers = vec![(master, Some(server(master, &[])))];
        wait_until("the master", Duration::from_secs(10), || {
            cli(master, &["ping"]).trim() == "PONG"
        });
        let master_address = format!("127.0.0.1 {master}");
        let replica_of: Vec<&str> = master_address.split(' ').collect();
        servers.push((
            replica,
            Some(server(
                replica,
                &["--replicaof", replica_of[0], replica_of[1]],
            )),
        ));
        wait_until("the replica to sync", Duration::from_secs(10), || {
            cli(replica, &["info", "replication"]).contains("master_link_status:up")
        });
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 3000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = dir.path().display()
                ),
            )
            .expect("sentinel config");
            let child = spawn(&[conf.display().to_string(), "--sentinel".into()]);
            servers.push((port, Some(child)));
            sentinels.push(port);
        }
        for port in &sentinels {
            wait_until(
                "a sentinel to see the replica",
                Duration::from_secs(20),
                || {
                    cli(*port, &["sentinel", "replicas", MASTER_NAME])
                        .contains(&replica.to_string())
                },
            );
        }
        RedisSentinel {
            master,
            replica,
            sentinels,
            servers,
            _dir: dir,
        }
    }

    /// `REDIS_SENTINELS`: `127.0.0.1:port,…`.
    pub fn sentinels_setting(&self) -> String {
        self.sentinels
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The master's port as the first sentinel names it.
    pub fn current_master(&self) -> Option<u16> {
        cli(
            self.sentinels[0],
            &["sentinel", "get-master-addr-by-name", MASTER_NAME],
        )
        .lines()
        .nth(1)
        .and_then(|port| port.trim().parse().ok())
    }

    /// Kills the server on `port` (`kill -9`).
    pub fn kill(&mut self, port: u16) {
        for (p, child) in &mut self.servers {
            if *p == port {
                if let Some(mut child) = child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }

    /// Waits until the sentinels name `port` the master and it says so itself.
    pub fn wait_master(&self, port: u16) {
        wait_until("the replica's promotion", Duration::from_secs(30), || {
            self.current_master() == Some(port) && cli(port, &["role"]).starts_with("master")
        });
    }

    /// A field of the hash under `key` on the server on `port`.
    pub fn field(&self, port: u16, key: &str, field: &str) -> Option<String> {
        let value = cli(port, &["hget", key, field]).trim().to_owned();
        (!value.is_empty()).then_some(value)
    }

    /// Keys under `pattern` on the server on `port`.
    pub fn keys(&self, port: u16, pattern: &str) -> Vec<String> {
        cli(port, &["--scan", "--pattern", pattern])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        for (_, child) in &mut self.servers {
            if let Some(child) = child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
