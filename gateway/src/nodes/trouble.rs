//! Passive health: a gateway that sees a node's calls fail or hang reports it to the
//! control plane, whose leader checks the node at once and marks it failed if it does not
//! answer. Detection then takes one check instead of several missed periodic ones, and
//! writes to the node's shards are acknowledged by the in-sync copies left
//! (docs/architecture.md, "Writes through a replica's failure").

use super::Unreachable;
use crate::state::AppState;
use miroir_proto::pb;
use std::future::Future;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Reports `node` to the control plane in the background (the write does not wait for the
/// answer; it waits for the topology). A node already marked failed is not reported.
pub fn report(state: &AppState, node: &str, detail: &str) {
    if is_failed(&state.topology.current(), node) || !state.trouble.take_turn(node, Instant::now())
    {
        return;
    }
    let request = pb::ReportNodeTroubleRequest {
        gateway_id: state.id.to_string(),
        node_id: node.to_owned(),
        detail: detail.to_owned(),
    };
    let control_plane = state.control_plane.clone();
    let span = tracing::info_span!("report_node_trouble", node = %node);
    tokio::spawn(
        async move {
            match control_plane.report_node_trouble(request).await {
                Ok(answer) => tracing::info!(
                    state = answer.state().as_str_name(),
                    "node trouble reported"
                ),
                Err(status) => {
                    tracing::warn!(error = %status.message(), "could not report node trouble")
                }
            }
        }
        .instrument(span),
    );
}

/// Whether `topology` marks `node` failed.
pub(crate) fn is_failed(topology: &pb::Topology, node: &str) -> bool {
    topology
        .nodes
        .iter()
        .any(|n| n.id == node && n.state == pb::NodeState::Failed as i32)
}

/// Runs until the process stops: reports every node that has had calls in flight and
/// answered none for `--node-report-after` (a hung node: its calls neither fail nor
/// answer), checking twice per that interval.
pub async fn watch_silent_nodes(state: AppState) {
    let silence = state.config.node_report_after;
    let mut tick = tokio::time::interval((silence / 2).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let after = humantime::format_duration(silence);
    loop {
        tick.tick().await;
        for node in state.loads.silent(silence) {
            report(
                &state,
                &node,
                &format!("calls waiting, no answer for {after}"),
            );
        }
    }
}

/// Runs `call` to `node` under passive health: a failed call reports the node; a node
/// silent with calls waiting is reported by [`watch_silent_nodes`]; and once the topology
/// marks the node failed, the call is given up as unreachable, so a hung node holds a read
/// (which then asks another replica) or a write (whose quorum the in-sync copies left
/// decide) only as long as its detection takes, not a whole `--node-timeout`.
pub async fn watched<T>(
    state: &AppState,
    node: &str,
    call: impl Future<Output = Result<T, Unreachable>>,
) -> Result<T, Unreachable> {
    let in_flight = state.loads.start(node);
    let mut topology = state.topology.subscribe();
    let marked_failed = async {
        if topology.wait_for(|t| is_failed(t, node)).await.is_err() {
            // The gateway is stopping: the call's own timeout bounds it.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        answer = call => {
            match &answer {
                Ok(_) => in_flight.answered(),
                Err(unreachable) => report(state, node, &unreachable.detail),
            }
            answer
        }
        () = marked_failed => Err(Unreachable {
            node: node.to_owned(),
            detail: "marked failed while the call waited for it".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(version: u64, state: pb::NodeState) -> pb::Topology {
        pb::Topology {
            version,
            nodes: vec![pb::Node {
                id: "a".into(),
                address: "http://127.0.0.1:1".into(),
                state: state as i32,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_call_is_given_up_once_its_node_is_marked_failed() {
        let state = crate::state::GatewayState::for_tests(topology(1, pb::NodeState::Active));
        let hung = std::future::pending::<Result<(), Unreachable>>();
        let marker = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            marker.topology.apply(topology(2, pb::NodeState::Failed));
        });
        let answer = tokio::time::timeout(Duration::from_secs(5), watched(&state, "a", hung))
            .await
            .expect("given up before the test's timeout");
        assert!(answer.is_err_and(|u| u.detail.contains("marked failed")));
        // A call that answers is the call's answer; one that fails is reported.
        let answered = watched(&state, "b", async { Ok::<_, Unreachable>(7) }).await;
        assert_eq!(answered.ok(), Some(7));
        let failed = watched(&state, "b", async {
            Err::<(), _>(Unreachable {
                node: "b".into(),
                detail: "connection refused".into(),
            })
        })
        .await;
        assert!(failed.is_err());
        assert!(
            !state.trouble.take_turn("b", Instant::now()),
            "b was just reported"
        );
    }
}
