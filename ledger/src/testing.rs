//! Test support (cargo feature `testing`): the servers a test needs, a fresh SQLite file or
//! PostgreSQL database per test, command builders, and a whole-log audit.
//!
//! PostgreSQL tests run when `TEST_DATABASE_URL` names a server, Redis-backed ones when
//! `TEST_REDIS_URL` does ([`server_url`]). Without one they print why they are skipped and
//! pass, except under CI (`CI=true`), where a skipped half would make a green run claim more
//! than it tested: there they fail. Each PostgreSQL test gets a [`ScratchDatabase`] of its
//! own, dropped when the value is dropped, so a test that panics leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;

use crate::store::postgres::{self, PostgresStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{CommitMode, EventStore};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};

// ---------------------------------------------------------------------------------------------
// The servers a test needs

/// Whether this is a CI run (`CI` is `true` or `1`, as CI services set it). There a test that
/// cannot reach or find its server fails instead of skipping.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

/// The URL of a server a test needs, from `variable` (`TEST_DATABASE_URL`, `TEST_REDIS_URL`).
/// Unset or empty: prints `{variable} unset: {without}` (what the test does instead, say "the
/// PostgreSQL half of this test is skipped") and returns `None`; under CI it panics instead.
pub fn server_url(variable: &str, without: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if under_ci() => panic!(
            "{variable} is unset, and under CI a test may not pass without its server \
             (without it: {without}); set {variable} as the README's test command does"
        ),
        _ => {
            eprintln!("{variable} unset: {without}");
            None
        }
    }
}

/// The directory of PostgreSQL's server programs, for a test that runs a server of its own:
/// `pg_config --bindir`, or the newest `/usr/lib/postgresql/*/bin` when pg_config is missing or
/// names a directory without `programs` (libpq-dev's own pg_config names `/usr/bin`). Not found:
/// prints why `what` is skipped and returns `None`; under CI it panics instead.
pub fn postgres_bin_dir(programs: &[&str], what: &str) -> Option<PathBuf> {
    let has_all = |dir: &Path| programs.iter().all(|program| dir.join(program).is_file());
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    let found = from_pg_config
        .clone()
        .filter(|dir| has_all(dir))
        .or_else(|| newest_debian_bin_dir(&has_all));
    if found.is_none() {
        let looked = match &from_pg_config {
            Some(dir) => format!("neither pg_config --bindir ({}) nor", dir.display()),
            None => "pg_config is missing, and no".to_owned(),
        };
        let reason = format!(
            "{looked} /usr/lib/postgresql/*/bin has {}",
            programs.join(", ")
        );
        if under_ci() {
            panic!("{reason}: under CI {what} may not be skipped (install postgresql)");
        }
        eprintln!("{reason}: {what} is skipped");
    }
    found
}

/// The highest version under `/usr/lib/postgresql` (Debian's layout) whose `bin` passes `fits`.
fn newest_debian_bin_dir(fits: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    let version = |dir: &Path| -> Vec<u64> {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        name.split('.')
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|dir| fits(&dir.join("bin")))
        .max_by_key(|dir| version(dir))
        .map(|dir| dir.join("bin"))
}

// ---------------------------------------------------------------------------------------------
// Databases of a test's own

/// A database of its own on a PostgreSQL server, made with a fresh name for one test and
/// dropped (`WITH (FORCE)`, whatever still uses it) when this value is dropped: at the end of
/// the test, and as well when it panics.
pub struct ScratchDatabase {
    server_url: String,
    name: String,
    url: String,
}

/// The options of the server `url` points at (the database it names is the one an
/// administrative connection uses).
fn server_options(url: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(url)
        .unwrap_or_else(|e| panic!("the PostgreSQL URL {url:?} parses: {e}"))
}

