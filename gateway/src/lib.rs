//! `miroir-gateway`: a stateless HTTP server that answers like one Meilisearch, backed by
//! a sharded fleet whose topology it follows from the control plane.

pub mod api;
pub mod config;
pub mod control_plane;
pub mod fleet;
pub mod http_server;
pub mod key_cache;
pub mod nodes;
pub mod read;
pub mod server;
pub mod state;
pub mod tasks;
pub mod topology;
pub mod write;
