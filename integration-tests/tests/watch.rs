//! Watch: snapshots at subscribe, every version in order, resume without gaps, delivery
//! latency, and what the control plane records of each gateway.

use crate::{fresh_control_plane, fresh_control_plane_with};
use miroir_integration_tests::{ControlPlane, ControlPlaneOptions, wait_for};
use miroir_proto::pb::{self, watch_request, watch_response};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

struct Watcher {
    requests: mpsc::Sender<pb::WatchRequest>,
    responses: tonic::Streaming<pb::WatchResponse>,
}

impl Watcher {
    async fn open(cp: &ControlPlane, gateway_id: &str, known_version: u64) -> Self {
        let (requests, rx) = mpsc::channel(16);
        requests
            .send(pb::WatchRequest {
                request: Some(watch_request::Request::Subscribe(pb::Subscribe {
                    gateway_id: gateway_id.into(),
                    known_version,
                    address: "127.0.0.1:7700".into(),
                })),
            })
            .await
            .unwrap();
        let responses = cp
            .topology()
            .await
            .watch(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Self {
            requests,
            responses,
        }
    }

    async fn next(&mut self) -> pb::WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), self.responses.message())
            .await
            .expect("a watch message within 10 s")
            .expect("stream ok")
            .expect("stream open")
    }

    async fn next_snapshot(&mut self) -> pb::Topology {
        loop {
            if let Some(watch_response::Response::Snapshot(t)) = self.next().await.response {
                return t;
            }
        }
    }

    async fn send(&self, request: watch_request::Request) {
        self.requests
            .send(pb::WatchRequest {
                request: Some(request),
            })
            .await
            .unwrap();
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Toggles a node in and out: one committed version per call.
async fn change(cp: &ControlPlane, i: u32) {
    let mut admin = cp.admin().await;
    if i.is_multiple_of(2) {
        admin
            .add_node(pb::AddNodeRequest {
                id: "toggled".into(),
                address: "http://127.0.0.1:9".into(),
                group_id: 0,
            })
            .await
            .unwrap();
    } else {
        admin
            .remove_node(pb::RemoveNodeRequest {
                id: "toggled".into(),
            })
            .await
            .unwrap();
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test]
async fn watch_delivers_every_version_in_order_and_resumes_without_gaps() {
    let (_dir, cp) = fresh_control_plane().await;
    let current = cp.current_topology().await;
    let mut watcher = Watcher::open(&cp, "gw-watch", 0).await;
    let first = watcher.next_snapshot().await;
    assert_eq!(
        first, current,
        "version 0 gets the current snapshot at once"
    );

    let changes = 200u32;
    let collector = tokio::spawn(async move {
        let mut latencies = Vec::new();
        let mut versions = Vec::new();
        while versions.len() < changes as usize {
            let snapshot = watcher.next_snapshot().await;
            latencies.push(now_us().saturating_sub(snapshot.committed_at_us));
            versions.push(snapshot.version);
        }
        (watcher, versions, latencies)
    });
    for i in 0..changes {
        change(&cp, i).await;
    }
    let (watcher, versions, mut latencies) = collector.await.unwrap();
    let expected: Vec<u64> = (current.version + 1..=current.version + u64::from(changes)).collect();
    assert_eq!(versions, expected, "every version, once, in order");
    latencies.sort_unstable();
    println!(
        "watch delivery, commit to receipt over {} versions on loopback: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.50) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        *latencies.last().unwrap() as f64 / 1000.0
    );

    // Disconnect, miss five versions, resume from the last one seen.
    let last = *versions.last().unwrap();
    drop(watcher);
    for i in changes..changes + 5 {
        change(&cp, i).await;
    }
    let mut resumed = Watcher::open(&cp, "gw-watch", last).await;
    let mut missed = Vec::new();
    for _ in 0..5 {
        missed.push(resumed.next_snapshot().await.version);
    }
    assert_eq!(missed, (last + 1..=last + 5).collect::<Vec<_>>());
    // And it keeps following.
    change(&cp, changes + 5).await;
    assert_eq!(resumed.next_snapshot().await.version, last + 6);
}

#[tokio::test]
async fn a_first_message_other_than_subscribe_is_rejected() {
    let (_dir, cp) = fresh_control_plane().await;
    let (tx, rx) = mpsc::channel(1);
    tx.send(pb::WatchRequest {
        request: Some(watch_request::Request::Applied(pb::Applied { version: 1 })),
    })
    .await
    .unwrap();
    let status = cp
        .topology()
        .await
        .watch(ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn gateways_are_tracked_and_forgotten_after_their_ttl() {
    let mut options = ControlPlaneOptions::default();
    options.extra_args.extend([
        "--gateway-ttl".into(),
        "1s".into(),
        "--gateway-lease-ttl".into(),
        "3s".into(),
    ]);
    let (_dir, cp) = fresh_control_plane_with(options).await;
    let mut watcher = Watcher::open(&cp, "gw-1", 0).await;
    let snapshot = watcher.next_snapshot().await;
    watcher
        .send(watch_request::Request::Applied(pb::Applied {
            version: snapshot.version,
        }))
        .await;
    watcher
        .send(watch_request::Request::Heartbeat(pb::Heartbeat {
            applied_version: snapshot.version,
        }))
        .await;
    let ack = loop {
        if let Some(watch_response::Response::HeartbeatAck(ack)) = watcher.next().await.response {
            break ack;
        }
    };
    assert_eq!(ack.lease_ttl_ms, 3000);
    assert_eq!(ack.current_version, snapshot.version);

    // A new version the gateway has not applied shows as lag.
    change(&cp, 0).await;
    let status = cp.status().await;
    let gateway = status
        .gateways
        .iter()
        .find(|g| g.id == "gw-1")
        .expect("gateway listed");
    assert_eq!(gateway.applied_version, snapshot.version);
    assert_eq!(gateway.lag, 1);
    assert!(gateway.connected);

    // Closing the stream: still known, not connected; then forgotten after the TTL.
    drop(watcher);
    wait_for(
        "gateway to be forgotten",
        Duration::from_secs(10),
        || async {
            let status = cp.status().await;
            status.gateways.iter().all(|g| g.id != "gw-1").then_some(())
        },
    )
    .await;
}
