//! State the gateways of a fleet share (DESIGN §8): idempotency keys, read-your-writes
//! sessions and rate-limit counters. In Redis when `--redis-url` is set, so they hold
//! whichever gateway a request reaches; in this process's memory otherwise (each gateway
//! then enforces its share of a rate limit: the limit divided by the live gateway count).

pub mod local;
pub mod redis;

use local::LocalState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use redis::{SharedState, SharedStateError};
use std::future::Future;
use std::time::Duration;

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a session remembers its last write.
pub const SESSION_TTL: Duration = Duration::from_secs(3600);
/// How long a rate-limit counter lives (its one-second window, plus slack for clocks).
const RATE_WINDOW_TTL: Duration = Duration::from_secs(2);

/// What an `Idempotency-Key` has seen before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// First use: run the write, then [`FleetState::idempotency_finish`].
    New,
    /// The same request is being run by another call.
    InProgress,
    /// The same request already ran: its status and body.
    Replay(u16, String),
    /// The key was used for a different request.
    Conflict,
}

/// What a rate limit says of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Within the limit (or not counted: Redis unreachable and rate limits fail open).
    Allowed,
    /// Over the limit.
    Limited,
    /// Not counted: Redis unreachable and rate limits fail closed.
    Unchecked,
}

/// What rate limits do while Redis is unreachable (`--redis-unavailable-rate-limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnreachablePolicy {
    /// Requests pass uncounted.
    Open,
    /// Requests are refused with 503 `miroir_rate_limit_unavailable`.
    Closed,
}

/// Labels of `miroir_gateway_fleet_state_fallbacks_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// `idempotency`, `session` or `rate_limit`.
    pub operation: &'static str,
}

/// The fleet state: in Redis when configured (with this process's memory as the
/// fallback while Redis is unreachable), in memory otherwise.
pub struct FleetState {
    local: LocalState,
    shared: Option<SharedState>,
    unreachable: UnreachablePolicy,
    fallbacks: Family<FallbackLabels, Counter>,
}

impl FleetState {
    /// Redis at `url` (each command bounded by `timeout`), or memory. Must be called
    /// inside the Tokio runtime.
    pub fn new(
        redis_url: Option<&str>,
        timeout: Duration,
        ca_pem: Option<Vec<u8>>,
        unreachable: UnreachablePolicy,
    ) -> Result<Self, SharedStateError> {
        let fallbacks = Family::<FallbackLabels, Counter>::default();
        if redis_url.is_some() {
            // Exported at 0 from the start, so dashboards see the series.
            for operation in ["idempotency", "session", "rate_limit"] {
                drop(fallbacks.get_or_create(&FallbackLabels { operation }));
            }
        }
        Ok(Self {
            local: LocalState::default(),
            shared: redis_url
                .map(|url| SharedState::new(url, timeout, ca_pem))
                .transpose()?,
            unreachable,
            fallbacks,
        })
    }

