//! Meilisearch's task routes, answered from the control plane's task records and the node
//! tasks behind them: `GET /tasks/{uid}`, `GET /tasks`, `POST /tasks/cancel`, `DELETE /tasks`.

use super::auth::Caller;
use super::error::{ErrorType, MeiliError, optional_positive_integer};
use crate::state::AppState;
use crate::tasks::outcomes::views;
use crate::tasks::query::{MAX_MATCHED, TaskQuery};
use crate::tasks::view as tasks;
use crate::write::task::record_task;
use axum::Json;
use axum::extract::{Extension, Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http::Method;
use miroir_proto::ErrorCode;
use miroir_proto::keys::indexes_allow;
use miroir_proto::pb;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// A page of the control plane's task list.
async fn list_page(
    state: &AppState,
    request: pb::ListTasksRequest,
) -> Result<pb::ListTasksResponse, MeiliError> {
    state
        .control_plane
        .list_tasks(request)
        .await
        .map_err(|s| MeiliError::from_status(&s))
}

/// Fills a finished cancelation's `canceledTasks`: its targets that ended canceled.
async fn count_canceled(state: &AppState, task: &pb::Task, view: &mut Value) {
    if task.task_type != "taskCancelation"
        || !matches!(view["status"].as_str(), Some("succeeded" | "failed"))
    {
        return;
    }
    // `GET /tasks?canceledBy=uid`'s total: its targets that ended canceled.
    let query = TaskQuery {
        canceled_by: vec![task.uid],
        ..Default::default()
    };
    let counts = pb::ListTasksRequest {
        limit: 1,
        ..query.store_request()
    };
    let Ok(counts) = list_page(state, counts).await else {
        return;
    };
    if let Ok((canceled, _)) =
        exact_outcomes_total(state, &query, counts.total, counts.unrecorded).await
    {
        view["details"]["canceledTasks"] = json!(canceled);
    }
}

/// Task `uid`'s view, when it exists and the caller may see it (a key limited to some
/// indexes sees only their tasks).
async fn visible_view(
    state: &AppState,
    caller: &Caller,
    uid: u32,
) -> Result<Option<Value>, MeiliError> {
    let task = match state
        .control_plane
        .get_task(pb::GetTaskRequest { uid })
        .await
    {
        Ok(task) => task,
        Err(status) if ErrorCode::of(&status) == ErrorCode::TaskNotFound => return Ok(None),
        Err(status) => return Err(MeiliError::from_status(&status)),
    };
    let visible = match (caller.index_patterns(), &task.index_uid) {
        (None, _) => true,
        (Some(patterns), Some(index)) => indexes_allow(patterns, index),
        (Some(_), None) => false,
    };
    if !visible {
        return Ok(None);
    }
    let mut view = views(state, std::slice::from_ref(&task)).await.remove(0);
    count_canceled(state, &task, &mut view).await;
    Ok(Some(view))
}

/// A uid in a path, or Meilisearch's error naming what it is (`Task`, `Batch`).
fn path_uid(uid: &str, what: &str, code: &'static str) -> Result<u32, MeiliError> {
    uid.parse().map_err(|_| {
        MeiliError::invalid(
            code,
            format!("{what} uid `{uid}` is invalid. It should only contain numeric characters."),
        )
    })
}

/// Meilisearch's 404 for a task or batch (`what`) that does not exist.
fn not_found(what: &str, code: &'static str, uid: u32) -> MeiliError {
    MeiliError::new(
        StatusCode::NOT_FOUND,
        code,
        ErrorType::InvalidRequest,
        format!("{what} `{uid}` not found."),
    )
}

/// `GET /tasks/{uid}`.
pub async fn get_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, MeiliError> {
    let uid = path_uid(&uid, "Task", "invalid_task_uids")?;
    visible_view(&state, &caller, uid)
        .await?
        .map(Json)
        .ok_or_else(|| not_found("Task", "task_not_found", uid))
}

/// How Miroir's batches came to be, as `batchStrategy` says for Meilisearch's.
const BATCH_STRATEGY: &str = "each Miroir task is a batch of its own";

/// The batch of a started task: in Miroir each client task is one batch across the
/// fleet (its node tasks are batched on each node as the node decides), with the task's
/// uid; a task that never started has none.
fn batch_of(view: &Value) -> Option<Value> {
    if view["batchUid"].is_null() {
        return None;
    }
    let count = |key: &str| {
        let mut counts = serde_json::Map::new();
        if let Some(value) = view[key].as_str() {
            counts.insert(value.to_owned(), json!(1));
        }
        Value::Object(counts)
    };
    Some(json!({
        "uid": view["batchUid"],
        "progress": null,
        "details": view["details"],
        "stats": {
            "totalNbTasks": 1,
            "status": count("status"),
            "types": count("type"),
            "indexUids": count("indexUid"),
            // Meilisearch 1.50 times each processing step of a batch; the steps ran on the
            // nodes, each in batches of its own.
            "progressTrace": {},
        },
        "duration": view["duration"],
        "startedAt": view["startedAt"],
        "finishedAt": view["finishedAt"],
        "batchStrategy": BATCH_STRATEGY,
    }))
}

/// `GET /batches/{uid}`: the batch of the started task with that uid.
pub async fn get_batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, MeiliError> {
    let uid = path_uid(&uid, "Batch", "invalid_batch_uids")?;
    visible_view(&state, &caller, uid)
        .await?
        .as_ref()
        .and_then(batch_of)
        .map(Json)
        .ok_or_else(|| not_found("Batch", "batch_not_found", uid))
}

/// `GET /batches` with the filters and paging of `GET /tasks` (as in Meilisearch): the
/// started tasks' batches, newest first. A task canceled before it started has no batch,
/// yet `total` counts it when the filters match it.
pub async fn list_batches(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, MeiliError> {
    // Checked as given first, so a bad value gets the error Meilisearch gives.
    TaskQuery::parse(&params, true)?;
    let started = ["processing", "succeeded", "failed", "canceled"];
    let statuses: Vec<&str> = match params.get("statuses") {
        None => started.to_vec(),
        Some(asked) => started
            .into_iter()
            .filter(|s| asked.split(',').any(|a| a.trim() == *s || a.trim() == "*"))
            .collect(),
    };
    let mut listed = if statuses.is_empty() {
        // Only `enqueued` asked for: no batch.
        Listed::empty(&params)?
    } else {
        params.insert("statuses".into(), statuses.join(","));
        listed(&state, &caller, &params).await?
    };
    listed.results = listed.results.iter().filter_map(batch_of).collect();
    Ok(Json(listed.respond()))
}

/// `GET /tasks` with Meilisearch's filters and paging. `statuses`, `canceledBy` and start
/// and finish dates are filtered by the control plane on finished tasks' recorded
/// outcomes; the tasks it cannot decide (not yet recorded) are checked here, and counted
/// exactly while at most 1000 of them match the other filters. `batchUids` (the listed
/// uids, so few tasks) runs here over the next 1000 tasks the control plane's filters
/// match; `next` then continues past them, and `total` counts the matches among them.
pub async fn list_tasks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, MeiliError> {
    Ok(Json(listed(&state, &caller, &params).await?.respond()))
}

/// A page of task views and what frames it.
struct Listed {
    results: Vec<Value>,
    total: u64,
    limit: u32,
    next: Option<u32>,
}

impl Listed {
    /// No result, with the asked `limit`.
    fn empty(params: &HashMap<String, String>) -> Result<Self, MeiliError> {
        let limit = optional_positive_integer(params, "limit", "invalid_task_limit")?;
        Ok(Self {
            results: Vec::new(),
            total: 0,
            limit: limit.unwrap_or(20),
            next: None,
        })
    }

    /// Meilisearch's page shape around the results (tasks, or the batches made of them).
    fn respond(self) -> Value {
        let from = self.results.first().and_then(|v| v["uid"].as_u64());
        json!({"results": self.results, "total": self.total, "limit": self.limit, "from": from, "next": self.next})
    }
}

/// The task views `params` (`GET /tasks`'s filters and paging) select for `caller`.
async fn listed(
    state: &AppState,
    caller: &Caller,
    params: &HashMap<String, String>,
) -> Result<Listed, MeiliError> {
    let mut query = TaskQuery::parse(params, true)?;
    query.restrict_to(caller, &state.topology.current());
    let number = |name: &str, code: &'static str| -> Result<Option<u32>, MeiliError> {
        optional_positive_integer(params, name, code)
    };
    let limit = number("limit", "invalid_task_limit")?.unwrap_or(20);
    let reverse = match params.get("reverse").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(MeiliError::invalid(
                "invalid_task_reverse",
                format!(
                    "Invalid value in parameter `reverse`: could not parse `{other}` as a boolean, expected either `true` or `false`"
                ),
            ));
        }
    };
    if query.nothing {
        return Listed::empty(params);
    }
    let outcomes_only = query.filters_outcomes_only();
    let filters_views = query.filters_views() && !outcomes_only;
    let request = pb::ListTasksRequest {
        from: number("from", "invalid_task_from")?,
        limit: if filters_views { 1000 } else { limit },
        reverse,
        ..query.store_request()
    };
    let page = list_page(state, request).await?;
    // Counted before this page's views, which record the outcomes of tasks they find
    // finished and so change what the control plane counts as unrecorded.
    let (outcomes_total, seen) = if outcomes_only {
        exact_outcomes_total(state, &query, page.total, page.unrecorded).await?
    } else {
        (page.total, HashMap::new())
    };
    let mut all = views_reusing(state, &page.tasks, seen).await;
    for (view, task) in all.iter_mut().zip(&page.tasks) {
        count_canceled(state, task, view).await;
    }
    let (results, total, next) = if outcomes_only {
        // A page may come back short (unrecorded tasks in it that do not match); `next`
        // goes on from where the control plane stopped.
        let results = all.into_iter().filter(|v| query.matches(v)).collect();
        (results, outcomes_total, page.next)
    } else if filters_views {
        let matching: Vec<Value> = all.into_iter().filter(|v| query.matches(v)).collect();
        let total = matching.len() as u64;
        // Past the scanned tasks the control plane holds more: paging goes on from there
        // (a page may then come back short), never stops early.
        let next = matching
            .get(limit as usize)
            .and_then(|v| v["uid"].as_u64())
            .map(|u| u as u32)
            .or(page.next);
        (
            matching.into_iter().take(limit as usize).collect(),
            total,
            next,
        )
    } else {
        (all, page.total, page.next)
    };
    Ok(Listed {
        results,
        total,
        limit,
        next,
    })
}

