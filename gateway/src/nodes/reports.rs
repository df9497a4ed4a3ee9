//! What passive health counts per node (`nodes/trouble.rs` acts on it): the calls in
//! flight and since when each node has been silent, and when each was last reported. No
//! dependency on the gateway's state, which holds one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// At most one report per node in this interval, however many calls see it fail.
const REPORT_INTERVAL: Duration = Duration::from_millis(250);

/// One node's calls in flight, and since when it has been silent with calls waiting: the
/// watchdog ([`super::trouble::watch_silent_nodes`]) reports a node silent for `--node-report-after`.
/// Atomics, not a timer per call: a timer due before every other one costs the runtime a
/// wake-up per call on the read path (docs/benchmarks.md).
#[derive(Debug, Default)]
struct NodeCalls {
    in_flight: AtomicU64,
    /// Milliseconds since [`TroubleReports::epoch`] of its last answer, or of the call
    /// that found it idle.
    quiet_since_ms: AtomicU64,
}

/// Reports made, and calls in flight, per node.
#[derive(Debug)]
pub struct TroubleReports {
    last: Mutex<HashMap<String, Instant>>,
    calls: RwLock<HashMap<String, Arc<NodeCalls>>>,
    epoch: Instant,
}

impl Default for TroubleReports {
    fn default() -> Self {
        Self {
            last: Mutex::default(),
            calls: RwLock::default(),
            epoch: Instant::now(),
        }
    }
}

/// Counts a call to a node in flight until dropped (answered or given up).
pub(crate) struct InFlight<'a> {
    calls: Arc<NodeCalls>,
    reports: &'a TroubleReports,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.calls
            .quiet_since_ms
            .store(self.reports.now_ms(), Ordering::Relaxed);
        self.calls.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TroubleReports {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Counts a call to `node` in flight.
    pub(crate) fn start(&self, node: &str) -> InFlight<'_> {
        let found = self
            .calls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .cloned();
        let calls = found.unwrap_or_else(|| {
            self.calls
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(node.to_owned())
                .or_default()
                .clone()
        });
        if calls.in_flight.fetch_add(1, Ordering::Relaxed) == 0 {
            calls.quiet_since_ms.store(self.now_ms(), Ordering::Relaxed);
        }
        InFlight {
            calls,
            reports: self,
        }
    }

    /// Nodes with calls in flight and no answer for at least `silence`.
    pub(crate) fn silent(&self, silence: Duration) -> Vec<String> {
        let now = self.now_ms();
        let silence = silence.as_millis() as u64;
        self.calls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, c)| {
                c.in_flight.load(Ordering::Relaxed) > 0
                    && now.saturating_sub(c.quiet_since_ms.load(Ordering::Relaxed)) >= silence
            })
            .map(|(node, _)| node.clone())
            .collect()
    }

    /// Whether `node` may be reported now (and records that it is).
    pub(crate) fn take_turn(&self, node: &str, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(node) {
            Some(at) if now.duration_since(*at) < REPORT_INTERVAL => false,
            _ => {
                last.insert(node.to_owned(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_silent_while_calls_wait_without_an_answer() {
        let reports = TroubleReports::default();
        let first = reports.start("a");
        // Just started: not silent yet.
        assert!(reports.silent(Duration::from_millis(50)).is_empty());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(reports.silent(Duration::from_millis(50)), ["a"]);
        // An answer (a call ending) makes it heard from; with nothing in flight it is
        // never silent, however long ago it answered.
        let second = reports.start("a");
        drop(first);
        assert!(reports.silent(Duration::from_millis(50)).is_empty());
        drop(second);
        std::thread::sleep(Duration::from_millis(60));
        assert!(reports.silent(Duration::from_millis(50)).is_empty());
        // A call to a node idle for long starts its silence afresh.
        let _third = reports.start("a");
        assert!(reports.silent(Duration::from_millis(50)).is_empty());
    }

    #[test]
    fn a_node_is_reported_at_most_once_per_interval() {
        let reports = TroubleReports::default();
        let start = Instant::now();
        assert!(reports.take_turn("a", start));
        assert!(!reports.take_turn("a", start + Duration::from_millis(100)));
        assert!(reports.take_turn("b", start + Duration::from_millis(100)));
        assert!(reports.take_turn("a", start + REPORT_INTERVAL));
    }
}
