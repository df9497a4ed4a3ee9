//! What the gateway knows of each node's load from its own calls: the calls in flight,
//! since when a node with calls waiting has been silent (passive health,
//! `nodes/trouble.rs`), a peak-sensitive moving average of its latency (which replica a
//! read asks, `read/plan.rs`), and its recent latencies' 95th percentile (when a read is
//! hedged, `read/hedge.rs`). Atomics and one short lock per answer; no timer per call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How fast a node's latency average forgets: after this long without a new answer it has
/// fallen to 1/e of itself, so a node avoided while it was slow is tried again (5 s kept
/// the slowed replica of `miroir-bench --tail` out better than 1 s; docs/benchmarks.md).
const DECAY: Duration = Duration::from_secs(5);
/// Answers whose latencies the 95th percentile is taken over.
const RECENT: usize = 64;
/// No percentile (so no hedge) before this many answers.
const MIN_SAMPLES: u64 = 16;

#[derive(Debug, Default)]
struct NodeLoad {
    in_flight: AtomicU64,
    /// Milliseconds since [`NodeLoads::epoch`] of its last answer, or of the call that
    /// found it idle.
    quiet_since_ms: AtomicU64,
    /// The latency average in microseconds, as `f64` bits (0: no answer yet).
    average_us: AtomicU64,
    /// Microseconds since the epoch of the average's last update.
    updated_us: AtomicU64,
    /// The 95th percentile of the recent latencies, in microseconds (0: too few yet).
    p95_us: AtomicU64,
    recent: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    latencies_us: Vec<u64>,
    next: usize,
    answers: u64,
}

/// Every node's load, as this gateway's calls see it.
#[derive(Debug)]
pub struct NodeLoads {
    nodes: RwLock<HashMap<String, Arc<NodeLoad>>>,
    epoch: Instant,
}

impl Default for NodeLoads {
    fn default() -> Self {
        Self {
            nodes: RwLock::default(),
            epoch: Instant::now(),
        }
    }
}

/// A call to a node in flight, until dropped. [`InFlight::answered`] counts its latency;
/// a call dropped without an answer (given up, or the loser of a hedge) counts only if it
/// waited longer than the node's average, so that a cancelled call never makes a node look
/// fast.
pub struct InFlight<'a> {
    load: Arc<NodeLoad>,
    loads: &'a NodeLoads,
    started: Instant,
    answered: bool,
}

impl InFlight<'_> {
    /// The node answered: its latency counts.
    pub fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let now_us = self.loads.now_us();
        let latency_us = self.started.elapsed().as_micros() as u64;
        if self.answered || latency_us as f64 > self.load.average(now_us) {
            self.load.record(latency_us, now_us);
        }
        self.load
            .quiet_since_ms
            .store(now_us / 1000, Ordering::Relaxed);
        self.load.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl NodeLoad {
    /// The average, decayed for the time since its last update.
    fn average(&self, now_us: u64) -> f64 {
        let average = f64::from_bits(self.average_us.load(Ordering::Relaxed));
        let idle = now_us.saturating_sub(self.updated_us.load(Ordering::Relaxed));
        average * (-(idle as f64) / DECAY.as_micros() as f64).exp()
    }

    /// Peak-sensitive: a slower answer than the average replaces it at once; a faster one
    /// pulls it down by its weight in time.
    fn record(&self, latency_us: u64, now_us: u64) {
        let sample = latency_us as f64;
        let last = self.updated_us.swap(now_us, Ordering::Relaxed);
        let previous = f64::from_bits(self.average_us.load(Ordering::Relaxed));
        let average = if sample >= previous {
            sample
        } else {
            let weight = (-(now_us.saturating_sub(last) as f64) / DECAY.as_micros() as f64).exp();
            previous * weight + sample * (1.0 - weight)
        };
        self.average_us.store(average.to_bits(), Ordering::Relaxed);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.latencies_us.len() < RECENT {
            recent.latencies_us.push(latency_us);
        } else {
            let next = recent.next;
            recent.latencies_us[next] = latency_us;
        }
        recent.next = (recent.next + 1) % RECENT;
        recent.answers += 1;
        // The percentile is worked out every 8 answers, not on every read that needs it.
        if recent.answers >= MIN_SAMPLES && recent.answers.is_multiple_of(8) {
            let mut sorted = recent.latencies_us.clone();
            sorted.sort_unstable();
            let p95 = sorted[(sorted.len() * 95).div_ceil(100) - 1];
            self.p95_us.store(p95, Ordering::Relaxed);
        }
    }
}

impl NodeLoads {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn get(&self, node: &str) -> Option<Arc<NodeLoad>> {
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .cloned()
    }

