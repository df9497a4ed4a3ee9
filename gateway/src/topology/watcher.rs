//! Follows the control plane's topology over `Watch`: subscribes with the newest version
//! it has, applies every newer snapshot and acknowledges it, heartbeats to keep its
//! lease, and fails over between control-plane addresses with backoff. While no control
//! plane answers, the last snapshot keeps serving reads (static stability).

use super::TopologyHandle;
use miroir_proto::pb::topology_service_client::TopologyServiceClient;
use miroir_proto::pb::{self, watch_request, watch_response};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

/// Settings of the watcher.
#[derive(Clone, Debug)]
pub struct WatcherConfig {
    /// This gateway's id.
    pub gateway_id: String,
    /// Where it serves HTTP (reported to the control plane).
    pub advertise: String,
    /// Control-plane addresses, tried in turn.
    pub control_planes: Vec<String>,
    /// Connect timeout per attempt.
    pub connect_timeout: Duration,
    /// Heartbeat interval (bounded by a third of the lease TTL once known).
    pub heartbeat_interval: Duration,
    /// Longest wait for requests started under older versions before a version is
    /// acknowledged anyway (a node call's timeout bounds them).
    pub write_drain_bound: Duration,
}

fn normalize(address: &str) -> String {
    let address = address.trim();
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// Runs until the process stops.
pub async fn run(handle: Arc<TopologyHandle>, config: WatcherConfig) {
    let addresses: Vec<String> = config
        .control_planes
        .iter()
        .filter(|a| !a.trim().is_empty())
        .map(|a| normalize(a))
        .collect();
    let mut attempt = 0usize;
    let mut backoff = Duration::from_millis(100);
    loop {
        let address = &addresses[attempt % addresses.len()];
        let started = Instant::now();
        let span = tracing::info_span!("watch_session", control_plane = %address);
        let result =
            tracing::Instrument::instrument(session(&handle, &config, address), span).await;
        handle.lease.stream_closed();
        let error = match result {
            Ok(()) => "stream closed by the control plane".to_owned(),
            Err(error) => error,
        };
        tracing::warn!(control_plane = %address, %error, "topology watch ended; trying the next control plane");
        handle.update_connection(|c| {
            c.address = None;
            c.since = None;
            c.last_error = Some(format!("{address}: {error}"));
        });
        attempt += 1;
        // A session that lasted resets the backoff; quick failures back off up to 2 s.
        if started.elapsed() > Duration::from_secs(5) {
            backoff = Duration::from_millis(100);
        } else if attempt.is_multiple_of(addresses.len()) {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// One Watch stream to one control plane; returns why it ended.
async fn session(
    handle: &Arc<TopologyHandle>,
    config: &WatcherConfig,
    address: &str,
) -> Result<(), String> {
    let channel = Endpoint::from_shared(address.to_owned())
        .map_err(|e| format!("invalid address: {e}"))?
        .connect_timeout(config.connect_timeout)
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut client = TopologyServiceClient::new(channel);
    let (requests, rx) = mpsc::channel::<pb::WatchRequest>(16);
    let send = |request: watch_request::Request| {
        let requests = requests.clone();
        async move {
            requests
                .send(pb::WatchRequest {
                    request: Some(request),
                })
                .await
                .map_err(|_| "request stream closed".to_owned())
        }
    };
    send(watch_request::Request::Subscribe(pb::Subscribe {
        gateway_id: config.gateway_id.clone(),
        // What this gateway acknowledged, not what it serves: the control plane records
        // it as applied, and a version is applied only once older writes finished.
        known_version: handle.acknowledged(),
        address: config.advertise.clone(),
    }))
    .await?;
    let mut responses = tokio::time::timeout(
        config.connect_timeout * 2,
        client.watch(ReceiverStream::new(rx)),
    )
    .await
    .map_err(|_| "no answer to subscribe".to_owned())?
    .map_err(|status| format!("watch refused: {}", status.message()))?
    .into_inner();
    tracing::info!(control_plane = %address, "topology watch open");
    handle.update_connection(|c| {
        c.address = Some(address.to_owned());
        c.since = Some(Instant::now());
        c.last_message = Some(Instant::now());
        c.last_error = None;
    });

    let mut heartbeat_every = config.heartbeat_interval;
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_message = Instant::now();
    loop {
        tokio::select! {
            message = responses.message() => {
                let message = message.map_err(|status| format!("stream error: {}", status.message()))?;
                let Some(message) = message else { return Ok(()) };
                last_message = Instant::now();
                handle.update_connection(|c| c.last_message = Some(last_message));
                match message.response {
                    Some(watch_response::Response::Snapshot(snapshot)) => {
                        let version = snapshot.version;
                        if handle.apply(snapshot) {
                            tracing::info!(version, "topology applied");
                        }
                        // Acknowledged once requests routed by older versions are done; in
                        // the background, so heartbeats go on meanwhile.
                        let (handle, requests, bound) = (handle.clone(), requests.clone(), config.write_drain_bound);
                        let version = handle.current().version;
                        tokio::spawn(async move {
                            if !handle.pins_before_released(version, bound).await {
                                tracing::warn!(version, "requests under older versions still running after {bound:?}; acknowledging anyway");
                            }
                            let acknowledged = handle.acknowledge(version);
                            let applied = pb::WatchRequest { request: Some(watch_request::Request::Applied(pb::Applied { version: acknowledged })) };
                            let _ = requests.send(applied).await;
                        });
                    }
                    Some(watch_response::Response::HeartbeatAck(ack)) => {
                        let ttl = Duration::from_millis(ack.lease_ttl_ms);
                        handle.lease.acknowledged(ttl);
                        let wanted = config.heartbeat_interval.min(ttl / 3).max(Duration::from_millis(50));
                        if wanted != heartbeat_every {
                            heartbeat_every = wanted;
                            heartbeat = tokio::time::interval(heartbeat_every);
                        }
                    }
                    None => {}
                }
            }
            _ = heartbeat.tick() => {
                // A control plane that stopped answering heartbeats is as good as gone.
                if last_message.elapsed() > heartbeat_every * 3 + config.connect_timeout {
                    return Err("control plane stopped answering heartbeats".into());
                }
                handle.lease.heartbeat_sent();
                send(watch_request::Request::Heartbeat(pb::Heartbeat { applied_version: handle.acknowledged() })).await?;
            }
        }
    }
}
