//! `performanceDetails`, Meilisearch's answer to `showPerformanceDetails` (≥ 1.35): stage
//! names (`search > keyword search`) mapped to durations written as Rust's `{:.2?}`
//! (`"436.67µs"`, `"3.56ms"`).
//!
//! Across nodes a stage reported by several of them is summed, Meilisearch's own rule for
//! a stage that occurs several times in one request (several queries of a federated
//! search), so the figures are the fleet's work per stage. The gateway adds its own stages
//! under Meilisearch's names for a search spread over remote instances: `federating
//! results > wait for remote results` (from sending to the nodes to their last answer,
//! the client's wait) and `federating results > merge results`. The stage durations are
//! [`miroir_proto::time::PerformanceDetails`], shared with the test node.

use serde_json::{Map, Value};

/// Whether a query or a federation object asks for performance details.
pub fn asked(object: &Map<String, Value>) -> bool {
    object
        .get("showPerformanceDetails")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}
