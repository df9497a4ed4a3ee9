//! `miroir-peer-suite`: the official Rust SDK's own test suite (`meilisearch-sdk` 0.33.0,
//! about 190 `#[meilisearch_test]` tests), run against one real Meilisearch node and then
//! through a Miroir gateway on a fleet of real nodes, with the passed and failed of each.
//! Miroir passes when both runs fail the same tests (issue 21, point 4).
//!
//! The suite reads its server's URL at compile time (`option_env!("MEILISEARCH_URL")`), so
//! it is built once for a loopback port that the node, then the gateway, listen on. It is
//! built from a copy (the shared folder is read-only) in `target/peer-suite/`, without the
//! dependencies only its examples use and without TLS, with this repository's
//! `integration-tests/peer-suite/Cargo.lock` so its dependencies do not drift.
//!
//! `cargo build --workspace --bins && MEILISEARCH_BIN=../shared/meilisearch/meilisearch
//! target/debug/miroir-peer-suite`

use anyhow::{Context, bail};
use clap::Parser;
use miroir_integration_tests::{
    ControlPlane, ControlPlaneOptions, Gateway, TestNode, free_port, wait_for,
};
use miroir_proto::pb::NodeState;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The master key the suite's tests use.
const SUITE_KEY: &str = "masterKey";

/// Runs the Rust SDK's own tests against one Meilisearch node and through Miroir.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// The suite: the SDK's source with its test macro crate.
    #[arg(
        long,
        env = "MIROIR_PEER_SUITE",
        default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/peer-suites/meilisearch-rust-0.33.0")
    )]
    suite: PathBuf,
    /// Real Meilisearch for the node and the fleet.
    #[arg(long, env = "MEILISEARCH_BIN")]
    meilisearch: PathBuf,
    /// Nodes of the fleet (one group).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Shards of every index the suite creates.
    #[arg(long, default_value_t = 16)]
    shards: u32,
    /// Tests run at once in each run.
    #[arg(long, default_value_t = 2)]
    test_threads: usize,
    /// Run only against the fleet (skip the one-node run).
    #[arg(long)]
    fleet_only: bool,
    /// Print every test's outcome, not only those that differ.
    #[arg(long)]
    verbose: bool,
    /// Run only the tests whose name holds this (as `cargo test FILTER`); their output is
    /// printed.
    filter: Option<String>,
}

/// Each test's outcome in one run: name → passed.
type Outcomes = BTreeMap<String, bool>;

/// A run of the suite: each test's outcome, and what the suite printed (a failed test's
/// own output is in it).
struct Run {
    outcomes: Outcomes,
    printed: String,
}

/// What libtest printed for `test` when it failed (its `---- test stdout ----` part).
fn failure_output<'a>(printed: &'a str, test: &str) -> Option<&'a str> {
    let start = printed.find(&format!("---- {test} stdout ----"))?;
    let rest = &printed[start..];
    let end = rest[1..]
        .find("\n---- ")
        .or_else(|| rest.find("\nfailures:"))
        .map_or(rest.len(), |i| i + 1);
    Some(rest[..end].trim_end())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let suite = args
        .suite
        .canonicalize()
        .with_context(|| format!("no suite at {}", args.suite.display()))?;
    let work = miroir_integration_tests::binary("miroir-gateway")
        .parent()
        .context("target folder")?
        .join("peer-suite");
    let port = free_port();
    let started = Instant::now();
    let tests = build(&suite, &work, port).await?;
    println!(
        "peer suite {}: built in {:.0?} for http://127.0.0.1:{port}",
        suite.file_name().unwrap_or_default().to_string_lossy(),
        started.elapsed()
    );

    let node = if args.fleet_only {
        None
    } else {
        let started = Instant::now();
        let node = TestNode::start_real(args.meilisearch.clone(), Some(port), SUITE_KEY).await;
        let outcomes = run(&tests, &work, &args).await?.outcomes;
        drop(node);
        report("one Meilisearch node", &outcomes, started);
        Some(outcomes)
    };

    let started = Instant::now();
    let fleet = Fleet::start(&args, port).await;
    let Run {
        outcomes: through,
        printed,
    } = run(&tests, &work, &args).await?;
    drop(fleet);
    report(
        &format!(
            "Miroir, {} nodes in one group, {} shards",
            args.nodes, args.shards
        ),
        &through,
        started,
    );

    let Some(node) = node else {
        return Ok(());
    };
    let mut differ = 0;
    for (test, passed) in &through {
        let on_node = node.get(test).copied();
        if on_node != Some(*passed) {
            differ += 1;
            println!(
                "  {test}: {} through Miroir, {} on one node",
                word(Some(*passed)),
                word(on_node)
            );
            // Its own words through Miroir, so that a failure seen once (in CI) can be read.
            if let Some(output) = failure_output(&printed, test) {
                println!("{output}");
            }
        } else if args.verbose {
            println!("  {test}: {}", word(Some(*passed)));
        }
    }
    for test in node.keys().filter(|t| !through.contains_key(*t)) {
        differ += 1;
        println!("  {test}: not run through Miroir");
    }
    if differ > 0 {
        println!("{differ} test(s) end differently through Miroir than on one node");
        std::process::exit(1);
    }
    println!("every test ends through Miroir as on one node");
    Ok(())
}

fn word(passed: Option<bool>) -> &'static str {
    match passed {
        Some(true) => "passed",
        Some(false) => "FAILED",
        None => "not run",
    }
}

