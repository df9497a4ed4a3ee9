//! Command-line flags, each with a `MIROIR_*` environment variable.

use miroir_proto::telemetry::LogFormat;
use std::net::SocketAddr;
use std::time::Duration;

/// The Miroir control plane: owns the fleet's topology and streams it to gateways.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "miroir-control-plane", version, about, long_about = None)]
pub struct Config {
    /// gRPC listen address (AdminService, TopologyService, TaskService, health, reflection).
    #[arg(long, env = "MIROIR_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,

    /// Address other processes reach this control plane at; defaults to http://LISTEN.
    #[arg(long, env = "MIROIR_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,

    /// Where state lives: sqlite://PATH (embedded, one control plane).
    #[arg(long, env = "MIROIR_STORE", default_value = "sqlite://miroir.db")]
    pub store: String,

    /// Prometheus metrics listen address (serves GET /metrics).
    #[arg(long, env = "MIROIR_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,

    /// Master key every Meilisearch node runs with.
    #[arg(long, env = "MIROIR_MASTER_KEY", hide_env_values = true)]
    pub master_key: String,

    /// `development` (default) or `production`, as Meilisearch's `--env`: production
    /// refuses a master key shorter than 16 bytes; development allows it, with a warning.
    #[arg(long = "env", env = "MIROIR_ENV", default_value = "development")]
    pub env: miroir_proto::environment::Environment,

    /// Stable id of this control plane; defaults to cp-<listen port>.
    #[arg(long, env = "MIROIR_CONTROL_PLANE_ID")]
    pub id: Option<String>,

    /// How many control-plane replicas the deployment runs (a SQLite store allows 1).
    #[arg(long, env = "MIROIR_CONTROL_PLANE_REPLICAS", default_value_t = 1)]
    pub replicas: u32,

    /// Shard count of a new index when the client gives none.
    #[arg(long, env = "MIROIR_DEFAULT_SHARDS", default_value_t = 64)]
    pub default_shards: u32,

    /// Copies of each shard per replica group when the client gives none.
    #[arg(long, env = "MIROIR_DEFAULT_REPLICATION_FACTOR", default_value_t = 1)]
    pub default_replication_factor: u32,

    /// Timeout of one call to a Meilisearch node (its whole answer; a request body adds
    /// time at `--node-upload-rate`).
    #[arg(long, env = "MIROIR_NODE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub node_timeout: Duration,

    #[command(flatten)]
    pub node_client: miroir_proto::node_client::NodeClientArgs,

    /// Interval between health checks of each node (GET /health).
    #[arg(long, env = "MIROIR_HEALTH_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,

    /// Timeout of one health check.
    #[arg(long, env = "MIROIR_HEALTH_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub health_timeout: Duration,

    /// Consecutive failed checks that mark a node failed.
    #[arg(long, env = "MIROIR_HEALTH_FAILURES", default_value_t = 3)]
    pub health_failures: u32,

    /// Consecutive good checks that make a joining or failed node active.
    #[arg(long, env = "MIROIR_HEALTH_SUCCESSES", default_value_t = 2)]
    pub health_successes: u32,

    /// Timeout of the check the leader makes at once on a node a gateway reports (passive
    /// health): a node that does not answer it is marked failed, and the shard copies it
    /// holds stale where another in-sync copy takes the writes.
    #[arg(long, env = "MIROIR_TROUBLE_CHECK_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub trouble_check_timeout: Duration,

    /// Interval between passes that make every node's API keys and experimental features
    /// equal to the topology's (also run right after each change and when a node becomes
    /// active).
    #[arg(long, env = "MIROIR_KEY_SYNC_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub key_sync_interval: Duration,

    /// Interval between drift checks: every node's settings hash is compared with the
    /// committed one and a node that differs is repaired.
    #[arg(long, env = "MIROIR_SETTINGS_DRIFT_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub settings_drift_interval: Duration,

