//! Indexes: lifecycle, primary key, swaps and renames, settings.

use super::*;

pub(super) async fn create_index(
    api: &AdminApi,
    request: Request<pb::CreateIndexRequest>,
) -> Result<Response<pb::IndexResponse>, Status> {
    let request = request.into_inner();
    let layout = IndexLayout {
        shard_count: request
            .shard_count
            .unwrap_or(api.state.config.default_shards),
        replication_factor: request
            .replication_factor
            .unwrap_or(api.state.config.default_replication_factor),
    };
    let (index, topology) = api
        .state
        .commit(|t, now| {
            let index = topology::create_index(t, &request.uid, request.primary_key, layout, now)?;
            let reason = format!(
                "index {} created with {} shards, replication factor {}",
                index.uid, index.shard_count, index.replication_factor
            );
            Ok((index, reason))
        })
        .await?;
    let pk = index.primary_key.clone();
    let uid = index.uid.clone();
    let steps = vec![
        (
            http::Method::POST,
            "/indexes".to_owned(),
            Some(json!({"uid": uid, "primaryKey": pk})),
        ),
        (
            http::Method::PATCH,
            format!("/indexes/{uid}/settings"),
            Some(Value::Object(
                miroir_proto::settings::initial_node_settings(),
            )),
        ),
    ];
    let task = apply_on_nodes(
        &api.state,
        &topology,
        &index,
        "indexCreation",
        json!({"primaryKey": pk}),
        steps,
    )
    .await?;
    // The hidden settings above are sent with the creation so the first write finds
    // `_miroir_shard` filterable; this change verifies and commits them as version 1.
    if let crate::state::LeadershipStatus::Leader { token, .. } = api.state.leadership() {
        api.state
            .store
            .enqueue_settings_change(token, &uid, "{}", crate::state::now_ms())
            .await?;
        api.state.settings_wake.notify_one();
    }
    Ok(index_response(index, &topology, Some(task)))
}

pub(super) async fn list_indexes(
    api: &AdminApi,
    _request: Request<pb::ListIndexesRequest>,
) -> Result<Response<pb::ListIndexesResponse>, Status> {
    let topology = api.state.topology();
    Ok(Response::new(pb::ListIndexesResponse {
        indexes: topology.indexes.clone(),
        topology_version: topology.version,
    }))
}

pub(super) async fn get_index(
    api: &AdminApi,
    request: Request<pb::GetIndexRequest>,
) -> Result<Response<pb::IndexResponse>, Status> {
    let uid = request.into_inner().uid;
    let topology = api.state.topology();
    let index = index_of(&topology, &uid)?;
    Ok(Response::new(pb::IndexResponse {
        index: Some(index),
        topology_version: topology.version,
        task: None,
    }))
}

pub(super) async fn delete_index(
    api: &AdminApi,
    request: Request<pb::DeleteIndexRequest>,
) -> Result<Response<pb::IndexResponse>, Status> {
    let uid = request.into_inner().uid;
    let ((index, moving), topology) = api
        .state
        .commit(|t, now| {
            // Nodes a move is copying to or still cleaning hold documents too.
            let moving: Vec<String> = t
                .moves
                .iter()
                .filter(|m| m.index_uid == uid)
                .flat_map(|m| m.old_owners.iter().chain(&m.new_owners).cloned())
                .collect();
            let index = topology::delete_index(t, &uid)?;
            crate::operations::forget_index(t, &uid, now);
            Ok(((index, moving), format!("index {uid} deleted")))
        })
        .await?;
    let steps = vec![(http::Method::DELETE, format!("/indexes/{uid}"), None)];
    let mut nodes = topology::nodes_of_index(&index);
    nodes.extend(moving);
    nodes.sort();
    nodes.dedup();
    let task = apply_plan(
        &api.state,
        &topology,
        Some(uid.clone()),
        "indexDeletion",
        json!({"deletedDocuments": null}),
        nodes.into_iter().map(|n| (n, steps.clone())).collect(),
    )
    .await?;
    Ok(index_response(index, &topology, Some(task)))
}

