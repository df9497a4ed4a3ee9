//! Background loops the leader runs to make the world match the topology.

pub mod feature_sync;
pub mod gateway_expiry;
pub mod key_sync;
pub mod leadership;
pub mod node_health;
pub mod settings;
pub mod shard_moves;
