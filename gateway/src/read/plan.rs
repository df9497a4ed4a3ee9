//! The plan of a read: which nodes are asked for which shards ([`ReadPlan`], a covering
//! set under the request's settings floor), and for a search what each node is asked
//! ([`SearchPlan`]).

use super::scatter::SearchFailure;
use crate::api::consistency::SettingsFloor;
use crate::state::AppState;
use miroir_proto::pb::{self, GroupState};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Rotates the group and replica chosen first, spreading reads.
static ROUND_ROBIN: AtomicUsize = AtomicUsize::new(0);

/// The next read's turn in the rotation.
pub fn next_turn() -> usize {
    ROUND_ROBIN.fetch_add(1, Ordering::Relaxed)
}

/// Which node serves which shards, and the shards nobody can serve.
#[derive(Debug, Default, PartialEq)]
pub struct CoveringSet {
    /// node id → shards it is asked for.
    pub assignments: BTreeMap<String, Vec<u32>>,
    /// Shards with no live replica in any active group.
    pub missing: Vec<u32>,
    /// Nodes asked for every shard they hold a copy of: they need no shard filter.
    pub unfiltered: HashSet<String>,
}

/// For each shard, one live read node: one node for all of them when a live node holds
/// them all (chosen in turn among such nodes), else groups are tried in turn starting at
/// `turn`, and within a group the replicas rotate with the shard so load spreads.
pub fn covering_set(index: &pb::Index, topology: &pb::Topology, turn: usize) -> CoveringSet {
    let shards: Vec<u32> = (0..index.shard_count).collect();
    covering_set_for(index, topology, turn, &shards, &HashSet::new())
}

/// [`covering_set`] for some shards only, never choosing a node of `excluded`.
pub fn covering_set_for(
    index: &pb::Index,
    topology: &pb::Topology,
    turn: usize,
    shards: &[u32],
    excluded: &HashSet<String>,
) -> CoveringSet {
    let live: HashSet<&str> = topology
        .nodes
        .iter()
        .filter(|n| n.serves() && !excluded.contains(&n.id))
        .map(|n| n.id.as_str())
        .collect();
    let active: HashSet<u32> = topology
        .groups
        .iter()
        .filter(|g| g.state == GroupState::Active as i32)
        .map(|g| g.id)
        .collect();
    let groups: Vec<&pb::GroupRouting> = index
        .routing
        .iter()
        .filter(|r| active.contains(&r.group_id))
        .collect();
    let mut set = CoveringSet::default();
    // A live node that can serve every shard asked for answers alone (rotating among such
    // nodes by turn): one call, and nothing to merge when it holds only these shards.
    let mut whole: Vec<&String> = groups
        .iter()
        .flat_map(|g| {
            g.shards
                .first()
                .map(|r| &r.read_nodes)
                .into_iter()
                .flatten()
        })
        .filter(|node| live.contains(node.as_str()))
        .filter(|node| {
            shards.iter().all(|&shard| {
                groups.iter().any(|g| {
                    g.shards
                        .get(shard as usize)
                        .is_some_and(|r| r.read_nodes.contains(node))
                })
            })
        })
        .collect();
    whole.sort();
    whole.dedup();
    if !whole.is_empty() && !shards.is_empty() {
        let node = whole[turn % whole.len()];
        set.assignments.insert(node.clone(), shards.to_vec());
    }
    let spread = set.assignments.is_empty();
    for &shard in shards.iter().filter(|_| spread) {
        let chosen = (0..groups.len()).find_map(|g| {
            let route = groups[(turn + g) % groups.len()]
                .shards
                .get(shard as usize)?;
            let alive = || {
                route
                    .read_nodes
                    .iter()
                    .filter(|n| live.contains(n.as_str()))
            };
            let count = alive().count();
            (count > 0).then(|| alive().nth((turn + shard as usize) % count))?
        });
        match chosen {
            Some(node) => match set.assignments.get_mut(node.as_str()) {
                Some(assigned) => assigned.push(shard),
                None => {
                    set.assignments.insert(node.clone(), vec![shard]);
                }
            },
            None => set.missing.push(shard),
        }
    }
    // A node asked for all the shards it holds (read or write copies, in any group) has
    // nothing to hide: its answer is exactly those shards. This relies on the routing
    // naming every node that still holds a shard's documents (moves keep a source in the
    // routing or in the move's record until its copy is deleted; see
    // docs/architecture.md).
    for (node, assigned) in &set.assignments {
        let held = (0..index.shard_count as usize)
            .filter(|&shard| {
                index.routing.iter().any(|group| {
                    group.shards.get(shard).is_some_and(|route| {
                        route.read_nodes.contains(node) || route.write_nodes.contains(node)
                    })
                }) || topology.moves.iter().any(|m| {
                    m.index_uid == index.uid
                        && m.shard as usize == shard
                        && (m.old_owners.contains(node) || m.new_owners.contains(node))
                })
            })
            .count();
        if held == assigned.len() {
            set.unfiltered.insert(node.clone());
        }
    }
    set
}

