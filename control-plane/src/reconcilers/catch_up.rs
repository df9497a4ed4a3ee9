//! Catch-up: brings each stale shard copy (a node that failed while another copy took
//! its shard's writes, see [`crate::topology::mark_stale`]) back in sync once its node
//! passes its health checks again. The copy takes every write meanwhile but serves no
//! read and counts for no quorum. On the leader only:
//!
//! ```text
//! verify and repair against an in-sync copy (writes flow) until little differs ──►
//! hold the shard's writes, barrier ──► final verify and repair ──► in sync, writes released
//! ```
//!
//! The phase is not persisted: the copy's staleness is (in the routing), and every pass
//! is idempotent, so a new leader starts the copy's catch-up again. A hold left by a
//! leader that stopped mid-way is released by the shard-move reconciler.

use crate::reconcilers::settings::prepare_node;
use crate::reconcilers::shard_moves::{StepError, barrier};
use crate::shard_copy::{self, Transfer};
use crate::state::ServiceState;
use crate::topology::{RouteKey, copies_to_catch_up, in_sync_source, route_mut};
use miroir_proto::pb;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// One stale copy: the shard's route and the node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct StaleCopy {
    route: RouteKey,
    node: String,
}

impl std::fmt::Display for StaleCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (uid, group, shard) = &self.route;
        write!(f, "{uid}/group{group}/shard{shard} on {}", self.node)
    }
}

