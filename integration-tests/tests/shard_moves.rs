//! Shard moves (issue 6, DESIGN §6): node add, drain, group add and a failed node's
//! repair while several clients write through two gateways, checked against a model of
//! the acknowledged history; a control-plane leader killed mid-move; movement kept to
//! what must move; reads complete and without duplicates throughout.
//!
//! The model: each document's operations are serialized (a client holds the document
//! while its request is in flight), and consecutive operations on one document come from
//! different clients through different gateways. An acknowledged (202) write fixes the
//! document's expected state; an unacknowledged one makes it unknown (it may or may not
//! have applied), and unknown documents are only required to agree across replicas.

use miroir_integration_tests::{
    ControlPlane, ControlPlaneOptions, Gateway, Meili, NodeKind, Postgres, TestNode, wait_for,
};
use miroir_proto::pb::{self, NodeState};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const INDEX: &str = "docs";

/// What a document should be after the history.
#[derive(Clone, Debug, PartialEq)]
enum Expected {
    Present(serde_json::Map<String, Value>),
    Absent,
    Unknown,
}

/// A small deterministic generator (no RNG crate needed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Clients writing through gateways while a move runs.
struct Workload {
    docs: Arc<Vec<Mutex<Expected>>>,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    clients: Vec<tokio::task::JoinHandle<()>>,
    hot: Arc<std::sync::Mutex<Vec<HotWrite>>>,
    /// The longest any write took, in milliseconds.
    slowest_ms: Arc<AtomicU64>,
}

/// One write to a hot document: hot documents take concurrent replacements from every
/// client at once (no per-document order), so only the final state's legality is known.
#[derive(Clone, Debug)]
struct HotWrite {
    id: String,
    value: serde_json::Map<String, Value>,
    started: Instant,
    ended: Instant,
    acked: bool,
}

/// What the clients did.
struct History {
    expected: Vec<Expected>,
    hot: Vec<HotWrite>,
    acknowledged: u64,
    refused: u64,
    slowest_ms: u64,
}

fn doc_id(i: usize) -> String {
    format!("d{i}")
}

impl Workload {
    /// `pool` documents, the first `initial` of them present (already written and
    /// acknowledged), then `clients` clients writing through `gateways`; with `hot` > 0,
    /// a quarter of the operations are concurrent replacements of `hot` shared documents.
    fn start(
        gateways: Vec<String>,
        pool: usize,
        initial: usize,
        clients: usize,
        hot: usize,
    ) -> Self {
        let hot_writes: Arc<std::sync::Mutex<Vec<HotWrite>>> = Arc::default();
        let docs: Arc<Vec<Mutex<Expected>>> = Arc::new(
            (0..pool)
                .map(|i| {
                    Mutex::new(if i < initial {
                        Expected::Present(initial_doc(i))
                    } else {
                        Expected::Absent
                    })
                })
                .collect(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let slowest_ms = Arc::new(AtomicU64::new(0));
        let gateways: Arc<Vec<Meili>> = Arc::new(gateways.iter().map(|g| Meili::new(g)).collect());
        let clients = (0..clients)
            .map(|c| {
                let (docs, stop, acknowledged, refused, gateways, hot_writes, slowest_ms) = (
                    docs.clone(),
                    stop.clone(),
                    acknowledged.clone(),
                    refused.clone(),
                    gateways.clone(),
                    hot_writes.clone(),
                    slowest_ms.clone(),
                );
                tokio::spawn(async move {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((c as u64 + 1) * 0x1000_0001));
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let gateway = &gateways[rng.below(gateways.len())];
                        if hot > 0 && rng.below(4) == 0 {
                            let id = format!("h{}", rng.below(hot));
                            let value = json!({"id": id, "title": format!("hot {c}x{n}"), "n": n, "client": c});
                            let started = Instant::now();
                            let (status, _) = gateway
                                .post(&format!("/indexes/{INDEX}/documents"), json!([value]))
                                .await;
                            let write = HotWrite {
                                id,
                                value: value.as_object().cloned().unwrap_or_default(),
                                started,
                                ended: Instant::now(),
                                acked: status == 202,
                            };
                            if write.acked {
                                acknowledged.fetch_add(1, Ordering::Relaxed);
                            }
                            hot_writes.lock().unwrap_or_else(|e| e.into_inner()).push(write);
                            continue;
                        }
                        let i = rng.below(docs.len());
                        let mut doc = docs[i].lock().await;
                        let id = doc_id(i);
                        let op = rng.below(4);
                        let started = Instant::now();
                        let (status, answer) = match op {
                            0 | 1 => {
                                let body = json!([{"id": id, "title": format!("t{c}x{n}"), "n": n, "client": c}]);
                                gateway.post(&format!("/indexes/{INDEX}/documents"), body).await
                            }
                            2 => {
                                let body = json!([{"id": id, "patch": n}]);
                                gateway
                                    .json(Method::PUT, &format!("/indexes/{INDEX}/documents"), body)
                                    .await
                            }
                            _ => gateway.delete(&format!("/indexes/{INDEX}/documents/{id}")).await,
                        };
                        slowest_ms.fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                        if status != 202 {
                            if refused.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("write refused: {status} {answer}");
                            }
                            *doc = Expected::Unknown;
                            continue;
                        }
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                        *doc = match (op, &*doc) {
                            (0 | 1, _) => Expected::Present(
                                json!({"id": id, "title": format!("t{c}x{n}"), "n": n, "client": c})
                                    .as_object()
                                    .cloned()
                                    .unwrap_or_default(),
                            ),
                            // Meilisearch's update creates a missing document from the patch.
                            (2, Expected::Present(d)) => {
                                let mut d = d.clone();
                                d.insert("patch".into(), json!(n));
                                Expected::Present(d)
                            }
                            (2, Expected::Absent) => Expected::Present(
                                json!({"id": id, "patch": n}).as_object().cloned().unwrap_or_default(),
                            ),
                            (2, Expected::Unknown) => Expected::Unknown,
                            _ => Expected::Absent,
                        };
                    }
                })
            })
            .collect();
        Self {
            docs,
            stop,
            acknowledged,
            refused,
            clients,
            hot: hot_writes,
            slowest_ms,
        }
    }

    /// Waits until more than `writes` writes were acknowledged: a change that ends fast
    /// leaves the clients too little time otherwise.
    async fn until_acknowledged(&self, writes: u64) {
        let acknowledged = self.acknowledged.clone();
        wait_for(
            &format!("more than {writes} acknowledged writes"),
            Duration::from_secs(60),
            || {
                let acknowledged = acknowledged.clone();
                async move { (acknowledged.load(Ordering::Relaxed) > writes).then_some(()) }
            },
        )
        .await
    }

    /// Stops the clients; what they did.
    async fn finish(self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.await.expect("client");
        }
        let mut expected = Vec::new();
        for doc in self.docs.iter() {
            expected.push(doc.lock().await.clone());
        }
        let hot = self.hot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        History {
            expected,
            hot,
            acknowledged: self.acknowledged.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            slowest_ms: self.slowest_ms.load(Ordering::Relaxed),
        }
    }
}

