use clap::Parser;
use miroir_control_plane::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let log_format = config.log_format;
    miroir_proto::telemetry::run_service(
        "miroir-control-plane",
        log_format,
        miroir_control_plane::server::run(config),
    )
    .await
}
