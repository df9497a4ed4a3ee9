//! The node: indexes, and the asynchronous task queue that changes them, as Meilisearch
//! does (every write is enqueued, answered with 202, then processed in order).

use super::error::NodeError;
use super::index::Index;
use super::search::parse_filter;
use super::time;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// What a task does when processed.
#[derive(Debug, Clone)]
pub enum TaskOp {
    /// `POST /indexes`.
    CreateIndex { primary_key: Option<String> },
    /// `PATCH /indexes/{uid}`.
    UpdateIndex { primary_key: Option<String> },
    /// `DELETE /indexes/{uid}`.
    DeleteIndex,
    /// `POST`/`PUT …/documents`.
    AddDocuments {
        documents: Vec<Value>,
        primary_key: Option<String>,
        merge: bool,
    },
    /// `DELETE …/documents/{id}`, `POST …/delete-batch`.
    DeleteIds(Vec<String>),
    /// `POST …/documents/delete`.
    DeleteByFilter(Value),
    /// `DELETE …/documents`.
    Clear,
    /// Settings update (`null` values reset).
    Settings(Map<String, Value>),
    /// `POST /swap-indexes`.
    Swap(Vec<(String, String)>),
    /// `POST /dumps`: no file here, only the dump's uid.
    Dump,
    /// `POST /indexes/{uid}/compact`: nothing to compact in memory; the index must exist.
    Compact,
    /// Cancelation or deletion of other tasks (done at enqueue time here).
    Nothing,
}

/// A task, as stored.
#[derive(Debug, Clone)]
pub struct Task {
    /// Task uid.
    pub uid: u64,
    /// Index it is about.
    pub index_uid: Option<String>,
    /// `enqueued`, `processing`, `succeeded`, `failed`, `canceled`.
    pub status: &'static str,
    /// Meilisearch task type.
    pub kind: &'static str,
    /// `details` object.
    pub details: Option<Map<String, Value>>,
    /// Error, if failed.
    pub error: Option<Value>,
    /// Uid of the task that canceled it.
    pub canceled_by: Option<u64>,
    /// RFC 3339 times.
    pub enqueued_at: String,
    /// When processing started.
    pub started_at: Option<String>,
    /// When processing finished.
    pub finished_at: Option<String>,
    /// ISO 8601 duration.
    pub duration: Option<String>,
    op: TaskOp,
}

impl Task {
    /// The summarized view returned on enqueue.
    pub fn summary(&self) -> Value {
        json!({
            "taskUid": self.uid,
            "indexUid": self.index_uid,
            "status": self.status,
            "type": self.kind,
            "enqueuedAt": self.enqueued_at,
        })
    }

    /// The full view (`GET /tasks/{uid}`).
    pub fn view(&self) -> Value {
        let mut view = Map::new();
        view.insert("uid".into(), json!(self.uid));
        view.insert(
            "batchUid".into(),
            if self.started_at.is_some() {
                json!(self.uid)
            } else {
                Value::Null
            },
        );
        view.insert("indexUid".into(), json!(self.index_uid));
        view.insert("status".into(), json!(self.status));
        view.insert("type".into(), json!(self.kind));
        view.insert("canceledBy".into(), json!(self.canceled_by));
        if let Some(details) = &self.details {
            view.insert("details".into(), Value::Object(details.clone()));
        }
        view.insert("error".into(), self.error.clone().unwrap_or(Value::Null));
        view.insert("duration".into(), json!(self.duration));
        view.insert("enqueuedAt".into(), json!(self.enqueued_at));
        view.insert("startedAt".into(), json!(self.started_at));
        view.insert("finishedAt".into(), json!(self.finished_at));
        Value::Object(view)
    }
}

/// Everything the node holds.
#[derive(Default)]
pub struct NodeState {
    /// Indexes by uid.
    pub indexes: BTreeMap<String, Index>,
    /// Tasks by uid.
    pub tasks: BTreeMap<u64, Task>,
    next_task: u64,
    /// When the last task finished.
    pub last_update: Option<String>,
    /// The experimental features turned on (`PATCH /experimental-features`).
    pub features: std::collections::BTreeSet<String>,
}

/// Meilisearch 1.13's experimental features that `/experimental-features` toggles, in the
/// order it lists them.
pub const EXPERIMENTAL_FEATURES: [&str; 6] = [
    "metrics",
    "logsRoute",
    "editDocumentsByFunction",
    "containsFilter",
    "network",
    "getTaskDocumentsRoute",
];

