//! The route stage of a document write: the index (created on first write, as Meilisearch
//! does) and its primary key (inferred and recorded before any node sees a document, so
//! every gateway routes alike), each document's shard, the wait for held shards, and
//! which node receives which documents.

use super::gate::{Touches, admit};
use super::off_thread;
use super::parse::{DocumentBatch, WriteOptions};
use super::payload;
use super::quorum::writable_groups;
use crate::api::auth::Caller;
use crate::api::error::{ErrorType, MeiliError};
use crate::api::indexes::{index_for_write, index_in};
use crate::state::AppState;
use crate::topology::VersionPin;
use bytes::Bytes;
use miroir_proto::ErrorCode;
use miroir_proto::pb::{self, NodeState};
use miroir_proto::placement::shard_for_key;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Positions in the batch, by shard.
pub type ByShard = BTreeMap<u32, Vec<usize>>;

/// A batch routed: where its documents go, under the topology snapshot it was routed by.
pub struct Route {
    /// The index written, as the snapshot has it.
    pub index: pb::Index,
    /// The snapshot every later stage uses.
    pub topology: Arc<pb::Topology>,
    /// The key documents are routed by.
    pub primary_key: String,
    /// Each shard's documents.
    pub by_shard: ByShard,
    /// Keeps the control plane's barrier waiting for this write.
    pub in_flight: VersionPin,
}

/// Why a batch was not routed.
pub enum Refused {
    /// Meilisearch would enqueue the write and fail its task (a primary key conflict, a
    /// document without an id): `received` documents, the task's error.
    FailedTask {
        /// Documents counted in the task's details.
        received: usize,
        /// The task's error.
        error: MeiliError,
    },
    /// Answered at once (the index could not be created, a held shard, a lapsed lease).
    Error(MeiliError),
}

impl From<MeiliError> for Refused {
    fn from(error: MeiliError) -> Self {
        Self::Error(error)
    }
}

/// Routes `batch` to index `uid`. A rename or swap may change what `uid` names while the
/// write waits for its hold ([`admit`]): it is then routed again, by the index the name
/// names now, at most three times.
pub async fn route(
    state: &AppState,
    caller: &Caller,
    uid: &str,
    batch: &DocumentBatch,
    options: &WriteOptions,
) -> Result<Route, Refused> {
    let asked = options.primary_key.as_deref();
    let mut attempts = 0;
    loop {
        let index = index_for_write(state, caller, uid, asked).await?;
        let primary_key = primary_key(state, uid, &index, asked, &batch.documents).await?;
        let by_shard = match by_shard(
            &batch.documents,
            &primary_key,
            index.shard_count,
            batch.size,
        )
        .await?
        {
            Ok(by_shard) => by_shard,
            // All or nothing, as Meilisearch fails the whole batch.
            Err((position, error)) => {
                return Err(Refused::FailedTask {
                    received: position.max(1),
                    error,
                });
            }
        };
        let shards: BTreeSet<u32> = by_shard.keys().copied().collect();
        let in_flight = admit(state, uid, Touches::Shards(&shards)).await?;
        let topology = state.topology.current();
        match index_in(&topology, uid) {
            Ok(now)
                if now.shard_count == index.shard_count
                    && now.primary_key.as_deref().unwrap_or_default() == primary_key =>
            {
                return Ok(Route {
                    index: now.clone(),
                    topology,
                    primary_key,
                    by_shard,
                    in_flight,
                });
            }
            _ if attempts < 3 => attempts += 1,
            _ => return Err(index_changed(uid).into()),
        }
    }
}

/// The key the batch is routed by: the index's; else the one asked for, or inferred from
/// the first document as Meilisearch infers it, recorded through the control plane first.
async fn primary_key(
    state: &AppState,
    uid: &str,
    index: &pb::Index,
    asked: Option<&str>,
    documents: &[Bytes],
) -> Result<String, Refused> {
    let refused = |error| Refused::FailedTask {
        received: documents.len(),
        error,
    };
    match (index.primary_key.as_deref(), asked) {
        (Some(pk), Some(asked)) if asked != pk => Err(refused(primary_key_exists(pk))),
        (Some(pk), _) => Ok(pk.to_owned()),
        // Nothing to route and nothing to infer from: Meilisearch accepts an empty batch
        // and leaves the index without a primary key.
        (None, None) if documents.is_empty() => Ok(String::new()),
        (None, asked) => {
            let pk = asked
                .map(str::to_owned)
                .map_or_else(|| payload::infer_primary_key(documents.first()), Ok)
                .map_err(refused)?;
            // Recorded before any node sees a document, so every gateway routes by it.
            let request = pb::SetPrimaryKeyRequest {
                uid: uid.to_owned(),
                primary_key: pk.clone(),
            };
            match state.control_plane.set_primary_key(request).await {
                Ok(_) => Ok(pk),
                Err(status)
                    if ErrorCode::of(&status) == ErrorCode::IndexPrimaryKeyAlreadyExists =>
                {
                    Err(refused(MeiliError::from_status(&status)))
                }
                Err(status) => Err(MeiliError::from_status(&status).into()),
            }
        }
    }
}

/// Meilisearch's refusal to change an index's primary key once set.
fn primary_key_exists(current: &str) -> MeiliError {
    MeiliError::from_code(
        ErrorCode::IndexPrimaryKeyAlreadyExists,
        format!("Index already has a primary key: `{current}`."),
    )
}

