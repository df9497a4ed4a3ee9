//! What the fleet page shows, as one JSON document: the topology this gateway follows
//! (nodes, groups, shard maps, settings versions, operations), joined with the control
//! plane's status (gateways and their lag, control planes, settings counters) and its live
//! move progress. API keys never leave: only the fields named here are read.

use crate::api::consistency::nodes_behind;
use crate::nodes::load::NodeLoads;
use miroir_proto::pb;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What the control plane answered for the page, or why it did not.
pub struct ControlPlaneView<'a> {
    pub status: Result<&'a pb::ClusterStatus, String>,
    pub operations: Option<&'a pb::ListOperationsResponse>,
}

/// The fleet page's document.
pub fn fleet(
    gateway_id: &str,
    topology: &pb::Topology,
    control_plane: ControlPlaneView<'_>,
    loads: &NodeLoads,
    now_ms: u64,
) -> Value {
    // Live moves (the leader's progress) where the control plane gave them, else the
    // topology's, whose progress is as of the last phase change.
    let live = control_plane.operations.is_some_and(|o| o.live);
    let moves: &[pb::ShardMove] = match control_plane.operations {
        Some(operations) => &operations.moves,
        None => &topology.moves,
    };
    let operations: &[pb::Operation] = match control_plane.operations {
        Some(o) => &o.operations,
        None => &topology.operations,
    };
    json!({
        "gatewayId": gateway_id,
        "topologyVersion": topology.version,
        "committedAtMs": topology.committed_at_ms,
        "reason": topology.reason,
        "generatedAtMs": now_ms,
        "liveProgress": live,
        "nodes": nodes(topology, loads),
        "groups": topology.groups.iter().map(|g| json!({
            "id": g.id,
            "state": g.state().short_name(),
            "nodes": topology.nodes.iter().filter(|n| n.group_id == g.id).map(|n| &n.id).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "indexes": topology.indexes.iter().map(|i| index(topology, i, moves, now_ms)).collect::<Vec<_>>(),
        "operations": operations.iter().map(|o| operation(o, moves, now_ms)).collect::<Vec<_>>(),
        "controlPlane": control_plane_status(&control_plane.status),
    })
}

fn nodes(topology: &pb::Topology, loads: &NodeLoads) -> Vec<Value> {
    // Copies each node serves reads for, and copies it holds stale, over every index.
    let mut copies: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for index in &topology.indexes {
        for group in &index.routing {
            for shard in &group.shards {
                for node in &shard.read_nodes {
                    let entry = copies.entry(node).or_default();
                    if shard.stale_nodes.contains(node) {
                        entry.1 += 1;
                    } else {
                        entry.0 += 1;
                    }
                }
            }
        }
    }
    topology
        .nodes
        .iter()
        .map(|n| {
            let (in_sync, stale) = copies.get(n.id.as_str()).copied().unwrap_or_default();
            json!({
                "id": n.id,
                "address": n.address,
                "group": n.group_id,
                "state": n.state().short_name(),
                "stateChangedAtMs": n.state_changed_at_ms,
                "copies": in_sync,
                "staleCopies": stale,
                "p95Ms": loads.p95(&n.id).map(|d| d.as_secs_f64() * 1000.0),
            })
        })
        .collect()
}

fn index(
    topology: &pb::Topology,
    index: &pb::Index,
    moves: &[pb::ShardMove],
    now_ms: u64,
) -> Value {
    // Nodes holding the index not verified at the committed version, with the version
    // each was last verified at.
    let mut behind: Vec<String> = nodes_behind(index, index.settings_version)
        .into_iter()
        .collect();
    behind.sort_unstable();
    let behind: Vec<Value> = behind
        .iter()
        .map(|node| {
            let verified = index
                .node_settings
                .iter()
                .find(|v| &v.node_id == node)
                .map(|v| v.version);
            json!({"node": node, "version": verified})
        })
        .collect();
    json!({
        "uid": index.uid,
        "primaryKey": index.primary_key,
        "shardCount": index.shard_count,
        "replicationFactor": index.replication_factor,
        "settingsVersion": index.settings_version,
        "settingsPending": index.pending_settings.as_ref().map(|p| json!({
            "targetVersion": p.target_version,
            "startedAtMs": p.started_at_ms,
            "taskUid": p.task_uid,
        })),
        "nodesBehindOnSettings": behind,
        "aliases": topology.aliases.iter().filter(|a| a.index_uid == index.uid).map(|a| &a.name).collect::<Vec<_>>(),
        "groups": index.routing.iter().map(|g| json!({
            "group": g.group_id,
            "shards": g.shards.iter().map(|s| {
                let moving = moves.iter().find(|m| {
                    m.index_uid == index.uid && m.group_id == g.group_id && m.shard == s.shard
                });
                json!({
                    "shard": s.shard,
                    "readNodes": s.read_nodes,
                    "writeNodes": s.write_nodes,
                    "staleNodes": s.stale_nodes,
                    "blocked": s.blocked,
                    "move": moving.map(|m| shard_move(m, now_ms)),
                })
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn shard_move(m: &pb::ShardMove, now_ms: u64) -> Value {
    json!({
        "index": m.index_uid,
        "group": m.group_id,
        "shard": m.shard,
        "operation": m.operation_id,
        "phase": m.phase().name(),
        "phaseForMs": now_ms.saturating_sub(m.phase_started_at_ms),
        "from": m.old_owners,
        "to": m.new_owners,
        "documentsCopied": m.documents_copied,
        "documentsTotal": m.documents_total,
        "documentsPerSecond": m.documents_per_second,
        "etaSeconds": m.eta_seconds(),
        "lastError": (!m.last_error.is_empty()).then_some(&m.last_error),
    })
}

/// An operation's ETA: the documents its moves have left (a move whose total is not
/// known yet counts as the average of those known) over the rate they copy at now.
fn operation_eta_seconds(operation: &pb::Operation, moves: &[&pb::ShardMove]) -> Option<f64> {
    let rate: f64 = moves.iter().map(|m| m.documents_per_second).sum();
    let known: Vec<&&pb::ShardMove> = moves.iter().filter(|m| m.documents_total > 0).collect();
    if rate <= 0.0 || known.is_empty() {
        return None;
    }
    let average = known.iter().map(|m| m.documents_total).sum::<u64>() as f64 / known.len() as f64;
    let left_known: f64 = known
        .iter()
        .map(|m| m.documents_total.saturating_sub(m.documents_copied) as f64)
        .sum();
    let unknown = moves.len() - known.len();
    // Moves planned but not in the topology yet are not started: each a whole copy.
    let unplanned = (operation.moves_total as usize)
        .saturating_sub(operation.moves_done as usize + moves.len());
    Some((left_known + (unknown + unplanned) as f64 * average) / rate)
}

fn operation(operation: &pb::Operation, moves: &[pb::ShardMove], now_ms: u64) -> Value {
    let own: Vec<&pb::ShardMove> = moves
        .iter()
        .filter(|m| m.operation_id == operation.id)
        .collect();
    let finished = operation.finished_at_ms > 0;
    json!({
        "id": operation.id,
        "description": operation.description,
        "state": operation.state().name(),
        "startedAtMs": operation.started_at_ms,
        "finishedAtMs": finished.then_some(operation.finished_at_ms),
        "movesTotal": operation.moves_total,
        "movesDone": operation.moves_done,
        "documentsCopied": operation.documents_copied + own.iter().map(|m| m.documents_copied).sum::<u64>(),
        "etaSeconds": if finished { None } else { operation_eta_seconds(operation, &own) },
        "moves": own.iter().map(|m| shard_move(m, now_ms)).collect::<Vec<_>>(),
    })
}

fn control_plane_status(status: &Result<&pb::ClusterStatus, String>) -> Value {
    let status = match status {
        Ok(status) => status,
        Err(error) => return json!({ "reachable": false, "error": error }),
    };
    json!({
        "reachable": true,
        "topologyVersion": status.topology_version,
        "store": status.store,
        "leader": status.leader.as_ref().map(|l| json!({
            "id": l.leader_id,
            "address": l.leader_address,
            "fencingToken": l.fencing_token,
            "answeredBy": l.answered_by,
        })),
        "controlPlanes": status.control_planes.iter().map(|c| json!({
            "id": c.id,
            "address": c.address,
            "role": c.role,
            "lastSeenMsAgo": c.last_seen_ms_ago,
        })).collect::<Vec<_>>(),
        "gateways": status.gateways.iter().map(|g| json!({
            "id": g.id,
            "address": g.address,
            "appliedVersion": g.applied_version,
            "lag": g.lag,
            "lastHeartbeatMsAgo": g.last_heartbeat_ms_ago,
            "connected": g.connected,
        })).collect::<Vec<_>>(),
        "settings": {
            "commits": status.settings_commits,
            "failures": status.settings_failures,
            "driftRepairs": status.settings_drift_repairs,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> pb::Topology {
        let node = |id: &str, group, state: pb::NodeState| pb::Node {
            id: id.into(),
            address: format!("http://{id}"),
            group_id: group,
            state: state as i32,
            state_changed_at_ms: 1,
        };
        let route = |shard, nodes: &[&str], stale: &[&str]| pb::ShardRoute {
            shard,
            read_nodes: nodes.iter().map(|n| n.to_string()).collect(),
            write_nodes: nodes.iter().map(|n| n.to_string()).collect(),
            blocked: false,
            stale_nodes: stale.iter().map(|n| n.to_string()).collect(),
        };
        pb::Topology {
            version: 7,
            nodes: vec![
                node("a", 0, pb::NodeState::Active),
                node("b", 0, pb::NodeState::Draining),
                node("c", 1, pb::NodeState::Failed),
            ],
            groups: vec![
                pb::Group {
                    id: 0,
                    state: pb::GroupState::Active as i32,
                },
                pb::Group {
                    id: 1,
                    state: pb::GroupState::Active as i32,
                },
            ],
            indexes: vec![pb::Index {
                uid: "movies".into(),
                shard_count: 2,
                replication_factor: 1,
                settings_version: 3,
                routing: vec![
                    pb::GroupRouting {
                        group_id: 0,
                        shards: vec![route(0, &["a"], &[]), route(1, &["b"], &[])],
                    },
                    pb::GroupRouting {
                        group_id: 1,
                        shards: vec![route(0, &["c"], &["c"]), route(1, &["c"], &[])],
                    },
                ],
                node_settings: vec![
                    pb::NodeSettingsVersion {
                        node_id: "a".into(),
                        version: 3,
                    },
                    pb::NodeSettingsVersion {
                        node_id: "b".into(),
                        version: 2,
                    },
                ],
                ..Default::default()
            }],
            moves: vec![pb::ShardMove {
                index_uid: "movies".into(),
                group_id: 0,
                shard: 1,
                old_owners: vec!["b".into()],
                new_owners: vec!["a".into()],
                phase: pb::MovePhase::Copying as i32,
                operation_id: 5,
                phase_started_at_ms: 1_000,
                documents_copied: 400,
                documents_total: 1_000,
                documents_per_second: 200.0,
                ..Default::default()
            }],
            operations: vec![pb::Operation {
                id: 5,
                description: "drain node b".into(),
                state: pb::OperationState::Running as i32,
                moves_total: 2,
                moves_done: 0,
                ..Default::default()
            }],
            keys: vec![pb::ApiKey {
                uid: "secret-value".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn view(status: Result<&pb::ClusterStatus, String>) -> Value {
        fleet(
            "gw",
            &topology(),
            ControlPlaneView {
                status,
                operations: None,
            },
            &NodeLoads::default(),
            3_000,
        )
    }

    #[test]
    fn the_page_shows_states_copies_and_the_shard_map() {
        let v = view(Err("down".into()));
        assert_eq!(v["nodes"][1]["state"], "draining");
        assert_eq!(v["nodes"][2]["state"], "failed");
        assert_eq!(v["nodes"][2]["copies"], 1, "one in-sync copy");
        assert_eq!(v["nodes"][2]["staleCopies"], 1);
        assert_eq!(v["groups"][1]["nodes"], json!(["c"]));
        let shard = &v["indexes"][0]["groups"][0]["shards"][1];
        assert_eq!(shard["readNodes"], json!(["b"]));
        assert_eq!(shard["move"]["phase"], "copying");
        assert_eq!(
            shard["move"]["etaSeconds"], 3.0,
            "600 documents left at 200/s"
        );
        assert_eq!(shard["move"]["phaseForMs"], 2_000);
        assert_eq!(
            v["controlPlane"],
            json!({"reachable": false, "error": "down"})
        );
    }

    #[test]
    fn nodes_behind_on_settings_are_named() {
        let v = view(Err("down".into()));
        assert_eq!(
            v["indexes"][0]["nodesBehindOnSettings"],
            json!([{"node": "b", "version": 2}, {"node": "c", "version": null}])
        );
    }

    #[test]
    fn an_operation_counts_its_unstarted_moves_in_its_eta() {
        let v = view(Err("down".into()));
        let op = &v["operations"][0];
        assert_eq!(op["state"], "running");
        assert_eq!(op["documentsCopied"], 400);
        // 600 left on the copying move, 1 000 (the known average) for the other.
        assert_eq!(op["etaSeconds"], 8.0);
    }

    #[test]
    fn keys_never_reach_the_page() {
        let status = pb::ClusterStatus {
            gateways: vec![pb::GatewayStatus {
                id: "g1".into(),
                applied_version: 6,
                lag: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = view(Ok(&status));
        assert!(!v.to_string().contains("secret-value"));
        assert_eq!(v["controlPlane"]["gateways"][0]["lag"], 1);
    }
}
