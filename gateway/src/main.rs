use clap::Parser;
use miroir_gateway::config::Config;

// Merging node answers allocates many small JSON values per query; mimalloc takes a
// measured share of the gateway's CPU per query off glibc's allocator (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The HTTP API runs on threads of its own (`http_threads`); this runtime accepts
// connections and runs the topology watcher and the metrics endpoint.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let _telemetry = match miroir_proto::telemetry::init("miroir-gateway", config.log_format) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: cannot set up logging: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match miroir_gateway::server::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