/// 503 `miroir_index_changed`: what the name names kept changing while a write waited.
fn index_changed(uid: &str) -> MeiliError {
    MeiliError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "miroir_index_changed",
        ErrorType::System,
        format!(
            "index `{uid}` was renamed or swapped several times while this write waited for it; retry"
        ),
    )
}

/// The positions of `documents` by the shard their `pk` value routes them to, or the
/// first document without a valid id.
pub async fn by_shard(
    documents: &Arc<Vec<Bytes>>,
    pk: &str,
    shard_count: u32,
    size: usize,
) -> Result<Result<ByShard, (usize, MeiliError)>, MeiliError> {
    let (documents, pk) = (documents.clone(), pk.to_owned());
    off_thread(size, move || shards_of(&documents, &pk, shard_count)).await
}

fn shards_of(
    documents: &[Bytes],
    pk: &str,
    shard_count: u32,
) -> Result<ByShard, (usize, MeiliError)> {
    let mut by_shard = ByShard::new();
    for (position, document) in documents.iter().enumerate() {
        let id = payload::document_id(document, pk).map_err(|e| (position, e))?;
        let shard = shard_for_key(&id, shard_count).0;
        by_shard.entry(shard).or_default().push(position);
    }
    Ok(by_shard)
}

/// Each node's part of the batch: the documents (position, shard) of every shard it is a
/// write owner of, in every writable group, in the client's order (so a document repeated
/// in one batch ends as its last copy). Failed nodes get nothing: their copies are
/// repaired, not written.
pub fn node_batches(
    index: &pb::Index,
    topology: &pb::Topology,
    by_shard: &ByShard,
) -> BTreeMap<String, Vec<(usize, u32)>> {
    let writable = writable_groups(topology);
    let mut batches: BTreeMap<String, Vec<(usize, u32)>> = BTreeMap::new();
    for routing in index
        .routing
        .iter()
        .filter(|r| writable.contains(&r.group_id))
    {
        for (&shard, positions) in by_shard {
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
    batches.retain(|node, _| {
        topology
            .nodes
            .iter()
            .any(|n| &n.id == node && n.state != NodeState::Failed as i32)
    });
    for picks in batches.values_mut() {
        picks.sort_unstable();
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use miroir_proto::pb::GroupState;

    fn fleet() -> (pb::Index, pb::Topology) {
        let node = |id: &str, state: NodeState| pb::Node {
            id: id.into(),
            state: state as i32,
            ..Default::default()
        };
        let topology = pb::Topology {
            nodes: vec![
                node("a", NodeState::Active),
                node("b", NodeState::Failed),
                node("c", NodeState::Active),
                node("d", NodeState::Active),
            ],
            groups: vec![
                pb::Group {
                    id: 0,
                    state: GroupState::Active as i32,
                },
                pb::Group {
                    id: 1,
                    state: GroupState::Draining as i32,
                },
            ],
            ..Default::default()
        };
        let route = |shard: u32, nodes: &[&str]| pb::ShardRoute {
            shard,
            read_nodes: nodes.iter().map(|n| n.to_string()).collect(),
            write_nodes: nodes.iter().map(|n| n.to_string()).collect(),
            blocked: false,
            stale_nodes: Vec::new(),
        };
        let index = pb::Index {
            uid: "i".into(),
            shard_count: 2,
            routing: vec![
                pb::GroupRouting {
                    group_id: 0,
                    shards: vec![route(0, &["a", "b"]), route(1, &["c"])],
                },
                pb::GroupRouting {
                    group_id: 1,
                    shards: vec![route(0, &["d"]), route(1, &["d"])],
                },
            ],
            ..Default::default()
        };
        (index, topology)
    }

    #[test]
    fn each_live_write_owner_of_a_writable_group_gets_its_shards_documents_in_order() {
        let (index, topology) = fleet();
        let by_shard = ByShard::from([(0, vec![3, 0]), (1, vec![1, 2])]);
        let batches = node_batches(&index, &topology, &by_shard);
        assert_eq!(
            batches,
            BTreeMap::from([
                ("a".to_string(), vec![(0, 0), (3, 0)]),
                ("c".to_string(), vec![(1, 1), (2, 1)]),
            ]),
            "b failed, d's group drains"
        );
    }

    #[test]
    fn documents_route_by_their_key_and_a_missing_id_fails_the_batch() {
        let documents: Vec<Bytes> = [r#"{"id": 1}"#, r#"{"id": "x"}"#, r#"{"id": 1}"#]
            .into_iter()
            .map(Bytes::from)
            .collect();
        let by_shard = shards_of(&documents, "id", 8).unwrap();
        let one = shard_for_key("1", 8).0;
        assert!(by_shard[&one].starts_with(&[0]) && by_shard[&one].contains(&2));
        assert_eq!(by_shard.values().map(Vec::len).sum::<usize>(), 3);
        let documents = vec![Bytes::from(r#"{"id": 1}"#), Bytes::from(r#"{"name": "n"}"#)];
        let (position, error) = shards_of(&documents, "id", 8).unwrap_err();
        assert_eq!(position, 1);
        assert_eq!(error.code, "missing_document_id");
    }
}