/// Runs until the process stops.
pub async fn run(state: Arc<ServiceState>) {
    let mut running: HashMap<StaleCopy, JoinHandle<()>> = HashMap::new();
    loop {
        running.retain(|_, handle| !handle.is_finished());
        if state.leads_settled() {
            let topology = state.topology();
            for (uid, group, shard, node) in copies_to_catch_up(&topology) {
                if running.len() >= state.config.move_concurrency.max(1) {
                    break;
                }
                let copy = StaleCopy {
                    route: (uid, group, shard),
                    node,
                };
                if running.contains_key(&copy) {
                    continue;
                }
                let span = tracing::info_span!("catch_up", copy = %copy);
                let handle = tokio::spawn(drive(state.clone(), copy.clone()).instrument(span));
                running.insert(copy, handle);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Catches `copy` up; a failure is logged, and the next round tries again.
async fn drive(state: Arc<ServiceState>, copy: StaleCopy) {
    let started = Instant::now();
    match catch_up(&state, &copy).await {
        Ok(repaired) => {
            state.metrics.documents_copied.inc_by(repaired);
            tracing::info!(
                %copy,
                repaired,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "stale copy caught up: back in sync"
            );
        }
        Err(StepError::NotLeader) => {}
        Err(StepError::Failed(error)) => {
            tracing::warn!(%copy, %error, "catch-up failed; trying again");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Whether `copy` is still stale, its node active and its shard in no move.
fn still_to_catch_up(topology: &pb::Topology, copy: &StaleCopy) -> bool {
    let (uid, group, shard) = &copy.route;
    copies_to_catch_up(topology)
        .iter()
        .any(|(u, g, s, n)| u == uid && g == group && s == shard && n == &copy.node)
}

/// What a pass needs: the source, the stale node, the index.
fn ends(
    topology: &pb::Topology,
    copy: &StaleCopy,
) -> Result<(pb::Node, pb::Node, pb::Index), StepError> {
    let (uid, group, shard) = &copy.route;
    let index = topology
        .indexes
        .iter()
        .find(|i| &i.uid == uid)
        .ok_or_else(|| format!("index {uid} no longer exists"))?;
    let source = in_sync_source(topology, index, *shard, *group)
        .ok_or_else(|| format!("no live in-sync copy of shard {shard} of index {uid}"))?;
    let target = topology
        .nodes
        .iter()
        .find(|n| n.id == copy.node)
        .ok_or_else(|| format!("node {} no longer exists", copy.node))?;
    Ok((source.clone(), target.clone(), index.clone()))
}

/// Verifies and repairs `copy` against an in-sync copy while writes flow, then once more
/// with its shard's writes held, and puts it back in sync. The documents repaired.
async fn catch_up(state: &Arc<ServiceState>, copy: &StaleCopy) -> Result<u64, StepError> {
    let client = &state.nodes;
    let may_write = || state.may_act_as_leader();
    let (uid, _, shard) = copy.route.clone();
    let topology = state.topology();
    let (source, target, index) = ends(&topology, copy)?;
    // A node that lost the index gets it with the committed settings (the shard filter
    // needs them); settings it missed otherwise are the drift repair's, and reads with a
    // settings floor avoid it until then, as any node behind.
    let base = target.address.trim_end_matches('/');
    if client
        .get(&target.id, format!("{base}/indexes/{uid}"))
        .await
        .is_err()
    {
        prepare_node(state, &target, &index).await?;
    }
    let mut repaired = 0;
    if let Some(pk) = &index.primary_key {
        let targets = [target.clone()];
        let transfer = Transfer {
            client,
            source: &source,
            targets: &targets,
            uid: &uid,
            pk,
            shard,
            may_write: &may_write,
        };
        repaired = shard_copy::repair_until_small(&transfer, |pass, fixed| {
            tracing::info!(%copy, pass, repaired = fixed, "stale copy verified");
        })
        .await?;
    }
    // The last pass, with the shard's writes held on every gateway.
    state.set_catch_up_hold(&copy.route, true);
    let result = last_pass(state, copy).await;
    let released = state
        .commit(|t, _| {
            // A node that failed again since its last pass stays stale.
            let in_sync = result.is_ok() && still_to_catch_up(t, copy);
            let mut reason = format!("catch-up of {copy}: writes released");
            if let Some(route) = route_mut(t, &copy.route) {
                route.blocked = false;
                if in_sync {
                    route.stale_nodes.retain(|n| n != &copy.node);
                    reason = format!("catch-up of {copy}: back in sync");
                }
            }
            Ok(((), reason))
        })
        .await;
    state.set_catch_up_hold(&copy.route, false);
    released?;
    Ok(repaired + result?)
}

/// Holds the shard's writes, waits for every gateway to route by the hold (and finish
/// the writes it started before), and makes the copy equal to the source. The documents
/// repaired. Bounded by `--cutover-timeout`.
async fn last_pass(state: &Arc<ServiceState>, copy: &StaleCopy) -> Result<u64, StepError> {
    let (version, ok) = state
        .commit(|t, _| {
            let ok = still_to_catch_up(t, copy);
            if ok && let Some(route) = route_mut(t, &copy.route) {
                route.blocked = true;
            }
            Ok((
                ok,
                format!("catch-up of {copy}: writes held for the last pass"),
            ))
        })
        .await
        .map(|(ok, topology)| (topology.version, ok))?;
    if !ok {
        return Err(StepError::Failed(format!(
            "{copy} is no longer to be caught up (its node failed again, or a move took the shard)"
        )));
    }
    let started = Instant::now();
    let work = async {
        barrier(state, version).await?;
        let barrier_ms = started.elapsed().as_millis() as u64;
        let topology = state.topology();
        let (source, target, index) = ends(&topology, copy)?;
        let Some(pk) = &index.primary_key else {
            return Ok(0);
        };
        let client = &state.nodes;
        let may_write = || state.may_act_as_leader();
        let (uid, _, shard) = &copy.route;
        shard_copy::drain_queues(client, [&source, &target].into_iter(), uid).await?;
        let drained_ms = started.elapsed().as_millis() as u64;
        let targets = [target];
        let transfer = Transfer {
            client,
            source: &source,
            targets: &targets,
            uid,
            pk,
            shard: *shard,
            may_write: &may_write,
        };
        let fixed = shard_copy::verify_and_repair(&transfer).await?;
        tracing::info!(
            %copy,
            repaired = fixed,
            barrier_ms,
            drained_ms,
            verified_ms = started.elapsed().as_millis() as u64,
            "final verification under held writes"
        );
        Ok::<u64, StepError>(fixed)
    };
    let limit = state.config.cutover_timeout;
    tokio::time::timeout(limit, work).await.map_err(|_| {
        StepError::Failed(format!(
            "the last pass took longer than {}; writes released, trying again",
            humantime::format_duration(limit)
        ))
    })?
}
