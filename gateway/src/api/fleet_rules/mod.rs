//! The rules that must hold whichever gateway a request reaches (DESIGN §8), on the fleet
//! state (`crate::fleet`: Redis, or this process's memory), one tower layer each:
//! - [`rate_limit`]: per API key and per client IP (`--rate-limit-per-key`,
//!   `--rate-limit-per-ip`, requests per second): 429 `miroir_rate_limited`;
//! - [`session`]: with `X-Miroir-Session`, a read first waits (up to `--node-timeout`) for
//!   the session's last write task to finish, so it sees that write;
//! - [`idempotency`]: with `Idempotency-Key` on a write, the same key with the same request
//!   returns the first answer (the same task uid, `Idempotent-Replayed: true`); with a
//!   different request, 409 `miroir_idempotency_key_reused`.
//!
//! While Redis cannot be reached, idempotency keys and sessions hold on this gateway
//! (its memory), and rate limits pass or refuse as `--redis-unavailable-rate-limits` says.

mod idempotency;
mod rate_limit;
mod session;

pub use idempotency::idempotency;
pub use rate_limit::rate_limit;
pub use session::session;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{Method, header};
use axum::response::Response;

/// The header naming a read-your-writes session.
pub const SESSION: &str = "x-miroir-session";
/// The header that makes a write idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether a request only reads (its answer comes from nodes, no task is made).
fn is_read(method: &Method, path: &str) -> bool {
    method == Method::GET
        || (method == Method::POST
            && (path.ends_with("/search")
                || path == "/multi-search"
                || path.ends_with("/documents/fetch")
                || path.ends_with("/facet-search")))
}

/// A short, stable digest of `parts` (idempotency fingerprints, bucket names).
fn digest(parts: &[&[u8]]) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    format!("{:032x}", hasher.digest128())
}

/// A header's text, if present and readable.
fn header_text(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Sessions, keys and per-key counters belong to the credential that made them.
fn credential(request: &Request) -> String {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| digest(&[v.as_bytes()]))
        .unwrap_or_default()
}

/// The answer of a write, with its body read (writes answer small JSON documents).
async fn buffered(response: Response) -> (Response, Option<String>) {
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, 1024 * 1024).await {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            (Response::from_parts(parts, Body::from(bytes)), Some(text))
        }
        Err(_) => (Response::from_parts(parts, Body::from(Bytes::new())), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_are_told_apart() {
        assert!(is_read(&Method::GET, "/indexes/a/documents"));
        assert!(is_read(&Method::POST, "/indexes/a/search"));
        assert!(is_read(&Method::POST, "/multi-search"));
        assert!(is_read(&Method::POST, "/indexes/a/documents/fetch"));
        assert!(!is_read(&Method::POST, "/indexes/a/documents"));
        assert!(!is_read(&Method::DELETE, "/indexes/a"));
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
    }
}
