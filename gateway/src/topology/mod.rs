//! The gateway's view of the fleet: the newest topology snapshot it applied, its
//! connection to the control plane, and its write lease.

pub mod lease;
pub mod watcher;

use lease::Lease;
use miroir_proto::pb::{self, GroupState, NodeState};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// How the gateway is connected to the control plane.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// The control plane currently streaming to us.
    pub address: Option<String>,
    /// When the current stream opened.
    pub since: Option<Instant>,
    /// When anything last arrived from a control plane.
    pub last_message: Option<Instant>,
    /// Why the last stream ended, if it did.
    pub last_error: Option<String>,
}

/// Shared by the HTTP handlers and the watcher.
pub struct TopologyHandle {
    current: watch::Sender<Arc<pb::Topology>>,
    /// The write lease.
    pub lease: Lease,
    connection: Mutex<Connection>,
}

impl Default for TopologyHandle {
    fn default() -> Self {
        Self {
            current: watch::Sender::new(Arc::new(pb::Topology::default())),
            lease: Lease::default(),
            connection: Mutex::new(Connection::default()),
        }
    }
}

impl TopologyHandle {
    /// The newest applied snapshot (version 0 before the first).
    pub fn current(&self) -> Arc<pb::Topology> {
        self.current.borrow().clone()
    }

    /// A receiver that sees every applied snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<pb::Topology>> {
        self.current.subscribe()
    }

    /// Serves `snapshot` from now on if it is newer than what is served; returns whether
    /// it was applied.
    pub fn apply(&self, snapshot: pb::Topology) -> bool {
        let snapshot = Arc::new(snapshot);
        self.current.send_if_modified(|current| {
            if snapshot.version > current.version {
                *current = snapshot;
                true
            } else {
                false
            }
        })
    }

    /// Waits until a snapshot of `version` or newer serves, at most `timeout`; returns
    /// whether it does. Used after a change made through the control plane, so this
    /// gateway's next answer already reflects it.
    pub async fn wait_for_version(&self, version: u64, timeout: std::time::Duration) -> bool {
        let mut receiver = self.subscribe();
        tokio::time::timeout(timeout, receiver.wait_for(|t| t.version >= version))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The connection state.
    pub fn connection(&self) -> Connection {
        self.connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn update_connection(&self, f: impl FnOnce(&mut Connection)) {
        f(&mut self.connection.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The shards no live node can serve: for each index and shard, some active group must
/// route it to an active node. Each gap reads `index/shard`.
pub fn covering_gaps(topology: &pb::Topology) -> Vec<String> {
    let active_groups: HashSet<u32> = topology
        .groups
        .iter()
        .filter(|g| g.state == GroupState::Active as i32)
        .map(|g| g.id)
        .collect();
    let live_nodes: HashSet<&str> = topology
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Active as i32)
        .map(|n| n.id.as_str())
        .collect();
    let mut gaps = Vec::new();
    for index in &topology.indexes {
        for shard in 0..index.shard_count {
            let served = index
                .routing
                .iter()
                .filter(|r| active_groups.contains(&r.group_id))
                .filter_map(|r| r.shards.get(shard as usize))
                .any(|route| {
                    route
                        .read_nodes
                        .iter()
                        .any(|n| live_nodes.contains(n.as_str()))
                });
            if !served {
                gaps.push(format!("{}/{shard}", index.uid));
            }
        }
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(node_state: NodeState) -> pb::Topology {
        pb::Topology {
            version: 3,
            nodes: vec![pb::Node {
                id: "a".into(),
                state: node_state as i32,
                ..Default::default()
            }],
            groups: vec![pb::Group {
                id: 0,
                state: GroupState::Active as i32,
            }],
            indexes: vec![pb::Index {
                uid: "movies".into(),
                shard_count: 2,
                routing: vec![pb::GroupRouting {
                    group_id: 0,
                    shards: (0..2)
                        .map(|shard| pb::ShardRoute {
                            shard,
                            read_nodes: vec!["a".into()],
                            write_nodes: vec!["a".into()],
                            blocked: false,
                        })
                        .collect(),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn covering_needs_a_live_reader_per_shard() {
        assert!(covering_gaps(&topology(NodeState::Active)).is_empty());
        assert_eq!(
            covering_gaps(&topology(NodeState::Failed)),
            vec!["movies/0", "movies/1"]
        );
    }

    #[test]
    fn only_newer_snapshots_apply() {
        let handle = TopologyHandle::default();
        assert!(handle.apply(topology(NodeState::Active)));
        let mut older = topology(NodeState::Failed);
        older.version = 2;
        assert!(!handle.apply(older));
        assert_eq!(handle.current().version, 3);
    }
}
