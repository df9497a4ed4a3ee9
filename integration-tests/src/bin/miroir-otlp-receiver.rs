//! `miroir-otlp-receiver`: an OTLP/gRPC trace receiver in its own process, for the tests
//! that check what Miroir's binaries export (Grafana Tempo and the OpenTelemetry Collector
//! are not in the package registries CI installs from). It implements the standard
//! `opentelemetry.proto.collector.trace.v1.TraceService/Export` with the generated code of
//! the `opentelemetry-proto` crate, as Tempo's receiver does, and writes every span it
//! receives as one JSON line to `--out`:
//! `{"service", "traceId", "spanId", "parentSpanId", "name", "kind", "attributes"}`.
//!
//! Prints `listening on ADDR` on stdout once it accepts connections.

use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// An OTLP/gRPC trace receiver that writes spans as JSON lines.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Listen address (port 0 picks a free one; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// File the spans are appended to, one JSON object per line.
    #[arg(long)]
    out: PathBuf,
}

struct Receiver {
    out: Arc<Mutex<std::fs::File>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn value(value: Option<&AnyValue>) -> Value {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(other) => json!(format!("{other:?}")),
        None => Value::Null,
    }
}

fn attributes(attributes: &[KeyValue]) -> Map<String, Value> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), value(kv.value.as_ref())))
        .collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut lines = String::new();
        for resource in request.into_inner().resource_spans {
            let resource_attributes = resource
                .resource
                .as_ref()
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service = resource_attributes
                .get("service.name")
                .cloned()
                .unwrap_or(Value::Null);
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let line = json!({
                        "service": service,
                        "traceId": hex(&span.trace_id),
                        "spanId": hex(&span.span_id),
                        "parentSpanId": hex(&span.parent_span_id),
                        "name": span.name,
                        "kind": span.kind,
                        "attributes": attributes(&span.attributes),
                    });
                    lines.push_str(&line.to_string());
                    lines.push('\n');
                }
            }
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(lines.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| tonic::Status::internal(format!("writing spans: {e}")))?;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.out)?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Receiver {
            out: Arc::new(Mutex::new(out)),
        }))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}