fn report(setup: &str, outcomes: &Outcomes, started: Instant) {
    let passed = outcomes.values().filter(|p| **p).count();
    println!(
        "{setup}: {passed} passed, {} failed ({:.0?})",
        outcomes.len() - passed,
        started.elapsed()
    );
}

/// Copies the suite into `work`, builds its tests for `port`; the test executable.
async fn build(suite: &Path, work: &Path, port: u16) -> anyhow::Result<PathBuf> {
    let source = work.join("sdk");
    if source.exists() {
        std::fs::remove_dir_all(&source)?;
    }
    copy_tree(suite, &source)?;
    // Without the dependencies only the SDK's examples use (yew, wasm-bindgen, …).
    let manifest = source.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)?;
    let examples = text
        .find("# The following dependencies are required for examples")
        .context("the suite's Cargo.toml changed: no examples section")?;
    let text = text[..examples].replace("[workspace]\nmembers = [\"examples/*\"]", "[workspace]")
        + "big_s = \"1.0.2\"\ninsta = \"1.38.0\"\n";
    std::fs::write(&manifest, text)?;
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("peer-suite/Cargo.lock");
    let mut locked = Vec::new();
    if lock.exists() {
        std::fs::copy(&lock, source.join("Cargo.lock"))?;
        locked.push("--locked");
    }
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--lib", "--no-run", "--message-format=json"])
        .args([
            "--no-default-features",
            "--features",
            "reqwest,jwt_rust_crypto",
        ])
        .args(&locked)
        .current_dir(&source)
        .env("CARGO_TARGET_DIR", work.join("target"))
        .env("MEILISEARCH_URL", format!("http://127.0.0.1:{port}"))
        .env("MEILISEARCH_API_KEY", SUITE_KEY)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("run cargo")?;
    if !output.status.success() {
        bail!("building the suite failed");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["profile"]["test"] == true)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo named no test executable")
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            // The shared folder is read-only; the copy is not.
            let mut permissions = std::fs::metadata(&target)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            permissions.set_readonly(false);
            std::fs::set_permissions(&target, permissions)?;
        }
    }
    Ok(())
}

/// Runs the suite's tests; each one's outcome, and what the suite printed.
async fn run(tests: &Path, work: &Path, args: &Args) -> anyhow::Result<Run> {
    let output = Command::new(tests)
        .arg("--test-threads")
        .arg(args.test_threads.to_string())
        .args(&args.filter)
        .current_dir(work.join("sdk"))
        .env("MSDK_DEBUG_RAW_SEARCH", "1")
        .output()
        .await
        .context("run the suite")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if args.filter.is_some() {
        println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    }
    let outcomes: Outcomes = stdout
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("test ")?;
            let (name, outcome) = rest.rsplit_once(" ... ")?;
            match outcome {
                "ok" => Some((name.to_owned(), true)),
                "FAILED" => Some((name.to_owned(), false)),
                _ => None,
            }
        })
        .collect();
    if outcomes.is_empty() {
        bail!(
            "the suite ran no test:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(Run {
        outcomes,
        printed: stdout.into_owned(),
    })
}

/// A control plane, real nodes in one group and a gateway on the suite's port, all with
/// the suite's master key (a development key, as Meilisearch allows).
struct Fleet {
    _dir: tempfile::TempDir,
    _cp: ControlPlane,
    _nodes: Vec<TestNode>,
    _gateway: Gateway,
}

impl Fleet {
    async fn start(args: &Args, port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = format!("sqlite://{}/miroir.db", dir.path().display());
        let mut options = ControlPlaneOptions {
            master_key: SUITE_KEY.into(),
            ..ControlPlaneOptions::default()
        };
        options
            .extra_args
            .extend(["--default-shards".into(), args.shards.to_string()]);
        let cp = ControlPlane::start(dir.path(), &store, &options).await;
        let mut nodes = Vec::new();
        for i in 0..args.nodes {
            let node = TestNode::start_real(args.meilisearch.clone(), None, SUITE_KEY).await;
            cp.add_node(&format!("meili-{i}"), &node.url, 0)
                .await
                .expect("add node");
            nodes.push(node);
        }
        for i in 0..args.nodes {
            cp.wait_node_state(&format!("meili-{i}"), NodeState::Active)
                .await;
        }
        let gateway =
            Gateway::start_on(dir.path(), &cp.url(), Some(port), SUITE_KEY, &[], &[]).await;
        gateway.wait_writable().await;
        let ready = format!("{}/_miroir/ready", gateway.url);
        wait_for(
            "the gateway to be ready",
            Duration::from_secs(30),
            || async {
                reqwest::get(&ready)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            },
        )
        .await;
        Self {
            _dir: dir,
            _cp: cp,
            _nodes: nodes,
            _gateway: gateway,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::failure_output;

    #[test]
    fn a_failed_tests_own_output_is_found() {
        let printed = "test a ... FAILED\ntest b ... ok\n\nfailures:\n\n---- a stdout ----\nthread panicked at x\nleft: 1\n\n---- c stdout ----\nother\n\nfailures:\n    a\n    c\n";
        assert_eq!(
            failure_output(printed, "a"),
            Some("---- a stdout ----\nthread panicked at x\nleft: 1")
        );
        assert_eq!(
            failure_output(printed, "c"),
            Some("---- c stdout ----\nother")
        );
        assert_eq!(failure_output(printed, "b"), None);
    }
}