    /// "redis" or "memory", for the startup line and `/_miroir/status`.
    pub fn mode(&self) -> &'static str {
        if self.shared.is_some() {
            "redis"
        } else {
            "memory"
        }
    }

    /// Whether the state is shared by every gateway (Redis is configured).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Redis, when configured.
    pub fn redis(&self) -> Option<&SharedState> {
        self.shared.as_ref()
    }

    /// Calls that fell back to this gateway's memory, by operation (for `/metrics`).
    pub fn fallbacks(&self) -> Family<FallbackLabels, Counter> {
        self.fallbacks.clone()
    }

    /// `shared` when Redis is configured and answers; `local` otherwise.
    async fn either<T>(
        &self,
        operation: &'static str,
        shared: Option<impl Future<Output = Result<T, SharedStateError>>>,
        local: impl FnOnce(&LocalState) -> T,
    ) -> T {
        if let Some(shared) = shared {
            match shared.await {
                Ok(value) => return value,
                Err(error) => self.fell_back(operation, &error),
            }
        }
        local(&self.local)
    }

    fn fell_back(&self, operation: &'static str, error: &SharedStateError) {
        tracing::debug!(operation, %error, "fleet state: this gateway's memory instead of Redis");
        self.fallbacks
            .get_or_create(&FallbackLabels { operation })
            .inc();
    }

    /// Claims an idempotency key for a request with `fingerprint`, or says what it saw.
    pub async fn idempotency_begin(&self, key: &str, fingerprint: &str) -> Idempotency {
        let slot = format!("miroir:idempotency:{key}");
        let claim = format!("P{fingerprint}");
        for _ in 0..2 {
            let shared = self.shared.as_ref();
            if self
                .either(
                    "idempotency",
                    shared.map(|s| s.set_new(&slot, &claim, IDEMPOTENCY_TTL)),
                    |l| l.set_new(&slot, &claim, IDEMPOTENCY_TTL),
                )
                .await
            {
                return Idempotency::New;
            }
            let seen = self
                .either("idempotency", shared.map(|s| s.get(&slot)), |l| {
                    l.get(&slot)
                })
                .await;
            let Some(value) = seen else {
                continue; // expired in between: claim it again
            };
            return match value.split_at(value.len().min(1)) {
                ("P", seen) if seen == fingerprint => Idempotency::InProgress,
                ("D", done) => match done.splitn(3, '\n').collect::<Vec<_>>()[..] {
                    [seen, status, body] if seen == fingerprint => {
                        Idempotency::Replay(status.parse().unwrap_or(202), body.to_owned())
                    }
                    _ => Idempotency::Conflict,
                },
                _ => Idempotency::Conflict,
            };
        }
        Idempotency::InProgress
    }

    /// Records the answer to a request whose key was claimed.
    pub async fn idempotency_finish(&self, key: &str, fingerprint: &str, status: u16, body: &str) {
        let slot = format!("miroir:idempotency:{key}");
        let done = format!("D{fingerprint}\n{status}\n{body}");
        self.either(
            "idempotency",
            self.shared
                .as_ref()
                .map(|s| s.set(&slot, &done, IDEMPOTENCY_TTL)),
            |l| l.set(&slot, &done, IDEMPOTENCY_TTL),
        )
        .await
    }

    /// Releases a claimed key whose request failed before anything was recorded, so the
    /// client may retry it.
    pub async fn idempotency_abort(&self, key: &str) {
        let slot = format!("miroir:idempotency:{key}");
        // Both places: the claim may have been made in either.
        self.local.delete(&slot);
        self.either(
            "idempotency",
            self.shared.as_ref().map(|s| s.delete(&slot)),
            |_| (),
        )
        .await
    }

    /// Remembers the last task a session wrote.
    pub async fn session_wrote(&self, session: &str, task_uid: u32) {
        let slot = format!("miroir:session:{session}");
        let uid = task_uid.to_string();
        self.either(
            "session",
            self.shared
                .as_ref()
                .map(|s| s.set(&slot, &uid, SESSION_TTL)),
            |l| l.set(&slot, &uid, SESSION_TTL),
        )
        .await
    }

    /// The last task a session wrote, if any.
    pub async fn session_last_write(&self, session: &str) -> Option<u32> {
        let slot = format!("miroir:session:{session}");
        self.either("session", self.shared.as_ref().map(|s| s.get(&slot)), |l| {
            l.get(&slot)
        })
        .await
        .and_then(|v| v.parse().ok())
    }

    /// Counts one request against `bucket` in the current one-second window.
    pub async fn rate_take(&self, bucket: &str, limit: u64) -> RateDecision {
        let window = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let key = format!("miroir:rate:{bucket}:{window}");
        let count = match &self.shared {
            None => self.local.count(&key, RATE_WINDOW_TTL),
            Some(shared) => match shared.count(&key, RATE_WINDOW_TTL).await {
                Ok(count) => count,
                Err(error) => {
                    self.fell_back("rate_limit", &error);
                    return match self.unreachable {
                        UnreachablePolicy::Open => RateDecision::Allowed,
                        UnreachablePolicy::Closed => RateDecision::Unchecked,
                    };
                }
            },
        };
        if count <= limit {
            RateDecision::Allowed
        } else {
            RateDecision::Limited
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idempotency_keys_replay_the_same_request_and_refuse_another() {
        let state =
            FleetState::new(None, Duration::from_secs(1), None, UnreachablePolicy::Open).unwrap();
        assert_eq!(state.idempotency_begin("k", "a").await, Idempotency::New);
        assert_eq!(
            state.idempotency_begin("k", "a").await,
            Idempotency::InProgress
        );
        assert_eq!(
            state.idempotency_begin("k", "b").await,
            Idempotency::Conflict
        );
        state
            .idempotency_finish("k", "a", 202, "{\"taskUid\":7}")
            .await;
        assert_eq!(
            state.idempotency_begin("k", "a").await,
            Idempotency::Replay(202, "{\"taskUid\":7}".into())
        );
        assert_eq!(
            state.idempotency_begin("k", "b").await,
            Idempotency::Conflict
        );
        state.idempotency_abort("k").await;
        assert_eq!(state.idempotency_begin("k", "b").await, Idempotency::New);
    }

    #[tokio::test]
    async fn rate_limits_count_per_bucket() {
        let state =
            FleetState::new(None, Duration::from_secs(1), None, UnreachablePolicy::Open).unwrap();
        // Two windows may straddle a second boundary: at most limit + limit pass.
        let mut passed = 0;
        for _ in 0..10 {
            passed += u32::from(state.rate_take("ip:1", 3).await == RateDecision::Allowed);
        }
        assert!((3..=6).contains(&passed), "{passed}");
        assert_eq!(state.rate_take("ip:2", 1).await, RateDecision::Allowed);
    }

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_to_memory_and_counts_it() {
        // A port nothing listens on: connections are refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis://127.0.0.1:{port}");
        for policy in [UnreachablePolicy::Open, UnreachablePolicy::Closed] {
            let state =
                FleetState::new(Some(&url), Duration::from_millis(100), None, policy).unwrap();
            assert_eq!(state.idempotency_begin("k", "a").await, Idempotency::New);
            assert_eq!(
                state.idempotency_begin("k", "a").await,
                Idempotency::InProgress
            );
            state.session_wrote("s", 7).await;
            assert_eq!(state.session_last_write("s").await, Some(7));
            let expected = match policy {
                UnreachablePolicy::Open => RateDecision::Allowed,
                UnreachablePolicy::Closed => RateDecision::Unchecked,
            };
            assert_eq!(state.rate_take("ip:1", 100).await, expected);
            assert!(!state.redis().unwrap().reachable());
            let counted = |operation| {
                state
                    .fallbacks()
                    .get_or_create(&FallbackLabels { operation })
                    .get()
            };
            assert!(counted("idempotency") >= 2);
            assert_eq!(counted("session"), 2);
            assert_eq!(counted("rate_limit"), 1);
        }
    }
}
