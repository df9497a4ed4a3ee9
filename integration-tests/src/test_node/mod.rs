//! The Meilisearch test node's engine (used by the `miroir-test-node` binary).

pub mod filter;
