//! Connection to the control plane, failing over between the given addresses.

use anyhow::{Context, bail};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Adds `http://` when the address has no scheme.
pub fn normalize(address: &str) -> String {
    let address = address.trim();
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// Connects to the first control plane that answers.
pub async fn connect(addresses: &[String], timeout: Duration) -> anyhow::Result<Channel> {
    let mut failures = Vec::new();
    for address in addresses.iter().filter(|a| !a.trim().is_empty()) {
        let url = normalize(address);
        let endpoint = Endpoint::from_shared(url.clone())
            .with_context(|| format!("invalid control-plane address {address:?}"))?
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .timeout(timeout);
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(error) => failures.push(format!("{url}: {error}")),
        }
    }
    if failures.is_empty() {
        bail!("no control-plane address given (--control-plane or MIROIR_CONTROL_PLANE)");
    }
    bail!("no control plane reachable ({})", failures.join("; "))
}

/// A gRPC error as one readable line, named by the Miroir error code in its details
/// (`INDEX_NOT_FOUND: Index `x` not found.`).
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    let code = miroir_proto::ErrorCode::of(&status).reason();
    anyhow::anyhow!("{code}: {}", status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_addresses() {
        assert_eq!(normalize("127.0.0.1:7070"), "http://127.0.0.1:7070");
    }
}
