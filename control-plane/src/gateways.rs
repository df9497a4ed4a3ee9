//! What the control plane knows of each gateway: its applied topology version and last
//! heartbeat, on this process's monotonic clock. Gateways silent for longer than the TTL
//! are forgotten by the gateway-expiry reconciler.

use miroir_proto::pb;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct GatewayRecord {
    address: String,
    applied_version: u64,
    last_heartbeat: Instant,
    open_streams: usize,
}

/// Live gateways, keyed by gateway id.
#[derive(Debug, Default)]
pub struct GatewayRegistry {
    gateways: Mutex<HashMap<String, GatewayRecord>>,
}

impl GatewayRegistry {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, GatewayRecord>) -> T) -> T {
        // A panic while holding this lock leaves plain data behind; keep serving.
        let mut guard = self.gateways.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// A gateway opened a Watch stream.
    pub fn subscribed(&self, id: &str, address: &str, known_version: u64) {
        self.with(|gateways| {
            let record = gateways.entry(id.to_owned()).or_insert(GatewayRecord {
                address: address.to_owned(),
                applied_version: known_version,
                last_heartbeat: Instant::now(),
                open_streams: 0,
            });
            record.address = address.to_owned();
            record.applied_version = record.applied_version.max(known_version);
            record.last_heartbeat = Instant::now();
            record.open_streams += 1;
        });
    }

    /// A gateway applied `version`.
    pub fn applied(&self, id: &str, version: u64) {
        self.with(|gateways| {
            if let Some(record) = gateways.get_mut(id) {
                record.applied_version = record.applied_version.max(version);
                record.last_heartbeat = Instant::now();
            }
        });
    }

    /// A gateway heartbeated.
    pub fn heartbeat(&self, id: &str, applied_version: u64) {
        self.applied(id, applied_version);
    }

    /// A gateway's Watch stream closed; it stays known until the TTL passes.
    pub fn disconnected(&self, id: &str) {
        self.with(|gateways| {
            if let Some(record) = gateways.get_mut(id) {
                record.open_streams = record.open_streams.saturating_sub(1);
            }
        });
    }

    /// Forgets gateways whose last heartbeat is older than `ttl`; returns their ids.
    pub fn expire(&self, ttl: Duration) -> Vec<String> {
        self.with(|gateways| {
            let expired: Vec<String> = gateways
                .iter()
                .filter(|(_, r)| r.last_heartbeat.elapsed() > ttl)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                gateways.remove(id);
            }
            expired
        })
    }

    /// Every gateway heard from within `ttl`: id, address, applied version and when it was
    /// last heard from (wall clock, ms), for the store.
    pub fn seen_within(&self, ttl: Duration, now_ms: u64) -> Vec<crate::store::GatewayPersistence> {
        self.with(|gateways| {
            gateways
                .iter()
                .filter(|(_, r)| r.last_heartbeat.elapsed() <= ttl)
                .map(|(id, r)| crate::store::GatewayPersistence {
                    id: id.clone(),
                    address: r.address.clone(),
                    applied_version: r.applied_version as i64,
                    last_seen_ms: now_ms
                        .saturating_sub(r.last_heartbeat.elapsed().as_millis() as u64)
                        as i64,
                })
                .collect()
        })
    }

    /// Number of known gateways.
    pub fn len(&self) -> usize {
        self.with(|gateways| gateways.len())
    }

    /// True when no gateway is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every known gateway, by id, with its lag behind `current_version`.
    pub fn statuses(&self, current_version: u64) -> Vec<pb::GatewayStatus> {
        let mut list: Vec<pb::GatewayStatus> = self.with(|gateways| {
            gateways
                .iter()
                .map(|(id, r)| pb::GatewayStatus {
                    id: id.clone(),
                    address: r.address.clone(),
                    applied_version: r.applied_version,
                    lag: current_version.saturating_sub(r.applied_version),
                    last_heartbeat_ms_ago: r.last_heartbeat.elapsed().as_millis() as u64,
                    connected: r.open_streams > 0,
                })
                .collect()
        });
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_and_expires_gateways() {
        let registry = GatewayRegistry::default();
        registry.subscribed("gw-1", "127.0.0.1:7700", 3);
        registry.applied("gw-1", 5);
        registry.applied("gw-1", 4);
        let status = &registry.statuses(7)[0];
        assert_eq!(
            (status.applied_version, status.lag, status.connected),
            (5, 2, true)
        );
        registry.disconnected("gw-1");
        assert!(!registry.statuses(7)[0].connected);
        assert!(registry.expire(Duration::from_secs(60)).is_empty());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            registry.expire(Duration::from_millis(10)),
            vec!["gw-1".to_owned()]
        );
        assert!(registry.is_empty());
    }
}
