//! `miroir-ctl`: the operator CLI. Talks gRPC to any control plane in
//! `--control-plane` (comma-separated), trying them in order.

mod aliases;
mod anti_entropy;
mod client;
mod commands;
mod dev;
mod import;
mod moves;
mod output;

use clap::Parser;
use std::process::ExitCode;

/// Operate a Miroir fleet: nodes, groups, indexes and cluster status.
#[derive(Debug, Parser)]
#[command(name = "miroir-ctl", version, about, long_about = None)]
pub struct Cli {
    /// Control-plane gRPC addresses, comma-separated; tried in order.
    #[arg(
        long,
        env = "MIROIR_CONTROL_PLANE",
        default_value = "http://127.0.0.1:7070",
        value_delimiter = ',',
        global = true
    )]
    control_plane: Vec<String>,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = output::Format::Text, global = true)]
    output: output::Format,

    /// Timeout of each call, e.g. 10s.
    #[arg(long, default_value = "10", global = true, value_name = "SECONDS")]
    timeout: u64,

    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = error.print();
                return ExitCode::SUCCESS;
            }
            // One line: the error itself, and where to look for usage.
            let rendered = error.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or("error: invalid arguments");
            eprintln!("{first} (see miroir-ctl --help)");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let message = format!("{error:#}");
            eprintln!("error: {}", message.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
