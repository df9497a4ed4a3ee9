//! Followers forward mutations to the leader (DESIGN §4): a tower layer in front of the
//! gRPC services sends every mutating call a follower receives to the leader's address,
//! unchanged, and returns the leader's answer. Reads (topology, Watch, listings, tasks)
//! are served by the follower from its own copy. A forwarded call carries
//! `x-miroir-forwarded` and is never forwarded again, so stale leader information cannot
//! make calls loop; such a call is answered `UNAVAILABLE` naming the leader.

use crate::state::{LeadershipStatus, ServiceState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::transport::Channel;
use tower::Service;

/// The header a forwarded call carries.
const FORWARDED: &str = "x-miroir-forwarded";

/// gRPC methods that change state, which only the leader runs.
const MUTATIONS: &[&str] = &[
    "/miroir.v1.AdminService/AddNode",
    "/miroir.v1.AdminService/DrainNode",
    "/miroir.v1.AdminService/RemoveNode",
    "/miroir.v1.AdminService/RepairNode",
    "/miroir.v1.AdminService/SetReplicationFactor",
    "/miroir.v1.AdminService/PauseOperation",
    "/miroir.v1.AdminService/ResumeOperation",
    "/miroir.v1.AdminService/CancelOperation",
    "/miroir.v1.AdminService/AddGroup",
    "/miroir.v1.AdminService/RemoveGroup",
    "/miroir.v1.AdminService/CreateIndex",
    "/miroir.v1.AdminService/DeleteIndex",
    "/miroir.v1.AdminService/UpdateIndex",
    "/miroir.v1.AdminService/SetPrimaryKey",
    "/miroir.v1.AdminService/SwapIndexes",
    "/miroir.v1.AdminService/UpdateIndexSettings",
    "/miroir.v1.AdminService/RepairIndexSettings",
    "/miroir.v1.AdminService/CreateKey",
    "/miroir.v1.AdminService/UpdateKey",
    "/miroir.v1.AdminService/DeleteKey",
    "/miroir.v1.AdminService/PutWebhook",
    "/miroir.v1.AdminService/DeleteWebhook",
    "/miroir.v1.AdminService/UpdateExperimentalFeatures",
    "/miroir.v1.AdminService/RunAntiEntropy",
    "/miroir.v1.AdminService/SetAlias",
    "/miroir.v1.AdminService/RemoveAlias",
    // Not a mutation, but its state lives in the leader's memory.
    "/miroir.v1.AdminService/GetAntiEntropyStatus",
    "/miroir.v1.TaskService/CreateTask",
    "/miroir.v1.TaskService/DeleteTasks",
    "/miroir.v1.TaskService/RecordTaskOutcome",
    "/miroir.v1.TaskService/AttachNodeTasks",
    "/miroir.v1.TaskService/StartExport",
    "/miroir.v1.TopologyService/ReportNodeTrouble",
];

/// Where a call should go: `Some(leader address)` when this process follows and the call
/// is a mutation not already forwarded.
fn forward_to(state: &ServiceState, path: &str, forwarded: bool) -> Option<String> {
    if forwarded || !MUTATIONS.contains(&path) {
        return None;
    }
    match state.leadership() {
        LeadershipStatus::Follower { leader_address, .. } if !leader_address.is_empty() => {
            Some(leader_address)
        }
        _ => None,
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct ForwardLayer {
    state: Arc<ServiceState>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl ForwardLayer {
    /// A layer following `state`'s leadership.
    pub fn new(state: Arc<ServiceState>) -> Self {
        Self {
            state,
            channels: Arc::default(),
        }
    }
}

impl<S> tower::Layer<S> for ForwardLayer {
    type Service = ForwardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`ForwardLayer`].
#[derive(Clone)]
pub struct ForwardService<S> {
    inner: S,
    layer: ForwardLayer,
}

impl ForwardLayer {
    /// A lazily connecting channel to `address`, reused across calls.
    fn channel(&self, address: &str) -> Result<Channel, tonic::Status> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = Channel::from_shared(address.to_owned())
            .map_err(|e| {
                miroir_proto::ErrorCode::ControlPlaneUnavailable
                    .status(format!("leader address {address:?}: {e}"))
            })?
            .connect_timeout(Duration::from_secs(2))
            .timeout(self.state.config.node_timeout.max(Duration::from_secs(30)))
            .connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }
}

impl<S> Service<http::Request<Body>> for ForwardService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let forwarded = request.headers().contains_key(FORWARDED);
        let Some(leader) = forward_to(&self.layer.state, request.uri().path(), forwarded) else {
            return Box::pin(self.inner.call(request));
        };
        let channel = self.layer.channel(&leader);
        Box::pin(async move {
            let mut channel = match channel {
                Ok(channel) => channel,
                Err(status) => return Ok(status.into_http()),
            };
            request
                .headers_mut()
                .insert(FORWARDED, http::HeaderValue::from_static("1"));
            // The leader's URI: the channel fills in scheme and authority from its endpoint.
            let path = request.uri().path().to_owned();
            *request.uri_mut() = match format!("{leader}{path}").parse() {
                Ok(uri) => uri,
                Err(e) => {
                    return Ok(miroir_proto::ErrorCode::ControlPlaneUnavailable
                        .status(format!("leader address {leader:?}: {e}"))
                        .into_http());
                }
            };
            tracing::debug!(leader, path, "forwarding a mutation to the leader");
            // A channel is a buffered service: it must be ready before it takes a call.
            let ready = tower::ServiceExt::ready(&mut channel).await;
            let answer = match ready {
                Ok(channel) => channel.call(request).await,
                Err(error) => Err(error),
            };
            match answer {
                Ok(response) => Ok(response.map(Body::new)),
                Err(error) => Ok(miroir_proto::ErrorCode::ControlPlaneUnavailable
                    .status(format!(
                        "this control plane follows {leader}, which could not be reached: {error}"
                    ))
                    .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::MUTATIONS;

    #[test]
    fn every_mutation_is_a_method_of_the_services() {
        let descriptor = String::from_utf8_lossy(miroir_proto::pb::FILE_DESCRIPTOR_SET);
        for path in MUTATIONS {
            let method = path.rsplit('/').next().unwrap_or_default();
            assert!(descriptor.contains(method), "{path}");
        }
    }
}
