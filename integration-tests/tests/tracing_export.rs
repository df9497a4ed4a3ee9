//! OTLP trace export: with OTEL_EXPORTER_OTLP_ENDPOINT set, the gateways and control
//! planes export their spans to a real OTLP/gRPC receiver process (`miroir-otlp-receiver`),
//! each a child of its caller's W3C `traceparent`: a client's search, the gateway's node
//! calls and the control plane's part form one trace.

use crate::fresh_control_plane_with;
use miroir_integration_tests::{
    ControlPlaneOptions, Gateway, MASTER_KEY, Meili, OtlpReceiver, ReceivedSpan, wait_for,
};
use miroir_proto::pb;
use reqwest::Method;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

/// Flags and environment that send a process's spans to `receiver` within 100 ms.
fn exporting_to(receiver: &OtlpReceiver, options: &mut ControlPlaneOptions) {
    options.env.push((
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        receiver.endpoint.clone(),
    ));
    options
        .env
        .push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
}

/// The spans of one trace, by span id.
fn trace(receiver: &OtlpReceiver, trace_id: &str) -> HashMap<String, ReceivedSpan> {
    receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == trace_id)
        .map(|s| (s.span_id.clone(), s))
        .collect()
}

/// Whether `span` descends from `ancestor` through spans of the trace.
fn descends(spans: &HashMap<String, ReceivedSpan>, span: &ReceivedSpan, ancestor: &str) -> bool {
    let mut parent = span.parent_span_id.as_str();
    for _ in 0..spans.len() {
        if parent == ancestor {
            return true;
        }
        match spans.get(parent) {
            Some(next) => parent = next.parent_span_id.as_str(),
            None => return false,
        }
    }
    false
}

/// The trace as an indented tree, for the test's output (docs/operations.md shows one).
fn tree(spans: &HashMap<String, ReceivedSpan>, root: &str, depth: usize, out: &mut String) {
    let mut children: Vec<&ReceivedSpan> = spans
        .values()
        .filter(|s| s.parent_span_id == root)
        .collect();
    children.sort_by(|a, b| a.name.cmp(&b.name));
    for span in children {
        let node = span.attributes.get("node").and_then(|n| n.as_str());
        out.push_str(&format!(
            "{}{} [{}]{}\n",
            "  ".repeat(depth),
            span.name,
            span.service.as_deref().unwrap_or("?"),
            node.map(|n| format!(" node={n}")).unwrap_or_default()
        ));
        tree(spans, &span.span_id, depth + 1, out);
    }
}