/// The views of `list`, taking those in `seen` (by uid) instead of asking again.
async fn views_reusing(
    state: &AppState,
    list: &[pb::Task],
    mut seen: HashMap<u32, Value>,
) -> Vec<Value> {
    if seen.is_empty() {
        return views(state, list).await;
    }
    let missing: Vec<pb::Task> = list
        .iter()
        .filter(|t| !seen.contains_key(&t.uid))
        .cloned()
        .collect();
    let fetched = views(state, &missing).await;
    seen.extend(missing.iter().map(|t| t.uid).zip(fetched));
    list.iter()
        .map(|t| seen.remove(&t.uid).unwrap_or_default())
        .collect()
}

/// The number of tasks matching filters on outcomes (`statuses`, `canceledBy`, dates):
/// the control plane's `total` counts every task it could not decide (`unrecorded`) as
/// matching; those are read here and counted for what they are, when there are at most
/// 1000 (else `total` is kept). Also the views it read, by uid, for the page to reuse.
async fn exact_outcomes_total(
    state: &AppState,
    query: &TaskQuery,
    mut total: u64,
    mut unrecorded: u64,
) -> Result<(u64, HashMap<u32, Value>), MeiliError> {
    for _ in 0..3 {
        if unrecorded == 0 || unrecorded > 1000 {
            return Ok((total, HashMap::new()));
        }
        let request = pb::ListTasksRequest {
            limit: 1000,
            unrecorded_only: true,
            ..query.store_request()
        };
        let page = list_page(state, request).await?;
        // The same unrecorded tasks as counted: the two counts agree. Otherwise outcomes
        // were recorded (or tasks created) in between, by any gateway: count again.
        if page.total == unrecorded {
            let read = views(state, &page.tasks).await;
            let matching = read.iter().filter(|v| query.matches(v)).count() as u64;
            let seen = page.tasks.iter().map(|t| t.uid).zip(read).collect();
            return Ok((total.saturating_sub(unrecorded) + matching, seen));
        }
        let counts = pb::ListTasksRequest {
            limit: 1,
            ..query.store_request()
        };
        let counts = list_page(state, counts).await?;
        (total, unrecorded) = (counts.total, counts.unrecorded);
    }
    Ok((total, HashMap::new()))
}

