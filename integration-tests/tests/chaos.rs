//! A short chaos run (issue 24, point 1) in CI: a fixed seed, faults for
//! `MIROIR_CHAOS_DURATION` (default 30 s). The documented runs use `miroir-chaos` for
//! 120 s each (docs/reliability.md).

use miroir_integration_tests::chaos::{ChaosConfig, run};
use std::time::Duration;

#[tokio::test]
async fn a_short_chaos_run_loses_nothing() {
    if !miroir_integration_tests::real_meilisearch("chaos") {
        return;
    }
    let seconds = std::env::var("MIROIR_CHAOS_DURATION")
        .ok()
        .and_then(|s| s.trim_end_matches('s').parse().ok())
        .unwrap_or(30);
    let seed = std::env::var("MIROIR_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let config = ChaosConfig {
        seed,
        duration: Duration::from_secs(seconds),
        hang_cap: Duration::from_secs(6),
        ..ChaosConfig::default()
    };
    let report = run(&config).await;
    println!("{report}");
    assert!(report.passed(), "the chaos run broke a promise:\n{report}");
    assert!(
        report.writes_acknowledged > 100,
        "too few writes to mean anything: {}",
        report.writes_acknowledged
    );
}
