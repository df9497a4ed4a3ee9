//! The integration sandbox: starts Miroir's real binaries (and test nodes) on loopback
//! ports, waits on predicates rather than sleeps, and kills everything on drop.
//!
//! Binaries are taken from the same target directory as the running test; `cargo test`
//! does not build other packages' binaries, so run
//! `cargo build --workspace --bins && cargo test --workspace` (the README's test command).

pub mod abuse;
pub mod chaos;
pub mod differential;
pub mod rng;
pub mod test_node;

use miroir_proto::pb;
use miroir_proto::pb::admin_service_client::AdminServiceClient;
use miroir_proto::pb::task_service_client::TaskServiceClient;
use miroir_proto::pb::topology_service_client::TopologyServiceClient;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

/// The master key every test fleet uses.
pub const MASTER_KEY: &str = "miroir-test-master-key-0123456789";

/// Path of a workspace binary: in the profile folder that holds the running test (from
/// its `deps/` folder) or the running binary (e.g. `target/release/miroir-bench`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let parent = exe.parent().expect("executable folder");
    let dir = if parent.ends_with("deps") {
        parent.parent().expect("target directory")
    } else {
        parent
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        path.display()
    );
    path
}

/// An index's ranking rules in Meilisearch 1.50 until changed.
pub const DEFAULT_RANKING_RULES: [&str; 7] = [
    "words",
    "typo",
    "proximity",
    "attributeRank",
    "sort",
    "wordPosition",
    "exactness",
];

/// Takes the `requestUid` out of a search answer (and out of each multi-search result),
/// checking that it is a UUID v7 as Meilisearch 1.50 makes one for every request: two
/// answers are then compared on the rest.
pub fn take_request_uids(answer: &mut serde_json::Value) {
    let take = |object: &mut serde_json::Value| {
        if let Some(uid) = object.as_object_mut().and_then(|o| o.remove("requestUid")) {
            let uid = uid.as_str().unwrap_or_default().to_owned();
            assert!(
                uid.len() == 36 && uid.as_bytes()[14] == b'7',
                "requestUid {uid:?} is no UUID v7"
            );
        }
    };
    take(answer);
    if let Some(results) = answer.get_mut("results").and_then(|r| r.as_array_mut()) {
        results.iter_mut().for_each(take);
    }
}

/// Whether real Meilisearch is at hand (`MEILISEARCH_BIN`); when not, says that the
/// calling test, which needs what Miroir's test node does not imitate, is skipped.
pub fn real_meilisearch(test: &str) -> bool {
    let real = std::env::var_os("MEILISEARCH_BIN").is_some();
    if !real {
        eprintln!("{test}: SKIPPED, needs real Meilisearch (set MEILISEARCH_BIN)");
    }
    real
}

