//! `miroir-bench`: the gateway's speed, measured (issue 3, point 12). Starts real
//! processes on loopback and prints, for the same queries at the same concurrency:
//! a direct node, a gateway in front of 1 node and one in front of 3 — p50/p99 latency,
//! QPS and the gateway's CPU time per query; then the gateway's peak RSS while it routes
//! one large batch to 3 nodes, and write throughput through it and directly.
//!
//! With `--moves`, it measures shard moves instead: how long each move holds writes to
//! its shard in cutover, what clients writing meanwhile see, and the copy rate.
//!
//! Build everything in release first:
//! `cargo build --release --workspace --bins && target/release/miroir-bench`.
//! Nodes are `MEILISEARCH_BIN` when set, else the test node.

use clap::Parser;
use miroir_integration_tests::{
    ControlPlane, ControlPlaneOptions, Gateway, MASTER_KEY, Meili, TestNode,
};
use miroir_proto::pb::{self, NodeState};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Measures a direct node against Miroir gateways on this machine.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Documents in the dataset (generated film records, about 600 bytes each), indexed by
    /// one node and by each fleet (timed), then searched.
    #[arg(long, default_value_t = 30_000)]
    documents: usize,
    /// Concurrent clients: each level is measured in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    concurrency: Vec<usize>,
    /// Searches per setup and concurrency level (after 200 warm-up searches).
    #[arg(long, default_value_t = 4_000)]
    requests: usize,
    /// The searches of each setup are run in this many rounds, the setups taking turns,
    /// so that the machine's drift (other load, CPU frequency) reaches every setup alike.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Size of the single large batch for the peak-RSS measurement, in MiB.
    #[arg(long, default_value_t = 100)]
    batch_mib: usize,
    /// Measure shard moves instead (node add, drain, add again on a loaded index while a
    /// client writes).
    #[arg(long)]
    moves: bool,
    /// Measure tail latency instead (issue 25, point 1): 2 nodes holding every shard
    /// twice (one group, RF 2), one of them slowed by SIGSTOP/SIGCONT bursts; searches
    /// through a gateway choosing replicas in turn without hedging, and through one with
    /// the defaults (least loaded, hedged).
    #[arg(long)]
    tail: bool,
    /// Measure primary-key pinning instead (issue 25, point 2): on a 3-node fleet (16
    /// shards), searches filtering `id = X` (pinned: its shard's node only) against the
    /// same searches written `id >= X AND id <= X` (every node).
    #[arg(long)]
    pinned: bool,
    /// Measure the result cache instead (issue 25, point 6): on a 3-node fleet, searches
    /// drawn with Zipf-distributed popularity from a pool of distinct queries, through a
    /// gateway without the cache and through one with it (Redis), in one run; also one
    /// node holding every document, for context.
    #[arg(long)]
    cache: bool,
    /// With `--cache`: distinct queries in the pool.
    #[arg(long, default_value_t = 2_000)]
    cache_queries: usize,
    /// With `--cache`: the Zipf exponent (popularity of the k-th query ∝ 1/k^s).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// With `--tail`: how long each burst stops the slowed node, then lets it run, in ms.
    #[arg(long, default_value_t = 50)]
    tail_stop_ms: u64,
    /// With `--moves`: documents per shard.
    #[arg(long, default_value_t = 10_000)]
    shard_documents: usize,
    /// With `--moves`: shards of the index (on 3 nodes; a fourth takes a quarter).
    #[arg(long, default_value_t = 12)]
    move_shards: u32,
    /// An nginx binary to measure as a plain reverse proxy in front of the direct node and
    /// in front of the 1-node fleet's node (keep-alive to the node, no logging): the floor
    /// any HTTP proxy pays on this machine for the extra hop. Skipped when not given.
    #[arg(long, env = "MIROIR_BENCH_NGINX")]
    reference_proxy: Option<std::path::PathBuf>,
    /// The gateways' `--threads`: 1 by default, the footing of the reference proxy (nginx
    /// with one worker) on a machine whose other cores the nodes need; 0 leaves the
    /// gateway's default (one per CPU).
    #[arg(long, default_value_t = 1)]
    gateway_threads: usize,
}

const WORDS: &[&str] = &[
    "river", "stone", "light", "night", "garden", "storm", "silver", "winter", "ocean", "forest",
    "shadow", "fire", "dream", "mountain", "city", "glass", "paper", "iron",
];
const GENRES: &[&str] = &["drama", "comedy", "horror", "poetry", "history"];

fn document(i: usize, padding: usize) -> Value {
    let word = |k: usize| WORDS[(i * 7 + k * 13) % WORDS.len()];
    json!({
        "id": i,
        "title": format!("{} {} {}", word(0), word(1), word(2)),
        "genre": GENRES[i % GENRES.len()],
        "year": 1950 + (i % 70),
        "body": "x".repeat(padding),
    })
}

