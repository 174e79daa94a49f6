//! `starledger demo` reads as a story: with the default settings it writes the story to
//! stdout and nothing to stderr, so no log line breaks into it on a terminal.

use starledger_e2e::starledger;

fn demo(vars: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = starledger();
    command
        .arg("demo")
        .env_remove("LOG_FORMAT")
        .current_dir(dir.path());
    for (variable, value) in vars {
        command.env(variable, value);
    }
    command.output().unwrap()
}

#[test]
fn the_demo_writes_no_log_lines_by_default() {
    let output = demo(&[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("the ledger is sound"), "{stdout}");
    assert!(stderr.is_empty(), "the demo logged:\n{stderr}");
}

#[test]
fn log_level_brings_the_demos_log_lines_back() {
    let output = demo(&[("LOG_LEVEL", "info")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("the ledger is sound"), "{stdout}");
    assert!(
        stderr.lines().any(|line| line.contains(" INFO ")),
        "LOG_LEVEL=info, yet no INFO line:\n{stderr}"
    );
}