/// Every task the filters match (at most [`MAX_MATCHED`]), with its aggregated view.
async fn all_matching(
    state: &AppState,
    query: &TaskQuery,
) -> Result<Vec<(pb::Task, Value)>, MeiliError> {
    let mut matched = Vec::new();
    let mut from = None;
    loop {
        let request = pb::ListTasksRequest {
            from,
            limit: 1000,
            ..query.store_request()
        };
        let page = list_page(state, request).await?;
        let page_views = views(state, &page.tasks).await;
        matched.extend(
            page.tasks
                .into_iter()
                .zip(page_views)
                .filter(|(_, view)| query.matches(view)),
        );
        match page.next {
            Some(next) if matched.len() < MAX_MATCHED => from = Some(next),
            _ => break,
        }
    }
    matched.truncate(MAX_MATCHED);
    Ok(matched)
}

/// The tasks a cancelation or deletion (`action`) targets: its filters are required.
async fn matched_by_filters(
    state: &AppState,
    caller: &Caller,
    params: &HashMap<String, String>,
    action: &str,
) -> Result<Vec<(pb::Task, Value)>, MeiliError> {
    let mut query = TaskQuery::parse(params, false)?;
    if !query.filtered {
        return Err(missing_filters(action));
    }
    query.restrict_to(caller, &state.topology.current());
    if query.nothing {
        return Ok(Vec::new());
    }
    all_matching(state, &query).await
}

