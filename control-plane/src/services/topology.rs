//! `TopologyService`: point reads of the topology and the gateways' Watch streams.

use crate::state::ServiceState;
use miroir_proto::pb::topology_service_server::TopologyService;
use miroir_proto::pb::{self, watch_request, watch_response};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

/// How long a new stream may take to send its Subscribe.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Implements `miroir.v1.TopologyService`.
pub struct TopologyApi {
    state: Arc<ServiceState>,
}

impl TopologyApi {
    /// A service over `state`.
    pub fn new(state: Arc<ServiceState>) -> Self {
        Self { state }
    }
}

type WatchSender = mpsc::Sender<Result<pb::WatchResponse, Status>>;

/// Sends every version newer than `known_version`, in order, as it commits, until the
/// stream closes.
async fn send_versions(state: Arc<ServiceState>, tx: WatchSender, known_version: u64) {
    let mut topology = state.subscribe();
    let mut last_sent = known_version;
    loop {
        let current = topology.borrow_and_update().clone();
        if current.version != last_sent {
            if current.version < last_sent {
                tracing::warn!(
                    known = last_sent,
                    current = current.version,
                    "gateway knows a newer version than the store holds; sending the store's"
                );
            }
            let versions = match state.versions_between(last_sent, &current).await {
                Ok(versions) => versions,
                Err(error) => {
                    let _ = tx.send(Err(error.into())).await;
                    return;
                }
            };
            for snapshot in versions {
                last_sent = snapshot.version;
                let message = pb::WatchResponse {
                    response: Some(watch_response::Response::Snapshot((*snapshot).clone())),
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            changed = topology.changed() => if changed.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}

/// Handles what the gateway sends after Subscribe, until its side closes.
async fn receive(
    state: Arc<ServiceState>,
    tx: WatchSender,
    mut inbound: Streaming<pb::WatchRequest>,
    gateway_id: String,
) {
    loop {
        match inbound.message().await {
            Ok(Some(pb::WatchRequest {
                request: Some(watch_request::Request::Applied(applied)),
            })) => state.gateways.applied(&gateway_id, applied.version),
            Ok(Some(pb::WatchRequest {
                request: Some(watch_request::Request::Heartbeat(heartbeat)),
            })) => {
                state
                    .gateways
                    .heartbeat(&gateway_id, heartbeat.applied_version);
                let ack = pb::WatchResponse {
                    response: Some(watch_response::Response::HeartbeatAck(pb::HeartbeatAck {
                        lease_ttl_ms: state.config.gateway_lease_ttl.as_millis() as u64,
                        current_version: state.topology().version,
                    })),
                };
                if tx.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
            Ok(Some(_)) => {
                let _ = tx
                    .send(Err(miroir_proto::ErrorCode::InvalidArgument.status(
                        "after subscribe, a watch carries only applied and heartbeat messages",
                    )))
                    .await;
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    state.gateways.disconnected(&gateway_id);
    state.metrics.watch_streams.dec();
    tracing::info!(gateway = %gateway_id, "watch closed");
}

#[tonic::async_trait]
impl TopologyService for TopologyApi {
    async fn get_topology(
        &self,
        _request: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<pb::Topology>, Status> {
        Ok(Response::new((*self.state.topology()).clone()))
    }

    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn report_node_trouble(
        &self,
        request: Request<pb::ReportNodeTroubleRequest>,
    ) -> Result<Response<pb::ReportNodeTroubleResponse>, Status> {
        let report = request.into_inner();
        if report.node_id.is_empty() {
            return Err(miroir_proto::ErrorCode::InvalidArgument.status("node_id is empty"));
        }
        let state = crate::reconcilers::node_health::check_reported(
            &self.state,
            &report.node_id,
            &report.gateway_id,
            &report.detail,
        )
        .await
        .map_err(Status::from)?;
        Ok(Response::new(pb::ReportNodeTroubleResponse {
            state: state as i32,
        }))
    }

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(SUBSCRIBE_TIMEOUT, inbound.message())
            .await
            .map_err(|_| {
                miroir_proto::ErrorCode::InvalidArgument.status("no subscribe message within 10 s")
            })??;
        let Some(pb::WatchRequest {
            request: Some(watch_request::Request::Subscribe(subscribe)),
        }) = first
        else {
            return Err(miroir_proto::ErrorCode::InvalidArgument
                .status("the first message of a watch must be subscribe"));
        };
        if subscribe.gateway_id.trim().is_empty() {
            return Err(
                miroir_proto::ErrorCode::InvalidArgument.status("subscribe needs a gateway_id")
            );
        }
        let gateway_id = subscribe.gateway_id;
        self.state
            .gateways
            .subscribed(&gateway_id, &subscribe.address, subscribe.known_version);
        self.state.metrics.watch_streams.inc();
        tracing::info!(gateway = %gateway_id, known_version = subscribe.known_version, "watch opened");
        let (tx, rx) = mpsc::channel(64);
        let span = tracing::info_span!("watch", gateway = %gateway_id);
        tokio::spawn(
            send_versions(self.state.clone(), tx.clone(), subscribe.known_version)
                .instrument(span.clone()),
        );
        tokio::spawn(receive(self.state.clone(), tx, inbound, gateway_id).instrument(span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
