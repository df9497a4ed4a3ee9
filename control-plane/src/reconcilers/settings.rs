//! Settings: the two-phase commit of every settings change, and the drift reconciler.
//!
//! Changes are queued in the store (`settings_changes`) and run one at a time, oldest
//! first, by the leader:
//! 1. **propose**: the index is marked `pending_settings` in the topology (gateways then
//!    answer `X-Miroir-Settings-Inconsistent: true`); every node holding the index is
//!    first repaired to the committed settings if it drifted, then sent the change (with
//!    Miroir's hidden settings kept), and its task awaited;
//! 2. **verify**: every node's settings are read back and hashed canonically; all equal
//!    is required;
//! 3. **commit**: one topology commit bumps the index's settings version and records what
//!    clients read, the hash and the nodes verified at it; then the client's task succeeds.
//!
//! A node that rejects the change fails it at once; a node that fails or cannot be
//! reached for longer than `--settings-commit-timeout` fails it too. A failed change never
//! commits: its task fails with the node named, and the drift pass that follows brings
//! every node back to the committed settings. Each step is idempotent and the phase lives
//! in the topology and the store, so a new leader resumes a change where the old stopped
//! (see [`process`]).
//!
//! The drift pass runs every `--settings-drift-interval` and after a failed change: it
//! compares each node's hash with the committed one, repairs a node that differs, and
//! records which nodes are verified at the committed version (reads with
//! `X-Miroir-Min-Settings-Version` avoid the others).

use crate::error::ControlPlaneError;
use crate::state::{LeadershipStatus, ServiceState, now_ms};
use crate::store::SettingsChangePersistence;
use crate::topology;
use http::Method;
use miroir_proto::pb::{self, NodeState};
use miroir_proto::settings::{self as hidden, hash};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tracing::Instrument;

/// Pause before asking a failing node again.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Runs until the process stops.
pub async fn run(state: Arc<ServiceState>) {
    let mut interval = tokio::time::interval(state.config.settings_drift_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut drift_now = false;
        tokio::select! {
            _ = interval.tick() => drift_now = true,
            _ = state.settings_wake.notified() => {}
        }
        if !matches!(state.leadership(), LeadershipStatus::Leader { .. }) {
            continue;
        }
        match process_queue(&state).await {
            Ok(failed) => drift_now |= failed,
            Err(error) => tracing::warn!(%error, "settings changes could not be run; retrying"),
        }
        if drift_now {
            drift_all(&state).await;
        }
    }
}

/// Runs every queued change, oldest first; true when one failed (nodes may need repair).
async fn process_queue(state: &Arc<ServiceState>) -> Result<bool, ControlPlaneError> {
    let mut any_failed = false;
    loop {
        let changes = state.store.settings_changes().await?;
        let Some(change) = changes.into_iter().next() else {
            return Ok(any_failed);
        };
        let _serialized = state.settings_lock.lock().await;
        let span =
            tracing::info_span!("settings_change", index = %change.index_uid, change = change.id);
        any_failed |= !process(state, &change).instrument(span).await?;
        state
            .store
            .delete_settings_change(state.leader_token()?, change.id)
            .await?;
    }
}

/// A Meilisearch-shaped error of Miroir's own.
fn miroir_error(code: &str, message: String) -> Value {
    crate::error::meili_error(code, miroir_proto::ErrorType::System, message)
}

async fn set_task(
    state: &ServiceState,
    change: &SettingsChangePersistence,
    status: &str,
    started_at_ms: u64,
    error: Option<&Value>,
) -> Result<(), ControlPlaneError> {
    let Some(uid) = change.task_uid else {
        return Ok(());
    };
    state
        .decide_task(uid as u32, status, started_at_ms, error)
        .await
}

