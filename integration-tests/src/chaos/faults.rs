//! The faults a chaos run injects, one at a time, each chosen and timed from the seed,
//! and each undone before the next: a node killed is restarted, a node hung is resumed,
//! and so on. Node faults wait until the fleet is whole again first, so no shard ever
//! loses both copies at once (that is unavailability, which RF 2 does not promise to
//! avoid, not loss).

use super::fleet::ChaosFleet;
use crate::rng::Rng;
use miroir_proto::pb;
use std::time::{Duration, Instant};

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// `kill -9` a node, then restart it.
    KillNode,
    /// `SIGSTOP` a node for 5–20 s (a gray failure), then `SIGCONT`.
    HangNode,
    /// `kill -9` the leader control plane, then restart it.
    KillLeader,
    /// `kill -9` a gateway, then restart it.
    KillGateway,
    /// Kill Redis, then restart it.
    KillRedis,
    /// Start a shard move (a node added), then cancel it.
    CancelMove,
    /// Add a node, then drain it and remove it.
    AddThenDrain,
}

/// Every kind, in the order the seed picks from.
pub const KINDS: [FaultKind; 7] = [
    FaultKind::KillNode,
    FaultKind::HangNode,
    FaultKind::KillLeader,
    FaultKind::KillGateway,
    FaultKind::KillRedis,
    FaultKind::CancelMove,
    FaultKind::AddThenDrain,
];

impl FaultKind {
    /// As printed.
    pub fn name(self) -> &'static str {
        match self {
            Self::KillNode => "kill -9 a node, restart it",
            Self::HangNode => "SIGSTOP a node 5-20 s",
            Self::KillLeader => "kill -9 the leader control plane",
            Self::KillGateway => "kill -9 a gateway, restart it",
            Self::KillRedis => "kill Redis, restart it",
            Self::CancelMove => "start a shard move, cancel it",
            Self::AddThenDrain => "add a node, then drain it",
        }
    }
}

/// One fault as injected.
#[derive(Clone, Debug)]
pub struct Fault {
    /// What.
    pub kind: FaultKind,
    /// On what, and how it went.
    pub detail: String,
    /// When it began.
    pub started: Instant,
    /// When it was undone.
    pub ended: Instant,
}

fn millis(rng: &mut Rng, from: u64, to: u64) -> Duration {
    Duration::from_millis(from + rng.next((to - from) as usize) as u64)
}

/// Injects one fault of `kind` and undoes it; `hang_cap` bounds a hang (short runs).
pub async fn inject(
    fleet: &mut ChaosFleet,
    kind: FaultKind,
    rng: &mut Rng,
    hang_cap: Duration,
) -> Fault {
    if matches!(
        kind,
        FaultKind::KillNode | FaultKind::HangNode | FaultKind::CancelMove | FaultKind::AddThenDrain
    ) {
        // One node fault at a time, on a whole fleet.
        fleet.healed(Duration::from_secs(120)).await;
    }
    let started = Instant::now();
    let detail = match kind {
        FaultKind::KillNode => {
            let position = rng.next(fleet.nodes.len());
            let down = millis(rng, 2_000, 6_000);
            let (id, node) = &mut fleet.nodes[position];
            node.down().await;
            tokio::time::sleep(down).await;
            node.up().await;
            format!("{id} down {down:?}")
        }
        FaultKind::HangNode => {
            let position = rng.next(fleet.nodes.len());
            let hung = millis(rng, 5_000, 20_000).min(hang_cap);
            let (id, node) = &fleet.nodes[position];
            node.hang();
            tokio::time::sleep(hung).await;
            node.unhang();
            format!("{id} stopped {hung:?}")
        }
        FaultKind::KillLeader => {
            let leader = fleet.leader().await;
            let down = millis(rng, 500, 3_000);
            fleet.control_planes[leader].kill().await;
            tokio::time::sleep(down).await;
            fleet.restart_control_plane(leader).await;
            format!("control plane {leader} down {down:?}")
        }
        FaultKind::KillGateway => {
            let position = rng.next(fleet.gateways.len());
            let down = millis(rng, 500, 3_000);
            fleet.kill_gateway(position).await;
            tokio::time::sleep(down).await;
            fleet.restart_gateway(position).await;
            format!("gateway {position} down {down:?}")
        }
        FaultKind::KillRedis => {
            let down = millis(rng, 500, 3_000);
            fleet.redis.kill().await;
            tokio::time::sleep(down).await;
            fleet.redis.restart().await;
            format!("redis down {down:?}")
        }
        FaultKind::CancelMove => {
            let after = millis(rng, 200, 2_000);
            match add_spare(fleet).await {
                Ok(Some(operation)) => {
                    tokio::time::sleep(after).await;
                    let cancelled = cancel(fleet, operation).await;
                    let ended = wait_operation(fleet, operation).await;
                    let removed = remove_spare(fleet).await;
                    format!(
                        "operation {operation} cancelled after {after:?} ({cancelled}): {ended}; spare removed: {removed}"
                    )
                }
                Ok(None) => format!(
                    "nothing to move; spare removed: {}",
                    remove_spare(fleet).await
                ),
                Err(error) => format!("not started: {error}"),
            }
        }
        FaultKind::AddThenDrain => match add_spare(fleet).await {
            Ok(operation) => {
                let added = match operation {
                    Some(id) => wait_operation(fleet, id).await,
                    None => "nothing to move".into(),
                };
                let drained = drain_spare(fleet).await;
                let removed = remove_spare(fleet).await;
                format!("added ({added}), drained ({drained}), removed: {removed}")
            }
            Err(error) => format!("not started: {error}"),
        },
    };
    Fault {
        kind,
        detail,
        started,
        ended: Instant::now(),
    }
}

