//! A client task as Meilisearch shows it, aggregated from the node tasks behind it:
//! processing while any node task is, failed if any failed (with the node named),
//! succeeded when all did; details count each logical document once.

use crate::nodes::NodeClient;
use http::Method;
use miroir_proto::pb;
use miroir_proto::time::rfc3339_ms;
use serde_json::{Map, Value, json};

/// The summary returned when a task is enqueued.
pub fn summary(task: &pb::Task) -> Value {
    let mut summary = json!({
        "taskUid": task.uid,
        "indexUid": task.index_uid,
        "status": "enqueued",
        "type": task.task_type,
        "enqueuedAt": rfc3339_ms(task.enqueued_at_ms),
    });
    with_custom_metadata(&mut summary, task);
    summary
}

/// The client's `customMetadata`, last in a task's answer, as Meilisearch 1.50 shows it
/// (absent when none was given).
fn with_custom_metadata(answer: &mut Value, task: &pb::Task) {
    if let (Some(metadata), Some(answer)) = (&task.custom_metadata, answer.as_object_mut()) {
        answer.insert("customMetadata".into(), json!(metadata));
    }
}

/// Whether the part of `task` that failed node `failed` took is also held by the task's
/// node tasks on live nodes: every shard of the index that `failed` receives writes for
/// has another write node, not failed, with a node task in `task` (another replica in its
/// group, or the shard's node in another group). Those copies got the same documents; the
/// failed node is repaired from them.
fn covered_elsewhere(task: &pb::Task, topology: &pb::Topology, failed: &str) -> bool {
    let Some(index) = topology
        .indexes
        .iter()
        .find(|i| Some(&i.uid) == task.index_uid.as_ref())
    else {
        return false;
    };
    let live_with_task = |node: &String| {
        node != failed
            && task.node_tasks.iter().any(|t| &t.node_id == node)
            && topology
                .nodes
                .iter()
                .any(|n| &n.id == node && n.state != pb::NodeState::Failed as i32)
    };
    let shards_of_failed = index
        .routing
        .iter()
        .flat_map(|g| &g.shards)
        .filter(|route| route.write_nodes.iter().any(|n| n == failed))
        .map(|route| route.shard);
    let mut shards_of_failed = shards_of_failed.peekable();
    // A node that no longer holds any shard of the index: its part moved to others.
    if shards_of_failed.peek().is_none() {
        return true;
    }
    shards_of_failed.all(|shard| {
        index
            .routing
            .iter()
            .flat_map(|g| g.shards.iter().filter(|r| r.shard == shard))
            .any(|route| route.write_nodes.iter().any(live_with_task))
    })
}

/// A node's RFC 3339 time as an instant, to compare: as strings, Meilisearch's trimmed
/// fractions (`05.1Z` against `05.10001Z`) would not compare in time order. An unreadable
/// one sorts first.
fn instant(time: &str) -> Option<std::time::SystemTime> {
    miroir_proto::time::parse_rfc3339(time)
}

/// Whether a task status is final: `succeeded`, `failed` or `canceled`.
pub fn is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "canceled")
}

/// The full task view, fetching every node task.
pub async fn view(task: &pb::Task, topology: &pb::Topology, nodes: &NodeClient) -> Value {
    let mut fetches = Vec::new();
    for node_task in &task.node_tasks {
        // A node removed from the fleet had its queue drained before its copies moved
        // off (a move's cutover waits for it): its part is in the copies, and the other
        // node tasks tell the outcome. Waiting on it would keep the task processing
        // forever.
        let Some(node) = topology.nodes.iter().find(|n| n.id == node_task.node_id) else {
            continue;
        };
        // Likewise a failed node whose part other live nodes also hold: the task is what
        // they did (the node is repaired from them). A part no live node holds keeps the
        // task processing until the node answers again.
        if node.state == pb::NodeState::Failed as i32 && covered_elsewhere(task, topology, &node.id)
        {
            continue;
        }
        let address = node.address.clone();
        let (client, node_id, uid) = (
            nodes.clone(),
            node_task.node_id.clone(),
            node_task.node_task_uid,
        );
        fetches.push((node_task.node_id.clone(), async move {
            match client
                .call(
                    &node_id,
                    &address,
                    Method::GET,
                    &format!("/tasks/{uid}"),
                    None,
                )
                .await
            {
                Ok(answer) if answer.status == 200 => (node_id, Ok(answer.body)),
                Ok(answer) => (
                    node_id,
                    Err(format!("answered {}: {}", answer.status, answer.body)),
                ),
                Err(e) => (node_id, Err(e.detail)),
            }
        }));
    }
    let mut node_views: Vec<(String, Result<Value, String>)> =
        miroir_proto::fan_out::join_tagged(fetches)
            .await
            .into_iter()
            .map(|(node_id, fetched)| {
                fetched.unwrap_or_else(|error| {
                    (node_id, Err(format!("failed inside the gateway: {error}")))
                })
            })
            .collect();
    node_views.sort_by(|a, b| a.0.cmp(&b.0));
    let mut view = aggregate(task, &node_views);
    count_deleted(&mut view, task, topology, &node_views);
    view
}

