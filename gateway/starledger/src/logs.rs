//! Where log lines go: stderr at `LOG_LEVEL`, as text or JSON. Shared by `starledger` and
//! `starledger-bench`.

use std::io::IsTerminal;

use crate::config::{Config, LogFormat};

/// Logs go to stderr at `LOG_LEVEL` (`RUST_LOG` overrides): as text, coloured only on a
/// terminal (a file or a pipe gets no escape codes), or with `LOG_FORMAT=json` one JSON
/// object per line.
///
/// `demo` tells a story on stdout, and log lines would break into it (even the warning that
/// its Fragment is a sandbox, which the story is about): unless `LOG_LEVEL` or `RUST_LOG` asks
/// for them, it logs errors only.
pub fn init(config: &Config, tells_a_story: bool) {
    let directives = if tells_a_story && !config.log_level_set {
        "error".to_owned()
    } else {
        format!("warn,starledger={}", config.log_level)
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directives));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}