pub(super) async fn update_index(
    api: &AdminApi,
    request: Request<pb::UpdateIndexRequest>,
) -> Result<Response<pb::IndexResponse>, Status> {
    let request = request.into_inner();
    let topology = api.state.topology();
    let index = index_of(&topology, &request.uid)?;
    let mut details = json!({"primaryKey": request.primary_key});
    if let Some(new_uid) = request.new_uid {
        details["oldIndexUid"] = json!(request.uid);
        details["newIndexUid"] = json!(new_uid);
        return api
            .rename_index(&topology, index, new_uid, request.primary_key, details)
            .await;
    }
    let Some(primary_key) = request.primary_key else {
        // Nothing to change: a task that succeeds, as Meilisearch's does.
        let task = apply_plan(
            &api.state,
            &topology,
            Some(index.uid.clone()),
            "indexUpdate",
            details,
            Vec::new(),
        )
        .await?;
        return Ok(index_response(index, &topology, Some(task)));
    };
    // Meilisearch keeps a key once documents exist under it.
    if let Some(current) = index.primary_key.as_deref()
        && current != primary_key
    {
        let refusal = match stored_documents(&api.state, &topology, &index).await {
            Ok(0) => None,
            Ok(_) => Some(
                ControlPlaneError::PrimaryKeyAlreadyExists(format!(
                    "Index already has a primary key: `{current}`."
                ))
                .meili_body(),
            ),
            Err(error) => Some(error),
        };
        if let Some(error) = refusal {
            let task = failed_task(
                &api.state,
                Some(index.uid.clone()),
                "indexUpdate",
                details,
                error,
            )
            .await?;
            return Ok(index_response(index, &topology, Some(task)));
        }
    }
    let (index, topology) = api
        .state
        .commit(|t, _| {
            let index = topology::set_primary_key(t, &request.uid, &primary_key, true)?;
            Ok((
                index,
                format!("index {} primary key set to {primary_key}", request.uid),
            ))
        })
        .await?;
    let steps = vec![(
        http::Method::PATCH,
        format!("/indexes/{}", index.uid),
        Some(json!({"primaryKey": primary_key})),
    )];
    let task = apply_on_nodes(&api.state, &topology, &index, "indexUpdate", details, steps).await?;
    Ok(index_response(index, &topology, Some(task)))
}

pub(super) async fn set_primary_key(
    api: &AdminApi,
    request: Request<pb::SetPrimaryKeyRequest>,
) -> Result<Response<pb::IndexResponse>, Status> {
    let request = request.into_inner();
    let current = api.state.topology();
    if let Some(index) = current.indexes.iter().find(|i| i.uid == request.uid)
        && index.primary_key.as_deref() == Some(request.primary_key.as_str())
    {
        // Already recorded: no new topology version.
        return Ok(Response::new(pb::IndexResponse {
            index: Some(index.clone()),
            topology_version: current.version,
            task: None,
        }));
    }
    let (index, topology) = api
        .state
        .commit(|t, _| {
            let index = topology::set_primary_key(t, &request.uid, &request.primary_key, false)?;
            Ok((
                index,
                format!(
                    "index {} primary key recorded as {}",
                    request.uid, request.primary_key
                ),
            ))
        })
        .await?;
    Ok(Response::new(pb::IndexResponse {
        index: Some(index),
        topology_version: topology.version,
        task: None,
    }))
}

