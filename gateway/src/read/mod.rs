//! The read path (DESIGN §5), one stage per module: a search typed as the gateway reads it
//! ([`query`]); the plan of which nodes are asked for which shards, and what each is asked
//! ([`plan`]); the node calls, retries and degraded report ([`scatter`]); the exact merge of
//! hits, totals, facets and stats ([`merge`]); the answer ([`respond`]). [`search`] runs
//! them for one search.

pub mod cache;
pub mod cache_store;
pub mod facets;
pub mod failure;
pub mod federation;
pub mod hedge;
pub mod merge;
pub mod performance;
pub mod pinned;
pub mod plan;
pub mod query;
pub mod request_uid;
pub mod respond;
pub mod scatter;
pub mod search;
pub mod strip;