#[tokio::test]
async fn a_search_is_one_trace_from_the_client_to_the_nodes_and_the_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = OtlpReceiver::start(dir.path()).await;
    let mut options = ControlPlaneOptions::default();
    exporting_to(&receiver, &mut options);
    // Only the gateway's report may mark the killed node failed, not periodic checks.
    options
        .extra_args
        .extend(["--health-failures", "1000"].map(String::from));
    // One node in each of two groups: a search asks one copy of each shard, and asks
    // the other group when that copy's node fails.
    let (fleet_dir, cp, mut nodes, _plain_gateway) =
        crate::gateway_indexes::fleet_in_groups(&[0, 1], options.clone()).await;
    let env: Vec<(&str, &str)> = options
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Copies taken in turn: within two searches one asks the killed node. (Choosing by
    // load, a gateway that found meili-0 the slower never asks it: under CPU load, 3 runs
    // of 8 sent all ten searches to meili-1, and no trace reached the control plane.)
    let gateway = Gateway::start_with_env(
        fleet_dir.path(),
        &cp.url(),
        &["--replica-selection", "round-robin"],
        &env,
    )
    .await;
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    let meili = Meili::new(&gateway.url);
    meili
        .ok(
            Method::POST,
            "/indexes",
            json!({"uid": "movies", "primaryKey": "id", "miroirShardCount": 4}),
        )
        .await;
    let documents: Vec<_> = (0..100)
        .map(|i| json!({"id": i, "title": format!("movie {i}")}))
        .collect();
    meili
        .ok(Method::POST, "/indexes/movies/documents", json!(documents))
        .await;

    // A write reaches the control plane too, in the client's trace.
    let trace_id = "5cf92f3577b34da6a3ce929d0e0e4737";
    let response = reqwest::Client::new()
        .post(format!("{}/indexes", gateway.url))
        .bearer_auth(MASTER_KEY)
        .header("traceparent", format!("00-{trace_id}-c7ad6b7169203332-01"))
        .json(&json!({"uid": "books"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let (call, rpc) = wait_for(
        "the CreateIndex spans at the receiver",
        Duration::from_secs(20),
        || async {
            let spans = trace(&receiver, trace_id);
            let named = |name: &str| spans.values().find(|s| s.name == name).cloned();
            Some((
                named("control_plane_call")?,
                named("/miroir.v1.AdminService/CreateIndex")?,
            ))
        },
    )
    .await;
    assert_eq!(
        rpc.parent_span_id, call.span_id,
        "the control plane's span is a child of the gateway's call"
    );

    // The searches' node calls fail on the killed node: the gateway reports it to the
    // control plane inside the search's trace, and answers from the other group.
    nodes[0].kill().await;
    let client_span = "b7ad6b7169203331";
    let mut trace_ids = Vec::new();
    for i in 0..10u32 {
        let trace_id = format!("0af7651916cd43dd8448eb21{i:08x}");
        let response = reqwest::Client::new()
            .post(format!("{}/indexes/movies/search", gateway.url))
            .bearer_auth(MASTER_KEY)
            .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
            .json(&json!({"q": "movie"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "answered from the other group");
        trace_ids.push(trace_id);
    }
    const RPC: &str = "/miroir.v1.TopologyService/ReportNodeTrouble";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let spans = loop {
        if let Some(spans) = trace_ids.iter().find_map(|id| {
            let spans = trace(&receiver, id);
            spans.values().any(|s| s.name == RPC).then_some(spans)
        }) {
            break spans;
        }
        if tokio::time::Instant::now() > deadline {
            // Which nodes each search asked, to tell a search that never asked the killed
            // node from a report that never reached the control plane.
            let asked: Vec<Vec<String>> = trace_ids
                .iter()
                .map(|id| {
                    trace(&receiver, id)
                        .values()
                        .filter(|s| s.name != "POST /indexes/{uid}/search")
                        .map(|s| {
                            let node = s.attributes.get("node").and_then(|n| n.as_str());
                            format!(
                                "{}{}",
                                s.name,
                                node.map(|n| format!("@{n}")).unwrap_or_default()
                            )
                        })
                        .collect()
                })
                .collect();
            panic!(
                "no search's trace reached the control plane within 30 s; spans per search: {asked:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_name =
        |name: &str| -> Vec<&ReceivedSpan> { spans.values().filter(|s| s.name == name).collect() };
    let [request] = by_name("POST /indexes/{uid}/search")[..] else {
        panic!("one request span: {spans:#?}")
    };
    assert_eq!(
        request.parent_span_id, client_span,
        "child of the client's span"
    );
    assert_eq!(request.service.as_deref(), Some("miroir-gateway"));
    // Every node call is the request's, and both nodes were asked: the killed one, then
    // the other group's for the shards it held.
    let calls = by_name("node_call");
    let asked: std::collections::BTreeSet<_> = calls
        .iter()
        .filter_map(|c| c.attributes.get("node")?.as_str())
        .collect();
    assert_eq!(asked, ["meili-0", "meili-1"].into(), "{calls:#?}");
    assert!(calls.iter().all(|c| descends(&spans, c, &request.span_id)));
    // The control plane's span is a child of the gateway's call, inside the request.
    let [call] = by_name("control_plane_call")[..] else {
        panic!("one control-plane call: {spans:#?}")
    };
    assert!(descends(&spans, call, &request.span_id), "{spans:#?}");
    let [rpc] = by_name(RPC)[..] else {
        unreachable!()
    };
    assert_eq!(rpc.parent_span_id, call.span_id);
    assert_eq!(rpc.service.as_deref(), Some("miroir-control-plane"));
    let mut printed = String::new();
    tree(&spans, client_span, 0, &mut printed);
    eprintln!("the search's trace, under the client's span:\n{printed}");
    // One trace: every span reaches the client's span through its parents.
    for span in spans.values() {
        assert!(
            span.span_id == request.span_id || descends(&spans, span, &request.span_id),
            "{} is cut off from the trace: {spans:#?}",
            span.name
        );
    }
}

#[tokio::test]
async fn rpcs_are_exported_over_otlp_as_children_of_the_callers_trace() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = OtlpReceiver::start(dir.path()).await;
    let mut options = ControlPlaneOptions::default();
    exporting_to(&receiver, &mut options);
    let (_dir, cp) = fresh_control_plane_with(options).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(pb::GetNodeRequest { id: "ghost".into() });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    let status = cp.admin().await.get_node(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    let span = wait_for(
        "the GetNode span at the receiver",
        Duration::from_secs(20),
        || async {
            receiver
                .spans()
                .into_iter()
                .find(|s| s.name == "/miroir.v1.AdminService/GetNode")
        },
    )
    .await;
    assert_eq!(span.trace_id, trace_id, "same trace as the caller");
    assert_eq!(span.parent_span_id, parent_id, "child of the caller's span");
}
