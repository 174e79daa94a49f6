//! `starledger serve` as an operator runs it: it refuses to start without its settings, it
//! answers over HTTP, and SIGTERM stops it cleanly with everything acknowledged kept.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use starledger_e2e::{free_port, starledger};

const SERVICE_KEY: &str = "service-key-0123456789";

/// One HTTP/1.1 request with `Connection: close`; returns the status code and the body.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {SERVICE_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((status, body))
}

fn start(db: &std::path::Path, port: u16) -> Child {
    let mut child = starledger()
        .arg("serve")
        .env("STARLEDGER_SQLITE_PATH", db)
        .env("HELEKET_MODE", "sandbox")
        .env("WEBHOOK_HOST", "127.0.0.1")
        .env("WEBHOOK_PORT", port.to_string())
        .env("STARLEDGER_API_KEYS", format!("bot:service:{SERVICE_KEY}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start starledger serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(port, "GET", "/healthz", None).map(|(s, _)| s) != Some(200) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("serve exited early with {status}");
        }
        assert!(Instant::now() < deadline, "serve did not answer in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn terminate(mut child: Child) -> (std::process::ExitStatus, String) {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)
            .expect("read what serve wrote to stderr");
    }
    (status, stderr)
}

#[test]
fn serve_answers_and_stops_cleanly_on_sigterm_keeping_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let port = free_port();
    let child = start(&db, port);
    let (status, _) = http(
        port,
        "POST",
        "/v1/users",
        Some(r#"{"user_id":8001,"username":"shutdown_test"}"#),
    )
    .unwrap();
    assert_eq!(status, 201);
    let (status, stderr) = terminate(child);
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    assert!(stderr.contains("starledger stopped"), "{stderr}");

    // Started again on the same file, the acknowledged registration is there.
    let port = free_port();
    let child = start(&db, port);
    let (status, body) = http(port, "GET", "/v1/users/8001", None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("shutdown_test"), "{body}");
    let (status, _) = terminate(child);
    assert!(status.success());
}

#[test]
fn serve_without_heleket_credentials_names_the_missing_variable() {
    let dir = tempfile::tempdir().unwrap();
    let output = starledger()
        .arg("serve")
        .env("STARLEDGER_SQLITE_PATH", dir.path().join("ledger.db"))
        .output()
        .expect("run starledger serve");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MERCHANT_UUID"), "{stderr}");
    assert!(stderr.contains("HELEKET_MODE=sandbox"), "{stderr}");
}

/// Runs `starledger serve` with `vars` and returns its exit code and standard error.
fn refused_start(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = starledger();
    command
        .arg("serve")
        .env("STARLEDGER_SQLITE_PATH", dir.path().join("ledger.db"))
        .env("WEBHOOK_PORT", "0");
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().expect("run starledger serve");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn simulated_and_real_money_never_mix() {
    // A sandbox Heleket with the live Fragment: simulated money buying real Stars.
    let live_fragment = [
        ("HELEKET_MODE", "sandbox"),
        ("FRAGMENT_MODE", "live"),
        ("FRAGMENT_COOKIES", "stel_ssid=a; stel_dt=-180; stel_token=b; stel_ton_token=c"),
        (
            "FRAGMENT_SEED_PHRASE",
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art",
        ),
    ];
    let (code, stderr) = refused_start(&live_fragment);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("FRAGMENT_MODE=live") && stderr.contains("HELEKET_MODE=sandbox"),
        "{stderr}"
    );
    // A live Heleket with the sandbox Fragment: real money for simulated Stars.
    let (code, stderr) = refused_start(&[
        ("HELEKET_MODE", "live"),
        ("MERCHANT_UUID", "8b2c5a4e-0000-4000-8000-000000000001"),
        ("API_KEY", "live-heleket-key"),
        (
            "HELEKET_CALLBACK_URL",
            "https://shop.example/webhooks/heleket",
        ),
        ("FRAGMENT_MODE", "sandbox"),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("FRAGMENT_MODE=sandbox") && stderr.contains("HELEKET_MODE=live"),
        "{stderr}"
    );
}

#[test]
fn the_sandbox_refuses_a_short_api_key() {
    let (code, stderr) =
        refused_start(&[("HELEKET_MODE", "sandbox"), ("API_KEY", "sandbox-api-key")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("API_KEY") && stderr.contains("32"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("sandbox-api-key"),
        "the key is never echoed: {stderr}"
    );
}
