//! The exports (`POST /export`, [`crate::export`]) this leader runs, so a task no process
//! runs any more is told apart from one running here.

use std::collections::HashSet;
use std::sync::Mutex;

/// The exports this leader runs, by task uid.
#[derive(Default)]
pub struct Exports {
    running: Mutex<HashSet<u32>>,
}

impl Exports {
    /// Whether this process runs export `uid`.
    pub fn runs(&self, uid: u32) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&uid)
    }

    /// Records that this process runs (`running`) or no longer runs export `uid`.
    pub fn set(&self, uid: u32, running: bool) {
        let mut set = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running {
            set.insert(uid);
        } else {
            set.remove(&uid);
        }
    }
}
