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

/// The owners whose acknowledgements make a write durable, per (group, shard): the
/// in-sync read nodes (during a move the targets receive every write too but do not
/// count, so the move's source holds every acknowledged write; a stale copy being caught
/// up receives them too and does not count either). Groups with no owner yet (being
/// filled) take no part; one whose copies of a shard are all stale misses its writes.
#[derive(Debug, Default, Clone)]
pub struct Owners {
    by_route: BTreeMap<(u32, u32), Vec<String>>,
    /// The write's shards, to find its owners again under a newer topology.
    shards: BTreeSet<u32>,
    /// The index's uid.
    uid: String,
}

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
        let mut by_route = BTreeMap::new();
        for routing in index
            .routing
            .iter()
            .filter(|r| writable.contains(&r.group_id))
        {
            for &shard in shards {
                // A group whose copies are all stale misses the write (and is named).
                if let Some(route) = routing.shards.get(shard as usize)
                    && !route.read_nodes.is_empty()
                {
                    let in_sync: Vec<String> = route.in_sync().cloned().collect();
                    by_route.insert((routing.group_id, shard), in_sync);
                }
            }
        }
        Self {
            by_route,
            shards: shards.clone(),
            uid: index.uid.clone(),
        }
    }

    /// The same write's owners under a newer `topology` (`None` if the index is gone).
    fn under(&self, topology: &pb::Topology) -> Option<Self> {
        let index = topology.indexes.iter().find(|i| i.uid == self.uid)?;
        Some(Self::of(index, topology, &self.shards))
    }

    /// The in-sync owners of the lost `shards` that did not answer and are not yet
    /// marked failed in `topology`: marking them may let the write's quorum be reached (a
    /// failed node that stays in sync holds the shard's last copy: nothing will change).
    fn suspects(
        &self,
        shards: &[u32],
        unreachable: &BTreeSet<String>,
        topology: &pb::Topology,
    ) -> BTreeSet<String> {
        self.by_route
            .iter()
            .filter(|((_, shard), _)| shards.contains(shard))
            .flat_map(|(_, owners)| owners)
            .filter(|n| unreachable.contains(*n) && !crate::nodes::trouble::is_failed(topology, n))
            .cloned()
            .collect()
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
        for ((group, shard), owners) in &self.by_route {
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

/// The write's quorum, waiting when it is lost only because in-sync owners did not
/// answer: they were reported (passive health), and once the control plane marks them
/// failed (their copies stale), the in-sync owners left decide under the newer topology.
/// Waits at most `--write-failover-wait`.
async fn await_quorum(
    state: &AppState,
    uid: &str,
    owners: &Owners,
    acks: &NodeAcks,
) -> Result<Vec<String>, MeiliError> {
    let deadline = tokio::time::Instant::now() + state.config.write_failover_wait;
    let mut owners = owners.clone();
    // The version `owners` were last found under (0: the write's own, unknown here).
    let mut seen = 0;
    loop {
        let lost = match owners.quorum(&acks.acked) {
            Quorum::Reached { missed } => return Ok(missed),
            Quorum::Lost { shards } => shards,
        };
        let current = state.topology.current();
        if current.version != seen {
            // A node marked failed since the write was routed no longer counts.
            seen = current.version;
            match owners.under(&current) {
                Some(newer) => owners = newer,
                None => return owners.require_quorum(uid, &acks.acked, &acks.errors),
            }
            continue;
        }
        if owners
            .suspects(&lost, &acks.unreachable, &current)
            .is_empty()
            || !state.topology.wait_for_newer(seen, deadline).await
        {
            return owners.require_quorum(uid, &acks.acked, &acks.errors);
        }
    }
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
    let missed = match await_quorum(state, uid, owners, &acks).await {
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

    /// Nodes a and b own the one shard of index x; `stale` of them missed writes.
    fn topology(version: u64, b: pb::NodeState, stale: &[&str]) -> pb::Topology {
        let node = |id: &str, state: pb::NodeState| pb::Node {
            id: id.into(),
            address: "http://127.0.0.1:1".into(),
            state: state as i32,
            ..Default::default()
        };
        pb::Topology {
            version,
            nodes: vec![node("a", pb::NodeState::Active), node("b", b)],
            groups: vec![pb::Group {
                id: 0,
                state: GroupState::Active as i32,
            }],
            indexes: vec![pb::Index {
                uid: "x".into(),
                shard_count: 1,
                routing: vec![pb::GroupRouting {
                    group_id: 0,
                    shards: vec![pb::ShardRoute {
                        shard: 0,
                        read_nodes: vec!["a".into(), "b".into()],
                        write_nodes: vec!["a".into(), "b".into()],
                        blocked: false,
                        stale_nodes: stale.iter().map(|n| (*n).to_owned()).collect(),
                    }],
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_write_waits_for_a_silent_owner_to_be_marked_then_the_in_sync_copies_decide() {
        let state = crate::state::GatewayState::for_tests(topology(1, pb::NodeState::Active, &[]));
        let current = state.topology.current();
        let owners = Owners::of(&current.indexes[0], &current, &BTreeSet::from([0]));
        let acks = NodeAcks {
            acked: acked(&["a"]),
            unreachable: acked(&["b"]),
            ..NodeAcks::default()
        };
        // RF 2 needs both; b is marked failed (its copy stale) while the write waits.
        let marker = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            marker
                .topology
                .apply(topology(2, pb::NodeState::Failed, &["b"]));
        });
        let decided = await_quorum(&state, "x", &owners, &acks).await;
        assert!(matches!(decided, Ok(missed) if missed.is_empty()));

        // b failed holding the last in-sync copy (a's is stale): nothing will change, so
        // the write is refused at once rather than after the wait.
        state
            .topology
            .apply(topology(3, pb::NodeState::Failed, &["a"]));
        let current = state.topology.current();
        let owners = Owners::of(&current.indexes[0], &current, &BTreeSet::from([0]));
        let started = std::time::Instant::now();
        let refused = await_quorum(&state, "x", &owners, &acks).await;
        assert!(refused.is_err());
        assert!(started.elapsed() < state.config.write_failover_wait);
    }

    fn acked(nodes: &[&str]) -> BTreeSet<String> {
        nodes.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_majority_of_owners_in_one_group_acknowledges() {
        let owners = Owners {
            by_route: BTreeMap::from([
                ((0, 1), vec!["a".into(), "b".into()]),
                ((1, 1), vec!["c".into()]),
                ((0, 2), vec!["a".into()]),
            ]),
            ..Owners::default()
        };
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
