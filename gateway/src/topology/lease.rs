//! The gateway's write lease (DESIGN §3): writes are accepted only while a heartbeat
//! acknowledged by the control plane is younger than the lease TTL, measured on this
//! process's monotonic clock from when that heartbeat was *sent* (the conservative end).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Inner {
    /// Send times of heartbeats not yet acknowledged, oldest first.
    in_flight: VecDeque<Instant>,
    /// The lease holds until this instant.
    valid_until: Option<Instant>,
    ttl: Option<Duration>,
}

/// The write lease.
#[derive(Debug, Default)]
pub struct Lease {
    inner: Mutex<Inner>,
}

impl Lease {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A heartbeat was just sent.
    pub fn heartbeat_sent(&self) {
        self.with(|inner| inner.in_flight.push_back(Instant::now()));
    }

    /// The oldest unacknowledged heartbeat was acknowledged with `ttl`.
    pub fn acknowledged(&self, ttl: Duration) {
        self.with(|inner| {
            if let Some(sent) = inner.in_flight.pop_front() {
                let until = sent + ttl;
                inner.valid_until = Some(inner.valid_until.map_or(until, |v| v.max(until)));
                inner.ttl = Some(ttl);
            }
        });
    }

    /// The stream closed: heartbeats in flight will never be acknowledged.
    pub fn stream_closed(&self) {
        self.with(|inner| inner.in_flight.clear());
    }

    /// Time left on the lease, if it holds.
    pub fn remaining(&self) -> Option<Duration> {
        self.with(|inner| {
            inner
                .valid_until
                .and_then(|until| until.checked_duration_since(Instant::now()))
                .filter(|left| !left.is_zero())
        })
    }

    /// True while writes may be accepted.
    pub fn is_valid(&self) -> bool {
        self.remaining().is_some()
    }

    /// The TTL the control plane grants, once known.
    pub fn ttl(&self) -> Option<Duration> {
        self.with(|inner| inner.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_runs_from_the_acknowledged_heartbeats_send_time() {
        let lease = Lease::default();
        assert!(!lease.is_valid());
        lease.heartbeat_sent();
        lease.acknowledged(Duration::from_millis(50));
        assert!(lease.is_valid());
        assert!(lease.remaining().unwrap() <= Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!lease.is_valid());
        // An acknowledgement without a heartbeat in flight grants nothing.
        lease.acknowledged(Duration::from_secs(10));
        assert!(!lease.is_valid());
        lease.heartbeat_sent();
        lease.stream_closed();
        lease.acknowledged(Duration::from_secs(10));
        assert!(!lease.is_valid());
    }
}