impl ScratchDatabase {
    /// Creates an empty database on the server `server_url` points at.
    pub async fn create(server_url: &str) -> ScratchDatabase {
        let server = server_options(server_url);
        let name = format!("starledger_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = server
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to {server_url}: {e}"));
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create a scratch database");
        admin.close().await.expect("close the admin connection");
        let without_query = server_url.split('?').next().unwrap_or(server_url);
        let (server_part, _) = without_query
            .rsplit_once('/')
            .expect("the PostgreSQL URL names a database");
        ScratchDatabase {
            url: format!("{server_part}/{name}"),
            server_url: server_url.to_owned(),
            name,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The new database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL it was created from: another scratch database beside this one is made from it.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// Options to connect to the new database.
    pub fn options(&self) -> PgConnectOptions {
        server_options(&self.server_url).database(&self.name)
    }
}

async fn drop_database(server: &PgConnectOptions, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = server.connect().await?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    admin.close().await
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and it runs inside the test's runtime or outside any, maybe while
        // the test panics: the database is dropped from a runtime of its own on a thread of
        // its own, and this waits for it.
        let (server, name) = (server_options(&self.server_url), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("no runtime to drop it on: {e}"))?
                .block_on(drop_database(&server, &name))
                .map_err(|e| e.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("the thread dropping it panicked".to_owned()));
        if let Err(error) = dropped {
            let message = format!("scratch database {} was not dropped: {error}", self.name);
            // A second panic while unwinding would abort the whole test binary.
            if std::thread::panicking() {
                eprintln!("{message}");
            } else {
                panic!("{message}");
            }
        }
    }
}

/// The ledger a test runs on.
pub enum Backend {
    Sqlite {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    },
    /// The pool is declared first: fields drop in order, so its connections go before the
    /// database does (and `WITH (FORCE)` ends any that stores or runners still hold).
    Postgres {
        pool: PgPool,
        database: ScratchDatabase,
    },
}

async fn sqlite_connection(path: &std::path::Path) -> sqlx::SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .expect("open the sqlite file")
}

impl Backend {
    pub async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.db");
        Backend::Sqlite { _dir: dir, path }
    }

    /// A fresh, migrated database, or `None` (with a printed reason) when no server is
    /// configured; under CI a missing server fails the test (see [`server_url`]).
    pub async fn postgres() -> Option<Backend> {
        let url = server_url(
            "TEST_DATABASE_URL",
            "the PostgreSQL half of this test is skipped; set it to postgres://… to run it",
        )?;
        let database = ScratchDatabase::create(&url).await;
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .connect_with(database.options())
            .await
            .expect("connect to test database");
        postgres::migrate(&pool).await.expect("migrate");
        Some(Backend::Postgres { pool, database })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres { .. } => "postgres",
        }
    }

    /// Opens a store on this backend. Opening twice gives two independent writers on the same
    /// log, as two processes would have.
    pub async fn open(&self, mode: CommitMode) -> Arc<dyn EventStore> {
        match self {
            Backend::Sqlite { path, .. } => {
                Arc::new(SqliteStore::open(path, mode).await.expect("open sqlite"))
            }
            Backend::Postgres { pool, .. } => Arc::new(
                PostgresStore::open(pool.clone(), mode)
                    .await
                    .expect("open postgres"),
            ),
        }
    }

    /// Runs SQL with the append-only protection switched off, as an attacker with full
    /// database rights could: what the hash chain must still detect.
    pub async fn tamper(&self, sql: &str) {
        match self {
            Backend::Sqlite { path, .. } => {
                let mut conn = sqlite_connection(path).await;
                conn.execute("DROP TRIGGER IF EXISTS events_append_only_update")
                    .await
                    .unwrap();
                conn.execute("DROP TRIGGER IF EXISTS events_append_only_delete")
                    .await
                    .unwrap();
                conn.execute(sql).await.expect("tamper");
            }
            Backend::Postgres { pool, .. } => {
                let mut conn = pool.acquire().await.unwrap();
                conn.execute("SET session_replication_role = replica")
                    .await
                    .unwrap();
                conn.execute(sql).await.expect("tamper");
                conn.execute("SET session_replication_role = origin")
                    .await
                    .unwrap();
            }
        }
    }

    /// Runs SQL as an ordinary client; returns the database's error message if it refused.
    pub async fn try_execute(&self, sql: &str) -> Result<(), String> {
        let result = match self {
            Backend::Sqlite { path, .. } => {
                let mut conn = sqlite_connection(path).await;
                conn.execute(sql).await.map(|_| ())
            }
            Backend::Postgres { pool, .. } => pool.execute(sql).await.map(|_| ()),
        };
        result.map_err(|e| e.to_string())
    }
}