/// A handle to the node, shared by the routes and the task worker.
#[derive(Clone)]
pub struct Node {
    /// The state, behind one lock: the test node favours being obviously right.
    pub state: Arc<Mutex<NodeState>>,
    queue: mpsc::UnboundedSender<u64>,
    /// Injected delay before each task is processed.
    pub task_delay: Arc<Mutex<Duration>>,
    /// Injected fault: every settings update task fails.
    pub fail_settings: Arc<std::sync::atomic::AtomicBool>,
}

impl Node {
    /// A node with its task worker running on the current runtime.
    pub fn start() -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<u64>();
        let node = Self {
            state: Arc::default(),
            queue,
            task_delay: Arc::default(),
            fail_settings: Arc::default(),
        };
        let worker = node.clone();
        tokio::spawn(async move {
            while let Some(uid) = rx.recv().await {
                let delay = *worker.task_delay.lock().unwrap_or_else(|e| e.into_inner());
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                worker.process(uid);
            }
        });
        node
    }

    /// Locks the state.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enqueues a task and returns its summary.
    pub fn enqueue(
        &self,
        index_uid: Option<&str>,
        kind: &'static str,
        details: Option<Value>,
        op: TaskOp,
    ) -> Value {
        let mut state = self.lock();
        let uid = state.next_task;
        state.next_task += 1;
        let task = Task {
            uid,
            index_uid: index_uid.map(str::to_owned),
            status: "enqueued",
            kind,
            details: details.and_then(|d| d.as_object().cloned()),
            error: None,
            canceled_by: None,
            enqueued_at: time::now(),
            started_at: None,
            finished_at: None,
            duration: None,
            op,
        };
        let summary = task.summary();
        state.tasks.insert(uid, task);
        drop(state);
        // The worker lives as long as the runtime; a closed queue only happens at shutdown.
        let _ = self.queue.send(uid);
        summary
    }

    /// Records an already finished task (cancelation and deletion run at once).
    pub fn finished_task(&self, kind: &'static str, details: Value) -> Value {
        let mut state = self.lock();
        let uid = state.next_task;
        state.next_task += 1;
        let now = time::now();
        let task = Task {
            uid,
            index_uid: None,
            status: "succeeded",
            kind,
            details: details.as_object().cloned(),
            error: None,
            canceled_by: None,
            enqueued_at: now.clone(),
            started_at: Some(now.clone()),
            finished_at: Some(now),
            duration: Some("PT0S".into()),
            op: TaskOp::Nothing,
        };
        let mut summary = task.summary();
        summary["status"] = json!("enqueued");
        state.tasks.insert(uid, task);
        summary
    }

    fn process(&self, uid: u64) {
        let mut state = self.lock();
        let Some(task) = state.tasks.get_mut(&uid) else {
            return;
        };
        if task.status != "enqueued" {
            return;
        }
        let started = Instant::now();
        task.status = "processing";
        task.started_at = Some(time::now());
        let op = task.op.clone();
        let index_uid = task.index_uid.clone().unwrap_or_default();
        let result = if task.kind == "settingsUpdate"
            && self
                .fail_settings
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            Err(NodeError::invalid(
                "invalid_settings_ranking_rules",
                "The settings update was refused (injected fault).",
            ))
        } else {
            apply(&mut state, &index_uid, op)
        };
        let now = time::rfc3339(SystemTime::now());
        let task = state.tasks.get_mut(&uid).expect("task exists");
        match result {
            Ok(update) => {
                task.status = "succeeded";
                if let Some(details) = task.details.as_mut() {
                    for (k, v) in update {
                        details.insert(k, v);
                    }
                }
            }
            Err(error) => {
                task.status = "failed";
                if let Some(details) = task.details.as_mut() {
                    for key in ["indexedDocuments", "deletedDocuments"] {
                        if details.contains_key(key) {
                            details.insert(key.into(), json!(0));
                        }
                    }
                }
                task.error = Some(error.body());
            }
        }
        task.finished_at = Some(now.clone());
        task.duration = Some(time::iso_duration(started.elapsed()));
        state.last_update = Some(now);
    }
}