/// Whether `held` can be a hot document's final state: the value of a write that was not
/// acknowledged (it may apply at any time) or of an acknowledged one that no later
/// acknowledged write (started after it was acknowledged) overwrote; absent only if no
/// write was acknowledged.
fn legal_final(writes: &[&HotWrite], held: Option<&serde_json::Map<String, Value>>) -> bool {
    let Some(held) = held else {
        return !writes.iter().any(|w| w.acked);
    };
    writes.iter().any(|w| {
        &w.value == held
            && (!w.acked
                || !writes
                    .iter()
                    .any(|later| later.acked && later.started > w.ended))
    })
}

fn initial_doc(i: usize) -> serde_json::Map<String, Value> {
    json!({"id": doc_id(i), "title": format!("initial {i}"), "n": 0, "client": 99})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// Creates the index through the gateway and writes the first `initial` documents.
async fn seed(gateway: &Meili, shards: u32, rf: u32, initial: usize) {
    gateway
        .ok(
            Method::POST,
            "/indexes",
            json!({"uid": INDEX, "primaryKey": "id", "miroirShardCount": shards, "miroirReplicationFactor": rf}),
        )
        .await;
    let docs: Vec<Value> = (0..initial)
        .map(|i| Value::Object(initial_doc(i)))
        .collect();
    for chunk in docs.chunks(1000) {
        gateway
            .ok(
                Method::POST,
                &format!("/indexes/{INDEX}/documents"),
                json!(chunk),
            )
            .await;
    }
}

/// Checks the fleet against the model: every replica of every shard holds exactly the
/// acknowledged state of its documents and agrees with the others, no node holds a shard
/// it does not own, and the gateway's answers equal a single node's holding the same.
async fn check_against_model(
    cp: &ControlPlane,
    nodes: &BTreeMap<String, &TestNode>,
    gateway: &Meili,
    history: &History,
) {
    let expected = &history.expected;
    let all: Vec<&TestNode> = nodes.values().copied().collect();
    for node in &all {
        Meili::new(&node.url).quiesce().await;
    }
    let topology = cp.current_topology().await;
    assert!(
        topology.moves.is_empty(),
        "moves left: {:?}",
        topology.moves
    );
    let index = topology
        .indexes
        .iter()
        .find(|i| i.uid == INDEX)
        .expect("index");
    let shard_of = |id: &str| miroir_proto::placement::shard_for_key(id, index.shard_count).0;
    // What a single node replaying the acknowledged history holds; unknown documents
    // take the state the replicas agree on.
    let mut replay: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    let mut agreed: HashMap<u32, BTreeMap<String, serde_json::Map<String, Value>>> = HashMap::new();
    for routing in &index.routing {
        for route in &routing.shards {
            assert!(!route.blocked, "shard {} still blocked", route.shard);
            assert!(
                route.stale_nodes.is_empty(),
                "shard {} has stale copies left: {:?}",
                route.shard,
                route.stale_nodes
            );
            assert_eq!(
                route.read_nodes, route.write_nodes,
                "shard {} still moving",
                route.shard
            );
            let mut copies = Vec::new();
            for owner in &route.read_nodes {
                let node = Meili::new(&nodes[owner].url);
                copies.push((
                    owner.clone(),
                    node.shard_documents(INDEX, route.shard).await,
                ));
            }
            let (first_owner, first) = copies.first().cloned().expect("an owner");
            for (owner, copy) in &copies {
                assert_eq!(
                    copy, &first,
                    "replicas {first_owner} and {owner} of shard {} (group {}) differ",
                    route.shard, routing.group_id
                );
            }
            if let Some(other) = agreed.get(&route.shard) {
                assert_eq!(other, &first, "groups differ on shard {}", route.shard);
            }
            agreed.insert(route.shard, first);
        }
    }
    let mut lost = Vec::new();
    let mut resurrected = Vec::new();
    for (i, state) in expected.iter().enumerate() {
        let id = doc_id(i);
        let held = agreed.get(&shard_of(&id)).and_then(|s| s.get(&id));
        match state {
            Expected::Present(doc) => {
                if held != Some(doc) {
                    lost.push(format!("{id}: expected {doc:?}, held {held:?}"));
                }
                replay.insert(id, doc.clone());
            }
            Expected::Absent => {
                if held.is_some() {
                    resurrected.push(id);
                }
            }
            Expected::Unknown => {
                if let Some(doc) = held {
                    replay.insert(id, doc.clone());
                }
            }
        }
    }
    let mut hot_ids: BTreeSet<&String> = history.hot.iter().map(|w| &w.id).collect();
    for id in std::mem::take(&mut hot_ids) {
        let writes: Vec<&HotWrite> = history.hot.iter().filter(|w| &w.id == id).collect();
        let held = agreed.get(&shard_of(id)).and_then(|s| s.get(id));
        if !legal_final(&writes, held) {
            lost.push(format!("hot {id}: held {held:?} is no legal final state"));
        }
        if let Some(doc) = held {
            replay.insert(id.clone(), doc.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost or wrong: {lost:?}",
        lost.len()
    );
    assert!(
        resurrected.is_empty(),
        "deleted documents came back: {resurrected:?}"
    );
    // No node keeps a copy of a shard it does not own (cleanup ran everywhere).
    for (id, node) in nodes {
        let meili = Meili::new(&node.url);
        for shard in 0..index.shard_count {
            let owns = index
                .routing
                .iter()
                .any(|r| r.shards[shard as usize].read_nodes.contains(id));
            if !owns {
                let left = meili.shard_documents(INDEX, shard).await;
                assert!(
                    left.is_empty(),
                    "node {id} still holds {} documents of shard {shard}",
                    left.len()
                );
            }
        }
    }
    // The gateway answers like one node holding the replayed history.
    let (status, browse) = gateway
        .get(&format!("/indexes/{INDEX}/documents?limit=100000"))
        .await;
    assert_eq!(status, 200, "{browse}");
    let served: Vec<String> = browse["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect();
    let unique: BTreeSet<&String> = served.iter().collect();
    assert_eq!(unique.len(), served.len(), "a document is served twice");
    let replayed: BTreeSet<&String> = replay.keys().collect();
    assert_eq!(
        unique, replayed,
        "documents served differ from the replayed history"
    );
    for document in browse["results"].as_array().expect("results") {
        let id = document["id"].as_str().expect("id");
        assert_eq!(
            Some(document.as_object().expect("object")),
            replay.get(id),
            "document {id}"
        );
    }
    let (_, search) = gateway
        .post(
            &format!("/indexes/{INDEX}/search"),
            json!({"q": "", "limit": 0}),
        )
        .await;
    assert_eq!(
        search["estimatedTotalHits"],
        json!(replay.len()),
        "{search}"
    );
}

/// A fleet: one control plane on SQLite, `groups[g]` nodes in group g, two gateways.
struct Fleet {
    _dir: tempfile::TempDir,
    cp: ControlPlane,
    nodes: Vec<(String, TestNode)>,
    gateways: Vec<Gateway>,
}

impl Fleet {
    async fn start(groups: &[usize]) -> Self {
        Self::start_kind(groups, NodeKind::Meilisearch).await
    }

    async fn start_kind(groups: &[usize], kind: NodeKind) -> Self {
        Self::start_with(groups, kind, &[]).await
    }

    async fn start_with(groups: &[usize], kind: NodeKind, gateway_args: &[&str]) -> Self {
        let (dir, cp) = crate::fresh_control_plane_with(ControlPlaneOptions::short_leases()).await;
        let mut nodes = Vec::new();
        for (group, &count) in groups.iter().enumerate() {
            for i in 0..count {
                let id = format!("g{group}n{i}");
                let node = TestNode::start_kind(kind).await;
                cp.add_node(&id, &node.url, group as u32)
                    .await
                    .expect("add node");
                nodes.push((id, node));
            }
        }
        for (id, _) in &nodes {
            cp.wait_node_state(id, NodeState::Active).await;
        }
        let mut gateways = Vec::new();
        for _ in 0..2 {
            let gateway = Gateway::start(dir.path(), &cp.url(), gateway_args).await;
            gateway
                .wait_version(cp.current_topology().await.version)
                .await;
            gateway.wait_writable().await;
            gateways.push(gateway);
        }
        Self {
            _dir: dir,
            cp,
            nodes,
            gateways,
        }
    }

    fn gateway_urls(&self) -> Vec<String> {
        self.gateways.iter().map(|g| g.url.clone()).collect()
    }

    fn node_map(&self) -> BTreeMap<String, &TestNode> {
        self.nodes.iter().map(|(id, n)| (id.clone(), n)).collect()
    }
}

/// Follows operation `id` until it finishes; its final record.
pub async fn wait_operation(cp: &ControlPlane, id: u64, timeout: Duration) -> pb::Operation {
    let started = Instant::now();
    let operation = wait_for(&format!("operation {id}"), timeout, || async {
        let response = cp
            .admin()
            .await
            .get_operation(pb::OperationRequest { id })
            .await
            .ok()?
            .into_inner();
        let op = response.operation?;
        matches!(
            op.state(),
            pb::OperationState::Succeeded | pb::OperationState::Cancelled
        )
        .then_some(op)
    })
    .await;
    println!(
        "operation {id} ({}) {:?} in {:?}: {}/{} moves, {} documents copied, longest write hold {} ms",
        operation.description,
        operation.state(),
        started.elapsed(),
        operation.moves_done,
        operation.moves_total,
        operation.documents_copied,
        operation.blocked_ms.iter().max().copied().unwrap_or(0)
    );
    operation
}

/// Runs the workload around `change` (which starts an operation and returns its id),
/// waits for the operation and checks the model. `hot` documents take concurrent writes:
/// only where each shard has one copy, as replicas that receive concurrent writes to one
/// document in different orders keep different outcomes (docs/shard-moves.md).
async fn under_writes<F, Fut>(fleet: &Fleet, hot: usize, change: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let workload = Workload::start(fleet.gateway_urls(), 400, 300, 4, hot);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = change().await;
    let op = wait_operation(&fleet.cp, id, Duration::from_secs(120)).await;
    assert_eq!(op.state(), pb::OperationState::Succeeded);
    // Keep writing a little on the new layout.
    tokio::time::sleep(Duration::from_millis(300)).await;
    workload.until_acknowledged(100).await;
    let history = workload.finish().await;
    let (acknowledged, refused) = (history.acknowledged, history.refused);
    println!(
        "workload: {acknowledged} writes acknowledged ({} to hot documents), {refused} refused",
        history.hot.iter().filter(|w| w.acked).count()
    );
    assert!(
        acknowledged > 100,
        "too few writes to mean anything: {acknowledged}"
    );
    // Writes to a shard in cutover wait for it rather than fail.
    assert_eq!(refused, 0, "writes refused during the operation");
    let gateway = Meili::new(&fleet.gateways[0].url);
    check_against_model(&fleet.cp, &fleet.node_map(), &gateway, &history).await;
}

#[tokio::test]
async fn adding_a_node_under_concurrent_writes_loses_nothing() {
    let mut fleet = Fleet::start(&[3]).await;
    seed(&Meili::new(&fleet.gateways[0].url), 8, 1, 300).await;
    let new = TestNode::start().await;
    let url = new.url.clone();
    fleet.nodes.push(("g0n3".into(), new));
    let cp = &fleet.cp;
    under_writes(&fleet, 5, || async {
        let response = cp.add_node("g0n3", &url, 0).await.expect("add node");
        response.operation_id.expect("an operation")
    })
    .await;
    let topology = fleet.cp.current_topology().await;
    let index = topology.indexes.iter().find(|i| i.uid == INDEX).unwrap();
    let held = index.routing[0]
        .shards
        .iter()
        .filter(|s| s.read_nodes.contains(&"g0n3".to_string()))
        .count();
    assert_eq!(held, 2, "8 shards over 4 nodes: the new node holds 2");
}

#[tokio::test]
async fn draining_a_node_under_concurrent_writes_loses_nothing() {
    let fleet = Fleet::start(&[3]).await;
    seed(&Meili::new(&fleet.gateways[0].url), 8, 1, 300).await;
    let cp = &fleet.cp;
    under_writes(&fleet, 5, || async {
        let response = cp
            .admin()
            .await
            .drain_node(pb::DrainNodeRequest { id: "g0n2".into() })
            .await
            .expect("drain")
            .into_inner();
        response.operation_id.expect("an operation")
    })
    .await;
    // Empty now: it can be removed.
    fleet
        .cp
        .admin()
        .await
        .remove_node(pb::RemoveNodeRequest { id: "g0n2".into() })
        .await
        .expect("a drained node is removable");
}

#[tokio::test]
async fn adding_a_group_under_concurrent_writes_fills_it() {
    let mut fleet = Fleet::start(&[2]).await;
    seed(&Meili::new(&fleet.gateways[0].url), 8, 1, 300).await;
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let nodes = vec![
        pb::NodeSpec {
            id: "g1n0".into(),
            address: a.url.clone(),
        },
        pb::NodeSpec {
            id: "g1n1".into(),
            address: b.url.clone(),
        },
    ];
    fleet.nodes.push(("g1n0".into(), a));
    fleet.nodes.push(("g1n1".into(), b));
    let cp = &fleet.cp;
    under_writes(&fleet, 0, || async {
        let response = cp
            .admin()
            .await
            .add_group(pb::AddGroupRequest { id: Some(1), nodes })
            .await
            .expect("add group")
            .into_inner();
        response.operation_id.expect("an operation")
    })
    .await;
    let topology = fleet.cp.current_topology().await;
    assert_eq!(
        topology
            .groups
            .iter()
            .find(|g| g.id == 1)
            .map(|g| g.state()),
        Some(pb::GroupState::Active)
    );
}

#[tokio::test]
async fn a_failed_node_is_repaired_from_the_other_group() {
    let mut fleet = Fleet::start(&[2, 2]).await;
    seed(&Meili::new(&fleet.gateways[0].url), 8, 1, 300).await;
    // g0n1 dies; its shards are read from group 1 meanwhile.
    let position = fleet.nodes.iter().position(|(id, _)| id == "g0n1").unwrap();
    let (_, mut dead) = fleet.nodes.remove(position);
    dead.kill().await;
    fleet.cp.wait_node_state("g0n1", NodeState::Failed).await;
    let cp = &fleet.cp;
    under_writes(&fleet, 0, || async {
        let response = cp
            .admin()
            .await
            .repair_node(pb::RepairNodeRequest { id: "g0n1".into() })
            .await
            .expect("repair")
            .into_inner();
        response.operation_id.expect("an operation")
    })
    .await;
    let topology = fleet.cp.current_topology().await;
    assert!(
        !topology.nodes.iter().any(|n| n.id == "g0n1"),
        "a repaired node leaves the fleet"
    );
}

/// Issue 24, point 5: with RF 2 in one group, a replica killed with -9 under writes does
/// not make writes fail. The gateways report it, the leader marks it failed and its copies
/// stale, and the writes to its shards are acknowledged by the in-sync copies left. Once
/// back, its copies are caught up before they serve, and every replica equals the model.
#[tokio::test]
async fn writes_stay_available_through_a_killed_replica_and_it_catches_up() {
    through_a_replica_failure(Failure::Kill).await;
}

/// The same with a replica hung by `SIGSTOP` (a gray failure): its calls neither fail nor
/// answer, so the gateways report it after `--node-report-after`.
#[tokio::test]
async fn writes_stay_available_through_a_hung_replica_and_it_catches_up() {
    through_a_replica_failure(Failure::Hang).await;
}

enum Failure {
    Kill,
    Hang,
}

async fn through_a_replica_failure(failure: Failure) {
    // Generous waits (a node's detection, and a catch-up's last pass, which holds a
    // shard's writes like a move's cutover and lasts longer on a loaded machine): the test
    // checks that no write is refused, and prints how long the longest one took
    // (docs/reliability.md has the figures with the defaults, from the chaos runs).
    let mut fleet = Fleet::start_with(
        &[4],
        NodeKind::Meilisearch,
        &[
            "--write-failover-wait",
            "10s",
            "--cutover-write-wait",
            "30s",
        ],
    )
    .await;
    seed(&Meili::new(&fleet.gateways[0].url), 8, 2, 300).await;
    let workload = Workload::start(fleet.gateway_urls(), 400, 300, 4, 0);
    workload.until_acknowledged(50).await;
    let position = fleet.nodes.iter().position(|(id, _)| id == "g0n1").unwrap();
    let failed_at = Instant::now();
    match failure {
        Failure::Kill => fleet.nodes[position].1.down().await,
        Failure::Hang => fleet.nodes[position].1.hang(),
    }
    fleet.cp.wait_node_state("g0n1", NodeState::Failed).await;
    println!(
        "g0n1 marked failed {:?} after its fault",
        failed_at.elapsed()
    );
    let before = workload.acknowledged.load(Ordering::Relaxed);
    workload.until_acknowledged(before + 150).await;
    let down_for = failed_at.elapsed();
    match failure {
        Failure::Kill => fleet.nodes[position].1.up().await,
        Failure::Hang => fleet.nodes[position].1.unhang(),
    }
    let cp = &fleet.cp;
    cp.wait_node_state("g0n1", NodeState::Active).await;
    cp.wait_in_sync(Duration::from_secs(120)).await;
    println!(
        "g0n1 down {down_for:?}, in sync again {:?} after its fault",
        failed_at.elapsed()
    );
    let after = workload.acknowledged.load(Ordering::Relaxed);
    workload.until_acknowledged(after + 50).await;
    let history = workload.finish().await;
    println!(
        "workload: {} writes acknowledged, {} refused, slowest write {} ms",
        history.acknowledged, history.refused, history.slowest_ms
    );
    assert_eq!(
        history.refused, 0,
        "writes refused while a replica was down"
    );
    let gateway = Meili::new(&fleet.gateways[0].url);
    check_against_model(&fleet.cp, &fleet.node_map(), &gateway, &history).await;
}

#[tokio::test]
async fn only_the_shards_that_must_move_move_and_reads_stay_whole() {
    let mut fleet = Fleet::start(&[3]).await;
    let gateway = Meili::new(&fleet.gateways[0].url);
    let total = 4000;
    seed(&gateway, 16, 1, total).await;
    // Readers during the move: totals and stats always complete, never a document twice.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, url) = (stop.clone(), fleet.gateways[1].url.clone());
        tokio::spawn(async move {
            let meili = Meili::new(&url);
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let (_, page) = meili
                    .get(&format!(
                        "/indexes/{INDEX}/documents?limit=100000&fields=id"
                    ))
                    .await;
                let ids: Vec<&str> = page["results"]
                    .as_array()
                    .expect("results")
                    .iter()
                    .filter_map(|d| d["id"].as_str())
                    .collect();
                let unique: BTreeSet<&str> = ids.iter().copied().collect();
                assert_eq!(
                    (ids.len(), unique.len()),
                    (total, total),
                    "browse during a move"
                );
                assert_eq!(page["total"], json!(total), "browse total during a move");
                let (_, stats) = meili.get(&format!("/indexes/{INDEX}/stats")).await;
                assert_eq!(
                    stats["numberOfDocuments"],
                    json!(total),
                    "stats during a move: {stats}"
                );
                reads += 1;
            }
            reads
        })
    };
    let counts_before = shard_counts(&fleet).await;
    let new = TestNode::start().await;
    let id = fleet
        .cp
        .add_node("g0n3", &new.url, 0)
        .await
        .expect("add")
        .operation_id
        .expect("an operation");
    fleet.nodes.push(("g0n3".into(), new));
    let op = wait_operation(&fleet.cp, id, Duration::from_secs(120)).await;
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.expect("reader");
    let topology = fleet.cp.current_topology().await;
    let index = topology.indexes.iter().find(|i| i.uid == INDEX).unwrap();
    let moved: Vec<u32> = index.routing[0]
        .shards
        .iter()
        .filter(|s| s.read_nodes == vec!["g0n3".to_string()])
        .map(|s| s.shard)
        .collect();
    let optimal: u64 = moved.iter().map(|s| counts_before[s]).sum();
    let ratio = op.documents_copied as f64 / optimal as f64;
    println!(
        "node add: {} of 16 shards moved (4 is the fewest that balance 4 nodes), {} documents copied, {optimal} in the moved shards (ratio {ratio:.3}; {:.1}% of all {total}); {reads} complete reads during the move",
        moved.len(),
        op.documents_copied,
        100.0 * op.documents_copied as f64 / total as f64
    );
    assert_eq!(moved.len(), 4);
    assert!(ratio <= 1.1, "copied {ratio:.3} x the optimal");
    assert!(reads > 0);
}

/// Documents per shard, counted on the owners.
async fn shard_counts(fleet: &Fleet) -> HashMap<u32, u64> {
    let topology = fleet.cp.current_topology().await;
    let index = topology.indexes.iter().find(|i| i.uid == INDEX).unwrap();
    let nodes = fleet.node_map();
    let mut counts = HashMap::new();
    for route in &index.routing[0].shards {
        let node = Meili::new(&nodes[&route.read_nodes[0]].url);
        counts.insert(
            route.shard,
            node.shard_documents(INDEX, route.shard).await.len() as u64,
        );
    }
    counts
}

#[tokio::test]
async fn a_leader_killed_mid_move_is_resumed_by_the_next() {
    let postgres = Postgres::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = ControlPlaneOptions::short_leases();
    options
        .extra_args
        .extend(["--leader-lease-ttl", "2s"].map(String::from));
    let mut cps = Vec::new();
    for _ in 0..2 {
        cps.push(ControlPlane::start(dir.path(), &postgres.url, &options).await);
    }
    let addresses = cps.iter().map(|c| c.url()).collect::<Vec<_>>().join(",");
    let leader = wait_for("a leader", Duration::from_secs(20), || async {
        for (i, cp) in cps.iter().enumerate() {
            let info = cp
                .admin()
                .await
                .get_leader(pb::GetLeaderRequest {})
                .await
                .ok()?
                .into_inner();
            if info.is_self {
                return Some(i);
            }
        }
        None
    })
    .await;
    let mut nodes = Vec::new();
    for i in 0..3 {
        let id = format!("g0n{i}");
        let node = TestNode::start().await;
        cps[leader].add_node(&id, &node.url, 0).await.expect("add");
        nodes.push((id, node));
    }
    for (id, _) in &nodes {
        cps[leader].wait_node_state(id, NodeState::Active).await;
    }
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let gateway = Gateway::start(dir.path(), &addresses, &[]).await;
        gateway
            .wait_version(cps[leader].current_topology().await.version)
            .await;
        gateway.wait_writable().await;
        gateways.push(gateway);
    }
    seed(&Meili::new(&gateways[0].url), 8, 1, 300).await;
    let urls: Vec<String> = gateways.iter().map(|g| g.url.clone()).collect();
    let workload = Workload::start(urls, 400, 300, 4, 5);
    // Slow the new node so the move is still copying when the leader dies.
    let new = TestNode::start().await;
    if !new.real {
        new.set_faults(json!({"latencyMs": 100})).await;
    }
    let id = cps[leader]
        .add_node("g0n3", &new.url, 0)
        .await
        .expect("add")
        .operation_id
        .expect("an operation");
    nodes.push(("g0n3".into(), new));
    wait_for("a move copying", Duration::from_secs(30), || async {
        let topology = cps[leader].current_topology().await;
        topology
            .moves
            .iter()
            .any(|m| m.phase() == pb::MovePhase::Copying)
            .then_some(())
    })
    .await;
    cps[leader].kill().await;
    let survivor = &cps[1 - leader];
    let left = survivor.current_topology().await.moves;
    println!(
        "leader killed with moves in phases {:?}",
        left.iter().map(|m| m.phase()).collect::<Vec<_>>()
    );
    assert!(
        !left.is_empty(),
        "the move must still be running when the leader dies"
    );
    let op = wait_operation(survivor, id, Duration::from_secs(120)).await;
    assert_eq!(op.state(), pb::OperationState::Succeeded);
    let info = survivor
        .admin()
        .await
        .get_leader(pb::GetLeaderRequest {})
        .await
        .expect("leader")
        .into_inner();
    assert!(info.is_self, "the survivor leads");
    if !nodes[3].1.real {
        nodes[3].1.set_faults(json!({"latencyMs": 0})).await;
    }
    let history = workload.finish().await;
    println!(
        "workload: {} writes acknowledged ({} to hot documents), {} refused",
        history.acknowledged,
        history.hot.iter().filter(|w| w.acked).count(),
        history.refused
    );
    let node_map: BTreeMap<String, &TestNode> =
        nodes.iter().map(|(id, n)| (id.clone(), n)).collect();
    check_against_model(survivor, &node_map, &Meili::new(&gateways[0].url), &history).await;
    let _ = &dir;
}

#[tokio::test]
async fn the_replication_factor_grows_and_shrinks_under_writes() {
    let fleet = Fleet::start(&[3]).await;
    seed(&Meili::new(&fleet.gateways[0].url), 8, 1, 300).await;
    let cp = &fleet.cp;
    let workload = Workload::start(fleet.gateway_urls(), 400, 300, 4, 0);
    for rf in [2, 1] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let response = cp
            .admin()
            .await
            .set_replication_factor(pb::SetReplicationFactorRequest {
                uid: INDEX.into(),
                replication_factor: rf,
            })
            .await
            .expect("set replication factor")
            .into_inner();
        let id = response.operation.expect("an operation").id;
        let op = wait_operation(cp, id, Duration::from_secs(120)).await;
        assert_eq!(op.state(), pb::OperationState::Succeeded);
        let index = cp.index(INDEX).await;
        assert_eq!(index.replication_factor, rf);
        assert!(
            index.routing[0]
                .shards
                .iter()
                .all(|s| s.read_nodes.len() == rf as usize)
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let history = workload.finish().await;
    println!(
        "workload: {} writes acknowledged, {} refused",
        history.acknowledged, history.refused
    );
    assert_eq!(history.refused, 0, "writes refused during the operations");
    let gateway = Meili::new(&fleet.gateways[0].url);
    check_against_model(cp, &fleet.node_map(), &gateway, &history).await;
}

#[tokio::test]
async fn operations_pause_resume_and_cancel_from_miroir_ctl() {
    let mut fleet = Fleet::start(&[3]).await;
    let gateway = Meili::new(&fleet.gateways[0].url);
    seed(&gateway, 8, 1, 300).await;
    let url = fleet.cp.url();
    // A slow new node keeps the moves in flight long enough to steer them.
    let new = TestNode::start().await;
    let slow = !new.real;
    if slow {
        new.set_faults(json!({"latencyMs": 150})).await;
    }
    let out = miroir_integration_tests::ctl(
        &url,
        &[
            "node",
            "add",
            "--id",
            "g0n3",
            "--address",
            &new.url,
            "--group",
            "0",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id: u64 = out
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "operation")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("an operation id in {}", out.stdout));
    fleet.nodes.push(("g0n3".into(), new));

    let out = miroir_integration_tests::ctl(&url, &["moves", "pause", &id.to_string()]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(": paused"), "{}", out.stdout);
    let listed = miroir_integration_tests::ctl(&url, &["moves"]).await;
    assert!(
        listed.stdout.contains(&format!(
            "operation {id} (add node g0n3 to group 0): paused"
        )),
        "{}",
        listed.stdout
    );
    // Paused: no move gets past cutover, and after a while the phases stand still.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let phases = |t: &pb::Topology| {
        t.moves
            .iter()
            .map(|m| (m.shard, m.phase))
            .collect::<Vec<_>>()
    };
    let before = phases(&fleet.cp.current_topology().await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = phases(&fleet.cp.current_topology().await);
    assert_eq!(before, after, "a paused operation's moves stand still");
    assert!(!after.is_empty(), "moves are still planned while paused");

    let out = miroir_integration_tests::ctl(&url, &["moves", "resume", &id.to_string()]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = miroir_integration_tests::ctl(&url, &["moves", "wait", &id.to_string()]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(": succeeded"), "{}", out.stdout);

    // A drain cancelled at once: every move rolls back, the node keeps its shards.
    let before = fleet.cp.index(INDEX).await.routing;
    let drain = fleet
        .cp
        .admin()
        .await
        .drain_node(pb::DrainNodeRequest { id: "g0n3".into() })
        .await
        .expect("drain")
        .into_inner()
        .operation_id
        .expect("an operation");
    let out = miroir_integration_tests::ctl(&url, &["moves", "cancel", &drain.to_string()]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let op = wait_operation(&fleet.cp, drain, Duration::from_secs(60)).await;
    assert_eq!(op.state(), pb::OperationState::Cancelled);
    let out = miroir_integration_tests::ctl(&url, &["moves", "wait", &drain.to_string()]).await;
    assert_eq!(
        out.code, 1,
        "waiting on a cancelled operation fails: {}",
        out.stdout
    );
    assert!(out.stderr.contains("was cancelled"), "{}", out.stderr);
    let index = fleet.cp.index(INDEX).await;
    assert_eq!(index.routing, before, "the routing is as before the drain");
    let nodes = fleet.node_map();
    if slow {
        nodes["g0n3"].set_faults(json!({"latencyMs": 0})).await;
    }
    let history = History {
        expected: (0..300)
            .map(|i| Expected::Present(initial_doc(i)))
            .collect(),
        hot: Vec::new(),
        acknowledged: 0,
        refused: 0,
        slowest_ms: 0,
    };
    check_against_model(&fleet.cp, &nodes, &gateway, &history).await;
}

#[tokio::test]
async fn a_write_held_longer_than_the_cutover_wait_gets_503_shard_moving() {
    // Test nodes: slow old owners (injected latency) make the cutover outlast the wait.
    let fleet = Fleet::start_kind(&[2], NodeKind::TestNode).await;
    let meili = Meili::new(&fleet.gateways[0].url);
    // 4 shards on 2 nodes: a third node takes one.
    seed(&meili, 4, 1, 200).await;
    // A gateway that waits only 50 ms for a cutover; slow old owners make it last longer.
    let impatient = Gateway::start(
        fleet._dir.path(),
        &fleet.cp.url(),
        &["--cutover-write-wait", "50ms"],
    )
    .await;
    impatient
        .wait_version(fleet.cp.current_topology().await.version)
        .await;
    impatient.wait_writable().await;
    for (_, node) in &fleet.nodes {
        node.set_faults(json!({"latencyMs": 150})).await;
    }
    let new = TestNode::start_test_node().await;
    let id = fleet
        .cp
        .add_node("g0n2", &new.url, 0)
        .await
        .expect("add")
        .operation_id
        .expect("an operation");
    let client = reqwest::Client::new();
    let refused = wait_for(
        "a write refused by a cutover",
        Duration::from_secs(60),
        || async {
            let batch: Vec<Value> = (0..200).map(|i| json!({"id": doc_id(i), "x": 1})).collect();
            let response = client
                .post(format!("{}/indexes/{INDEX}/documents", impatient.url))
                .bearer_auth(miroir_integration_tests::MASTER_KEY)
                .json(&batch)
                .send()
                .await
                .ok()?;
            let retry_after = response.headers().get("retry-after").cloned();
            let status = response.status().as_u16();
            let body: Value = response.json().await.ok()?;
            (status == 503).then_some((body, retry_after))
        },
    )
    .await;
    assert_eq!(refused.0["code"], "miroir_shard_moving", "{}", refused.0);
    assert_eq!(refused.1.as_ref().and_then(|v| v.to_str().ok()), Some("1"));
    for (_, node) in &fleet.nodes {
        node.set_faults(json!({"latencyMs": 0})).await;
    }
    let op = wait_operation(&fleet.cp, id, Duration::from_secs(120)).await;
    assert_eq!(op.state(), pb::OperationState::Succeeded);
}
