//! Write quorum (DESIGN §5): a write is acknowledged when every shard it touches reached a
//! majority of its owners in at least one writable group; the groups that missed it are
//! named to the client.

use super::fan_out::NodeAcks;
use super::task;
use crate::api::error::{ErrorType, MeiliError};
use crate::state::AppState;
use axum::http::StatusCode;
use axum::response::Response;
use miroir_proto::pb::{self, GroupState};
use std::collections::{BTreeMap, BTreeSet};

/// The owners whose acknowledgements make a write durable, per (group, shard): the read
/// nodes (during a move the targets receive every write too but do not count, so the
/// move's source holds every acknowledged write). Groups with no owner yet (being
/// filled) take no part.
#[derive(Debug, Default)]
pub struct Owners(BTreeMap<(u32, u32), Vec<String>>);

/// Why a write is not acknowledged, or which groups missed quorum.
pub enum Quorum {
    /// Every shard reached quorum in some group; `missed` names `group{g}/shard{s}` that
    /// did not.
    Reached { missed: Vec<String> },
    /// These shards reached quorum nowhere.
    Lost { shards: Vec<u32> },
}

/// The groups that take writes: every group but one being removed (a group being filled
/// takes them too).
pub fn writable_groups(topology: &pb::Topology) -> BTreeSet<u32> {
    topology
        .groups
        .iter()
        .filter(|g| g.state != GroupState::Draining as i32)
        .map(|g| g.id)
        .collect()
}

impl Owners {
    /// The owners of `shards` of `index` in every group that takes writes.
    pub fn of(index: &pb::Index, topology: &pb::Topology, shards: &BTreeSet<u32>) -> Self {
        let writable = writable_groups(topology);
        let mut owners = BTreeMap::new();
        for routing in index
            .routing
            .iter()
            .filter(|r| writable.contains(&r.group_id))
        {
            for &shard in shards {
                if let Some(route) = routing.shards.get(shard as usize)
                    && !route.read_nodes.is_empty()
                {
                    owners.insert((routing.group_id, shard), route.read_nodes.clone());
                }
            }
        }
        Self(owners)
    }

    /// The groups that missed quorum when `acked` made the write durable; else 503
    /// `miroir_no_quorum` for index `uid`, with the first node error as detail.
    pub fn require_quorum(
        &self,
        uid: &str,
        acked: &BTreeSet<String>,
        node_errors: &[serde_json::Value],
    ) -> Result<Vec<String>, MeiliError> {
        match self.quorum(acked) {
            Quorum::Reached { missed } => Ok(missed),
            Quorum::Lost { shards } => {
                let detail = node_errors
                    .first()
                    .and_then(|e| e["message"].as_str())
                    .unwrap_or("no owner answered");
                Err(no_quorum(uid, &shards, detail))
            }
        }
    }

    /// The owners of every shard of `index` (deletes by filter, delete all).
    pub fn all(index: &pb::Index, topology: &pb::Topology) -> Self {
        Self::of(index, topology, &(0..index.shard_count).collect())
    }

    /// Whether the nodes in `acked` make the write durable: a majority of a shard's
    /// owners in at least one group, for every shard.
    pub fn quorum(&self, acked: &BTreeSet<String>) -> Quorum {
        let reached = |owners: &Vec<String>| {
            owners.iter().filter(|n| acked.contains(*n)).count() > owners.len() / 2
        };
        let mut per_shard: BTreeMap<u32, bool> = BTreeMap::new();
        let mut missed = Vec::new();
        for ((group, shard), owners) in &self.0 {
            let ok = reached(owners);
            *per_shard.entry(*shard).or_default() |= ok;
            if !ok {
                missed.push(format!("group{group}/shard{shard}"));
            }
        }
        let lost: Vec<u32> = per_shard
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(shard, _)| shard)
            .collect();
        if lost.is_empty() {
            Quorum::Reached { missed }
        } else {
            Quorum::Lost { shards: lost }
        }
    }
}

/// Names in `X-Miroir-Degraded: quorum=index/group{g}/shard{s},…` the groups of `uid`
/// whose owners of a shard missed a write's quorum (another group reached it).
pub fn mark_missed(response: &mut axum::response::Response, uid: &str, missed: &[String]) {
    if missed.is_empty() {
        return;
    }
    let named: Vec<String> = missed.iter().map(|m| format!("{uid}/{m}")).collect();
    if let Ok(value) = axum::http::HeaderValue::from_str(&format!("quorum={}", named.join(","))) {
        response.headers_mut().insert("x-miroir-degraded", value);
    }
}

/// 503 `miroir_no_quorum` for `shards` of `uid`, with the first node error as detail.
pub fn no_quorum(uid: &str, shards: &[u32], detail: &str) -> MeiliError {
    MeiliError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "miroir_no_quorum",
        ErrorType::System,
        format!(
            "shards {shards:?} of index `{uid}` reached no write quorum in any group ({detail}); the write was not acknowledged, retry it"
        ),
    )
}

/// The write's answer once its nodes answered: with a quorum, its reserved task gets
/// the node tasks and the client a `202` naming the groups that missed it; without, the
/// task fails with the error the client gets now.
pub async fn acknowledge(
    state: &AppState,
    reserved: pb::Task,
    uid: &str,
    owners: &Owners,
    acks: NodeAcks,
) -> Result<Response, MeiliError> {
    let missed = match owners.require_quorum(uid, &acks.acked, &acks.errors) {
        Ok(missed) => missed,
        Err(error) => {
            task::attach(state, reserved, acks.node_tasks, Some(&error.body())).await;
            return Err(error);
        }
    };
    let task = task::attach(state, reserved, acks.node_tasks, None).await;
    let mut response = task::accepted(&task);
    mark_missed(&mut response, uid, &missed);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(nodes: &[&str]) -> BTreeSet<String> {
        nodes.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_majority_of_owners_in_one_group_acknowledges() {
        let owners = Owners(BTreeMap::from([
            ((0, 1), vec!["a".into(), "b".into()]),
            ((1, 1), vec!["c".into()]),
            ((0, 2), vec!["a".into()]),
        ]));
        // Shard 1: group 0 needs both a and b; group 1 has c.
        match owners.quorum(&acked(&["a", "c"])) {
            Quorum::Reached { missed } => assert_eq!(missed, vec!["group0/shard1"]),
            Quorum::Lost { shards } => panic!("lost {shards:?}"),
        }
        match owners.quorum(&acked(&["a", "b"])) {
            Quorum::Reached { missed } => assert_eq!(missed, vec!["group1/shard1"]),
            Quorum::Lost { shards } => panic!("lost {shards:?}"),
        }
        assert!(matches!(
            owners.quorum(&acked(&["b", "x"])),
            Quorum::Lost { shards } if shards == vec![1, 2]
        ));
    }
}
