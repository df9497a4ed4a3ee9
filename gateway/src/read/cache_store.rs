//! The result cache's memory: answers by request key, bounded in bytes, least recently
//! used first out, with its counts. What may be stored and served, and when, is
//! [`super::cache`]'s.

use axum::body::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Mutex;

/// Largest answer kept.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// The cache and its counts.
pub struct ResultCache {
    entries: Mutex<Entries>,
    budget: usize,
    /// Answers served from the cache.
    pub hits: Counter,
    /// Answers computed and offered to the cache.
    pub misses: Counter,
    /// Answers computed without the cache: a write pending on an index, Redis
    /// unreachable, performance details asked for.
    pub bypassed: Counter,
    /// Bytes held.
    pub bytes: Gauge,
}

#[derive(Default)]
struct Entries {
    map: hashlink::LinkedHashMap<u64, Entry>,
    bytes: usize,
}

struct Entry {
    key: Vec<u8>,
    body: Bytes,
}

impl ResultCache {
    /// A cache holding at most `budget` bytes of answers (least recently used go first).
    pub fn new(budget: usize) -> Self {
        Self {
            entries: Mutex::default(),
            budget,
            hits: Counter::default(),
            misses: Counter::default(),
            bypassed: Counter::default(),
            bytes: Gauge::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer stored under `key`, marked as used now.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        let hash = xxhash_rust::xxh3::xxh3_64(key);
        let mut entries = self.lock();
        let body = entries
            .map
            .get(&hash)
            .filter(|e| e.key == key)
            .map(|e| e.body.clone())?;
        entries.map.to_back(&hash);
        Some(body)
    }

    /// Stores `body` under `key`, the least recently used going while over the budget.
    pub fn insert(&self, key: Vec<u8>, body: Bytes) {
        let size = key.len() + body.len();
        if size > MAX_ENTRY_BYTES.min(self.budget) {
            return;
        }
        let hash = xxhash_rust::xxh3::xxh3_64(&key);
        let mut entries = self.lock();
        if let Some(old) = entries.map.insert(hash, Entry { key, body }) {
            entries.bytes -= old.key.len() + old.body.len();
        }
        entries.bytes += size;
        while entries.bytes > self.budget {
            let Some((_, gone)) = entries.map.pop_front() else {
                break;
            };
            entries.bytes -= gone.key.len() + gone.body.len();
        }
        self.bytes.set(entries.bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_answers_go_first() {
        let cache = ResultCache::new(100);
        cache.insert(b"a".to_vec(), Bytes::from(vec![b'x'; 40]));
        cache.insert(b"b".to_vec(), Bytes::from(vec![b'y'; 40]));
        assert!(cache.get(b"a").is_some());
        cache.insert(b"c".to_vec(), Bytes::from(vec![b'z'; 40]));
        assert!(cache.get(b"b").is_none(), "b was the least recently used");
        assert!(cache.get(b"a").is_some() && cache.get(b"c").is_some());
        assert_eq!(cache.bytes.get(), 82);
        // Larger than the whole budget: not kept.
        cache.insert(b"d".to_vec(), Bytes::from(vec![b'w'; 200]));
        assert!(cache.get(b"d").is_none());
    }
}
