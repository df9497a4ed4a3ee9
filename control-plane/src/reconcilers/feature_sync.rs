//! Experimental-feature sync: keeps every active node's experimental features (Meilisearch's
//! `/experimental-features`) equal to those clients set through Miroir
//! (`Topology.experimental_features`). A feature no client set is left as each node has
//! it. Runs right after each change, and with every key sync pass (on its interval and
//! when a node becomes active), so a node that joins or drifts is brought in line.

use crate::error::{ControlPlaneError, Result};
use crate::state::{LeadershipStatus, ServiceState};
use http::Method;
use miroir_proto::pb::{self, NodeState};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The node route.
pub const ROUTE: &str = "/experimental-features";

/// `node`'s experimental-features route.
fn url(node: &pb::Node) -> String {
    format!("{}{ROUTE}", node.address.trim_end_matches('/'))
}

/// The members of `wanted` whose value differs from the node's answer `current`.
pub fn differing(wanted: &BTreeMap<String, bool>, current: &Value) -> Map<String, Value> {
    wanted
        .iter()
        .filter(|(feature, on)| {
            current.get(feature.as_str()).and_then(Value::as_bool) != Some(**on)
        })
        .map(|(feature, on)| (feature.clone(), json!(on)))
        .collect()
}

/// Brings one node's features in line; answers the features it changed.
async fn sync_node(
    state: &ServiceState,
    node: &pb::Node,
    wanted: &BTreeMap<String, bool>,
) -> Result<Vec<String>, String> {
    let url = url(node);
    let current = state
        .nodes
        .get(&node.id, url.clone())
        .await
        .map_err(|e| e.error.to_string())?;
    let patch = differing(wanted, &current);
    if patch.is_empty() {
        return Ok(Vec::new());
    }
    let changed = patch.keys().cloned().collect();
    match state
        .nodes
        .send(&node.id, Method::PATCH, url, Some(Value::Object(patch)))
        .await
    {
        Ok((200..=299, _)) => Ok(changed),
        Ok((status, body)) => Err(format!("PATCH {ROUTE}: {status} {body}")),
        Err(error) => Err(error.error.to_string()),
    }
}

/// One pass over every active node, in parallel; failures are logged and retried on the
/// next pass. Answers the nodes that could not be brought in line.
pub async fn sync_all(state: &Arc<ServiceState>) -> Vec<String> {
    if !matches!(state.leadership(), LeadershipStatus::Leader { .. }) {
        return Vec::new();
    }
    let topology = state.topology();
    if topology.experimental_features.is_empty() {
        return Vec::new();
    }
    let results = super::on_active_nodes(&topology, "feature_sync", |node| {
        let (state, topology) = (state.clone(), topology.clone());
        async move { sync_node(&state, &node, &topology.experimental_features).await }
    })
    .await;
    let mut failed = Vec::new();
    for (node, result) in results {
        match result {
            Ok(changed) if !changed.is_empty() => {
                tracing::info!(
                    node,
                    ?changed,
                    "node experimental features brought in line with the topology"
                )
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(node, %error, "could not sync the node's experimental features; retrying next pass");
                failed.push(node);
            }
        }
    }
    failed
}

/// `UpdateExperimentalFeatures`: the first active node that answers checks and applies
/// `patch` (Meilisearch's own validation and feature names); a refusal is answered as
/// is. Accepted, the features it sets are recorded and every other active node is
/// brought in line before the answer. Should recording fail, that node is set back.
pub async fn update(
    state: &Arc<ServiceState>,
    patch: Value,
) -> Result<pb::ExperimentalFeaturesResponse> {
    if !matches!(state.leadership(), LeadershipStatus::Leader { .. }) {
        return Err(ControlPlaneError::NotLeader(
            "experimental features are changed by the leader".into(),
        ));
    }
    let _serialized = state.features_lock.lock().await;
    let topology = state.topology();
    let mut last_error = String::from("no node is active");
    let mut checked = None;
    for node in topology
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Active as i32)
    {
        let url = url(node);
        let before = match state.nodes.get(&node.id, url.clone()).await {
            Ok(before) => before,
            Err(error) => {
                last_error = format!("node `{}`: {}", node.id, error.error);
                continue;
            }
        };
        match state
            .nodes
            .send(&node.id, Method::PATCH, url, Some(patch.clone()))
            .await
        {
            Ok((status, body)) if status < 500 => {
                checked = Some((node, before, status, body));
                break;
            }
            Ok((status, body)) => {
                last_error = format!("node `{}` answered {status}: {body}", node.id)
            }
            Err(error) => last_error = format!("node `{}`: {}", node.id, error.error),
        }
    }
    let Some((node, before, status, body)) = checked else {
        return Err(ControlPlaneError::FailedPrecondition(format!(
            "no active node could apply the experimental features ({last_error})"
        )));
    };
    let answer = |topology_version| pb::ExperimentalFeaturesResponse {
        status: u32::from(status),
        body_json: body.to_string(),
        topology_version,
    };
    if status >= 300 {
        return Ok(answer(topology.version));
    }
    let set: BTreeMap<String, bool> = patch
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(feature, on)| Some((feature.clone(), on.as_bool()?)))
        .collect();
    let mut version = topology.version;
    if set
        .iter()
        .any(|(feature, on)| topology.experimental_features.get(feature) != Some(on))
    {
        let listed: Vec<String> = set.iter().map(|(f, on)| format!("{f}={on}")).collect();
        let committed = state
            .commit(|t, _| {
                t.experimental_features.extend(set.clone());
                Ok((
                    (),
                    format!("experimental features set: {}", listed.join(", ")),
                ))
            })
            .await;
        match committed {
            Ok((_, topology)) => version = topology.version,
            Err(error) => {
                // Not recorded: the node that took the change gets its former values back.
                let url = url(node);
                let undo: Map<String, Value> = set
                    .keys()
                    .filter_map(|f| Some((f.clone(), before.get(f)?.clone())))
                    .collect();
                if let Err(undo_error) = state
                    .nodes
                    .send(&node.id, Method::PATCH, url, Some(Value::Object(undo)))
                    .await
                {
                    tracing::warn!(node = %node.id, error = ?undo_error.error, "could not set the node's experimental features back");
                }
                return Err(error);
            }
        }
    }
    let failed = sync_all(state).await;
    if !failed.is_empty() {
        tracing::warn!(
            ?failed,
            "experimental features recorded; these nodes get them on a later pass"
        );
    }
    Ok(answer(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_features_that_differ_are_sent() {
        let wanted = BTreeMap::from([
            ("containsFilter".to_owned(), true),
            ("metrics".to_owned(), false),
            ("network".to_owned(), true),
        ]);
        let current = json!({"containsFilter": false, "metrics": false, "logsRoute": true});
        assert_eq!(
            Value::Object(differing(&wanted, &current)),
            json!({"containsFilter": true, "network": true}),
            "a feature the node does not list is sent too: the node then names it unknown"
        );
    }
}
