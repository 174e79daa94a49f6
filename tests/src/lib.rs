//! Black-box tests of the `starledger` binary: they run it as a user would and look only at
//! its exit code, its output and the database it leaves behind. See `tests/tests/`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

static BUILT: OnceLock<()> = OnceLock::new();

/// The `starledger` binary of this workspace, built (or brought up to date) once per test run:
/// `cargo test` does not build another package's binary, and a stale one would test old code.
pub fn starledger() -> Command {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("debug").join("starledger");
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "starledger-gateway",
                "--bin",
                "starledger",
            ])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building starledger failed");
    });
    let mut command = Command::new(binary);
    // A clean environment: no settings leak in from the developer's shell.
    for variable in [
        "DATABASE_URL",
        "STARLEDGER_SQLITE_PATH",
        "LEDGER_CURRENCY",
        "STAR_PRICE",
        "STAR_MARKUP_PERCENT",
        "LOG_LEVEL",
        "RUST_LOG",
        "REDIS_URL",
        "HELEKET_MODE",
        "MERCHANT_UUID",
        "API_KEY",
        "HELEKET_CALLBACK_URL",
        "PRODUCTION_DOMAIN",
        "STARLEDGER_API_KEYS",
        "WEBHOOK_HOST",
        "WEBHOOK_PORT",
    ] {
        command.env_remove(variable);
    }
    command
}

/// A port nobody listens on right now (the OS picks it; a test binds it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