    /// Counts a call to `node` in flight.
    pub fn start(&self, node: &str) -> InFlight<'_> {
        let load = self.get(node).unwrap_or_else(|| {
            self.nodes
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(node.to_owned())
                .or_default()
                .clone()
        });
        if load.in_flight.fetch_add(1, Ordering::Relaxed) == 0 {
            load.quiet_since_ms
                .store(self.now_us() / 1000, Ordering::Relaxed);
        }
        InFlight {
            load,
            loads: self,
            started: Instant::now(),
            answered: false,
        }
    }

    /// Nodes with calls in flight and no answer for at least `silence`.
    pub fn silent(&self, silence: Duration) -> Vec<String> {
        let now = self.now_us() / 1000;
        let silence = silence.as_millis() as u64;
        self.nodes
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

    /// What asking `node` is expected to cost: its latency average times its calls in
    /// flight plus this one (0 for a node not asked yet, so it is tried).
    pub fn cost(&self, node: &str) -> f64 {
        self.get(node).map_or(0.0, |load| {
            load.average(self.now_us()) * (load.in_flight.load(Ordering::Relaxed) + 1) as f64
        })
    }

    /// Counts an answer of `node` after `latency` (tests of what reads choose).
    #[cfg(test)]
    pub fn answered_in(&self, node: &str, latency: Duration) {
        let load = self.start(node).load.clone();
        load.record(latency.as_micros() as u64, self.now_us());
    }

    /// The 95th percentile of `node`'s recent latencies, once it has answered enough.
    pub fn p95(&self, node: &str) -> Option<Duration> {
        let p95 = self.get(node)?.p95_us.load(Ordering::Relaxed);
        (p95 > 0).then(|| Duration::from_micros(p95))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_silent_while_calls_wait_without_an_answer() {
        let loads = NodeLoads::default();
        let first = loads.start("a");
        // Just started: not silent yet.
        assert!(loads.silent(Duration::from_millis(50)).is_empty());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(loads.silent(Duration::from_millis(50)), ["a"]);
        // An answer (a call ending) makes it heard from; with nothing in flight it is
        // never silent, however long ago it answered.
        let second = loads.start("a");
        drop(first);
        assert!(loads.silent(Duration::from_millis(50)).is_empty());
        drop(second);
        std::thread::sleep(Duration::from_millis(60));
        assert!(loads.silent(Duration::from_millis(50)).is_empty());
        // A call to a node idle for long starts its silence afresh.
        let _third = loads.start("a");
        assert!(loads.silent(Duration::from_millis(50)).is_empty());
    }

    #[test]
    fn a_slow_answer_raises_the_cost_at_once_and_it_fades_with_time() {
        let loads = NodeLoads::default();
        assert_eq!(loads.cost("a"), 0.0);
        let load = loads.start("a").load.clone();
        let now = loads.now_us();
        load.record(1_000, now);
        load.record(50_000, now);
        assert!((load.average(now) - 50_000.0).abs() < 1.0);
        // Faster answers pull it down only by their weight in time.
        load.record(1_000, now + 100);
        assert!(load.average(now + 100) > 49_000.0);
        // After [`DECAY`] it has faded to about 1/e.
        let later = now + DECAY.as_micros() as u64;
        assert!((load.average(later) - 50_000.0 / std::f64::consts::E).abs() < 100.0);
        // Calls in flight weigh on the cost.
        let one = loads.cost("a");
        let _waiting = loads.start("a");
        assert!(loads.cost("a") > 1.9 * one, "{one} {}", loads.cost("a"));
    }

    #[test]
    fn the_percentile_comes_from_recent_answers_only() {
        let loads = NodeLoads::default();
        let load = loads.start("a").load.clone();
        for _ in 0..8 {
            load.record(1_000, 0);
        }
        assert_eq!(loads.p95("a"), None, "too few answers");
        for i in 0..(RECENT as u64 * 2) {
            load.record(if i % 10 == 0 { 40_000 } else { 2_000 }, 0);
        }
        assert_eq!(loads.p95("a"), Some(Duration::from_millis(40)));
        for _ in 0..RECENT {
            load.record(2_000, 0);
        }
        assert_eq!(loads.p95("a"), Some(Duration::from_millis(2)));
    }

    #[test]
    fn a_call_given_up_never_makes_a_node_look_faster() {
        let loads = NodeLoads::default();
        let load = loads.start("a").load.clone();
        load.record(50_000, loads.now_us());
        let answers = || load.recent.lock().unwrap().answers;
        let before = answers();
        drop(loads.start("a"));
        assert_eq!(answers(), before, "a quick call given up does not count");
        loads.start("a").answered();
        assert_eq!(answers(), before + 1, "a quick answer does");
    }
}
