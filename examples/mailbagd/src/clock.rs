//! Unix seconds: what the queue, login tokens and the CLI store and compare;
//! durations in words for people.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The current time in unix seconds.
pub fn unix_now() -> u64 {
    unix_seconds(SystemTime::now())
}

/// `t` in unix seconds (0 before the epoch).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A duration in words, in its largest whole unit (`7 days`, `1 hour`,
/// `90 seconds`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mailbagd::clock::humanize;
/// assert_eq!(humanize(Duration::from_secs(7 * 86_400)), "7 days");
/// assert_eq!(humanize(Duration::from_secs(3600)), "1 hour");
/// assert_eq!(humanize(Duration::from_secs(90)), "90 seconds");
/// ```
pub fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs % 86_400 == 0 && secs >= 86_400 {
        (secs / 86_400, "day")
    } else if secs % 3600 == 0 && secs >= 3600 {
        (secs / 3600, "hour")
    } else if secs % 60 == 0 && secs >= 60 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanized_durations() {
        assert_eq!(humanize(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(humanize(Duration::from_secs(86_400)), "1 day");
        assert_eq!(humanize(Duration::from_secs(7200)), "2 hours");
        assert_eq!(humanize(Duration::from_secs(900)), "15 minutes");
        assert_eq!(humanize(Duration::from_secs(61)), "61 seconds");
        assert_eq!(humanize(Duration::ZERO), "0 seconds");
    }
}
