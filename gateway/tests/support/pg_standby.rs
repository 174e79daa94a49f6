//! A PostgreSQL primary and a streaming standby of it for a test, made the way an operator
//! makes one: `initdb` for the primary (trust auth on loopback, replication allowed), then
//! `pg_basebackup -R` for the standby, both started with Debian's server binaries on free
//! loopback ports as the `postgres` user, and stopped (immediately) when this is dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::servers::free_port;

pub struct PgStandby {
    pub primary_port: u16,
    pub standby_port: u16,
    dir: tempfile::TempDir,
}

/// Debian's server binaries (the newest installed version).
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("pg_basebackup").is_file() && bin.join("postgres").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

/// Whether this machine can run one; under CI it must.
pub fn available() -> bool {
    let found = bin_dir().is_some()
        && Command::new("runuser")
            .arg("--help")
            .output()
            .is_ok_and(|o| o.status.success());
    if !found && std::env::var("CI").is_ok() {
        panic!(
            "the PostgreSQL server binaries (or runuser) are missing; .ci/run installs postgresql"
        );
    }
    if !found {
        eprintln!("PostgreSQL server binaries not found: the read replica test is skipped");
    }
    found
}

/// Runs a server binary as `postgres`.
fn as_postgres(program: &str, args: &[&str]) {
    let bin = bin_dir().expect("server binaries").join(program);
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(&bin)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

impl PgStandby {
    pub fn start() -> PgStandby {
        let dir = tempfile::tempdir().expect("temp dir");
        // The servers run as postgres: it must reach and write its directories.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let (primary_port, standby_port) = (free_port(), free_port());
        let primary = path(dir.path(), "primary");
        let standby = path(dir.path(), "standby");
        let sockets = dir.path().display().to_string();
        as_postgres(
            "initdb",
            &["-D", &primary, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        std::fs::write(
            dir.path().join("primary/pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 trust\n",
        )
        .expect("pg_hba");
        let options = |port: u16| {
            format!(
                "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sockets} \
                 -c fsync=off -c wal_level=replica -c max_wal_senders=4 -c hot_standby=on"
            )
        };
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &primary,
                "-l",
                &path(dir.path(), "primary.log"),
                "-o",
                &options(primary_port),
                "-w",
                "start",
            ],
        );
        as_postgres(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port.to_string(),
                "-U",
                "postgres",
                "-D",
                &standby,
                "-R",
                "-X",
                "stream",
            ],
        );
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &standby,
                "-l",
                &path(dir.path(), "standby.log"),
                "-o",
                &options(standby_port),
                "-w",
                "start",
            ],
        );
        PgStandby {
            primary_port,
            standby_port,
            dir,
        }
    }

    pub fn primary_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.primary_port
        )
    }

    pub fn standby_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.standby_port
        )
    }
}

impl Drop for PgStandby {
    fn drop(&mut self) {
        for name in ["standby", "primary"] {
            let data = path(self.dir.path(), name);
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin_dir().unwrap_or_default().join("pg_ctl"))
                .args(["-D", &data, "-m", "immediate", "stop"])
                .status();
        }
    }
}
