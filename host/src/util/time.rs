//! Time formatting used in records.

/// RFC 3339 UTC with millisecond precision.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
