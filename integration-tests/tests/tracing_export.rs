//! OTLP trace export: with OTEL_EXPORTER_OTLP_ENDPOINT set, every RPC is exported as a
//! span, a child of the caller's W3C `traceparent`.

use crate::fresh_control_plane_with;
use miroir_integration_tests::{ControlPlaneOptions, wait_for};
use miroir_proto::pb;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_stream::wrappers::TcpListenerStream;

/// A minimal OTLP/gRPC trace collector that keeps every span it receives.
#[derive(Clone, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts a collector on a loopback port; returns it and its endpoint URL.
pub async fn start_collector() -> (Collector, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let collector = Collector::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (collector, endpoint)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn gateway_requests_and_their_node_calls_are_one_trace() {
    let (collector, endpoint) = start_collector().await;
    let mut options = ControlPlaneOptions::default();
    options
        .env
        .push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.clone()));
    options
        .env
        .push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
    let (dir, cp, _nodes, _plain_gateway) = crate::gateway_indexes::fleet_with(2, options).await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let gateway =
        miroir_integration_tests::Gateway::start_with_env(dir.path(), &cp.url(), &[], &env).await;
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    let meili = miroir_integration_tests::Meili::new(&gateway.url);
    meili
        .ok(
            reqwest::Method::POST,
            "/indexes",
            serde_json::json!({"uid": "movies", "primaryKey": "id"}),
        )
        .await;

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let response = reqwest::Client::new()
        .post(format!("{}/indexes/movies/search", gateway.url))
        .bearer_auth(miroir_integration_tests::MASTER_KEY)
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&serde_json::json!({"q": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (request_span, node_spans) = wait_for(
        "the search's spans at the collector",
        Duration::from_secs(20),
        || {
            let spans = collector.spans.clone();
            async move {
                let spans = spans.lock().unwrap();
                let request = spans
                    .iter()
                    .find(|s| {
                        s.name == "POST /indexes/{uid}/search" && hex(&s.trace_id) == trace_id
                    })?
                    .clone();
                let nodes: Vec<Span> = spans
                    .iter()
                    .filter(|s| s.name == "node_call" && s.parent_span_id == request.span_id)
                    .cloned()
                    .collect();
                (!nodes.is_empty()).then_some((request, nodes))
            }
        },
    )
    .await;
    assert_eq!(
        hex(&request_span.parent_span_id),
        "b7ad6b7169203331",
        "child of the client's span"
    );
    assert!(
        node_spans
            .iter()
            .all(|s| s.trace_id == request_span.trace_id)
    );

    // The gateway's control-plane calls carry the trace on to the control plane.
    let trace_id = "5cf92f3577b34da6a3ce929d0e0e4737";
    let response = reqwest::Client::new()
        .post(format!("{}/indexes", gateway.url))
        .bearer_auth(miroir_integration_tests::MASTER_KEY)
        .header("traceparent", format!("00-{trace_id}-c7ad6b7169203332-01"))
        .json(&serde_json::json!({"uid": "books"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let (call, rpc) = wait_for(
        "the CreateIndex spans at the collector",
        Duration::from_secs(20),
        || {
            let spans = collector.spans.clone();
            async move {
                let spans = spans.lock().unwrap();
                let in_trace = |name: &str| {
                    spans
                        .iter()
                        .find(|s| s.name == name && hex(&s.trace_id) == trace_id)
                        .cloned()
                };
                Some((
                    in_trace("control_plane_call")?,
                    in_trace("/miroir.v1.AdminService/CreateIndex")?,
                ))
            }
        },
    )
    .await;
    assert_eq!(
        rpc.parent_span_id, call.span_id,
        "the control plane's span is a child of the gateway's call"
    );
}

#[tokio::test]
async fn rpcs_are_exported_over_otlp_as_children_of_the_callers_trace() {
    let (collector, endpoint) = start_collector().await;
    let mut options = ControlPlaneOptions::default();
    options
        .env
        .push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint));
    options
        .env
        .push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
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
        "the GetNode span at the collector",
        Duration::from_secs(20),
        || {
            let spans = collector.spans.clone();
            async move {
                spans
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|s| s.name == "/miroir.v1.AdminService/GetNode")
                    .cloned()
            }
        },
    )
    .await;
    assert_eq!(hex(&span.trace_id), trace_id, "same trace as the caller");
    assert_eq!(
        hex(&span.parent_span_id),
        parent_id,
        "child of the caller's span"
    );
}
