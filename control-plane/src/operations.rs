//! Fleet changes that move shard copies (DESIGN §6), as pure functions on a snapshot.
//!
//! An operation (node add, drain, repair, group add, replication change) is planned here
//! as a set of [`pb::ShardMove`]s recorded in the topology with the operation itself. The
//! shard-move reconciler ([`crate::reconcilers::shard_moves`]) drives each move through
//! its phases; every phase change is a commit made by [`set_phase`], which also rewrites
//! the shard's routing for that phase, so the routing a gateway follows and the phase a
//! new leader resumes from are always the same committed fact.

use crate::error::{ControlPlaneError, Result};
use miroir_proto::NodeId;
use miroir_proto::pb::{self, GroupState, MovePhase, NodeState, OperationState};
use miroir_proto::placement::{
    assign_owners, owners_after_adding, owners_after_removing, owners_with_replication,
};

/// Finished operations kept in the topology for `miroir-ctl moves`.
const FINISHED_KEPT: usize = 20;

/// Identifies one move: index, group, shard.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MoveKey {
    /// Index uid.
    pub index_uid: String,
    /// Group.
    pub group_id: u32,
    /// Shard.
    pub shard: u32,
}

impl MoveKey {
    /// The key of `m`.
    pub fn of(m: &pb::ShardMove) -> Self {
        Self {
            index_uid: m.index_uid.clone(),
            group_id: m.group_id,
            shard: m.shard,
        }
    }

    fn matches(&self, m: &pb::ShardMove) -> bool {
        m.index_uid == self.index_uid && m.group_id == self.group_id && m.shard == self.shard
    }
}

impl std::fmt::Display for MoveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/group{}/shard{}",
            self.index_uid, self.group_id, self.shard
        )
    }
}

/// Whether an operation has not finished.
pub fn is_open(op: &pb::Operation) -> bool {
    matches!(
        op.state(),
        OperationState::Running | OperationState::Paused | OperationState::Cancelling
    )
}

/// Refuses a new operation while another one is open: moves of two operations on the
/// same shard would fight over its routing.
pub fn ensure_no_open_operation(topology: &pb::Topology) -> Result<()> {
    match topology.operations.iter().find(|op| is_open(op)) {
        Some(op) => Err(ControlPlaneError::FailedPrecondition(format!(
            "operation {} ({}) is still {}; wait for it (`miroir-ctl moves --wait {}`) or cancel it first",
            op.id,
            op.description,
            op.state().name(),
            op.id
        ))),
        None => Ok(()),
    }
}

/// Whether `node` is the failed node an open repair operation rebuilds (it stays failed,
/// is never read or copied from, and is removed when the repair ends).
pub fn under_repair(topology: &pb::Topology, node: &str) -> bool {
    let action = repair_action(node);
    topology
        .operations
        .iter()
        .any(|op| is_open(op) && op.on_success == action)
}

fn repair_action(node: &str) -> String {
    format!("node:{node}:remove")
}

/// The owners of every shard of `index` in `group` (its read nodes: outside a move, the
/// read and write nodes are the same).
fn current_owners(index: &pb::Index, group: u32) -> Option<Vec<Vec<NodeId>>> {
    let routing = index.routing.iter().find(|r| r.group_id == group)?;
    Some(
        routing
            .shards
            .iter()
            .map(|s| s.read_nodes.iter().map(|n| NodeId(n.clone())).collect())
            .collect(),
    )
}

/// The moves that take `index` in `group` from its current owners to `after`.
fn moves_to(
    index: &pb::Index,
    group: u32,
    after: &[Vec<NodeId>],
    now_ms: u64,
) -> Vec<pb::ShardMove> {
    let before = current_owners(index, group).unwrap_or_default();
    after
        .iter()
        .enumerate()
        .filter_map(|(shard, new)| {
            let old = before.get(shard).cloned().unwrap_or_default();
            let mut a: Vec<&NodeId> = old.iter().collect();
            let mut b: Vec<&NodeId> = new.iter().collect();
            a.sort();
            b.sort();
            (a != b).then(|| pb::ShardMove {
                index_uid: index.uid.clone(),
                group_id: group,
                shard: shard as u32,
                old_owners: old.iter().map(|n| n.0.clone()).collect(),
                new_owners: new.iter().map(|n| n.0.clone()).collect(),
                phase: MovePhase::Pending as i32,
                phase_started_at_ms: now_ms,
                ..Default::default()
            })
        })
        .collect()
}

