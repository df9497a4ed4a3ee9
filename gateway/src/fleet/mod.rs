//! State the gateways of a fleet share (DESIGN §8): idempotency keys, read-your-writes
//! sessions and rate-limit counters. In Redis when `--redis-url` is set, so they hold
//! whichever gateway a request reaches; in this process's memory otherwise (each gateway
//! then enforces its share of a rate limit: the limit divided by the live gateway count).

pub mod redis;

use redis::{Redis, RedisError, Reply};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a session remembers its last write.
pub const SESSION_TTL: Duration = Duration::from_secs(3600);

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

/// Where the fleet state lives.
pub enum FleetState {
    /// This process only.
    Memory(Mutex<HashMap<String, (Instant, String)>>),
    /// Shared by every gateway through Redis.
    Redis(Redis),
}

impl FleetState {
    /// Redis at `url`, or memory.
    pub fn new(redis_url: Option<&str>, timeout: Duration) -> Result<Self, RedisError> {
        Ok(match redis_url {
            Some(url) => Self::Redis(Redis::new(url, timeout)?),
            None => Self::Memory(Mutex::default()),
        })
    }

    /// "redis" or "memory", for the startup line and `/_miroir/status`.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }

    /// Whether the state is shared by every gateway.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Redis(_))
    }

    /// `SET key value NX PX ttl`: true when set.
    async fn set_new(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, RedisError> {
        match self {
            Self::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                map.retain(|_, (expires, _)| *expires > now);
                if map.contains_key(key) {
                    return Ok(false);
                }
                map.insert(key.to_owned(), (now + ttl, value.to_owned()));
                Ok(true)
            }
            Self::Redis(redis) => {
                let ttl = ttl.as_millis().to_string();
                let reply = redis
                    .command(&[
                        b"SET",
                        key.as_bytes(),
                        value.as_bytes(),
                        b"NX",
                        b"PX",
                        ttl.as_bytes(),
                    ])
                    .await?;
                Ok(matches!(reply, Reply::Simple(_)))
            }
        }
    }

    /// `SET key value PX ttl`.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), RedisError> {
        match self {
            Self::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                map.insert(key.to_owned(), (Instant::now() + ttl, value.to_owned()));
                Ok(())
            }
            Self::Redis(redis) => {
                let ttl = ttl.as_millis().to_string();
                redis
                    .command(&[
                        b"SET",
                        key.as_bytes(),
                        value.as_bytes(),
                        b"PX",
                        ttl.as_bytes(),
                    ])
                    .await
                    .map(|_| ())
            }
        }
    }

    /// `GET key`.
    async fn get(&self, key: &str) -> Result<Option<String>, RedisError> {
        match self {
            Self::Memory(map) => {
                let map = map.lock().unwrap_or_else(|e| e.into_inner());
                Ok(map
                    .get(key)
                    .filter(|(expires, _)| *expires > Instant::now())
                    .map(|(_, value)| value.clone()))
            }
            Self::Redis(redis) => match redis.command(&[b"GET", key.as_bytes()]).await? {
                Reply::Bulk(value) => Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned())),
                other => Err(RedisError::Unexpected(other)),
            },
        }
    }

    /// `DEL key`.
    async fn delete(&self, key: &str) -> Result<(), RedisError> {
        match self {
            Self::Memory(map) => {
                map.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
                Ok(())
            }
            Self::Redis(redis) => redis.command(&[b"DEL", key.as_bytes()]).await.map(|_| ()),
        }
    }

    /// Claims an idempotency key for a request with `fingerprint`, or says what it saw.
    pub async fn idempotency_begin(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> Result<Idempotency, RedisError> {
        let slot = format!("miroir:idempotency:{key}");
        for _ in 0..2 {
            if self
                .set_new(&slot, &format!("P{fingerprint}"), IDEMPOTENCY_TTL)
                .await?
            {
                return Ok(Idempotency::New);
            }
            let Some(value) = self.get(&slot).await? else {
                continue; // expired in between: claim it again
            };
            return Ok(match value.split_at(value.len().min(1)) {
                ("P", seen) if seen == fingerprint => Idempotency::InProgress,
                ("D", done) => match done.splitn(3, '\n').collect::<Vec<_>>()[..] {
                    [seen, status, body] if seen == fingerprint => {
                        Idempotency::Replay(status.parse().unwrap_or(202), body.to_owned())
                    }
                    _ => Idempotency::Conflict,
                },
                _ => Idempotency::Conflict,
            });
        }
        Ok(Idempotency::InProgress)
    }

    /// Records the answer to a request whose key was claimed.
    pub async fn idempotency_finish(
        &self,
        key: &str,
        fingerprint: &str,
        status: u16,
        body: &str,
    ) -> Result<(), RedisError> {
        let slot = format!("miroir:idempotency:{key}");
        self.set(
            &slot,
            &format!("D{fingerprint}\n{status}\n{body}"),
            IDEMPOTENCY_TTL,
        )
        .await
    }

    /// Releases a claimed key whose request failed before anything was recorded, so the
    /// client may retry it.
    pub async fn idempotency_abort(&self, key: &str) -> Result<(), RedisError> {
        self.delete(&format!("miroir:idempotency:{key}")).await
    }

    /// Remembers the last task a session wrote.
    pub async fn session_wrote(&self, session: &str, task_uid: u32) -> Result<(), RedisError> {
        self.set(
            &format!("miroir:session:{session}"),
            &task_uid.to_string(),
            SESSION_TTL,
        )
        .await
    }

    /// The last task a session wrote, if any.
    pub async fn session_last_write(&self, session: &str) -> Result<Option<u32>, RedisError> {
        Ok(self
            .get(&format!("miroir:session:{session}"))
            .await?
            .and_then(|v| v.parse().ok()))
    }

    /// Counts one request against `bucket` in the current one-second window; true while
    /// the count stays within `limit`.
    pub async fn rate_take(&self, bucket: &str, limit: u64) -> Result<bool, RedisError> {
        let window = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let key = format!("miroir:rate:{bucket}:{window}");
        let count = match self {
            Self::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let entry = map
                    .entry(key)
                    .or_insert_with(|| (now + Duration::from_secs(2), "0".to_owned()));
                let count = entry.1.parse::<u64>().unwrap_or(0) + 1;
                entry.1 = count.to_string();
                if map.len() > 10_000 {
                    map.retain(|_, (expires, _)| *expires > now);
                }
                count
            }
            Self::Redis(redis) => match redis.command(&[b"INCR", key.as_bytes()]).await? {
                Reply::Int(count) => {
                    if count == 1 {
                        redis
                            .command(&[b"PEXPIRE", key.as_bytes(), b"2000"])
                            .await?;
                    }
                    count as u64
                }
                other => return Err(RedisError::Unexpected(other)),
            },
        };
        Ok(count <= limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idempotency_keys_replay_the_same_request_and_refuse_another() {
        let state = FleetState::new(None, Duration::from_secs(1)).unwrap();
        assert_eq!(
            state.idempotency_begin("k", "a").await.unwrap(),
            Idempotency::New
        );
        assert_eq!(
            state.idempotency_begin("k", "a").await.unwrap(),
            Idempotency::InProgress
        );
        assert_eq!(
            state.idempotency_begin("k", "b").await.unwrap(),
            Idempotency::Conflict
        );
        state
            .idempotency_finish("k", "a", 202, "{\"taskUid\":7}")
            .await
            .unwrap();
        assert_eq!(
            state.idempotency_begin("k", "a").await.unwrap(),
            Idempotency::Replay(202, "{\"taskUid\":7}".into())
        );
        assert_eq!(
            state.idempotency_begin("k", "b").await.unwrap(),
            Idempotency::Conflict
        );
        state.idempotency_abort("k").await.unwrap();
        assert_eq!(
            state.idempotency_begin("k", "b").await.unwrap(),
            Idempotency::New
        );
    }

    #[tokio::test]
    async fn rate_limits_count_per_bucket() {
        let state = FleetState::new(None, Duration::from_secs(1)).unwrap();
        // Two windows may straddle a second boundary: at most limit + limit pass.
        let mut passed = 0;
        for _ in 0..10 {
            passed += u32::from(state.rate_take("ip:1", 3).await.unwrap());
        }
        assert!((3..=6).contains(&passed), "{passed}");
        assert!(state.rate_take("ip:2", 1).await.unwrap());
    }
}
