//! Calls the control plane makes to Meilisearch nodes (index lifecycle, settings, shard
//! copies), through Miroir's one node client ([`miroir_proto::meili_client`]: timeouts,
//! the master key, a span, TLS, a pool per node).

pub use miroir_proto::meili_client::{MeiliClient as NodeClient, NodeCallError};
