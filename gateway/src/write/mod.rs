//! The write path (DESIGN §5, §6), one stage per module: a document batch parsed as
//! Meilisearch reads it ([`parse`], [`payload`]); routed to its shards and nodes, past the
//! gate every write passes ([`route`], [`gate`]); its task reserved before any node is
//! written ([`task`]); sent to the nodes ([`fan_out`]); acknowledged on quorum
//! ([`quorum`]). [`documents`] runs them for one write; [`deletes`] for a delete.

pub mod deletes;
pub mod documents;
pub mod fan_out;
pub mod gate;
pub mod parse;
pub mod payload;
pub mod quorum;
pub mod route;
pub mod task;

use crate::api::error::MeiliError;

/// Batches at least this large are parsed and routed on the blocking pool.
const OFF_THREAD_BYTES: usize = 1 << 20;

/// Runs `work` here for a small batch, or on the blocking pool for one of `size` bytes at
/// least [`OFF_THREAD_BYTES`]: an HTTP thread serves many connections, and parsing a
/// 100 MiB batch must not hold up their searches.
async fn off_thread<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, MeiliError> {
    if size < OFF_THREAD_BYTES {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| MeiliError::internal(format!("parsing the batch failed: {error}")))
}
