//! The control plane's durable state: topology versions, the leader lease and tasks.
//!
//! SQLite (`sqlite://PATH`) is the embedded store for a single control plane. A lock file
//! beside the database keeps a second process off the same file. Every call is timed
//! per operation in `miroir_store_operation_duration_seconds`.

mod leases;
mod persistence;
mod settings;
mod tasks;
mod topology;

pub use persistence::{
    ControlPlanePersistence, GatewayPersistence, LeaderLeasePersistence, NodeTaskPersistence,
    SettingsChangePersistence, TaskPersistence, TopologyVersionPersistence,
};
pub use tasks::{NewTask, RESERVED, TaskFilter, TaskPage, TaskStatusUpdate};
pub use topology::IndexRenames;

use crate::error::{ControlPlaneError, Result};
use crate::metrics::Metrics;
use miroir_proto::{FencingToken, TopologyVersion, pb};
use prost::Message;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{Any, Executor, Row, Transaction};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Name of the leader lease row.
const LEADER_LEASE: &str = "leader";

/// The Postgres NOTIFY channel that announces each committed topology version.
pub const TOPOLOGY_CHANNEL: &str = "miroir_topology";

/// `url` without its password, for logs and status.
fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded, one control plane (`sqlite://PATH`).
    Sqlite,
    /// Shared by replicated control planes (`postgres://…`).
    Postgres,
}

/// The Postgres schema (`migrations/postgres/`), embedded in the binary.
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// The SQLite schema (`migrations/sqlite/`), embedded in the binary.
static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

/// Handle to the control plane's database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    description: String,
    metrics: Arc<Metrics>,
    /// Held for the life of the process: a second control plane cannot take it.
    _lock: Option<Arc<File>>,
}

impl Store {
    /// Opens the store named by `url` and applies the schema: `sqlite://PATH` (taking its
    /// single-writer lock) or `postgres://…`.
    pub async fn open(url: &str, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Self::open_postgres(url, metrics).await;
        }
        let Some(rest) = url.strip_prefix("sqlite:") else {
            anyhow::bail!(
                "store {url:?}: expected sqlite://PATH (e.g. sqlite://miroir.db) or postgres://USER@HOST/DB"
            );
        };
        let path = rest.trim_start_matches("//");
        let in_memory = path.is_empty() || path.starts_with(":memory:");
        let lock = if in_memory {
            None
        } else {
            let db_path = PathBuf::from(path.split('?').next().unwrap_or(path));
            if let Some(parent) = db_path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let lock_path = PathBuf::from(format!("{}.lock", db_path.display()));
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)?;
            if file.try_lock().is_err() {
                anyhow::bail!(
                    "another control plane is already using the store {url} (its lock {} is held); \
                     a SQLite store serves exactly one control plane: stop the other process, \
                     or use a postgres:// store for a replicated control plane",
                    lock_path.display()
                );
            }
            Some(Arc::new(file))
        };
        let connect_url = if url.contains("mode=") {
            url.to_owned()
        } else {
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        };
        let pool = AnyPoolOptions::new()
            // One connection for an in-memory database, or every connection would see its own.
            .max_connections(if in_memory { 1 } else { 4 })
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL; a committed topology version must survive power loss, not just
                    // a crash; writers wait for each other rather than fail.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    Ok(())
                })
            })
            .connect(&connect_url)
            .await?;
        SQLITE_MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            backend: Backend::Sqlite,
            description: url.to_owned(),
            metrics,
            _lock: lock,
        })
    }

    async fn open_postgres(url: &str, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        // sqlx takes an advisory lock for the run: replicas booting together apply each
        // migration once.
        POSTGRES_MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            backend: Backend::Postgres,
            description: redact_password(url),
            metrics,
            _lock: None,
        })
    }

    /// The database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What the store is, for logs and status.
    pub fn description(&self) -> &str {
        &self.description
    }

    fn observe(&self, operation: &'static str, started: Instant, ok: bool) {
        self.metrics
            .observe_store_operation(operation, started.elapsed(), ok);
    }

    async fn measured<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = fut.await;
        self.observe(operation, started, result.is_ok());
        result.map_err(|source| ControlPlaneError::Store { operation, source })
    }

    /// Checks, inside a write transaction, that `token` is still the leader's. On Postgres
    /// the lease row is held (`FOR SHARE`) until the transaction ends, so a takeover either
    /// waits for this write or fences it.
    async fn check_fencing(
        &self,
        tx: &mut Transaction<'_, Any>,
        token: FencingToken,
    ) -> Result<()> {
        let sql = match self.backend {
            Backend::Sqlite => "SELECT fencing_token FROM leader_lease WHERE name = $1",
            Backend::Postgres => "SELECT fencing_token FROM leader_lease WHERE name = $1 FOR SHARE",
        };
        let current: Option<i64> = sqlx::query_scalar(sql)
            .bind(LEADER_LEASE)
            .fetch_optional(&mut **tx)
            .await
            .map_err(|source| ControlPlaneError::Store {
                operation: "check_fencing",
                source,
            })?;
        match current {
            Some(current) if current as u64 == token.0 => Ok(()),
            current => Err(ControlPlaneError::Fenced {
                ours: token.0,
                current: current.unwrap_or(0) as u64,
            }),
        }
    }

    /// A write transaction. On SQLite `BEGIN IMMEDIATE` takes the write lock up front: a
    /// deferred transaction that reads (the fencing check) and then writes fails at once
    /// with "database is locked" when another writer got in between, instead of waiting.
    async fn begin(&self, operation: &'static str) -> Result<Transaction<'static, Any>> {
        let pool = self.pool.clone();
        let statement = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        // On its own task: `begin_with` is not cancel-safe. A caller dropped between its
        // BEGIN and its return (a gRPC client that gave up) would leave the pooled
        // connection inside a transaction for good, failing every later `begin` on it
        // ("non-zero transaction depth"). Spawned, it always finishes, and a transaction
        // nobody takes is rolled back when dropped.
        tokio::spawn(async move { pool.begin_with(statement).await })
            .await
            .map_err(|e| ControlPlaneError::Internal(format!("{operation}: {e}")))?
            .map_err(|source| ControlPlaneError::Store { operation, source })
    }

    /// True when the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.measured("ping", async {
            sqlx::query("SELECT 1")
                .fetch_one(&self.pool)
                .await
                .map(|row| {
                    let _: i64 = row.get(0);
                })
        })
        .await
    }
}