pub(super) async fn swap_indexes(
    api: &AdminApi,
    request: Request<pb::SwapIndexesRequest>,
) -> Result<Response<pb::SwapIndexesResponse>, Status> {
    let swaps: Vec<topology::Swap> = request
        .into_inner()
        .swaps
        .into_iter()
        .map(|s| topology::Swap {
            first: s.first,
            second: s.second,
            rename: s.rename,
        })
        .collect();
    let details = json!({"swaps": swaps
        .iter()
        .map(|s| json!({"indexes": [s.first, s.second], "rename": s.rename}))
        .collect::<Vec<_>>()});
    let before = api.state.topology();
    let mut check = (*before).clone();
    // Meilisearch enqueues these refusals as failed tasks.
    let refused = match topology::swap_indexes(&mut check, &swaps) {
        Err(
            error
            @ (ControlPlaneError::IndexNotFound(_) | ControlPlaneError::IndexAlreadyExists(_)),
        ) => Some(error),
        Err(other) => return Err(other.into()),
        Ok(()) => None,
    };
    if let Some(error) = refused {
        let task = failed_task(&api.state, None, "indexSwap", details, error.meili_body()).await?;
        return Ok(Response::new(pb::SwapIndexesResponse {
            topology_version: before.version,
            task: Some(task),
        }));
    }
    // A swap on the nodes needs both indexes on each of them; a rename, the first.
    let mut plan: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for swap in &swaps {
        let (a, b) = (&swap.first, &swap.second);
        let find = |uid: &str| before.indexes.iter().find(|i| i.uid == uid);
        let Some(first) = find(a) else {
            continue;
        };
        let nodes = topology::nodes_of_index(first);
        if let Some(second) = find(b)
            && nodes != topology::nodes_of_index(second)
        {
            return Err(ControlPlaneError::FailedPrecondition(format!(
                "indexes `{a}` and `{b}` are not held by the same nodes ({:?} and {:?}); Miroir swaps only indexes laid out on the same nodes",
                nodes,
                topology::nodes_of_index(second)
            ))
            .into());
        }
        for node in nodes {
            plan.entry(node)
                .or_default()
                .push(json!({"indexes": [a, b], "rename": swap.rename}));
        }
    }
    let plan: Vec<(String, Vec<Step>)> = plan
        .into_iter()
        .map(|(node, swaps)| {
            let step = (
                http::Method::POST,
                "/swap-indexes".to_owned(),
                Some(Value::Array(swaps)),
            );
            (node, vec![step])
        })
        .collect();
    let names: Vec<String> = swaps
        .iter()
        .map(|s| {
            let arrow = if s.rename { "->" } else { "<->" };
            format!("{}{arrow}{}", s.first, s.second)
        })
        .collect();
    let reason = format!("indexes swapped: {}", names.join(", "));
    let uids: Vec<String> = swaps
        .iter()
        .flat_map(|s| [s.first.clone(), s.second.clone()])
        .collect();
    // Writes to every index of the swap are held meanwhile (`with_writes_held`): each
    // node swaps between the writes routed by the old names and those routed by the
    // new ones, and a renamed index gets no write by its old name.
    let swap = async {
        let task = apply_plan(&api.state, &before, None, "indexSwap", details, plan).await?;
        if !task.error_json.is_empty() {
            return Ok(pb::SwapIndexesResponse {
                topology_version: before.version,
                task: Some(task),
            });
        }
        let renames = IndexRenames {
            pairs: topology::swap_renames(&swaps),
            keep_task: Some(task.uid),
        };
        let (_, topology) = api
            .state
            .commit_renaming(&renames, |t, _| {
                topology::hold_writes(t, &uids, false);
                topology::swap_indexes(t, &swaps)?;
                Ok(((), reason))
            })
            .await?;
        Ok(pb::SwapIndexesResponse {
            topology_version: topology.version,
            task: Some(task),
        })
    };
    Ok(Response::new(api.with_writes_held(&uids, swap).await?))
}

pub(super) async fn update_index_settings(
    api: &AdminApi,
    request: Request<pb::UpdateIndexSettingsRequest>,
) -> Result<Response<pb::IndexResponse>, Status> {
    let request = request.into_inner();
    let settings: serde_json::Map<String, Value> =
        match serde_json::from_str(&request.settings_json) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(ControlPlaneError::InvalidArgument(
                    "settings_json must be a JSON object".into(),
                )
                .into());
            }
        };
    let topology = api.state.topology();
    let index = index_of(&topology, &request.uid)?;
    let details = Value::Object(miroir_proto::settings::task_details(&settings));
    let patch = Value::Object(settings);
    let task = crate::services::task::record_settings_change(
        &api.state,
        pb::CreateTaskRequest {
            index_uid: Some(index.uid.clone()),
            task_type: "settingsUpdate".to_owned(),
            node_tasks: Vec::new(),
            details_json: details.to_string(),
            enqueued_at_ms: crate::state::now_ms(),
            error_json: String::new(),
            cancels: Vec::new(),
            custom_metadata: None,
            reserve: false,
        },
        patch.to_string(),
    )
    .await?;
    api.state.settings_wake.notify_one();
    Ok(index_response(index, &topology, Some(task)))
}

pub(super) async fn get_index_settings(
    api: &AdminApi,
    request: Request<pb::GetIndexSettingsRequest>,
) -> Result<Response<pb::IndexSettingsReport>, Status> {
    let uid = request.into_inner().uid;
    Ok(Response::new(
        crate::reconcilers::settings::check_index(&api.state, &uid, false).await?,
    ))
}

pub(super) async fn repair_index_settings(
    api: &AdminApi,
    request: Request<pb::GetIndexSettingsRequest>,
) -> Result<Response<pb::IndexSettingsReport>, Status> {
    let uid = request.into_inner().uid;
    if !matches!(
        api.state.leadership(),
        crate::state::LeadershipStatus::Leader { .. }
    ) {
        return Err(ControlPlaneError::NotLeader("repairs are run by the leader".into()).into());
    }
    let _serialized = api.state.settings_lock.lock().await;
    Ok(Response::new(
        crate::reconcilers::settings::check_index(&api.state, &uid, true).await?,
    ))
}

