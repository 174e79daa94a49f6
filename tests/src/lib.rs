//! Black-box tests of the `starledger` binary: they run it as a user would and look only at
//! its exit code, its output and the database it leaves behind. See `tests/tests/`.

use std::path::PathBuf;
use std::process::Command;

/// The `starledger` binary of this workspace, built if it is not there yet.
pub fn starledger() -> Command {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("debug").join("starledger");
    if !binary.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "starledger-gateway", "--bin", "starledger"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building starledger failed");
    }
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
    ] {
        command.env_remove(variable);
    }
    command
}
