//! Drives every shard move of the topology through its phases (DESIGN §6), on the
//! leader only. The phase is the intent: it is committed (with the routing it implies)
//! before the phase's work, and each phase's work is idempotent, so a new leader simply
//! runs the current phase of every move again.
//!
//! ```text
//! pending ──prepare targets──► copying ──copy──► verifying ──repair until small──►
//! cutover (writes held) ──final repair──► cleanup ──delete leavers' copies──► done
//!        ╰── cancel before cutover: rollback (routing restored, targets' copies deleted)
//! ```
//!
//! Every phase change is followed by `await_applied`, so no gateway still routes by the
//! previous phase when the next one's work begins; gateways acknowledge a version only
//! once writes they started under older versions have finished.

use crate::error::ControlPlaneError;
use crate::nodes::NodeClient;
use crate::operations::{self, MoveKey};
use crate::reconcilers::settings::prepare_node;
use crate::shard_copy::{self, Transfer};
use crate::state::{LeadershipStatus, ServiceState};
use miroir_proto::pb::{self, MovePhase, NodeState, OperationState};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Runs until the process stops.
pub async fn run(state: Arc<ServiceState>) {
    let mut running: HashMap<MoveKey, JoinHandle<()>> = HashMap::new();
    loop {
        running.retain(|_, handle| !handle.is_finished());
        if state.leads_settled() {
            release_stale_holds(&state).await;
            let topology = state.topology();
            for m in &topology.moves {
                if running.len() >= state.config.move_concurrency.max(1) {
                    break;
                }
                let key = MoveKey::of(m);
                if running.contains_key(&key) || !may_advance(&topology, m) {
                    continue;
                }
                let span = tracing::info_span!("shard_move", %key, operation = m.operation_id);
                let handle = tokio::spawn(drive(state.clone(), key.clone()).instrument(span));
                running.insert(key, handle);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = state.moves_wake.notified() => {}
        }
    }
}

/// Releases writes a rename or swap held when its leader stopped before releasing them
/// (no rename or swap runs here while this holds its lock).
async fn release_stale_holds(state: &Arc<ServiceState>) {
    let Ok(_no_rename_running) = state.write_holds_lock.try_lock() else {
        return;
    };
    let exempt = state.catch_up_holds();
    if !crate::topology::has_stale_holds(&state.topology(), &exempt) {
        return;
    }
    let released = state
        .commit(|t, _| {
            let released = crate::topology::release_stale_holds(t, &exempt);
            let reason = format!(
                "writes to {released:?} released (held by a rename or swap that did not finish)"
            );
            Ok((released, reason))
        })
        .await;
    match released {
        Ok((released, _)) => tracing::warn!(
            ?released,
            "released writes held by an unfinished rename or swap"
        ),
        Err(error) => tracing::warn!(%error, "held writes not released; retrying"),
    }
}

/// Whether `m` may start or continue its phase: a paused operation's moves wait, except
/// those past the point of no return (cutover, cleanup).
fn may_advance(topology: &pb::Topology, m: &pb::ShardMove) -> bool {
    let paused = topology
        .operations
        .iter()
        .find(|o| o.id == m.operation_id)
        .is_some_and(|o| o.state() == OperationState::Paused);
    !paused || matches!(m.phase(), MovePhase::Cutover | MovePhase::Cleanup)
}

/// Runs `key`'s phases until it is done, paused, or this process stops leading; a failing
/// step is retried with backoff and its error shown in the progress.
async fn drive(state: Arc<ServiceState>, key: MoveKey) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let topology = state.topology();
        let Some(m) = topology
            .moves
            .iter()
            .find(|m| MoveKey::of(m) == key)
            .cloned()
        else {
            state.move_progress.forget(&key);
            return;
        };
        if !matches!(state.leadership(), LeadershipStatus::Leader { .. })
            || !may_advance(&topology, &m)
        {
            return;
        }
        match step(&state, &topology, &m, &key).await {
            Ok(()) => {
                backoff = Duration::from_millis(200);
                state.move_progress.update(&key, |l| l.last_error.clear());
            }
            Err(StepError::NotLeader) => return,
            Err(StepError::Failed(error)) => {
                tracing::warn!(%key, phase = m.phase().name(), %error, "shard move step failed; retrying");
                state.move_progress.update(&key, |l| l.last_error = error);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

pub(crate) enum StepError {
    NotLeader,
    Failed(String),
}

impl From<ControlPlaneError> for StepError {
    fn from(error: ControlPlaneError) -> Self {
        match error {
            ControlPlaneError::NotLeader(_) => Self::NotLeader,
            other => Self::Failed(other.to_string()),
        }
    }
}

impl From<String> for StepError {
    fn from(error: String) -> Self {
        Self::Failed(error)
    }
}

/// Commits `key` into `phase` and waits until every live gateway routes by it.
async fn enter(
    state: &Arc<ServiceState>,
    key: &MoveKey,
    phase: MovePhase,
    copied: u64,
) -> Result<(), StepError> {
    let (_, committed) = state
        .commit(|t, now| {
            operations::set_phase(t, key, phase, copied, now)?;
            Ok(((), format!("shard move {key}: {}", phase.name())))
        })
        .await?;
    barrier(state, committed.version).await
}

/// `await_applied`; fails (the step is retried) while a gateway still heartbeating has not
/// acknowledged `version`: its lease is still renewed, so it could still write by an older
/// table. A gateway silent past the gateway TTL no longer counts (its lease has lapsed).
pub(crate) async fn barrier(state: &Arc<ServiceState>, version: u64) -> Result<(), StepError> {
    Ok(state.barrier(version).await?)
}

/// Ends `key`, counting `documents_copied` (0 for a move that did not land) and how long
/// it held writes, if it cut over.
async fn finish(
    state: &Arc<ServiceState>,
    key: &MoveKey,
    documents_copied: u64,
    blocked_ms: Option<u64>,
) -> Result<(), StepError> {
    state
        .commit(|t, now| {
            operations::finish_move(t, key, blocked_ms, documents_copied, now)?;
            Ok(((), format!("shard move {key}: done")))
        })
        .await?;
    if let Some(ms) = blocked_ms {
        state
            .metrics
            .move_blocked_seconds
            .observe(ms as f64 / 1000.0);
    }
    state.metrics.moves_finished.inc();
    state.move_progress.forget(key);
    Ok(())
}

fn nodes<'a>(topology: &'a pb::Topology, ids: impl Iterator<Item = &'a String>) -> Vec<pb::Node> {
    ids.filter_map(|id| topology.nodes.iter().find(|n| &n.id == id).cloned())
        .collect()
}

/// New owners that do not hold the shard yet.
fn targets(topology: &pb::Topology, m: &pb::ShardMove) -> Vec<pb::Node> {
    nodes(
        topology,
        m.new_owners.iter().filter(|n| !m.old_owners.contains(n)),
    )
}

/// Old owners that do not keep the shard.
fn leavers(topology: &pb::Topology, m: &pb::ShardMove) -> Vec<pb::Node> {
    nodes(
        topology,
        m.old_owners.iter().filter(|n| !m.new_owners.contains(n)),
    )
}

/// Where the shard's documents are read from: a live in-sync old owner, else (a group
/// being filled, a failed node that held its group's only copy, or owners whose copies
/// are stale) a live in-sync reader in another active group.
fn source(topology: &pb::Topology, m: &pb::ShardMove) -> Result<pb::Node, String> {
    let index = topology
        .indexes
        .iter()
        .find(|i| i.uid == m.index_uid)
        .ok_or_else(|| format!("index {} no longer exists", m.index_uid))?;
    let route = index
        .routing
        .iter()
        .find(|r| r.group_id == m.group_id)
        .and_then(|r| r.shards.get(m.shard as usize));
    let live_old_owner = m
        .old_owners
        .iter()
        .filter(|id| route.is_none_or(|r| !r.stale_nodes.contains(id)))
        .find_map(|id| topology.nodes.iter().find(|n| &n.id == id && n.serves()));
    if let Some(node) = live_old_owner {
        return Ok(node.clone());
    }
    crate::topology::in_sync_source(topology, index, m.shard, m.group_id)
        .filter(|n| n.group_id != m.group_id)
        .cloned()
        .ok_or_else(|| {
            format!(
                "no live in-sync copy of shard {} of index {} to read from; waiting for one to come back",
                m.shard, m.index_uid
            )
        })
}

/// Deletes `m`'s shard from `nodes` (leavers after cleanup, targets after a rollback). A
/// failed node cannot be cleaned (a repair removes it from the fleet); a process that may
/// no longer act as leader stops before touching a node.
async fn delete_copies(
    state: &Arc<ServiceState>,
    nodes: &[pb::Node],
    m: &pb::ShardMove,
) -> Result<(), StepError> {
    for node in nodes.iter().filter(|n| n.state() != NodeState::Failed) {
        if !state.may_act_as_leader() {
            return Err(StepError::NotLeader);
        }
        shard_copy::delete_shard(&state.nodes, node, &m.index_uid, m.shard).await?;
    }
    Ok(())
}

/// Where `m`'s documents come from and go to.
struct Endpoints {
    source: pb::Node,
    targets: Vec<pb::Node>,
    pk: String,
}

impl Endpoints {
    /// `m`'s; `None` while the index has no primary key (then no document was ever
    /// written: nothing to copy).
    fn of(topology: &pb::Topology, m: &pb::ShardMove) -> Result<Option<Self>, String> {
        let pk = topology
            .indexes
            .iter()
            .find(|i| i.uid == m.index_uid)
            .and_then(|i| i.primary_key.clone());
        match pk {
            Some(pk) => Ok(Some(Self {
                source: source(topology, m)?,
                targets: targets(topology, m),
                pk,
            })),
            None => Ok(None),
        }
    }

    /// Waits until the source and the targets ran every task of the index they had when
    /// called.
    async fn drain_queues(&self, client: &NodeClient, uid: &str) -> Result<(), String> {
        let nodes = std::iter::once(&self.source).chain(&self.targets);
        shard_copy::drain_queues(client, nodes, uid).await
    }

    fn transfer<'a>(
        &'a self,
        client: &'a NodeClient,
        m: &'a pb::ShardMove,
        may_write: &'a (dyn Fn() -> bool + Sync),
    ) -> Transfer<'a> {
        Transfer {
            client,
            source: &self.source,
            targets: &self.targets,
            uid: &m.index_uid,
            pk: &self.pk,
            shard: m.shard,
            may_write,
        }
    }
}

