//! The fleet state in this process's memory: what a gateway uses without Redis, and
//! falls back to while Redis is unreachable.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept before expired ones are swept out.
const SWEEP_ABOVE: usize = 10_000;

/// Keys with values and expiry times.
#[derive(Default)]
pub struct LocalState(Mutex<HashMap<String, (Instant, String)>>);

impl LocalState {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, String)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `SET key value NX PX ttl`: true when set.
    pub fn set_new(&self, key: &str, value: &str, ttl: Duration) -> bool {
        let mut map = self.lock();
        let now = Instant::now();
        if map.get(key).is_some_and(|(expires, _)| *expires > now) {
            return false;
        }
        map.insert(key.to_owned(), (now + ttl, value.to_owned()));
        sweep(&mut map, now);
        true
    }

    /// `SET key value PX ttl`.
    pub fn set(&self, key: &str, value: &str, ttl: Duration) {
        let mut map = self.lock();
        let now = Instant::now();
        map.insert(key.to_owned(), (now + ttl, value.to_owned()));
        sweep(&mut map, now);
    }

    /// `GET key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.lock()
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, value)| value.clone())
    }

    /// `DEL key`.
    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Adds one to the counter `key`, which expires `ttl` after its first hit.
    pub fn count(&self, key: &str, ttl: Duration) -> u64 {
        let mut map = self.lock();
        let now = Instant::now();
        let entry = map
            .entry(key.to_owned())
            .or_insert_with(|| (now + ttl, "0".to_owned()));
        if entry.0 <= now {
            *entry = (now + ttl, "0".to_owned());
        }
        let count = entry.1.parse::<u64>().unwrap_or(0) + 1;
        entry.1 = count.to_string();
        sweep(&mut map, now);
        count
    }
}

/// Drops expired entries once the map grows, so memory stays bounded by live keys.
fn sweep(map: &mut HashMap<String, (Instant, String)>, now: Instant) {
    if map.len() > SWEEP_ABOVE {
        map.retain(|_, (expires, _)| *expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_keys_are_gone_and_may_be_claimed_again() {
        let state = LocalState::default();
        assert!(state.set_new("k", "a", Duration::ZERO));
        assert_eq!(state.get("k"), None);
        assert!(state.set_new("k", "b", Duration::from_secs(60)));
        assert!(!state.set_new("k", "c", Duration::from_secs(60)));
        assert_eq!(state.get("k").as_deref(), Some("b"));
        assert_eq!(state.count("n", Duration::ZERO), 1);
        assert_eq!(
            state.count("n", Duration::ZERO),
            1,
            "an expired counter restarts"
        );
    }
}
