use clap::Parser;
use miroir_gateway::config::Config;

// Merging node answers allocates many small JSON values per query; mimalloc takes a
// measured share of the gateway's CPU per query off glibc's allocator (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads().max(1))
        .thread_name("miroir-gateway")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Telemetry starts inside the runtime: the OTLP exporter runs on it.
    runtime.block_on(miroir_proto::telemetry::run_service(
        "miroir-gateway",
        config.log_format,
        miroir_gateway::server::run(config),
    ))
}
