//! Starts the control plane: store, leadership, gRPC server, metrics and reconcilers.

use crate::config::Config;
use crate::metrics::{GrpcMetricsLayer, Metrics};
use crate::reconcilers;
use crate::services::{admin::AdminApi, task::TaskApi, topology::TopologyApi};
use crate::state::{LeadershipStatus, ServiceState, now_ms};
use crate::store::{Backend, Store};
use anyhow::Context;
use miroir_proto::pb::admin_service_server::AdminServiceServer;
use miroir_proto::pb::task_service_server::TaskServiceServer;
use miroir_proto::pb::topology_service_server::TopologyServiceServer;
use miroir_proto::telemetry::{serve_metrics, shutdown_signal};
use miroir_proto::{FencingToken, pb};
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::TcpListenerStream;

/// Runs the control plane until a shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    let metrics = Arc::new(Metrics::new());
    let store = Store::open(&config.store, metrics.clone())
        .await
        .with_context(|| format!("cannot open store {}", config.store))?;
    let leadership = match store.backend() {
        // SQLite: the process holding the file lock leads; taking the lease bumps the
        // token so writes from any earlier process on this file are fenced off.
        Backend::Sqlite => {
            let lease = store
                .take_leader_lease(
                    &config.id(),
                    &config.advertise_address(),
                    Duration::from_secs(u32::MAX as u64),
                    now_ms(),
                    true,
                )
                .await?
                .context("the SQLite store did not record the lease")?;
            LeadershipStatus::Leader {
                token: FencingToken(lease.fencing_token as u64),
                since_ms: lease.acquired_at_ms as u64,
            }
        }
        // Postgres: lead if the lease is free or expired, else follow its holder.
        Backend::Postgres => reconcilers::leadership::contend(&store, &config).await?,
    };
    let store_backend = store.backend();
    let state = ServiceState::load(config.clone(), store, metrics.clone(), leadership).await?;

    let grpc_listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", config.listen))?;
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--metrics-listen)",
                config.metrics_listen
            )
        })?;
    let grpc_address = grpc_listener.local_addr()?;
    let metrics_address = metrics_listener.local_addr()?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AdminServiceServer<AdminApi>>()
        .await;
    health_reporter
        .set_serving::<TopologyServiceServer<TopologyApi>>()
        .await;
    health_reporter
        .set_serving::<TaskServiceServer<TaskApi>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    if store_backend == Backend::Postgres {
        tokio::spawn(reconcilers::leadership::run(state.clone()));
        tokio::spawn(reconcilers::leadership::follow_commits(state.clone()));
        tokio::spawn(reconcilers::gateway_expiry::share(state.clone()));
    }
    tokio::spawn(reconcilers::node_health::run(state.clone()));
    tokio::spawn(reconcilers::gateway_expiry::run(state.clone()));
    tokio::spawn(reconcilers::key_sync::run(state.clone()));
    tokio::spawn(reconcilers::settings::run(state.clone()));
    tokio::spawn(reconcilers::shard_moves::run(state.clone()));
    tokio::spawn(reconcilers::catch_up::run(state.clone()));
    tokio::spawn(reconcilers::anti_entropy::run(state.clone()));
    tokio::spawn(reconcilers::task_reservations::run(state.clone()));
    let metrics_server = tokio::spawn(serve_metrics(metrics_listener, {
        let metrics = metrics.clone();
        move || metrics.encode()
    }));

    let topology = state.topology();
    tracing::info!(
        id = %state.id,
        store = %state.store.description(),
        coordination = %state.coordination(),
        role = %state.role(),
        fencing_token = state.leader_info().fencing_token,
        topology_version = topology.version,
        nodes = topology.nodes.len(),
        indexes = topology.indexes.len(),
        grpc = %grpc_address,
        metrics = %metrics_address,
        "miroir control plane started"
    );

    tonic::transport::Server::builder()
        .trace_fn(|request| {
            let method = request.uri().path();
            let span = tracing::info_span!(
                "grpc",
                otel.name = %method,
                otel.kind = "server",
                method = %method
            );
            miroir_proto::telemetry::set_parent_from_headers(&span, request.headers());
            span
        })
        .layer(GrpcMetricsLayer::new(metrics))
        .layer(crate::forward::ForwardLayer::new(state.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AdminServiceServer::new(AdminApi::new(state.clone())))
        .add_service(TopologyServiceServer::new(TopologyApi::new(state.clone())))
        .add_service(TaskServiceServer::new(TaskApi::new(state.clone())))
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc_listener), shutdown_signal())
        .await?;
    let _ = metrics_server.await;
    tracing::info!("miroir control plane stopped");
    Ok(())
}
