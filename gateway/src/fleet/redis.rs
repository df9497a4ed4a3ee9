//! The fleet state in Redis, through the `redis` crate's `ConnectionManager` (one
//! multiplexed connection that reconnects by itself). Every command is bounded by
//! `--redis-timeout`; after a failure, calls skip Redis for a growing backoff instead of
//! each paying the timeout, and one call at a time probes whether it is back.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a command did not reach Redis.
#[derive(Debug, thiserror::Error)]
pub enum SharedStateError {
    /// The URL is not one the `redis` crate reads.
    #[error(
        "bad Redis URL: {0} (expected redis://[USER:PASSWORD@]HOST:PORT[/DB], or rediss:// for TLS)"
    )]
    Url(redis::RedisError),
    /// Redis failed recently; it is not asked again until the backoff ends.
    #[error("Redis is unreachable (backing off after the last failure)")]
    BackingOff,
    /// No answer within `--redis-timeout`.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis or the connection to it answered an error.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// INCR and, on the first hit, PEXPIRE, as one step: a counter never outlives its window
/// even when a gateway dies between the two.
const RATE_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
";

/// Shortest and longest pause before Redis is asked again after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The fleet state's connection to Redis.
pub struct SharedState {
    manager: ConnectionManager,
    address: String,
    timeout: Duration,
    backoff: Backoff,
    rate_script: redis::Script,
}

impl SharedState {
    /// A client for `url`; connects on first use, so a gateway starts while Redis is down.
    /// With `ca_pem`, a `rediss://` server must present a certificate that CA signed
    /// (instead of one the system's roots trust). Must be called inside the Tokio runtime.
    pub fn new(
        url: &str,
        timeout: Duration,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<Self, SharedStateError> {
        let client = match ca_pem {
            None => redis::Client::open(url),
            Some(root_cert) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            ),
        }
        .map_err(SharedStateError::Url)?;
        let info = client.get_connection_info();
        let scheme = match info.addr() {
            redis::ConnectionAddr::TcpTls { .. } => "rediss",
            _ => "redis",
        };
        let address = format!("{scheme}://{}", info.addr());
        // The manager's own reconnect retries stay within one timeout: our backoff, not
        // its retries, decides when Redis is asked again.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(timeout);
        let manager = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            manager,
            address,
            timeout,
            backoff: Backoff::default(),
            rate_script: redis::Script::new(RATE_SCRIPT),
        })
    }

    /// `redis[s]://host:port`, without credentials, for logs and status.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the last command reached Redis.
    pub fn reachable(&self) -> bool {
        self.backoff.is_up()
    }

    /// Runs `cmd` within the timeout, unless Redis is backing off.
    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, SharedStateError> {
        self.bounded(|mut connection| async move { cmd.query_async(&mut connection).await })
            .await
    }

    /// Runs `call` on the connection within the timeout, unless Redis is backing off, and
    /// records whether Redis answered.
    async fn bounded<T, F, Fut>(&self, call: F) -> Result<T, SharedStateError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if !self.backoff.may_try() {
            return Err(SharedStateError::BackingOff);
        }
        let outcome = match tokio::time::timeout(self.timeout, call(self.manager.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(SharedStateError::Redis(error)),
            Err(_) => Err(SharedStateError::Timeout(self.timeout)),
        };
        self.record(&outcome);
        outcome
    }

    fn record<T>(&self, outcome: &Result<T, SharedStateError>) {
        match outcome {
            Ok(_) => {
                if self.backoff.succeeded() {
                    tracing::info!(redis = %self.address, "Redis reachable again: fleet state shared");
                }
            }
            // An answer Redis chose (a script error, a wrong type) says it is up.
            Err(SharedStateError::Redis(error))
                if error.kind()
                    == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {}
            Err(error) => {
                if self.backoff.failed() {
                    tracing::warn!(
                        redis = %self.address,
                        %error,
                        "Redis unreachable: idempotency keys and sessions fall back to this gateway's memory"
                    );
                }
            }
        }
    }

    /// `SET key value NX PX ttl`: true when set.
    pub async fn set_new(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, SharedStateError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64);
        Ok(self.run::<Option<String>>(&cmd).await?.is_some())
    }

    /// `SET key value PX ttl`.
    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), SharedStateError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis() as u64);
        self.run::<()>(&cmd).await
    }

    /// `GET key`.
    pub async fn get(&self, key: &str) -> Result<Option<String>, SharedStateError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.run(&cmd).await
    }

    /// `DEL key`.
    pub async fn delete(&self, key: &str) -> Result<(), SharedStateError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key);
        self.run::<()>(&cmd).await
    }

    /// Adds one to the counter `key`, which expires `ttl` after its first hit; the new
    /// count.
    pub async fn count(&self, key: &str, ttl: Duration) -> Result<u64, SharedStateError> {
        let mut invocation = self.rate_script.key(key);
        invocation.arg(ttl.as_millis() as u64);
        let invocation = &invocation;
        self.bounded(|mut connection| async move {
            invocation.invoke_async::<u64>(&mut connection).await
        })
        .await
    }
}

/// The result cache's write version of index `uid`: a counter every write to it moves.
fn write_version_key(uid: &str) -> String {
    format!("miroir:cache:wv:{uid}")
}

/// The writes to index `uid` not finished on its nodes yet: task uids, scored by when a
/// gateway last vouched for them (Unix ms).
fn pending_writes_key(uid: &str) -> String {
    format!("miroir:cache:pending:{uid}")
}

