//! Row structs, one per table, as they are stored.

use crate::error::{ControlPlaneError, Result};
use miroir_proto::pb;
use prost::Message;

/// A row of `topology_versions`.
#[derive(Debug, sqlx::FromRow)]
pub struct TopologyVersionPersistence {
    /// Topology version.
    pub version: i64,
    /// Commit time.
    pub committed_at_ms: i64,
    /// Why the version exists.
    pub reason: String,
    /// Encoded `miroir.v1.Topology`.
    pub snapshot: Vec<u8>,
}

impl TopologyVersionPersistence {
    /// The stored snapshot.
    pub fn decode(self) -> Result<pb::Topology> {
        pb::Topology::decode(self.snapshot.as_slice()).map_err(|error| {
            ControlPlaneError::Internal(format!(
                "topology version {} does not decode: {error}",
                self.version
            ))
        })
    }
}

/// The row of `leader_lease`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeaderLeasePersistence {
    /// Lease name.
    pub name: String,
    /// Control-plane id holding it.
    pub holder: String,
    /// gRPC address of the holder.
    pub holder_address: String,
    /// Term of the holder.
    pub fencing_token: i64,
    /// When the holder took it.
    pub acquired_at_ms: i64,
    /// When it lapses unless renewed.
    pub expires_at_ms: i64,
}

/// A row of `tasks`.
#[derive(Debug, sqlx::FromRow)]
pub struct TaskPersistence {
    /// Fleet-wide uid.
    pub uid: i64,
    /// Index the task is about.
    pub index_uid: Option<String>,
    /// Meilisearch task type.
    pub task_type: String,
    /// JSON array of node tasks.
    pub node_tasks: String,
    /// JSON details.
    pub details: String,
    /// Enqueue time.
    pub enqueued_at_ms: i64,
    /// Error JSON when the task failed outside the nodes, else empty.
    pub error: String,
    /// The `taskCancelation` task that targeted it.
    pub canceled_by: Option<i64>,
    /// Status set by the control plane (settings changes); `None`: the node tasks decide.
    pub status: Option<String>,
    /// When the control plane started it (0: not yet).
    pub started_at_ms: i64,
    /// When the control plane finished it (0: not yet).
    pub finished_at_ms: i64,
    /// Its view (JSON) once it finished, recorded by a gateway.
    pub outcome: Option<String>,
    /// The client's `customMetadata`.
    pub custom_metadata: Option<String>,
}

/// A settings change queued for the two-phase commit (`settings_changes`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SettingsChangePersistence {
    /// Sequence number: changes run in this order.
    pub id: i64,
    /// The index it changes.
    pub index_uid: String,
    /// The client's task, `None` for Miroir's own change at index creation.
    pub task_uid: Option<i64>,
    /// The client's settings object (JSON, PATCH semantics).
    pub patch: String,
    /// When it was queued.
    pub created_at_ms: i64,
}

/// A node task as stored in `tasks.node_tasks`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct NodeTaskPersistence {
    /// Node id.
    pub node_id: String,
    /// The node's task uid.
    pub node_task_uid: u64,
}

impl TaskPersistence {
    /// The task as sent over gRPC.
    pub fn into_proto(self) -> Result<pb::Task> {
        let node_tasks: Vec<NodeTaskPersistence> =
            serde_json::from_str(&self.node_tasks).map_err(|error| {
                ControlPlaneError::Internal(format!("task {} node tasks: {error}", self.uid))
            })?;
        Ok(pb::Task {
            uid: self.uid as u32,
            index_uid: self.index_uid,
            task_type: self.task_type,
            node_tasks: node_tasks
                .into_iter()
                .map(|t| pb::NodeTask {
                    node_id: t.node_id,
                    node_task_uid: t.node_task_uid,
                })
                .collect(),
            details_json: self.details,
            enqueued_at_ms: self.enqueued_at_ms as u64,
            error_json: self.error,
            canceled_by: self.canceled_by.map(|u| u as u32),
            status: self.status,
            started_at_ms: self.started_at_ms as u64,
            finished_at_ms: self.finished_at_ms as u64,
            outcome_json: self.outcome.unwrap_or_default(),
            custom_metadata: self.custom_metadata,
        })
    }
}

/// A control-plane process seen on the store (`control_planes`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ControlPlanePersistence {
    /// Its id.
    pub id: String,
    /// Its advertised gRPC address.
    pub address: String,
    /// When it last recorded itself, in ms since the Unix epoch.
    pub last_seen_ms: i64,
}

/// A gateway as a control plane last saw it (`gateways`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GatewayPersistence {
    /// Gateway id.
    pub id: String,
    /// Its HTTP address.
    pub address: String,
    /// The newest topology version it applied.
    pub applied_version: i64,
    /// When it was last heard from, in ms since the Unix epoch.
    pub last_seen_ms: i64,
}
