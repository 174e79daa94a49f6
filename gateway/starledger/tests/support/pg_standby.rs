//! A PostgreSQL primary and a streaming standby of it for a test, made the way an operator
//! makes one: `initdb` for the primary (trust auth on loopback, replication allowed), then
//! `pg_basebackup -R` for the standby, both started with the server binaries `pg_config
//! --bindir` names, on free loopback ports as the `postgres` user, and stopped (immediately)
//! when this is dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use starledger_ledger::testing::{postgres_bin_dir, under_ci};

use super::servers::free_port;

pub struct PgStandby {
    pub primary_port: u16,
    pub standby_port: u16,
    /// The server binaries both run from.
    bin: PathBuf,
    dir: tempfile::TempDir,
}

/// The server binaries a primary and its standby need (`pg_config --bindir`, see
/// [`postgres_bin_dir`]); under CI, missing ones fail the test.
fn bin_dir() -> Option<PathBuf> {
    postgres_bin_dir(
        &["initdb", "pg_ctl", "pg_basebackup", "postgres"],
        "the read replica test",
    )
}

/// Whether this machine can run one; under CI it must.
pub fn available() -> bool {
    if bin_dir().is_none() {
        return false;
    }
    let runuser = Command::new("runuser")
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runuser && under_ci() {
        panic!("runuser is missing (package util-linux); under CI the read replica test must run");
    }
    if !runuser {
        eprintln!("runuser not found: the read replica test is skipped");
    }
    runuser
}

/// Runs a server binary from `bin` as `postgres`.
fn as_postgres(bin: &Path, program: &str, args: &[&str]) {
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(program))
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
        let bin = bin_dir().expect("the server binaries (checked by `available`)");
        let dir = tempfile::tempdir().expect("temp dir");
        // The servers run as postgres: it must reach and write its directories.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let (primary_port, standby_port) = (free_port(), free_port());
        let primary = path(dir.path(), "primary");
        let standby = path(dir.path(), "standby");
        let sockets = dir.path().display().to_string();
        as_postgres(
            &bin,
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
            &bin,
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
            &bin,
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
            &bin,
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
            bin,
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
                .arg(self.bin.join("pg_ctl"))
                .args(["-D", &data, "-m", "immediate", "stop"])
                .status();
        }
    }
}
