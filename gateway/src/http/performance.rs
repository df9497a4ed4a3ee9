//! `performanceDetails`, Meilisearch's answer to `showPerformanceDetails` (≥ 1.35): stage
//! names (`search > keyword search`) mapped to durations written as Rust's `{:.2?}`
//! (`"436.67µs"`, `"3.56ms"`).
//!
//! Across nodes a stage reported by several of them is summed, Meilisearch's own rule for
//! a stage that occurs several times in one request (several queries of a federated
//! search), so the figures are the fleet's work per stage. The gateway adds its own stages
//! under Meilisearch's names for a search spread over remote instances: `federating
//! results > wait for remote results` (from sending to the nodes to their last answer,
//! the client's wait) and `federating results > merge results`.

use serde_json::{Map, Value};
use std::time::Duration;

/// Whether a query or a federation object asks for performance details.
pub fn asked(object: &Map<String, Value>) -> bool {
    object
        .get("showPerformanceDetails")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Stages and their summed durations, in the order first seen.
#[derive(Debug, Default)]
pub struct PerformanceDetails {
    stages: Vec<(String, Duration)>,
}

impl PerformanceDetails {
    /// Adds `duration` to `stage`.
    pub fn add(&mut self, stage: &str, duration: Duration) {
        match self.stages.iter_mut().find(|(name, _)| name == stage) {
            Some((_, total)) => *total += duration,
            None => self.stages.push((stage.to_owned(), duration)),
        }
    }

    /// Adds a node's `performanceDetails`; entries that are not durations are skipped.
    pub fn add_answer(&mut self, details: Option<&Value>) {
        for (stage, text) in details.and_then(Value::as_object).into_iter().flatten() {
            if let Some(duration) = text.as_str().and_then(parse_duration) {
                self.add(stage, duration);
            }
        }
    }

    pub fn into_value(self) -> Value {
        Value::Object(
            self.stages
                .into_iter()
                .map(|(stage, duration)| (stage, Value::String(format!("{duration:.2?}"))))
                .collect(),
        )
    }
}

/// A duration as Rust's `Debug` writes it (`"1.50s"`, `"3.56ms"`, `"436.67µs"`, `"12.00ns"`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => value,
        "ms" => value / 1e3,
        "µs" | "us" => value / 1e6,
        "ns" => value / 1e9,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_back_what_rust_writes() {
        for duration in [
            Duration::from_nanos(500),
            Duration::from_nanos(436_670),
            Duration::from_micros(3_560),
            Duration::from_millis(1_500),
        ] {
            let text = format!("{duration:.2?}");
            let read = parse_duration(&text).expect(&text);
            assert_eq!(format!("{read:.2?}"), text);
        }
        assert_eq!(parse_duration("3.56ms"), Some(Duration::from_micros(3_560)));
        assert_eq!(parse_duration("2us"), Some(Duration::from_micros(2)));
        for bad in ["", "ms", "3.5", "3.5 ms", "3.5min", "-1ms", "1..2ms"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn stages_of_several_nodes_are_summed_in_first_seen_order() {
        let mut details = PerformanceDetails::default();
        details.add_answer(Some(
            &json!({"search > tokenize": "1.00ms", "search": "3.00ms"}),
        ));
        details.add_answer(Some(&json!({
            "search > filter": "250.00µs",
            "search > tokenize": "500.00µs",
            "search": "2.50ms",
            "note": 12,
        })));
        details.add_answer(None);
        details.add(
            "federating results > merge results",
            Duration::from_micros(20),
        );
        assert_eq!(
            serde_json::to_string(&details.into_value()).unwrap(),
            r#"{"search > tokenize":"1.50ms","search":"5.50ms","search > filter":"250.00µs","federating results > merge results":"20.00µs"}"#
        );
    }
}
