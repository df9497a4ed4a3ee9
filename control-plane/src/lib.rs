//! `miroir-control-plane`: owns the fleet's topology, commits every change to it as a
//! new version, streams versions to gateways, and runs the reconcilers.

pub mod anti_entropy_progress;
pub mod config;
pub mod error;
pub mod export;
pub mod forward;
pub mod gateways;
pub mod metrics;
pub mod move_progress;
pub mod nodes;
pub mod operations;
pub mod reconcilers;
pub mod running_exports;
pub mod server;
pub mod services;
pub mod shard_copy;
pub mod state;
pub mod store;
pub mod topology;
pub mod webhooks;
