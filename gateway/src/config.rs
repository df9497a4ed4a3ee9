//! Command-line flags, each with a `MIROIR_*` environment variable.

use miroir_proto::telemetry::LogFormat;
use std::net::SocketAddr;
use std::time::Duration;

/// The Miroir gateway: speaks the Meilisearch HTTP API over a sharded fleet.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "miroir-gateway", version, about, long_about = None)]
pub struct Config {
    /// HTTP listen address for the Meilisearch API.
    #[arg(long, env = "MIROIR_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,

    /// Control-plane gRPC addresses, comma-separated; the gateway fails over between them.
    #[arg(
        long,
        env = "MIROIR_CONTROL_PLANE",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7070"
    )]
    pub control_plane: Vec<String>,

    /// Master key every Meilisearch node runs with.
    #[arg(long, env = "MIROIR_MASTER_KEY", hide_env_values = true)]
    pub master_key: String,

    /// `development` (default) or `production`, as Meilisearch's `--env`: production
    /// refuses a master key shorter than 16 bytes; development allows it, with a warning.
    #[arg(long = "env", env = "MIROIR_ENV", default_value = "development")]
    pub env: miroir_proto::environment::Environment,

    /// Prometheus metrics listen address (serves GET /metrics).
    #[arg(long, env = "MIROIR_METRICS_LISTEN", default_value = "127.0.0.1:9465")]
    pub metrics_listen: SocketAddr,

    /// Stable id of this gateway; a random one per process when unset.
    #[arg(long, env = "MIROIR_GATEWAY_ID")]
    pub id: Option<String>,

    /// Timeout of connecting to a control plane.
    #[arg(long, env = "MIROIR_CONTROL_PLANE_CONNECT_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub control_plane_connect_timeout: Duration,

    /// Largest request body accepted, in bytes (Meilisearch's default: 100 MB).
    #[arg(long, env = "MIROIR_PAYLOAD_SIZE_LIMIT", default_value_t = 100_000_000)]
    pub payload_size_limit: usize,

    /// How long a write to a held shard (a move's cutover, a rename or swap of its index)
    /// waits for the hold to end before it is answered 503 `miroir_shard_moving` (with
    /// `Retry-After`).
    #[arg(long, env = "MIROIR_CUTOVER_WRITE_WAIT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub cutover_write_wait: Duration,

    /// A node with calls waiting that has answered none for this long is reported to the
    /// control plane, which checks it at once (passive health); a failed call reports it
    /// at once.
    #[arg(long, env = "MIROIR_NODE_REPORT_AFTER", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub node_report_after: Duration,

    /// How long a write that missed its quorum because a node did not answer waits for
    /// the control plane to mark that node failed, and is then acknowledged by the
    /// in-sync copies left; past it, 503 `miroir_no_quorum`.
    #[arg(long, env = "MIROIR_WRITE_FAILOVER_WAIT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub write_failover_wait: Duration,

    /// How long a write the nodes took keeps trying to record its node tasks with the
    /// control plane (through a leader's failover) before it is answered; past it, the
    /// client gets its task and the gateway goes on trying in the background (a task
    /// never recorded is failed after the control plane's `--task-reservation-timeout`).
    #[arg(long, env = "MIROIR_TASK_ATTACH_WAIT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub task_attach_wait: Duration,

    /// Worker threads of the gateway's runtime, which serves the HTTP API and calls the
    /// nodes (default: one per CPU).
    #[arg(long, env = "MIROIR_THREADS")]
    pub threads: Option<usize>,

    /// Client connections open at once; past it new ones wait in the kernel's backlog.
    #[arg(long, env = "MIROIR_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Connections the kernel holds for the gateway to accept (the listen backlog, capped
    /// by `net.core.somaxconn`): a burst of new clients past it has its SYNs dropped and
    /// each waits a second to retry.
    #[arg(long, env = "MIROIR_LISTEN_BACKLOG", default_value_t = 4096)]
    pub listen_backlog: u32,

    /// How long a client may take to send a request's head, and how long a kept-alive
    /// client connection may stay idle before the gateway closes it.
    #[arg(long, env = "MIROIR_CLIENT_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub client_idle_timeout: Duration,

    /// Longest a request may take, body upload included; past it the client gets 504
    /// `miroir_request_timeout` (its writes may still complete on the nodes: follow the
    /// task list).
    #[arg(long, env = "MIROIR_REQUEST_TIMEOUT", default_value = "300s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// On shutdown, how long requests in flight may take to finish.
    #[arg(long, env = "MIROIR_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Timeout of one call to a Meilisearch node (its whole answer; a request body adds
    /// time at `--node-upload-rate`).
    #[arg(long, env = "MIROIR_NODE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub node_timeout: Duration,

    #[command(flatten)]
    pub node_client: miroir_proto::node_client::NodeClientArgs,

    /// Timeout of one call to the control plane.
    #[arg(long, env = "MIROIR_CONTROL_PLANE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub control_plane_timeout: Duration,

    /// Interval between passes that record the outcome of finished tasks no client has
    /// read yet (100 to 1000 per pass, oldest first); 0 turns the passes off.
    #[arg(long, env = "MIROIR_TASK_SWEEP_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub task_sweep_interval: Duration,

    /// Heartbeat interval on the Watch stream (also bounded by a third of the lease TTL).
    #[arg(long, env = "MIROIR_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,

    /// What a read does when no live replica can serve some shards: `partial` answers
    /// with the rest and names the missing shards in `X-Miroir-Degraded`; `error` answers
    /// 503 `miroir_shard_unavailable`.
    #[arg(long, env = "MIROIR_SHARD_UNAVAILABLE_POLICY", value_enum, default_value_t = ShardPolicy::Partial)]
    pub shard_unavailable_policy: ShardPolicy,

    /// How a read chooses among the live copies of its shards: `least-loaded` takes the
    /// less loaded of two candidates (each node's latency average, peak-sensitive and
    /// fading over a second, times its calls in flight), so a slow replica is avoided;
    /// `round-robin` takes them in turn.
    #[arg(long, env = "MIROIR_REPLICA_SELECTION", value_enum, default_value_t = ReplicaSelection::LeastLoaded)]
    pub replica_selection: ReplicaSelection,

    /// Hedge reads: a node call of a read not answered within that node's recent 95th
    /// percentile latency is sent again to another live copy of the same shards, and the
    /// first answer is used. Hedges are at most about a tenth of node calls.
    #[arg(long, env = "MIROIR_HEDGE_READS", default_value_t = true, action = clap::ArgAction::Set)]
    pub hedge_reads: bool,

    /// Redis URL (`redis://[USER:PASSWORD@]HOST:PORT[/DB]`, or `rediss://` for TLS) for
    /// the state gateways share: idempotency keys, read-your-writes sessions and
    /// rate-limit counters. Without it they are per gateway (rate limits then divided by
    /// the live gateway count).
    #[arg(long, env = "MIROIR_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// A PEM file of the CA that signed a `rediss://` server's certificate; without it
    /// the system's roots are trusted.
    #[arg(long, env = "MIROIR_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// Bound on every Redis command, connecting included. After a failure Redis is
    /// skipped for a backoff (100 ms doubling to 5 s) and one request probes it.
    #[arg(long, env = "MIROIR_REDIS_TIMEOUT", value_parser = humantime::parse_duration, default_value = "250ms")]
    pub redis_timeout: Duration,

    /// What rate limits do while Redis is unreachable: `open` lets requests pass
    /// uncounted, `closed` answers 503 `miroir_rate_limit_unavailable`. Idempotency keys
    /// and sessions fall back to this gateway's memory either way.
    #[arg(long, env = "MIROIR_REDIS_UNAVAILABLE_RATE_LIMITS", value_enum, default_value_t = crate::fleet::UnreachablePolicy::Open)]
    pub redis_unavailable_rate_limits: crate::fleet::UnreachablePolicy,

    /// Answer repeated searches and multi-searches from an in-memory cache that is never
    /// stale (a write, settings commit, shard move or swap invalidates its index's
    /// entries; see docs/gateway.md). Needs --redis-url: writes and their completion are
    /// recorded there, and a write is refused while Redis cannot record it.
    #[arg(long, env = "MIROIR_RESULT_CACHE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub result_cache: bool,

    /// Memory the result cache may hold, in bytes (least recently used answers go first).
    #[arg(long, env = "MIROIR_RESULT_CACHE_BYTES", default_value_t = 64 << 20)]
    pub result_cache_bytes: usize,

    /// Requests per second allowed per API key across the fleet (0: no limit).
    #[arg(long, env = "MIROIR_RATE_LIMIT_PER_KEY", default_value_t = 0)]
    pub rate_limit_per_key: u64,

    /// Requests per second allowed per client IP address (the TCP peer) across the fleet
    /// (0: no limit).
    #[arg(long, env = "MIROIR_RATE_LIMIT_PER_IP", default_value_t = 0)]
    pub rate_limit_per_ip: u64,

    /// How many gateways the deployment runs; with more than one and no Redis the gateway
    /// warns at startup that idempotency keys and sessions hold per gateway only.
    #[arg(long, env = "MIROIR_GATEWAY_REPLICAS", default_value_t = 1)]
    pub replicas: u32,

    /// Log format: text or json.
    #[arg(long, env = "MIROIR_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// How a read chooses among the live copies of its shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplicaSelection {
    /// The less loaded of two candidates taken in turn.
    LeastLoaded,
    /// In turn.
    RoundRobin,
}

/// What a read does about shards no live replica can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShardPolicy {
    /// Answer with the other shards and name the missing ones in `X-Miroir-Degraded`.
    Partial,
    /// Answer 503 `miroir_shard_unavailable`.
    Error,
}

impl Config {
    /// This gateway's id.
    pub fn id(&self) -> String {
        self.id.clone().unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let seed = format!("{}-{}-{nanos}", std::process::id(), self.listen);
            format!(
                "gw-{:012x}",
                xxhash_rust::xxh3::xxh3_64(seed.as_bytes()) >> 16
            )
        })
    }

    /// The runtime's worker threads: `--threads`, else one per CPU.
    pub fn worker_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// Rejects configurations that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.control_plane.iter().all(|a| a.trim().is_empty()) {
            anyhow::bail!("--control-plane needs at least one address");
        }
        if self.threads == Some(0) {
            anyhow::bail!("--threads must be at least 1");
        }
        if self.max_connections == 0 {
            anyhow::bail!("--max-connections must be at least 1");
        }
        if let Some(warning) = self
            .env
            .check_master_key(&self.master_key)
            .map_err(anyhow::Error::msg)?
        {
            tracing::warn!("{warning}");
        }
        Ok(())
    }
}