impl AdminApi {
    /// Runs `work` (a rename or swap on the nodes, then its commit) while every gateway
    /// holds writes to the indexes `uids` ([`topology::hold_writes`]): once every gateway
    /// serves the hold, no write to them is in flight, so each node takes the change
    /// between the writes before it and those after, as one Meilisearch orders its queue.
    /// `work`'s commit releases the hold it renames; whatever is still held is released
    /// after, whether `work` succeeded or not.
    async fn with_writes_held<T>(
        &self,
        uids: &[String],
        work: impl std::future::Future<Output = Result<T, ControlPlaneError>>,
    ) -> Result<T, ControlPlaneError> {
        // Keeps the shard-move reconciler from taking this hold for a stale one.
        let _holding = self.state.write_holds_lock.lock().await;
        let names = uids.join("`, `");
        let (_, held) = self
            .state
            .commit(|t, _| {
                topology::hold_writes(t, uids, true);
                Ok(((), format!("writes to `{names}` held for a rename or swap")))
            })
            .await?;
        let lagging = self.state.await_applied(held.version).await;
        let result = if lagging.is_empty() {
            work.await
        } else {
            Err(ControlPlaneError::Unavailable(format!(
                "gateways {lagging:?} did not hold writes to `{names}` in time (topology version {}); nothing was changed, retry",
                held.version
            )))
        };
        self.state
            .commit(|t, _| {
                topology::hold_writes(t, uids, false);
                Ok(((), format!("writes to `{names}` released")))
            })
            .await?;
        result
    }

    /// `UpdateIndex` with a new uid (and maybe a primary key): the index takes the new
    /// name on every node holding it, then in the topology with its tasks (as Meilisearch
    /// rewrites its task history). Writes to the index are held meanwhile
    /// ([`Self::with_writes_held`]), so none reaches a node by the old name after the node
    /// renamed the index (it would create an empty one). A taken name is a failed task.
    async fn rename_index(
        &self,
        topology: &pb::Topology,
        index: pb::Index,
        new_uid: String,
        primary_key: Option<String>,
        details: Value,
    ) -> Result<Response<pb::IndexResponse>, Status> {
        let mut check = topology.clone();
        match topology::rename_index(&mut check, &index.uid, &new_uid) {
            Err(error @ ControlPlaneError::IndexAlreadyExists(_)) => {
                let error = error.meili_body();
                let task = failed_task(
                    &self.state,
                    Some(index.uid.clone()),
                    "indexUpdate",
                    details,
                    error,
                )
                .await?;
                return Ok(index_response(index, topology, Some(task)));
            }
            Err(other) => return Err(other.into()),
            Ok(_) => {}
        }
        let mut body = json!({"uid": new_uid});
        if let Some(primary_key) = &primary_key {
            body["primaryKey"] = json!(primary_key);
        }
        let steps = vec![(
            http::Method::PATCH,
            format!("/indexes/{}", index.uid),
            Some(body),
        )];
        let rename = async {
            let task = apply_on_nodes(&self.state, topology, &index, "indexUpdate", details, steps)
                .await?;
            if !task.error_json.is_empty() {
                return Ok(index_response(index.clone(), topology, Some(task)));
            }
            let renames = IndexRenames {
                pairs: vec![(index.uid.clone(), new_uid.clone())],
                keep_task: Some(task.uid),
            };
            let (renamed, topology) = self
                .state
                .commit_renaming(&renames, |t, _| {
                    topology::hold_writes(t, std::slice::from_ref(&index.uid), false);
                    let mut renamed = topology::rename_index(t, &index.uid, &new_uid)?;
                    if let Some(primary_key) = &primary_key {
                        renamed = topology::set_primary_key(t, &new_uid, primary_key, true)?;
                    }
                    Ok((renamed, format!("index {} renamed {new_uid}", index.uid)))
                })
                .await?;
            Ok(index_response(renamed, &topology, Some(task)))
        };
        Ok(self
            .with_writes_held(std::slice::from_ref(&index.uid), rename)
            .await?)
    }
}

fn index_of(topology: &pb::Topology, uid: &str) -> Result<pb::Index, ControlPlaneError> {
    topology
        .indexes
        .iter()
        .find(|i| i.uid == uid)
        .cloned()
        .ok_or_else(|| ControlPlaneError::index_not_found(uid))
}

/// The answer for an index change recorded in `topology`.
fn index_response(
    index: pb::Index,
    topology: &pb::Topology,
    task: Option<pb::Task>,
) -> Response<pb::IndexResponse> {
    Response::new(pb::IndexResponse {
        index: Some(index),
        topology_version: topology.version,
        task,
    })
}

