//! What every HTTP handler shares.

use crate::config::Config;
use crate::control_plane::ControlPlaneClient;
use crate::nodes::NodeClient;
use crate::topology::TopologyHandle;
use std::sync::Arc;

/// Shared, cheaply cloned state of the gateway.
#[derive(Clone)]
pub struct AppState {
    /// Flags the process started with.
    pub config: Arc<Config>,
    /// This gateway's id.
    pub id: Arc<str>,
    /// The topology it serves from.
    pub topology: Arc<TopologyHandle>,
    /// gRPC calls to the control plane.
    pub control_plane: Arc<ControlPlaneClient>,
    /// HTTP calls to nodes.
    pub nodes: NodeClient,
    /// API key values of the served topology, for authentication.
    pub keys: Arc<crate::http::auth::KeyCache>,
    /// Each index's settings, as the merge needs them, and when they were read.
    pub index_settings: Arc<SettingsCache>,
}

/// index uid → (read at, settings).
pub type SettingsCache = std::sync::Mutex<
    std::collections::HashMap<
        String,
        (
            std::time::Instant,
            Arc<serde_json::Map<String, serde_json::Value>>,
        ),
    >,
>;