/// Runs one change to its end; true if it committed. Resumable: a change the topology
/// already records as decided is only finished (its task set), a change whose task
/// already failed is only ended, anything else is (re)proposed — proposing is idempotent.
async fn process(
    state: &Arc<ServiceState>,
    change: &SettingsChangePersistence,
) -> Result<bool, ControlPlaneError> {
    let change_id = change.id as u64;
    let topology = state.topology();
    let Some(index) = topology.indexes.iter().find(|i| i.uid == change.index_uid) else {
        let error = crate::error::meili_error(
            "index_not_found",
            miroir_proto::ErrorType::InvalidRequest,
            format!("Index `{}` not found.", change.index_uid),
        );
        set_task(state, change, "failed", now_ms(), Some(&error)).await?;
        return Ok(false);
    };
    let task = match change.task_uid {
        Some(uid) => state.store.get_task(uid as u32).await?,
        None => None,
    };
    let started_at_ms = task
        .as_ref()
        .map(|t| t.started_at_ms as u64)
        .filter(|&t| t > 0)
        .unwrap_or_else(now_ms);
    if change_id <= index.settings_change_id {
        // Decided before a failover: the commit came first, then the task.
        if task
            .as_ref()
            .is_some_and(|t| t.status.as_deref() != Some("failed"))
        {
            set_task(state, change, "succeeded", started_at_ms, None).await?;
        }
        return Ok(true);
    }
    if task.as_ref().and_then(|t| t.status.as_deref()) == Some("failed") {
        end_failed(state, &change.index_uid, change_id).await?;
        return Ok(false);
    }

    let (pending, topology) = state
        .commit(|t, now| {
            let pending = topology::begin_settings_change(
                t,
                &change.index_uid,
                change_id,
                change.task_uid.map(|u| u as u32),
                now,
            )?;
            Ok((
                pending,
                format!(
                    "settings change {change_id} of index {} proposed",
                    change.index_uid
                ),
            ))
        })
        .await?;
    set_task(state, change, "processing", started_at_ms, None).await?;
    let Some(index) = topology.indexes.iter().find(|i| i.uid == change.index_uid) else {
        return Ok(false);
    };
    let patch: Map<String, Value> = serde_json::from_str(&change.patch).unwrap_or_default();
    let committed_view: Option<Map<String, Value>> = (index.settings_version > 0)
        .then(|| serde_json::from_str(&index.settings_json).unwrap_or_default());
    let mut body = hidden::node_patch(&patch);
    if index.settings_version == 0 {
        // The first version carries Miroir's hidden settings whatever the client sent.
        for (key, value) in hidden::initial_node_settings() {
            body.entry(key).or_insert(value);
        }
    }
    let proposal = Arc::new(Proposal {
        uid: index.uid.clone(),
        repair_to: committed_view
            .as_ref()
            .map(|view| (index.settings_hash.clone(), hidden::node_settings(view))),
        body: Value::Object(body),
    });
    match propose_and_verify(state, &topology, index, &proposal).await {
        Ok((node_settings, verified)) => {
            let view = hidden::client_view(&node_settings, committed_view.as_ref(), &patch);
            let settings_hash = hash(&node_settings);
            let (version, committed) = state
                .commit(|t, _| {
                    let version = topology::commit_settings(
                        t,
                        &change.index_uid,
                        change_id,
                        Value::Object(view).to_string(),
                        settings_hash,
                        &verified,
                    )?;
                    Ok((
                        version,
                        format!(
                            "settings version {version} of index {} committed",
                            change.index_uid
                        ),
                    ))
                })
                .await?;
            // Read-your-writes: once the task says succeeded, every gateway serves it.
            let behind = state.await_applied(committed.version).await;
            if !behind.is_empty() {
                tracing::warn!(
                    ?behind,
                    "gateways did not apply the committed settings in time"
                );
            }
            set_task(state, change, "succeeded", started_at_ms, None).await?;
            state.metrics.settings_commits.inc();
            tracing::info!(
                version,
                target = pending.target_version,
                nodes = verified.len(),
                "settings committed"
            );
            Ok(true)
        }
        Err(error) => {
            if !matches!(state.leadership(), LeadershipStatus::Leader { .. }) {
                return Err(ControlPlaneError::NotLeader(
                    "leadership lost mid-change".into(),
                ));
            }
            tracing::warn!(error = %error["message"], "settings change failed; nothing committed");
            set_task(state, change, "failed", started_at_ms, Some(&error)).await?;
            end_failed(state, &change.index_uid, change_id).await?;
            state.metrics.settings_failures.inc();
            Ok(false)
        }
    }
}

