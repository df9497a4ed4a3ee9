//! The fan-out stage of a document write: each node's part sent at once, and what the
//! nodes answered: the node tasks they enqueued (the acknowledgements) and their errors.

use crate::nodes::{NodeAnswer, NodeBody, Unreachable, trouble};
use crate::state::AppState;
use http::Method;
use miroir_proto::pb;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What the nodes of one write answered.
#[derive(Debug, Default)]
pub struct NodeAcks {
    /// The node tasks enqueued, by node then uid.
    pub node_tasks: Vec<pb::NodeTask>,
    /// The nodes that enqueued the write.
    pub acked: BTreeSet<String>,
    /// The others' errors, in Meilisearch's shape.
    pub errors: Vec<Value>,
    /// The nodes that did not answer (down, hung, or marked failed while waited for).
    pub unreachable: BTreeSet<String>,
}

/// One node's part of a write.
pub struct NodeCall {
    /// The method.
    pub method: Method,
    /// The path (and query).
    pub path: String,
    /// The body.
    pub body: Option<NodeBody>,
}

/// Makes every call (node id → its call) at once, but to nodes marked failed (their copies
/// are caught up, not written), and collects the answers. Each call is watched
/// ([`trouble::watched`]): a node that fails or hangs is reported, and once marked failed
/// the write stops waiting for it.
pub async fn send(
    state: &AppState,
    topology: &pb::Topology,
    calls: BTreeMap<String, NodeCall>,
) -> NodeAcks {
    let mut running = Vec::new();
    for (node_id, call) in calls {
        let Some(node) = topology.nodes.iter().find(|n| n.id == node_id) else {
            continue;
        };
        if node.state == pb::NodeState::Failed as i32 {
            continue;
        }
        let (state, address) = (state.clone(), node.address.clone());
        running.push((node_id.clone(), async move {
            let call = state
                .nodes
                .send(&node_id, &address, call.method, &call.path, call.body);
            trouble::watched(&state, &node_id, call).await
        }));
    }
    let answers = miroir_proto::fan_out::join_tagged(running)
        .await
        .into_iter()
        .map(|(node_id, answer)| {
            let answer =
                answer.unwrap_or_else(|error| Err(crate::nodes::failed_inside(&node_id, &error)));
            (node_id, answer)
        });
    acks(answers)
}

/// A node acknowledges a write by enqueuing it: 202 with its task's uid. Anything else
/// (another status, no uid, no answer) is its error.
pub fn acks(
    answers: impl IntoIterator<Item = (String, Result<NodeAnswer, Unreachable>)>,
) -> NodeAcks {
    let mut acks = NodeAcks::default();
    for (node_id, answer) in answers {
        match answer {
            Ok(answer) if answer.status == 202 => match answer.body["taskUid"].as_u64() {
                Some(uid) => {
                    acks.node_tasks.push(pb::NodeTask {
                        node_id: node_id.clone(),
                        node_task_uid: uid,
                    });
                    acks.acked.insert(node_id);
                }
                None => acks.errors.push(answer.body),
            },
            Ok(answer) => acks.errors.push(answer.body),
            Err(unreachable) => {
                acks.errors.push(unreachable.error());
                acks.unreachable.insert(node_id);
            }
        }
    }
    acks.node_tasks
        .sort_by(|a, b| (&a.node_id, a.node_task_uid).cmp(&(&b.node_id, b.node_task_uid)));
    acks
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_an_enqueued_task_acknowledges() {
        let answer = |status, body| Ok(NodeAnswer { status, body });
        let acks = acks([
            ("c".to_string(), answer(202, json!({"taskUid": 9}))),
            ("a".to_string(), answer(202, json!({"taskUid": 4}))),
            ("b".to_string(), answer(202, json!({"status": "enqueued"}))),
            (
                "d".to_string(),
                answer(400, json!({"code": "invalid_document_id"})),
            ),
            (
                "e".to_string(),
                Err(Unreachable {
                    node: "e".into(),
                    detail: "connection refused".into(),
                }),
            ),
        ]);
        assert_eq!(
            acks.acked.iter().map(String::as_str).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(
            acks.node_tasks
                .iter()
                .map(|t| (t.node_id.as_str(), t.node_task_uid))
                .collect::<Vec<_>>(),
            [("a", 4), ("c", 9)]
        );
        assert_eq!(acks.errors.len(), 3);
        assert_eq!(acks.errors[2]["code"], "miroir_node_unavailable");
    }
}