/// Records a new operation with its moves; `None` when nothing has to move (then
/// `on_success` is applied at once).
pub fn start(
    topology: &mut pb::Topology,
    description: String,
    moves: Vec<pb::ShardMove>,
    on_success: String,
    now_ms: u64,
) -> Result<Option<u64>> {
    if moves.is_empty() {
        apply_on_success(topology, &on_success, now_ms);
        return Ok(None);
    }
    let id = topology.version + 1;
    let op = pb::Operation {
        id,
        description,
        state: OperationState::Running as i32,
        started_at_ms: now_ms,
        moves_total: moves.len() as u32,
        on_success,
        ..Default::default()
    };
    topology.moves.extend(moves.into_iter().map(|mut m| {
        m.operation_id = id;
        m
    }));
    topology.operations.insert(0, op);
    Ok(Some(id))
}

/// Nodes of `group` that can take shard copies (not draining, failed or removed).
fn usable_nodes(topology: &pb::Topology, group: u32) -> Vec<NodeId> {
    topology
        .nodes
        .iter()
        .filter(|n| n.group_id == group)
        .filter(|n| matches!(n.state(), NodeState::Active | NodeState::Joining))
        .map(|n| NodeId(n.id.clone()))
        .collect()
}

/// Plans `node` (already added to `group`) taking its share of every index.
pub fn plan_add_node(
    topology: &mut pb::Topology,
    node: &str,
    group: u32,
    now_ms: u64,
) -> Result<Option<u64>> {
    let new = NodeId(node.to_owned());
    let mut moves = Vec::new();
    for index in &topology.indexes {
        if let Some(owners) = current_owners(index, group) {
            moves.extend(moves_to(
                index,
                group,
                &owners_after_adding(&owners, &new),
                now_ms,
            ));
        }
    }
    start(
        topology,
        format!("add node {node} to group {group}"),
        moves,
        String::new(),
        now_ms,
    )
}

/// Plans moving every copy `node` holds to the other nodes of its group. `repair` says
/// the node failed: its copies come from surviving replicas, and it is removed at the end.
pub fn plan_drain(
    topology: &mut pb::Topology,
    node: &str,
    repair: bool,
    now_ms: u64,
) -> Result<Option<u64>> {
    let Some(group) = topology
        .nodes
        .iter()
        .find(|n| n.id == node)
        .map(|n| n.group_id)
    else {
        return Err(ControlPlaneError::NotFound(format!(
            "node {node:?} does not exist"
        )));
    };
    let gone = NodeId(node.to_owned());
    let usable = usable_nodes(topology, group);
    let mut moves = Vec::new();
    for index in &topology.indexes {
        let Some(owners) = current_owners(index, group) else {
            continue;
        };
        if !owners.iter().any(|o| o.contains(&gone)) {
            continue;
        }
        // Only nodes that can take copies are candidates for heirs.
        let candidates: Vec<Vec<NodeId>> = owners.clone();
        let after = owners_after_removing(&candidates, &gone)
            .filter(|after| after.iter().flatten().all(|n| usable.contains(n)))
            .ok_or_else(|| {
                ControlPlaneError::FailedPrecondition(format!(
                    "group {group} has too few usable nodes to keep {} copies of every shard of index {:?} without node {node:?}; add a node first",
                    index.replication_factor, index.uid
                ))
            })?;
        let planned = moves_to(index, group, &after, now_ms);
        if repair {
            for m in &planned {
                let survivor = m.old_owners.iter().any(|o| o != node)
                    || live_reader_elsewhere(topology, index, group, m.shard);
                if !survivor {
                    return Err(ControlPlaneError::FailedPrecondition(format!(
                        "shard {} of index {:?} has no surviving copy: node {node:?} held the only one in every group",
                        m.shard, index.uid
                    )));
                }
            }
        }
        moves.extend(planned);
    }
    let (verb, on_success) = if repair {
        ("repair failed node", repair_action(node))
    } else {
        ("drain node", String::new())
    };
    start(
        topology,
        format!("{verb} {node} (group {group})"),
        moves,
        on_success,
        now_ms,
    )
}

