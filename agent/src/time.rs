//! How durations are read from people and times are written for them.

use std::time::{Duration, SystemTime};

use crate::error::ErrorClass;

/// A duration that does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("bad duration {input:?}: {source} (try 500ms, 3s, 2m)")]
pub struct DurationError {
    /// What was given.
    pub input: String,
    /// Why it is not a duration.
    pub source: humantime::DurationError,
}

impl DurationError {
    /// Always [`ErrorClass::Usage`]: durations come from people.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

/// Parses `500ms`, `3s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(s).map_err(|source| DurationError {
        input: s.to_string(),
        source,
    })
}

/// RFC 3339 in UTC, whole seconds, as IMDS writes times (and our result documents).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
    }
}