/// Words of the generated film records.
const VOCABULARY: &[&str] = &[
    "shadow", "river", "garden", "winter", "silver", "dragon", "harbor", "forest", "castle",
    "mirror", "thunder", "island", "desert", "empire", "voyage", "secret", "stranger", "midnight",
    "horizon", "lantern", "orchard", "canyon", "glacier", "falcon", "meadow", "crimson", "echo",
    "ember", "fable", "galaxy", "hollow", "ivory", "jungle", "kingdom", "legend", "marble",
    "nomad", "ocean", "phantom", "quartz", "raven", "summit", "tempest", "valley", "wander",
    "zenith", "blossom", "cipher", "dune", "family", "journey", "love", "war", "city", "night",
    "story", "friend", "truth", "escape", "return", "lost", "young", "old", "last", "first",
];
const FILM_GENRES: &[&str] = &[
    "drama",
    "comedy",
    "thriller",
    "horror",
    "romance",
    "documentary",
    "animation",
    "western",
    "science fiction",
    "crime",
];

/// A film record, as a search application would index: a title, an overview, genres,
/// people, dates and numbers (deterministic in `i`).
fn film(i: usize) -> Value {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let words = |count: usize, next: &mut dyn FnMut(usize) -> usize| -> String {
        (0..count)
            .map(|_| VOCABULARY[next(VOCABULARY.len())])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let title = words(1 + next(4), &mut next);
    let overview = words(40 + next(40), &mut next);
    let genres: Vec<&str> = (0..1 + next(3))
        .map(|_| FILM_GENRES[next(FILM_GENRES.len())])
        .collect();
    json!({
        "id": i,
        "title": title,
        "overview": overview,
        "genres": genres,
        "director": format!("{} {}", VOCABULARY[next(VOCABULARY.len())], VOCABULARY[next(VOCABULARY.len())]),
        "year": 1930 + next(95),
        "rating": next(101) as f64 / 10.0,
        "votes": next(100_000),
        "release_date": 1_000_000_000 + next(700_000_000),
    })
}

/// The search mix: one and two words, a typo, a prefix; a third filtered, a third
/// faceted, a quarter sorted.
fn queries() -> Vec<Value> {
    (0..64)
        .map(|i| {
            let word = VOCABULARY[(i * 7) % VOCABULARY.len()];
            let q = match i % 4 {
                0 => word.to_owned(),
                1 => format!("{word} {}", VOCABULARY[(i * 11 + 3) % VOCABULARY.len()]),
                2 => format!("{}{}", &word[..word.len() - 1], "x"),
                _ => word[..3].to_owned(),
            };
            let mut query = json!({"q": q, "limit": 20});
            if i % 3 == 0 {
                query["filter"] = json!(format!(
                    "genres = '{}' AND year > 1980",
                    FILM_GENRES[i % FILM_GENRES.len()]
                ));
            }
            if i % 3 == 1 {
                query["facets"] = json!(["genres", "year"]);
            }
            if i % 4 == 0 {
                query["sort"] = json!(["rating:desc"]);
            }
            query
        })
        .collect()
}

/// Total CPU time of a process (all threads), from `/proc/<pid>/task/*/schedstat`.
fn cpu_time(pid: u32) -> Duration {
    let mut nanos = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
                nanos += stat
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(nanos)
}

/// Peak resident memory of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

struct Run {
    p50: Duration,
    p99: Duration,
    qps: f64,
    cpu_per_query: Option<Duration>,
}

/// One search, as every setup is sent it.
async fn search(client: &reqwest::Client, path: &str, query: &Value) -> reqwest::Response {
    client
        .post(path)
        .bearer_auth(MASTER_KEY)
        .json(query)
        .send()
        .await
        .expect("search")
}

/// A setup searched: its URL and, for a gateway, its process (for its CPU time).
struct Setup {
    url: String,
    pid: Option<u32>,
    /// Its own searches (else the common ones).
    queries: Option<Arc<Vec<Value>>>,
}

/// Runs `requests` searches per setup over `concurrency` clients, in `rounds` rounds in
/// which the setups take turns.
async fn measure(setups: &[Setup], index: &str, args: &Args, concurrency: usize) -> Vec<Run> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let common = Arc::new(queries());
    let queries: Vec<Arc<Vec<Value>>> = setups
        .iter()
        .map(|s| s.queries.clone().unwrap_or_else(|| common.clone()))
        .collect();
    let paths: Vec<String> = setups
        .iter()
        .map(|s| format!("{}/indexes/{index}/search", s.url))
        .collect();
    for (path, queries) in paths.iter().zip(&queries) {
        // From the end of the list: the measured searches start at its beginning.
        for query in queries.iter().rev().cycle().take(200) {
            let response = search(&client, path, query).await;
            assert!(
                response.status().is_success(),
                "{}",
                response.text().await.unwrap_or_default()
            );
        }
    }
    let rounds = args.rounds.max(1);
    let per_worker = (args.requests / concurrency / rounds).max(1);
    let mut latencies = vec![Vec::new(); setups.len()];
    let mut wall = vec![Duration::ZERO; setups.len()];
    let mut cpu = vec![Duration::ZERO; setups.len()];
    for round in 0..rounds {
        for (i, setup) in setups.iter().enumerate() {
            let cpu_before = setup.pid.map(cpu_time);
            let started = Instant::now();
            let mut workers = tokio::task::JoinSet::new();
            for worker in 0..concurrency {
                let (client, queries, path) =
                    (client.clone(), queries[i].clone(), paths[i].clone());
                let first = round * per_worker;
                workers.spawn(async move {
                    let mut latencies = Vec::with_capacity(per_worker);
                    for n in first..first + per_worker {
                        // Each search of the level takes its own place in the list.
                        let query = &queries[(n * concurrency + worker) % queries.len()];
                        let sent = Instant::now();
                        let response = search(&client, &path, query).await;
                        let ok = response.status().is_success();
                        let _ = response.bytes().await;
                        assert!(ok, "search failed");
                        latencies.push(sent.elapsed());
                    }
                    latencies
                });
            }
            while let Some(done) = workers.join_next().await {
                latencies[i].extend(done.expect("worker"));
            }
            wall[i] += started.elapsed();
            if let (Some(pid), Some(before)) = (setup.pid, cpu_before) {
                // Saturating: a thread that exited (an idle blocking-pool thread) takes its time with it.
                cpu[i] += cpu_time(pid).saturating_sub(before);
            }
        }
    }
    latencies
        .into_iter()
        .zip(wall)
        .zip(cpu)
        .zip(setups)
        .map(|(((mut latencies, wall), cpu), setup)| {
            latencies.sort();
            let at = |q: f64| {
                latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)]
            };
            Run {
                p50: at(0.50),
                p99: at(0.99),
                qps: latencies.len() as f64 / wall.as_secs_f64(),
                cpu_per_query: setup.pid.map(|_| cpu / latencies.len() as u32),
            }
        })
        .collect()
}