/// Whether another active group has a live read node for `shard` of `index`.
fn live_reader_elsewhere(
    topology: &pb::Topology,
    index: &pb::Index,
    group: u32,
    shard: u32,
) -> bool {
    index
        .routing
        .iter()
        .filter(|r| r.group_id != group)
        .filter(|r| {
            topology
                .groups
                .iter()
                .any(|g| g.id == r.group_id && g.state() == GroupState::Active)
        })
        .filter_map(|r| r.shards.get(shard as usize))
        .flat_map(|s| &s.read_nodes)
        .any(|n| {
            topology
                .nodes
                .iter()
                .any(|x| &x.id == n && x.state() == NodeState::Active)
        })
}

/// Plans filling `group` (already added, `syncing`, with its nodes): every index gets an
/// empty routing table there and one move per shard from nobody to its owners.
pub fn plan_fill_group(
    topology: &mut pb::Topology,
    group: u32,
    now_ms: u64,
) -> Result<Option<u64>> {
    let nodes = usable_nodes(topology, group);
    let mut moves = Vec::new();
    for index in &mut topology.indexes {
        if nodes.len() < index.replication_factor as usize {
            return Err(ControlPlaneError::FailedPrecondition(format!(
                "group {group} has {} node(s); index {:?} needs {} copies of every shard",
                nodes.len(),
                index.uid,
                index.replication_factor
            )));
        }
        index.routing.retain(|r| r.group_id != group);
        index.routing.push(pb::GroupRouting {
            group_id: group,
            shards: (0..index.shard_count)
                .map(|shard| pb::ShardRoute {
                    shard,
                    ..Default::default()
                })
                .collect(),
        });
        index.routing.sort_by_key(|r| r.group_id);
        let after = assign_owners(index.shard_count, index.replication_factor, &nodes);
        moves.extend(moves_to(index, group, &after, now_ms));
    }
    start(
        topology,
        format!("fill group {group}"),
        moves,
        format!("group:{group}:activate"),
        now_ms,
    )
}

/// Plans changing the replication factor of index `uid` to `rf` in every group.
pub fn plan_replication(
    topology: &mut pb::Topology,
    uid: &str,
    rf: u32,
    now_ms: u64,
) -> Result<Option<u64>> {
    let Some(position) = topology.indexes.iter().position(|i| i.uid == uid) else {
        return Err(ControlPlaneError::index_not_found(uid));
    };
    if rf == 0 {
        return Err(ControlPlaneError::InvalidArgument(
            "replication factor must be at least 1".into(),
        ));
    }
    let mut moves = Vec::new();
    let index = topology.indexes[position].clone();
    for routing in &index.routing {
        let group = routing.group_id;
        let nodes = usable_nodes(topology, group);
        let owners = current_owners(&index, group).unwrap_or_default();
        let after = owners_with_replication(&owners, &nodes, rf).ok_or_else(|| {
            ControlPlaneError::FailedPrecondition(format!(
                "group {group} has {} usable node(s); replication factor {rf} needs at least {rf}",
                nodes.len()
            ))
        })?;
        moves.extend(moves_to(&index, group, &after, now_ms));
    }
    let from = index.replication_factor;
    topology.indexes[position].replication_factor = rf;
    start(
        topology,
        format!("replication factor of index {uid}: {from} -> {rf}"),
        moves,
        String::new(),
        now_ms,
    )
}

fn find_move<'a>(topology: &'a mut pb::Topology, key: &MoveKey) -> Result<&'a mut pb::ShardMove> {
    topology
        .moves
        .iter_mut()
        .find(|m| key.matches(m))
        .ok_or_else(|| ControlPlaneError::NotFound(format!("move {key} is no longer planned")))
}

