//! When passive health (`nodes/trouble.rs`) last reported each node: at most one report
//! per node in [`REPORT_INTERVAL`]. No dependency on the gateway's state, which holds one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one report per node in this interval, however many calls see it fail.
const REPORT_INTERVAL: Duration = Duration::from_millis(250);

/// When each node was last reported.
#[derive(Debug, Default)]
pub struct TroubleReports {
    last: Mutex<HashMap<String, Instant>>,
}

impl TroubleReports {
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
    fn a_node_is_reported_at_most_once_per_interval() {
        let reports = TroubleReports::default();
        let start = Instant::now();
        assert!(reports.take_turn("a", start));
        assert!(!reports.take_turn("a", start + Duration::from_millis(100)));
        assert!(reports.take_turn("b", start + Duration::from_millis(100)));
        assert!(reports.take_turn("a", start + REPORT_INTERVAL));
    }
}
