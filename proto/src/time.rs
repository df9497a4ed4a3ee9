//! RFC 3339 timestamps, ISO 8601 durations and `performanceDetails` stage durations as
//! Meilisearch prints them (used by the gateway for task views and search answers, and by
//! the test node).

use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `2024-08-08T17:05:55.791772Z` for a time since the Unix epoch.
pub fn rfc3339(time: SystemTime) -> String {
    let at = OffsetDateTime::from(time);
    // Microseconds, as Meilisearch's task times show them.
    let at = at.replace_nanosecond(at.microsecond() * 1000).unwrap_or(at);
    let text = at.format(&Rfc3339).unwrap_or_default();
    // Meilisearch leaves the fraction out of a whole second, but its timestamps carry
    // nanoseconds, so that never happens there; here times carry milliseconds (1 task in
    // 1000 would land on a whole second), and the Python SDK cannot parse a timestamp
    // without a fraction. So a whole second still shows one.
    match text.strip_suffix('Z') {
        Some(base) if at.nanosecond() == 0 => format!("{base}.000Z"),
        _ => text,
    }
}

/// RFC 3339 for milliseconds since the Unix epoch.
pub fn rfc3339_ms(ms: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

/// Milliseconds since the Unix epoch of an RFC 3339 time (`…Z` or `…±HH:MM`, any
/// fraction of a second), as Meilisearch prints task times and takes task filters.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let since = parse_rfc3339(text)?.duration_since(UNIX_EPOCH).ok()?;
    Some(since.as_millis() as u64)
}

/// An RFC 3339 time (`…Z` or `…±HH:MM`, any fraction of a second) as an instant, to the
/// nanosecond: the parser Meilisearch itself uses (`time`'s `Rfc3339`).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The current time, RFC 3339.
pub fn now() -> String {
    rfc3339(SystemTime::now())
}

/// `PT0.009330S` style durations.
pub fn iso_duration(duration: Duration) -> String {
    let micros = duration.subsec_micros();
    let secs = duration.as_secs();
    let (days, secs) = (secs / 86_400, secs % 86_400);
    let day_part = if days > 0 {
        format!("{days}D")
    } else {
        String::new()
    };
    if micros == 0 {
        format!("P{day_part}T{secs}S")
    } else if micros.is_multiple_of(1000) {
        format!("P{day_part}T{secs}.{:03}S", micros / 1000)
    } else {
        format!("P{day_part}T{secs}.{micros:06}S")
    }
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

    /// Adds every stage of `other`.
    pub fn merge(&mut self, other: &PerformanceDetails) {
        for (stage, duration) in &other.stages {
            self.add(stage, *duration);
        }
    }

    /// Meilisearch's `performanceDetails` object.
    pub fn to_value(&self) -> Value {
        Value::Object(
            self.stages
                .iter()
                .map(|(stage, duration)| (stage.clone(), Value::String(format!("{duration:.2?}"))))
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
    fn formats_like_meilisearch() {
        let t = UNIX_EPOCH + Duration::from_micros(1_723_136_755_791_772);
        assert_eq!(rfc3339(t), "2024-08-08T17:05:55.791772Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(rfc3339_ms(1_723_136_755_000), "2024-08-08T17:05:55.000Z");
        assert_eq!(rfc3339_ms(1_723_136_755_120), "2024-08-08T17:05:55.12Z");
        assert_eq!(iso_duration(Duration::from_micros(9_330)), "PT0.009330S");
        assert_eq!(iso_duration(Duration::from_secs(1)), "PT1S");
    }

    #[test]
    fn rfc3339_reads_back_with_any_fraction_and_offset() {
        let ms = 1_796_539_107_851;
        assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms));
        assert_eq!(
            parse_rfc3339_ms("2026-12-06T06:38:27.851772123Z"),
            Some(ms),
            "Meilisearch's nanoseconds"
        );
        assert_eq!(parse_rfc3339_ms("2026-12-06T08:38:27.851+02:00"), Some(ms));
        assert_eq!(parse_rfc3339_ms("not a time"), None);
        // Multi-byte characters where an offset would be: an error, not a panic.
        assert_eq!(parse_rfc3339_ms("éééa"), None);
        assert_eq!(parse_rfc3339_ms("2026-12-06T06:38:27.851é:00"), None);
        assert_eq!(parse_rfc3339_ms("éééaT00:00:00Z"), None);
    }

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
            serde_json::to_string(&details.to_value()).unwrap(),
            r#"{"search > tokenize":"1.50ms","search":"5.50ms","search > filter":"250.00µs","federating results > merge results":"20.00µs"}"#
        );
    }
}
