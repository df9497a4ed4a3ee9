//! One integration-test binary: every module starts real Miroir processes on loopback.

mod aliases;
mod anti_entropy;
mod auth_fuzz;
mod chaos;
mod control_plane;
mod control_plane_ha;
mod ctl;
mod ctl_dev;
mod dashboards;
mod deploy_manifests;
mod differential_fuzz;
mod fleet_page;
mod fleet_rules;
mod gateway_documents;
mod gateway_experimental_features;
mod gateway_indexes;
mod gateway_keys;
mod gateway_reads;
mod gateway_settings;
mod gateway_similar;
mod gateway_tasks;
mod gateway_topology;
mod gateway_webhooks;
mod gateway_writes;
mod grpcurl;
mod merge_oracle;
mod merge_oracle_wide;
mod migration;
mod node_health;
mod protocol_abuse;
mod result_cache;
mod sdk_python;
mod sdk_rust;
mod settings_commit;
mod shard_moves;
mod test_node;
mod tracing_export;
mod watch;

use miroir_integration_tests::{ControlPlane, ControlPlaneOptions};
use tempfile::TempDir;

/// A control plane on a fresh SQLite store in its own temporary directory.
pub async fn fresh_control_plane() -> (TempDir, ControlPlane) {
    fresh_control_plane_with(ControlPlaneOptions::default()).await
}

/// Same, with options.
pub async fn fresh_control_plane_with(options: ControlPlaneOptions) -> (TempDir, ControlPlane) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sqlite://{}/miroir.db", dir.path().display());
    let cp = ControlPlane::start(dir.path(), &store, &options).await;
    (dir, cp)
}
