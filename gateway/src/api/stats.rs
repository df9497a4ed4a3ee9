//! `GET /stats` and `GET /indexes/{uid}/stats`, counting each document once: the number
//! of documents is counted shard by shard on a covering set (each node asked for its
//! shards only, with the shard filter), so it stays exact during a shard move, when a
//! target already holds part of a shard and a leaver still holds its old copy. Sizes and
//! field counts are summed over a fully live group's nodes (else the live nodes of the
//! group with the most) and scaled by documents over copies seen (every document held RF
//! times outside moves). Everything within one node timeout.

use super::error::{ErrorType, MeiliError};
use super::indexes::find_index;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use http::Method;
use miroir_proto::pb;
use miroir_proto::settings::SHARD_FIELD;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// 503 `miroir_node_unavailable`: a node the figures need did not answer.
fn unavailable(detail: String) -> MeiliError {
    MeiliError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "miroir_node_unavailable",
        ErrorType::System,
        detail,
    )
}

async fn node_stats(state: &AppState, node: &pb::Node, uid: &str) -> Result<Value, MeiliError> {
    match state
        .nodes
        .call(
            &node.id,
            &node.address,
            Method::GET,
            &format!("/indexes/{uid}/stats"),
            None,
        )
        .await
    {
        Ok(answer) if answer.status == 200 => Ok(answer.body),
        Ok(answer) => Err(unavailable(format!(
            "node `{}` answered {}: {}",
            node.id, answer.status, answer.body
        ))),
        Err(e) => Err(unavailable(
            e.error()["message"].as_str().unwrap_or_default().to_owned(),
        )),
    }
}

/// The index's documents, each counted once: per covering node, the documents of the
/// shards it is asked for (`POST …/documents/fetch` with the shard filter, `limit: 0`).
async fn exact_documents(
    state: &AppState,
    index: &pb::Index,
    topology: &pb::Topology,
) -> Result<u64, MeiliError> {
    let plan = crate::read::plan::covering_set(index, topology, 0);
    if !plan.missing.is_empty() {
        return Err(MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_shard_unavailable",
            ErrorType::System,
            format!(
                "index `{}`: shards {:?} have no live replica, so documents cannot be counted",
                index.uid, plan.missing
            ),
        ));
    }
    let mut total = 0;
    for (node_id, shards) in &plan.assignments {
        let Some(node) = topology.nodes.iter().find(|n| &n.id == node_id) else {
            continue;
        };
        let body =
            json!({"filter": crate::read::scatter::with_shard_filter(None, shards), "limit": 0});
        let answer = state
            .nodes
            .call(
                &node.id,
                &node.address,
                Method::POST,
                &format!("/indexes/{}/documents/fetch", index.uid),
                Some(&body),
            )
            .await
            .map_err(|e| {
                unavailable(e.error()["message"].as_str().unwrap_or_default().to_owned())
            })?;
        // A node that cannot count its shards must not make the total silently short.
        match answer.body["total"].as_u64() {
            Some(count) if answer.status == 200 => total += count,
            _ => {
                return Err(unavailable(format!(
                    "node `{}` answered {}: {}",
                    node.id, answer.status, answer.body
                )));
            }
        }
    }
    Ok(total)
}