/// A finished deletion's `deletedDocuments`, each document once: every node counts the
/// copies it deleted, so per group the sum over its nodes is divided by the copies each
/// shard has there (RF), and the group that saw the most is taken (a group may have
/// missed the delete on a failed node). A failed one is 0 ([`aggregate`]), as in
/// Meilisearch.
fn count_deleted(
    view: &mut Value,
    task: &pb::Task,
    topology: &pb::Topology,
    node_views: &[(String, Result<Value, String>)],
) {
    if view["status"] != "succeeded" {
        return;
    }
    // `get_mut`, not indexing: indexing would add a `details` member to a snapshot's view.
    let Some(details) = view.get_mut("details").and_then(Value::as_object_mut) else {
        return;
    };
    if !details.contains_key("deletedDocuments") {
        return;
    }
    let rf = topology
        .indexes
        .iter()
        .find(|i| Some(&i.uid) == task.index_uid.as_ref())
        .map_or(1, |i| u64::from(i.replication_factor.max(1)));
    let mut per_group: std::collections::BTreeMap<u32, u64> = Default::default();
    for (node, view) in node_views {
        let (Some(group), Ok(view)) = (
            topology
                .nodes
                .iter()
                .find(|n| &n.id == node)
                .map(|n| n.group_id),
            view,
        ) else {
            continue;
        };
        *per_group.entry(group).or_default() +=
            view["details"]["deletedDocuments"].as_u64().unwrap_or(0);
    }
    let deleted = per_group.values().map(|sum| sum / rf).max().unwrap_or(0);
    details.insert("deletedDocuments".into(), json!(deleted));
}

fn status_of(view: &Result<Value, String>) -> &str {
    match view {
        Ok(task) => task["status"].as_str().unwrap_or("processing"),
        // Unknown while the node is unreachable.
        Err(_) => "processing",
    }
}

/// A task whose outcome the control plane decides (a settings change: succeeded only once
/// committed on every node).
fn decided(task: &pb::Task, status: &str) -> Value {
    // A write whose node tasks are not attached yet is enqueued as far as anyone knows.
    let status = if status == "reserved" {
        "enqueued"
    } else {
        status
    };
    let error: Value = serde_json::from_str(&task.error_json).unwrap_or(Value::Null);
    let finished = matches!(status, "succeeded" | "failed");
    let started = task.started_at_ms > 0;
    let at = |ms: u64| {
        if ms > 0 {
            json!(rfc3339_ms(ms))
        } else {
            Value::Null
        }
    };
    let duration = (finished && started).then(|| {
        miroir_proto::time::iso_duration(std::time::Duration::from_millis(
            task.finished_at_ms.saturating_sub(task.started_at_ms),
        ))
    });
    let details: Value = serde_json::from_str(&task.details_json).unwrap_or(json!({}));
    let mut view = json!({
        "uid": task.uid,
        "batchUid": if started { json!(task.uid) } else { Value::Null },
        "indexUid": task.index_uid,
        "status": status,
        "type": task.task_type,
        "canceledBy": Value::Null,
        "details": details,
        "error": error,
        "duration": duration,
        "enqueuedAt": rfc3339_ms(task.enqueued_at_ms),
        "startedAt": at(task.started_at_ms),
        "finishedAt": if finished { at(task.finished_at_ms) } else { Value::Null },
    });
    with_custom_metadata(&mut view, task);
    view
}

