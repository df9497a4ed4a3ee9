//! Shard-routed writes (DESIGN §5): documents are grouped by shard, stamped with
//! `_miroir_shard`, sent as one batch per node, and acknowledged when every shard reached
//! quorum (a majority of its owners) in at least one group (`write_gate.rs`).

use super::auth::Caller;
use super::error::MeiliError;
use super::indexes::find_index;
use crate::state::AppState;
use crate::write::gate::{Owners, Touches, admit, lease_expired, writable_groups};
use crate::write::payload;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use http::Method;
use miroir_proto::ErrorCode;
use miroir_proto::pb::{self, NodeState};
use miroir_proto::placement::shard_for_key;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The field Miroir stamps on every document; `_miroir_*` fields are reserved.
pub use miroir_proto::settings::SHARD_FIELD;

/// A document write that failed before reaching any node: 202 and a failed task.
async fn failed_task(
    state: &AppState,
    uid: &str,
    received: usize,
    error: MeiliError,
) -> Result<Response, MeiliError> {
    let details = json!({"receivedDocuments": received, "indexedDocuments": 0});
    crate::write::task::failed_task(state, uid, "documentAdditionOrUpdate", details, error).await
}

/// Meilisearch's refusal to change an index's primary key once set.
fn primary_key_exists(current: &str) -> MeiliError {
    MeiliError::invalid(
        "index_primary_key_already_exists",
        format!("Index already has a primary key: `{current}`."),
    )
}

/// The index to write to, created through the control plane if it does not exist yet
/// (Meilisearch creates indexes on first write).
pub(super) async fn index_for_write(
    state: &AppState,
    caller: &Caller,
    uid: &str,
    primary_key: Option<&str>,
) -> Result<pb::Index, MeiliError> {
    if let Ok(index) = find_index(state, uid) {
        return Ok(index);
    }
    // As in Meilisearch, creating by writing needs the right to create.
    if !caller.allows("indexes.create", Some(uid)) {
        return Err(super::auth::forbidden());
    }
    let request = pb::CreateIndexRequest {
        uid: uid.to_owned(),
        primary_key: primary_key.map(str::to_owned),
        shard_count: None,
        replication_factor: None,
    };
    let result = state.control_plane.create_index(request).await;
    match result {
        Ok(response) => {
            state
                .topology
                .wait_for_version(response.topology_version, super::indexes::TOPOLOGY_WAIT)
                .await;
            response
                .index
                .ok_or_else(|| MeiliError::internal("no index in the answer"))
        }
        // Another gateway created it meanwhile.
        Err(status) if ErrorCode::of(&status) == ErrorCode::IndexAlreadyExists => {
            let request = pb::GetIndexRequest {
                uid: uid.to_owned(),
            };
            state
                .control_plane
                .get_index(request)
                .await
                .ok()
                .and_then(|r| r.index)
                .ok_or_else(|| MeiliError::from_status(&status))
        }
        Err(status) => Err(MeiliError::from_status(&status)),
    }
}

