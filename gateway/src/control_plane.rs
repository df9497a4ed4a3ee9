//! gRPC calls from the gateway to the control plane (index lifecycle, tasks), failing
//! over between the configured addresses when one is unavailable.

use miroir_proto::pb;
use miroir_proto::pb::admin_service_client::AdminServiceClient;
use miroir_proto::pb::task_service_client::TaskServiceClient;
use miroir_proto::pb::topology_service_client::TopologyServiceClient;
use std::sync::Mutex;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// A failing-over connection to the control plane.
pub struct ControlPlaneClient {
    addresses: Vec<String>,
    current: Mutex<Option<(usize, Channel)>>,
    connect_timeout: Duration,
    call_timeout: Duration,
}

impl ControlPlaneClient {
    /// A client for `addresses` (tried in order).
    pub fn new(addresses: &[String], connect_timeout: Duration, call_timeout: Duration) -> Self {
        Self {
            addresses: addresses
                .iter()
                .filter(|a| !a.trim().is_empty())
                .map(|a| {
                    if a.contains("://") {
                        a.trim().to_owned()
                    } else {
                        format!("http://{}", a.trim())
                    }
                })
                .collect(),
            current: Mutex::new(None),
            connect_timeout,
            call_timeout,
        }
    }

    async fn channel(&self, skip: Option<usize>) -> Result<(usize, Channel), tonic::Status> {
        if let Some(current) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            && Some(current.0) != skip
        {
            return Ok(current);
        }
        let start = skip.map_or(0, |s| s + 1);
        let mut failures = Vec::new();
        for offset in 0..self.addresses.len() {
            let i = (start + offset) % self.addresses.len();
            let endpoint = Endpoint::from_shared(self.addresses[i].clone())
                .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
                .connect_timeout(self.connect_timeout)
                .timeout(self.call_timeout);
            match endpoint.connect().await {
                Ok(channel) => {
                    *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((i, channel.clone()));
                    return Ok((i, channel));
                }
                Err(error) => failures.push(format!("{}: {error}", self.addresses[i])),
            }
        }
        Err(tonic::Status::unavailable(format!(
            "no control plane reachable ({})",
            failures.join("; ")
        )))
    }

    /// Runs `call` against a control plane, moving to the next one while they answer
    /// `UNAVAILABLE`.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, tonic::Status>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let mut skip = None;
        let mut last = tonic::Status::unavailable("no control plane configured");
        for _ in 0..self.addresses.len().max(1) {
            let (i, channel) = self.channel(skip).await?;
            match call(channel).await {
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    skip = Some(i);
                    last = status;
                }
                result => return result,
            }
        }
        Err(last)
    }

    /// An AdminService client on a channel.
    pub fn admin(channel: Channel) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(channel)
    }

    /// A TopologyService client on a channel.
    pub fn topology(channel: Channel) -> TopologyServiceClient<Channel> {
        TopologyServiceClient::new(channel)
    }

    /// A TaskService client on a channel.
    pub fn tasks(channel: Channel) -> TaskServiceClient<Channel> {
        TaskServiceClient::new(channel)
    }
}

/// A gRPC request carrying the current span's W3C trace context, so the control plane's
/// spans join the client's trace.
fn with_trace_context<T>(message: T) -> tonic::Request<T> {
    let mut headers = http::HeaderMap::new();
    miroir_proto::telemetry::inject_current_context(&mut headers);
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
    request
}

/// One typed method per RPC the gateway makes, each with failover and a span.
macro_rules! rpc {
    ($($client:ident $name:ident($request:ident) -> $response:ident;)*) => {
        impl ControlPlaneClient {
            $(
                #[doc = concat!("`", stringify!($name), "` with failover.")]
                pub async fn $name(&self, request: pb::$request) -> Result<pb::$response, tonic::Status> {
                    let span = tracing::info_span!(target: miroir_proto::telemetry::REQUEST_TARGET, "control_plane_call", rpc = stringify!($name));
                    tracing::Instrument::instrument(
                        self.call(|channel| {
                            let request = with_trace_context(request.clone());
                            async move { Self::$client(channel).$name(request).await.map(|r| r.into_inner()) }
                        }),
                        span,
                    )
                    .await
                }
            )*
        }
    };
}

rpc! {
    admin create_index(CreateIndexRequest) -> IndexResponse;
    admin delete_index(DeleteIndexRequest) -> IndexResponse;
    admin get_index(GetIndexRequest) -> IndexResponse;
    admin update_index_settings(UpdateIndexSettingsRequest) -> IndexResponse;
    admin update_index(UpdateIndexRequest) -> IndexResponse;
    admin set_primary_key(SetPrimaryKeyRequest) -> IndexResponse;
    admin swap_indexes(SwapIndexesRequest) -> SwapIndexesResponse;
    admin get_cluster_status(GetClusterStatusRequest) -> ClusterStatus;
    admin list_operations(ListOperationsRequest) -> ListOperationsResponse;
    admin create_key(CreateKeyRequest) -> KeyResponse;
    admin update_key(UpdateKeyRequest) -> KeyResponse;
    admin delete_key(DeleteKeyRequest) -> KeyResponse;
    admin put_webhook(PutWebhookRequest) -> WebhookResponse;
    admin delete_webhook(DeleteWebhookRequest) -> WebhookResponse;
    admin update_experimental_features(UpdateExperimentalFeaturesRequest) -> ExperimentalFeaturesResponse;
    tasks create_task(CreateTaskRequest) -> Task;
    tasks get_task(GetTaskRequest) -> Task;
    tasks list_tasks(ListTasksRequest) -> ListTasksResponse;
    tasks delete_tasks(DeleteTasksRequest) -> DeleteTasksResponse;
    tasks record_task_outcome(RecordTaskOutcomeRequest) -> RecordTaskOutcomeResponse;
    tasks attach_node_tasks(AttachNodeTasksRequest) -> Task;
    tasks start_export(StartExportRequest) -> Task;
    topology report_node_trouble(ReportNodeTroubleRequest) -> ReportNodeTroubleResponse;
}
