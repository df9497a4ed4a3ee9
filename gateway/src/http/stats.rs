//! `GET /stats` and `GET /indexes/{uid}/stats`, counting each document once: inside one
//! group every document is on exactly RF nodes, so a fully live group's node counts summed
//! and divided by RF are exact.

use super::documents::SHARD_FIELD;
use super::error::{ErrorType, MeiliError};
use super::indexes::find_index;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use miroir_proto::pb::{self, GroupState};
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

async fn node_stats(state: &AppState, node: &pb::Node, uid: &str) -> Result<Value, MeiliError> {
    let unavailable = |detail: String| {
        MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_node_unavailable",
            ErrorType::System,
            detail,
        )
    };
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

/// One index's stats, as one Meilisearch would report them.
async fn index_stats(state: &AppState, index: &pb::Index) -> Result<Value, MeiliError> {
    let topology = state.topology.current();
    let live = |id: &str| topology.nodes.iter().find(|n| n.id == id && n.serves());
    let active: Vec<u32> = topology
        .groups
        .iter()
        .filter(|g| g.state == GroupState::Active as i32)
        .map(|g| g.id)
        .collect();
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
    let Some(nodes) = index
        .routing
        .iter()
        .filter(|r| active.contains(&r.group_id))
        .map(group_nodes)
        .find(|ids| ids.iter().all(|id| live(id).is_some()))
    else {
        return Err(MeiliError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "miroir_shard_unavailable",
            ErrorType::System,
            format!(
                "index `{}`: no group has every node live, so documents cannot be counted once",
                index.uid
            ),
        ));
    };
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
    let distribution: Map<String, Value> = fields
        .into_iter()
        .map(|(f, c)| (f, json!(c / rf)))
        .collect();
    let (documents, raw) = (documents / rf, sums[0] / rf);
    Ok(json!({
        "numberOfDocuments": documents,
        "rawDocumentDbSize": raw,
        "avgDocumentSize": raw.checked_div(documents).unwrap_or(0),
        "isIndexing": indexing,
        "numberOfEmbeddings": sums[1] / rf,
        "numberOfEmbeddedDocuments": sums[2] / rf,
        "fieldDistribution": distribution,
    }))
}

/// `GET /indexes/{uid}/stats`.
pub async fn one(
    State(state): State<AppState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, MeiliError> {
    let index = find_index(&state, &uid)?;
    Ok(Json(index_stats(&state, &index).await?))
}

/// `GET /stats`.
pub async fn all(
    State(state): State<AppState>,
    axum::extract::Extension(caller): axum::extract::Extension<super::auth::Caller>,
) -> Result<Json<Value>, MeiliError> {
    let topology = state.topology.current();
    let mut indexes = Map::new();
    for index in topology.indexes.iter().filter(|i| caller.sees(&i.uid)) {
        indexes.insert(index.uid.clone(), index_stats(&state, index).await?);
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
    Ok(Json(
        json!({"databaseSize": size, "usedDatabaseSize": used, "lastUpdate": last_update, "indexes": indexes}),
    ))
}