/// The route of `key`'s shard, as `phase` needs it.
fn route_for(m: &pb::ShardMove, phase: MovePhase, route: &mut pb::ShardRoute) {
    let union = || {
        let mut all = m.old_owners.clone();
        all.extend(
            m.new_owners
                .iter()
                .filter(|n| !m.old_owners.contains(n))
                .cloned(),
        );
        all
    };
    match phase {
        MovePhase::Pending | MovePhase::Rollback => {
            route.read_nodes = m.old_owners.clone();
            route.write_nodes = m.old_owners.clone();
            route.blocked = false;
        }
        MovePhase::Copying | MovePhase::Verifying => {
            route.read_nodes = m.old_owners.clone();
            route.write_nodes = union();
            route.blocked = false;
        }
        MovePhase::Cutover => {
            route.read_nodes = m.old_owners.clone();
            route.write_nodes = union();
            route.blocked = true;
        }
        MovePhase::Cleanup => {
            route.read_nodes = m.new_owners.clone();
            route.write_nodes = m.new_owners.clone();
            route.blocked = false;
        }
        MovePhase::Unspecified => {}
    }
    // A stale copy stays stale while it remains an owner (it is caught up after the
    // move); one that leaves is deleted with the other leavers' copies.
    route.stale_nodes.retain(|n| route.read_nodes.contains(n));
}

/// Moves `key` into `phase` and rewrites its shard's routing for it; records the
/// documents copied so far.
pub fn set_phase(
    topology: &mut pb::Topology,
    key: &MoveKey,
    phase: MovePhase,
    documents_copied: u64,
    now_ms: u64,
) -> Result<()> {
    let m = find_move(topology, key)?;
    if m.phase() == MovePhase::Cutover && phase != MovePhase::Cutover {
        m.blocked_ms = now_ms.saturating_sub(m.phase_started_at_ms);
    }
    m.phase = phase as i32;
    m.phase_started_at_ms = now_ms;
    m.documents_copied = documents_copied;
    let m = m.clone();
    let route = topology
        .indexes
        .iter_mut()
        .find(|i| i.uid == key.index_uid)
        .and_then(|i| i.routing.iter_mut().find(|r| r.group_id == key.group_id))
        .and_then(|r| r.shards.get_mut(key.shard as usize))
        .ok_or_else(|| ControlPlaneError::NotFound(format!("shard {key} no longer exists")))?;
    route_for(&m, phase, route);
    Ok(())
}

/// Ends `key`: drops it from the topology and counts it on its operation, which finishes
/// with its last move.
pub fn finish_move(
    topology: &mut pb::Topology,
    key: &MoveKey,
    blocked_ms: Option<u64>,
    documents_copied: u64,
    now_ms: u64,
) -> Result<()> {
    let Some(position) = topology.moves.iter().position(|m| key.matches(m)) else {
        return Err(ControlPlaneError::NotFound(format!(
            "move {key} is no longer planned"
        )));
    };
    let m = topology.moves.remove(position);
    count_finished(
        topology,
        m.operation_id,
        blocked_ms,
        documents_copied,
        now_ms,
    );
    Ok(())
}

fn count_finished(
    topology: &mut pb::Topology,
    operation: u64,
    blocked_ms: Option<u64>,
    documents_copied: u64,
    now_ms: u64,
) {
    let remaining = topology
        .moves
        .iter()
        .filter(|m| m.operation_id == operation)
        .count();
    let Some(op) = topology.operations.iter_mut().find(|o| o.id == operation) else {
        return;
    };
    op.moves_done += 1;
    op.documents_copied += documents_copied;
    op.blocked_ms.extend(blocked_ms);
    if remaining == 0 && is_open(op) {
        let cancelled = op.state() == OperationState::Cancelling;
        op.state = if cancelled {
            OperationState::Cancelled
        } else {
            OperationState::Succeeded
        } as i32;
        op.finished_at_ms = now_ms;
        let on_success = (!cancelled).then(|| op.on_success.clone());
        if let Some(action) = on_success {
            apply_on_success(topology, &action, now_ms);
        }
        trim_finished(topology);
    }
}

/// Drops the moves of an index that no longer exists (deleted during an operation).
pub fn forget_index(topology: &mut pb::Topology, uid: &str, now_ms: u64) {
    let gone: Vec<pb::ShardMove> = topology
        .moves
        .iter()
        .filter(|m| m.index_uid == uid)
        .cloned()
        .collect();
    topology.moves.retain(|m| m.index_uid != uid);
    for m in gone {
        count_finished(topology, m.operation_id, None, 0, now_ms);
    }
}

fn trim_finished(topology: &mut pb::Topology) {
    let mut kept = 0;
    topology.operations.retain(|op| {
        if is_open(op) {
            return true;
        }
        kept += 1;
        kept <= FINISHED_KEPT
    });
}