/// Aggregates node task views into one Meilisearch task.
pub fn aggregate(task: &pb::Task, node_views: &[(String, Result<Value, String>)]) -> Value {
    if let Some(status) = task.status.as_deref() {
        return decided(task, status);
    }
    let own_error: Option<Value> = (!task.error_json.is_empty())
        .then(|| serde_json::from_str(&task.error_json).unwrap_or(Value::Null));
    let statuses: Vec<&str> = node_views.iter().map(|(_, v)| status_of(v)).collect();
    let failed_node = node_views.iter().find(|(_, v)| status_of(v) == "failed");
    let status = if own_error.is_some() {
        "failed"
    } else if !statuses.is_empty() && statuses.iter().all(|s| *s == "enqueued") {
        "enqueued"
    } else if statuses
        .iter()
        .any(|s| matches!(*s, "enqueued" | "processing"))
    {
        "processing"
    } else if failed_node.is_some() {
        "failed"
    } else if statuses.contains(&"canceled") {
        "canceled"
    } else {
        "succeeded"
    };
    let error = own_error.or_else(|| {
        failed_node.and_then(|(node, view)| {
            let mut error = view.as_ref().ok()?.get("error")?.clone();
            let message = error["message"].as_str().unwrap_or_default();
            // Nodes list `_miroir_shard` among filterable attributes; clients never see it.
            let message = crate::read::strip::client_error_message(message)
                .unwrap_or_else(|| message.to_owned());
            error["message"] = json!(format!("{message} (node `{node}`)"));
            Some(error)
        })
    });
    let finished = is_final(status);
    let times = |key: &str| -> Vec<String> {
        node_views
            .iter()
            .filter_map(|(_, v)| v.as_ref().ok()?.get(key)?.as_str().map(str::to_owned))
            .collect()
    };
    let started_at = times("startedAt").into_iter().min_by_key(|t| instant(t));
    let finished_at = finished
        .then(|| times("finishedAt").into_iter().max_by_key(|t| instant(t)))
        .flatten();
    let duration = if finished {
        node_views
            .iter()
            .filter_map(|(_, v)| v.as_ref().ok())
            .max_by_key(|v| v["finishedAt"].as_str().map(instant))
            .and_then(|v| v.get("duration").cloned())
    } else {
        None
    };
    let mut details: Map<String, Value> =
        serde_json::from_str(&task.details_json).unwrap_or_default();
    if finished {
        let succeeded = status == "succeeded";
        // A failed deletion deleted nothing; a succeeded one is counted over the nodes
        // in `count_deleted`.
        if status == "failed" && details.contains_key("deletedDocuments") {
            details.insert("deletedDocuments".into(), json!(0));
        }
        if details.contains_key("indexedDocuments") {
            let received = details
                .get("receivedDocuments")
                .cloned()
                .unwrap_or(json!(0));
            details.insert(
                "indexedDocuments".into(),
                if succeeded { received } else { json!(0) },
            );
        }
        // Every node made its own dump, or compacted its own copy: each node's part of
        // the details (the dump's name, the sizes), by node.
        let by_node = |part: fn(&Value) -> Option<&Value>| -> Value {
            let parts: Map<String, Value> = node_views
                .iter()
                .filter_map(|(node, view)| Some((node.clone(), part(view.as_ref().ok()?)?.clone())))
                .collect();
            Value::Object(parts)
        };
        match task.task_type.as_str() {
            "dumpCreation" if succeeded => {
                let uids = by_node(|v| v.pointer("/details/dumpUid").filter(|u| u.is_string()));
                details.insert("miroirDumpUids".into(), uids);
            }
            "indexCompaction" if succeeded => {
                let sizes = by_node(|v| v.get("details").filter(|d| d.is_object()));
                details.insert("miroirCompactions".into(), sizes);
            }
            _ => {}
        }
    }
    let mut view = Map::new();
    view.insert("uid".into(), json!(task.uid));
    view.insert(
        "batchUid".into(),
        if started_at.is_some() {
            json!(task.uid)
        } else {
            Value::Null
        },
    );
    view.insert("indexUid".into(), json!(task.index_uid));
    view.insert("status".into(), json!(status));
    view.insert("type".into(), json!(task.task_type));
    view.insert("canceledBy".into(), Value::Null);
    // Meilisearch shows no details for a snapshot: no member at all.
    if task.task_type != "snapshotCreation" {
        view.insert("details".into(), Value::Object(details));
    }
    view.insert("error".into(), error.unwrap_or(Value::Null));
    view.insert("duration".into(), duration.unwrap_or(Value::Null));
    view.insert("enqueuedAt".into(), json!(rfc3339_ms(task.enqueued_at_ms)));
    view.insert(
        "startedAt".into(),
        json!(started_at.or_else(|| finished.then(|| rfc3339_ms(task.enqueued_at_ms)))),
    );
    view.insert(
        "finishedAt".into(),
        json!(finished_at.or_else(|| finished.then(|| rfc3339_ms(task.enqueued_at_ms)))),
    );
    if finished && view["duration"].is_null() {
        view.insert("duration".into(), json!("PT0S"));
    }
    let mut view = Value::Object(view);
    with_custom_metadata(&mut view, task);
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> pb::Task {
        pb::Task {
            uid: 7,
            index_uid: Some("movies".into()),
            task_type: "documentAdditionOrUpdate".into(),
            details_json: r#"{"receivedDocuments": 3, "indexedDocuments": null}"#.into(),
            ..Default::default()
        }
    }

    fn node(status: &str) -> Result<Value, String> {
        Ok(
            json!({"status": status, "startedAt": "2026-01-01T00:00:01Z", "finishedAt": "2026-01-01T00:00:02Z", "duration": "PT1S",
                  "error": if status == "failed" { json!({"message": "boom", "code": "internal", "type": "internal", "link": "x"}) } else { Value::Null }}),
        )
    }

    /// Shards 0 and 1 of `movies`: group 0 puts both on `a`, group 1 shard 0 on `b` and
    /// shard 1 on `c`. The task has node tasks on `nodes_with_tasks`.
    fn failed_a(nodes_with_tasks: &[&str], failed: &[&str]) -> (pb::Task, pb::Topology) {
        let route = |shard: u32, node: &str| pb::ShardRoute {
            shard,
            read_nodes: vec![node.into()],
            write_nodes: vec![node.into()],
            blocked: false,
            stale_nodes: Vec::new(),
        };
        let topology = pb::Topology {
            nodes: ["a", "b", "c"]
                .iter()
                .map(|id| pb::Node {
                    id: (*id).into(),
                    state: if failed.contains(id) {
                        pb::NodeState::Failed
                    } else {
                        pb::NodeState::Active
                    } as i32,
                    ..Default::default()
                })
                .collect(),
            indexes: vec![pb::Index {
                uid: "movies".into(),
                routing: vec![
                    pb::GroupRouting {
                        group_id: 0,
                        shards: vec![route(0, "a"), route(1, "a")],
                    },
                    pb::GroupRouting {
                        group_id: 1,
                        shards: vec![route(0, "b"), route(1, "c")],
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut task = task();
        task.node_tasks = nodes_with_tasks
            .iter()
            .map(|n| pb::NodeTask {
                node_id: (*n).into(),
                node_task_uid: 1,
            })
            .collect();
        (task, topology)
    }

    #[test]
    fn a_failed_nodes_part_is_covered_only_by_live_copies_with_the_write() {
        let (task, topology) = failed_a(&["a", "b", "c"], &["a"]);
        assert!(covered_elsewhere(&task, &topology, "a"));
        // Shard 1's other copy did not get this write.
        let (task, topology) = failed_a(&["a", "b"], &["a"]);
        assert!(!covered_elsewhere(&task, &topology, "a"));
        // Shard 1's other copy is failed too.
        let (task, topology) = failed_a(&["a", "b", "c"], &["a", "c"]);
        assert!(!covered_elsewhere(&task, &topology, "a"));
        // `c`'s shard 1 has its other copy on `a`, failed too.
        assert!(!covered_elsewhere(&task, &topology, "c"));
    }

    #[test]
    fn status_aggregates_across_nodes() {
        let views = |s: &[&str]| {
            s.iter()
                .enumerate()
                .map(|(i, s)| (format!("n{i}"), node(s)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            aggregate(&task(), &views(&["succeeded", "succeeded"]))["status"],
            "succeeded"
        );
        assert_eq!(
            aggregate(&task(), &views(&["succeeded", "processing"]))["status"],
            "processing"
        );
        assert_eq!(
            aggregate(&task(), &views(&["enqueued", "enqueued"]))["status"],
            "enqueued"
        );
        let failed = aggregate(&task(), &views(&["succeeded", "failed"]));
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["error"]["message"], "boom (node `n1`)");
        assert_eq!(failed["details"]["indexedDocuments"], 0);
        let ok = aggregate(&task(), &views(&["succeeded", "succeeded"]));
        assert_eq!(
            ok["details"]["indexedDocuments"], 3,
            "each logical document once"
        );
        assert_eq!(ok["duration"], "PT1S");
        let unreachable = vec![("n0".to_owned(), Err("down".to_owned()))];
        assert_eq!(aggregate(&task(), &unreachable)["status"], "processing");
    }

    #[test]
    fn a_deletion_counts_each_document_once() {
        let node = |id: &str, group: u32| pb::Node {
            id: id.into(),
            group_id: group,
            ..Default::default()
        };
        let topology = pb::Topology {
            nodes: vec![node("a", 0), node("b", 0), node("c", 1), node("d", 1)],
            indexes: vec![pb::Index {
                uid: "movies".into(),
                replication_factor: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut task = task();
        task.task_type = "documentDeletion".into();
        task.details_json = r#"{"providedIds": 5, "deletedDocuments": null}"#.into();
        let deleted =
            |n: u64| Ok(json!({"status": "succeeded", "details": {"deletedDocuments": n}}));
        // Group 0 deleted 4 documents twice (RF 2); group 1's `d` missed it.
        let views = vec![
            ("a".to_owned(), deleted(3)),
            ("b".to_owned(), deleted(5)),
            ("c".to_owned(), deleted(4)),
        ];
        let mut view = aggregate(&task, &views);
        count_deleted(&mut view, &task, &topology, &views);
        assert_eq!(view["details"]["deletedDocuments"], 4);
        assert_eq!(view["details"]["providedIds"], 5);
        let failed = vec![("a".to_owned(), super::tests::node("failed"))];
        let mut view = aggregate(&task, &failed);
        count_deleted(&mut view, &task, &topology, &failed);
        assert_eq!(view["details"]["deletedDocuments"], 0, "a failed deletion");
    }

    #[tokio::test]
    async fn a_node_no_longer_in_the_fleet_does_not_hold_the_task() {
        let mut task = task();
        task.node_tasks = vec![pb::NodeTask {
            node_id: "gone".into(),
            node_task_uid: 4,
        }];
        let nodes = NodeClient::new(miroir_proto::node_client::NodeClientOptions::new(
            "key",
            std::time::Duration::from_secs(1),
        ))
        .unwrap();
        let view = view(&task, &pb::Topology::default(), &nodes).await;
        assert_eq!(view["status"], "succeeded");
    }

    #[test]
    fn a_dump_names_every_node_dump_and_a_snapshot_has_no_details() {
        let dump = pb::Task {
            uid: 9,
            task_type: "dumpCreation".into(),
            details_json: r#"{"dumpUid": null}"#.into(),
            ..Default::default()
        };
        let done = |uid: &str| {
            let mut view = node("succeeded").unwrap();
            view["details"] = json!({ "dumpUid": uid });
            Ok(view)
        };
        let view = aggregate(
            &dump,
            &[
                ("a".into(), done("20261206-1")),
                ("b".into(), done("20261206-2")),
            ],
        );
        assert_eq!(view["status"], "succeeded");
        assert_eq!(
            view["details"],
            json!({"dumpUid": null, "miroirDumpUids": {"a": "20261206-1", "b": "20261206-2"}})
        );
        let pending = aggregate(&dump, &[("a".into(), node("processing"))]);
        assert_eq!(pending["details"], json!({"dumpUid": null}));
        let snapshot = pb::Task {
            task_type: "snapshotCreation".into(),
            details_json: "{}".into(),
            ..Default::default()
        };
        let view = aggregate(&snapshot, &[("a".into(), node("succeeded"))]);
        assert!(view.get("details").is_none(), "{view}");
    }

    #[test]
    fn node_times_compare_as_times_not_strings() {
        let at = |started: &str, finished: &str| {
            let mut view = node("succeeded").unwrap();
            view["startedAt"] = json!(started);
            view["finishedAt"] = json!(finished);
            Ok(view)
        };
        let view = aggregate(
            &task(),
            &[
                (
                    "a".into(),
                    at("2026-01-01T00:00:01.1Z", "2026-01-01T00:00:02.1Z"),
                ),
                (
                    "b".into(),
                    at("2026-01-01T00:00:01.10001Z", "2026-01-01T00:00:02.10001Z"),
                ),
            ],
        );
        assert_eq!(view["startedAt"], "2026-01-01T00:00:01.1Z");
        assert_eq!(view["finishedAt"], "2026-01-01T00:00:02.10001Z");
    }
}