/// Applies one task's change; returns the details it completes.
fn apply(state: &mut NodeState, uid: &str, op: TaskOp) -> Result<Map<String, Value>, NodeError> {
    let now = time::now();
    let mut out = Map::new();
    match op {
        TaskOp::CreateIndex { primary_key } => {
            if state.indexes.contains_key(uid) {
                return Err(NodeError::invalid(
                    "index_already_exists",
                    format!("Index `{uid}` already exists."),
                )
                .with_status(http::StatusCode::CONFLICT));
            }
            state
                .indexes
                .insert(uid.to_owned(), Index::new(primary_key, &now));
        }
        TaskOp::UpdateIndex { primary_key } => {
            let index = state
                .indexes
                .get_mut(uid)
                .ok_or_else(|| NodeError::index_not_found(uid))?;
            if let Some(pk) = primary_key {
                if !index.documents.is_empty() && index.primary_key.as_deref() != Some(pk.as_str())
                {
                    return Err(NodeError::invalid(
                        "index_primary_key_already_exists",
                        format!(
                            "Index already has a primary key: `{}`.",
                            index.primary_key.clone().unwrap_or_default()
                        ),
                    ));
                }
                index.primary_key = Some(pk);
            }
            index.updated_at = now;
        }
        TaskOp::DeleteIndex => {
            let index = state
                .indexes
                .remove(uid)
                .ok_or_else(|| NodeError::index_not_found(uid))?;
            out.insert("deletedDocuments".into(), json!(index.documents.len()));
        }
        TaskOp::AddDocuments {
            documents,
            primary_key,
            merge,
        } => {
            let index = state
                .indexes
                .entry(uid.to_owned())
                .or_insert_with(|| Index::new(None, &now));
            let indexed = index.add_documents(&documents, primary_key.as_deref(), merge)?;
            index.updated_at = now;
            out.insert("indexedDocuments".into(), json!(indexed));
        }
        TaskOp::DeleteIds(ids) => {
            let index = state
                .indexes
                .get_mut(uid)
                .ok_or_else(|| NodeError::index_not_found(uid))?;
            out.insert("deletedDocuments".into(), json!(index.delete_ids(&ids)));
            index.updated_at = now;
        }
        TaskOp::DeleteByFilter(raw) => {
            let index = state
                .indexes
                .get_mut(uid)
                .ok_or_else(|| NodeError::index_not_found(uid))?;
            let filter = parse_filter(uid, index, Some(&raw), "invalid_document_filter")?;
            let ids: Vec<String> = index
                .documents
                .values()
                .filter(|d| filter.as_ref().is_some_and(|f| f.matches(d)))
                .filter_map(|d| index.external_id(d))
                .collect();
            out.insert("deletedDocuments".into(), json!(index.delete_ids(&ids)));
            index.updated_at = now;
        }
        TaskOp::Clear => {
            let index = state
                .indexes
                .get_mut(uid)
                .ok_or_else(|| NodeError::index_not_found(uid))?;
            out.insert("deletedDocuments".into(), json!(index.documents.len()));
            let ids: Vec<String> = index.ids.keys().cloned().collect();
            index.delete_ids(&ids);
            index.updated_at = now;
        }
        TaskOp::Settings(update) => {
            let index = state
                .indexes
                .entry(uid.to_owned())
                .or_insert_with(|| Index::new(None, &now));
            index.apply_settings(&update);
            index.updated_at = now;
        }
        TaskOp::Swap(pairs) => {
            for (a, b) in &pairs {
                for name in [a, b] {
                    if !state.indexes.contains_key(name) {
                        return Err(NodeError::invalid(
                            "index_not_found",
                            format!("Indexes `{name}` not found."),
                        )
                        .with_status(http::StatusCode::NOT_FOUND));
                    }
                }
            }
            for (a, b) in pairs {
                let first = state.indexes.remove(&a).expect("checked");
                let second = state.indexes.remove(&b).expect("checked");
                state.indexes.insert(a, second);
                state.indexes.insert(b, first);
            }
        }
        TaskOp::Nothing => {}
        TaskOp::Compact => {
            let Some(index) = state.indexes.get(uid) else {
                return Err(NodeError::invalid(
                    "index_not_found",
                    format!("Index `{uid}` not found."),
                )
                .with_status(http::StatusCode::NOT_FOUND));
            };
            // Meilisearch reports the index's size before and after, as text.
            let size = format!(
                "{} B",
                serde_json::to_vec(&index.documents).map_or(0, |b| b.len())
            );
            out.insert("preCompactionSize".into(), json!(size));
            out.insert("postCompactionSize".into(), json!(size));
        }
        TaskOp::Dump => {
            // Meilisearch names a dump after its time: `20261206-050800123`.
            let uid: String = now.chars().filter(char::is_ascii_digit).take(17).collect();
            out.insert(
                "dumpUid".into(),
                json!(format!("{}-{}", &uid[..8], &uid[8..])),
            );
        }
    }
    Ok(out)
}
