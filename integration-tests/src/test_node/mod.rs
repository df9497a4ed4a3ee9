//! The Meilisearch test node's engine (used by the `miroir-test-node` binary): indexes,
//! documents, filters, search, tasks and settings, following Meilisearch's documented
//! behaviour (see `docs/dev/meilisearch-reference.md`).

pub mod error;
pub mod filter;
pub mod index;
pub mod keys;
pub mod node;
pub mod routes;
pub mod search;

pub use miroir_proto::time;
