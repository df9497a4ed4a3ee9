//! Changes to the topology, as pure functions on a snapshot.
//!
//! Each function validates its input against the current snapshot and either mutates it
//! or returns why it cannot. The caller ([`crate::state::ServiceState::commit`]) turns a
//! successful change into a new committed version. Nothing here does I/O.

use crate::error::{ControlPlaneError, Result};
use miroir_proto::pb::{self, GroupState, NodeState};
use miroir_proto::placement::compute_group_routing;
use miroir_proto::{GroupId, NodeId};
use std::collections::HashSet;

/// Largest shard count an index may have.
pub const MAX_SHARDS: u32 = 4096;

/// Checks a node id: 1 to 64 of `[A-Za-z0-9._-]`.
pub fn validate_node_id(id: &str) -> Result<NodeId> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(NodeId(id.to_owned()))
    } else {
        Err(ControlPlaneError::InvalidArgument(format!(
            "invalid node id {id:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// Checks a node address: an `http://` or `https://` URL with a host and nothing after
/// the authority but an optional `/`. Returns it without the trailing slash.
pub fn validate_address(address: &str) -> Result<String> {
    let invalid = |why: &str| {
        ControlPlaneError::InvalidArgument(format!(
            "invalid node address {address:?}: {why} (expected e.g. http://127.0.0.1:7700)"
        ))
    };
    let uri: http::Uri = address.parse().map_err(|_| invalid("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(invalid("the scheme must be http or https")),
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid("no host"));
    };
    if authority.host().is_empty() {
        return Err(invalid("no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid("it must not have a path or query"));
    }
    Ok(address.trim_end_matches('/').to_owned())
}

/// Checks an index uid like Meilisearch ([`IndexUid::check`]).
pub fn validate_index_uid(uid: &str) -> Result<()> {
    miroir_proto::IndexUid::check(uid).map_err(ControlPlaneError::InvalidIndexUid)
}

fn find_node<'a>(topology: &'a mut pb::Topology, id: &str) -> Result<&'a mut pb::Node> {
    topology
        .nodes
        .iter_mut()
        .find(|n| n.id == id)
        .ok_or_else(|| ControlPlaneError::NotFound(format!("node {id:?} does not exist")))
}

/// Indexes in which `node` holds a shard copy, with the number of copies.
fn copies_held(topology: &pb::Topology, node: &str) -> Vec<(String, usize)> {
    topology
        .indexes
        .iter()
        .filter_map(|index| {
            let copies = index
                .routing
                .iter()
                .flat_map(|g| &g.shards)
                .filter(|s| s.read_nodes.iter().chain(&s.write_nodes).any(|n| n == node))
                .count();
            (copies > 0).then(|| (index.uid.clone(), copies))
        })
        .collect()
}

fn describe_copies(held: &[(String, usize)]) -> String {
    held.iter()
        .map(|(uid, n)| format!("{n} of index {uid:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn sort(topology: &mut pb::Topology) {
    topology
        .nodes
        .sort_by(|a, b| (a.group_id, &a.id).cmp(&(b.group_id, &b.id)));
    topology.groups.sort_by_key(|g| g.id);
    topology.indexes.sort_by(|a, b| a.uid.cmp(&b.uid));
}

/// Adds a node in state `joining`; creates its group if needed. Returns the node and
/// whether the group was created.
pub fn add_node(
    topology: &mut pb::Topology,
    id: &str,
    address: &str,
    group: GroupId,
    now_ms: u64,
) -> Result<(pb::Node, bool)> {
    let id = validate_node_id(id)?;
    let address = validate_address(address)?;
    if topology.nodes.iter().any(|n| n.id == id.0) {
        return Err(ControlPlaneError::AlreadyExists(format!(
            "node {:?} already exists",
            id.0
        )));
    }
    if let Some(other) = topology.nodes.iter().find(|n| n.address == address) {
        return Err(ControlPlaneError::AlreadyExists(format!(
            "address {address} already belongs to node {:?}",
            other.id
        )));
    }
    let group_exists = topology.groups.iter().any(|g| g.id == group.0);
    if !topology.indexes.is_empty() && !group_exists {
        return Err(ControlPlaneError::FailedPrecondition(format!(
            "group {group} does not exist; while indexes exist a new group is added with all its nodes at once (`miroir-ctl group add --node ID=URL …`) so every shard gets its copies there"
        )));
    }
    let created_group = !topology.groups.iter().any(|g| g.id == group.0);
    if created_group {
        topology.groups.push(pb::Group {
            id: group.0,
            state: GroupState::Active as i32,
        });
    }
    let node = pb::Node {
        id: id.0,
        address,
        group_id: group.0,
        state: NodeState::Joining as i32,
        state_changed_at_ms: now_ms,
    };
    topology.nodes.push(node.clone());
    sort(topology);
    Ok((node, created_group))
}

/// Marks a node `draining` (the caller plans the moves of its copies).
pub fn drain_node(topology: &mut pb::Topology, id: &str, now_ms: u64) -> Result<pb::Node> {
    let node = find_node(topology, id)?;
    if node.state == NodeState::Failed as i32 {
        return Err(ControlPlaneError::FailedPrecondition(format!(
            "node {id:?} has failed: its copies cannot be read from it; repair it instead (`miroir-ctl node repair {id}`)"
        )));
    }
    if node.state != NodeState::Draining as i32 {
        node.state = NodeState::Draining as i32;
        node.state_changed_at_ms = now_ms;
    }
    Ok(node.clone())
}

/// Takes a node out of the topology. Refused while it holds shard copies or a planned
/// move names it (a target waiting for its copy holds none yet, but will).
pub fn remove_node(topology: &mut pb::Topology, id: &str, now_ms: u64) -> Result<pb::Node> {
    let held = copies_held(topology, id);
    find_node(topology, id)?;
    if moves_name_node(topology, id) {
        return Err(ControlPlaneError::FailedPrecondition(format!(
            "node {id:?} takes part in a shard move in progress; cancel the operation (`miroir-ctl moves cancel ID`) or wait for it first"
        )));
    }
    if !held.is_empty() {
        return Err(ControlPlaneError::FailedPrecondition(format!(
            "node {id:?} holds shard copies ({}); drain it first (`miroir-ctl node drain {id}`), or repair it if it failed",
            describe_copies(&held)
        )));
    }
    let position = topology
        .nodes
        .iter()
        .position(|n| n.id == id)
        .expect("found above");
    let mut node = topology.nodes.remove(position);
    node.state = NodeState::Removed as i32;
    node.state_changed_at_ms = now_ms;
    Ok(node)
}

/// Adds a group with `nodes` (id, address). Without indexes it is active at once; with
/// indexes it is `syncing` (no reads) until the caller's operation has filled it.
pub fn add_group(
    topology: &mut pb::Topology,
    id: Option<u32>,
    nodes: &[(String, String)],
    now_ms: u64,
) -> Result<pb::Group> {
    let id = id.unwrap_or_else(|| topology.groups.iter().map(|g| g.id + 1).max().unwrap_or(0));
    if topology.groups.iter().any(|g| g.id == id) {
        return Err(ControlPlaneError::AlreadyExists(format!(
            "group {id} already exists"
        )));
    }
    if !topology.indexes.is_empty() && nodes.is_empty() {
        return Err(ControlPlaneError::InvalidArgument(
            "while indexes exist a new group comes with its nodes (every shard needs its copies there): pass --node ID=URL for each".into(),
        ));
    }
    let state = if topology.indexes.is_empty() {
        GroupState::Active
    } else {
        GroupState::Syncing
    };
    let group = pb::Group {
        id,
        state: state as i32,
    };
    topology.groups.push(group);
    for (node_id, address) in nodes {
        add_node(topology, node_id, address, GroupId(id), now_ms)?;
    }
    sort(topology);
    Ok(group)
}

/// Removes a group with its nodes. While indexes exist, another active group must hold
/// every shard of every index, so nothing becomes unreadable.
pub fn remove_group(topology: &mut pb::Topology, id: u32) -> Result<(pb::Group, Vec<pb::Node>)> {
    let Some(position) = topology.groups.iter().position(|g| g.id == id) else {
        return Err(ControlPlaneError::NotFound(format!(
            "group {id} does not exist"
        )));
    };
    if let Some(m) = topology.moves.iter().find(|m| m.group_id == id) {
        return Err(ControlPlaneError::FailedPrecondition(format!(
            "group {id} has shard moves in progress (operation {}); cancel it or wait for it first",
            m.operation_id
        )));
    }
    for index in &topology.indexes {
        let covered = index.routing.iter().any(|routing| {
            routing.group_id != id
                && topology
                    .groups
                    .iter()
                    .any(|g| g.id == routing.group_id && g.state == GroupState::Active as i32)
                && routing.shards.len() == index.shard_count as usize
                && routing.shards.iter().all(|s| !s.read_nodes.is_empty())
        });
        if !covered {
            return Err(ControlPlaneError::FailedPrecondition(format!(
                "group {id} is the only active group holding every shard of index {:?}; removing it would lose data",
                index.uid
            )));
        }
    }
    let group = topology.groups.remove(position);
    for index in &mut topology.indexes {
        index.routing.retain(|r| r.group_id != id);
    }
    let (removed, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut topology.nodes)
        .into_iter()
        .partition(|n| n.group_id == id);
    topology.nodes = kept;
    let removed = removed
        .into_iter()
        .map(|mut n| {
            n.state = NodeState::Removed as i32;
            n
        })
        .collect();
    Ok((group, removed))
}

/// Shard count and replication factor for a new index.
#[derive(Clone, Copy, Debug)]
pub struct IndexLayout {
    /// Shard count S.
    pub shard_count: u32,
    /// Copies of each shard per group.
    pub replication_factor: u32,
}

/// Records a new index and lays out its routing table in every group.
pub fn create_index(
    topology: &mut pb::Topology,
    uid: &str,
    primary_key: Option<String>,
    layout: IndexLayout,
    now_ms: u64,
) -> Result<pb::Index> {
    validate_index_uid(uid)?;
    if topology.indexes.iter().any(|i| i.uid == uid) {
        return Err(ControlPlaneError::IndexAlreadyExists(format!(
            "Index `{uid}` already exists."
        )));
    }
    name_is_no_alias(topology, uid)?;
    let IndexLayout {
        shard_count,
        replication_factor,
    } = layout;
    if shard_count == 0 || shard_count > MAX_SHARDS {
        return Err(ControlPlaneError::InvalidArgument(format!(
            "shard count {shard_count} is out of range: use 1 to {MAX_SHARDS}"
        )));
    }
    if replication_factor == 0 {
        return Err(ControlPlaneError::InvalidArgument(
            "replication factor must be at least 1".into(),
        ));
    }
    if topology.groups.is_empty() {
        return Err(ControlPlaneError::FailedPrecondition(
            "the fleet has no replica group yet: add nodes first".into(),
        ));
    }
    let mut routing = Vec::with_capacity(topology.groups.len());
    for group in &topology.groups {
        let members: Vec<NodeId> = topology
            .nodes
            .iter()
            .filter(|n| {
                n.group_id == group.id
                    && matches!(n.state(), NodeState::Active | NodeState::Joining)
            })
            .map(|n| NodeId(n.id.clone()))
            .collect();
        if members.len() < replication_factor as usize {
            return Err(ControlPlaneError::FailedPrecondition(format!(
                "group {} has {} usable node(s); replication factor {replication_factor} needs at least {replication_factor}",
                group.id,
                members.len()
            )));
        }
        routing.push(compute_group_routing(
            GroupId(group.id),
            shard_count,
            replication_factor,
            &members,
        ));
    }
    let index = pb::Index {
        uid: uid.to_owned(),
        primary_key,
        shard_count,
        replication_factor,
        settings_version: 0,
        created_at_ms: now_ms,
        routing,
        ..Default::default()
    };
    topology.indexes.push(index.clone());
    sort(topology);
    Ok(index)
}

/// Removes an index from the topology.
pub fn delete_index(topology: &mut pb::Topology, uid: &str) -> Result<pb::Index> {
    let Some(position) = topology.indexes.iter().position(|i| i.uid == uid) else {
        return Err(ControlPlaneError::index_not_found(uid));
    };
    if let Some(alias) = topology.aliases.iter().find(|a| a.index_uid == uid) {
        return Err(ControlPlaneError::FailedPrecondition(format!(
            "Index `{uid}` is the target of alias `{}`: point the alias at another index or remove it first (`miroir-ctl alias`).",
            alias.name
        )));
    }
    Ok(topology.indexes.remove(position))
}

/// Records `primary_key` on an index that has none; a no-op when it is already the
/// same; FAILED_PRECONDITION naming the recorded key otherwise (unless `replace`).
pub fn set_primary_key(
    topology: &mut pb::Topology,
    uid: &str,
    primary_key: &str,
    replace: bool,
) -> Result<pb::Index> {
    let index = find_index_mut(topology, uid)?;
    match index.primary_key.as_deref() {
        Some(current) if current != primary_key && !replace => {
            return Err(ControlPlaneError::PrimaryKeyAlreadyExists(format!(
                "Index already has a primary key: `{current}`."
            )));
        }
        _ => index.primary_key = Some(primary_key.to_owned()),
    }
    Ok(index.clone())
}

/// One pair of `POST /swap-indexes`: swap the two, or rename the first to the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    /// One index.
    pub first: String,
    /// The other, or the first's new name.
    pub second: String,
    /// Rename rather than swap.
    pub rename: bool,
}

/// Renames index `from` to `to` (Meilisearch 1.50's `PATCH /indexes/{uid}` with `uid`, and
/// `swap-indexes` with `rename`): its layout, key and settings version go with it. `to`
/// must be free; an index with shards moving cannot be renamed.
pub fn rename_index(topology: &mut pb::Topology, from: &str, to: &str) -> Result<pb::Index> {
    validate_index_uid(to)?;
    let Some(at) = topology.indexes.iter().position(|i| i.uid == from) else {
        return Err(ControlPlaneError::index_not_found(from));
    };
    if from != to && topology.indexes.iter().any(|i| i.uid == to) {
        return Err(ControlPlaneError::IndexAlreadyExists(format!(
            "Index `{to}` already exists."
        )));
    }
    if let Some(m) = topology.moves.iter().find(|m| m.index_uid == from) {
        return Err(ControlPlaneError::FailedPrecondition(format!(
            "index `{from}` has shards being moved (operation {}); rename it once the operation finished",
            m.operation_id
        )));
    }
    name_is_no_alias(topology, to)?;
    follow_rename(topology, from, to);
    topology.indexes[at].uid = to.to_owned();
    Ok(topology.indexes[at].clone())
}

/// Exchanges everything but the uid between the indexes of each pair: each uid now names
/// the other's shards, routing, key and settings version; a `rename` pair gives the first
/// index the second's name, which must be free. Every index must appear once, and exist
/// (but a renaming pair's second).
pub fn swap_indexes(topology: &mut pb::Topology, swaps: &[Swap]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut missing = Vec::new();
    for swap in swaps {
        for uid in [&swap.first, &swap.second] {
            if !seen.insert(uid) {
                return Err(ControlPlaneError::InvalidArgument(format!(
                    "Indexes must be declared only once during a swap. `{uid}` was specified several times."
                )));
            }
        }
        let must_exist: &[&String] = if swap.rename {
            &[&swap.first]
        } else {
            &[&swap.first, &swap.second]
        };
        for uid in must_exist {
            if !topology.indexes.iter().any(|i| &i.uid == *uid) {
                missing.push(format!("`{uid}`"));
            }
        }
    }
    if !missing.is_empty() {
        let noun = if missing.len() == 1 {
            "Index"
        } else {
            "Indexes"
        };
        return Err(ControlPlaneError::IndexNotFound(format!(
            "{noun} {} not found.",
            missing.join(", ")
        )));
    }
    if let Some(m) = topology.moves.iter().find(|m| {
        swaps
            .iter()
            .any(|s| m.index_uid == s.first || m.index_uid == s.second)
    }) {
        return Err(ControlPlaneError::FailedPrecondition(format!(
            "index `{}` has shards being moved (operation {}); swap it once the operation finished",
            m.index_uid, m.operation_id
        )));
    }
    for swap in swaps.iter().filter(|s| s.rename) {
        name_is_no_alias(topology, &swap.second)?;
        if topology.indexes.iter().any(|i| i.uid == swap.second) {
            let (a, b) = (&swap.first, &swap.second);
            return Err(ControlPlaneError::IndexAlreadyExists(format!(
                "Cannot rename `{a}` to `{b}` as the index already exists. Hint: You can remove `{b}` first and then do your remove."
            )));
        }
    }
    for swap in swaps {
        let (a, b) = (&swap.first, &swap.second);
        let i = topology.indexes.iter().position(|x| &x.uid == a);
        let j = topology.indexes.iter().position(|x| &x.uid == b);
        match (i, j) {
            (Some(i), Some(j)) => {
                topology.indexes.swap(i, j);
                topology.indexes[i].uid = a.clone();
                topology.indexes[j].uid = b.clone();
            }
            (Some(i), None) if swap.rename => {
                follow_rename(topology, a, b);
                topology.indexes[i].uid = b.clone();
            }
            _ => {}
        }
    }
    Ok(())
}

/// ALREADY_EXISTS when an alias has the name an index would take.
fn name_is_no_alias(topology: &pb::Topology, name: &str) -> Result<()> {
    match topology.aliases.iter().find(|a| a.name == name) {
        Some(alias) => Err(ControlPlaneError::IndexAlreadyExists(format!(
            "`{name}` is an alias of index `{}`; an index cannot take its name.",
            alias.index_uid
        ))),
        None => Ok(()),
    }
}

/// Aliases of a renamed index name it by its new name (a swap's exchange leaves them on
/// the uid, which then names the other index's documents).
fn follow_rename(topology: &mut pb::Topology, from: &str, to: &str) {
    for alias in topology.aliases.iter_mut().filter(|a| a.index_uid == from) {
        alias.index_uid = to.to_owned();
    }
}

/// Checks that alias `name` may point at index `target`; the index it names now, if it
/// exists.
pub fn check_alias(topology: &pb::Topology, name: &str, target: &str) -> Result<Option<String>> {
    validate_index_uid(name)?;
    if topology.indexes.iter().any(|i| i.uid == name) {
        return Err(ControlPlaneError::IndexAlreadyExists(format!(
            "`{name}` is an index; an alias cannot take its name."
        )));
    }
    if topology.aliases.iter().any(|a| a.name == target) {
        return Err(ControlPlaneError::InvalidArgument(format!(
            "`{target}` is an alias; point `{name}` at an index."
        )));
    }
    if !topology.indexes.iter().any(|i| i.uid == target) {
        return Err(ControlPlaneError::index_not_found(target));
    }
    Ok(topology
        .aliases
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.index_uid.clone()))
}

/// Points alias `name` at `target` (created if new), with its `switching` flag; checks
/// as [`check_alias`].
pub fn set_alias(
    topology: &mut pb::Topology,
    name: &str,
    target: &str,
    switching: bool,
) -> Result<pb::IndexAlias> {
    check_alias(topology, name, target)?;
    let alias = pb::IndexAlias {
        name: name.to_owned(),
        index_uid: target.to_owned(),
        switching,
    };
    match topology.aliases.iter_mut().find(|a| a.name == name) {
        Some(existing) => *existing = alias.clone(),
        None => {
            topology.aliases.push(alias.clone());
            topology.aliases.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
    Ok(alias)
}

/// Removes alias `name`.
pub fn remove_alias(topology: &mut pb::Topology, name: &str) -> Result<pb::IndexAlias> {
    let Some(at) = topology.aliases.iter().position(|a| a.name == name) else {
        return Err(ControlPlaneError::NotFound(format!(
            "alias `{name}` does not exist"
        )));
    };
    Ok(topology.aliases.remove(at))
}

/// What a swap does to names, as [`Store::commit_topology`] renames tasks: a swapped pair
/// both ways, a renamed index one way.
///
/// [`Store::commit_topology`]: crate::store::Store::commit_topology
pub fn swap_renames(swaps: &[Swap]) -> Vec<(String, String)> {
    swaps
        .iter()
        .flat_map(|s| {
            let forth = (s.first.clone(), s.second.clone());
            let back = (!s.rename).then(|| (s.second.clone(), s.first.clone()));
            std::iter::once(forth).chain(back)
        })
        .collect()
}

/// Holds (`hold`) or releases writes to every shard of the indexes `uids` on every
/// gateway, as a move's cutover holds one shard's: a rename or a swap runs on the nodes
/// while no write to its indexes is in flight, so none lands under a name the nodes no
/// longer give that index (a node would create an empty index by the old name).
pub fn hold_writes(topology: &mut pb::Topology, uids: &[String], hold: bool) {
    for index in topology
        .indexes
        .iter_mut()
        .filter(|i| uids.contains(&i.uid))
    {
        for route in index.routing.iter_mut().flat_map(|r| &mut r.shards) {
            route.blocked = hold;
        }
    }
}

/// A shard of an index in a group: (index uid, group, shard).
pub type RouteKey = (String, u32, u32);

/// Shards held (`blocked`) that no move's cutover holds and no catch-up running here
/// (`exempt`) holds, by index uid: a hold a rename, swap or catch-up left when its leader
/// stopped before releasing it.
fn stale_holds(topology: &pb::Topology, exempt: &HashSet<RouteKey>) -> Vec<(String, u32, u32)> {
    let in_cutover: std::collections::HashSet<(&str, u32, u32)> = topology
        .moves
        .iter()
        .filter(|m| m.phase() == pb::MovePhase::Cutover)
        .map(|m| (m.index_uid.as_str(), m.group_id, m.shard))
        .collect();
    let mut stale = Vec::new();
    for index in &topology.indexes {
        for routing in &index.routing {
            for route in routing.shards.iter().filter(|s| s.blocked) {
                let key = (index.uid.clone(), routing.group_id, route.shard);
                if !in_cutover.contains(&(index.uid.as_str(), routing.group_id, route.shard))
                    && !exempt.contains(&key)
                {
                    stale.push(key);
                }
            }
        }
    }
    stale
}

/// Whether some shard is held by no move's cutover ([`release_stale_holds`]).
pub fn has_stale_holds(topology: &pb::Topology, exempt: &HashSet<RouteKey>) -> bool {
    !stale_holds(topology, exempt).is_empty()
}

/// Releases the shards held by no move's cutover: a hold a rename or swap left when its
/// leader stopped before releasing it. Returns the indexes released.
pub fn release_stale_holds(topology: &mut pb::Topology, exempt: &HashSet<RouteKey>) -> Vec<String> {
    let stale = stale_holds(topology, exempt);
    for (uid, group, shard) in &stale {
        let route = topology
            .indexes
            .iter_mut()
            .filter(|i| &i.uid == uid)
            .flat_map(|i| &mut i.routing)
            .filter(|r| r.group_id == *group)
            .flat_map(|r| &mut r.shards)
            .find(|s| s.shard == *shard);
        if let Some(route) = route {
            route.blocked = false;
        }
    }
    let mut released: Vec<String> = stale.into_iter().map(|(uid, _, _)| uid).collect();
    released.dedup();
    released
}

/// Every node that holds a copy of `index` (read or write), sorted.
pub fn nodes_of_index(index: &pb::Index) -> Vec<String> {
    let mut ids: Vec<String> = index
        .routing
        .iter()
        .flat_map(|g| &g.shards)
        .flat_map(|s| s.read_nodes.iter().chain(&s.write_nodes))
        .cloned()
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Marks a settings change as between propose and commit (idempotent for the same change).
pub fn begin_settings_change(
    topology: &mut pb::Topology,
    uid: &str,
    change_id: u64,
    task_uid: Option<u32>,
    now_ms: u64,
) -> Result<pb::PendingSettings> {
    let index = find_index_mut(topology, uid)?;
    if let Some(pending) = &index.pending_settings
        && pending.change_id == change_id
    {
        return Ok(*pending);
    }
    let pending = pb::PendingSettings {
        change_id,
        task_uid,
        target_version: index.settings_version + 1,
        started_at_ms: now_ms,
    };
    index.pending_settings = Some(pending);
    Ok(pending)
}

/// Commits a verified settings change: the next settings version, what clients read, the
/// hash every node in `verified` was read back with.
pub fn commit_settings(
    topology: &mut pb::Topology,
    uid: &str,
    change_id: u64,
    settings_json: String,
    hash: String,
    verified: &[String],
) -> Result<u64> {
    let index = find_index_mut(topology, uid)?;
    let version = index
        .pending_settings
        .filter(|p| p.change_id == change_id)
        .map_or(index.settings_version + 1, |p| p.target_version);
    index.settings_version = version;
    index.settings_json = settings_json;
    index.settings_hash = hash;
    index.pending_settings = None;
    index.settings_change_id = change_id;
    record_verified(index, verified);
    Ok(version)
}

/// Records `verified` at the index's committed version; other nodes keep the version they
/// were last verified at.
fn record_verified(index: &mut pb::Index, verified: &[String]) {
    let version = index.settings_version;
    index
        .node_settings
        .retain(|n| !verified.contains(&n.node_id) && n.version < version);
    index
        .node_settings
        .extend(verified.iter().map(|node_id| pb::NodeSettingsVersion {
            node_id: node_id.clone(),
            version,
        }));
    index
        .node_settings
        .sort_by(|a, b| a.node_id.cmp(&b.node_id));
}

/// Ends a settings change that failed: nothing commits, and no node is known to hold the
/// committed settings until the drift reconciler has verified or repaired it.
pub fn fail_settings(topology: &mut pb::Topology, uid: &str, change_id: u64) -> Result<()> {
    let index = find_index_mut(topology, uid)?;
    index.pending_settings = None;
    index.settings_change_id = index.settings_change_id.max(change_id);
    index.node_settings.clear();
    Ok(())
}

/// Records which nodes were verified at the committed settings version; the others keep
/// an older version, if they had one (they are behind).
pub fn set_verified_nodes(
    topology: &mut pb::Topology,
    uid: &str,
    verified: &[String],
) -> Result<()> {
    let index = find_index_mut(topology, uid)?;
    record_verified(index, verified);
    Ok(())
}

fn find_index_mut<'a>(topology: &'a mut pb::Topology, uid: &str) -> Result<&'a mut pb::Index> {
    topology
        .indexes
        .iter_mut()
        .find(|i| i.uid == uid)
        .ok_or_else(|| ControlPlaneError::index_not_found(uid))
}

/// The keys a new Meilisearch creates at its first start, recorded once in a new
/// topology so every node ends up with the same two.
pub fn default_keys(now_ms: u64) -> Vec<pb::ApiKey> {
    let key = |name: &str, description: &str, actions: &[&str]| pb::ApiKey {
        uid: miroir_proto::keys::new_uid(),
        name: Some(name.to_owned()),
        description: Some(description.to_owned()),
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        indexes: vec!["*".to_owned()],
        expires_at_ms: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    vec![
        key(
            "Default Search API Key",
            "Use it to search from the frontend",
            &["search"],
        ),
        key(
            "Default Admin API Key",
            "Use it for anything that is not a search operation. Caution! Do not expose it on a public frontend",
            &["*"],
        ),
    ]
}

/// Records a new API key, newest first; its uid must be free.
pub fn create_key(
    topology: &mut pb::Topology,
    mut key: pb::ApiKey,
    now_ms: u64,
) -> Result<pb::ApiKey> {
    let Some(uid) = miroir_proto::keys::parse_uid(&key.uid) else {
        return Err(ControlPlaneError::InvalidArgument(format!(
            "`{}` is not a UUID",
            key.uid
        )));
    };
    if topology.keys.iter().any(|k| k.uid == uid) {
        return Err(ControlPlaneError::ApiKeyAlreadyExists(format!(
            "`uid` field value `{uid}` is already an existing API key."
        )));
    }
    key.uid = uid;
    key.created_at_ms = now_ms;
    key.updated_at_ms = now_ms;
    topology.keys.insert(0, key.clone());
    Ok(key)
}

/// Changes a key's name and/or description (`Some(None)` clears one).
pub fn update_key(
    topology: &mut pb::Topology,
    uid: &str,
    name: Option<Option<String>>,
    description: Option<Option<String>>,
    now_ms: u64,
) -> Result<pb::ApiKey> {
    let key = topology
        .keys
        .iter_mut()
        .find(|k| k.uid == uid)
        .ok_or_else(|| ControlPlaneError::api_key_not_found(uid))?;
    if let Some(name) = name {
        key.name = name;
    }
    if let Some(description) = description {
        key.description = description;
    }
    key.updated_at_ms = now_ms;
    Ok(key.clone())
}

/// Removes a key.
pub fn delete_key(topology: &mut pb::Topology, uid: &str) -> Result<pb::ApiKey> {
    let position = topology
        .keys
        .iter()
        .position(|k| k.uid == uid)
        .ok_or_else(|| ControlPlaneError::api_key_not_found(uid))?;
    Ok(topology.keys.remove(position))
}

/// Records `webhook`: a new one (`create`: its uuid free, fewer than
/// [`miroir_proto::webhooks::MAX_WEBHOOKS`]), or
/// the replacement of the one with its uuid.
pub fn put_webhook(topology: &mut pb::Topology, webhook: pb::Webhook, create: bool) -> Result<()> {
    let at = topology
        .webhooks
        .iter()
        .position(|w| w.uuid == webhook.uuid);
    match (at, create) {
        (Some(_), true) => Err(ControlPlaneError::AlreadyExists(format!(
            "webhook `{}` already exists",
            webhook.uuid
        ))),
        (None, true) if topology.webhooks.len() >= miroir_proto::webhooks::MAX_WEBHOOKS => Err(
            ControlPlaneError::TooManyWebhooks(miroir_proto::webhooks::too_many_webhooks()),
        ),
        (None, true) => {
            topology.webhooks.push(webhook);
            topology.webhooks.sort_by(|a, b| a.uuid.cmp(&b.uuid));
            Ok(())
        }
        (Some(at), false) => {
            topology.webhooks[at] = webhook;
            Ok(())
        }
        (None, false) => Err(webhook_not_found(&webhook.uuid)),
    }
}

/// Removes webhook `uuid`; the webhook removed.
pub fn delete_webhook(topology: &mut pb::Topology, uuid: &str) -> Result<pb::Webhook> {
    let at = topology
        .webhooks
        .iter()
        .position(|w| w.uuid == uuid)
        .ok_or_else(|| webhook_not_found(uuid))?;
    Ok(topology.webhooks.remove(at))
}

fn webhook_not_found(uuid: &str) -> ControlPlaneError {
    ControlPlaneError::WebhookNotFound(format!("Webhook `{uuid}` not found."))
}

/// Sets a node's state; returns whether anything changed.
pub fn set_node_state(
    topology: &mut pb::Topology,
    id: &str,
    state: NodeState,
    now_ms: u64,
) -> bool {
    let changed = match topology.nodes.iter_mut().find(|n| n.id == id) {
        Some(node) if node.state != state as i32 => {
            node.state = state as i32;
            node.state_changed_at_ms = now_ms;
            true
        }
        _ => false,
    };
    if changed && state == NodeState::Failed {
        mark_stale(topology, id);
    }
    changed
}

/// Takes failed `node` out of the in-sync set of every shard copy it holds where another
/// in-sync copy of that shard lives on a node that has not failed, in a group that takes
/// writes: writes to those shards are then acknowledged without it (docs/architecture.md,
/// "Writes through a replica's failure"), and the catch-up reconciler makes its copy equal
/// again before it serves. Where it holds the shard's last in-sync copy, it stays in
/// sync: writes to that shard wait for it, so it misses none. The copies marked stale.
pub fn mark_stale(topology: &mut pb::Topology, node: &str) -> usize {
    let failed: HashSet<String> = topology
        .nodes
        .iter()
        .filter(|n| n.state() == NodeState::Failed)
        .map(|n| n.id.clone())
        .collect();
    let writable: HashSet<u32> = topology
        .groups
        .iter()
        .filter(|g| g.state() != GroupState::Draining)
        .map(|g| g.id)
        .collect();
    let mut marked = 0;
    for index in &mut topology.indexes {
        for shard in 0..index.shard_count as usize {
            let other_in_sync = index
                .routing
                .iter()
                .filter(|r| writable.contains(&r.group_id))
                .filter_map(|r| r.shards.get(shard))
                .flat_map(|s| s.in_sync())
                .any(|n| n != node && !failed.contains(n));
            if !other_in_sync {
                continue;
            }
            for route in index
                .routing
                .iter_mut()
                .filter_map(|r| r.shards.get_mut(shard))
                .filter(|s| s.is_in_sync(node))
            {
                route.stale_nodes.push(node.to_owned());
                marked += 1;
            }
        }
    }
    marked
}

/// A stale copy the catch-up reconciler may bring back in sync: its node passed its
/// health checks again, no move is on its shard, and an in-sync copy of the shard lives
/// on a node that serves. As (index uid, group, shard, node).
pub fn copies_to_catch_up(topology: &pb::Topology) -> Vec<(String, u32, u32, String)> {
    let active = |id: &str| {
        topology
            .nodes
            .iter()
            .any(|n| n.id == id && n.state() == NodeState::Active)
    };
    let mut copies = Vec::new();
    for index in &topology.indexes {
        for routing in &index.routing {
            for route in &routing.shards {
                let moving = topology.moves.iter().any(|m| {
                    m.index_uid == index.uid
                        && m.group_id == routing.group_id
                        && m.shard == route.shard
                });
                if moving {
                    continue;
                }
                for node in route.stale_nodes.iter().filter(|n| active(n)) {
                    if in_sync_source(topology, index, route.shard, routing.group_id).is_some() {
                        copies.push((
                            index.uid.clone(),
                            routing.group_id,
                            route.shard,
                            node.clone(),
                        ));
                    }
                }
            }
        }
    }
    copies
}

/// A node holding an in-sync copy of `shard` of `index` that serves reads: in `group`
/// first, else in another active group.
pub fn in_sync_source<'a>(
    topology: &'a pb::Topology,
    index: &pb::Index,
    shard: u32,
    group: u32,
) -> Option<&'a pb::Node> {
    let active_group = |id: u32| {
        topology
            .groups
            .iter()
            .any(|g| g.id == id && g.state() == GroupState::Active)
    };
    let mut routings: Vec<&pb::GroupRouting> = index
        .routing
        .iter()
        .filter(|r| r.group_id == group || active_group(r.group_id))
        .collect();
    routings.sort_by_key(|r| r.group_id != group);
    routings
        .into_iter()
        .filter_map(|r| r.shards.get(shard as usize))
        .flat_map(|s| s.in_sync())
        .find_map(|id| topology.nodes.iter().find(|n| &n.id == id && n.checked()))
}

/// The route of a shard in a group, by (index uid, group, shard).
pub fn route_mut<'a>(
    topology: &'a mut pb::Topology,
    (uid, group, shard): &RouteKey,
) -> Option<&'a mut pb::ShardRoute> {
    topology
        .indexes
        .iter_mut()
        .find(|i| &i.uid == uid)?
        .routing
        .iter_mut()
        .find(|r| r.group_id == *group)?
        .shards
        .get_mut(*shard as usize)
}

/// Whether a planned move names `node` (as an old or a new owner).
pub fn moves_name_node(topology: &pb::Topology, node: &str) -> bool {
    topology
        .moves
        .iter()
        .any(|m| m.old_owners.iter().chain(&m.new_owners).any(|n| n == node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(nodes: &[(&str, u32)]) -> pb::Topology {
        let mut t = pb::Topology::default();
        for (i, (id, group)) in nodes.iter().enumerate() {
            add_node(
                &mut t,
                id,
                &format!("http://127.0.0.1:{}", 7700 + i),
                GroupId(*group),
                0,
            )
            .unwrap();
        }
        t
    }

    #[test]
    fn an_alias_names_an_index_and_keeps_names_apart() {
        let mut t = fleet(&[("a", 0)]);
        create_index(&mut t, "movies_v1", None, layout(2, 1), 0).unwrap();
        create_index(&mut t, "movies_v2", None, layout(2, 1), 0).unwrap();
        assert!(matches!(
            set_alias(&mut t, "movies", "missing", false),
            Err(ControlPlaneError::IndexNotFound(_))
        ));
        assert!(matches!(
            set_alias(&mut t, "movies_v2", "movies_v1", false),
            Err(ControlPlaneError::IndexAlreadyExists(_))
        ));
        assert!(matches!(
            set_alias(&mut t, "bad name", "movies_v1", false),
            Err(ControlPlaneError::InvalidIndexUid(_))
        ));
        set_alias(&mut t, "movies", "movies_v1", false).unwrap();
        assert_eq!(
            check_alias(&t, "movies", "movies_v2").unwrap().as_deref(),
            Some("movies_v1")
        );
        // An alias of an alias, an index by an alias's name, deleting a target: refused.
        assert!(matches!(
            set_alias(&mut t, "films", "movies", false),
            Err(ControlPlaneError::InvalidArgument(_))
        ));
        assert!(matches!(
            create_index(&mut t, "movies", None, layout(2, 1), 0),
            Err(ControlPlaneError::IndexAlreadyExists(_))
        ));
        assert!(matches!(
            rename_index(&mut t, "movies_v2", "movies"),
            Err(ControlPlaneError::IndexAlreadyExists(_))
        ));
        assert!(matches!(
            delete_index(&mut t, "movies_v1"),
            Err(ControlPlaneError::FailedPrecondition(_))
        ));
        // A renamed target takes its alias along.
        rename_index(&mut t, "movies_v1", "movies_old").unwrap();
        assert_eq!(t.aliases[0].index_uid, "movies_old");
        set_alias(&mut t, "movies", "movies_v2", false).unwrap();
        delete_index(&mut t, "movies_old").unwrap();
        assert_eq!(
            remove_alias(&mut t, "movies").unwrap().index_uid,
            "movies_v2"
        );
        assert!(matches!(
            remove_alias(&mut t, "movies"),
            Err(ControlPlaneError::NotFound(_))
        ));
    }

    fn layout(s: u32, rf: u32) -> IndexLayout {
        IndexLayout {
            shard_count: s,
            replication_factor: rf,
        }
    }

    fn stale(t: &pb::Topology) -> Vec<(u32, u32, String)> {
        t.indexes[0]
            .routing
            .iter()
            .flat_map(|r| {
                r.shards.iter().flat_map(move |s| {
                    s.stale_nodes
                        .iter()
                        .map(move |n| (r.group_id, s.shard, n.clone()))
                })
            })
            .collect()
    }

    #[test]
    fn a_failed_copy_goes_stale_only_while_another_in_sync_copy_takes_the_writes() {
        let mut t = fleet(&[("a", 0), ("b", 0)]);
        for node in ["a", "b"] {
            set_node_state(&mut t, node, NodeState::Active, 0);
        }
        create_index(&mut t, "movies", None, layout(2, 2), 0).unwrap();
        // a fails: b holds an in-sync copy of both shards, so a's copies go stale.
        set_node_state(&mut t, "a", NodeState::Failed, 1);
        assert_eq!(stale(&t), [(0, 0, "a".into()), (0, 1, "a".into())]);
        let route = &t.indexes[0].routing[0].shards[0];
        assert_eq!(route.in_sync().collect::<Vec<_>>(), ["b"]);
        // b fails too: it holds the last in-sync copies, so it stays in sync and writes
        // wait for it rather than be acknowledged by no copy that has them all.
        set_node_state(&mut t, "b", NodeState::Failed, 2);
        assert_eq!(stale(&t).len(), 2);
        assert!(copies_to_catch_up(&t).is_empty(), "no live in-sync source");
        // a comes back first: still no source. b comes back: a is caught up from b.
        set_node_state(&mut t, "a", NodeState::Active, 3);
        assert!(copies_to_catch_up(&t).is_empty());
        set_node_state(&mut t, "b", NodeState::Active, 4);
        assert_eq!(
            copies_to_catch_up(&t),
            [
                ("movies".to_owned(), 0, 0, "a".to_owned()),
                ("movies".to_owned(), 0, 1, "a".to_owned())
            ]
        );
    }

    #[test]
    fn settings_versions_move_only_on_commit() {
        let mut t = fleet(&[("a", 0), ("b", 0)]);
        create_index(&mut t, "movies", None, layout(4, 2), 0).unwrap();
        let nodes = ["a".to_owned(), "b".to_owned()];
        let index = |t: &pb::Topology| t.indexes[0].clone();

        let pending = begin_settings_change(&mut t, "movies", 1, None, 5).unwrap();
        assert_eq!((pending.target_version, index(&t).settings_version), (1, 0));
        // Resuming the same change keeps its mark.
        assert_eq!(
            begin_settings_change(&mut t, "movies", 1, None, 9).unwrap(),
            pending
        );
        commit_settings(&mut t, "movies", 1, "{}".into(), "h1".into(), &nodes).unwrap();
        let committed = index(&t);
        assert_eq!(committed.settings_version, 1);
        assert!(committed.pending_settings.is_none());
        assert_eq!(committed.node_settings.len(), 2);

        // Version 2 commits with b failed: b stays recorded at 1.
        begin_settings_change(&mut t, "movies", 2, Some(7), 10).unwrap();
        commit_settings(&mut t, "movies", 2, "{}".into(), "h2".into(), &nodes[..1]).unwrap();
        let versions: Vec<(String, u64)> = index(&t)
            .node_settings
            .iter()
            .map(|n| (n.node_id.clone(), n.version))
            .collect();
        assert_eq!(versions, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
        set_verified_nodes(&mut t, "movies", &nodes).unwrap();
        assert!(index(&t).node_settings.iter().all(|n| n.version == 2));

        // A failed change leaves the version and forgets what nodes hold.
        begin_settings_change(&mut t, "movies", 3, Some(8), 11).unwrap();
        fail_settings(&mut t, "movies", 3).unwrap();
        let failed = index(&t);
        assert_eq!((failed.settings_version, failed.settings_change_id), (2, 3));
        assert!(failed.pending_settings.is_none() && failed.node_settings.is_empty());
    }

    #[test]
    fn addresses_are_checked() {
        assert!(validate_address("http://127.0.0.1:7700").is_ok());
        assert_eq!(
            validate_address("http://meili:7700/").unwrap(),
            "http://meili:7700"
        );
        for bad in [
            "",
            "127.0.0.1:7700",
            "ftp://x:1",
            "http://x:1/path",
            "not a url",
        ] {
            assert!(
                matches!(
                    validate_address(bad),
                    Err(ControlPlaneError::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn node_lifecycle_without_indexes() {
        let mut t = fleet(&[("a", 0), ("b", 0)]);
        assert_eq!(t.groups.len(), 1);
        assert!(matches!(
            add_node(&mut t, "a", "http://127.0.0.1:9999", GroupId(0), 0),
            Err(ControlPlaneError::AlreadyExists(_))
        ));
        assert!(matches!(
            add_node(&mut t, "c", "http://127.0.0.1:7700", GroupId(0), 0),
            Err(ControlPlaneError::AlreadyExists(_))
        ));
        assert!(matches!(
            drain_node(&mut t, "zz", 0),
            Err(ControlPlaneError::NotFound(_))
        ));
        assert_eq!(
            drain_node(&mut t, "a", 1).unwrap().state,
            NodeState::Draining as i32
        );
        assert_eq!(
            remove_node(&mut t, "a", 2).unwrap().state,
            NodeState::Removed as i32
        );
        remove_node(&mut t, "b", 3).unwrap();
        assert!(t.nodes.is_empty());
    }

    #[test]
    fn with_an_index_copies_are_drained_before_removal_and_groups_come_with_nodes() {
        let mut t = fleet(&[("a", 0), ("b", 0), ("c", 1), ("d", 1)]);
        let index = create_index(&mut t, "movies", None, layout(16, 2), 0).unwrap();
        assert_eq!(index.routing.len(), 2);
        assert!(
            index
                .routing
                .iter()
                .all(|g| g.shards.len() == 16 && g.shards.iter().all(|s| s.read_nodes.len() == 2))
        );
        for result in [
            add_node(&mut t, "e", "http://127.0.0.1:8000", GroupId(5), 0).map(|_| ()),
            remove_node(&mut t, "a", 0).map(|_| ()),
        ] {
            assert!(
                matches!(result, Err(ControlPlaneError::FailedPrecondition(_))),
                "{result:?}"
            );
        }
        assert!(matches!(
            add_group(&mut t, None, &[], 0),
            Err(ControlPlaneError::InvalidArgument(_))
        ));
        let syncing = add_group(
            &mut t,
            Some(7),
            &[("x".into(), "http://127.0.0.1:8001".into())],
            0,
        )
        .unwrap();
        assert_eq!(syncing.state, GroupState::Syncing as i32);
        t.groups.retain(|g| g.id != 7);
        t.nodes.retain(|n| n.id != "x");
        // Group 1 covers every shard, so group 0 can go, with its nodes.
        let (group, nodes) = remove_group(&mut t, 0).unwrap();
        assert_eq!(group.id, 0);
        assert_eq!(nodes.len(), 2);
        assert_eq!(t.indexes[0].routing.len(), 1);
        // The last group holding the index cannot.
        assert!(matches!(
            remove_group(&mut t, 1),
            Err(ControlPlaneError::FailedPrecondition(_))
        ));
        delete_index(&mut t, "movies").unwrap();
        remove_group(&mut t, 1).unwrap();
        assert!(t.nodes.is_empty() && t.groups.is_empty());
    }

    #[test]
    fn index_creation_checks_its_layout() {
        let mut t = fleet(&[("a", 0)]);
        assert!(matches!(
            create_index(&mut t, "bad uid", None, layout(4, 1), 0),
            Err(ControlPlaneError::InvalidIndexUid(_))
        ));
        assert!(matches!(
            create_index(&mut t, "x", None, layout(0, 1), 0),
            Err(ControlPlaneError::InvalidArgument(_))
        ));
        assert!(matches!(
            create_index(&mut t, "x", None, layout(4, 2), 0),
            Err(ControlPlaneError::FailedPrecondition(_))
        ));
        create_index(&mut t, "x", Some("id".into()), layout(4, 1), 0).unwrap();
        assert!(matches!(
            create_index(&mut t, "x", None, layout(4, 1), 0),
            Err(ControlPlaneError::IndexAlreadyExists(_))
        ));
    }

    #[test]
    fn primary_keys_are_recorded_once() {
        let mut t = fleet(&[("a", 0)]);
        create_index(&mut t, "movies", None, layout(4, 1), 0).unwrap();
        assert_eq!(
            set_primary_key(&mut t, "movies", "id", false)
                .unwrap()
                .primary_key
                .as_deref(),
            Some("id")
        );
        assert!(set_primary_key(&mut t, "movies", "id", false).is_ok());
        let error = set_primary_key(&mut t, "movies", "uid", false).unwrap_err();
        assert!(error.to_string().contains("`id`"), "{error}");
        assert!(set_primary_key(&mut t, "movies", "uid", true).is_ok());
        assert!(matches!(
            set_primary_key(&mut t, "nope", "id", false),
            Err(ControlPlaneError::IndexNotFound(_))
        ));
    }

    fn swap(first: &str, second: &str, rename: bool) -> Swap {
        Swap {
            first: first.into(),
            second: second.into(),
            rename,
        }
    }

    #[test]
    fn swaps_exchange_layouts_and_keep_uids() {
        let mut t = fleet(&[("a", 0), ("b", 0)]);
        create_index(&mut t, "x", Some("id".into()), layout(4, 1), 1).unwrap();
        create_index(&mut t, "y", None, layout(8, 2), 2).unwrap();
        swap_indexes(&mut t, &[swap("x", "y", false)]).unwrap();
        let x = t.indexes.iter().find(|i| i.uid == "x").unwrap();
        let y = t.indexes.iter().find(|i| i.uid == "y").unwrap();
        assert_eq!(
            (x.shard_count, x.created_at_ms, x.primary_key.as_deref()),
            (8, 2, None)
        );
        assert_eq!(
            (y.shard_count, y.created_at_ms, y.primary_key.as_deref()),
            (4, 1, Some("id"))
        );
        assert!(matches!(
            swap_indexes(&mut t, &[swap("x", "y", false), swap("y", "z", false)]),
            Err(ControlPlaneError::InvalidArgument(_))
        ));
        let error = swap_indexes(&mut t, &[swap("x", "z", false)]).unwrap_err();
        assert!(
            error.to_string().contains("Index `z` not found."),
            "{error}"
        );
        // A rename: the second name must be free, and then names the first's layout.
        let error = swap_indexes(&mut t, &[swap("x", "y", true)]).unwrap_err();
        assert!(
            error.to_string().contains("Cannot rename `x` to `y`"),
            "{error}"
        );
        swap_indexes(&mut t, &[swap("x", "z", true)]).unwrap();
        let z = t.indexes.iter().find(|i| i.uid == "z").unwrap();
        assert_eq!(z.shard_count, 8);
        assert!(!t.indexes.iter().any(|i| i.uid == "x"));
        assert_eq!(
            swap_renames(&[swap("a", "b", false), swap("c", "d", true)]),
            [("a", "b"), ("b", "a"), ("c", "d")].map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }

    #[test]
    fn renames_need_a_free_name() {
        let mut t = fleet(&[("a", 0)]);
        create_index(&mut t, "x", Some("id".into()), layout(4, 1), 1).unwrap();
        create_index(&mut t, "y", None, layout(4, 1), 2).unwrap();
        assert!(matches!(
            rename_index(&mut t, "x", "y"),
            Err(ControlPlaneError::IndexAlreadyExists(m)) if m == "Index `y` already exists."
        ));
        assert!(matches!(
            rename_index(&mut t, "nope", "z"),
            Err(ControlPlaneError::IndexNotFound(_))
        ));
        assert!(matches!(
            rename_index(&mut t, "x", "bad uid"),
            Err(ControlPlaneError::InvalidIndexUid(_))
        ));
        assert_eq!(rename_index(&mut t, "x", "x").unwrap().uid, "x");
        let renamed = rename_index(&mut t, "x", "z").unwrap();
        assert_eq!((renamed.uid.as_str(), renamed.created_at_ms), ("z", 1));
    }

    #[test]
    fn held_writes_are_released_unless_a_cutover_holds_them() {
        let mut t = fleet(&[("a", 0)]);
        create_index(&mut t, "x", Some("id".into()), layout(4, 1), 1).unwrap();
        create_index(&mut t, "y", None, layout(4, 1), 2).unwrap();
        let held = |t: &pb::Topology, uid: &str| -> Vec<bool> {
            let index = t.indexes.iter().find(|i| i.uid == uid).unwrap();
            index.routing[0].shards.iter().map(|s| s.blocked).collect()
        };
        hold_writes(&mut t, &["x".to_owned()], true);
        assert_eq!(held(&t, "x"), [true; 4]);
        assert_eq!(held(&t, "y"), [false; 4]);
        t.moves.push(pb::ShardMove {
            index_uid: "x".into(),
            group_id: t.indexes[0].routing[0].group_id,
            shard: 2,
            phase: pb::MovePhase::Cutover as i32,
            ..Default::default()
        });
        assert_eq!(release_stale_holds(&mut t, &HashSet::new()), ["x"]);
        assert_eq!(held(&t, "x"), [false, false, true, false]);
        assert!(release_stale_holds(&mut t, &HashSet::new()).is_empty());
        hold_writes(&mut t, &["x".to_owned()], false);
        assert_eq!(held(&t, "x"), [false; 4]);
    }

    #[test]
    fn keys_are_created_once_updated_and_deleted() {
        let mut t = pb::Topology {
            keys: default_keys(1),
            ..Default::default()
        };
        assert_eq!(t.keys.len(), 2);
        let key = pb::ApiKey {
            uid: "01B4BC42-EB33-4041-B481-254D00CCE834".into(),
            actions: vec!["search".into()],
            indexes: vec!["movies".into()],
            ..Default::default()
        };
        let created = create_key(&mut t, key.clone(), 5).unwrap();
        assert_eq!(created.uid, "01b4bc42-eb33-4041-b481-254d00cce834");
        assert_eq!(t.keys[0].uid, created.uid, "newest first");
        assert!(matches!(
            create_key(&mut t, key, 6),
            Err(ControlPlaneError::ApiKeyAlreadyExists(_))
        ));
        let updated = update_key(&mut t, &created.uid, Some(Some("n".into())), None, 7).unwrap();
        assert_eq!(
            (updated.name.as_deref(), updated.updated_at_ms),
            (Some("n"), 7)
        );
        delete_key(&mut t, &created.uid).unwrap();
        assert!(matches!(
            delete_key(&mut t, &created.uid),
            Err(ControlPlaneError::ApiKeyNotFound(_))
        ));
    }
}