/// Declares each listed async test function once per backend: `sqlite::name` always,
/// `postgres::name` when a server is configured. The backend (and its database) is dropped
/// when the test ends, however it ends.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = starledger_ledger::testing::Backend::sqlite().await;
                    super::$name(&backend).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(backend) = starledger_ledger::testing::Backend::postgres().await else { return };
                    super::$name(&backend).await;
                }
            )*
        }
    };
}

/// Builders for account commands, so tests read as the flow they exercise.
pub mod flow {
    use crate::account::AccountCommand;
    use crate::commands::{CommandContext, CommandError, Executed, Ledger};
    use crate::events::{Actor, Invoice, PaidStatus, Stars};
    use crate::ids::{IdempotencyKey, PurchaseId, RechargeId, Recipient, UserId, Username};
    use crate::money::{Amount, Currency};
    use chrono::{Duration, Utc};

    pub fn user(id: i64) -> UserId {
        UserId::new(id).unwrap()
    }

    pub fn key(text: &str) -> IdempotencyKey {
        IdempotencyKey::parse(text).unwrap()
    }

    pub fn context(text: &str) -> CommandContext {
        CommandContext::new(key(text), Actor::System)
    }

    pub fn register() -> AccountCommand {
        AccountCommand::Register {
            username: Some("tester".into()),
            language: Some("en".into()),
            currency: Currency::ton(),
        }
    }

    pub fn request_recharge(user: UserId, recharge_key: &str, amount: &str) -> AccountCommand {
        let recharge_id = RechargeId::derive(user, &key(recharge_key));
        AccountCommand::RequestRecharge {
            recharge_id,
            amount: Amount::parse(amount).unwrap(),
            currency: Currency::ton(),
            invoice: Invoice {
                uuid: format!("inv-{recharge_id}"),
                url: format!("https://pay.example/{recharge_id}"),
                expires_at: Utc::now() + Duration::hours(1),
            },
        }
    }

    pub fn settle(user: UserId, recharge_key: &str, paid: &str) -> AccountCommand {
        AccountCommand::SettleRecharge {
            recharge_id: RechargeId::derive(user, &key(recharge_key)),
            status: PaidStatus::Paid,
            paid: Amount::parse(paid).unwrap(),
            txid: None,
        }
    }

    pub fn purchase(user: UserId, purchase_key: &str, price: &str) -> AccountCommand {
        AccountCommand::RequestPurchase {
            purchase_id: PurchaseId::derive(user, &key(purchase_key)),
            stars: Stars::new(50).unwrap(),
            recipient: Recipient::Buyer(Username::parse("buyer_01").unwrap()),
            price: Amount::parse(price).unwrap(),
        }
    }

    /// Registers `user` and credits `amount` through a settled recharge.
    pub async fn funded(
        ledger: &Ledger,
        user: UserId,
        amount: &str,
    ) -> Result<Executed, CommandError> {
        let tag = user.get();
        ledger
            .execute(user, register(), &context(&format!("reg-{tag}")))
            .await?;
        ledger
            .execute(
                user,
                request_recharge(user, "r1", amount),
                &context(&format!("req-{tag}")),
            )
            .await?;
        ledger
            .execute(
                user,
                settle(user, "r1", amount),
                &context(&format!("paid-{tag}")),
            )
            .await
    }
}

/// Reads the whole log and runs the auditor over it.
pub async fn audit(store: &dyn EventStore) -> crate::audit::AuditReport {
    let mut audit = crate::audit::LogAudit::default();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 1_000).await.expect("read log");
        let Some(last) = page.last() else { break };
        after = last.position;
        page.iter().for_each(|event| audit.check(event));
    }
    audit.finish()
}