/// Times a process is started on fresh ports when one it was given was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// Whether a process's log says it could not bind a port.
fn port_taken(log: &str) -> bool {
    log.contains("Address already in use")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until `GET {url}/health` answers with a success, or panics after `timeout`
/// naming `what`.
pub async fn wait_healthy(what: &str, url: &str, timeout: Duration) {
    let health = format!("{url}/health");
    wait_for(what, timeout, || async {
        reqwest::get(&health)
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
}

/// Flags for a control plane under test.
#[derive(Clone, Debug)]
pub struct ControlPlaneOptions {
    /// Extra flags, e.g. `["--health-interval", "200ms"]`.
    pub extra_args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// `--master-key` ([`MASTER_KEY`] unless changed).
    pub master_key: String,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            extra_args: vec![
                "--health-interval".into(),
                "200ms".into(),
                "--health-timeout".into(),
                "500ms".into(),
            ],
            env: Vec::new(),
            master_key: MASTER_KEY.into(),
        }
    }
}

impl ControlPlaneOptions {
    /// Quick health checks, 2 s node calls, and short gateway leases and TTLs, so that
    /// failures are seen and a new leader may move shards within a test (it waits one
    /// gateway lease before moving anything).
    pub fn short_leases() -> Self {
        let mut options = Self::default();
        options.extra_args.extend(
            [
                "--node-timeout",
                "2s",
                "--gateway-ttl",
                "3s",
                "--gateway-lease-ttl",
                "2s",
            ]
            .map(String::from),
        );
        options
    }
}

/// A running `miroir-control-plane`.
pub struct ControlPlane {
    child: Child,
    /// gRPC address.
    pub grpc: SocketAddr,
    /// Metrics address.
    pub metrics: SocketAddr,
    /// The store URL it runs on.
    pub store: String,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl ControlPlane {
    /// Its `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        metrics_text(self.metrics).await
    }

    /// The value of counter `name` (the whole metric name, `…_total`), if exported.
    pub async fn counter(&self, name: &str) -> Option<u64> {
        counter_in(&self.metrics_text().await, name)
    }

    /// Starts a control plane on `store` and waits until it serves gRPC.
    pub async fn start(dir: &Path, store: &str, options: &ControlPlaneOptions) -> Self {
        let (child, grpc, metrics, log) = Self::spawn(dir, store, options, None);
        let mut cp = Self {
            child,
            grpc,
            metrics,
            store: store.to_owned(),
            log,
        };
        cp.serve(dir, options, false).await;
        cp
    }

    /// Kills the process (SIGKILL) and starts a new one on the same store and gRPC
    /// address (so gateways find it again), waiting until it serves.
    pub async fn restart(&mut self, dir: &Path, options: &ControlPlaneOptions) {
        self.kill().await;
        self.respawn(dir, options, true);
        self.serve(dir, options, true).await;
    }

    fn respawn(&mut self, dir: &Path, options: &ControlPlaneOptions, same_grpc: bool) {
        let grpc = same_grpc.then_some(self.grpc);
        let (child, grpc, metrics, log) = Self::spawn(dir, &self.store, options, grpc);
        (self.child, self.grpc, self.metrics, self.log) = (child, grpc, metrics, log);
    }

    /// Waits until the process serves. A port [`free_port`] handed out can be taken by a
    /// parallel test before the process binds it: then it starts again on fresh ports
    /// (keeping the gRPC address with `same_grpc`).
    async fn serve(&mut self, dir: &Path, options: &ControlPlaneOptions, same_grpc: bool) {
        for _ in 0..PORT_ATTEMPTS {
            match self.wait_ready().await {
                Ok(()) => return,
                Err(log) if port_taken(&log) => self.respawn(dir, options, same_grpc),
                Err(log) => panic!("control plane exited before serving:\n{log}"),
            }
        }
        panic!("control plane found no free port in {PORT_ATTEMPTS} attempts");
    }

    fn spawn(
        dir: &Path,
        store: &str,
        options: &ControlPlaneOptions,
        grpc: Option<SocketAddr>,
    ) -> (Child, SocketAddr, SocketAddr, PathBuf) {
        let grpc: SocketAddr =
            grpc.unwrap_or_else(|| format!("127.0.0.1:{}", free_port()).parse().unwrap());
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.join(format!(
            "control-plane-{}-{}.log",
            grpc.port(),
            metrics.port()
        ));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary("miroir-control-plane"))
            .arg("--listen")
            .arg(grpc.to_string())
            .arg("--metrics-listen")
            .arg(metrics.to_string())
            .arg("--store")
            .arg(store)
            .arg("--master-key")
            .arg(&options.master_key)
            .args(&options.extra_args)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "info")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("start miroir-control-plane");
        (child, grpc, metrics, log)
    }

    /// Runs a control plane that is expected to exit; returns its exit status and log.
    pub async fn run_to_exit(
        dir: &Path,
        store: &str,
        options: &ControlPlaneOptions,
    ) -> (std::process::ExitStatus, String) {
        let (mut child, _, _, log) = Self::spawn(dir, store, options, None);
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("control plane should exit")
            .expect("wait");
        (status, std::fs::read_to_string(log).unwrap_or_default())
    }

    /// Waits until the process serves gRPC; its log when it exited first.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let url = self.url();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "exit {status}\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            if let Ok(channel) = Channel::from_shared(url.clone()).unwrap().connect().await {
                let mut admin = AdminServiceClient::new(channel);
                if admin
                    .get_leader(miroir_proto::pb::GetLeaderRequest {})
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
            assert!(Instant::now() < deadline, "control plane did not start");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `http://host:port` of its gRPC server.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// A channel to it.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .expect("connect to control plane")
    }

    /// An AdminService client.
    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    /// A TopologyService client.
    pub async fn topology(&self) -> TopologyServiceClient<Channel> {
        TopologyServiceClient::new(self.channel().await)
    }

    /// A TaskService client.
    pub async fn tasks(&self) -> TaskServiceClient<Channel> {
        TaskServiceClient::new(self.channel().await)
    }

    /// Adds a node through AdminService.
    pub async fn add_node(
        &self,
        id: &str,
        address: &str,
        group: u32,
    ) -> Result<pb::NodeResponse, tonic::Status> {
        self.admin()
            .await
            .add_node(pb::AddNodeRequest {
                id: id.into(),
                address: address.into(),
                group_id: group,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Records an index through AdminService.
    pub async fn create_index(
        &self,
        uid: &str,
        shards: u32,
        replication_factor: u32,
    ) -> Result<pb::Index, tonic::Status> {
        let response = self
            .admin()
            .await
            .create_index(pb::CreateIndexRequest {
                uid: uid.into(),
                primary_key: Some("id".into()),
                shard_count: Some(shards),
                replication_factor: Some(replication_factor),
            })
            .await?
            .into_inner();
        Ok(response.index.expect("index in answer"))
    }

    /// The cluster status.
    pub async fn status(&self) -> pb::ClusterStatus {
        self.admin()
            .await
            .get_cluster_status(pb::GetClusterStatusRequest {})
            .await
            .expect("cluster status")
            .into_inner()
    }

    /// The newest topology.
    pub async fn current_topology(&self) -> pb::Topology {
        self.topology()
            .await
            .get_topology(pb::GetTopologyRequest {})
            .await
            .expect("topology")
            .into_inner()
    }

    /// Waits until node `id` is in `state`; returns the topology version that shows it.
    pub async fn wait_node_state(&self, id: &str, state: pb::NodeState) -> u64 {
        let what = format!("node {id} to be {}", state.short_name());
        wait_for(&what, Duration::from_secs(10), || async {
            let response = self
                .admin()
                .await
                .get_node(pb::GetNodeRequest { id: id.into() })
                .await
                .ok()?
                .into_inner();
            (response.node?.state == state as i32).then_some(response.topology_version)
        })
        .await
    }

    /// Waits until no shard copy is stale (every failed node that came back was caught
    /// up); returns the topology version that shows it.
    pub async fn wait_in_sync(&self, timeout: Duration) -> u64 {
        wait_for("every shard copy in sync", timeout, || async {
            let topology = self.current_topology().await;
            let stale = topology
                .indexes
                .iter()
                .flat_map(|i| &i.routing)
                .flat_map(|r| &r.shards)
                .any(|s| !s.stale_nodes.is_empty());
            (!stale).then_some(topology.version)
        })
        .await
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Index `uid` in the newest topology; a default (empty) index when there is none.
    pub async fn index(&self, uid: &str) -> pb::Index {
        self.current_topology()
            .await
            .indexes
            .into_iter()
            .find(|i| i.uid == uid)
            .unwrap_or_default()
    }
}

/// Runs one of `integration-tests/python/`'s check scripts with `args` (with `$PYTHON`,
/// else `python3`) and asserts that it succeeded and printed "all checks passed".
pub async fn run_python_check(script: &str, args: &[&std::ffi::OsStr]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let output = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg(&path)
        .args(args)
        .output()
        .await
        .expect("python3 on PATH");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{script}: {stdout}");
}

/// Which node a test starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// Real Meilisearch (`MEILISEARCH_BIN`), or the test node when that is unset.
    Meilisearch,
    /// Miroir's test node, for faults a real process cannot show.
    TestNode,
}

/// A running Meilisearch node: the real binary named by `MEILISEARCH_BIN` (CI points it at
/// `../shared/meilisearch/meilisearch`), or else `miroir-test-node`.
///
/// Process faults work on both: [`TestNode::kill`] and [`TestNode::down`] are `kill -9`,
/// [`TestNode::hang`] is `SIGSTOP`. Injected faults (latency, error rates, refusals, task
/// delays) need the test node: start it with [`TestNode::start_test_node`].
pub struct TestNode {
    child: Child,
    /// Its base URL.
    pub url: String,
    /// True when this is real Meilisearch (no fault injection).
    pub real: bool,
    /// The real binary, its data folder and master key, kept so [`TestNode::up`] restarts
    /// the same node.
    real_node: Option<RealNode>,
}

/// What restarts a real node as it was.
struct RealNode {
    bin: PathBuf,
    dir: tempfile::TempDir,
    master_key: String,
}

impl TestNode {
    /// Where a real node writes its dumps (`None` for the test node).
    pub fn dump_dir(&self) -> Option<PathBuf> {
        self.real_node.as_ref().map(|n| n.dir.path().join("dumps"))
    }

    /// Starts a node on a free loopback port and waits for `GET /health`: real Meilisearch
    /// when `MEILISEARCH_BIN` is set, else the test node.
    pub async fn start() -> Self {
        match std::env::var_os("MEILISEARCH_BIN") {
            Some(bin) => Self::start_real(PathBuf::from(bin), None, MASTER_KEY).await,
            None => Self::start_test_node().await,
        }
    }

    /// Starts real Meilisearch `bin` with `master_key`, on `port` (else a free one).
    pub async fn start_real(bin: PathBuf, port: Option<u16>, master_key: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..PORT_ATTEMPTS {
            let port = port.unwrap_or_else(free_port);
            let mut child = Self::spawn_real(&bin, dir.path(), port, master_key);
            let url = format!("http://127.0.0.1:{port}");
            match Self::wait_real(&mut child, &url, dir.path()).await {
                Ok(()) => {
                    return Self {
                        child,
                        url,
                        real: true,
                        real_node: Some(RealNode {
                            bin,
                            dir,
                            master_key: master_key.to_owned(),
                        }),
                    };
                }
                Err(log) if port_taken(&log) => continue,
                Err(log) => panic!("meilisearch exited before serving:\n{log}"),
            }
        }
        panic!("meilisearch found no free port in {PORT_ATTEMPTS} attempts");
    }

    fn spawn_real(bin: &Path, dir: &Path, port: u16, master_key: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("meilisearch.log"))
            .expect("log file");
        Command::new(bin)
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--master-key")
            .arg(master_key)
            .arg("--db-path")
            .arg(dir.join("data.ms"))
            .arg("--dump-dir")
            .arg(dir.join("dumps"))
            .arg("--snapshot-dir")
            .arg(dir.join("snapshots"))
            .arg("--no-analytics")
            // Meilisearch sizes a buffer it clears for every batch by this (2/3 of RAM by
            // default): on a 24 GiB machine even a one-document batch then burns 0.38 s
            // of CPU, against 0.03 s at 1 GiB (docs/operations.md).
            .arg("--max-indexing-memory")
            .arg("1GiB")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start MEILISEARCH_BIN")
    }

    /// Waits for `GET /health`; the node's log when it exited first.
    async fn wait_real(child: &mut Child, url: &str, dir: &Path) -> Result<(), String> {
        let health = format!("{url}/health");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("meilisearch.log")).unwrap_or_default();
                return Err(format!("exit {status}\n{log}"));
            }
            if reqwest::get(&health)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "meilisearch did not start in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Starts a node of `kind`.
    pub async fn start_kind(kind: NodeKind) -> Self {
        match kind {
            NodeKind::Meilisearch => Self::start().await,
            NodeKind::TestNode => Self::start_test_node().await,
        }
    }

    /// Starts Miroir's test node whatever `MEILISEARCH_BIN` says: for tests that inject
    /// faults a real process cannot show (latency, error rates, refusals, task delays).
    pub async fn start_test_node() -> Self {
        let mut child = Command::new(binary("miroir-test-node"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--master-key")
            .arg(MASTER_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start miroir-test-node");
        let address = announced_address(&mut child, "miroir-test-node").await;
        Self {
            child,
            url: format!("http://{address}"),
            real: false,
            real_node: None,
        }
    }

    /// Sets injected faults (`{"latencyMs": 50}`, `{"taskDelayMs": 400}`, …); test node only.
    pub async fn set_faults(&self, faults: serde_json::Value) {
        assert!(
            !self.real,
            "fault injection needs the test node: start it with TestNode::start_test_node"
        );
        let response = reqwest::Client::new()
            .post(format!("{}/_testnode/faults", self.url))
            .json(&faults)
            .send()
            .await
            .expect("set faults");
        assert!(response.status().is_success());
    }

    /// Kills the process (`kill -9`) for good.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Takes the node down: `kill -9` on real Meilisearch, which [`TestNode::up`] restarts
    /// on its port and data. The test node keeps its documents only in memory, so it plays
    /// dead instead (refuses every request).
    pub async fn down(&mut self) {
        if self.real {
            self.kill().await;
        } else {
            self.set_faults(serde_json::json!({"down": true})).await;
        }
    }

    /// Brings a node [`TestNode::down`] took down back, on the same address and data, and
    /// waits until it serves.
    pub async fn up(&mut self) {
        match &self.real_node {
            Some(RealNode {
                bin,
                dir,
                master_key,
            }) => {
                let port: u16 = self
                    .url
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("node URL ends with its port");
                // A killed process's port can take a moment to be free again.
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let mut child = Self::spawn_real(bin, dir.path(), port, master_key);
                    match Self::wait_real(&mut child, &self.url, dir.path()).await {
                        Ok(()) => {
                            self.child = child;
                            return;
                        }
                        Err(log) if port_taken(&log) && Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(log) => panic!("meilisearch did not come back:\n{log}"),
                    }
                }
            }
            None => self.set_faults(serde_json::json!({"down": false})).await,
        }
    }

    /// Hangs the node (`SIGSTOP`): it keeps its connections and answers nothing, the gray
    /// failure a timeout must catch. [`TestNode::unhang`] resumes it.
    pub fn hang(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Resumes a node [`TestNode::hang`] stopped (`SIGCONT`).
    pub fn unhang(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("node process is running");
        // SAFETY: kill(2) on a child process this handle owns and has not reaped.
        let result = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal})");
    }
}

/// The Prometheus text a process serves on `address`.
pub async fn metrics_text(address: SocketAddr) -> String {
    reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the unlabelled counter or gauge `name` in Prometheus text, if there.
pub fn counter_in(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// Output of one `miroir-ctl` run.
pub struct CtlOutput {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `miroir-ctl --control-plane URLS ARGS…`.
pub async fn ctl(control_planes: &str, args: &[&str]) -> CtlOutput {
    let output = Command::new(binary("miroir-ctl"))
        .arg("--control-plane")
        .arg(control_planes)
        .args(args)
        .output()
        .await
        .expect("run miroir-ctl");
    CtlOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A running `miroir-gateway`.
pub struct Gateway {
    child: Child,
    /// Base URL of its HTTP API.
    pub url: String,
    /// Metrics address.
    pub metrics: SocketAddr,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Gateway {
    /// Starts a gateway following `control_planes` (comma-separated) and waits for
    /// `GET /health`.
    pub async fn start(dir: &Path, control_planes: &str, extra_args: &[&str]) -> Self {
        Self::start_with_env(dir, control_planes, extra_args, &[]).await
    }

    /// Same, with extra environment variables.
    pub async fn start_with_env(
        dir: &Path,
        control_planes: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_on(dir, control_planes, None, MASTER_KEY, extra_args, env).await
    }

    /// Starts a gateway on `port` (else a free one) with `master_key`.
    pub async fn start_on(
        dir: &Path,
        control_planes: &str,
        port: Option<u16>,
        master_key: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        // A port free_port handed out can be taken by a parallel test before the gateway
        // binds it: then it starts again on fresh ports.
        for _ in 0..PORT_ATTEMPTS {
            let port = port.unwrap_or_else(free_port);
            let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let log = dir.join(format!("gateway-{port}.log"));
            let log_file = std::fs::File::create(&log).expect("log file");
            let mut child = Command::new(binary("miroir-gateway"))
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--metrics-listen")
                .arg(metrics.to_string())
                .arg("--control-plane")
                .arg(control_planes)
                .arg("--master-key")
                .arg(master_key)
                .args(extra_args)
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .env("RUST_LOG", "info")
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(log_file)
                .kill_on_drop(true)
                .spawn()
                .expect("start miroir-gateway");
            let url = format!("http://127.0.0.1:{port}");
            let health = format!("{url}/health");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let output = std::fs::read_to_string(&log).unwrap_or_default();
                    if port_taken(&output) {
                        break;
                    }
                    panic!("gateway exited with {status}:\n{output}");
                }
                if reqwest::get(&health)
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    return Self {
                        child,
                        url,
                        metrics,
                        log,
                    };
                }
                assert!(Instant::now() < deadline, "gateway did not start");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        panic!("gateway found no free port in {PORT_ATTEMPTS} attempts");
    }

    /// `GET /_miroir/status` as JSON.
    pub async fn status(&self) -> serde_json::Value {
        reqwest::get(format!("{}/_miroir/status", self.url))
            .await
            .expect("status")
            .json()
            .await
            .expect("status JSON")
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until the gateway serves topology `version` or newer.
    pub async fn wait_version(&self, version: u64) {
        wait_for(
            &format!("gateway to apply version {version}"),
            Duration::from_secs(10),
            || async {
                (self.status().await["topologyVersion"].as_u64()? >= version).then_some(())
            },
        )
        .await
    }

    /// Waits until the gateway holds a write lease (its first heartbeat was acknowledged).
    pub async fn wait_writable(&self) {
        wait_for("gateway write lease", Duration::from_secs(10), || async {
            (self.status().await["lease"]["valid"] == true).then_some(())
        })
        .await
    }

    /// Its `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        metrics_text(self.metrics).await
    }

    /// The value of counter `name` (the whole metric name, `…_total`), if exported.
    pub async fn counter(&self, name: &str) -> Option<u64> {
        counter_in(&self.metrics_text().await, name)
    }

    /// Kills the process.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// One shard's documents on one node, by id.
pub type ShardDocuments =
    std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>;

/// A plain HTTP client for Meilisearch's API (a node or a gateway), with the master key.
#[derive(Clone)]
pub struct Meili {
    http: reqwest::Client,
    /// Base URL.
    pub url: String,
}

impl Meili {
    /// A client for `url`.
    pub fn new(url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    /// Sends a request; returns the status and the JSON body (`Null` when empty).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, serde_json::Value) {
        let (status, _, body) = self
            .send_for_headers(method, path, content_type, body)
            .await;
        (status, body)
    }

    /// A request with an optional JSON body; returns the status, the
    /// `X-Miroir-Degraded` header if any, and the JSON body.
    pub async fn degraded(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, Option<String>, serde_json::Value) {
        let (content_type, body) = match body {
            Some(body) => (
                Some("application/json"),
                Some(body.to_string().into_bytes()),
            ),
            None => (None, None),
        };
        let (status, headers, body) = self
            .send_for_headers(method, path, content_type, body)
            .await;
        let degraded = headers
            .get("x-miroir-degraded")
            .map(|v| v.to_str().expect("ASCII header").to_owned());
        (status, degraded, body)
    }

    /// [`Meili::send`], with the answer's headers.
    async fn send_for_headers(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(MASTER_KEY)
            .timeout(Duration::from_secs(30));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        (status, headers, value)
    }

    /// GET.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::GET, path, None, None).await
    }

    /// A JSON request.
    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.send(
            method,
            path,
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// POST JSON.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.json(reqwest::Method::POST, path, body).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::DELETE, path, None, None).await
    }

    /// Waits for a task to finish; returns it.
    pub async fn wait_task(&self, enqueued: &serde_json::Value) -> serde_json::Value {
        let uid = enqueued["taskUid"]
            .as_u64()
            .unwrap_or_else(|| panic!("not an enqueued task: {enqueued}"));
        wait_for(
            &format!("task {uid}"),
            Duration::from_secs(30),
            || async move {
                let (_, task) = self.get(&format!("/tasks/{uid}")).await;
                matches!(
                    task["status"].as_str(),
                    Some("succeeded" | "failed" | "canceled")
                )
                .then_some(task)
            },
        )
        .await
    }

    /// Sends a write and waits for its task to succeed.
    pub async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let (status, enqueued) = self.json(method, path, body).await;
        assert_eq!(status, 202, "{path}: {enqueued}");
        let task = self.wait_task(&enqueued).await;
        assert_eq!(task["status"], "succeeded", "{path}: {task}");
        task
    }

    /// Creates index `uid` with primary key `id` and waits for it.
    pub async fn create_index(&self, uid: &str) -> serde_json::Value {
        self.create_index_with(uid, serde_json::json!({})).await
    }

    /// Every document of index `uid` (up to 100 000), by id (as JSON text).
    pub async fn documents_by_id(
        &self,
        uid: &str,
    ) -> std::collections::BTreeMap<String, serde_json::Value> {
        let (status, answer) = self
            .get(&format!("/indexes/{uid}/documents?limit=100000"))
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|d| (d["id"].to_string(), d.clone()))
            .collect()
    }

    /// Every document of `shard` of index `uid` on this node, without `_miroir_shard`, by
    /// id (none when the node has no such index).
    pub async fn shard_documents(&self, uid: &str, shard: u32) -> ShardDocuments {
        let (status, answer) = self
            .post(
                &format!("/indexes/{uid}/documents/fetch"),
                serde_json::json!({"filter": miroir_proto::settings::shard_filter(&[shard]), "limit": 100000}),
            )
            .await;
        if status == 404 {
            return ShardDocuments::new();
        }
        assert_eq!(status, 200, "{answer}");
        answer["results"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| {
                let mut d = d.as_object()?.clone();
                d.remove("_miroir_shard");
                Some((d["id"].as_str()?.to_owned(), d))
            })
            .collect()
    }

    /// Waits until this node ran every task it was given.
    pub async fn quiesce(&self) {
        wait_for("node queue to drain", Duration::from_secs(60), || async {
            let (_, open) = self
                .get("/tasks?statuses=enqueued,processing&limit=1")
                .await;
            open["results"]
                .as_array()
                .is_some_and(Vec::is_empty)
                .then_some(())
        })
        .await;
    }

    /// [`Meili::create_index`] with more members in the body (a gateway's
    /// `miroirShardCount`, …).
    pub async fn create_index_with(
        &self,
        uid: &str,
        extra: serde_json::Value,
    ) -> serde_json::Value {
        let mut body = serde_json::json!({"uid": uid, "primaryKey": "id"});
        if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        self.ok(reqwest::Method::POST, "/indexes", body).await
    }
}

/// A real Postgres server on a loopback port, in its own temporary directory, stopped on
/// drop. Its binaries are found on `PATH` or in Debian's `/usr/lib/postgresql/*/bin`; run
/// as root, it runs as the `postgres` user (Postgres refuses root).
pub struct Postgres {
    child: Child,
    /// `postgres://miroir@127.0.0.1:PORT/postgres`.
    pub url: String,
    /// Where its data and log are.
    pub dir: tempfile::TempDir,
}

/// A Postgres server binary (`initdb`, `postgres`, `psql`).
pub fn postgres_binary(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if let Some(found) = on_path {
        return found;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin").join(name))
        .filter(|candidate| candidate.is_file())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("`{name}` not found: install Postgres (apt-get install postgresql)")
    })
}

/// uid and gid of the `postgres` user when this process is root (Postgres refuses to run
/// as root).
fn postgres_user() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?;
    if uid != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let fields: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))?
        .split(':')
        .collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

