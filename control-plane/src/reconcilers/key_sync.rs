//! Key sync: keeps every node's `/keys` equal to the topology's keys. Keys are created
//! on nodes with their explicit uid, so their values (derived from the shared master key
//! and the uid) are the same everywhere; keys a node has and the topology does not (such
//! as the random default keys a new Meilisearch makes) are deleted. Runs on an interval
//! and right after every key change.

use crate::state::{LeadershipStatus, ServiceState};
use http::Method;
use miroir_proto::pb;
use miroir_proto::time::rfc3339_ms;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// What one pass changed on one node.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeyRepairs {
    /// Keys created.
    pub created: u32,
    /// Keys whose name or description was corrected.
    pub updated: u32,
    /// Keys deleted.
    pub deleted: u32,
}

/// The body that creates `key` on a node.
pub fn node_body(key: &pb::ApiKey) -> Value {
    json!({
        "uid": key.uid,
        "name": key.name,
        "description": key.description,
        "actions": key.actions,
        "indexes": key.indexes,
        "expiresAt": key.expires_at_ms.map(rfc3339_ms),
    })
}

/// Makes one node's keys equal to `keys` (expired keys are skipped: Meilisearch refuses
/// to create them).
async fn sync_node(
    state: &ServiceState,
    node: &pb::Node,
    keys: &[pb::ApiKey],
    now_ms: u64,
) -> Result<KeyRepairs, String> {
    let client = &state.nodes;
    let base = node.address.trim_end_matches('/');
    let listed = client
        .get(&node.id, format!("{base}/keys?offset=0&limit=100000"))
        .await
        .map_err(|e| e.error.to_string())?;
    let on_node: HashMap<&str, &Value> = listed["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| Some((k["uid"].as_str()?, k)))
        .collect();
    let mut repairs = KeyRepairs::default();
    let call = |method: Method, path: String, body: Option<Value>| async move {
        match client
            .send(&node.id, method, format!("{base}{path}"), body)
            .await
        {
            Ok((status, _)) if status < 300 || status == 404 => Ok(()),
            Ok((status, body)) => Err(format!("{path}: {status} {body}")),
            Err(error) => Err(error.error.to_string()),
        }
    };
    for key in keys
        .iter()
        .filter(|k| k.expires_at_ms.is_none_or(|e| e > now_ms))
    {
        match on_node.get(key.uid.as_str()) {
            None => {
                call(Method::POST, "/keys".into(), Some(node_body(key))).await?;
                repairs.created += 1;
            }
            Some(existing)
                if existing["name"].as_str() != key.name.as_deref()
                    || existing["description"].as_str() != key.description.as_deref() =>
            {
                let body = json!({"name": key.name, "description": key.description});
                call(Method::PATCH, format!("/keys/{}", key.uid), Some(body)).await?;
                repairs.updated += 1;
            }
            Some(_) => {}
        }
    }
    for uid in on_node.keys() {
        if !keys.iter().any(|k| k.uid == *uid) {
            call(Method::DELETE, format!("/keys/{uid}"), None).await?;
            repairs.deleted += 1;
        }
    }
    Ok(repairs)
}

/// One pass over every active node, in parallel; failures are logged and retried on the
/// next pass.
pub async fn sync_all(state: &Arc<ServiceState>) {
    if !matches!(state.leadership(), LeadershipStatus::Leader { .. }) {
        return;
    }
    let topology = state.topology();
    let now_ms = miroir_proto::time::now_ms();
    let results = super::on_active_nodes(&topology, "key_sync", |node| {
        let (state, topology) = (state.clone(), topology.clone());
        async move { sync_node(&state, &node, &topology.keys, now_ms).await }
    })
    .await;
    for (node, result) in results {
        match result {
            Ok(repairs) if repairs != KeyRepairs::default() => {
                state.metrics.observe_key_repairs(
                    &node,
                    repairs.created,
                    repairs.updated,
                    repairs.deleted,
                );
                tracing::info!(
                    node,
                    created = repairs.created,
                    updated = repairs.updated,
                    deleted = repairs.deleted,
                    "node keys brought in line with the topology"
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(node, %error, "could not sync the node's keys; retrying next pass")
            }
        }
    }
}

/// Runs until the process stops.
pub async fn run(state: Arc<ServiceState>) {
    let mut interval = tokio::time::interval(state.config.key_sync_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = state.key_sync.notified() => {}
        }
        sync_all(&state).await;
        // Nodes that become active get the fleet's experimental features on this beat too.
        crate::reconcilers::feature_sync::sync_all(&state).await;
    }
}
