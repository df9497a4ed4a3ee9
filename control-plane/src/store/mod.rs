//! The control plane's durable state: topology versions, the leader lease and tasks.
//!
//! SQLite (`sqlite://PATH`) is the embedded store for a single control plane. A lock file
//! beside the database keeps a second process off the same file. Every call is timed
//! per operation in `miroir_store_operation_duration_seconds`.

mod persistence;

pub use persistence::{
    ControlPlanePersistence, GatewayPersistence, LeaderLeasePersistence, NodeTaskPersistence,
    SettingsChangePersistence, TaskPersistence, TopologyVersionPersistence,
};

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

/// The columns a [`TaskPersistence`] is read from.
const TASK_COLUMNS: &str = "uid, index_uid, task_type, node_tasks, details, enqueued_at_ms, \
     error, canceled_by, status, started_at_ms, finished_at_ms, outcome, custom_metadata";

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

/// Name of the leader lease row.
const LEADER_LEASE: &str = "leader";

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

/// Filters for [`Store::list_tasks`].
#[derive(Debug, Default)]
pub struct TaskFilter {
    /// Largest uid to return (smallest when `reverse`).
    pub from: Option<u32>,
    /// At most this many.
    pub limit: u32,
    /// Only these index uids, when not empty.
    pub index_uids: Vec<String>,
    /// Only these task types, when not empty.
    pub task_types: Vec<String>,
    /// Only these uids, when not empty.
    pub uids: Vec<u32>,
    /// Oldest first.
    pub reverse: bool,
    /// Only tasks targeted by these `taskCancelation` tasks, when not empty (of those
    /// with a recorded outcome, the canceled ones).
    pub canceled_by: Vec<u32>,
    /// Only tasks enqueued strictly after this time (ms since the epoch).
    pub after_enqueued_at_ms: Option<u64>,
    /// Only tasks enqueued strictly before this time.
    pub before_enqueued_at_ms: Option<u64>,
    /// When not empty: tasks whose recorded outcome has one of these statuses, and tasks
    /// with none recorded.
    pub statuses: Vec<String>,
    /// Start and finish windows (strict bounds, ms since the epoch) on recorded outcomes;
    /// tasks with none recorded (or recorded without times) pass.
    pub started: (Option<u64>, Option<u64>),
    pub finished: (Option<u64>, Option<u64>),
    /// Only tasks these filters cannot decide: no recorded outcome (or, with a start or
    /// finish window, none with times).
    pub unrecorded_only: bool,
}

impl TaskFilter {
    /// Whether some filter applies to recorded outcomes (the rest pass, undecided). Tasks
    /// targeted by a cancelation match `canceled_by` only if they ended canceled.
    fn on_outcomes(&self) -> bool {
        !self.statuses.is_empty() || !self.canceled_by.is_empty() || self.has_windows()
    }

    fn has_windows(&self) -> bool {
        self.started != (None, None) || self.finished != (None, None)
    }

    /// The tasks these filters cannot decide here.
    fn undecided(&self) -> &'static str {
        if self.has_windows() {
            "(outcome_status IS NULL OR outcome_finished_ms IS NULL)"
        } else {
            "outcome_status IS NULL"
        }
    }
}

/// A page of [`Store::list_tasks`].
#[derive(Debug)]
pub struct TaskPage {
    pub rows: Vec<TaskPersistence>,
    /// More tasks follow.
    pub more: bool,
    /// Tasks matching the filter in all.
    pub total: u64,
    /// Of those, tasks the filters on outcomes cannot decide (counted when `statuses`,
    /// `canceled_by` or a start or finish window is set).
    pub unrecorded: u64,
}

/// A value bound into a task query.
enum TaskBind<'a> {
    Text(&'a str),
    Int(i64),
}

/// Index renames committed with a topology version (see [`Store::commit_topology`]).
#[derive(Debug, Default)]
pub struct IndexRenames {
    /// Old uid → new uid, applied all at once.
    pub pairs: Vec<(String, String)>,
    /// The first task uid left as it is (the renaming task's own).
    pub keep_task: Option<u32>,
}

