//! Test support (cargo feature `testing`): a fresh SQLite file or PostgreSQL database per
//! test, command builders, and a whole-log audit.
//!
//! PostgreSQL tests run when `TEST_DATABASE_URL` (or `DATABASE_URL`) names a server; each
//! test gets its own database, created from that URL and dropped at the end. Without a URL
//! they print why they are skipped and pass.

use std::str::FromStr;
use std::sync::Arc;

use crate::store::postgres::{self, PostgresStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{CommitMode, EventStore};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};

pub enum Backend {
    Sqlite {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    },
    Postgres {
        server: Box<PgConnectOptions>,
        name: String,
        pool: PgPool,
    },
}

async fn sqlite_connection(path: &std::path::Path) -> sqlx::SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .expect("open the sqlite file")
}

pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .ok()
        .filter(|url| url.starts_with("postgres"))
}

/// Creates an empty database with a fresh name on the server `url` points at. Returns the
/// server's options, the name, and a URL of the new database.
pub async fn create_database(url: &str) -> (PgConnectOptions, String, String) {
    let server = PgConnectOptions::from_str(url).expect("TEST_DATABASE_URL parses");
    let name = format!("starledger_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = server
        .connect()
        .await
        .expect("connect to TEST_DATABASE_URL");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create test database");
    let without_query = url.split('?').next().unwrap_or(url);
    let (server_part, _) = without_query
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL names a database");
    let database_url = format!("{server_part}/{name}");
    (server, name, database_url)
}

/// Drops a database made by [`create_database`], closing whatever still uses it.
pub async fn drop_database(server: &PgConnectOptions, name: &str) {
    if let Ok(mut admin) = server.connect().await {
        let _ = admin
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await;
    }
}

impl Backend {
    pub async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.db");
        Backend::Sqlite { _dir: dir, path }
    }

    /// A fresh, migrated database, or `None` (with a printed reason) when no server is configured.
    pub async fn postgres() -> Option<Backend> {
        let Some(url) = postgres_url() else {
            eprintln!("skipping PostgreSQL test: set TEST_DATABASE_URL=postgres://… to run it");
            return None;
        };
        let (server, name, _) = create_database(&url).await;
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .connect_with(server.clone().database(&name))
            .await
            .expect("connect to test database");
        postgres::migrate(&pool).await.expect("migrate");
        Some(Backend::Postgres {
            server: Box::new(server),
            name,
            pool,
        })
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

    pub async fn cleanup(self) {
        if let Backend::Postgres { server, name, pool } = self {
            pool.close().await;
            drop_database(&server, &name).await;
        }
    }
}

/// Declares each listed async test function once per backend: `sqlite::name` always,
/// `postgres::name` when a server is configured.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = starledger_ledger::testing::Backend::sqlite().await;
                    super::$name(&backend).await;
                    backend.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(backend) = starledger_ledger::testing::Backend::postgres().await else { return };
                    super::$name(&backend).await;
                    backend.cleanup().await;
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
