//! `miroir-chaos`: one chaos run (issue 24, point 1) on real processes on loopback: four
//! Meilisearch nodes (one group, RF 2) and a spare, two control planes on Postgres, three
//! gateways and Redis; writers and readers through every gateway round-robin; faults from
//! the seed; then the checker. Prints the report; exits 1 if a promise was broken.
//!
//! Needs `MEILISEARCH_BIN` (real Meilisearch), Postgres and `redis-server` installed, and
//! the workspace's binaries built (`cargo build --workspace --bins`).

use clap::Parser;
use miroir_integration_tests::chaos::{ChaosConfig, run};
use std::time::Duration;

/// One chaos run, printed as a report.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Picks the faults, their targets and timings, and the clients' requests.
    #[arg(long, env = "MIROIR_CHAOS_SEED", default_value_t = 1)]
    seed: u64,
    /// How long faults are injected.
    #[arg(long, env = "MIROIR_CHAOS_DURATION", default_value = "120s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// At most this many faults.
    #[arg(long, default_value_t = 1000)]
    max_faults: usize,
    /// Writers.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Readers.
    #[arg(long, default_value_t = 2)]
    readers: usize,
    /// The longest SIGSTOP.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    hang_cap: Duration,
    /// Keep the processes' logs (the folder is printed).
    #[arg(long)]
    keep_logs: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let config = ChaosConfig {
        seed: args.seed,
        duration: args.duration,
        max_faults: args.max_faults,
        writers: args.writers,
        readers: args.readers,
        hang_cap: args.hang_cap,
        keep_logs: args.keep_logs,
        ..ChaosConfig::default()
    };
    let report = run(&config).await;
    print!("{report}");
    if !report.passed() {
        std::process::exit(1);
    }
}