/// `POST /indexes/{uid}/documents` (replace).
pub async fn replace(
    state: State<AppState>,
    caller: Extension<Caller>,
    uid: Path<String>,
    params: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, MeiliError> {
    write(state, caller, uid, params, headers, body, Method::POST).await
}

/// `PUT /indexes/{uid}/documents` (update: merge fields).
pub async fn update(
    state: State<AppState>,
    caller: Extension<Caller>,
    uid: Path<String>,
    params: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, MeiliError> {
    write(state, caller, uid, params, headers, body, Method::PUT).await
}

/// Batches at least this large are parsed and routed on the blocking pool.
const OFF_THREAD_BYTES: usize = 1 << 20;

/// Runs `work` here for a small batch, or on the blocking pool for one of `size` bytes at
/// least [`OFF_THREAD_BYTES`]: an HTTP thread serves many connections, and parsing a
/// 100 MiB batch must not hold up their searches.
async fn off_thread<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, MeiliError> {
    if size < OFF_THREAD_BYTES {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| MeiliError::internal(format!("parsing the batch failed: {error}")))
}

/// The positions of `documents` by the shard their `pk` value routes them to, or the
/// first document without a valid id.
async fn by_shard(
    documents: &Arc<Vec<bytes::Bytes>>,
    pk: &str,
    shard_count: u32,
    size: usize,
) -> Result<Result<BTreeMap<u32, Vec<usize>>, (usize, MeiliError)>, MeiliError> {
    let (documents, pk) = (documents.clone(), pk.to_owned());
    off_thread(size, move || {
        let mut by_shard: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (position, document) in documents.iter().enumerate() {
            let id = payload::document_id(document, &pk).map_err(|e| (position, e))?;
            let shard = shard_for_key(&id, shard_count).0;
            by_shard.entry(shard).or_default().push(position);
        }
        Ok(by_shard)
    })
    .await
}

/// 503 `miroir_index_changed`: what the name names kept changing while a write waited.
fn index_changed(uid: &str) -> MeiliError {
    MeiliError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "miroir_index_changed",
        super::error::ErrorType::System,
        format!(
            "index `{uid}` was renamed or swapped several times while this write waited for it; retry"
        ),
    )
}

async fn write(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(uid): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
    method: Method,
) -> Result<Response, MeiliError> {
    let enqueued_at_ms = miroir_proto::time::now_ms();
    // Checked before the body is read (a lapsed lease answers at once), and again with
    // the cutover hold once the shards are known.
    if !state.topology.lease.is_valid() {
        return Err(lease_expired());
    }
    // Meilisearch 1.50 (checked before the body is read, as the query is): only documents that exist already are updated; still an
    // addition task, and still the index created if missing.
    let skip_creation = match params.get("skipCreation") {
        None => None,
        Some(skip) if skip.eq_ignore_ascii_case("true") => Some(true),
        Some(skip) if skip.eq_ignore_ascii_case("false") => Some(false),
        Some(other) => {
            return Err(MeiliError::invalid(
                "invalid_skip_creation",
                format!("skipCreation must be either `true` or `false`. Found: `{other}`"),
            ));
        }
    };
    let body = payload::collect(body, &headers, state.config.payload_size_limit).await?;
    let size = body.len();
    let documents = {
        let (headers, params) = (headers.clone(), params.clone());
        off_thread(size, move || {
            let documents = payload::parse(&headers, &body, &params)?;
            for document in &documents {
                if let Some(field) = payload::fields(document)?
                    .keys()
                    .find(|k| k.starts_with("_miroir_"))
                {
                    return Err(MeiliError::invalid(
                        "miroir_reserved_field",
                        format!(
                            "The field `{field}` is reserved by Miroir: fields starting with `_miroir_` cannot be written."
                        ),
                    ));
                }
            }
            Ok(documents)
        })
        .await??
    };
    let custom_metadata = params.get("customMetadata").cloned();
    let query_pk = params.get("primaryKey").map(String::as_str);
    let received = documents.len();
    let documents = Arc::new(documents);
    // A rename or swap may change what `uid` names while the write waits for its hold
    // (`admit`): it is then routed again, by the index the name names now.
    let mut attempts = 0;
    let (index, topology, pk, by_shard, shards, _in_flight) = loop {
        let index = index_for_write(&state, &caller, &uid, query_pk).await?;
        let pk = match (index.primary_key.as_deref(), query_pk) {
            (Some(pk), Some(asked)) if asked != pk => {
                let error = primary_key_exists(pk);
                return failed_task(&state, &uid, documents.len(), error).await;
            }
            (Some(pk), _) => pk.to_owned(),
            // Nothing to route and nothing to infer from: Meilisearch accepts an empty batch
            // and leaves the index without a primary key.
            (None, None) if documents.is_empty() => String::new(),
            (None, asked) => {
                let pk = match asked
                    .map(str::to_owned)
                    .map_or_else(|| payload::infer_primary_key(documents.first()), Ok)
                {
                    Ok(pk) => pk,
                    Err(error) => return failed_task(&state, &uid, documents.len(), error).await,
                };
                // Recorded before any node sees a document, so every gateway routes by it.
                let request = pb::SetPrimaryKeyRequest {
                    uid: uid.clone(),
                    primary_key: pk.clone(),
                };
                match state.control_plane.set_primary_key(request).await {
                    Ok(_) => pk,
                    Err(status)
                        if ErrorCode::of(&status) == ErrorCode::IndexPrimaryKeyAlreadyExists =>
                    {
                        let error = MeiliError::from_status(&status);
                        return failed_task(&state, &uid, documents.len(), error).await;
                    }
                    Err(status) => return Err(MeiliError::from_status(&status)),
                }
            }
        };
        let by_shard = match by_shard(&documents, &pk, index.shard_count, size).await? {
            Ok(by_shard) => by_shard,
            // All or nothing, as Meilisearch fails the whole batch.
            Err((position, error)) => {
                return failed_task(&state, &uid, position.max(1), error).await;
            }
        };
        let shards: BTreeSet<u32> = by_shard.keys().copied().collect();
        let in_flight = admit(&state, &uid, Touches::Shards(&shards)).await?;
        let topology = state.topology.current();
        match super::indexes::index_in(&topology, &uid) {
            Ok(now)
                if now.shard_count == index.shard_count
                    && now.primary_key.as_deref().unwrap_or_default() == pk =>
            {
                let index = now.clone();
                break (index, topology, pk, by_shard, shards, in_flight);
            }
            _ if attempts < 3 => attempts += 1,
            _ => return Err(index_changed(&uid)),
        }
    };
    // Recorded before any node sees the write: if the control plane is out of reach
    // now, nothing is written; once nodes took it, there is a task to follow.
    let reserved = crate::write::task::reserve(
        &state,
        pb::CreateTaskRequest {
            index_uid: Some(uid.clone()),
            task_type: "documentAdditionOrUpdate".into(),
            node_tasks: Vec::new(),
            details_json: json!({"receivedDocuments": received, "indexedDocuments": null})
                .to_string(),
            enqueued_at_ms,
            error_json: String::new(),
            cancels: Vec::new(),
            custom_metadata: custom_metadata.clone(),
            reserve: true,
        },
    )
    .await?;
    let owners = Owners::of(&index, &topology, &shards);
    let writable = writable_groups(&topology);
    // node → the documents it must receive, with their shard.
    let mut batches: BTreeMap<String, Vec<(usize, u32)>> = BTreeMap::new();
    for routing in index
        .routing
        .iter()
        .filter(|r| writable.contains(&r.group_id))
    {
        for (&shard, positions) in &by_shard {
            let Some(route) = routing.shards.get(shard as usize) else {
                continue;
            };
            for node in &route.write_nodes {
                batches
                    .entry(node.clone())
                    .or_default()
                    .extend(positions.iter().map(|&p| (p, shard)));
            }
        }
    }
    let mut path = miroir_proto::node_paths::documents_with_primary_key(&uid, &pk);
    if let Some(skip) = skip_creation {
        path.push_str(&format!("&skipCreation={skip}"));
    }
    let mut calls = Vec::new();
    for (node_id, mut picks) in batches {
        let Some(node) = topology.nodes.iter().find(|n| n.id == node_id) else {
            continue;
        };
        if node.state == NodeState::Failed as i32 {
            continue;
        }
        // The client's order, so a document repeated in one batch ends as its last copy.
        picks.sort_unstable();
        let batch = payload::node_body(documents.clone(), picks);
        let (client, address, path, method) = (
            state.nodes.clone(),
            node.address.clone(),
            path.clone(),
            method.clone(),
        );
        calls.push((node_id.clone(), async move {
            client
                .send(&node_id, &address, method, &path, Some(batch))
                .await
        }));
    }
    let mut node_tasks = Vec::new();
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut node_errors: Vec<Value> = Vec::new();
    for (node_id, answer) in miroir_proto::fan_out::join_tagged(calls).await {
        let answer =
            answer.unwrap_or_else(|error| Err(crate::nodes::failed_inside(&node_id, &error)));
        match answer {
            Ok(answer) if answer.status == 202 => match answer.body["taskUid"].as_u64() {
                Some(uid) => {
                    node_tasks.push(pb::NodeTask {
                        node_id: node_id.clone(),
                        node_task_uid: uid,
                    });
                    acked.insert(node_id);
                }
                None => node_errors.push(answer.body),
            },
            Ok(answer) => node_errors.push(answer.body),
            Err(unreachable) => node_errors.push(unreachable.error()),
        }
    }
    node_tasks.sort_by(|a, b| (&a.node_id, a.node_task_uid).cmp(&(&b.node_id, b.node_task_uid)));
    let missed = match owners.require_quorum(&uid, &acked, &node_errors) {
        Ok(missed) => missed,
        Err(error) => {
            // The reserved task fails with the error the client gets now.
            crate::write::task::attach(&state, reserved, node_tasks, Some(&error.body())).await;
            return Err(error);
        }
    };
    let task = crate::write::task::attach(&state, reserved, node_tasks, None).await;
    let mut response = crate::write::task::accepted(&task);
    crate::write::gate::mark_missed(&mut response, &uid, &missed);
    Ok(response)
}
