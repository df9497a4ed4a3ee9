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

/// A gRPC error as one readable line.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    let code = format!("{:?}", status.code());
    let code = code_name(&code);
    anyhow::anyhow!("{code}: {}", status.message())
}

/// `FailedPrecondition` → `FAILED_PRECONDITION`.
fn code_name(debug: &str) -> String {
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_codes_like_grpc() {
        assert_eq!(code_name("FailedPrecondition"), "FAILED_PRECONDITION");
        assert_eq!(code_name("NotFound"), "NOT_FOUND");
        assert_eq!(normalize("127.0.0.1:7070"), "http://127.0.0.1:7070");
    }
}
