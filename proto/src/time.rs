//! RFC 3339 timestamps and ISO 8601 durations as Meilisearch prints them (used by the
//! gateway for task views and by the test node).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2024-08-08T17:05:55.791772Z` for a time since the Unix epoch.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let micros = since.subsec_micros();
    // Meilisearch leaves the fraction out of a whole second, but its timestamps carry
    // nanoseconds, so that never happens there; here times carry milliseconds (1 task in
    // 1000 would land on a whole second), and the Python SDK cannot parse a timestamp
    // without a fraction. So a whole second still shows one.
    let fraction = if micros == 0 {
        ".000".to_owned()
    } else {
        format!(".{micros:06}").trim_end_matches('0').to_owned()
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{fraction}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// RFC 3339 for milliseconds since the Unix epoch.
pub fn rfc3339_ms(ms: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
