//! Client tasks: fleet-wide uids, their node tasks, outcomes, reservations and filters.

use super::*;

/// The columns a [`TaskPersistence`] is read from.
const TASK_COLUMNS: &str = "uid, index_uid, task_type, node_tasks, details, enqueued_at_ms, \
     error, canceled_by, status, started_at_ms, finished_at_ms, outcome, custom_metadata";

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
    /// Run by the control plane itself (an export): starts `enqueued`, and the control
    /// plane decides its status.
    pub decided: bool,
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

impl Store {
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
            .bind(if task.settings_patch.is_some() || task.decided {
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

    /// Tasks of `task_type` the control plane decides that have not finished (`enqueued`
    /// or `processing`) and were enqueued before `before_ms`, by uid.
    pub async fn unfinished_tasks(&self, task_type: &str, before_ms: u64) -> Result<Vec<u32>> {
        let started = Instant::now();
        let result = sqlx::query_scalar::<_, i64>(
            "SELECT uid FROM tasks WHERE task_type = $1 AND status IN ('enqueued', 'processing')
             AND enqueued_at_ms < $2 ORDER BY uid",
        )
        .bind(task_type)
        .bind(before_ms as i64)
        .fetch_all(&self.pool)
        .await
        .map(|uids| uids.into_iter().map(|uid| uid as u32).collect())
        .map_err(|source| ControlPlaneError::Store {
            operation: "unfinished_tasks",
            source,
        });
        self.observe("unfinished_tasks", started, result.is_ok());
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
}
