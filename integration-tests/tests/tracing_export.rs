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
struct Collector {
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

#[tokio::test]
async fn rpcs_are_exported_over_otlp_as_children_of_the_callers_trace() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let collector = Collector::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
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

    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
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
