//! `starledger bench …`: runs the `starledger-bench` binary that was built beside this one,
//! with the same arguments, and exits with its code. The benchmarks (load generators, scratch
//! databases, report tables) are not part of the production binary; this keeps the documented
//! command working.
//!
//! Under `cargo run -p starledger-gateway`, which builds only this binary, the bench binary is
//! built first with the same profile, so it is neither missing nor stale (cargo tells the
//! program where it is through `CARGO`, and which package it ran through `CARGO_PKG_NAME`).
//! Anywhere else (an installed binary, a test that inherited cargo's variables) the binary
//! beside this one is run as it is.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const BENCH_BINARY: &str = "starledger-bench";
const PACKAGE: &str = "starledger-gateway";

pub fn run(args: &[OsString]) -> ExitCode {
    let Some(binary) = bench_binary() else {
        eprintln!(
            "starledger bench: cannot find {BENCH_BINARY} beside this binary; build it with \
             `cargo build --release -p starledger-gateway` (it builds both binaries)"
        );
        return ExitCode::from(2);
    };
    match Command::new(&binary).args(args).status() {
        Ok(status) => match status.code() {
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            None => {
                eprintln!("starledger bench: {BENCH_BINARY} was stopped by a signal");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("starledger bench: cannot run {}: {error}", binary.display());
            ExitCode::FAILURE
        }
    }
}

/// The bench binary in this binary's directory, built there first under `cargo run`.
fn bench_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let directory = exe.parent()?;
    let binary = directory.join(format!("{BENCH_BINARY}{}", std::env::consts::EXE_SUFFIX));
    let run_by_cargo = std::env::var_os("CARGO_PKG_NAME").is_some_and(|name| name == PACKAGE);
    if let (true, Some(cargo)) = (run_by_cargo, std::env::var_os("CARGO")) {
        build_with_cargo(&cargo, directory);
    }
    binary.is_file().then_some(binary)
}

/// `cargo build --bin starledger-bench` with the profile this binary was built with (the
/// name of the directory it is in: `debug`, `release` or a custom profile).
fn build_with_cargo(cargo: &OsString, directory: &Path) {
    let profile = match directory.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(name) => name.to_owned(),
        None => return,
    };
    let built = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "starledger-gateway",
            "--bin",
            BENCH_BINARY,
        ])
        .args(["--profile", &profile])
        .status();
    if !built.is_ok_and(|status| status.success()) {
        eprintln!("starledger bench: `cargo build --bin {BENCH_BINARY}` failed");
    }
}
