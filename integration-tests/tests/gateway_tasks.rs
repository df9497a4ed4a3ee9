//! Task routes through the gateway: cancelation, deletion and every filter.

use crate::gateway_indexes::{fleet, test_node_fleet};
use miroir_integration_tests::Meili;
use miroir_proto::pb::NodeState;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn tasks_are_canceled_deleted_and_filtered() {
    // Test nodes: a task is held enqueued (an injected delay) to be canceled.
    let (_dir, _cp, nodes, gateway) = test_node_fleet(2).await;
    let meili = Meili::new(&gateway.url);
    meili.create_index("t").await;
    let done = meili
        .ok(Method::POST, "/indexes/t/documents", json!([{"id": 1}]))
        .await;
    let a = done["uid"].as_u64().unwrap();

    // Keep the next write enqueued on the nodes so it can be canceled.
    for node in &nodes {
        node.set_faults(json!({"taskDelayMs": 5000})).await;
    }
    let (status, pending) = meili.post("/indexes/t/documents", json!([{"id": 2}])).await;
    assert_eq!(status, 202);
    let b = pending["taskUid"].as_u64().unwrap();

    let (status, error) = meili.post("/tasks/cancel", json!(null)).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("missing_task_filters"))
    );
    let (status, error) = meili.post("/tasks/cancel?limit=3", json!(null)).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("bad_request")),
        "{error}"
    );

    let (status, cancelation) = meili
        .post(&format!("/tasks/cancel?uids={b},{a}"), json!(null))
        .await;
    assert_eq!(status, 200, "{cancelation}");
    assert_eq!(
        (cancelation["type"].as_str(), &cancelation["indexUid"]),
        (Some("taskCancelation"), &json!(null))
    );
    let c = cancelation["taskUid"].as_u64().unwrap();
    let finished = meili.wait_task(&cancelation).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(
        finished["details"],
        json!({"matchedTasks": 2, "canceledTasks": 1, "originalFilter": format!("?uids={b},{a}")})
    );
    let canceled = meili.wait_task(&pending).await;
    assert_eq!(
        (canceled["status"].as_str(), canceled["canceledBy"].as_u64()),
        (Some("canceled"), Some(c)),
        "{canceled}"
    );
    let (_, by) = meili.get(&format!("/tasks?canceledBy={c}")).await;
    assert_eq!(by["results"].as_array().unwrap().len(), 1, "{by}");
    assert_eq!(by["results"][0]["uid"].as_u64(), Some(b));
    for node in &nodes {
        node.set_faults(json!({})).await;
    }
    let (_, document) = meili.get("/indexes/t/documents/2").await;
    assert_eq!(
        document["code"], "document_not_found",
        "the canceled write never landed"
    );

    // Date filters: strictly after / before, on enqueue, start and finish times.
    let (_, first) = meili.get(&format!("/tasks/{a}")).await;
    let enqueued = first["enqueuedAt"].as_str().unwrap().to_owned();
    let uids = |page: &serde_json::Value| -> Vec<u64> {
        page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["uid"].as_u64().unwrap())
            .collect()
    };
    let (_, after) = meili
        .get(&format!("/tasks?afterEnqueuedAt={enqueued}"))
        .await;
    assert!(
        !uids(&after).contains(&a) && uids(&after).contains(&b),
        "{after}"
    );
    let (_, before) = meili
        .get(&format!(
            "/tasks?beforeEnqueuedAt={enqueued}&types=documentAdditionOrUpdate,indexCreation"
        ))
        .await;
    assert!(
        !uids(&before).contains(&a) && !uids(&before).contains(&b),
        "{before}"
    );
    assert_eq!(before["results"][0]["type"], "indexCreation");
    let (_, finished_since) = meili
        .get("/tasks?afterFinishedAt=2000-01-01&statuses=succeeded,canceled")
        .await;
    assert!(uids(&finished_since).contains(&a) && uids(&finished_since).contains(&b));
    let (_, none) = meili.get("/tasks?beforeStartedAt=2000-01-01").await;
    assert_eq!(none["total"], 0, "{none}");
    let (status, error) = meili.get("/tasks?afterEnqueuedAt=tomorrow").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_task_after_enqueued_at"))
    );

    // Deletion forgets finished tasks only.
    let (status, deletion) = meili.delete(&format!("/tasks?uids={a},{b},{c}")).await;
    assert_eq!(status, 200, "{deletion}");
    let deleted = meili.wait_task(&deletion).await;
    assert_eq!(deleted["type"], "taskDeletion");
    assert_eq!(deleted["details"]["matchedTasks"], 3);
    assert_eq!(deleted["details"]["deletedTasks"], 3);
    for uid in [a, b, c] {
        let (status, error) = meili.get(&format!("/tasks/{uid}")).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (404, Some("task_not_found"))
        );
    }
    let (status, error) = meili.delete("/tasks").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("missing_task_filters"))
    );
}

