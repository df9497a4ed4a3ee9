//! What the leader's anti-entropy ([`crate::reconcilers::anti_entropy`]) did and is
//! doing, shared with the gRPC service: the pass running, the last one, the totals.

use miroir_proto::pb;
use std::sync::Mutex;

/// What the leader's anti-entropy did and is doing; answers `GetAntiEntropyStatus`.
#[derive(Default)]
pub struct Tracker {
    inner: Mutex<TrackerInner>,
    /// Wakes the loop for a pass an operator asked for.
    pub(crate) wake: tokio::sync::Notify,
}

#[derive(Default)]
pub(crate) struct TrackerInner {
    pub(crate) running: Option<pb::AntiEntropyPass>,
    pub(crate) last: Option<pb::AntiEntropyPass>,
    pub(crate) started: u64,
    pub(crate) requested: u64,
    pub(crate) next_pass_at_ms: u64,
    pub(crate) differences: u64,
    pub(crate) repaired: u64,
}

impl Tracker {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, TrackerInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The status; `interval`, `documents_per_second` and `leader_id` as configured.
    pub fn status(
        &self,
        interval: std::time::Duration,
        documents_per_second: u64,
        leader_id: &str,
    ) -> pb::AntiEntropyStatus {
        let inner = self.lock();
        pb::AntiEntropyStatus {
            interval_ms: interval.as_millis() as u64,
            documents_per_second,
            running: inner.running.clone(),
            last: inner.last.clone(),
            next_pass_at_ms: inner.next_pass_at_ms,
            passes: inner.last.as_ref().map_or(0, |p| p.number),
            differences: inner.differences,
            repaired: inner.repaired,
            leader_id: leader_id.to_owned(),
            requested_pass: inner.requested,
        }
    }

    /// Asks for a pass now (after the one running, if any).
    pub fn request(&self) {
        let mut inner = self.lock();
        if inner.requested == 0 {
            inner.requested = inner.started + 1;
        }
        drop(inner);
        self.wake.notify_one();
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut pb::AntiEntropyPass)) {
        if let Some(pass) = self.lock().running.as_mut() {
            change(pass);
        }
    }
}
