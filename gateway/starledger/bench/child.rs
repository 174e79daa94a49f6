//! `starledger` commands run as their own processes, the way an operator runs them, so that
//! what `bench all` reports for them is theirs alone: `migrate`, `serve` (the server the HTTP
//! load is sent to), `audit verify --full` and `projections rebuild all`.
//!
//! Each child starts with an environment of our own (nothing inherited but `PATH`). Its peak
//! resident set is the `VmHWM` of `/proc/<pid>/status`, read every [`POLL`] until it ends.
//! Not `wait4`'s `ru_maxrss`: Linux carries the parent's high-water mark at the fork over the
//! exec into the child's, so a child of this (large) process would report at least our size.
//! A peak reached within the last poll interval before the child exits can be missed.
//!
//! Depends on [`super::load`] (reading `/proc/<pid>/status`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::load::status_file_kb;

/// How often a child's peak RSS is read.
const POLL: Duration = Duration::from_millis(10);

/// How long a started `serve` may take to answer `/readyz`.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// How a child ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finished {
    /// The exit code; `None` when a signal ended it.
    pub(crate) code: Option<i32>,
    pub(crate) elapsed: Duration,
    /// Its peak resident set, in kB (`VmHWM` as last read).
    pub(crate) peak_rss_kb: u64,
}

impl Finished {
    pub(crate) fn peak_rss_mb(&self) -> f64 {
        self.peak_rss_kb as f64 / 1024.0
    }
}

/// The `starledger` binary beside this one (`target/release/starledger` beside
/// `target/release/starledger-bench`).
fn starledger() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("where this binary is")?;
    let binary = exe.with_file_name(format!("starledger{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing: build it with `cargo build --release -p starledger-gateway`",
        binary.display()
    );
    Ok(binary)
}

/// A running `starledger` process.
pub(crate) struct Child {
    child: std::process::Child,
    started: Instant,
    what: String,
}

impl Child {
    /// Starts `starledger <args>` with exactly `vars` (and `PATH`) as its environment; its
    /// output goes to this process's stderr.
    pub(crate) fn spawn(args: &[&str], vars: &BTreeMap<&str, String>) -> anyhow::Result<Child> {
        Child::spawn_program(starledger()?, args, vars)
    }

    /// [`Child::spawn`] of any program.
    fn spawn_program(
        program: PathBuf,
        args: &[&str],
        vars: &BTreeMap<&str, String>,
    ) -> anyhow::Result<Child> {
        let name = program.file_name().map_or_else(
            || program.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        let what = format!("{name} {}", args.join(" "));
        let mut command = Command::new(&program);
        command
            .args(args)
            .env_clear()
            .envs(vars.iter().map(|(name, value)| (*name, value.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        Ok(Child {
            child,
            started: Instant::now(),
            what,
        })
    }

    /// Asks it to stop as an operator would (SIGTERM: drain, then exit).
    pub(crate) fn terminate(&self) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("a process id")?;
        // SAFETY: kill(2) with the pid of our child, not yet reaped (it cannot have been
        // reused), and a valid signal.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            bail!(
                "cannot signal {}: {}",
                self.what,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Whether it has already ended: a child that ended and is not yet reaped is a zombie
    /// (state `Z` in `/proc/<pid>/stat`); reaping it here would lose its resource usage.
    fn has_exited(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) {
            // The state follows the command name, which is in parentheses and may hold spaces.
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z')),
            Err(_) => true,
        }
    }

    /// Waits for it to end and reads its peak RSS.
    pub(crate) async fn wait(self) -> anyhow::Result<Finished> {
        let Child {
            child,
            started,
            what,
        } = self;
        tokio::task::spawn_blocking(move || reap(child, started))
            .await
            .context("the waiting task")?
            .with_context(|| format!("waiting for {what}"))
    }

    /// Polls `url` until it answers 200, failing if the process ends first.
    pub(crate) async fn wait_until_ready(&self, url: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if self.has_exited() {
                bail!("{} ended before it was ready", self.what);
            }
            if let Ok(answer) = client.get(url).send().await {
                if answer.status() == reqwest::StatusCode::OK {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!("{url} did not answer 200 within {READY_WITHIN:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Reads the child's `VmHWM` until it has ended, then reaps it for its exit status.
fn reap(mut child: std::process::Child, started: Instant) -> anyhow::Result<Finished> {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_rss_kb = 0;
    // An ended child not yet reaped keeps its /proc entry without memory (no VmHWM line); a
    // running one always has it.
    while let Some(kb) = status_file_kb(&status_file, "VmHWM:") {
        peak_rss_kb = peak_rss_kb.max(kb);
        std::thread::sleep(POLL);
    }
    let status = child.wait()?;
    Ok(Finished {
        code: status.code(),
        elapsed: started.elapsed(),
        peak_rss_kb,
    })
}

/// Runs `starledger <args>` to its end; an exit code other than 0 is an error.
pub(crate) async fn run(args: &[&str], vars: &BTreeMap<&str, String>) -> anyhow::Result<Finished> {
    let what = format!("starledger {}", args.join(" "));
    let finished = Child::spawn(args, vars)?.wait().await?;
    match finished.code {
        Some(0) => Ok(finished),
        Some(code) => bail!("{what} exited with {code}"),
        None => bail!("{what} was ended by a signal"),
    }
}

/// A free TCP port on the loopback (bound, then let go for the child to take).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_childs_peak_rss_is_its_own_and_its_exit_code_is_kept() {
        // 40 MB held by the shell for a moment, then exit code 3.
        let script = "x=$(head -c 40000000 /dev/zero | tr '\\0' a); sleep 0.3; exit 3";
        let child =
            Child::spawn_program("/bin/sh".into(), &["-c", script], &BTreeMap::new()).unwrap();
        let finished = child.wait().await.unwrap();
        assert_eq!(finished.code, Some(3));
        assert!(
            finished.peak_rss_mb() > 35.0 && finished.peak_rss_mb() < 400.0,
            "{finished:?}"
        );
    }

    #[tokio::test]
    async fn a_child_that_ends_before_it_is_ready_is_reported() {
        let child =
            Child::spawn_program("/bin/sh".into(), &["-c", "exit 0"], &BTreeMap::new()).unwrap();
        let error = child
            .wait_until_ready("http://127.0.0.1:9/readyz")
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("ended before it was ready"),
            "{error}"
        );
        assert_eq!(child.wait().await.unwrap().code, Some(0));
    }
}