/// A node that fails after taking its part of a write does not hold the client's task
/// when live nodes of the other group did the same write (the failed node is repaired from
/// them); where no other copy exists, the task waits for the node.
#[tokio::test]
async fn a_failed_node_holds_a_task_only_if_nothing_else_has_its_part() {
    for (groups, covered) in [(&[0, 1][..], true), (&[0, 0][..], false)] {
        // Test nodes: meili-0 holds its part of a write (an injected delay).
        let (_dir, cp, mut nodes, gateway) =
            crate::gateway_indexes::test_node_fleet_in_groups(groups, Default::default()).await;
        let meili = Meili::new(&gateway.url);
        meili.create_index("f").await;
        // meili-0 takes its part of the next write and sits on it, then fails.
        nodes[0].set_faults(json!({"taskDelayMs": 600_000})).await;
        let documents: Vec<_> = (0..40).map(|id| json!({ "id": id })).collect();
        let (status, pending) = meili.post("/indexes/f/documents", json!(documents)).await;
        assert_eq!(status, 202, "{pending}");
        let uid = pending["taskUid"].as_u64().unwrap();
        nodes[0].kill().await;
        cp.wait_node_state("meili-0", NodeState::Failed).await;
        gateway
            .wait_version(cp.current_topology().await.version)
            .await;
        if covered {
            let done = meili.wait_task(&pending).await;
            assert_eq!(done["status"], "succeeded", "{groups:?}: {done}");
            assert_eq!(done["details"]["indexedDocuments"], 40, "{done}");
        } else {
            // meili-1 finishes its own part; meili-0's shards have no other copy.
            let node = Meili::new(&nodes[1].url);
            miroir_integration_tests::wait_for(
                "meili-1 to index its part",
                std::time::Duration::from_secs(30),
                || async {
                    let (_, done) = node
                        .get("/tasks?types=documentAdditionOrUpdate&statuses=succeeded")
                        .await;
                    (done["total"].as_u64() == Some(1)).then_some(())
                },
            )
            .await;
            gateway
                .wait_version(cp.current_topology().await.version)
                .await;
            let (_, task) = meili.get(&format!("/tasks/{uid}")).await;
            assert!(
                matches!(task["status"].as_str(), Some("enqueued" | "processing")),
                "{groups:?}: {task}"
            );
        }
    }
}

