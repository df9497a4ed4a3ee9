//! Background loops the leader runs to make the world match the topology.

pub mod gateway_expiry;
pub mod key_sync;
pub mod leadership;
pub mod node_health;
pub mod settings;
pub mod shard_moves;