/// Brings every target of `m` to the index and its committed settings.
async fn prepare_targets(
    state: &Arc<ServiceState>,
    topology: &pb::Topology,
    m: &pb::ShardMove,
) -> Result<Vec<pb::Node>, StepError> {
    let targets = targets(topology, m);
    let index = topology
        .indexes
        .iter()
        .find(|i| i.uid == m.index_uid)
        .ok_or_else(|| format!("index {} no longer exists", m.index_uid))?;
    for target in &targets {
        prepare_node(state, target, index).await?;
    }
    Ok(targets)
}

fn cancelling(topology: &pb::Topology, m: &pb::ShardMove) -> bool {
    topology
        .operations
        .iter()
        .any(|o| o.id == m.operation_id && o.state() == OperationState::Cancelling)
}

/// Does the work of `m`'s current phase and commits the next one.
async fn step(
    state: &Arc<ServiceState>,
    topology: &pb::Topology,
    m: &pb::ShardMove,
    key: &MoveKey,
) -> Result<(), StepError> {
    let client = &state.nodes;
    let may_write = || state.may_act_as_leader();
    let phase = m.phase();
    // Until cleanup the old owners hold every acknowledged write, so a move can still be
    // rolled back in cutover.
    if cancelling(topology, m)
        && matches!(
            phase,
            MovePhase::Copying | MovePhase::Verifying | MovePhase::Cutover
        )
    {
        return enter(state, key, MovePhase::Rollback, m.documents_copied).await;
    }
    match phase {
        MovePhase::Pending | MovePhase::Unspecified => {
            if cancelling(topology, m) {
                return finish(state, key, 0, None).await;
            }
            let targets = targets(topology, m);
            for target in &targets {
                if target.state() != NodeState::Active {
                    return Err(StepError::Failed(format!(
                        "waiting for node {} to pass its health checks (now {})",
                        target.id,
                        target.state().as_str_name()
                    )));
                }
            }
            prepare_targets(state, topology, m).await?;
            let next = if targets.is_empty() {
                MovePhase::Cleanup
            } else {
                MovePhase::Copying
            };
            enter(state, key, next, 0).await
        }
        MovePhase::Copying => {
            barrier(state, topology.version).await?;
            let Some(ends) = Endpoints::of(topology, m)? else {
                return enter(state, key, MovePhase::Verifying, 0).await;
            };
            let transfer = ends.transfer(client, m, &may_write);
            let started = Instant::now();
            let progress = &state.move_progress;
            let copied = shard_copy::copy(&transfer, |copied, total| {
                let rate = copied as f64 / started.elapsed().as_secs_f64().max(1e-3);
                progress.update(key, |l| {
                    l.copied = copied;
                    l.total = total;
                    l.rate = rate;
                });
            })
            .await?;
            state.metrics.documents_copied.inc_by(copied);
            progress.update(key, |l| l.rate = 0.0);
            tracing::info!(%key, copied, elapsed_ms = started.elapsed().as_millis() as u64, "shard copied");
            enter(state, key, MovePhase::Verifying, copied).await
        }
        MovePhase::Verifying => {
            barrier(state, topology.version).await?;
            if let Some(ends) = Endpoints::of(topology, m)? {
                let transfer = ends.transfer(client, m, &may_write);
                shard_copy::repair_until_small(&transfer, |pass, repaired| {
                    tracing::info!(%key, pass, repaired, "shard verified");
                })
                .await?;
            }
            enter(state, key, MovePhase::Cutover, m.documents_copied).await
        }
        MovePhase::Cutover => {
            // Every gateway holds writes to the shard and has finished the ones it started
            // before: after the queues ran, the shard changes only by the repair below.
            let started = Instant::now();
            barrier(state, topology.version).await?;
            let limit = state.config.cutover_timeout;
            let work = async {
                let barrier_ms = started.elapsed().as_millis() as u64;
                prepare_targets(state, topology, m).await?;
                let prepared_ms = started.elapsed().as_millis() as u64;
                if let Some(ends) = Endpoints::of(topology, m)? {
                    ends.drain_queues(client, &m.index_uid).await?;
                    let drained_ms = started.elapsed().as_millis() as u64;
                    let transfer = ends.transfer(client, m, &may_write);
                    let repaired = shard_copy::verify_and_repair(&transfer).await?;
                    tracing::info!(
                        %key,
                        repaired,
                        barrier_ms,
                        prepared_ms,
                        drained_ms,
                        verified_ms = started.elapsed().as_millis() as u64,
                        "final verification under held writes"
                    );
                }
                Ok::<(), StepError>(())
            };
            match tokio::time::timeout(limit, work).await {
                Ok(result) => result?,
                Err(_) => {
                    // Release the writes; the move goes back to verifying and tries again.
                    enter(state, key, MovePhase::Verifying, m.documents_copied).await?;
                    return Err(StepError::Failed(format!(
                        "cutover took longer than {}; writes released, verifying again",
                        humantime::format_duration(limit)
                    )));
                }
            }
            enter(state, key, MovePhase::Cleanup, m.documents_copied).await
        }
        MovePhase::Cleanup => {
            barrier(state, topology.version).await?;
            delete_copies(state, &leavers(topology, m), m).await?;
            let blocked = (!targets(topology, m).is_empty()).then_some(m.blocked_ms);
            finish(state, key, m.documents_copied, blocked).await
        }
        MovePhase::Rollback => {
            barrier(state, topology.version).await?;
            delete_copies(state, &targets(topology, m), m).await?;
            finish(state, key, 0, None).await
        }
    }
}
