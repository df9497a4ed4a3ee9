//! The control plane through gRPC: errors, fleet changes, the store, tasks, metrics.

use crate::fresh_control_plane;
use miroir_integration_tests::{ControlPlane, ControlPlaneOptions, wait_for};
use miroir_proto::pb;
use tonic::Code;

/// Registers a node that nothing answers for: on a privileged loopback port no test
/// listens on (not Meilisearch's 7700, where a developer's own instance may run).
async fn add_node(
    cp: &ControlPlane,
    id: &str,
    port: u16,
    group: u32,
) -> Result<pb::NodeResponse, tonic::Status> {
    cp.add_node(id, &format!("http://127.0.0.1:{port}"), group)
        .await
}

#[tokio::test]
async fn errors_are_grpc_codes_with_messages() {
    let (_dir, cp) = fresh_control_plane().await;
    let mut admin = cp.admin().await;
    let missing = admin
        .get_node(pb::GetNodeRequest { id: "ghost".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains("ghost"), "{}", missing.message());

    for bad in ["127.0.0.1:7700", "ftp://x:1", "http://x:1/path", ""] {
        let status = admin
            .add_node(pb::AddNodeRequest {
                id: "a".into(),
                address: bad.into(),
                group_id: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}: {status:?}");
        assert!(status.message().contains("address"), "{}", status.message());
    }
    let status = admin
        .add_node(pb::AddNodeRequest {
            id: "bad id!".into(),
            address: "http://127.0.0.1:1".into(),
            group_id: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    add_node(&cp, "meili-0", 1, 0).await.unwrap();
    let duplicate = add_node(&cp, "meili-0", 2, 0).await.unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    assert!(duplicate.message().contains("meili-0"));
    let same_address = add_node(&cp, "meili-1", 1, 0).await.unwrap_err();
    assert_eq!(same_address.code(), Code::AlreadyExists);

    let no_group = admin
        .remove_group(pb::RemoveGroupRequest { id: 9 })
        .await
        .unwrap_err();
    assert_eq!(no_group.code(), Code::NotFound);
    let no_index = admin
        .get_index(pb::GetIndexRequest { uid: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(no_index.code(), Code::NotFound);
    // The Miroir error code in the details tells what the gRPC code does not.
    assert_eq!(
        miroir_proto::ErrorCode::of(&no_index),
        miroir_proto::ErrorCode::IndexNotFound
    );
    assert_eq!(
        miroir_proto::ErrorCode::of(&no_group),
        miroir_proto::ErrorCode::NotFound
    );
    assert_eq!(
        miroir_proto::ErrorCode::of(&duplicate),
        miroir_proto::ErrorCode::AlreadyExists
    );
}

#[tokio::test]
async fn fleet_changes_that_would_move_copies_are_refused_while_an_index_exists() {
    let (_dir, cp) = fresh_control_plane().await;
    let mut admin = cp.admin().await;
    for (i, group) in [0u32, 0, 0, 1, 1, 1].iter().enumerate() {
        add_node(&cp, &format!("meili-{i}"), 1 + i as u16, *group)
            .await
            .unwrap();
    }
    let index = cp.create_index("movies", 16, 2).await.unwrap();
    assert_eq!(index.routing.len(), 2);
    for routing in &index.routing {
        assert_eq!(routing.shards.len(), 16);
        for (shard, route) in routing.shards.iter().enumerate() {
            assert_eq!(route.shard as usize, shard);
            assert_eq!(route.read_nodes.len(), 2);
            assert_eq!(route.read_nodes, route.write_nodes);
            assert!(!route.blocked);
        }
    }

    // With an index, a node holding copies must be drained first, a new group comes
    // with its nodes, and a node joins only an existing group.
    let status = admin
        .remove_node(pb::RemoveNodeRequest {
            id: "meili-0".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("drain it first"),
        "{}",
        status.message()
    );
    let status = admin
        .add_group(pb::AddGroupRequest {
            id: None,
            nodes: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let status = add_node(&cp, "meili-9", 7799, 7).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("does not exist"),
        "{}",
        status.message()
    );
    let version_before = cp.status().await.topology_version;

    // Group 1 holds every shard too, so group 0 can go, with its nodes.
    let removed = admin
        .remove_group(pb::RemoveGroupRequest { id: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.nodes.len(), 3);
    assert_eq!(removed.topology_version, version_before + 1);
    let index = admin
        .get_index(pb::GetIndexRequest {
            uid: "movies".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .index
        .unwrap();
    assert_eq!(
        index.routing.iter().map(|r| r.group_id).collect::<Vec<_>>(),
        vec![1]
    );
    // The last group holding the index cannot go.
    let status = admin
        .remove_group(pb::RemoveGroupRequest { id: 1 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    // Without indexes, everything can be taken apart, down to the last node.
    admin
        .delete_index(pb::DeleteIndexRequest {
            uid: "movies".into(),
        })
        .await
        .unwrap();
    admin
        .drain_node(pb::DrainNodeRequest {
            id: "meili-3".into(),
        })
        .await
        .unwrap();
    let node = admin
        .remove_node(pb::RemoveNodeRequest {
            id: "meili-3".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap();
    assert_eq!(node.state, pb::NodeState::Removed as i32);
    admin
        .remove_node(pb::RemoveNodeRequest {
            id: "meili-4".into(),
        })
        .await
        .unwrap();
    admin
        .remove_node(pb::RemoveNodeRequest {
            id: "meili-5".into(),
        })
        .await
        .unwrap();
    let status = cp.status().await;
    assert!(status.nodes.is_empty());
    assert_eq!(status.groups.len(), 1);
    admin
        .remove_group(pb::RemoveGroupRequest { id: 1 })
        .await
        .unwrap();
}

#[tokio::test]
async fn the_store_survives_restarts_and_admits_one_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/state/miroir.db", dir.path().display());
    let options = ControlPlaneOptions::default();
    let mut cp = ControlPlane::start(dir.path(), &store, &options).await;
    for i in 0..3u16 {
        add_node(&cp, &format!("meili-{i}"), 1 + i, 0)
            .await
            .unwrap();
    }
    cp.create_index("books", 8, 1).await.unwrap();
    // Creating an index queues its hidden settings, which the leader proposes a moment
    // later in a version of its own (it stays pending: these nodes never answer). The
    // state to compare across the restart is the one after that.
    let before = miroir_integration_tests::wait_for(
        "the index's hidden settings to be proposed",
        std::time::Duration::from_secs(10),
        || async {
            let topology = cp.current_topology().await;
            topology
                .indexes
                .iter()
                .any(|i| i.uid == "books" && i.pending_settings.is_some())
                .then_some(topology)
        },
    )
    .await;
    let token_before = cp
        .admin()
        .await
        .get_leader(pb::GetLeaderRequest {})
        .await
        .unwrap()
        .into_inner()
        .fencing_token;

    // A second control plane on the same file refuses to start, and says why.
    let (status, log) = ControlPlane::run_to_exit(dir.path(), &store, &options).await;
    assert!(!status.success());
    assert!(
        log.contains("another control plane is already using the store"),
        "{log}"
    );

    cp.kill().await;
    let cp = ControlPlane::start(dir.path(), &store, &options).await;
    let after = cp.current_topology().await;
    assert_eq!(after, before, "restart keeps the topology exactly");
    let leader = cp
        .admin()
        .await
        .get_leader(pb::GetLeaderRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(leader.is_self);
    assert_eq!(
        leader.fencing_token,
        token_before + 1,
        "a new term fences the old process"
    );
    // And it keeps committing after the restart.
    let node = add_node(&cp, "meili-x", 7799, 1).await.unwrap_err();
    assert_eq!(node.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn tasks_get_fleet_wide_uids() {
    let (_dir, cp) = fresh_control_plane().await;
    let mut tasks = cp.tasks().await;
    let mut uids = Vec::new();
    for i in 0..5u64 {
        let task = tasks
            .create_task(pb::CreateTaskRequest {
                index_uid: Some(
                    if i.is_multiple_of(2) {
                        "movies"
                    } else {
                        "books"
                    }
                    .into(),
                ),
                task_type: "documentAdditionOrUpdate".into(),
                node_tasks: vec![pb::NodeTask {
                    node_id: "meili-0".into(),
                    node_task_uid: 100 + i,
                }],
                details_json: format!(r#"{{"receivedDocuments":{i}}}"#),
                enqueued_at_ms: 1_700_000_000_000 + i,
                error_json: String::new(),
                cancels: Vec::new(),
                custom_metadata: None,
                reserve: false,
            })
            .await
            .unwrap()
            .into_inner();
        uids.push(task.uid);
    }
    assert_eq!(uids, vec![0, 1, 2, 3, 4]);
    let task = tasks
        .get_task(pb::GetTaskRequest { uid: 3 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(task.index_uid.as_deref(), Some("books"));
    assert_eq!(task.node_tasks[0].node_task_uid, 103);
    assert_eq!(
        tasks
            .get_task(pb::GetTaskRequest { uid: 99 })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    let page = tasks
        .list_tasks(pb::ListTasksRequest {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.tasks.iter().map(|t| t.uid).collect::<Vec<_>>(),
        vec![4, 3]
    );
    assert_eq!(page.next, Some(2));
    let page = tasks
        .list_tasks(pb::ListTasksRequest {
            limit: 2,
            from: page.next,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.tasks.iter().map(|t| t.uid).collect::<Vec<_>>(),
        vec![2, 1]
    );
    let movies = tasks
        .list_tasks(pb::ListTasksRequest {
            index_uids: vec!["movies".into()],
            reverse: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        movies.tasks.iter().map(|t| t.uid).collect::<Vec<_>>(),
        vec![0, 2, 4]
    );
    assert_eq!(movies.next, None);

    // Recorded outcomes: a status filter keeps the finished tasks in that status and the
    // tasks with no outcome yet, and counts the latter apart.
    for (uid, status) in [(1, "succeeded"), (2, "failed"), (3, "succeeded")] {
        let recorded = tasks
            .record_task_outcome(pb::RecordTaskOutcomeRequest {
                uid,
                outcome_json: serde_json::json!({"uid": uid, "status": status}).to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(recorded.recorded);
    }
    let succeeded = tasks
        .list_tasks(pb::ListTasksRequest {
            statuses: vec!["succeeded".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        succeeded.tasks.iter().map(|t| t.uid).collect::<Vec<_>>(),
        vec![4, 3, 1, 0]
    );
    assert_eq!((succeeded.total, succeeded.unrecorded), (4, 2));
    assert!(succeeded.tasks[1].outcome_json.contains("succeeded"));
    let unrecorded = tasks
        .list_tasks(pb::ListTasksRequest {
            statuses: vec!["failed".into(), "canceled".into()],
            unrecorded_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        unrecorded.tasks.iter().map(|t| t.uid).collect::<Vec<_>>(),
        vec![4, 0]
    );

    let bad = tasks
        .create_task(pb::CreateTaskRequest {
            task_type: "x".into(),
            details_json: "{".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn metrics_are_served_on_their_own_port() {
    let (_dir, cp) = fresh_control_plane().await;
    add_node(&cp, "meili-0", 1, 0).await.unwrap();
    let body = cp.metrics_text().await;
    for metric in [
        "miroir_topology_version 2",
        "miroir_store_operation_duration_seconds_count{operation=\"commit_topology\"}",
        "miroir_grpc_requests_total{method=\"/miroir.v1.AdminService/AddNode\",code=\"Ok\"} 1",
        "miroir_nodes{state=\"joining\"} 1",
        "miroir_control_plane_is_leader 1",
    ] {
        assert!(body.contains(metric), "missing {metric} in:\n{body}");
    }
}

/// Issue 21, 2c: as Meilisearch, a master key shorter than 16 bytes is refused in
/// production only; in development (the default) it starts, with a warning. The official
/// SDKs' own test suites use `masterKey`.
#[tokio::test]
async fn short_master_keys_are_refused_in_production_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sqlite://{}/miroir.db", dir.path().display());
    let short = ControlPlaneOptions {
        master_key: "masterKey".into(),
        ..ControlPlaneOptions::default()
    };
    let mut production = short.clone();
    production
        .env
        .push(("MIROIR_ENV".into(), "production".into()));
    let (status, log) = ControlPlane::run_to_exit(dir.path(), &store, &production).await;
    assert!(!status.success(), "{log}");
    assert!(log.contains("must be at least 16 bytes"), "{log}");
    let mut cp = ControlPlane::start(dir.path(), &store, &short).await;
    let log = std::fs::read_to_string(&cp.log).expect("log");
    assert!(log.contains("fine in development"), "{log}");
    cp.kill().await;
}

/// A reserved write task gets its node tasks once; one nobody attaches fails after
/// `--task-reservation-timeout`, and attaching it later changes nothing.
#[tokio::test]
async fn reserved_tasks_are_attached_once_or_fail_after_their_timeout() {
    let mut options = miroir_integration_tests::ControlPlaneOptions::default();
    options
        .extra_args
        .extend(["--task-reservation-timeout", "1s"].map(String::from));
    let (_dir, cp) = crate::fresh_control_plane_with(options).await;
    let mut tasks = cp.tasks().await;
    let reserve = || pb::CreateTaskRequest {
        index_uid: Some("movies".into()),
        task_type: "documentAdditionOrUpdate".into(),
        enqueued_at_ms: miroir_proto::time::now_ms(),
        reserve: true,
        ..Default::default()
    };
    let attached = tasks.create_task(reserve()).await.unwrap().into_inner();
    let abandoned = tasks.create_task(reserve()).await.unwrap().into_inner();
    assert_eq!(attached.status.as_deref(), Some("reserved"));
    assert!(attached.node_tasks.is_empty());
    let node_tasks = vec![pb::NodeTask {
        node_id: "meili-0".into(),
        node_task_uid: 7,
    }];
    let attach = |uid: u32| pb::AttachNodeTasksRequest {
        uid,
        node_tasks: node_tasks.clone(),
        error_json: String::new(),
    };
    let task = tasks
        .attach_node_tasks(attach(attached.uid))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((task.status, &task.node_tasks), (None, &node_tasks));
    // Again: answered as it is.
    let again = tasks
        .attach_node_tasks(attach(attached.uid))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.node_tasks, node_tasks);

    let expired = wait_for(
        "the abandoned reservation to fail",
        std::time::Duration::from_secs(20),
        || {
            let mut tasks = tasks.clone();
            async move {
                let task = tasks
                    .get_task(pb::GetTaskRequest { uid: abandoned.uid })
                    .await
                    .ok()?
                    .into_inner();
                (task.status.as_deref() == Some("failed")).then_some(task)
            }
        },
    )
    .await;
    assert!(
        expired.error_json.contains("miroir_task_unattached"),
        "{expired:?}"
    );
    let late = tasks
        .attach_node_tasks(attach(abandoned.uid))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late.status.as_deref(), Some("failed"));
    assert!(late.node_tasks.is_empty());
    // The attached one never expires.
    let kept = tasks
        .get_task(pb::GetTaskRequest { uid: attached.uid })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((kept.status, &kept.node_tasks), (None, &node_tasks));
    let missing = tasks.attach_node_tasks(attach(999)).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}
