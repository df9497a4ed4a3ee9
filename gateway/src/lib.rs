//! `miroir-gateway`: a stateless HTTP server that answers like one Meilisearch, backed by
//! a sharded fleet whose topology it follows from the control plane.

pub mod config;
pub mod control_plane;
pub mod fleet;
pub mod http;
pub mod http_server;
pub mod key_cache;
pub mod nodes;
pub mod server;
pub mod state;
pub mod tasks;
pub mod topology;