/// Meilisearch's refusal of a cancelation or deletion without any filter.
fn missing_filters(action: &str) -> MeiliError {
    MeiliError::invalid(
        "missing_task_filters",
        format!(
            "Query parameters to filter the tasks to {action} are missing. Available query parameters are: `uids`, `indexUids`, `statuses`, `types`, `canceledBy`, `beforeEnqueuedAt`, `afterEnqueuedAt`, `beforeStartedAt`, `afterStartedAt`, `beforeFinishedAt`, `afterFinishedAt`."
        ),
    )
}

/// `POST /tasks/cancel`: cancels, on their nodes, the node tasks of every matching task
/// still enqueued or processing; the `taskCancelation` task succeeds when every node's
/// cancelation did.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, MeiliError> {
    let enqueued_at_ms = miroir_proto::time::now_ms();
    let matched = matched_by_filters(&state, &caller, &params, "cancel").await?;
    let targets: Vec<&pb::Task> = matched
        .iter()
        .filter(|(_, view)| matches!(view["status"].as_str(), Some("enqueued" | "processing")))
        .map(|(task, _)| task)
        .collect();
    let mut per_node: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for task in &targets {
        for node_task in &task.node_tasks {
            per_node
                .entry(node_task.node_id.as_str())
                .or_default()
                .push(node_task.node_task_uid);
        }
    }
    let calls = per_node
        .into_iter()
        .map(|(node_id, uids)| {
            let list: Vec<String> = uids.iter().map(u64::to_string).collect();
            (
                node_id.to_owned(),
                format!("/tasks/cancel?uids={}", list.join(",")),
            )
        })
        .collect();
    let details = json!({
        "matchedTasks": matched.len(),
        "canceledTasks": null,
        "originalFilter": format!("?{}", raw.unwrap_or_default()),
    });
    let request = pb::CreateTaskRequest {
        index_uid: None,
        task_type: "taskCancelation".into(),
        details_json: details.to_string(),
        enqueued_at_ms,
        cancels: targets.iter().map(|t| t.uid).collect(),
        ..Default::default()
    };
    let task = record_on_nodes(&state, request, calls, "the cancelation").await?;
    Ok((StatusCode::OK, Json(tasks::summary(&task))).into_response())
}

/// Asks every node of the fleet for `POST path` and records one client task (of
/// `index_uid`, if any) over their tasks: it succeeds when all of theirs did.
pub(super) async fn on_every_node(
    state: &AppState,
    index_uid: Option<&str>,
    path: &str,
    task_type: &str,
    details: Value,
) -> Result<Response, MeiliError> {
    let enqueued_at_ms = miroir_proto::time::now_ms();
    let topology = state.topology.current();
    // Before a topology with nodes is known, "every node" would be none.
    if topology.nodes.is_empty() {
        return Err(MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_not_ready",
            ErrorType::System,
            "the gateway knows no node of the fleet yet",
        ));
    }
    let calls = topology
        .nodes
        .iter()
        .map(|node| (node.id.clone(), path.to_owned()))
        .collect();
    let what = format!("`POST {path}`");
    let request = pb::CreateTaskRequest {
        index_uid: index_uid.map(str::to_owned),
        task_type: task_type.to_owned(),
        details_json: if details.is_null() {
            String::new()
        } else {
            details.to_string()
        },
        enqueued_at_ms,
        ..Default::default()
    };
    let task = record_on_nodes(state, request, calls, &what).await?;
    Ok((StatusCode::ACCEPTED, Json(tasks::summary(&task))).into_response())
}