    /// How long a settings change may wait for a node that fails or cannot be reached
    /// before the change fails (nodes still processing it are waited for).
    #[arg(long, env = "MIROIR_SETTINGS_COMMIT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub settings_commit_timeout: Duration,

    /// Shard moves the leader runs at once (each copies one shard of one index).
    #[arg(long, env = "MIROIR_MOVE_CONCURRENCY", default_value_t = 4)]
    pub move_concurrency: usize,

    /// Longest a shard move may hold writes in cutover: past it, the writes are released
    /// and the move verifies again before another cutover.
    #[arg(long, env = "MIROIR_CUTOVER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub cutover_timeout: Duration,

    /// Time between the leader's anti-entropy passes (each compares every shard's copies
    /// and repairs what differs); 0 runs passes only when an operator asks
    /// (`miroir-ctl anti-entropy run`).
    #[arg(long, env = "MIROIR_ANTI_ENTROPY_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub anti_entropy_interval: Duration,

    /// Documents an anti-entropy pass reads or writes per second, over all nodes (0: no
    /// limit). Reads by the shard filter cost the nodes about what a search does.
    #[arg(long, env = "MIROIR_ANTI_ENTROPY_RATE", default_value_t = 20_000)]
    pub anti_entropy_rate: u64,

    /// Let `POST /export` send to loopback, private and link-local addresses (refused by
    /// default, as Meilisearch refuses internal IPs).
    #[arg(long, env = "MIROIR_EXPORT_TO_PRIVATE_NETWORKS")]
    pub export_to_private_networks: bool,

    /// How long the leader's lease lasts without renewal (Postgres): a leader that cannot
    /// renew for this long steps down, and another replica takes over once it expired.
    /// Renewed every third of it.
    #[arg(long, env = "MIROIR_LEADER_LEASE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub leader_lease_ttl: Duration,

    /// How long a gateway may take writes after its last acknowledged heartbeat.
    #[arg(long, env = "MIROIR_GATEWAY_LEASE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub gateway_lease_ttl: Duration,

    /// A gateway silent for this long is forgotten (and no longer holds barriers).
    #[arg(long, env = "MIROIR_GATEWAY_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub gateway_ttl: Duration,

    /// A write's task is reserved before its nodes are written; one whose gateway never
    /// attached its node tasks within this long (it stopped in between) is failed with
    /// `miroir_task_unattached`.
    #[arg(long, env = "MIROIR_TASK_RESERVATION_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub task_reservation_timeout: Duration,

    /// Topology versions kept in the store for watchers that resume.
    #[arg(long, env = "MIROIR_TOPOLOGY_HISTORY", default_value_t = 1000)]
    pub topology_history: u64,

    /// Log format: text or json.
    #[arg(long, env = "MIROIR_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// This control plane's id.
    pub fn id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("cp-{}", self.listen.port()))
    }

    /// The address advertised to others.
    pub fn advertise_address(&self) -> String {
        self.advertise_address
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }

    /// Rejects configurations that cannot work, with the reason.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.store.starts_with("sqlite:") && self.replicas > 1 {
            anyhow::bail!(
                "a SQLite store serves exactly one control plane, but --replicas is {}: use a postgres:// store for a replicated control plane",
                self.replicas
            );
        }
        if let Some(warning) = self
            .env
            .check_master_key(&self.master_key)
            .map_err(anyhow::Error::msg)?
        {
            tracing::warn!("{warning}");
        }
        if self.default_shards == 0 || self.default_shards > crate::topology::MAX_SHARDS {
            anyhow::bail!(
                "--default-shards must be between 1 and {}",
                crate::topology::MAX_SHARDS
            );
        }
        if self.default_replication_factor == 0 {
            anyhow::bail!("--default-replication-factor must be at least 1");
        }
        if self.health_failures == 0 || self.health_successes == 0 {
            anyhow::bail!("--health-failures and --health-successes must be at least 1");
        }
        Ok(())
    }
}
