//! What every write (documents added or updated, deletes) passes before it reaches nodes:
//!
//! - the gateway's write lease must be fresh (DESIGN §3), else 503 `miroir_lease_expired`;
//! - the write registers with the topology handle before it routes, so the control
//!   plane's barrier waits for it, and a write to a held shard (a move's cutover, DESIGN
//!   §6, or a rename or swap of its index) waits, bounded by `--cutover-write-wait`, until
//!   the hold ends.
//!
//! After its nodes answered, a write needs its quorum ([`super::quorum`]).

use crate::api::error::{ErrorType, MeiliError};
use crate::api::indexes::index_in;
use crate::state::AppState;
use crate::topology::VersionPin;
use axum::http::StatusCode;
use std::collections::BTreeSet;

/// Which shards of the index a write touches.
pub enum Touches<'a> {
    /// These shards (shard-routed writes).
    Shards(&'a BTreeSet<u32>),
    /// Every shard (deletes by filter, delete all).
    All,
}

/// 503 `miroir_lease_expired`: the gateway may not take writes (DESIGN §3).
pub fn lease_expired() -> MeiliError {
    MeiliError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "miroir_lease_expired",
        ErrorType::System,
        "this gateway has lost contact with the control plane and accepts no writes until it reconnects; retry, possibly on another gateway",
    )
}

/// Admits a write to index `uid`: the lease is fresh, and no shard it touches is held (by
/// a cutover, a rename or a swap). The guard must live until every node answered; the
/// caller reads what `uid` names after this returns.
pub async fn admit(
    state: &AppState,
    uid: &str,
    touches: Touches<'_>,
) -> Result<VersionPin, MeiliError> {
    if !state.topology.lease.is_valid() {
        return Err(lease_expired());
    }
    let deadline = tokio::time::Instant::now() + state.config.cutover_write_wait;
    loop {
        let (guard, topology) = state.topology.pin();
        // A name that no longer names an index (renamed while the write waited) holds
        // nothing: the caller looks the name up again under this pin.
        let Ok(index) = index_in(&topology, uid) else {
            return Ok(guard);
        };
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
                    "shard {blocked} of index `{uid}` is held (a shard move's cutover, or a rename or swap of the index) and was not released within {}; retry",
                    humantime::format_duration(state.config.cutover_write_wait)
                ),
            ));
        }
    }
}
