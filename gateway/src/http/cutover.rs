//! Writes and shard moves (DESIGN §6): a write registers with the topology handle before
//! it routes, so the control plane's barrier waits for it, and a write to a shard whose
//! move is in cutover waits (bounded by `--cutover-write-wait`) until the cutover ends,
//! then routes by the new owners.

use super::error::{ErrorType, MeiliError};
use super::indexes::index_in;
use crate::state::AppState;
use crate::topology::WriteGuard;
use axum::http::StatusCode;
use std::collections::BTreeSet;

/// Which shards of the index a write touches.
pub enum Touches<'a> {
    /// These shards (shard-routed writes).
    Shards(&'a BTreeSet<u32>),
    /// Every shard (deletes by filter, delete all).
    All,
}

/// Registers a write to index `uid` once no shard it touches is held by a cutover. The
/// guard must live until every node answered.
pub async fn hold_for_cutover(
    state: &AppState,
    uid: &str,
    touches: Touches<'_>,
) -> Result<WriteGuard, MeiliError> {
    let deadline = tokio::time::Instant::now() + state.config.cutover_write_wait;
    loop {
        let (guard, topology) = state.topology.start_write();
        let index = index_in(&topology, uid)?;
        let mut held = index.routing.iter().flat_map(|r| &r.shards).filter(|s| {
            s.blocked
                && match &touches {
                    Touches::Shards(shards) => shards.contains(&s.shard),
                    Touches::All => true,
                }
        });
        let Some(blocked) = held.next().map(|s| s.shard) else {
            return Ok(guard);
        };
        // The barrier waits for this write's guard: let go while waiting.
        drop(guard);
        if !state
            .topology
            .wait_for_newer(topology.version, deadline)
            .await
        {
            return Err(MeiliError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "miroir_shard_moving",
                ErrorType::System,
                format!(
                    "shard {blocked} of index `{uid}` is in the cutover of a move and took longer than {} to finish it; retry",
                    humantime::format_duration(state.config.cutover_write_wait)
                ),
            ));
        }
    }
}