/// A task seen finished has its outcome recorded by the control plane: later reads are
/// answered from it, the same, even while a node that ran part of it cannot be reached
/// (asking the nodes would then say `processing`).
#[tokio::test]
async fn a_finished_task_is_answered_from_its_recorded_outcome() {
    // Test nodes: meili-1 holds a write (an injected delay).
    let (_dir, cp, mut nodes, gateway) = test_node_fleet(2).await;
    let meili = Meili::new(&gateway.url);
    meili.create_index("o").await;
    let documents: Vec<_> = (0..40).map(|id| json!({ "id": id })).collect();
    let (status, pending) = meili.post("/indexes/o/documents", json!(documents)).await;
    assert_eq!(status, 202, "{pending}");
    let done = meili.wait_task(&pending).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let uid = pending["taskUid"].as_u64().unwrap() as u32;
    let mut tasks = cp.tasks().await;
    let recorded = miroir_integration_tests::wait_for(
        "the task's outcome to be recorded",
        std::time::Duration::from_secs(10),
        || {
            let mut tasks = tasks.clone();
            async move {
                let task = tasks
                    .get_task(miroir_proto::pb::GetTaskRequest { uid })
                    .await
                    .ok()?
                    .into_inner();
                (!task.outcome_json.is_empty()).then_some(task.outcome_json)
            }
        },
    )
    .await;
    let recorded: serde_json::Value = serde_json::from_str(&recorded).unwrap();
    assert_eq!(recorded, done);
    // A second outcome never replaces the first.
    let again = tasks
        .record_task_outcome(miroir_proto::pb::RecordTaskOutcomeRequest {
            uid,
            outcome_json: json!({"uid": uid, "status": "failed"}).to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.recorded);
    // Only a finished view is an outcome.
    let refused = tasks
        .record_task_outcome(miroir_proto::pb::RecordTaskOutcomeRequest {
            uid,
            outcome_json: json!({"uid": uid, "status": "processing"}).to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    // A status filter counts finished tasks from their outcomes and the others from
    // their nodes: here a write meili-1 sits on.
    nodes[1].set_faults(json!({"taskDelayMs": 600_000})).await;
    let (status, held) = meili.post("/indexes/o/documents", json!(documents)).await;
    assert_eq!(status, 202, "{held}");
    let (_, succeeded) = meili.get("/tasks?statuses=succeeded").await;
    assert_eq!(succeeded["total"], 2, "{succeeded}");
    let uids: Vec<_> = succeeded["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["uid"].as_u64().unwrap())
        .collect();
    assert_eq!(uids, [u64::from(uid), u64::from(uid) - 1], "{succeeded}");
    let (_, pending) = meili.get("/tasks?statuses=enqueued,processing").await;
    assert_eq!(pending["total"], 1, "{pending}");
    assert_eq!(pending["results"][0]["uid"], held["taskUid"], "{pending}");

    // Each started task is a batch of its own, with the task's uid.
    let (status, batches) = meili.get("/batches?statuses=succeeded").await;
    assert_eq!(status, 200, "{batches}");
    assert_eq!(batches["total"], 2, "{batches}");
    let batch = &batches["results"][0];
    assert_eq!(batch["uid"], uid, "{batches}");
    assert_eq!(
        batch["stats"],
        json!({"totalNbTasks": 1, "status": {"succeeded": 1},
            "types": {"documentAdditionOrUpdate": 1}, "indexUids": {"o": 1},
            "progressTrace": {}}),
        "{batch}"
    );
    assert_eq!(batch["details"], done["details"], "{batch}");
    assert_eq!(batch["finishedAt"], done["finishedAt"], "{batch}");
    let (status, one) = meili.get(&format!("/batches/{uid}")).await;
    assert_eq!((status, &one), (200, batch));
    let (_, none) = meili.get("/batches?statuses=enqueued").await;
    assert_eq!(none["results"], json!([]), "{none}");
    for (path, code, status) in [
        ("/batches/x", "invalid_batch_uids", 400),
        ("/batches/4000", "batch_not_found", 404),
    ] {
        let (got, error) = meili.get(path).await;
        assert_eq!(
            (got, &error["code"]),
            (status, &json!(code)),
            "{path}: {error}"
        );
    }

    nodes[0].kill().await;
    let (status, read) = meili.get(&format!("/tasks/{uid}")).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read, done);
    let (_, listed) = meili
        .get("/tasks?statuses=succeeded&types=documentAdditionOrUpdate")
        .await;
    assert_eq!(listed["results"][0], done, "{listed}");
}

/// Tasks no client reads get their outcome recorded all the same, by the gateways' sweep:
/// the control plane then holds every finished task's status, whatever later happens to
/// the node tasks behind it.
#[tokio::test]
async fn finished_tasks_nobody_reads_are_recorded_by_the_sweep() {
    let (_dir, cp, _nodes, gateway) =
        crate::gateway_indexes::fleet_with_gateway(2, &["--task-sweep-interval", "200ms"]).await;
    let meili = Meili::new(&gateway.url);
    // Writes only: no task is read through a gateway.
    let (status, _) = meili
        .post("/indexes", json!({"uid": "s", "primaryKey": "id"}))
        .await;
    assert_eq!(status, 202);
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    for batch in 0..5 {
        let documents: Vec<_> = (0..20).map(|i| json!({ "id": batch * 20 + i })).collect();
        let (status, _) = meili.post("/indexes/s/documents", json!(documents)).await;
        assert_eq!(status, 202);
    }
    let tasks = cp.tasks().await;
    let recorded = miroir_integration_tests::wait_for(
        "every task's outcome to be recorded",
        std::time::Duration::from_secs(20),
        || {
            let mut tasks = tasks.clone();
            async move {
                let list = |unrecorded_only| miroir_proto::pb::ListTasksRequest {
                    limit: 100,
                    unrecorded_only,
                    ..Default::default()
                };
                let open = tasks.list_tasks(list(true)).await.ok()?.into_inner();
                if open.total > 0 {
                    return None;
                }
                Some(tasks.list_tasks(list(false)).await.ok()?.into_inner().tasks)
            }
        },
    )
    .await;
    assert_eq!(recorded.len(), 6, "index creation and five writes");
    for task in recorded {
        let outcome: serde_json::Value = serde_json::from_str(&task.outcome_json).unwrap();
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
        assert_eq!(outcome["uid"], task.uid, "{outcome}");
    }
}

/// Start and finish date filters are applied by the control plane to recorded outcomes,
/// so `total` and paging are exact however many tasks there are (the gateway used to
/// scan the newest 1000 and count among them only).
#[tokio::test]
async fn date_filters_count_every_recorded_task() {
    let (_dir, cp, _nodes, gateway) = fleet(1).await;
    let meili = Meili::new(&gateway.url);
    let mut tasks = cp.tasks().await;
    let t0: u64 = 1_800_000_000_000;
    let mut uids = Vec::new();
    for i in 0..1010u64 {
        let task = tasks
            .create_task(miroir_proto::pb::CreateTaskRequest {
                task_type: "dumpCreation".into(),
                enqueued_at_ms: t0 + i * 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        // Two outcomes without times (as recorded before times were kept): the gateway
        // checks those itself.
        let outcome = if i < 2 {
            json!({"uid": task.uid, "status": "canceled"})
        } else {
            json!({
                "uid": task.uid,
                "status": "canceled",
                "startedAt": miroir_proto::time::rfc3339_ms(t0 + i * 1000 + 100),
                "finishedAt": miroir_proto::time::rfc3339_ms(t0 + i * 1000 + 500),
            })
        };
        tasks
            .record_task_outcome(miroir_proto::pb::RecordTaskOutcomeRequest {
                uid: task.uid,
                outcome_json: outcome.to_string(),
            })
            .await
            .unwrap();
        uids.push(task.uid as u64);
    }
    let at = |i: u64, ms: u64| miroir_proto::time::rfc3339_ms(t0 + i * 1000 + ms);
    // Finished strictly after task 5's finish: tasks 6..1009.
    let (status, page) = meili
        .get(&format!("/tasks?afterFinishedAt={}&limit=3", at(5, 500)))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 1004, "{page}");
    let listed: Vec<u64> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["uid"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, vec![uids[1009], uids[1008], uids[1007]]);
    // Started before task 10 started: tasks 2..9 (0 and 1 have no times).
    let (_, page) = meili
        .get(&format!("/tasks?beforeStartedAt={}&limit=20", at(10, 100)))
        .await;
    assert_eq!(page["total"], 8, "{page}");
    assert_eq!(page["results"].as_array().unwrap().len(), 8, "{page}");
    assert_eq!(page["results"][0]["uid"], uids[9], "{page}");
    // Both windows and a status, paged to the end.
    let (_, page) = meili
        .get(&format!(
            "/tasks?statuses=canceled&afterStartedAt={}&beforeFinishedAt={}&limit=2&from={}",
            at(1000, 0),
            at(1005, 0),
            uids[1009]
        ))
        .await;
    assert_eq!(page["total"], 5, "{page}");
    assert_eq!(page["results"][0]["uid"], uids[1004], "{page}");
    assert_eq!(page["next"], uids[1002], "{page}");
    // One cancelation of them all: `canceledBy` and its `canceledTasks` count every one.
    let cancelation = tasks
        .create_task(miroir_proto::pb::CreateTaskRequest {
            task_type: "taskCancelation".into(),
            enqueued_at_ms: t0 + 2_000_000,
            cancels: uids.iter().map(|u| *u as u32).collect(),
            custom_metadata: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    tasks
        .record_task_outcome(miroir_proto::pb::RecordTaskOutcomeRequest {
            uid: cancelation.uid,
            outcome_json: json!({"uid": cancelation.uid, "status": "succeeded", "details": {"canceledTasks": null}}).to_string(),
        })
        .await
        .unwrap();
    let (_, page) = meili
        .get(&format!("/tasks?canceledBy={}&limit=2", cancelation.uid))
        .await;
    assert_eq!(page["total"], 1010, "{page}");
    assert_eq!(page["results"][0]["canceledBy"], cancelation.uid, "{page}");
    let (_, view) = meili.get(&format!("/tasks/{}", cancelation.uid)).await;
    assert_eq!(view["details"]["canceledTasks"], 1010, "{view}");
}

/// Issue 21, point 3: tasks and batches through the gateway carry every field one real
/// node's do (the SDKs' models read them), for each kind of task.
#[tokio::test]
async fn tasks_and_batches_carry_every_field_a_node_shows() {
    if !miroir_integration_tests::real_meilisearch(
        "tasks_and_batches_carry_every_field_a_node_shows",
    ) {
        return;
    }
    let (_dir, cp, _nodes, gateway) = fleet(2).await;
    let single = miroir_integration_tests::TestNode::start().await;
    let (meili, reference) = (Meili::new(&gateway.url), Meili::new(&single.url));
    // Miroir's own members (`miroirDumpUids`, documented) are extra, never missing ones.
    let keys = |value: &serde_json::Value| -> Vec<String> {
        value.as_object().map_or_else(Vec::new, |o| {
            o.keys()
                .filter(|k| !k.starts_with("miroir"))
                .cloned()
                .collect()
        })
    };
    let mut seen = Vec::new();
    for target in [&meili, &reference] {
        let mut tasks = vec![target.create_index("k").await];
        if target.url == meili.url {
            gateway
                .wait_version(cp.current_topology().await.version)
                .await;
        }
        target.create_index("other").await;
        for (method, path, body) in [
            (
                Method::POST,
                "/indexes/k/documents?customMetadata=m",
                json!([{"id": 1}]),
            ),
            (
                Method::PATCH,
                "/indexes/k/settings",
                json!({"stopWords": ["a"]}),
            ),
            (Method::PATCH, "/indexes/k", json!({"primaryKey": "id"})),
            (
                Method::POST,
                "/swap-indexes",
                json!([{"indexes": ["k", "other"]}]),
            ),
            (
                Method::POST,
                "/indexes/k/documents/delete-batch",
                json!([1]),
            ),
            (Method::POST, "/dumps", serde_json::Value::Null),
            (Method::POST, "/snapshots", serde_json::Value::Null),
            (Method::DELETE, "/indexes/other", serde_json::Value::Null),
        ] {
            let (status, enqueued) = if body.is_null() {
                target.send(method.clone(), path, None, None).await
            } else {
                target.json(method.clone(), path, body).await
            };
            assert_eq!(status, 202, "{path}: {enqueued}");
            tasks.push(target.wait_task(&enqueued).await);
        }
        let mut fields = Vec::new();
        for task in &tasks {
            let (_, batch) = target.get(&format!("/batches/{}", task["batchUid"])).await;
            fields.push(json!({
                "type": task["type"],
                "task": keys(task),
                "details": keys(&task["details"]),
                "batch": keys(&batch),
                // What one node's database did (its write channel, its table sizes) has no
                // fleet-wide meaning: Miroir leaves these out (docs/api-compatibility.md).
                "stats": keys(&batch["stats"])
                    .into_iter()
                    .filter(|k| !matches!(k.as_str(), "writeChannelCongestion" | "internalDatabaseSizes"))
                    .collect::<Vec<_>>(),
            }));
        }
        let (_, list) = target.get("/tasks?limit=2").await;
        let (_, batches) = target.get("/batches?limit=2").await;
        fields.push(json!({"tasks": keys(&list), "batches": keys(&batches)}));
        seen.push(fields);
    }
    for (through, one) in seen[0].iter().zip(&seen[1]) {
        assert_eq!(through, one);
    }
}

/// A write's task is recorded before its nodes are written: when the control plane stops
/// answering while the nodes take the write, the client still gets its task, which the
/// gateway completes once the control plane is back (before, the client got an error for
/// a write that was applied, and no task to follow).
#[tokio::test]
async fn a_write_the_nodes_took_has_a_task_even_when_the_control_plane_stalls() {
    // Test node: its write is slowed (injected latency) to give the control plane time
    // to stall between the reservation and the record of the node tasks.
    let (_dir, cp, nodes, gateway) = crate::gateway_indexes::fleet_in_groups_with(
        &[0],
        miroir_integration_tests::ControlPlaneOptions::default(),
        &["--control-plane-timeout", "1s"],
        miroir_integration_tests::NodeKind::TestNode,
    )
    .await;
    let meili = Meili::new(&gateway.url);
    meili.create_index("stall").await;
    nodes[0].set_faults(json!({"latencyMs": 2000})).await;
    let pid = cp.pid().expect("pid").to_string();
    let signal = |name: &'static str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    let url = gateway.url.clone();
    let write = tokio::spawn(async move {
        Meili::new(&url)
            .json(
                Method::POST,
                "/indexes/stall/documents",
                json!([{"id": 1, "title": "kept"}]),
            )
            .await
    });
    // The reservation is made at once; the node answers after 2 s, by when the control
    // plane is stopped.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    signal("-STOP");
    let (status, enqueued) = write.await.expect("write task");
    signal("-CONT");
    assert_eq!(status, 202, "{enqueued}");
    nodes[0].set_faults(json!({"latencyMs": 0})).await;
    let uid = enqueued["taskUid"].as_u64().expect("task uid");
    let mut task = serde_json::Value::Null;
    for _ in 0..300 {
        task = meili.get(&format!("/tasks/{uid}")).await.1;
        if task["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        task["status"],
        "succeeded",
        "{task}\ngateway log:\n{}\ncontrol plane log:\n{}",
        std::fs::read_to_string(&gateway.log).unwrap_or_default(),
        std::fs::read_to_string(&cp.log).unwrap_or_default()
    );
    // The slowed node may have been marked failed meanwhile (its health checks waited
    // 2 s too, and the gateway reports a node that answers nothing): read the document
    // once it is active again where the gateway routes.
    let version = cp
        .wait_node_state("meili-0", miroir_proto::pb::NodeState::Active)
        .await;
    gateway.wait_version(version).await;
    let (status, document) = meili.get("/indexes/stall/documents/1").await;
    assert_eq!(
        (status, &document["title"]),
        (200, &json!("kept")),
        "{document}"
    );
}