/// nginx as a plain reverse proxy to one node: one worker (no master process, so its pid
/// is the worker's and its CPU time is measured like the gateway's), HTTP/1.1 keep-alive
/// to the node, no access log. Killed on drop.
struct ReferenceProxy {
    url: String,
    child: tokio::process::Child,
}

impl ReferenceProxy {
    async fn start(nginx: &std::path::Path, dir: &std::path::Path, upstream: &str) -> Self {
        let port = miroir_integration_tests::free_port();
        let upstream = upstream.trim_start_matches("http://");
        std::fs::create_dir_all(dir.join("logs")).expect("nginx dir");
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
             error_log {dir}/logs/error.log warn;\nevents {{ worker_connections 256; }}\n\
             http {{\n access_log off;\n client_body_temp_path {dir}/body;\n\
             proxy_temp_path {dir}/proxy;\n client_max_body_size 0;\n\
             upstream node {{ server {upstream}; keepalive 32; }}\n\
             server {{\n  listen 127.0.0.1:{port};\n  location / {{\n\
             proxy_pass http://node;\n   proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\";\n   proxy_buffering off;\n  }}\n }}\n}}\n",
            dir = dir.display()
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config).expect("nginx config");
        let child = tokio::process::Command::new(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start nginx");
        let url = format!("http://127.0.0.1:{port}");
        miroir_integration_tests::wait_healthy("nginx", &url, Duration::from_secs(10)).await;
        ReferenceProxy { url, child }
    }
}

/// Writes `documents` in batches and waits for every task; returns documents per second.
async fn write(meili: &Meili, index: &str, documents: usize, padding: usize) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for start in (0..documents).step_by(10_000) {
        let batch: Vec<Value> = (start..(start + 10_000).min(documents))
            .map(|i| document(i, padding))
            .collect();
        let (status, task) = meili
            .post(&format!("/indexes/{index}/documents"), json!(batch))
            .await;
        assert_eq!(status, 202, "{task}");
        tasks.push(task);
    }
    for task in &tasks {
        let done = meili.wait_task(task).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    documents as f64 / started.elapsed().as_secs_f64()
}

/// A control plane, `n` nodes and a gateway with the index `bench` (16 shards) loaded;
/// with the time the loading took.
async fn fleet(
    dir: &std::path::Path,
    n: usize,
    documents: usize,
    threads: usize,
) -> (ControlPlane, Vec<TestNode>, Gateway, Duration) {
    let (cp, nodes, gateway) = start_fleet(dir, n, threads).await;
    let took = prepare(&Meili::new(&gateway.url), "bench", documents, true).await;
    (cp, nodes, gateway, took)
}

/// A control plane (SQLite, in `dir`), `n` active nodes in group 0 and a gateway serving
/// the newest topology; no index yet.
async fn start_fleet(
    dir: &std::path::Path,
    n: usize,
    threads: usize,
) -> (ControlPlane, Vec<TestNode>, Gateway) {
    // Room for the large-batch measurement (Meilisearch's own limit is 100 MB; the
    // gateway sends each node its share).
    let threads = threads.to_string();
    let mut gateway_args = vec!["--payload-size-limit", "262144000"];
    if threads != "0" {
        gateway_args.extend(["--threads", &threads]);
    }
    std::fs::create_dir_all(dir).expect("fleet directory");
    let store = format!("sqlite://{}/miroir-{n}.db", dir.display());
    let cp = ControlPlane::start(dir, &store, &ControlPlaneOptions::default()).await;
    let mut nodes = Vec::new();
    for i in 0..n {
        let node = TestNode::start().await;
        cp.add_node(&format!("meili-{i}"), &node.url, 0)
            .await
            .expect("add node");
        nodes.push(node);
    }
    for i in 0..n {
        cp.wait_node_state(&format!("meili-{i}"), NodeState::Active)
            .await;
    }
    let gateway = Gateway::start(dir, &cp.url(), &gateway_args).await;
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    (cp, nodes, gateway)
}

/// Creates `index` (16 shards through a gateway) with the search settings and indexes the
/// dataset in batches of 5 000; the time from the first batch sent until every task
/// succeeded.
async fn prepare(meili: &Meili, index: &str, documents: usize, through_gateway: bool) -> Duration {
    let mut create = json!({"uid": index, "primaryKey": "id"});
    if through_gateway {
        create["miroirShardCount"] = json!(16);
    }
    prepare_as(meili, create, documents).await
}

/// [`prepare`], the index created with the `create` body.
async fn prepare_as(meili: &Meili, create: Value, documents: usize) -> Duration {
    let index = create["uid"].as_str().expect("uid").to_owned();
    meili.ok(reqwest::Method::POST, "/indexes", create).await;
    meili
        .ok(
            reqwest::Method::PATCH,
            &format!("/indexes/{index}/settings"),
            json!({
                "searchableAttributes": ["title", "overview", "director"],
                "filterableAttributes": ["genres", "year"],
                "sortableAttributes": ["rating", "year"],
            }),
        )
        .await;
    let batches: Vec<Vec<u8>> = (0..documents)
        .step_by(5000)
        .map(|start| {
            let batch: Vec<Value> = (start..(start + 5000).min(documents)).map(film).collect();
            serde_json::to_vec(&batch).expect("batch JSON")
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for batch in batches {
        let (status, task) = meili
            .send(
                reqwest::Method::POST,
                &format!("/indexes/{index}/documents"),
                Some("application/json"),
                Some(batch),
            )
            .await;
        assert_eq!(status, 202, "{task}");
        tasks.push(task);
    }
    for task in &tasks {
        let done = meili.wait_task(task).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    started.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Polls operation `id` until it finishes; its record and the fastest copy rate seen.
async fn follow(cp: &ControlPlane, id: u64) -> (pb::Operation, f64) {
    let mut fastest: f64 = 0.0;
    loop {
        let response = cp
            .admin()
            .await
            .get_operation(pb::OperationRequest { id })
            .await
            .expect("operation")
            .into_inner();
        for m in &response.moves {
            fastest = fastest.max(m.documents_per_second);
        }
        let op = response.operation.expect("operation");
        if matches!(
            op.state(),
            pb::OperationState::Succeeded | pb::OperationState::Cancelled
        ) {
            return (op, fastest);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `--pinned`: searches whose filter pins a primary key, and the same not pinned.
async fn pinned(args: &Args, dir: &std::path::Path) {
    println!(
        "miroir-bench --pinned: {} documents on 3 nodes (16 shards); clients {:?}, {} searches per setup and level",
        args.documents, args.concurrency, args.requests
    );
    let (_cp, _nodes, gateway) = start_fleet(&dir.join("pinned"), 3, args.gateway_threads).await;
    let meili = Meili::new(&gateway.url);
    prepare(&meili, "bench", args.documents, true).await;
    meili
        .ok(
            reqwest::Method::PATCH,
            "/indexes/bench/settings",
            json!({"filterableAttributes": ["id", "genres", "year"]}),
        )
        .await;
    let ids = |query: fn(usize) -> String| -> Arc<Vec<Value>> {
        Arc::new(
            (0..500)
                .map(|i| json!({"filter": query((i * 7919) % args.documents)}))
                .collect(),
        )
    };
    let setups = [
        Setup {
            url: gateway.url.clone(),
            pid: gateway.pid(),
            queries: Some(ids(|id| format!("id = {id}"))),
        },
        Setup {
            url: gateway.url.clone(),
            pid: gateway.pid(),
            queries: Some(ids(|id| format!("id >= {id} AND id <= {id}"))),
        },
    ];
    for &concurrency in &args.concurrency {
        let runs = measure(&setups, "bench", args, concurrency).await;
        println!(
            "\nsearches by primary key, {concurrency} client(s):\n\n| filter | nodes asked | p50 | p99 | QPS | gateway CPU per query |\n|---|---|---|---|---|---|"
        );
        for (run, (name, asked)) in runs.iter().zip([
            ("`id = X` (pinned)", "1"),
            ("`id >= X AND id <= X` (not pinned)", "3"),
        ]) {
            println!(
                "| {name} | {asked} | {} | {} | {:.0} | {} |",
                ms(run.p50),
                ms(run.p99),
                run.qps,
                run.cpu_per_query.map_or("–".to_owned(), |c| format!(
                    "{:.3} ms",
                    c.as_secs_f64() * 1000.0
                ))
            );
        }
    }
}

/// `--cache`'s searches: `count` draws from a pool of `pool` distinct queries, the k-th
/// drawn with probability ∝ 1/k^`s` (a deterministic generator).
fn zipf_queries(pool: usize, s: f64, count: usize, seed: u64) -> Vec<Value> {
    let distinct: Vec<Value> = (0..pool)
        .map(|i| {
            let a = VOCABULARY[i % VOCABULARY.len()];
            let b = VOCABULARY[(i / VOCABULARY.len() * 7 + i) % VOCABULARY.len()];
            let mut query = json!({"q": format!("{a} {b}"), "limit": 20});
            if i % 4 == 0 {
                query["filter"] = json!(format!("year > {}", 1950 + i % 60));
            }
            query
        })
        .collect();
    let weights: Vec<f64> = (1..=pool).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = Vec::with_capacity(pool);
    let mut sum = 0.0;
    for w in &weights {
        sum += w / total;
        cumulative.push(sum);
    }
    let mut state: u64 = 0x2545_f491_4f6c_dd1d ^ seed;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let k = cumulative.partition_point(|c| *c < u).min(pool - 1);
            distinct[k].clone()
        })
        .collect()
}

/// `--cache`: the result cache on and off, on the same fleet, same searches.
async fn cache(args: &Args, dir: &std::path::Path) {
    println!(
        "miroir-bench --cache: {} documents on 3 nodes (16 shards); {} distinct queries, Zipf s = {}; clients {:?}, {} searches per setup and level",
        args.documents, args.cache_queries, args.zipf, args.concurrency, args.requests
    );
    let redis = miroir_integration_tests::RedisServer::start().await;
    let dir = dir.join("cache");
    let (cp, _nodes, plain) = start_fleet(&dir, 3, args.gateway_threads).await;
    prepare(&Meili::new(&plain.url), "bench", args.documents, true).await;
    let threads = args.gateway_threads.to_string();
    let mut cached_args = vec!["--redis-url", redis.url.as_str(), "--result-cache"];
    if threads != "0" {
        cached_args.extend(["--threads", &threads]);
    }
    let cached = Gateway::start(&dir, &cp.url(), &cached_args).await;
    cached
        .wait_version(cp.current_topology().await.version)
        .await;
    let direct = TestNode::start().await;
    prepare(&Meili::new(&direct.url), "bench", args.documents, false).await;
    // Each level draws its own searches; the cache keeps what the levels before it left.
    let setups_drawing = |seed: u64| {
        let searches = Arc::new(zipf_queries(
            args.cache_queries,
            args.zipf,
            args.requests + 200,
            seed,
        ));
        [
            Setup {
                url: direct.url.clone(),
                pid: None,
                queries: Some(searches.clone()),
            },
            Setup {
                url: plain.url.clone(),
                pid: plain.pid(),
                queries: Some(searches.clone()),
            },
            Setup {
                url: cached.url.clone(),
                pid: cached.pid(),
                queries: Some(searches),
            },
        ]
    };
    let counts = async || {
        let mut counts = Vec::new();
        for name in ["hits", "misses", "bypassed"] {
            let metric = format!("miroir_gateway_result_cache_{name}_total");
            counts.push(cached.counter(&metric).await.unwrap_or(0));
        }
        counts
    };
    for &concurrency in &args.concurrency {
        let before = counts().await;
        let setups = setups_drawing(concurrency as u64);
        let runs = measure(&setups, "bench", args, concurrency).await;
        let after = counts().await;
        let [hits, misses, bypassed] = [0, 1, 2].map(|i| after[i] - before[i]);
        let asked = (hits + misses + bypassed).max(1);
        println!(
            "\nZipf searches, {concurrency} client(s); the cache: {hits} hits, {misses} misses, {bypassed} bypassed (hit ratio {:.1} %, its 200 warm-up searches included):\n\n| setup | p50 | p99 | QPS | of one node's QPS | gateway CPU per query |\n|---|---|---|---|---|---|",
            hits as f64 * 100.0 / asked as f64
        );
        for (run, name) in runs.iter().zip([
            "one node, every document",
            "3 nodes, cache off",
            "3 nodes, cache on",
        ]) {
            println!(
                "| {name} | {} | {} | {:.0} | {:.0} % | {} |",
                ms(run.p50),
                ms(run.p99),
                run.qps,
                run.qps * 100.0 / runs[0].qps,
                run.cpu_per_query.map_or("–".to_owned(), |c| format!(
                    "{:.3} ms",
                    c.as_secs_f64() * 1000.0
                ))
            );
        }
    }
}

/// `--tail`: search latency with one of two replicas slowed, through a gateway choosing
/// in turn without hedging and through one with the defaults.
async fn tail(args: &Args, dir: &std::path::Path) {
    let stop = Duration::from_millis(args.tail_stop_ms);
    println!(
        "miroir-bench --tail: {} documents on 2 nodes (one group, RF 2, 8 shards); the slowed node is stopped {} ms then runs {} ms, over and over; clients {:?}, {} searches per setup and level",
        args.documents,
        stop.as_millis(),
        stop.as_millis(),
        args.concurrency,
        args.requests
    );
    let dir = dir.join("tail");
    let (cp, nodes, tuned) = start_fleet(&dir, 2, args.gateway_threads).await;
    let took = prepare_as(
        &Meili::new(&tuned.url),
        json!({"uid": "bench", "primaryKey": "id", "miroirShardCount": 8, "miroirReplicationFactor": 2}),
        args.documents,
    )
    .await;
    println!("indexed in {:.1} s", took.as_secs_f64());
    let threads = args.gateway_threads.to_string();
    let mut plain_args = vec![
        "--replica-selection",
        "round-robin",
        "--hedge-reads",
        "false",
    ];
    if threads != "0" {
        plain_args.extend(["--threads", &threads]);
    }
    let plain = Gateway::start(&dir, &cp.url(), &plain_args).await;
    plain
        .wait_version(cp.current_topology().await.version)
        .await;
    let gateways = [
        ("in turn, no hedging", &plain),
        ("least loaded, hedged (defaults)", &tuned),
    ];
    let setups: Vec<Setup> = gateways
        .iter()
        .map(|(_, g)| Setup {
            url: g.url.clone(),
            pid: g.pid(),
            queries: None,
        })
        .collect();
    for &concurrency in &args.concurrency {
        let healthy = measure(&setups, "bench", args, concurrency).await;
        let mut hedges_before = Vec::new();
        for (_, g) in &gateways {
            hedges_before.push((
                g.counter("miroir_gateway_hedges_sent_total")
                    .await
                    .unwrap_or(0),
                g.counter("miroir_gateway_hedges_won_total")
                    .await
                    .unwrap_or(0),
            ));
        }
        // Bursts: the slowed node answers nothing while stopped, at once otherwise.
        let bursting = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let slowed = nodes[1].pid().expect("node running");
        let bursts = {
            let bursting = bursting.clone();
            std::thread::spawn(move || {
                while bursting.load(std::sync::atomic::Ordering::Relaxed) {
                    unsafe { libc::kill(slowed as i32, libc::SIGSTOP) };
                    std::thread::sleep(stop);
                    unsafe { libc::kill(slowed as i32, libc::SIGCONT) };
                    std::thread::sleep(stop);
                }
            })
        };
        let slow = measure(&setups, "bench", args, concurrency).await;
        bursting.store(false, std::sync::atomic::Ordering::Relaxed);
        bursts.join().expect("bursts");
        println!(
            "\nsearches, {concurrency} client(s), one of two replicas slowed:\n\n| gateway | healthy p50 | healthy p99 | healthy QPS | slowed p50 | slowed p99 | slowed p99 ÷ healthy p99 | slowed QPS | hedges sent | hedges won |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for (i, (name, g)) in gateways.iter().enumerate() {
            let sent = g
                .counter("miroir_gateway_hedges_sent_total")
                .await
                .unwrap_or(0)
                - hedges_before[i].0;
            let won = g
                .counter("miroir_gateway_hedges_won_total")
                .await
                .unwrap_or(0)
                - hedges_before[i].1;
            println!(
                "| {name} | {} | {} | {:.0} | {} | {} | {:.2} | {:.0} | {sent} | {won} |",
                ms(healthy[i].p50),
                ms(healthy[i].p99),
                healthy[i].qps,
                ms(slow[i].p50),
                ms(slow[i].p99),
                slow[i].p99.as_secs_f64() / healthy[i].p99.as_secs_f64(),
                slow[i].qps,
            );
        }
    }
}

/// `--moves`: three operations on a loaded index while one client writes.
async fn moves(args: &Args, dir: &std::path::Path) {
    let shards = args.move_shards;
    let total = args.shard_documents * shards as usize;
    println!(
        "miroir-bench --moves: {shards} shards of about {} documents ({total} in all) on 3 nodes",
        args.shard_documents
    );
    let (cp, _nodes, gateway) = start_fleet(&dir.join("moves"), 3, args.gateway_threads).await;
    let meili = Meili::new(&gateway.url);
    meili
        .ok(
            reqwest::Method::POST,
            "/indexes",
            json!({"uid": "moves", "primaryKey": "id", "miroirShardCount": shards}),
        )
        .await;
    write(&meili, "moves", total, 64).await;
    // One client writing 10-document batches throughout; its slowest answers show the
    // cutover holds as clients see them.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, url) = (stop.clone(), gateway.url.clone());
        tokio::spawn(async move {
            let meili = Meili::new(&url);
            let mut latencies = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<Value> = (0..10)
                    .map(|k| document((i * 10 + k) % total, 64))
                    .collect();
                let started = Instant::now();
                let (status, _) = meili.post("/indexes/moves/documents", json!(batch)).await;
                latencies.push((started.elapsed(), status));
                i += 1;
            }
            latencies
        })
    };
    let mut blocked: Vec<u64> = Vec::new();
    println!(
        "\n| operation | moves | documents copied | time | fastest copy | write hold per move (ms) |\n|---|---|---|---|---|---|"
    );
    let extra = TestNode::start().await;
    let mut admin = cp.admin().await;
    for step in 0..3 {
        let started = Instant::now();
        let id = match step {
            0 | 2 => {
                let id = format!("meili-{}", 3 + step / 2);
                if step == 2 {
                    cp.admin()
                        .await
                        .remove_node(pb::RemoveNodeRequest {
                            id: "meili-3".into(),
                        })
                        .await
                        .expect("remove drained node");
                }
                let response = cp.add_node(&id, &extra.url, 0).await.expect("add node");
                cp.wait_node_state(&id, NodeState::Active).await;
                response.operation_id.expect("operation")
            }
            _ => admin
                .drain_node(pb::DrainNodeRequest {
                    id: "meili-3".into(),
                })
                .await
                .expect("drain")
                .into_inner()
                .operation_id
                .expect("operation"),
        };
        let (op, fastest) = follow(&cp, id).await;
        blocked.extend(&op.blocked_ms);
        println!(
            "| {} | {} | {} | {:.2} s | {:.0} docs/s | {:?} |",
            op.description,
            op.moves_done,
            op.documents_copied,
            started.elapsed().as_secs_f64(),
            fastest,
            op.blocked_ms
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut latencies = writer.await.expect("writer");
    let refused = latencies.iter().filter(|(_, s)| *s != 202).count();
    latencies.sort();
    blocked.sort_unstable();
    let percentile = |p: f64| blocked[((blocked.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "\nwrite hold per move: p50 {} ms, p99 {} ms, max {} ms over {} moves of about {} documents",
        percentile(0.5),
        percentile(0.99),
        blocked.last().copied().unwrap_or(0),
        blocked.len(),
        args.shard_documents
    );
    // Where each cutover's time went, as the control plane logged it.
    let log = std::fs::read_to_string(&cp.log).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("final verification")) {
        // Without the terminal colours the log may carry.
        let mut plain = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        let fields: Vec<&str> = plain
            .split_whitespace()
            .filter(|w| {
                [
                    "repaired=",
                    "barrier_ms=",
                    "prepared_ms=",
                    "drained_ms=",
                    "verified_ms=",
                ]
                .iter()
                .any(|k| w.starts_with(k))
            })
            .collect();
        println!("cutover: {}", fields.join(" "));
    }
    let lat = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize].0;
    println!(
        "client writes during the operations: {} batches, {refused} refused, p50 {}, p99 {}, max {}",
        latencies.len(),
        ms(lat(0.5)),
        ms(lat(0.99)),
        ms(lat(1.0))
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("temp dir");
    if args.moves {
        moves(&args, dir.path()).await;
        return;
    }
    if args.tail {
        tail(&args, dir.path()).await;
        return;
    }
    if args.pinned {
        pinned(&args, dir.path()).await;
        return;
    }
    if args.cache {
        cache(&args, dir.path()).await;
        return;
    }
    println!(
        "miroir-bench: {} documents, clients {:?}, {} searches per setup and level, gateway threads: {}, nodes: {}",
        args.documents,
        args.concurrency,
        args.requests,
        match args.gateway_threads {
            0 => "one per CPU".to_owned(),
            n => n.to_string(),
        },
        if std::env::var_os("MEILISEARCH_BIN").is_some() {
            "MEILISEARCH_BIN"
        } else {
            "miroir-test-node"
        }
    );

    // Indexing: the dataset into one node, then into each fleet through its gateway,
    // until every task succeeded.
    let direct = TestNode::start().await;
    let direct_meili = Meili::new(&direct.url);
    let direct_took = prepare(&direct_meili, "bench", args.documents, false).await;
    let (_cp1, nodes1, gateway1, one_took) = fleet(
        &dir.path().join("one"),
        1,
        args.documents,
        args.gateway_threads,
    )
    .await;
    let (_cp3, _nodes3, gateway3, three_took) = fleet(
        &dir.path().join("three"),
        3,
        args.documents,
        args.gateway_threads,
    )
    .await;
    let rate = |took: Duration| args.documents as f64 / took.as_secs_f64();
    println!(
        "\nindexing {} documents (batches of 5 000, until every task succeeded):\n\n| setup | time | documents/s | × one node |\n|---|---|---|---|",
        args.documents
    );
    for (name, took) in [
        ("one node", direct_took),
        ("gateway, 1 node", one_took),
        ("gateway, 3 nodes", three_took),
    ] {
        println!(
            "| {name} | {:.2} s | {:.0} | {:.2} |",
            took.as_secs_f64(),
            rate(took),
            took.as_secs_f64() / direct_took.as_secs_f64()
        );
    }

    // The gateway sends a node that holds every shard the client's own query (nothing to
    // merge): measured directly, the second row separates the node's time from the
    // gateway's.
    // nginx in front of the direct node, and in front of the 1-node fleet's node: the
    // second is what any proxy gets on Miroir's node layout (`_miroir_shard` in every
    // document), so it separates the gateway's own cost from the layout's.
    let proxies = match &args.reference_proxy {
        Some(nginx) => Some((
            ReferenceProxy::start(nginx, &dir.path().join("nginx"), &direct.url).await,
            ReferenceProxy::start(nginx, &dir.path().join("nginx-fleet"), &nodes1[0].url).await,
        )),
        None => None,
    };
    let mut setups = vec![
        Setup {
            url: direct.url.clone(),
            pid: None,
            queries: None,
        },
        Setup {
            url: nodes1[0].url.clone(),
            pid: None,
            queries: None,
        },
        Setup {
            url: gateway1.url.clone(),
            pid: gateway1.pid(),
            queries: None,
        },
        Setup {
            url: gateway3.url.clone(),
            pid: gateway3.pid(),
            queries: None,
        },
    ];
    let mut names = vec![
        "direct node",
        "the 1-node fleet's node, asked directly (what the gateway sends it)",
        "gateway, 1 node",
        "gateway, 3 nodes",
    ];
    if let Some((proxy, fleet_proxy)) = &proxies {
        setups.push(Setup {
            url: proxy.url.clone(),
            pid: proxy.child.id(),
            queries: None,
        });
        names.push("nginx in front of the direct node (reference proxy; CPU column: nginx's)");
        setups.push(Setup {
            url: fleet_proxy.url.clone(),
            pid: fleet_proxy.child.id(),
            queries: None,
        });
        names.push("nginx in front of the 1-node fleet's node (CPU column: nginx's)");
    }
    for &concurrency in &args.concurrency {
        println!(
            "\nsearches, {concurrency} client(s):\n\n| setup | p50 | p99 | QPS | gateway CPU per query |\n|---|---|---|---|---|"
        );
        let runs = measure(&setups, "bench", &args, concurrency).await;
        for (name, run) in names.iter().zip(&runs) {
            println!(
                "| {name} | {} | {} | {:.0} | {} |",
                ms(run.p50),
                ms(run.p99),
                run.qps,
                run.cpu_per_query.map_or("–".into(), |c| format!(
                    "{:.3} ms",
                    c.as_secs_f64() * 1000.0
                ))
            );
        }
        let (base, gateway) = (&runs[0], &runs[2]);
        println!(
            "\n{concurrency} client(s): gateway on 1 node vs direct: p50 +{}, QPS {:.1} % of direct ({} rounds, setups taking turns)",
            ms(gateway.p50.saturating_sub(base.p50)),
            100.0 * gateway.qps / base.qps,
            args.rounds.max(1)
        );
        println!(
            "{concurrency} client(s): gateway on 1 node vs the fleet's node asked directly: QPS {:.1} %",
            100.0 * gateway.qps / runs[1].qps
        );
        // The reference proxies are the last two setups, when there are.
        if proxies.is_some() {
            let (nginx, nginx_fleet) = (&runs[4], &runs[5]);
            println!(
                "{concurrency} client(s): nginx on the direct node vs direct: p50 +{}, QPS {:.1} % of direct",
                ms(nginx.p50.saturating_sub(base.p50)),
                100.0 * nginx.qps / base.qps
            );
            println!(
                "{concurrency} client(s): nginx on the fleet's node vs direct: p50 +{}, QPS {:.1} % of direct",
                ms(nginx_fleet.p50.saturating_sub(base.p50)),
                100.0 * nginx_fleet.qps / base.qps
            );
        }
    }

    // One large batch through the 3-node gateway: its peak RSS against the batch size.
    let gateway_meili = Meili::new(&gateway3.url);
    let target = args.batch_mib * 1024 * 1024;
    let padding = 900;
    // Enough documents for the body to reach the size asked.
    let per_document = serde_json::to_vec(&document(1_000_000, padding)).map_or(1, |d| d.len() + 1);
    let count = target.div_ceil(per_document);
    let batch: Vec<Value> = (0..count)
        .map(|i| document(1_000_000 + i, padding))
        .collect();
    let body = serde_json::to_vec(&batch).expect("batch JSON");
    drop(batch);
    let pid = gateway3.pid().expect("gateway pid");
    let before = peak_rss(pid);
    let started = Instant::now();
    let (status, task) = gateway_meili
        .send(
            reqwest::Method::POST,
            "/indexes/bench/documents",
            Some("application/json"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    let routed = started.elapsed();
    let done = gateway_meili.wait_task(&task).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let peak = peak_rss(pid);
    println!(
        "\nlarge batch: {:.1} MiB ({count} documents) routed to 3 nodes in {:.2} s; gateway peak RSS {:.1} MiB (before: {:.1} MiB) = {:.2} × the batch",
        body.len() as f64 / 1048576.0,
        routed.as_secs_f64(),
        peak as f64 / 1048576.0,
        before as f64 / 1048576.0,
        peak as f64 / body.len() as f64
    );
}
