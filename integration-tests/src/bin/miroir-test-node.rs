//! `miroir-test-node`: a small Meilisearch-compatible server for tests, used when no real
//! Meilisearch binary is available (`MEILISEARCH_BIN` unset). It is not a search engine:
//! matching is exact words plus a prefix on the last word, with no typos or proximity.
//!
//! Faults are injected with `POST /_testnode/faults
//! {"down": bool, "latencyMs": u64, "errorRate": f64, "taskDelayMs": u64}` (not part of
//! Meilisearch's API; tests against real Meilisearch use process kills instead).
//!
//! Prints `listening on ADDR` on stdout once it accepts connections.

use clap::Parser;
use std::net::SocketAddr;

/// A Meilisearch-compatible test node with fault injection.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Listen address (port 0 picks a free one; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Master key, as Meilisearch's --master-key; without it every route is open.
    #[arg(long, env = "MEILI_MASTER_KEY")]
    master_key: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = miroir_integration_tests::test_node::routes::router(args.master_key);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    // Small answers leave at once instead of waiting for an ACK (Nagle), as a latency-minded
    // server sends them.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