/// What an operation does when it succeeds.
fn apply_on_success(topology: &mut pb::Topology, action: &str, now_ms: u64) {
    let parts: Vec<&str> = action.split(':').collect();
    match parts.as_slice() {
        ["node", id, "remove"] => {
            topology.nodes.retain(|n| n.id != *id);
        }
        ["group", id, "activate"] => {
            let Ok(id) = id.parse::<u32>() else { return };
            for group in topology.groups.iter_mut().filter(|g| g.id == id) {
                group.state = GroupState::Active as i32;
            }
            for node in topology.nodes.iter_mut().filter(|n| n.group_id == id) {
                if node.state() == NodeState::Joining {
                    node.state = NodeState::Active as i32;
                    node.state_changed_at_ms = now_ms;
                }
            }
        }
        _ => {}
    }
}

/// Pauses, resumes or cancels operation `id`.
pub fn control(
    topology: &mut pb::Topology,
    id: u64,
    to: OperationState,
    now_ms: u64,
) -> Result<pb::Operation> {
    let Some(op) = topology.operations.iter_mut().find(|o| o.id == id) else {
        return Err(ControlPlaneError::NotFound(format!(
            "operation {id} does not exist (finished operations are kept for the last {FINISHED_KEPT})"
        )));
    };
    let from = op.state();
    let allowed = matches!(
        (from, to),
        (OperationState::Running, OperationState::Paused)
            | (OperationState::Paused, OperationState::Running)
            | (
                OperationState::Running | OperationState::Paused,
                OperationState::Cancelling
            )
    ) || from == to;
    if !allowed {
        return Err(ControlPlaneError::FailedPrecondition(format!(
            "operation {id} is {}; it cannot become {}",
            from.name(),
            to.name()
        )));
    }
    op.state = to as i32;
    let op = op.clone();
    if to == OperationState::Cancelling {
        // Moves that never started end at once; the reconciler rolls back the others.
        let pending: Vec<MoveKey> = topology
            .moves
            .iter()
            .filter(|m| m.operation_id == id && m.phase() == MovePhase::Pending)
            .map(MoveKey::of)
            .collect();
        for key in pending {
            finish_move(topology, &key, None, 0, now_ms)?;
        }
    }
    Ok(topology
        .operations
        .iter()
        .find(|o| o.id == id)
        .cloned()
        .unwrap_or(op))
}

#[cfg(test)]
mod tests {
    use super::*;
    use miroir_proto::GroupId;
    use miroir_proto::placement::compute_group_routing;