async fn end_failed(
    state: &ServiceState,
    uid: &str,
    change_id: u64,
) -> Result<(), ControlPlaneError> {
    match state
        .commit(|t, _| {
            topology::fail_settings(t, uid, change_id)?;
            Ok((
                (),
                format!("settings change {change_id} of index {uid} failed"),
            ))
        })
        .await
    {
        Ok(_) | Err(ControlPlaneError::IndexNotFound(_)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// What one change sends to every node.
struct Proposal {
    uid: String,
    /// The committed hash and the full node settings a drifted node is first repaired to
    /// (none before the first commit).
    repair_to: Option<(String, Map<String, Value>)>,
    /// The change as nodes receive it.
    body: Value,
}

/// Why a node could not take a change.
enum NodeFailure {
    /// The node refused it (a 4xx or a failed task): the change cannot succeed.
    Rejected(Value),
    /// The node failed or could not be reached: worth asking again.
    Unavailable(String),
}

impl NodeFailure {
    fn describe(&self) -> String {
        match self {
            Self::Rejected(error) => error["message"].as_str().unwrap_or("rejected").to_owned(),
            Self::Unavailable(detail) => detail.clone(),
        }
    }
}

/// Reads a node's settings for `uid`.
async fn read_settings(
    state: &ServiceState,
    node: &pb::Node,
    uid: &str,
) -> Result<Map<String, Value>, NodeFailure> {
    let url = format!(
        "{}/indexes/{uid}/settings",
        node.address.trim_end_matches('/')
    );
    match state.nodes.send(&node.id, Method::GET, url, None).await {
        Ok((200, Value::Object(settings))) => Ok(settings),
        Ok((status, body)) if (400..500).contains(&status) => Err(NodeFailure::Rejected(body)),
        Ok((status, body)) => Err(NodeFailure::Unavailable(format!(
            "answered {status}: {body}"
        ))),
        Err(error) => Err(NodeFailure::Unavailable(
            error.error["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )),
    }
}

/// PATCHes a node's settings and waits for its task to finish.
async fn apply(
    state: &ServiceState,
    node: &pb::Node,
    uid: &str,
    body: &Value,
) -> Result<(), NodeFailure> {
    let base = node.address.trim_end_matches('/');
    let task_uid = match state
        .nodes
        .send(
            &node.id,
            Method::PATCH,
            format!("{base}/indexes/{uid}/settings"),
            Some(body.clone()),
        )
        .await
    {
        Ok((status, answer)) if (200..300).contains(&status) => answer["taskUid"]
            .as_u64()
            .ok_or_else(|| NodeFailure::Unavailable(format!("no taskUid in {answer}")))?,
        Ok((status, answer)) if (400..500).contains(&status) => {
            return Err(NodeFailure::Rejected(answer));
        }
        Ok((status, answer)) => {
            return Err(NodeFailure::Unavailable(format!(
                "answered {status}: {answer}"
            )));
        }
        Err(error) => {
            return Err(NodeFailure::Unavailable(
                error.error["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
    };
    let task = state
        .nodes
        .wait_task(&node.id, base, task_uid)
        .await
        .map_err(|e| NodeFailure::Unavailable(e.error.to_string()))?;
    match task["status"].as_str() {
        Some("succeeded") => Ok(()),
        Some("failed") => Err(NodeFailure::Rejected(task["error"].clone())),
        _ => Err(NodeFailure::Unavailable(format!(
            "its task {task_uid} was canceled"
        ))),
    }
}

/// One node's part of a proposal: repair if it drifted, apply the change, read back.
async fn propose_on_node(
    state: &ServiceState,
    node: &pb::Node,
    proposal: &Arc<Proposal>,
) -> Result<Map<String, Value>, NodeFailure> {
    if let Some((committed_hash, full)) = &proposal.repair_to {
        let (_, repaired) =
            hash_repairing(state, node, &proposal.uid, committed_hash, Some(full)).await?;
        if repaired {
            tracing::info!(node = %node.id, "node drifted from the committed settings; repaired before the change");
        }
    }
    apply(state, node, &proposal.uid, &proposal.body).await?;
    read_settings(state, node, &proposal.uid).await
}

/// A node's settings hash. When it differs from `expected` and `full` is given, the node
/// is first brought to `full` (the committed settings, hidden ones included): then the
/// hash is read anew and `true` says it was repaired.
async fn hash_repairing(
    state: &ServiceState,
    node: &pb::Node,
    uid: &str,
    expected: &str,
    full: Option<&Map<String, Value>>,
) -> Result<(String, bool), NodeFailure> {
    let current = hash(&read_settings(state, node, uid).await?);
    let Some(full) = full.filter(|_| current != expected) else {
        return Ok((current, false));
    };
    apply(state, node, uid, &Value::Object(full.clone())).await?;
    Ok((hash(&read_settings(state, node, uid).await?), true))
}

/// Proposes on every node holding `index` and verifies: the node settings every node
/// agreed on and the nodes verified, or the error that fails the change.
async fn propose_and_verify(
    state: &Arc<ServiceState>,
    topology: &pb::Topology,
    index: &pb::Index,
    proposal: &Arc<Proposal>,
) -> Result<(Map<String, Value>, Vec<String>), Value> {
    // A failed node is left behind (its verified version stays old, so floor reads avoid
    // it) and brought up to date by the drift pass once it is back: a node that is down
    // for hours must not block every settings change.
    let nodes: Vec<pb::Node> = topology::nodes_of_index(index)
        .iter()
        .filter_map(|id| topology.nodes.iter().find(|n| &n.id == id).cloned())
        .filter(|n| n.state != NodeState::Failed as i32)
        .collect();
    if nodes.is_empty() {
        return Err(miroir_error(
            "miroir_settings_commit_failed",
            format!(
                "no live node holds index `{}`; nothing was committed.",
                index.uid
            ),
        ));
    }
    let bound = state.config.settings_commit_timeout;
    let mut read_back: HashMap<String, Map<String, Value>> = HashMap::new();
    let mut failing_since: HashMap<String, (Instant, String)> = HashMap::new();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let todo: Vec<&pb::Node> = nodes
            .iter()
            .filter(|n| !read_back.contains_key(&n.id))
            .collect();
        let results = propose_on_nodes(state, &todo, proposal).await;
        for (node_id, result) in results {
            match result {
                Ok(settings) => {
                    failing_since.remove(&node_id);
                    read_back.insert(node_id, settings);
                }
                Err(NodeFailure::Rejected(mut error)) => {
                    let message = error["message"].as_str().unwrap_or("rejected").to_owned();
                    error["message"] = json!(format!("node `{node_id}`: {message}"));
                    return Err(error);
                }
                Err(failure @ NodeFailure::Unavailable(_)) => {
                    let detail = failure.describe();
                    let since = failing_since
                        .entry(node_id.clone())
                        .or_insert((Instant::now(), String::new()));
                    since.1 = detail;
                }
            }
        }
        if let Some((node, (_, detail))) = failing_since
            .iter()
            .find(|(_, (since, _))| since.elapsed() >= bound)
        {
            return Err(miroir_error(
                "miroir_settings_commit_failed",
                format!(
                    "node `{node}` could not take the settings change within {}: {detail}. Nothing was committed; nodes return to the committed settings.",
                    humantime::format_duration(bound)
                ),
            ));
        }
        if !failing_since.is_empty() {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        }
        // Verify: every node read back the same settings.
        let hashes: Vec<(String, String)> = read_back
            .iter()
            .map(|(node, settings)| (node.clone(), hash(settings)))
            .collect();
        if hashes.windows(2).all(|w| w[0].1 == w[1].1) {
            let mut verified: Vec<String> = read_back.keys().cloned().collect();
            verified.sort();
            let settings = read_back.into_values().next().unwrap_or_default();
            return Ok((settings, verified));
        }
        if rounds >= 3 {
            let mut detail: Vec<String> = hashes
                .iter()
                .map(|(node, h)| format!("`{node}` {}", &h[..12.min(h.len())]))
                .collect();
            detail.sort();
            return Err(miroir_error(
                "miroir_settings_commit_failed",
                format!(
                    "nodes hold different settings after the change ({}). Nothing was committed; nodes return to the committed settings.",
                    detail.join(", ")
                ),
            ));
        }
        // Something changed a node under us: propose everywhere again.
        tracing::warn!(?hashes, "nodes differ after the change; proposing again");
        read_back.clear();
    }
}

/// Runs [`propose_on_node`] on `nodes` in parallel.
async fn propose_on_nodes(
    state: &Arc<ServiceState>,
    nodes: &[&pb::Node],
    proposal: &Arc<Proposal>,
) -> Vec<(String, Result<Map<String, Value>, NodeFailure>)> {
    let mut calls = JoinSet::new();
    for node in nodes {
        let (state, node, proposal) = (state.clone(), (*node).clone(), proposal.clone());
        let span = tracing::info_span!("propose", node = %node.id);
        calls.spawn(
            async move {
                let result = propose_on_node(&state, &node, &proposal).await;
                (node.id, result)
            }
            .instrument(span),
        );
    }
    let mut results = Vec::new();
    while let Some(joined) = calls.join_next().await {
        if let Ok(result) = joined {
            results.push(result);
        }
    }
    results
}

/// Makes `node` ready to receive a copy of `index` (a shard move's target): the index
/// exists on it with the primary key, and it holds the committed settings (Miroir's
/// hidden ones included), verified by hash. Once verified, the node is recorded as
/// holding the committed version, so reads with a settings floor may use it.
pub async fn prepare_node(
    state: &Arc<ServiceState>,
    node: &pb::Node,
    index: &pb::Index,
) -> Result<(), String> {
    let base = node.address.trim_end_matches('/');
    let mut create = json!({"uid": index.uid});
    if let Some(pk) = &index.primary_key {
        create["primaryKey"] = json!(pk);
    }
    let exists = state
        .nodes
        .get(&node.id, format!("{base}/indexes/{}", index.uid))
        .await
        .is_ok();
    if !exists {
        let uid = state
            .nodes
            .enqueue(
                &node.id,
                Method::POST,
                format!("{base}/indexes"),
                Some(create),
            )
            .await
            .map_err(|e| e.error.to_string())?;
        let task = state
            .nodes
            .wait_task(&node.id, base, uid)
            .await
            .map_err(|e| e.error.to_string())?;
        if task["status"] != "succeeded" && task["error"]["code"] != "index_already_exists" {
            return Err(format!("creating index `{}`: {}", index.uid, task["error"]));
        }
    }
    let _serialized = state.settings_lock.lock().await;
    let topology = state.topology();
    let Some(index) = topology.indexes.iter().find(|i| i.uid == index.uid) else {
        return Err(format!("index `{}` no longer exists", index.uid));
    };
    let full = if index.settings_version > 0 {
        let committed: Map<String, Value> =
            serde_json::from_str(&index.settings_json).unwrap_or_default();
        hidden::node_settings(&committed)
    } else {
        hidden::initial_node_settings()
    };
    let expected = if index.settings_version > 0 {
        index.settings_hash.clone()
    } else {
        String::new()
    };
    let (current, _) = hash_repairing(state, node, &index.uid, &expected, Some(&full))
        .await
        .map_err(|f| f.describe())?;
    if index.settings_version == 0 {
        return Ok(());
    }
    if current != index.settings_hash {
        return Err(format!(
            "node `{}` holds settings {} after repair, not the committed {}",
            node.id,
            &current[..12.min(current.len())],
            &index.settings_hash[..12.min(index.settings_hash.len())]
        ));
    }
    let already = index
        .node_settings
        .iter()
        .any(|n| n.node_id == node.id && n.version == index.settings_version);
    if !already && index.pending_settings.is_none() {
        let mut verified: Vec<String> = index
            .node_settings
            .iter()
            .filter(|n| n.version == index.settings_version)
            .map(|n| n.node_id.clone())
            .collect();
        verified.push(node.id.clone());
        verified.sort();
        verified.dedup();
        let uid = index.uid.clone();
        state
            .commit(|t, _| {
                topology::set_verified_nodes(t, &uid, &verified)?;
                Ok((
                    (),
                    format!("settings of index {uid}: node {} verified", node.id),
                ))
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Compares every node of `index` with the committed settings and, with `repair`, repairs
/// those that differ; records the nodes verified at the committed version. The report
/// names each node's hash.
pub async fn check_index(
    state: &Arc<ServiceState>,
    uid: &str,
    repair: bool,
) -> Result<pb::IndexSettingsReport, ControlPlaneError> {
    let topology = state.topology();
    let index = topology
        .indexes
        .iter()
        .find(|i| i.uid == uid)
        .ok_or_else(|| ControlPlaneError::index_not_found(uid))?;
    let committed: Option<Map<String, Value>> = (index.settings_version > 0)
        .then(|| serde_json::from_str(&index.settings_json).unwrap_or_default());
    let full = committed.as_ref().map(hidden::node_settings);
    let mut checks = Vec::new();
    for id in topology::nodes_of_index(index) {
        let Some(node) = topology.nodes.iter().find(|n| n.id == id).cloned() else {
            continue;
        };
        let (state, uid, expected, full) = (
            state.clone(),
            uid.to_owned(),
            index.settings_hash.clone(),
            full.clone(),
        );
        let active = node.state == NodeState::Active as i32;
        checks.push((node.id.clone(), async move {
            let repair_to = full.as_ref().filter(|_| repair && active);
            let result = hash_repairing(&state, &node, &uid, &expected, repair_to).await;
            let repaired = matches!(&result, Ok((h, true)) if *h == expected);
            (
                node.id,
                result.map(|(h, _)| h).map_err(|f| f.describe()),
                repaired,
            )
        }));
    }
    let mut nodes = Vec::new();
    let mut repaired = 0;
    for (node_id, checked) in miroir_proto::fan_out::join_tagged(checks).await {
        let (node_id, current, was_repaired) = checked.unwrap_or_else(|error| {
            (
                node_id,
                Err(format!(
                    "the check failed inside the control plane: {error}"
                )),
                false,
            )
        });
        repaired += u32::from(was_repaired);
        let (hash, error) = match current {
            Ok(h) => (h, String::new()),
            Err(e) => (String::new(), e),
        };
        nodes.push(pb::NodeSettingsReport {
            matches: committed.is_some() && hash == index.settings_hash,
            node_id,
            hash,
            verified_version: 0,
            error,
        });
    }
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    let mut verified: Vec<String> = nodes
        .iter()
        .filter(|n| n.matches)
        .map(|n| n.node_id.clone())
        .collect();
    verified.sort();
    let known: Vec<&String> = index.node_settings.iter().map(|n| &n.node_id).collect();
    let mut topology = topology.clone();
    if committed.is_some()
        && index.pending_settings.is_none()
        && known != verified.iter().collect::<Vec<_>>()
    {
        let (_, committed) = state
            .commit(|t, _| {
                topology::set_verified_nodes(t, uid, &verified)?;
                Ok((
                    (),
                    format!(
                        "settings of index {uid}: {} node(s) verified at the committed version",
                        verified.len()
                    ),
                ))
            })
            .await?;
        topology = committed;
    }
    if repaired > 0 {
        state
            .metrics
            .settings_drift_repairs
            .inc_by(u64::from(repaired));
        tracing::info!(
            index = uid,
            repaired,
            "node settings repaired to the committed ones"
        );
    }
    let index = topology
        .indexes
        .iter()
        .find(|i| i.uid == uid)
        .cloned()
        .unwrap_or_default();
    for node in &mut nodes {
        node.verified_version = index
            .node_settings
            .iter()
            .find(|n| n.node_id == node.node_id)
            .map_or(0, |n| n.version);
    }
    Ok(pb::IndexSettingsReport {
        uid: uid.to_owned(),
        settings_version: index.settings_version,
        settings_hash: index.settings_hash,
        pending: index.pending_settings,
        nodes,
        repaired,
        settings_json: index.settings_json,
    })
}

/// One drift pass over every index with committed settings and no change in flight.
/// Indexes that never got their first settings version (the control plane stopped
/// between creating one and queueing it) get it queued.
pub async fn drift_all(state: &Arc<ServiceState>) {
    let queued = match state.store.settings_changes().await {
        Ok(queued) => queued,
        Err(error) => {
            tracing::warn!(%error, "drift pass skipped: settings changes unreadable");
            return;
        }
    };
    let topology = state.topology();
    for index in &topology.indexes {
        if queued.iter().any(|c| c.index_uid == index.uid) || index.pending_settings.is_some() {
            continue;
        }
        if index.settings_version == 0 {
            if let Ok(token) = state.leader_token()
                && state
                    .store
                    .enqueue_settings_change(token, &index.uid, "{}", now_ms())
                    .await
                    .is_ok()
            {
                state.settings_wake.notify_one();
            }
            continue;
        }
        let _serialized = state.settings_lock.lock().await;
        let span = tracing::debug_span!("settings_drift", index = %index.uid);
        if let Err(error) = check_index(state, &index.uid, true).instrument(span).await {
            tracing::warn!(index = %index.uid, %error, "drift check failed; retrying next pass");
        }
    }
}