/// A new task to record.
#[derive(Debug)]
pub struct NewTask {
    /// Index the task is about.
    pub index_uid: Option<String>,
    /// Meilisearch task type.
    pub task_type: String,
    /// JSON array of node tasks.
    pub node_tasks_json: String,
    /// JSON details object.
    pub details_json: String,
    /// Enqueue time.
    pub enqueued_at_ms: u64,
    /// Error JSON when the task failed outside the nodes, else empty.
    pub error_json: String,
    /// Tasks this one (a `taskCancelation`) cancels.
    pub cancels: Vec<u32>,
    /// For a settings change: the client's settings object (JSON), queued for the
    /// two-phase commit in the same transaction; the task starts `enqueued`.
    pub settings_patch: Option<String>,
    /// The client's `customMetadata`.
    pub custom_metadata: Option<String>,
    /// Recorded before its nodes are written: status `reserved` until
    /// [`Store::attach_node_tasks`].
    pub reserve: bool,
}

/// Status of a task whose uid was reserved before its nodes were written, until its node
/// tasks are attached.
pub const RESERVED: &str = "reserved";

/// The outcome of a task the control plane decides.
#[derive(Debug, Clone, Copy)]
pub struct TaskStatusUpdate<'a> {
    /// "processing", "succeeded" or "failed".
    pub status: &'a str,
    /// When it started (ms since the Unix epoch), 0 if not yet.
    pub started_at_ms: u64,
    /// When it finished, 0 if not yet.
    pub finished_at_ms: u64,
    /// A Meilisearch error object as JSON, or empty.
    pub error_json: &'a str,
}

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

    /// Takes the leader lease for `holder`, bumping the fencing token: always when `force`
    /// (SQLite, where the process holding the file lock leads), otherwise only when no one
    /// holds it or the holder's lease has expired (`None` then).
    pub async fn take_leader_lease(
        &self,
        holder: &str,
        holder_address: &str,
        ttl: Duration,
        now_ms: u64,
        force: bool,
    ) -> Result<Option<LeaderLeasePersistence>> {
        let condition = if force {
            ""
        } else {
            " WHERE leader_lease.expires_at_ms < excluded.acquired_at_ms"
        };
        let sql = format!(
            "INSERT INTO leader_lease (name, holder, holder_address, fencing_token, acquired_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, 1, $4, $5)
             ON CONFLICT (name) DO UPDATE SET
                 holder = excluded.holder,
                 holder_address = excluded.holder_address,
                 fencing_token = leader_lease.fencing_token + 1,
                 acquired_at_ms = excluded.acquired_at_ms,
                 expires_at_ms = excluded.expires_at_ms{condition}
             RETURNING name, holder, holder_address, fencing_token, acquired_at_ms, expires_at_ms"
        );
        self.measured("take_leader_lease", async {
            sqlx::query_as::<_, LeaderLeasePersistence>(&sql)
                .bind(LEADER_LEASE)
                .bind(holder)
                .bind(holder_address)
                .bind(now_ms as i64)
                .bind(
                    now_ms
                        .saturating_add(ttl.as_millis() as u64)
                        .min(i64::MAX as u64) as i64,
                )
                .fetch_optional(&self.pool)
                .await
        })
        .await
    }

    /// Extends the lease held with `token`; false when it is no longer ours.
    pub async fn renew_leader_lease(
        &self,
        token: FencingToken,
        ttl: Duration,
        now_ms: u64,
    ) -> Result<bool> {
        let renewed = self
            .measured("renew_leader_lease", async {
                sqlx::query(
                    "UPDATE leader_lease SET expires_at_ms = $1
                     WHERE name = $2 AND fencing_token = $3 AND expires_at_ms >= $4",
                )
                .bind(now_ms.saturating_add(ttl.as_millis() as u64) as i64)
                .bind(LEADER_LEASE)
                .bind(token.0 as i64)
                .bind(now_ms as i64)
                .execute(&self.pool)
                .await
            })
            .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Records that control plane `id` (at `address`) is alive now.
    pub async fn record_control_plane(&self, id: &str, address: &str, now_ms: u64) -> Result<()> {
        self.measured("record_control_plane", async {
            sqlx::query(
                "INSERT INTO control_planes (id, address, last_seen_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET address = excluded.address,
                     last_seen_ms = excluded.last_seen_ms",
            )
            .bind(id)
            .bind(address)
            .bind(now_ms as i64)
            .execute(&self.pool)
            .await
            .map(|_| ())
        })
        .await
    }

    /// Control planes seen since `since_ms`, by id.
    pub async fn control_planes(&self, since_ms: u64) -> Result<Vec<ControlPlanePersistence>> {
        self.measured("control_planes", async {
            sqlx::query_as::<_, ControlPlanePersistence>(
                "SELECT id, address, last_seen_ms FROM control_planes
                 WHERE last_seen_ms >= $1 ORDER BY id",
            )
            .bind(since_ms as i64)
            .fetch_all(&self.pool)
            .await
        })
        .await
    }

    /// Records gateways as this control plane sees them; a row only moves forward in time
    /// (another replica may have seen the same gateway more recently).
    pub async fn record_gateways(&self, gateways: &[GatewayPersistence]) -> Result<()> {
        if gateways.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let result = async {
            let map = |source| ControlPlaneError::Store {
                operation: "record_gateways",
                source,
            };
            let mut tx = self.pool.begin().await.map_err(map)?;
            for gateway in gateways {
                sqlx::query(
                    "INSERT INTO gateways (id, address, applied_version, last_seen_ms)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET address = excluded.address,
                         applied_version = excluded.applied_version,
                         last_seen_ms = excluded.last_seen_ms
                     WHERE excluded.last_seen_ms >= gateways.last_seen_ms",
                )
                .bind(&gateway.id)
                .bind(&gateway.address)
                .bind(gateway.applied_version)
                .bind(gateway.last_seen_ms)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
            }
            tx.commit().await.map_err(map)
        }
        .await;
        self.observe("record_gateways", started, result.is_ok());
        result
    }

    /// Gateways any control plane saw since `since_ms`.
    pub async fn gateways_seen(&self, since_ms: u64) -> Result<Vec<GatewayPersistence>> {
        self.measured("gateways_seen", async {
            sqlx::query_as::<_, GatewayPersistence>(
                "SELECT id, address, applied_version, last_seen_ms FROM gateways
                 WHERE last_seen_ms >= $1 ORDER BY id",
            )
            .bind(since_ms as i64)
            .fetch_all(&self.pool)
            .await
        })
        .await
    }

    /// The lease as stored, if anyone ever took it.
    pub async fn leader_lease(&self) -> Result<Option<LeaderLeasePersistence>> {
        self.measured("leader_lease", async {
            sqlx::query_as::<_, LeaderLeasePersistence>(
                "SELECT name, holder, holder_address, fencing_token, acquired_at_ms, expires_at_ms
                 FROM leader_lease WHERE name = $1",
            )
            .bind(LEADER_LEASE)
            .fetch_optional(&self.pool)
            .await
        })
        .await
    }

    /// The newest committed topology, if any.
    pub async fn load_latest_topology(&self) -> Result<Option<pb::Topology>> {
        let row = self
            .measured("load_latest_topology", async {
                sqlx::query_as::<_, TopologyVersionPersistence>(
                    "SELECT version, committed_at_ms, reason, snapshot FROM topology_versions
                     ORDER BY version DESC LIMIT 1",
                )
                .fetch_optional(&self.pool)
                .await
            })
            .await?;
        row.map(|row| row.decode()).transpose()
    }

    /// Committed versions in `(after, up_to]`, oldest first (those still retained).
    pub async fn load_topology_versions(
        &self,
        after: TopologyVersion,
        up_to: TopologyVersion,
    ) -> Result<Vec<pb::Topology>> {
        let rows = self
            .measured("load_topology_versions", async {
                sqlx::query_as::<_, TopologyVersionPersistence>(
                    "SELECT version, committed_at_ms, reason, snapshot FROM topology_versions
                     WHERE version > $1 AND version <= $2 ORDER BY version",
                )
                .bind(after.0 as i64)
                .bind(up_to.0 as i64)
                .fetch_all(&self.pool)
                .await
            })
            .await?;
        rows.into_iter().map(|row| row.decode()).collect()
    }

    /// Commits a new topology version, if `token` still leads; keeps the newest `retain`.
    /// `renames` (old uid → new uid, all at once: a swap names both ways) rewrites the
    /// index the recorded tasks and queued settings changes name, in the same
    /// transaction, as Meilisearch rewrites its task history; tasks from `keep_task` on
    /// keep theirs (the rename's own task names the old uid).
    pub async fn commit_topology(
        &self,
        token: FencingToken,
        topology: &pb::Topology,
        retain: u64,
        renames: &IndexRenames,
    ) -> Result<()> {
        let started = Instant::now();
        let result = async {
            let mut tx = self.begin("commit_topology").await?;
            self.check_fencing(&mut tx, token).await?;
            let map = |source| ControlPlaneError::Store {
                operation: "commit_topology",
                source,
            };
            // Each pair through a name no index can have, so that a swap's two renames
            // do not meet.
            for step in 0..2 {
                for (i, (old, new)) in renames.pairs.iter().enumerate() {
                    // `~` is in no index uid.
                    let parked = format!("~miroir-rename-{i}");
                    let (from, to) = if step == 0 {
                        (old.as_str(), parked.as_str())
                    } else {
                        (parked.as_str(), new.as_str())
                    };
                    let (quoted_from, quoted_to) = (
                        format!("\"indexUid\":{}", serde_json::Value::from(from)),
                        format!("\"indexUid\":{}", serde_json::Value::from(to)),
                    );
                    sqlx::query(
                        "UPDATE tasks SET index_uid = $1,
                             outcome = replace(outcome, $2, $3)
                         WHERE index_uid = $4 AND uid < $5",
                    )
                    .bind(to)
                    .bind(&quoted_from)
                    .bind(&quoted_to)
                    .bind(from)
                    .bind(renames.keep_task.map_or(i64::MAX, i64::from))
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
                    sqlx::query("UPDATE settings_changes SET index_uid = $1 WHERE index_uid = $2")
                        .bind(to)
                        .bind(from)
                        .execute(&mut *tx)
                        .await
                        .map_err(map)?;
                }
            }
            sqlx::query(
                "INSERT INTO topology_versions (version, committed_at_ms, reason, snapshot)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(topology.version as i64)
            .bind(topology.committed_at_ms as i64)
            .bind(&topology.reason)
            .bind(topology.encode_to_vec())
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            sqlx::query("DELETE FROM topology_versions WHERE version <= $1")
                .bind(topology.version as i64 - retain as i64)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
            if self.backend == Backend::Postgres {
                // Delivered at commit: followers load the new version at once.
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(TOPOLOGY_CHANNEL)
                    .bind(topology.version.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
            }
            tx.commit().await.map_err(map)
        }
        .await;
        self.observe("commit_topology", started, result.is_ok());
        result
    }

    /// A write transaction. On SQLite `BEGIN IMMEDIATE` takes the write lock up front: a
    /// deferred transaction that reads (the fencing check) and then writes fails at once
    /// with "database is locked" when another writer got in between, instead of waiting.
    async fn begin(&self, operation: &'static str) -> Result<Transaction<'static, Any>> {
        self.pool
            .begin_with(match self.backend {
                Backend::Sqlite => "BEGIN IMMEDIATE",
                Backend::Postgres => "BEGIN",
            })
            .await
            .map_err(|source| ControlPlaneError::Store { operation, source })
    }

    /// Allocates the next task uid and records the task, if `token` still leads.
    pub async fn create_task(&self, token: FencingToken, task: NewTask) -> Result<TaskPersistence> {
        let started = Instant::now();
        let result = async {
            let mut tx = self.begin("create_task").await?;
            self.check_fencing(&mut tx, token).await?;
            let map = |source| ControlPlaneError::Store {
                operation: "create_task",
                source,
            };
            let uid: i64 = sqlx::query_scalar(
                "UPDATE sequences SET next = next + 1 WHERE name = 'task_uid' RETURNING next - 1",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
            if uid >= i64::from(miroir_proto::TaskUid::LIMIT) {
                return Err(ControlPlaneError::ResourceExhausted(
                    "task uids are exhausted (they stay below 2^31)".into(),
                ));
            }
            let row = sqlx::query_as::<_, TaskPersistence>(&format!(
                "INSERT INTO tasks (uid, index_uid, task_type, node_tasks, details, enqueued_at_ms, error, status, custom_metadata)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 RETURNING {TASK_COLUMNS}"
            ))
            .bind(uid)
            .bind(&task.index_uid)
            .bind(&task.task_type)
            .bind(&task.node_tasks_json)
            .bind(&task.details_json)
            .bind(task.enqueued_at_ms as i64)
            .bind(&task.error_json)
            .bind(if task.settings_patch.is_some() {
                Some("enqueued")
            } else if task.reserve {
                Some(RESERVED)
            } else {
                None
            })
            .bind(&task.custom_metadata)
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
            if let Some(patch) = &task.settings_patch {
                sqlx::query(
                    "INSERT INTO settings_changes (index_uid, task_uid, patch, created_at_ms)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&task.index_uid)
                .bind(uid)
                .bind(patch)
                .bind(task.enqueued_at_ms as i64)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
            }
            for target in &task.cancels {
                sqlx::query("UPDATE tasks SET canceled_by = $1 WHERE uid = $2")
                    .bind(uid)
                    .bind(i64::from(*target))
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
            }
            tx.commit().await.map_err(map)?;
            Ok(row)
        }
        .await;
        self.observe("create_task", started, result.is_ok());
        result
    }

    /// One task by uid.
    pub async fn get_task(&self, uid: u32) -> Result<Option<TaskPersistence>> {
        self.measured("get_task", async {
            sqlx::query_as::<_, TaskPersistence>(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE uid = $1"
            ))
            .bind(i64::from(uid))
            .fetch_optional(&self.pool)
            .await
        })
        .await
    }

    /// `AND …` conditions for the filter's sets (not `from`), and the values to bind; the
    /// placeholders are numbered from `first`.
    fn task_conditions(filter: &TaskFilter, first: usize) -> (String, Vec<TaskBind<'_>>) {
        let mut sql = String::new();
        let mut binds: Vec<TaskBind<'_>> = Vec::new();
        let mut next = first;
        let mut placeholders = |n: usize| {
            let list = (next..next + n)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            next += n;
            list
        };
        if !filter.index_uids.is_empty() {
            let list = placeholders(filter.index_uids.len());
            sql.push_str(&format!(" AND index_uid IN ({list})"));
            binds.extend(filter.index_uids.iter().map(|u| TaskBind::Text(u)));
        }
        if !filter.task_types.is_empty() {
            let list = placeholders(filter.task_types.len());
            sql.push_str(&format!(" AND task_type IN ({list})"));
            binds.extend(filter.task_types.iter().map(|t| TaskBind::Text(t)));
        }
        if !filter.uids.is_empty() {
            let list = placeholders(filter.uids.len());
            sql.push_str(&format!(" AND uid IN ({list})"));
            binds.extend(filter.uids.iter().map(|u| TaskBind::Int(i64::from(*u))));
        }
        if !filter.canceled_by.is_empty() {
            let list = placeholders(filter.canceled_by.len());
            sql.push_str(&format!(" AND canceled_by IN ({list})"));
            binds.extend(
                filter
                    .canceled_by
                    .iter()
                    .map(|u| TaskBind::Int(i64::from(*u))),
            );
        }
        if let Some(after) = filter.after_enqueued_at_ms {
            sql.push_str(&format!(" AND enqueued_at_ms > {}", placeholders(1)));
            binds.push(TaskBind::Int(after as i64));
        }
        if let Some(before) = filter.before_enqueued_at_ms {
            sql.push_str(&format!(" AND enqueued_at_ms < {}", placeholders(1)));
            binds.push(TaskBind::Int(before as i64));
        }
        if filter.on_outcomes() {
            // Recorded outcomes are filtered; the undecided pass, for the caller to check.
            // Never empty: some filter on outcomes is set, and a set window has a bound.
            let mut decided = Vec::new();
            if !filter.statuses.is_empty() {
                let list = placeholders(filter.statuses.len());
                decided.push(format!("outcome_status IN ({list})"));
                binds.extend(filter.statuses.iter().map(|s| TaskBind::Text(s)));
            }
            if !filter.canceled_by.is_empty() {
                decided.push("outcome_status = 'canceled'".to_owned());
            }
            for (column, (after, before)) in [
                ("outcome_started_ms", filter.started),
                ("outcome_finished_ms", filter.finished),
            ] {
                for (bound, op) in [(after, ">"), (before, "<")] {
                    if let Some(bound) = bound {
                        decided.push(format!("{column} {op} {}", placeholders(1)));
                        binds.push(TaskBind::Int(bound as i64));
                    }
                }
            }
            sql.push_str(&format!(
                " AND ({} OR ({}))",
                filter.undecided(),
                decided.join(" AND ")
            ));
        }
        if filter.unrecorded_only {
            sql.push_str(&format!(" AND {}", filter.undecided()));
        }
        (sql, binds)
    }

    /// A page of tasks matching `filter`, whether more follow, and how many match in all.
    pub async fn list_tasks(&self, filter: &TaskFilter) -> Result<TaskPage> {
        // `$1` is `from` when set; the filter's values follow, then the limit.
        let first = 1 + usize::from(filter.from.is_some());
        let (conditions, binds) = Self::task_conditions(filter, first);
        let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1");
        if filter.from.is_some() {
            sql.push_str(if filter.reverse {
                " AND uid >= $1"
            } else {
                " AND uid <= $1"
            });
        }
        sql.push_str(&conditions);
        let limit_at = first + binds.len();
        sql.push_str(&if filter.reverse {
            format!(" ORDER BY uid ASC LIMIT ${limit_at}")
        } else {
            format!(" ORDER BY uid DESC LIMIT ${limit_at}")
        });
        let limit = filter.limit.max(1);
        let rows = self
            .measured("list_tasks", async {
                let mut query = sqlx::query_as::<_, TaskPersistence>(&sql);
                if let Some(from) = filter.from {
                    query = query.bind(i64::from(from));
                }
                for bind in &binds {
                    query = match bind {
                        TaskBind::Text(t) => query.bind(*t),
                        TaskBind::Int(i) => query.bind(*i),
                    };
                }
                query.bind(i64::from(limit) + 1).fetch_all(&self.pool).await
            })
            .await?;
        let (count_conditions, _) = Self::task_conditions(filter, 1);
        let count_sql = format!("SELECT COUNT(*) FROM tasks WHERE 1 = 1{count_conditions}");
        let total = self.count_tasks("count_tasks", &count_sql, &binds).await?;
        let unrecorded = if !filter.on_outcomes() {
            0
        } else {
            let sql = format!("{count_sql} AND {}", filter.undecided());
            self.count_tasks("count_unrecorded_tasks", &sql, &binds)
                .await?
        };
        let more = rows.len() > limit as usize;
        Ok(TaskPage {
            rows: rows.into_iter().take(limit as usize).collect(),
            more,
            total,
            unrecorded,
        })
    }

    /// Runs a `SELECT COUNT(*)` over tasks with `binds` in order, measured as `operation`.
    async fn count_tasks(
        &self,
        operation: &'static str,
        sql: &str,
        binds: &[TaskBind<'_>],
    ) -> Result<u64> {
        let count: i64 = self
            .measured(operation, async {
                let mut query = sqlx::query_scalar::<_, i64>(sql);
                for bind in binds {
                    query = match bind {
                        TaskBind::Text(t) => query.bind(*t),
                        TaskBind::Int(i) => query.bind(*i),
                    };
                }
                query.fetch_one(&self.pool).await
            })
            .await?;
        Ok(count as u64)
    }

    /// Deletes the tasks `uids`, if `token` still leads; returns how many existed.
    pub async fn delete_tasks(&self, token: FencingToken, uids: &[u32]) -> Result<u64> {
        let started = Instant::now();
        let result = async {
            let mut tx = self.begin("delete_tasks").await?;
            self.check_fencing(&mut tx, token).await?;
            let map = |source| ControlPlaneError::Store {
                operation: "delete_tasks",
                source,
            };
            let mut deleted = 0;
            for uid in uids {
                deleted += sqlx::query("DELETE FROM tasks WHERE uid = $1")
                    .bind(i64::from(*uid))
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?
                    .rows_affected();
            }
            tx.commit().await.map_err(map)?;
            Ok(deleted)
        }
        .await;
        self.observe("delete_tasks", started, result.is_ok());
        result
    }

    /// Records a finished task's view `outcome` (JSON) unless one is recorded, if `token`
    /// still leads; whether it was recorded now.
    pub async fn record_task_outcome(
        &self,
        token: FencingToken,
        uid: u32,
        outcome: &str,
        status: &str,
        (started_ms, finished_ms): (Option<u64>, Option<u64>),
    ) -> Result<bool> {
        let started = Instant::now();
        let result = async {
            let mut tx = self.begin("record_task_outcome").await?;
            self.check_fencing(&mut tx, token).await?;
            let map = |source| ControlPlaneError::Store {
                operation: "record_task_outcome",
                source,
            };
            let recorded = sqlx::query(
                "UPDATE tasks SET outcome = $1, outcome_status = $2,
                 outcome_started_ms = $3, outcome_finished_ms = $4
                 WHERE uid = $5 AND outcome IS NULL",
            )
            .bind(outcome)
            .bind(status)
            .bind(started_ms.map(|ms| ms as i64))
            .bind(finished_ms.map(|ms| ms as i64))
            .bind(i64::from(uid))
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
            tx.commit().await.map_err(map)?;
            Ok(recorded == 1)
        }
        .await;
        self.observe("record_task_outcome", started, result.is_ok());
        result
    }

    /// Gives reserved task `uid` its node tasks (JSON) and error (JSON, or empty), if
    /// `token` still leads; the task as it is then (unchanged when it was no longer
    /// reserved: attached already, or expired), `None` when there is no such task.
    pub async fn attach_node_tasks(
        &self,
        token: FencingToken,
        uid: u32,
        node_tasks_json: &str,
        error_json: &str,
    ) -> Result<Option<TaskPersistence>> {
        let started = Instant::now();
        let result = async {
            let mut tx = self.begin("attach_node_tasks").await?;
            self.check_fencing(&mut tx, token).await?;
            let map = |source| ControlPlaneError::Store {
                operation: "attach_node_tasks",
                source,
            };
            sqlx::query(
                "UPDATE tasks SET node_tasks = $1, error = $2, status = NULL
                 WHERE uid = $3 AND status = $4",
            )
            .bind(node_tasks_json)
            .bind(error_json)
            .bind(i64::from(uid))
            .bind(RESERVED)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            let row = sqlx::query_as::<_, TaskPersistence>(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE uid = $1"
            ))
            .bind(i64::from(uid))
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?;
            tx.commit().await.map_err(map)?;
            Ok(row)
        }
        .await;
        self.observe("attach_node_tasks", started, result.is_ok());
        result
    }

    /// Fails the tasks reserved before `enqueued_before_ms` and never attached (their
    /// gateway stopped between reserving and attaching), if `token` still leads; how many.
    pub async fn expire_reservations(
        &self,
        token: FencingToken,
        enqueued_before_ms: u64,
        error_json: &str,
        now_ms: u64,
    ) -> Result<u64> {
        let started = Instant::now();
        let result = async {
            let mut tx = self.begin("expire_reservations").await?;
            self.check_fencing(&mut tx, token).await?;
            let map = |source| ControlPlaneError::Store {
                operation: "expire_reservations",
                source,
            };
            let expired = sqlx::query(
                "UPDATE tasks SET status = 'failed', error = $1, finished_at_ms = $2
                 WHERE status = $3 AND enqueued_at_ms < $4",
            )
            .bind(error_json)
            .bind(now_ms as i64)
            .bind(RESERVED)
            .bind(enqueued_before_ms as i64)
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
            tx.commit().await.map_err(map)?;
            Ok(expired)
        }
        .await;
        self.observe("expire_reservations", started, result.is_ok());
        result
    }

    /// Sets the outcome of a task the control plane decides, if `token` still leads.
    pub async fn set_task_status(
        &self,
        token: FencingToken,
        uid: u32,
        status: TaskStatusUpdate<'_>,
    ) -> Result<()> {
        let started = Instant::now();
        let result = async {
            let mut tx = self.begin("set_task_status").await?;
            self.check_fencing(&mut tx, token).await?;
            let map = |source| ControlPlaneError::Store {
                operation: "set_task_status",
                source,
            };
            sqlx::query(
                "UPDATE tasks SET status = $1, started_at_ms = $2, finished_at_ms = $3, error = $4
                 WHERE uid = $5",
            )
            .bind(status.status)
            .bind(status.started_at_ms as i64)
            .bind(status.finished_at_ms as i64)
            .bind(status.error_json)
            .bind(i64::from(uid))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            tx.commit().await.map_err(map)
        }
        .await;
        self.observe("set_task_status", started, result.is_ok());
        result
    }

    /// Queues a settings change with no client task (Miroir's own), if `token` still
    /// leads; returns its id.
    pub async fn enqueue_settings_change(
        &self,
        token: FencingToken,
        index_uid: &str,
        patch: &str,
        now_ms: u64,
    ) -> Result<i64> {
        let started = Instant::now();
        let result = async {
            let mut tx = self.begin("enqueue_settings_change").await?;
            self.check_fencing(&mut tx, token).await?;
            let map = |source| ControlPlaneError::Store {
                operation: "enqueue_settings_change",
                source,
            };
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO settings_changes (index_uid, task_uid, patch, created_at_ms)
                 VALUES ($1, NULL, $2, $3) RETURNING id",
            )
            .bind(index_uid)
            .bind(patch)
            .bind(now_ms as i64)
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
            tx.commit().await.map_err(map)?;
            Ok(id)
        }
        .await;
        self.observe("enqueue_settings_change", started, result.is_ok());
        result
    }

    /// Queued settings changes, oldest first.
    pub async fn settings_changes(&self) -> Result<Vec<SettingsChangePersistence>> {
        self.measured("settings_changes", async {
            sqlx::query_as::<_, SettingsChangePersistence>(
                "SELECT id, index_uid, task_uid, patch, created_at_ms FROM settings_changes
                 ORDER BY id",
            )
            .fetch_all(&self.pool)
            .await
        })
        .await
    }

    /// Forgets a settings change that committed or failed, if `token` still leads.
    pub async fn delete_settings_change(&self, token: FencingToken, id: i64) -> Result<()> {
        let started = Instant::now();
        let result = async {
            let mut tx = self.begin("delete_settings_change").await?;
            self.check_fencing(&mut tx, token).await?;
            let map = |source| ControlPlaneError::Store {
                operation: "delete_settings_change",
                source,
            };
            sqlx::query("DELETE FROM settings_changes WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
            tx.commit().await.map_err(map)
        }
        .await;
        self.observe("delete_settings_change", started, result.is_ok());
        result
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