/// Runs `steps` in order on every node holding `index`, all nodes in parallel, and records
/// the client task whose outcome is the nodes' tasks.
async fn apply_on_nodes(
    state: &Arc<ServiceState>,
    topology: &pb::Topology,
    index: &pb::Index,
    task_type: &str,
    details: Value,
    steps: Vec<Step>,
) -> Result<pb::Task, ControlPlaneError> {
    let plan = topology::nodes_of_index(index)
        .into_iter()
        .map(|node| (node, steps.clone()))
        .collect();
    apply_plan(
        state,
        topology,
        Some(index.uid.clone()),
        task_type,
        details,
        plan,
    )
    .await
}

/// Runs each node's steps in order, all nodes in parallel, and records the client task
/// whose outcome is the nodes' tasks. A node that cannot be reached fails the task with
/// `miroir_node_unavailable`.
async fn apply_plan(
    state: &Arc<ServiceState>,
    topology: &pb::Topology,
    index_uid: Option<String>,
    task_type: &str,
    details: Value,
    plan: Vec<(String, Vec<Step>)>,
) -> Result<pb::Task, ControlPlaneError> {
    let enqueued_at_ms = crate::state::now_ms();
    let mut calls = tokio::task::JoinSet::new();
    for (id, steps) in plan {
        let Some(node) = topology.nodes.iter().find(|n| n.id == id) else {
            continue;
        };
        let (client, node_id, address) =
            (state.nodes.clone(), node.id.clone(), node.address.clone());
        calls.spawn(async move {
            let mut uids = Vec::new();
            for (method, path, body) in steps {
                match client
                    .enqueue(&node_id, method, format!("{address}{path}"), body)
                    .await
                {
                    Ok(uid) => uids.push(uid),
                    Err(error) => return (node_id, uids, Some(error.error)),
                }
            }
            (node_id, uids, None)
        });
    }
    let mut node_tasks = Vec::new();
    let mut first_error: Option<Value> = None;
    while let Some(joined) = calls.join_next().await {
        let (node_id, uids, error) =
            joined.map_err(|e| ControlPlaneError::Internal(format!("node call panicked: {e}")))?;
        node_tasks.extend(uids.into_iter().map(|node_task_uid| pb::NodeTask {
            node_id: node_id.clone(),
            node_task_uid,
        }));
        if let (Some(mut error), None) = (error, &first_error) {
            if let Some(message) = error.get("message").and_then(Value::as_str) {
                error["message"] = json!(format!("node `{node_id}`: {message}"));
            }
            first_error = Some(error);
        }
    }
    node_tasks.sort_by(|a, b| (&a.node_id, a.node_task_uid).cmp(&(&b.node_id, b.node_task_uid)));
    crate::services::task::record(
        state,
        pb::CreateTaskRequest {
            index_uid,
            task_type: task_type.to_owned(),
            node_tasks,
            details_json: details.to_string(),
            enqueued_at_ms,
            error_json: first_error.map(|e| e.to_string()).unwrap_or_default(),
            cancels: Vec::new(),
            custom_metadata: None,
            reserve: false,
        },
    )
    .await
}

/// Records a client task that failed before any node call, with a Meilisearch error.
async fn failed_task(
    state: &Arc<ServiceState>,
    index_uid: Option<String>,
    task_type: &str,
    details: Value,
    error: Value,
) -> Result<pb::Task, ControlPlaneError> {
    crate::services::task::record(
        state,
        pb::CreateTaskRequest {
            index_uid,
            task_type: task_type.to_owned(),
            node_tasks: Vec::new(),
            details_json: details.to_string(),
            enqueued_at_ms: crate::state::now_ms(),
            error_json: error.to_string(),
            cancels: Vec::new(),
            custom_metadata: None,
            reserve: false,
        },
    )
    .await
}

/// How many documents the nodes holding `index` hold in all (each copy counted).
async fn stored_documents(
    state: &Arc<ServiceState>,
    topology: &pb::Topology,
    index: &pb::Index,
) -> Result<u64, Value> {
    let mut calls = tokio::task::JoinSet::new();
    for id in topology::nodes_of_index(index) {
        let Some(node) = topology.nodes.iter().find(|n| n.id == id) else {
            continue;
        };
        let (client, url) = (
            state.nodes.clone(),
            format!("{}/indexes/{}/stats", node.address, index.uid),
        );
        calls.spawn(async move { client.get(&id, url).await });
    }
    let mut total = 0;
    while let Some(joined) = calls.join_next().await {
        match joined {
            Ok(Ok(stats)) => total += stats["numberOfDocuments"].as_u64().unwrap_or(0),
            Ok(Err(error)) => return Err(error.error),
            Err(e) => {
                return Err(crate::error::meili_error(
                    "internal",
                    miroir_proto::ErrorType::Internal,
                    e.to_string(),
                ));
            }
        }
    }
    Ok(total)
}
