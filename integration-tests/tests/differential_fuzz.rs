//! Differential fuzzing (issue 24, point 2): seeded requests, valid and mutated, through a
//! gateway on a 2-node fleet and to one real node holding the same data; status and error
//! code must be equal, and the gateway never answers 5xx for a client's mistake.
//! `MIROIR_FUZZ_REQUESTS` (default 2 000) and `MIROIR_FUZZ_SEED` (default 24) set the run;
//! `-- --nocapture` prints its figures.

use crate::gateway_indexes::fleet;
use miroir_integration_tests::differential::{INDEX, documents, run, settings};
use miroir_integration_tests::{Meili, TestNode};
use reqwest::Method;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn a_gateway_answers_generated_requests_as_one_node_does() {
    let (_dir, cp, _nodes, gateway) = fleet(2).await;
    let node = TestNode::start().await;
    for side in [Meili::new(&gateway.url), Meili::new(&node.url)] {
        side.create_index(INDEX).await;
        side.ok(
            Method::PATCH,
            &format!("/indexes/{INDEX}/settings"),
            settings(),
        )
        .await;
        side.ok(
            Method::POST,
            &format!("/indexes/{INDEX}/documents"),
            documents(),
        )
        .await;
    }
    gateway
        .wait_version(cp.current_topology().await.version)
        .await;
    let count = env_number("MIROIR_FUZZ_REQUESTS", 2_000) as usize;
    let seed = env_number("MIROIR_FUZZ_SEED", 24);
    let started = std::time::Instant::now();
    let report = run(&gateway.url, &node.url, seed, count).await;
    let rss = miroir_integration_tests::abuse::rss_kib(gateway.pid().expect("gateway running"));
    println!(
        "seed {seed}: {} requests in {:.0} s, {} answered alike, {} differently, {} 5xx for a client's mistake; gateway RSS {:.1} MiB",
        report.sent,
        started.elapsed().as_secs_f64(),
        report.equal,
        report.mismatches.len(),
        report.server_errors_for_client_mistakes,
        rss as f64 / 1024.0
    );
    for mismatch in report.mismatches.iter().take(400) {
        println!("  {mismatch}");
    }
    let log = std::fs::read_to_string(&gateway.log).unwrap_or_default();
    assert!(!log.contains("panicked"), "the gateway panicked:\n{log}");
    assert_eq!(report.server_errors_for_client_mistakes, 0);
    assert!(rss < 256 * 1024, "gateway RSS {rss} KiB");
    assert!(
        report.mismatches.is_empty(),
        "{} of {} requests answered differently (first: {})",
        report.mismatches.len(),
        report.sent,
        report.mismatches[0]
    );
}
