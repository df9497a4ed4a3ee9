//! Live progress of the shard moves this leader drives, overlaid on the topology's moves
//! for status answers.

use crate::operations::MoveKey;
use miroir_proto::pb;
use std::collections::HashMap;
use std::sync::Mutex;

/// Live progress of the moves this leader drives (not persisted: a new leader starts
/// the current phase again).
#[derive(Default)]
pub struct MoveProgress {
    live: Mutex<HashMap<MoveKey, Live>>,
}

#[derive(Clone, Default)]
pub(crate) struct Live {
    pub(crate) copied: u64,
    pub(crate) total: u64,
    pub(crate) rate: f64,
    pub(crate) last_error: String,
}

impl MoveProgress {
    pub(crate) fn update(&self, key: &MoveKey, f: impl FnOnce(&mut Live)) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        f(live.entry(key.clone()).or_default());
    }

    pub(crate) fn forget(&self, key: &MoveKey) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// `moves` with the live figures of those this process drives.
    pub fn overlay(&self, moves: &[pb::ShardMove]) -> Vec<pb::ShardMove> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        moves
            .iter()
            .map(|m| {
                let mut m = m.clone();
                if let Some(l) = live.get(&MoveKey::of(&m)) {
                    m.documents_copied = m.documents_copied.max(l.copied);
                    m.documents_total = l.total;
                    m.documents_per_second = l.rate;
                    m.last_error = l.last_error.clone();
                }
                m
            })
            .collect()
    }
}
