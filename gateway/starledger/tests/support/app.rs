//! Starting the real `starledger serve` for a black-box test: a database and a Redis key
//! prefix of its own (a SQLite file and in-process caches without `TEST_DATABASE_URL` /
//! `TEST_REDIS_URL`, except under CI, where they must be set), kept across restarts of the
//! app until the test drops them, and the app on a free port of this process.

use std::collections::HashMap;

use actix_web::web;
use starledger_gateway::config::server::ServerConfig;
use starledger_gateway::config::{Config, Env};
use starledger_gateway::serve::Application;
use starledger_http::state::AppState;
use starledger_ledger::testing::{server_url, ScratchDatabase};
use starledger_projections::storage;

/// A database (and Redis prefix) that outlives one run of the app. A PostgreSQL database is
/// dropped when this is, however the test ends.
pub struct Database {
    vars: HashMap<String, String>,
    postgres: Option<ScratchDatabase>,
    _dir: tempfile::TempDir,
}

/// `TEST_REDIS_URL` with a key prefix of this test's own, in the app's variables.
fn redis_vars(vars: &mut HashMap<String, String>) {
    if let Some(redis) = server_url(
        "TEST_REDIS_URL",
        "caches, limits and sessions stay in process",
    ) {
        vars.insert("REDIS_URL".into(), redis);
        vars.insert(
            "CACHE_KEY_PREFIX".into(),
            format!("test_{}", uuid::Uuid::new_v4().simple()),
        );
    }
}

impl Database {
    /// A scratch database on `TEST_DATABASE_URL`'s server, or a SQLite file without one
    /// (under CI a missing server fails the test instead).
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars = HashMap::new();
        let mut postgres = None;
        match server_url("TEST_DATABASE_URL", "this test runs on SQLite") {
            Some(url) => {
                let database = ScratchDatabase::create(&url).await;
                vars.insert("DATABASE_URL".into(), database.url().to_owned());
                postgres = Some(database);
            }
            None => {
                vars.insert(
                    "STARLEDGER_SQLITE_PATH".into(),
                    dir.path().join("ledger.db").display().to_string(),
                );
            }
        }
        redis_vars(&mut vars);
        Self {
            vars,
            postgres,
            _dir: dir,
        }
    }

    /// A database of its own on the PostgreSQL server at `server_url` (a primary a test
    /// started), with the usual Redis prefix; also its name, to find it on a standby.
    pub async fn on_server(server_url: &str) -> (Self, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars = HashMap::new();
        let database = ScratchDatabase::create(server_url).await;
        let name = database.name().to_owned();
        vars.insert("DATABASE_URL".into(), database.url().to_owned());
        redis_vars(&mut vars);
        let database = Self {
            vars,
            postgres: Some(database),
            _dir: dir,
        };
        (database, name)
    }

    /// A backup of this database as it is now, restored into a database of its own (pg_dump
    /// and pg_restore, or SQLite's `VACUUM INTO`), behind the same Redis prefix: what an
    /// operator restoring a backup gets.
    pub async fn backup(&self) -> Database {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars = self.vars.clone();
        let mut postgres = None;
        match &self.postgres {
            Some(source) => {
                let dump = dir.path().join("ledger.dump");
                let dumped = std::process::Command::new("pg_dump")
                    .args(["--format=custom", "--no-owner", "--file"])
                    .arg(&dump)
                    .arg(source.url())
                    .status()
                    .expect("pg_dump runs (package postgresql-client)");
                assert!(dumped.success(), "pg_dump failed");
                let restored_into = ScratchDatabase::create(source.server_url()).await;
                let restored = std::process::Command::new("pg_restore")
                    .args(["--no-owner", "--dbname"])
                    .arg(restored_into.url())
                    .arg(&dump)
                    .status()
                    .expect("pg_restore runs");
                assert!(restored.success(), "pg_restore failed");
                vars.insert("DATABASE_URL".into(), restored_into.url().to_owned());
                postgres = Some(restored_into);
            }
            None => {
                use sqlx::Connection;
                let source = &self.vars["STARLEDGER_SQLITE_PATH"];
                let target = dir.path().join("ledger.db");
                let mut connection = sqlx::SqliteConnection::connect(&format!("sqlite://{source}"))
                    .await
                    .expect("open the SQLite ledger");
                sqlx::query(&format!("VACUUM INTO '{}'", target.display()))
                    .execute(&mut connection)
                    .await
                    .expect("copy the SQLite ledger");
                vars.insert(
                    "STARLEDGER_SQLITE_PATH".into(),
                    target.display().to_string(),
                );
            }
        }
        Database {
            vars,
            postgres,
            _dir: dir,
        }
    }

    /// Drops the database now. Dropping the value does the same (also when a test panics);
    /// this only says so where a test ends.
    pub async fn drop_database(self) {
        drop(self);
    }
}

/// A running app.
pub struct Running {
    pub base: String,
    pub state: web::Data<AppState>,
    pub handle: actix_web::dev::ServerHandle,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Migrates `database` and starts `serve` on it with `settings` (on top of the database's
/// own and of a local, sandboxed default: loopback, a free port, two workers, the sandbox
/// Heleket).
pub async fn launch(database: &Database, settings: &[(&str, String)]) -> Running {
    try_launch(database, settings)
        .await
        .expect("the app starts")
}

/// Starts the app, or says why it would not start.
pub async fn try_launch(
    database: &Database,
    settings: &[(&str, String)],
) -> Result<Running, starledger_gateway::serve::StartError> {
    let mut vars = database.vars.clone();
    for (name, value) in [
        ("WEBHOOK_HOST", "127.0.0.1"),
        ("WEBHOOK_PORT", "0"),
        ("HTTP_WORKERS", "2"),
        ("HELEKET_MODE", "sandbox"),
        ("DATABASE_POOL_SIZE", "8"),
    ] {
        vars.insert(name.into(), value.into());
    }
    for (name, value) in settings {
        vars.insert((*name).into(), value.clone());
    }
    // A test on a Redis Cluster or Sentinel: instead of the plain Redis, not beside it.
    if vars.contains_key("REDIS_CLUSTER_NODES") || vars.contains_key("REDIS_SENTINELS") {
        vars.remove("REDIS_URL");
    }
    let env = Env(move |name: &str| vars.get(name).cloned());
    let config = Config::from_env(&env).expect("test config");
    let server_config = ServerConfig::from_env(&env).expect("test server config");
    storage::migrate(&config.storage).await.expect("migrate");
    let app = Application::build(config, server_config).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let state = app.state();
    let server = tokio::spawn(app.run_until_stopped());
    Ok(Running {
        base,
        state,
        handle,
        server,
    })
}
