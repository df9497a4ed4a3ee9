//! The gateway's view of the fleet: the newest topology snapshot it applied, its
//! connection to the control plane, and its write lease.

pub mod lease;
pub mod watcher;

use lease::Lease;
use miroir_proto::pb;
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
    pinned: Arc<Pinned>,
    acknowledged: std::sync::atomic::AtomicU64,
}

impl Default for TopologyHandle {
    fn default() -> Self {
        Self {
            current: watch::Sender::new(Arc::new(pb::Topology::default())),
            lease: Lease::default(),
            connection: Mutex::new(Connection::default()),
            pinned: Arc::default(),
            acknowledged: Default::default(),
        }
    }
}

/// Requests in flight (writes and reads), counted by the topology version they route by.
/// A version is acknowledged to the control plane only once no request that started
/// under an older one is still talking to nodes: the barrier (`await_applied`) then means
/// no node receives a write routed by an older table, and no read is still reading a
/// copy a shard move is about to delete. This is what makes a move's phases safe.
#[derive(Default)]
struct Pinned {
    by_version: Mutex<std::collections::BTreeMap<u64, usize>>,
    finished: tokio::sync::Notify,
    /// Acknowledgements waiting for pins to go: releases wake them only then, sparing the
    /// hot path a second lock.
    waiting: std::sync::atomic::AtomicUsize,
}

/// Held by a request while it routes by a snapshot; see [`TopologyHandle::pin`].
pub struct VersionPin {
    pinned: Arc<Pinned>,
    version: u64,
}

impl Drop for VersionPin {
    fn drop(&mut self) {
        let mut by_version = self
            .pinned
            .by_version
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = by_version.get_mut(&self.version) {
            *count -= 1;
            if *count == 0 {
                by_version.remove(&self.version);
            }
        }
        drop(by_version);
        if self
            .pinned
            .waiting
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
        {
            self.pinned.finished.notify_waiters();
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

    /// Pins the version served now for a request (read or write) and returns the snapshot
    /// it should route by (read after pinning, so that version or newer). Hold the pin
    /// until the request is done with nodes.
    pub fn pin(&self) -> (VersionPin, Arc<pb::Topology>) {
        let version = self.current().version;
        *self
            .pinned
            .by_version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(version)
            .or_default() += 1;
        let pin = VersionPin {
            pinned: self.pinned.clone(),
            version,
        };
        (pin, self.current())
    }

    /// Waits (at most `bound`) until no request pinned to a version older than `version`
    /// is in flight; returns whether none is.
    pub async fn pins_before_released(&self, version: u64, bound: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        let pinned = &self.pinned;
        pinned
            .waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        struct Waiting<'a>(&'a Pinned);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0
                    .waiting
                    .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _waiting = Waiting(pinned);
        loop {
            // Registered before the count is read, so a release in between still wakes us.
            let finished = self.pinned.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            let oldest = self
                .pinned
                .by_version
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .next()
                .copied();
            if oldest.is_none_or(|v| v >= version) {
                return true;
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                return false;
            }
        }
    }

    /// The newest version acknowledged to the control plane.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records `version` as acknowledged (never going back).
    pub fn acknowledge(&self, version: u64) -> u64 {
        self.acknowledged
            .fetch_max(version, std::sync::atomic::Ordering::Relaxed)
            .max(version)
    }

    /// Waits, at most until `deadline`, for a snapshot newer than `version`; whether one
    /// arrived.
    pub async fn wait_for_newer(&self, version: u64, deadline: tokio::time::Instant) -> bool {
        let mut receiver = self.subscribe();
        tokio::time::timeout_at(deadline, receiver.wait_for(|t| t.version > version))
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

/// Why this gateway should not be sent traffic yet, if it should not: no topology yet,
/// shards no live node serves, or no node that passed its health checks (a fleet whose
/// nodes all still join has not been seen to work).
pub fn not_ready(topology: &pb::Topology) -> Option<String> {
    if topology.version == 0 {
        return Some("no topology received from the control plane yet".into());
    }
    let gaps = covering_gaps(topology);
    if !gaps.is_empty() {
        return Some(format!(
            "topology version {} has no live replica for {} shard(s): {}",
            topology.version,
            gaps.len(),
            gaps.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if !topology.nodes.iter().any(pb::Node::checked) {
        let nodes: Vec<String> = topology
            .nodes
            .iter()
            .map(|n| format!("{} {}", n.id, n.state().short_name()))
            .collect();
        return Some(if nodes.is_empty() {
            format!("topology version {} has no node", topology.version)
        } else {
            format!(
                "topology version {}: no node has passed its health checks yet ({})",
                topology.version,
                nodes.join(", ")
            )
        });
    }
    None
}

/// The shards no live node can serve: for each index and shard, some active group must
/// route it to an active node. Each gap reads `index/shard`.
pub fn covering_gaps(topology: &pb::Topology) -> Vec<String> {
    let active_groups = topology.active_groups();
    let live_nodes: HashSet<&str> = topology
        .nodes
        .iter()
        .filter(|n| n.serves())
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
                .any(|route| route.in_sync().any(|n| live_nodes.contains(n.as_str())));
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
    use miroir_proto::pb::GroupState;
    use miroir_proto::pb::NodeState;

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
                            stale_nodes: Vec::new(),
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

    #[tokio::test]
    async fn a_version_waits_for_requests_pinned_to_older_ones() {
        let handle = TopologyHandle::default();
        handle.apply(topology(NodeState::Active));
        let (guard, snapshot) = handle.pin();
        assert_eq!(snapshot.version, 3);
        let mut newer = topology(NodeState::Active);
        newer.version = 4;
        handle.apply(newer);
        let short = std::time::Duration::from_millis(20);
        assert!(handle.pins_before_released(3, short).await, "same version");
        assert!(
            !handle.pins_before_released(4, short).await,
            "a v3 write is in flight"
        );
        let (later, _) = handle.pin();
        drop(guard);
        assert!(handle.pins_before_released(4, short).await);
        drop(later);
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