/// The first covering set of a read of one index, under the request's settings floor,
/// with the topology snapshot it was made from: made once per request, and looked at
/// before the scatter-gather (a node holding everything answers alone).
pub struct ReadPlan {
    /// The snapshot every step of the read uses.
    pub topology: Arc<pb::Topology>,
    /// Keeps this gateway from acknowledging a newer version while the read still uses
    /// this one (a shard move deletes a leaver's copy only after that acknowledgement).
    pub(crate) _pin: crate::topology::VersionPin,
    pub(crate) index: usize,
    /// The request's `X-Miroir-Min-Settings-Version` (0: none).
    pub floor: u64,
    pub(crate) excluded: HashSet<String>,
    pub(crate) turn: usize,
    /// The covering set the read starts from.
    pub plan: CoveringSet,
}

impl ReadPlan {
    /// Plans a read of `uid` for this `turn`, avoiding nodes behind the settings floor.
    pub fn new(
        state: &AppState,
        uid: &str,
        turn: usize,
        SettingsFloor(floor): SettingsFloor,
    ) -> Result<Self, SearchFailure> {
        let (pin, topology) = state.topology.pin();
        let index = topology
            .indexes
            .iter()
            .position(|i| i.uid == uid)
            .ok_or_else(|| SearchFailure::Miroir(crate::api::indexes::index_not_found(uid)))?;
        let excluded = crate::api::consistency::nodes_behind(&topology.indexes[index], floor);
        let shards: Vec<u32> = (0..topology.indexes[index].shard_count).collect();
        let plan = covering_set_for(
            &topology.indexes[index],
            &topology,
            turn,
            &shards,
            &excluded,
        );
        Ok(Self {
            topology,
            _pin: pin,
            index,
            floor,
            excluded,
            turn,
            plan,
        })
    }

    /// The index read.
    pub fn index(&self) -> &pb::Index {
        &self.topology.indexes[self.index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miroir_proto::pb::NodeState;

    /// One active group of `nodes`; shard `s` held by `owners(s)`.
    fn layout(
        nodes: &[&str],
        shards: u32,
        owners: impl Fn(u32) -> Vec<&'static str>,
    ) -> (pb::Index, pb::Topology) {
        let topology = pb::Topology {
            nodes: nodes
                .iter()
                .map(|id| pb::Node {
                    id: (*id).into(),
                    state: NodeState::Active as i32,
                    ..Default::default()
                })
                .collect(),
            groups: vec![pb::Group {
                id: 0,
                state: GroupState::Active as i32,
            }],
            ..Default::default()
        };
        let route = |s: u32| pb::ShardRoute {
            shard: s,
            read_nodes: owners(s).into_iter().map(String::from).collect(),
            write_nodes: owners(s).into_iter().map(String::from).collect(),
            blocked: false,
        };
        let index = pb::Index {
            uid: "i".into(),
            shard_count: shards,
            routing: vec![pb::GroupRouting {
                group_id: 0,
                shards: (0..shards).map(route).collect(),
            }],
            ..Default::default()
        };
        (index, topology)
    }

    #[test]
    fn nodes_asked_for_all_they_hold_need_no_shard_filter() {
        let (index, topology) =
            layout(&["a", "b"], 4, |s| vec![if s % 2 == 0 { "a" } else { "b" }]);
        let plan = covering_set(&index, &topology, 0);
        assert_eq!(
            plan.unfiltered.len(),
            2,
            "RF 1: each node holds exactly its shards"
        );
        let (index, topology) = layout(&["a", "b"], 4, |_| vec!["a", "b"]);
        let plan = covering_set(&index, &topology, 0);
        assert_eq!(
            plan.assignments["a"],
            [0, 1, 2, 3],
            "RF 2 of 2: one node answers"
        );
        assert!(plan.unfiltered.contains("a"));
        let next = covering_set(&index, &topology, 1);
        assert_eq!(
            next.assignments["b"],
            [0, 1, 2, 3],
            "the next turn asks the other"
        );
        let excluded: HashSet<String> = ["a".to_owned()].into();
        let retry = covering_set_for(&index, &topology, 0, &[0, 1, 2, 3], &excluded);
        assert_eq!(retry.assignments["b"], [0, 1, 2, 3]);
        assert!(
            retry.unfiltered.contains("b"),
            "b answers for every shard it holds"
        );
        let (index, topology) = layout(&["a", "b", "c"], 3, |s| match s {
            0 => vec!["a", "b"],
            1 => vec!["b", "c"],
            _ => vec!["c", "a"],
        });
        let plan = covering_set(&index, &topology, 0);
        assert!(
            plan.assignments.len() > 1,
            "RF 2 of 3: no node holds everything, so the shards are spread"
        );
    }
}