async fn admin(
    fleet: &ChaosFleet,
) -> pb::admin_service_client::AdminServiceClient<tonic::transport::Channel> {
    let leader = fleet.leader().await;
    fleet.control_planes[leader].admin().await
}

/// Adds the spare node to group 0; the operation filling it, if any.
async fn add_spare(fleet: &ChaosFleet) -> Result<Option<u64>, String> {
    let (id, node) = &fleet.spare;
    let request = pb::AddNodeRequest {
        id: id.clone(),
        address: node.url.clone(),
        group_id: 0,
    };
    admin(fleet)
        .await
        .add_node(request)
        .await
        .map(|r| r.into_inner().operation_id)
        .map_err(|s| s.message().to_owned())
}

/// Cancels operation `id`; what the control plane said.
async fn cancel(fleet: &ChaosFleet, id: u64) -> String {
    let answer = admin(fleet)
        .await
        .cancel_operation(pb::OperationRequest { id })
        .await;
    match answer {
        Ok(_) => "accepted".into(),
        Err(status) => status.message().to_owned(),
    }
}

/// Follows operation `id` until it ends (at most two minutes); how it ended.
async fn wait_operation(fleet: &ChaosFleet, id: u64) -> String {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(answer) = admin(fleet)
            .await
            .get_operation(pb::OperationRequest { id })
            .await
            && let Some(op) = answer.into_inner().operation
            && matches!(
                op.state(),
                pb::OperationState::Succeeded | pb::OperationState::Cancelled
            )
        {
            return format!("{} in {:?}", op.state().name(), started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    format!("still open after {:?}", started.elapsed())
}

/// Drains the spare node and waits for the drain.
async fn drain_spare(fleet: &ChaosFleet) -> String {
    let request = pb::DrainNodeRequest {
        id: fleet.spare.0.clone(),
    };
    match admin(fleet).await.drain_node(request).await {
        Ok(answer) => match answer.into_inner().operation_id {
            Some(id) => wait_operation(fleet, id).await,
            None => "nothing to move".into(),
        },
        Err(status) => status.message().to_owned(),
    }
}

/// Removes the spare node from the fleet (retried while a move still names it). A
/// cancelled operation keeps the moves already past their cutover, so the spare may hold
/// copies: it is drained first then.
async fn remove_spare(fleet: &ChaosFleet) -> String {
    let started = Instant::now();
    let mut drained = false;
    loop {
        let request = pb::RemoveNodeRequest {
            id: fleet.spare.0.clone(),
        };
        match admin(fleet).await.remove_node(request).await {
            Ok(_) if drained => return "yes, after a drain".into(),
            Ok(_) => return "yes".into(),
            Err(status) if started.elapsed() > Duration::from_secs(60) => {
                return format!("no: {}", status.message());
            }
            Err(status) if status.message().contains("holds shard copies") && !drained => {
                drain_spare(fleet).await;
                drained = true;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}
