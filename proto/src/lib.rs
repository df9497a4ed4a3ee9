//! `miroir-proto`: the contract every Miroir process shares.
//!
//! - [`pb`]: code generated from `proto/miroir/v1/*.proto` (package `miroir.v1`).
//! - [`types`]: domain types (`ShardId`, `NodeId`, `TopologyVersion`, …).
//! - [`placement`]: key → shard and shard → owners; the only place placement is computed.
//! - [`keys`]: API key values, uids, actions and index patterns, as Meilisearch has them.
//! - [`settings`]: Miroir's hidden settings, the client's view and the canonical hash.
//! - [`error`]: Miroir's error codes, carried in gRPC status details and each mapped once to a gRPC code, an HTTP status and a Meilisearch error.
//! - `telemetry` (feature): log and OTLP trace setup for the server binaries.
//! - `node_client` (feature `node-client`): the HTTP client for Meilisearch nodes, and
//!   `meili_client` over it: Meilisearch's API (JSON calls, tasks).

pub mod environment;
pub mod error;
#[cfg(feature = "telemetry")]
pub mod fan_out;
pub mod keys;
#[cfg(feature = "node-client")]
pub mod meili_client;
#[cfg(feature = "node-client")]
pub mod node_client;
pub mod node_paths;
pub mod placement;
pub mod settings;
#[cfg(feature = "telemetry")]
pub mod telemetry;
pub mod time;
pub mod types;
pub mod webhooks;

/// Generated protobuf messages, clients and servers of package `miroir.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("miroir.v1");

    impl MovePhase {
        /// Lower-case name, as operators read it.
        pub fn name(self) -> &'static str {
            match self {
                Self::Pending => "pending",
                Self::Copying => "copying",
                Self::Verifying => "verifying",
                Self::Cutover => "cutover",
                Self::Cleanup => "cleanup",
                Self::Rollback => "rollback",
                Self::Unspecified => "unknown",
            }
        }
    }

    impl ShardMove {
        /// Seconds until its copy finishes at the current rate, while it is copying.
        pub fn eta_seconds(&self) -> Option<f64> {
            (self.phase() == MovePhase::Copying && self.documents_per_second > 0.0).then(|| {
                self.documents_total.saturating_sub(self.documents_copied) as f64
                    / self.documents_per_second
            })
        }
    }

    impl OperationState {
        /// Lower-case name, as operators read it.
        pub fn name(self) -> &'static str {
            match self {
                Self::Running => "running",
                Self::Paused => "paused",
                Self::Cancelling => "cancelling",
                Self::Succeeded => "succeeded",
                Self::Cancelled => "cancelled",
                Self::Unspecified => "unknown",
            }
        }
    }

    impl Topology {
        /// The ids of the groups that serve reads (active).
        pub fn active_groups(&self) -> std::collections::HashSet<u32> {
            self.groups
                .iter()
                .filter(|g| g.state == GroupState::Active as i32)
                .map(|g| g.id)
                .collect()
        }
    }

    impl Node {
        /// Whether the node answers reads for the copies the routing gives it: active,
        /// draining (its copies serve until their moves cut over), or joining. A joining
        /// node is in a routing only when an index was created while it joined; its copies
        /// are then the only ones, took the index's writes, and must be read.
        pub fn serves(&self) -> bool {
            matches!(
                self.state(),
                NodeState::Active | NodeState::Draining | NodeState::Joining
            )
        }

        /// Whether the node has passed its health checks (and not failed since).
        pub fn checked(&self) -> bool {
            matches!(self.state(), NodeState::Active | NodeState::Draining)
        }
    }

    impl ShardRoute {
        /// The in-sync copies: read nodes that missed no acknowledged write. Reads go to
        /// them only, and a write's quorum counts them only.
        pub fn in_sync(&self) -> impl Iterator<Item = &String> + Clone {
            self.read_nodes
                .iter()
                .filter(|n| !self.stale_nodes.contains(n))
        }

        /// Whether `node` is an in-sync copy.
        pub fn is_in_sync(&self, node: &str) -> bool {
            self.read_nodes.iter().any(|n| n == node) && !self.stale_nodes.iter().any(|n| n == node)
        }
    }

    /// Encoded `FileDescriptorSet` of every Miroir proto, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/miroir_descriptor.bin"));
}

pub use error::{ErrorCode, ErrorType};
pub use types::{FencingToken, GroupId, IndexUid, NodeId, ShardId, TaskUid, TopologyVersion};