/// Records the task `request` describes around [`enqueue_on_nodes`]: reserved before
/// any node is asked, then given the node tasks (and the error, if some node did not
/// take it). See `write_task`.
async fn record_on_nodes(
    state: &AppState,
    request: pb::CreateTaskRequest,
    calls: Vec<(String, String)>,
    what: &str,
) -> Result<pb::Task, MeiliError> {
    let reserved = crate::write::task::reserve(state, request).await?;
    let (node_tasks, error_json) = enqueue_on_nodes(state, calls, what).await;
    let error: Option<Value> =
        (!error_json.is_empty()).then(|| serde_json::from_str(&error_json).unwrap_or(Value::Null));
    Ok(crate::write::task::attach(state, reserved, node_tasks, error.as_ref()).await)
}

/// POSTs `path` to each node named in `calls` and returns the node tasks they enqueued,
/// with, when some node did not (unreachable, gone from the fleet, or refusing), the
/// `miroir_node_unavailable` error (JSON) that fails the client task naming them.
async fn enqueue_on_nodes(
    state: &AppState,
    calls: Vec<(String, String)>,
    what: &str,
) -> (Vec<pb::NodeTask>, String) {
    let topology = state.topology.current();
    let mut running = Vec::new();
    for (node_id, path) in calls {
        let address = topology
            .nodes
            .iter()
            .find(|n| n.id == node_id)
            .map(|n| n.address.clone());
        let client = state.nodes.clone();
        running.push((node_id.clone(), async move {
            let Some(address) = address else {
                return Err(format!("node `{node_id}` is no longer in the fleet"));
            };
            match client
                .call(&node_id, &address, Method::POST, &path, None)
                .await
            {
                Ok(answer) if answer.status < 300 => answer.body["taskUid"]
                    .as_u64()
                    .map(|uid| pb::NodeTask {
                        node_id: node_id.clone(),
                        node_task_uid: uid,
                    })
                    .ok_or_else(|| {
                        format!("node `{node_id}` answered without a task: {}", answer.body)
                    }),
                Ok(answer) => Err(format!(
                    "node `{node_id}` answered {}: {}",
                    answer.status, answer.body
                )),
                Err(unreachable) => Err(format!("node `{node_id}`: {}", unreachable.detail)),
            }
        }));
    }
    let mut node_tasks = Vec::new();
    let mut errors = Vec::new();
    for (node_id, result) in miroir_proto::fan_out::join_tagged(running).await {
        let result = result.unwrap_or_else(|error| {
            Err(format!(
                "node `{node_id}`: failed inside the gateway: {error}"
            ))
        });
        match result {
            Ok(node_task) => node_tasks.push(node_task),
            Err(error) => errors.push(error),
        }
    }
    let error_json = if errors.is_empty() {
        String::new()
    } else {
        MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_node_unavailable",
            ErrorType::System,
            format!("{what} could not reach every node: {}", errors.join("; ")),
        )
        .body()
        .to_string()
    };
    (node_tasks, error_json)
}

/// `DELETE /tasks`: forgets every matching finished task (enqueued and processing ones
/// stay, as in Meilisearch). Nodes keep their own task history.
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, MeiliError> {
    let enqueued_at_ms = miroir_proto::time::now_ms();
    let matched = matched_by_filters(&state, &caller, &params, "delete").await?;
    let finished: Vec<u32> = matched
        .iter()
        .filter(|(_, view)| view["status"].as_str().is_some_and(tasks::is_final))
        .map(|(task, _)| task.uid)
        .collect();
    let deleted = state
        .control_plane
        .delete_tasks(pb::DeleteTasksRequest { uids: finished })
        .await
        .map_err(|s| MeiliError::from_status(&s))?
        .deleted;
    let details = json!({
        "matchedTasks": matched.len(),
        "deletedTasks": deleted,
        "originalFilter": format!("?{}", raw.unwrap_or_default()),
    });
    let request = pb::CreateTaskRequest {
        index_uid: None,
        task_type: "taskDeletion".into(),
        details_json: details.to_string(),
        enqueued_at_ms,
        ..Default::default()
    };
    let task = record_task(&state, request).await?;
    Ok((StatusCode::OK, Json(tasks::summary(&task))).into_response())
}