/// One index's stats, as one Meilisearch would report them.
async fn index_stats(state: &AppState, index: &pb::Index) -> Result<Value, MeiliError> {
    // Pinned, like every read: the copies it counts are not deleted under it.
    let (_pin, topology) = state.topology.pin();
    let index = super::indexes::index_in(&topology, &index.uid)?;
    let live = |id: &str| topology.nodes.iter().find(|n| n.id == id && n.serves());
    let active = topology.active_groups();
    let group_nodes = |routing: &pb::GroupRouting| -> Vec<String> {
        let mut ids: Vec<String> = routing
            .shards
            .iter()
            .flat_map(|s| s.read_nodes.iter().cloned())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    // Sizes from a group whose nodes are all live; else from the live nodes of the group
    // with the most, scaled below by documents counted against copies seen (an estimate,
    // as during a move). The document count is exact either way.
    let groups: Vec<Vec<String>> = index
        .routing
        .iter()
        .filter(|r| active.contains(&r.group_id))
        .map(group_nodes)
        .collect();
    let nodes: Vec<String> = match groups
        .iter()
        .find(|ids| ids.iter().all(|id| live(id).is_some()))
    {
        Some(whole) => whole.clone(),
        None => groups
            .into_iter()
            .map(|ids| ids.into_iter().filter(|id| live(id).is_some()).collect())
            .max_by_key(|ids: &Vec<String>| ids.len())
            .unwrap_or_default(),
    };
    if nodes.is_empty() {
        return Err(MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_shard_unavailable",
            ErrorType::System,
            format!("index `{}`: no live node holds it", index.uid),
        ));
    }
    let rf = u64::from(index.replication_factor.max(1));
    let (mut documents, mut indexing) = (0u64, false);
    // Raw size, embeddings, embedded documents: summed over every copy, then per copy.
    let mut sums = [0u64; 3];
    let mut fields: BTreeMap<String, u64> = BTreeMap::new();
    for id in &nodes {
        let node = live(id).expect("checked live");
        let stats = node_stats(state, node, &index.uid).await?;
        documents += stats["numberOfDocuments"].as_u64().unwrap_or(0);
        indexing |= stats["isIndexing"].as_bool().unwrap_or(false);
        for (sum, key) in sums.iter_mut().zip([
            "rawDocumentDbSize",
            "numberOfEmbeddings",
            "numberOfEmbeddedDocuments",
        ]) {
            *sum += stats[key].as_u64().unwrap_or(0);
        }
        for (field, count) in stats["fieldDistribution"].as_object().into_iter().flatten() {
            if field != SHARD_FIELD {
                *fields.entry(field.clone()).or_default() += count.as_u64().unwrap_or(0);
            }
        }
    }
    let exact = exact_documents(state, index, &topology).await?;
    // Copies held per document: RF outside moves; during a move partial and leftover
    // copies count too, so sums are scaled by what the group holds per document.
    let per_document = |sum: u64| match documents {
        0 => sum / rf,
        copies => (u128::from(sum) * u128::from(exact) / u128::from(copies)) as u64,
    };
    let distribution: Map<String, Value> = fields
        .into_iter()
        .map(|(f, c)| (f, json!(per_document(c))))
        .collect();
    let raw = per_document(sums[0]);
    Ok(json!({
        "numberOfDocuments": exact,
        "rawDocumentDbSize": raw,
        "avgDocumentSize": raw.checked_div(exact).unwrap_or(0),
        "isIndexing": indexing,
        "numberOfEmbeddings": per_document(sums[1]),
        "numberOfEmbeddedDocuments": per_document(sums[2]),
        "fieldDistribution": distribution,
    }))
}

/// The figures within one node timeout: a slow node makes the request fail with 503,
/// not wait once per node.
async fn within_node_timeout(
    state: &AppState,
    figures: impl Future<Output = Result<Value, MeiliError>>,
) -> Result<Json<Value>, MeiliError> {
    match tokio::time::timeout(state.config.node_timeout, figures).await {
        Ok(figures) => figures.map(Json),
        Err(_) => Err(unavailable(format!(
            "the nodes did not all answer within {} (--node-timeout)",
            humantime::format_duration(state.config.node_timeout)
        ))),
    }
}

/// `GET /indexes/{uid}/stats`.
pub async fn one(
    State(state): State<AppState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, MeiliError> {
    let index = find_index(&state, &uid)?;
    within_node_timeout(&state, index_stats(&state, &index)).await
}

/// `GET /stats`.
pub async fn all(
    State(state): State<AppState>,
    axum::extract::Extension(caller): axum::extract::Extension<super::auth::Caller>,
) -> Result<Json<Value>, MeiliError> {
    within_node_timeout(&state, all_stats(&state, &caller)).await
}

async fn all_stats(state: &AppState, caller: &super::auth::Caller) -> Result<Value, MeiliError> {
    let topology = state.topology.current();
    let mut indexes = Map::new();
    for index in topology.indexes.iter().filter(|i| caller.sees(&i.uid)) {
        indexes.insert(index.uid.clone(), index_stats(state, index).await?);
    }
    let (mut size, mut used, mut last_update): (u64, u64, Option<String>) = (0, 0, None);
    for node in topology.nodes.iter().filter(|n| n.serves()) {
        if let Ok(answer) = state
            .nodes
            .call(&node.id, &node.address, Method::GET, "/stats", None)
            .await
            && answer.status == 200
        {
            size += answer.body["databaseSize"].as_u64().unwrap_or(0);
            used += answer.body["usedDatabaseSize"].as_u64().unwrap_or(0);
            if let Some(update) = answer.body["lastUpdate"].as_str() {
                // RFC 3339 UTC strings compare in time order.
                last_update = Some(
                    last_update.map_or(update.to_owned(), |l: String| l.max(update.to_owned())),
                );
            }
        }
    }
    Ok(
        json!({"databaseSize": size, "usedDatabaseSize": used, "lastUpdate": last_update, "indexes": indexes}),
    )
}
