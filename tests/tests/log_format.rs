//! How `starledger` writes its logs to stderr: text without colour codes when stderr is not a
//! terminal, one JSON object per line with `LOG_FORMAT=json`, and an unknown `LOG_FORMAT`
//! refused at start-up like any other malformed setting. The demo is the command that logs
//! here: it needs no server, and its fulfilment worker logs at INFO.

use serde_json::Value;
use starledger_e2e::starledger;

fn demo_logging_at_info(format: Option<&str>) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = starledger();
    command
        .arg("demo")
        .env("LOG_LEVEL", "info")
        .env_remove("LOG_FORMAT")
        .current_dir(dir.path());
    if let Some(format) = format {
        command.env("LOG_FORMAT", format);
    }
    // `output()` pipes stderr: not a terminal.
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let output = demo_logging_at_info(None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.lines().any(|line| line.contains(" INFO ")),
        "nothing logged at INFO:\n{stderr}"
    );
    assert!(
        !stderr.contains("\x1b["),
        "ANSI escape codes in a piped log:\n{stderr:?}"
    );
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    for format in ["json", "JSON"] {
        let output = demo_logging_at_info(Some(format));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(
            lines.iter().any(|line| line.contains("\"INFO\"")),
            "nothing logged at INFO:\n{stderr}"
        );
        for line in lines {
            let object: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line:?}"));
            assert!(
                object["level"].is_string() && object["fields"]["message"].is_string(),
                "a log object has a level and a message: {line}"
            );
        }
        // The story itself stays text on stdout.
        assert!(String::from_utf8_lossy(&output.stdout).contains("the ledger is sound"));
    }
}

#[test]
fn an_unknown_log_format_stops_start_up_and_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let output = starledger()
        .arg("migrate")
        .env("LOG_FORMAT", "bogus")
        .env("STARLEDGER_SQLITE_PATH", dir.path().join("never.db"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("LOG_FORMAT"), "{stderr}");
    assert!(!dir.path().join("never.db").exists());
}