impl SharedState {
    /// Runs `pipe` within the timeout, unless Redis is backing off.
    async fn run_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, SharedStateError> {
        self.bounded(|mut connection| async move { pipe.query_async(&mut connection).await })
            .await
    }

    /// For each index of `uids`: its write version and how many writes to it are
    /// pending; one round trip.
    pub async fn write_versions(&self, uids: &[&str]) -> Result<Vec<(u64, u64)>, SharedStateError> {
        let mut pipe = redis::pipe();
        for uid in uids {
            pipe.cmd("GET").arg(write_version_key(uid));
            pipe.cmd("ZCARD").arg(pending_writes_key(uid));
        }
        let values: Vec<Option<u64>> = self.run_pipe(&pipe).await?;
        Ok(values
            .chunks(2)
            .map(|pair| {
                (
                    pair[0].unwrap_or(0),
                    pair.get(1).copied().flatten().unwrap_or(0),
                )
            })
            .collect())
    }

    /// A write to `uid` (task `task`) is about to reach nodes: it is pending (vouched for
    /// at `now_ms`) and the write version moves, in one transaction.
    pub async fn write_started(
        &self,
        uid: &str,
        task: u32,
        now_ms: u64,
    ) -> Result<(), SharedStateError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(pending_writes_key(uid))
            .arg(now_ms)
            .arg(task)
            .ignore()
            .cmd("INCR")
            .arg(write_version_key(uid))
            .ignore();
        self.run_pipe(&pipe).await
    }

    /// The write `task` to `uid` finished on every node: no longer pending, and the write
    /// version moves, in one transaction.
    pub async fn write_finished(&self, uid: &str, task: u32) -> Result<(), SharedStateError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZREM")
            .arg(pending_writes_key(uid))
            .arg(task)
            .ignore()
            .cmd("INCR")
            .arg(write_version_key(uid))
            .ignore();
        self.run_pipe(&pipe).await
    }

    /// Vouches again, at `now_ms`, for a write still running (if still pending).
    pub async fn write_still_running(
        &self,
        uid: &str,
        task: u32,
        now_ms: u64,
    ) -> Result<(), SharedStateError> {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(pending_writes_key(uid))
            .arg("XX")
            .arg(now_ms)
            .arg(task);
        self.run::<()>(&cmd).await
    }

    /// The pending writes to `uid` nobody vouched for since `before_ms`.
    pub async fn writes_unvouched(
        &self,
        uid: &str,
        before_ms: u64,
    ) -> Result<Vec<u32>, SharedStateError> {
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(pending_writes_key(uid)).arg("-inf").arg(before_ms);
        self.run(&cmd).await
    }
}

/// When Redis may be asked again after failures: the pause doubles from [`BACKOFF_MIN`]
/// to [`BACKOFF_MAX`], and when it ends a single call probes while the others keep
/// falling back.
#[derive(Default)]
struct Backoff(Mutex<BackoffState>);

#[derive(Default)]
struct BackoffState {
    /// Failures in a row.
    failures: u32,
    /// No call before this instant.
    next_try: Option<Instant>,
}

impl Backoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, BackoffState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pause(failures: u32) -> Duration {
        BACKOFF_MIN
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(BACKOFF_MAX)
    }

    fn is_up(&self) -> bool {
        self.lock().failures == 0
    }

    /// Whether a call may go to Redis now; when a pause just ended, this call is the
    /// probe and the others wait for the next pause.
    fn may_try(&self) -> bool {
        let mut state = self.lock();
        match state.next_try {
            None => true,
            Some(at) if Instant::now() >= at => {
                state.next_try = Some(Instant::now() + Self::pause(state.failures));
                true
            }
            Some(_) => false,
        }
    }

    /// Records a failure; true when Redis was up until now.
    fn failed(&self) -> bool {
        let mut state = self.lock();
        state.failures = state.failures.saturating_add(1);
        state.next_try = Some(Instant::now() + Self::pause(state.failures));
        state.failures == 1
    }

    /// Records a success; true when Redis was down until now.
    fn succeeded(&self) -> bool {
        let mut state = self.lock();
        let was_down = state.failures > 0;
        *state = BackoffState::default();
        was_down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_bound_and_lets_one_probe_through() {
        assert_eq!(Backoff::pause(1), BACKOFF_MIN);
        assert_eq!(Backoff::pause(2), BACKOFF_MIN * 2);
        assert_eq!(Backoff::pause(40), BACKOFF_MAX);
        let backoff = Backoff::default();
        assert!(backoff.may_try() && backoff.is_up());
        assert!(backoff.failed(), "the first failure is the one logged");
        assert!(!backoff.failed());
        assert!(!backoff.may_try(), "no call during the pause");
        backoff.lock().next_try = Some(Instant::now());
        assert!(backoff.may_try(), "the probe");
        assert!(!backoff.may_try(), "only one probe");
        assert!(backoff.succeeded() && backoff.is_up() && backoff.may_try());
    }

    #[test]
    fn urls_take_users_tls_and_keep_credentials_out_of_the_address() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let plain = SharedState::new(
            "redis://miroir:secret@127.0.0.1:6390/2",
            Duration::from_millis(100),
            None,
        )
        .unwrap();
        assert_eq!(plain.address(), "redis://127.0.0.1:6390");
        let tls = SharedState::new(
            "rediss://cache.example:6380",
            Duration::from_millis(100),
            None,
        )
        .unwrap();
        assert_eq!(tls.address(), "rediss://cache.example:6380");
        assert!(matches!(
            SharedState::new("http://127.0.0.1:6379", Duration::from_millis(100), None),
            Err(SharedStateError::Url(_))
        ));
    }
}
