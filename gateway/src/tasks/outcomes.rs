//! Finished tasks' outcomes, recorded once: a task's view is aggregated from its node
//! tasks until it is final, then recorded with the control plane so no later read needs
//! its nodes; a background sweep records those no client read.

use super::view as tasks;
use crate::state::AppState;
use miroir_proto::pb;
use serde_json::{Value, json};

/// Aggregated views of `tasks`, in the same order: a finished task's from its recorded
/// outcome, the others fetched from the nodes in parallel. A task first seen finished
/// here gets its outcome recorded, so no later read needs its nodes (whose own tasks may
/// be gone by then: pruned by Meilisearch, or the node replaced).
pub async fn views(state: &AppState, list: &[pb::Task]) -> Vec<Value> {
    let topology = state.topology.current();
    let mut out = vec![Value::Null; list.len()];
    let mut fetches = Vec::new();
    for (position, task) in list.iter().enumerate() {
        if let Some(outcome) = recorded_outcome(task) {
            out[position] = outcome;
            continue;
        }
        let (task, topology, nodes) = (task.clone(), topology.clone(), state.nodes.clone());
        fetches.push((position, async move {
            tasks::view(&task, &topology, &nodes).await
        }));
    }
    for (position, view) in miroir_proto::fan_out::join_tagged(fetches).await {
        // A view that failed inside the gateway shows the task as with its nodes
        // unreachable: still processing as far as anyone knows, and not recorded.
        let view = view.unwrap_or_else(|error| {
            tasks::aggregate(&list[position], &[(String::new(), Err(error))])
        });
        if view["status"].as_str().is_some_and(tasks::is_final)
            && every_node_known(&list[position], &topology)
        {
            record_outcome(state, list[position].uid, &view);
        }
        out[position] = view;
    }
    for (view, task) in out.iter_mut().zip(list) {
        if view["status"] == "canceled"
            && let Some(by) = task.canceled_by
        {
            view["canceledBy"] = json!(by);
        }
    }
    out
}

/// Tasks one page of a sweep looks at.
const SWEEP_PAGE: u32 = 100;

/// Pages one sweep pass looks at, at most: it goes on while pages are mostly finished
/// tasks, so a burst of writes is caught up within a few passes.
const SWEEP_PAGES: usize = 10;

/// Records the outcome of finished tasks no client has read, so their status survives
/// their node tasks (pruned by Meilisearch, or a node replaced) and `statuses` filters
/// count them exactly. Every `interval`, pages of unrecorded tasks, oldest first,
/// resuming after the last page (and from the oldest again after the newest), so tasks
/// that stay unfinished never hold the others back. Recording is idempotent (the first
/// outcome stays), so gateways sweeping at once only repeat work.
pub async fn sweep_task_outcomes(state: AppState, interval: std::time::Duration) {
    let mut from = None;
    loop {
        tokio::time::sleep(interval).await;
        if state.topology.current().version == 0 {
            continue;
        }
        for _ in 0..SWEEP_PAGES {
            let request = pb::ListTasksRequest {
                from,
                limit: SWEEP_PAGE,
                reverse: true,
                unrecorded_only: true,
                ..Default::default()
            };
            let page = match state.control_plane.list_tasks(request).await {
                Ok(page) => page,
                Err(status) => {
                    tracing::debug!(message = %status.message(), "task outcome sweep skipped");
                    break;
                }
            };
            let finished = views(&state, &page.tasks)
                .await
                .iter()
                .filter(|v| v["status"].as_str().is_some_and(tasks::is_final))
                .count();
            from = page.next;
            // Past the newest, or among tasks still running: the rest waits for the next pass.
            if from.is_none() || finished * 2 < page.tasks.len() {
                break;
            }
        }
    }
}

/// Whether every node behind `task` is in `topology`. A view is left out of nodes the
/// topology does not hold (removed from the fleet), which is right for a node removed but
/// not for one this gateway has not heard of yet (no snapshot applied yet, or an older
/// one): such a view is shown but never recorded, so no outcome is frozen from it.
fn every_node_known(task: &pb::Task, topology: &pb::Topology) -> bool {
    topology.version > 0
        && task
            .node_tasks
            .iter()
            .all(|t| topology.nodes.iter().any(|n| n.id == t.node_id))
}

/// A task's recorded outcome, when it has one that reads back.
fn recorded_outcome(task: &pb::Task) -> Option<Value> {
    if task.outcome_json.is_empty() {
        return None;
    }
    match serde_json::from_str(&task.outcome_json) {
        Ok(view) => Some(view),
        Err(error) => {
            tracing::warn!(task = task.uid, %error, "recorded task outcome is not JSON; asking the nodes");
            None
        }
    }
}

/// Records a finished task's outcome in the background: the client's answer does not
/// wait for it, and a failure only means the next read asks the nodes again.
fn record_outcome(state: &AppState, uid: u32, view: &Value) {
    let request = pb::RecordTaskOutcomeRequest {
        uid,
        outcome_json: view.to_string(),
    };
    let control_plane = state.control_plane.clone();
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        if let Err(status) = control_plane.record_task_outcome(request).await {
            tracing::debug!(task = uid, %status, "task outcome not recorded");
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_is_recorded_only_from_a_topology_holding_every_node_of_the_task() {
        let task = pb::Task {
            node_tasks: vec![pb::NodeTask {
                node_id: "a".into(),
                node_task_uid: 1,
            }],
            ..Default::default()
        };
        let topology = |version: u64, nodes: &[&str]| pb::Topology {
            version,
            nodes: nodes
                .iter()
                .map(|id| pb::Node {
                    id: (*id).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        assert!(every_node_known(&task, &topology(3, &["a", "b"])));
        assert!(!every_node_known(&task, &topology(3, &["b"])));
        assert!(!every_node_known(&task, &topology(0, &[])));
        let no_nodes = pb::Task::default();
        assert!(every_node_known(&no_nodes, &topology(3, &["b"])));
        assert!(!every_node_known(&no_nodes, &topology(0, &[])));
    }
}