impl Postgres {
    /// Initializes a cluster (trust authentication, user `miroir`) and starts it.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let user = postgres_user();
        if user.is_some() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("chmod");
        }
        let as_postgres = |program: PathBuf| {
            let mut command = Command::new(program);
            if let Some((uid, gid)) = user {
                command.uid(uid).gid(gid);
            }
            command
        };
        let data = dir.path().join("data");
        let init = as_postgres(postgres_binary("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "miroir", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log");
        let child = as_postgres(postgres_binary("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start postgres");
        let mut postgres = Self {
            child,
            url: format!("postgres://miroir@127.0.0.1:{port}/postgres"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while postgres.psql("SELECT 1").await.is_none() {
            if let Ok(Some(status)) = postgres.child.try_wait() {
                panic!(
                    "postgres exited with {status}:\n{}",
                    std::fs::read_to_string(postgres.dir.path().join("postgres.log"))
                        .unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "postgres did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        postgres
    }

    /// Runs one SQL statement with `psql`; its unaligned output, or `None` if it failed.
    pub async fn psql(&self, sql: &str) -> Option<String> {
        let output = Command::new(postgres_binary("psql"))
            .arg(&self.url)
            .args(["-tAX", "-c", sql])
            .output()
            .await
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

/// The CA that signed the test TLS certificate (`proto/testdata/tls/ca.pem`; the
/// certificate names `localhost` and `127.0.0.1`).
pub fn test_ca() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto/testdata/tls/ca.pem")
}

/// A real Redis server on a loopback port, without persistence, stopped on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    user: Option<(String, String)>,
    /// TLS only (`rediss://`), with the test CA's certificate (`proto/testdata/tls`).
    tls: bool,
    /// `redis://[USER:PASSWORD@]127.0.0.1:PORT`.
    pub url: String,
}

impl RedisServer {
    /// Starts `redis-server` (from `PATH`, or `/usr/bin`) and waits until it answers.
    pub async fn start() -> Self {
        Self::start_on(free_port(), None, false).await
    }

    /// Same, serving TLS only (`rediss://127.0.0.1:PORT`) with a certificate signed by
    /// [`test_ca`].
    pub async fn start_tls() -> Self {
        Self::start_on(free_port(), None, true).await
    }

    /// Same, with an ACL user (the default user off): clients must log in as it.
    pub async fn start_with_user(user: &str, password: &str) -> Self {
        Self::start_on(
            free_port(),
            Some((user.to_owned(), password.to_owned())),
            false,
        )
        .await
    }

    async fn start_on(port: u16, user: Option<(String, String)>, tls: bool) -> Self {
        let program = ["redis-server", "/usr/bin/redis-server"]
            .into_iter()
            .find(|p| {
                std::process::Command::new(p)
                    .arg("--version")
                    .output()
                    .is_ok()
            })
            .expect("redis-server not found: install it (apt-get install redis-server)");
        let tls_dir = test_ca().parent().expect("tls dir").to_owned();
        let mut args = if tls {
            vec![
                "--port".to_owned(),
                "0".to_owned(),
                "--tls-port".to_owned(),
                port.to_string(),
                "--tls-cert-file".to_owned(),
                tls_dir.join("node.pem").display().to_string(),
                "--tls-key-file".to_owned(),
                tls_dir.join("node.key").display().to_string(),
                "--tls-ca-cert-file".to_owned(),
                test_ca().display().to_string(),
                "--tls-auth-clients".to_owned(),
                "no".to_owned(),
            ]
        } else {
            vec!["--port".to_owned(), port.to_string()]
        };
        args.extend([
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
            "--save".to_owned(),
            String::new(),
            "--appendonly".to_owned(),
            "no".to_owned(),
        ]);
        if let Some((name, password)) = &user {
            // One argument per ACL rule: redis-server joins them itself.
            args.extend(
                [
                    "--user",
                    name,
                    "on",
                    &format!(">{password}"),
                    "~*",
                    "&*",
                    "+@all",
                    "--user",
                    "default",
                    "off",
                ]
                .map(str::to_owned),
            );
        }
        let child = Command::new(program)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        let address = format!("127.0.0.1:{port}");
        let hello = match &user {
            Some((name, password)) => format!("AUTH {name} {password}\r\nPING\r\n"),
            None => "PING\r\n".to_owned(),
        };
        let expected: &[u8] = if user.is_some() {
            b"+OK\r\n+PONG\r\n"
        } else {
            b"+PONG\r\n"
        };
        wait_for("redis to answer", Duration::from_secs(20), || async {
            if tls {
                // redis-cli (Debian's redis-tools, beside redis-server) speaks TLS.
                let output = Command::new("redis-cli")
                    .args(["--tls", "--cacert"])
                    .arg(test_ca())
                    .args(["-p", &port.to_string(), "PING"])
                    .output()
                    .await
                    .ok()?;
                return String::from_utf8_lossy(&output.stdout)
                    .contains("PONG")
                    .then_some(());
            }
            let mut stream = tokio::net::TcpStream::connect(&address).await.ok()?;
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream.write_all(hello.as_bytes()).await.ok()?;
            let mut answer = vec![0u8; expected.len()];
            stream.read_exact(&mut answer).await.ok()?;
            (answer == expected).then_some(())
        })
        .await;
        let scheme = if tls { "rediss" } else { "redis" };
        let url = match &user {
            Some((name, password)) => format!("{scheme}://{name}:{password}@{address}"),
            None => format!("{scheme}://{address}"),
        };
        Self {
            child,
            port,
            user,
            tls,
            url,
        }
    }

    /// `kill -9`: everything it held is gone (no persistence).
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// `SIGSTOP`: connections stay open and nothing answers. [`RedisServer::unhang`]
    /// resumes it.
    pub fn hang(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Resumes a server [`RedisServer::hang`] stopped.
    pub fn unhang(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("redis-server is running");
        // SAFETY: kill(2) on a child process this handle owns and has not reaped.
        let result = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal})");
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill().await;
        *self = Self::start_on(self.port, self.user.clone(), self.tls).await;
    }
}

/// The address a process of ours prints first on stdout (`listening on ADDR`).
async fn announced_address(child: &mut Child, what: &str) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what} announces its address"))
        .expect("read stdout")
        .expect("a line");
    line.strip_prefix("listening on ")
        .expect("`listening on ADDR`")
        .to_owned()
}

/// One span as [`OtlpReceiver`] received it.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedSpan {
    /// `service.name` of the process that exported it.
    pub service: Option<String>,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A running `miroir-otlp-receiver`: an OTLP/gRPC trace receiver in its own process.
pub struct OtlpReceiver {
    _child: Child,
    /// Its OTLP endpoint, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    out: PathBuf,
}

impl OtlpReceiver {
    /// Starts one writing into `dir`.
    pub async fn start(dir: &Path) -> Self {
        let out = dir.join(format!("spans-{}.jsonl", uuid::Uuid::now_v7()));
        let mut child = Command::new(binary("miroir-otlp-receiver"))
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start miroir-otlp-receiver");
        let address = announced_address(&mut child, "miroir-otlp-receiver").await;
        Self {
            _child: child,
            endpoint: format!("http://{address}"),
            out,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}