    fn fleet(nodes: &[&str], shards: u32, rf: u32) -> pb::Topology {
        let ids: Vec<NodeId> = nodes.iter().map(|n| NodeId((*n).into())).collect();
        pb::Topology {
            version: 7,
            nodes: nodes
                .iter()
                .map(|n| pb::Node {
                    id: (*n).into(),
                    address: format!("http://{n}"),
                    group_id: 0,
                    state: NodeState::Active as i32,
                    state_changed_at_ms: 0,
                })
                .collect(),
            groups: vec![pb::Group {
                id: 0,
                state: GroupState::Active as i32,
            }],
            indexes: vec![pb::Index {
                uid: "movies".into(),
                shard_count: shards,
                replication_factor: rf,
                routing: vec![compute_group_routing(GroupId(0), shards, rf, &ids)],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn adding_a_node_plans_one_move_per_shard_it_takes() {
        let mut t = fleet(&["a", "b", "c"], 16, 1);
        t.nodes.push(pb::Node {
            id: "d".into(),
            group_id: 0,
            state: NodeState::Joining as i32,
            ..Default::default()
        });
        let id = plan_add_node(&mut t, "d", 0, 1)
            .unwrap()
            .expect("moves planned");
        assert_eq!(id, 8);
        assert_eq!(t.moves.len(), 4, "16 shards over 4 nodes: d takes 4");
        assert!(
            t.moves
                .iter()
                .all(|m| m.new_owners == vec!["d".to_string()])
        );
        assert!(ensure_no_open_operation(&t).is_err());
    }

    #[test]
    fn phases_rewrite_the_route_and_the_last_move_ends_the_operation() {
        let mut t = fleet(&["a", "b"], 6, 1);
        t.nodes.push(pb::Node {
            id: "c".into(),
            state: NodeState::Joining as i32,
            ..Default::default()
        });
        plan_add_node(&mut t, "c", 0, 1).unwrap();
        let m = t.moves[0].clone();
        let key = MoveKey::of(&m);
        let route = |t: &pb::Topology| t.indexes[0].routing[0].shards[key.shard as usize].clone();
        set_phase(&mut t, &key, MovePhase::Copying, 0, 2).unwrap();
        assert_eq!(route(&t).read_nodes, m.old_owners);
        assert_eq!(route(&t).write_nodes.len(), 2);
        set_phase(&mut t, &key, MovePhase::Cutover, 5, 3).unwrap();
        assert!(route(&t).blocked);
        set_phase(&mut t, &key, MovePhase::Cleanup, 5, 4).unwrap();
        assert_eq!(route(&t).read_nodes, vec!["c".to_string()]);
        assert!(!route(&t).blocked);
        finish_move(&mut t, &key, Some(12), 5, 5).unwrap();
        assert_eq!(t.operations[0].state(), OperationState::Running);
        for other in t.moves.clone() {
            finish_move(&mut t, &MoveKey::of(&other), None, 0, 6).unwrap();
        }
        assert!(t.moves.is_empty());
        let op = &t.operations[0];
        assert_eq!(op.state(), OperationState::Succeeded);
        assert_eq!((op.moves_done, op.documents_copied), (op.moves_total, 5));
        assert_eq!(op.blocked_ms, vec![12]);
    }

    #[test]
    fn draining_needs_room_and_cancelling_drops_pending_moves() {
        let mut t = fleet(&["a", "b"], 8, 2);
        assert!(
            plan_drain(&mut t, "a", false, 1).is_err(),
            "RF 2 on 2 nodes"
        );
        let mut t = fleet(&["a", "b", "c"], 8, 1);
        let id = plan_drain(&mut t, "a", false, 1).unwrap().unwrap();
        assert!(
            t.moves
                .iter()
                .all(|m| m.old_owners == vec!["a".to_string()])
        );
        let op = control(&mut t, id, OperationState::Cancelling, 2).unwrap();
        assert!(t.moves.is_empty());
        assert_eq!(op.state(), OperationState::Cancelled);
    }

    #[test]
    fn a_node_or_group_a_move_names_cannot_be_removed() {
        let mut t = fleet(&["a", "b", "c"], 8, 1);
        t.nodes.push(pb::Node {
            id: "d".into(),
            state: NodeState::Joining as i32,
            ..Default::default()
        });
        plan_add_node(&mut t, "d", 0, 1).unwrap();
        // d holds nothing yet, but the moves will give it copies.
        assert!(matches!(
            crate::topology::remove_node(&mut t, "d", 2),
            Err(ControlPlaneError::FailedPrecondition(_))
        ));
        assert!(matches!(
            crate::topology::remove_group(&mut t, 0),
            Err(ControlPlaneError::FailedPrecondition(_))
        ));
    }

    #[test]
    fn lowering_replication_drops_a_failed_owner_first() {
        let mut t = fleet(&["a", "b", "c"], 8, 2);
        t.nodes[0].state = NodeState::Failed as i32;
        plan_replication(&mut t, "movies", 1, 1).unwrap();
        for m in &t.moves {
            assert!(m.new_owners.iter().all(|n| n != "a"), "{m:?}");
        }
        assert!(
            t.moves
                .iter()
                .any(|m| m.old_owners.contains(&"a".to_string()))
        );
    }

    #[test]
    fn repair_refuses_when_the_failed_node_held_the_only_copy() {
        let mut t = fleet(&["a", "b"], 4, 1);
        t.nodes[0].state = NodeState::Failed as i32;
        assert!(plan_drain(&mut t, "a", true, 1).is_err());
        let mut t = fleet(&["a", "b", "c"], 4, 2);
        t.nodes[0].state = NodeState::Failed as i32;
        let id = plan_drain(&mut t, "a", true, 1).unwrap().unwrap();
        assert_eq!(t.operations[0].on_success, "node:a:remove");
        assert_eq!(t.operations[0].id, id);
    }
}
