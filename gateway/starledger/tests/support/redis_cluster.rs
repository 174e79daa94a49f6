//! A real Redis Cluster for a test: three masters and three replicas of Debian's
//! `redis-server` in cluster mode on free loopback ports, formed with `redis-cli --cluster
//! create`, each node a child process killed when the cluster is dropped (or by the test, to
//! make a replica take over).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::servers::{redis_cli as cli, wait_until};

/// A running cluster.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
    _dir: tempfile::TempDir,
}

/// Whether this machine can run one; under CI it must (a test whose server is missing fails).
pub fn available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && starledger_ledger::testing::under_ci() {
        panic!("redis-server is not installed; .ci/run installs it (package redis-server)");
    }
    if !found {
        eprintln!("redis-server not installed: the Redis Cluster test is skipped");
    }
    found
}

/// A port whose cluster-bus port (port + 10000) is free too.
fn free_port(taken: &[u16]) -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        if port > 55_000 || taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ports = Vec::new();
        for _ in 0..6 {
            let port = free_port(&ports);
            ports.push(port);
        }
        let nodes = ports
            .iter()
            .map(|port| {
                let child = Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--cluster-enabled", "yes"])
                    .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                    .args(["--cluster-node-timeout", "1000"])
                    // A replica may take over however long ago it last heard from its master
                    // (the default would refuse right after the cluster forms).
                    .args(["--cluster-replica-validity-factor", "0"])
                    .args(["--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server starts");
                Some(child)
            })
            .collect();
        for port in &ports {
            wait_until("a node", Duration::from_secs(10), || {
                cli(*port, &["ping"]).trim() == "PONG"
            });
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let created = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create runs");
        assert!(created.success(), "the cluster could not be formed");
        let cluster = RedisCluster {
            ports,
            nodes,
            _dir: dir,
        };
        cluster.wait_ok();
        cluster
    }

    /// `redis://127.0.0.1:{port}` of every node, comma-separated (`REDIS_CLUSTER_NODES`).
    pub fn nodes_setting(&self) -> String {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until three live nodes are masters and every live node says the cluster is ok.
    pub fn wait_ok(&self) {
        wait_until("the cluster to be ok", Duration::from_secs(30), || {
            self.masters().len() == 3
                && self
                    .live_ports()
                    .iter()
                    .all(|port| cli(*port, &["cluster", "info"]).contains("cluster_state:ok"))
        });
    }

    fn live_ports(&self) -> Vec<u16> {
        self.ports
            .iter()
            .zip(&self.nodes)
            .filter(|(_, node)| node.is_some())
            .map(|(port, _)| *port)
            .collect()
    }

    /// The ports of the nodes that are masters now.
    pub fn masters(&self) -> Vec<u16> {
        self.live_ports()
            .into_iter()
            .filter(|port| cli(*port, &["role"]).starts_with("master"))
            .collect()
    }

    /// Kills the node on `port` (`kill -9`).
    pub fn kill(&mut self, port: u16) {
        let index = self.ports.iter().position(|p| *p == port).expect("a node");
        if let Some(mut child) = self.nodes[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Keys under `pattern` on every live master.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.masters()
            .into_iter()
            .flat_map(|port| {
                cli(port, &["--scan", "--pattern", pattern])
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}
