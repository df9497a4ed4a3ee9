//! `miroir-gateway`: the Meilisearch HTTP API over a sharded fleet. Not built yet (issue 3).

fn main() -> std::process::ExitCode {
    eprintln!("miroir-gateway is not implemented yet; see the README's status list");
    std::process::ExitCode::FAILURE
}
