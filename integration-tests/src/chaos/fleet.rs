//! The chaos run's fleet, all on loopback: real Meilisearch nodes in one group (RF 2),
//! two control planes on one Postgres, three gateways sharing one Redis, and a spare
//! node the "add a node, then drain it" fault brings in.

use crate::{
    ControlPlane, ControlPlaneOptions, Gateway, MASTER_KEY, Postgres, RedisServer, TestNode,
};
use miroir_proto::pb::{self, NodeState};
use std::path::Path;
use std::time::{Duration, Instant};

/// The index the clients write.
pub const INDEX: &str = "chaos";
/// Its shards.
pub const SHARDS: u32 = 8;
/// Its replication factor.
pub const REPLICATION: u32 = 2;

/// Control-plane flags: short leases and checks, two replicas, a 2 s leader lease so
/// failovers finish inside a run.
fn control_plane_options() -> ControlPlaneOptions {
    let mut options = ControlPlaneOptions::short_leases();
    options
        .extra_args
        .extend(["--replicas", "2", "--leader-lease-ttl", "2s"].map(String::from));
    options
}

/// Everything the run starts.
pub struct ChaosFleet {
    /// Where logs and data go.
    pub dir: tempfile::TempDir,
    /// The store of the control planes.
    pub postgres: Postgres,
    /// Shared gateway state.
    pub redis: RedisServer,
    /// The control planes.
    pub control_planes: Vec<ControlPlane>,
    /// The nodes in the fleet, by id.
    pub nodes: Vec<(String, TestNode)>,
    /// The node not yet in the fleet.
    pub spare: (String, TestNode),
    /// The gateways.
    pub gateways: Vec<Gateway>,
    /// Their base URLs, fixed for the run (a restarted gateway takes its port again).
    pub gateway_urls: Vec<String>,
    options: ControlPlaneOptions,
}

impl ChaosFleet {
    /// Starts `node_count` nodes, the control planes, `gateway_count` gateways, and the
    /// index.
    pub async fn start(node_count: usize, gateway_count: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = control_plane_options();
        let (postgres, redis) = tokio::join!(Postgres::start(), RedisServer::start());
        let mut control_planes = Vec::new();
        for _ in 0..2 {
            control_planes.push(ControlPlane::start(dir.path(), &postgres.url, &options).await);
        }
        let mut nodes = Vec::new();
        for i in 0..node_count {
            nodes.push((
                format!("n{i}"),
                TestNode::start_kind(crate::NodeKind::Meilisearch).await,
            ));
        }
        let spare = (
            format!("n{node_count}"),
            TestNode::start_kind(crate::NodeKind::Meilisearch).await,
        );
        let mut fleet = Self {
            dir,
            postgres,
            redis,
            control_planes,
            nodes,
            spare,
            gateways: Vec::new(),
            gateway_urls: Vec::new(),
            options,
        };
        let cp = fleet.leader().await;
        for (id, node) in &fleet.nodes {
            let cp = &fleet.control_planes[cp];
            cp.add_node(id, &node.url, 0).await.expect("add node");
        }
        for (id, _) in &fleet.nodes {
            fleet.control_planes[cp]
                .wait_node_state(id, NodeState::Active)
                .await;
        }
        for _ in 0..gateway_count {
            let gateway = Gateway::start(
                fleet.dir.path(),
                &fleet.control_plane_urls(),
                &fleet.gateway_args(),
            )
            .await;
            gateway.wait_writable().await;
            fleet.gateway_urls.push(gateway.url.clone());
            fleet.gateways.push(gateway);
        }
        let gateway = crate::Meili::new(&fleet.gateway_urls[0]);
        gateway
            .ok(
                reqwest::Method::POST,
                "/indexes",
                serde_json::json!({"uid": INDEX, "primaryKey": "id", "miroirShardCount": SHARDS, "miroirReplicationFactor": REPLICATION}),
            )
            .await;
        fleet
    }

    /// `--control-plane` for gateways: every control plane.
    pub fn control_plane_urls(&self) -> String {
        self.control_planes
            .iter()
            .map(ControlPlane::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn gateway_args(&self) -> Vec<&str> {
        vec!["--redis-url", &self.redis.url]
    }

    /// The position of the control plane that leads, once one does.
    pub async fn leader(&self) -> usize {
        crate::wait_for(
            "a control-plane leader",
            Duration::from_secs(30),
            || async {
                for (i, cp) in self.control_planes.iter().enumerate() {
                    if let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(2), async {
                        cp.admin().await.get_leader(pb::GetLeaderRequest {}).await
                    })
                    .await
                        && info.get_ref().is_self
                    {
                        return Some(i);
                    }
                }
                None
            },
        )
        .await
    }

    /// The newest topology, from the leader.
    pub async fn topology(&self) -> pb::Topology {
        let leader = self.leader().await;
        self.control_planes[leader].current_topology().await
    }

    /// Kills the control plane at `position` and starts it again on its address.
    pub async fn restart_control_plane(&mut self, position: usize) {
        let dir = self.dir.path().to_owned();
        self.control_planes[position]
            .restart(&dir, &self.options)
            .await;
    }

    /// Kills the gateway at `position`.
    pub async fn kill_gateway(&mut self, position: usize) {
        self.gateways[position].kill().await;
    }

    /// Starts the gateway at `position` again on its port.
    pub async fn restart_gateway(&mut self, position: usize) {
        let port: u16 = self.gateway_urls[position]
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("gateway URL ends with its port");
        let cps = self.control_plane_urls();
        let args = self.gateway_args();
        let started = restart_gateway_on(self.dir.path(), &cps, port, &args).await;
        self.gateways[position] = started;
    }

    /// Waits until the fleet is whole again: every node active and in sync, no move
    /// left, no shard held. How long it took, or `None` past `limit`.
    pub async fn healed(&self, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let topology = self.topology().await;
            let whole = topology
                .nodes
                .iter()
                .all(|n| n.state() == NodeState::Active)
                && topology.moves.is_empty()
                && topology
                    .indexes
                    .iter()
                    .flat_map(|i| &i.routing)
                    .flat_map(|r| &r.shards)
                    .all(|s| {
                        s.stale_nodes.is_empty() && !s.blocked && s.read_nodes == s.write_nodes
                    });
            if whole {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }
}

/// Starts a gateway on `port`: the port of a gateway just killed can take a moment to be
/// free again.
async fn restart_gateway_on(dir: &Path, control_planes: &str, port: u16, args: &[&str]) -> Gateway {
    Gateway::start_on(dir, control_planes, Some(port), MASTER_KEY, args, &[]).await
}
