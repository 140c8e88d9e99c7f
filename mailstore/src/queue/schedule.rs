//! When to retry: a pure backoff schedule.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Default maximum time a message stays queued: 5 days (RFC 5321 section
/// 4.5.4.1 says "at least 4-5 days").
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(5 * 86_400);

/// Default delay before a "delayed" DSN is due: 4 hours.
pub const DEFAULT_DELAY_WARNING: Duration = Duration::from_secs(4 * 3600);

/// Most intervals a schedule may list.
pub const MAX_INTERVALS: usize = 100;

/// Longest single wait of a schedule: 365 days.
pub const MAX_INTERVAL: Duration = Duration::from_secs(365 * 86_400);

const DEFAULT_INTERVALS: [u64; 7] = [300, 600, 1200, 2400, 3600, 7200, 14_400];

/// A schedule string or duration setting that cannot be used.
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::queue::RetrySchedule;
///
/// let err = "5m, soon".parse::<RetrySchedule>().unwrap_err();
/// assert!(err.to_string().contains("soon"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry schedule {input:?}: {reason}")]
#[non_exhaustive]
pub struct ScheduleError {
    /// The offending text.
    pub input: String,
    /// What is wrong.
    pub reason: &'static str,
}

fn schedule_err(input: &str, reason: &'static str) -> ScheduleError {
    ScheduleError {
        input: input.chars().take(200).collect(),
        reason,
    }
}

/// Parses one duration setting such as `"5d"`, `"4h 30m"` or `"90s"`
/// (humantime syntax); at least one second.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mailbag_mailstore::queue::parse_duration_setting;
///
/// assert_eq!(parse_duration_setting("5d").unwrap(), Duration::from_secs(432_000));
/// assert!(parse_duration_setting("0s").is_err());
/// ```
pub fn parse_duration_setting(s: &str) -> Result<Duration, ScheduleError> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|_| schedule_err(s, "not a duration like 90s, 5m, 4h or 5d"))?;
    if d.as_secs() == 0 {
        return Err(schedule_err(s, "durations must be at least one second"));
    }
    Ok(d)
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Try again at this time (unix seconds).
    At(u64),
    /// The message is too old: give up and bounce.
    Expired,
}

/// A retry schedule: the waits between attempts, the maximum time in the
/// queue, and when a "delayed" DSN is due. Pure: all times are passed in.
///
/// The n-th wait follows the n-th failed attempt; the last wait repeats.
/// The default is minutes, then hours: 5m, 10m, 20m, 40m, 1h, 2h, 4h, then
/// every 4h, for at most [`DEFAULT_MAX_AGE`] (5 days), with the delay warning
/// after [`DEFAULT_DELAY_WARNING`] (4h).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mailbag_mailstore::queue::{Retry, RetrySchedule};
///
/// let s: RetrySchedule = "5m, 1h".parse().unwrap();
/// let s = s.with_max_age(Duration::from_secs(2 * 3600));
/// let t0 = 1_000_000;
/// assert_eq!(s.next_attempt(t0, 1, t0), Retry::At(t0 + 300));
/// assert_eq!(s.next_attempt(t0, 2, t0 + 300), Retry::At(t0 + 3900));
/// // Never later than the expiry; an attempt failing at or after it expires.
/// assert_eq!(s.next_attempt(t0, 3, t0 + 3900), Retry::At(t0 + 7200));
/// assert_eq!(s.next_attempt(t0, 4, t0 + 7200), Retry::Expired);
/// assert_eq!(s.to_string(), "5m, 1h");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    intervals: Vec<u64>,
    max_age: u64,
    delay_warning: Option<u64>,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule {
            intervals: DEFAULT_INTERVALS.to_vec(),
            max_age: DEFAULT_MAX_AGE.as_secs(),
            delay_warning: Some(DEFAULT_DELAY_WARNING.as_secs()),
        }
    }
}

impl RetrySchedule {
    /// A schedule from explicit waits (1 to [`MAX_INTERVALS`], each from one
    /// second to [`MAX_INTERVAL`]), with the default maximum age and delay warning.
    pub fn new(intervals: &[Duration]) -> Result<Self, ScheduleError> {
        if intervals.is_empty() {
            return Err(schedule_err("", "at least one interval is needed"));
        }
        if intervals.len() > MAX_INTERVALS {
            return Err(schedule_err("", "too many intervals (at most 100)"));
        }
        if intervals.iter().any(|d| d.as_secs() == 0) {
            return Err(schedule_err("", "durations must be at least one second"));
        }
        if intervals.iter().any(|d| *d > MAX_INTERVAL) {
            return Err(schedule_err("", "a wait may be at most 365 days"));
        }
        Ok(RetrySchedule {
            intervals: intervals.iter().map(Duration::as_secs).collect(),
            ..RetrySchedule::default()
        })
    }

    /// The same schedule with another maximum queue age.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age.as_secs();
        self
    }

    /// The same schedule with another delay-warning time (`None`: never send
    /// "delayed" DSNs).
    pub fn with_delay_warning(mut self, after: Option<Duration>) -> Self {
        self.delay_warning = after.map(|d| d.as_secs());
        self
    }

    /// The waits between attempts, in seconds.
    pub fn intervals(&self) -> &[u64] {
        &self.intervals
    }

    /// The maximum time in the queue.
    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.max_age)
    }

    /// When a message that arrived at `arrival` expires (the DSN
    /// `Will-Retry-Until` time).
    pub fn expires_at(&self, arrival: u64) -> u64 {
        arrival.saturating_add(self.max_age)
    }

    /// Whether a "delayed" DSN is due for a message still pending at `now`.
    pub fn delay_warning_due(&self, arrival: u64, now: u64) -> bool {
        self.delay_warning
            .is_some_and(|w| now >= arrival.saturating_add(w) && now < self.expires_at(arrival))
    }

    /// After `attempts_done` attempts (counting the one that just failed at
    /// `now`), when to try next, or [`Retry::Expired`] when `now` is at or
    /// past the expiry. The next time is clamped to the expiry, so a last
    /// attempt is made then.
    pub fn next_attempt(&self, arrival: u64, attempts_done: u32, now: u64) -> Retry {
        let expiry = self.expires_at(arrival);
        if now >= expiry {
            return Retry::Expired;
        }
        let n = usize::try_from(attempts_done.saturating_sub(1)).unwrap_or(usize::MAX);
        let wait = self
            .intervals
            .get(n)
            .or(self.intervals.last())
            .copied()
            .unwrap_or(DEFAULT_INTERVALS[0]);
        Retry::At(now.saturating_add(wait).min(expiry))
    }
}

impl FromStr for RetrySchedule {
    type Err = ScheduleError;

    /// Comma-separated humantime durations, e.g. `"5m, 10m, 30m, 1h, 2h, 4h, 8h"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut intervals = Vec::new();
        for part in s.split(',') {
            if intervals.len() == MAX_INTERVALS {
                return Err(schedule_err(s, "too many intervals (at most 100)"));
            }
            if part.trim().is_empty() {
                return Err(schedule_err(s, "empty interval"));
            }
            intervals.push(parse_duration_setting(part).map_err(|e| ScheduleError {
                input: s.chars().take(200).collect(),
                reason: e.reason,
            })?);
        }
        RetrySchedule::new(&intervals).map_err(|e| schedule_err(s, e.reason))
    }
}

impl fmt::Display for RetrySchedule {
    /// The intervals in the syntax [`FromStr`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.intervals.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", humantime::format_duration(Duration::from_secs(*s)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_is_minutes_then_hours_for_five_days() {
        let s = RetrySchedule::default();
        assert_eq!(s.to_string(), "5m, 10m, 20m, 40m, 1h, 2h, 4h");
        assert_eq!(s.max_age(), Duration::from_secs(5 * 86400));
        let t0 = 1_700_000_000;
        let mut now = t0;
        let mut waits = Vec::new();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match s.next_attempt(t0, attempts, now) {
                Retry::At(t) => {
                    waits.push(t - now);
                    now = t;
                }
                Retry::Expired => break,
            }
        }
        assert_eq!(
            &waits[..8],
            &[300, 600, 1200, 2400, 3600, 7200, 14400, 14400]
        );
        assert_eq!(now, t0 + 5 * 86400, "last attempt at expiry");
        assert!(waits.iter().all(|w| *w <= 14400));
        assert_eq!(attempts as usize, waits.len() + 1);
    }

    #[test]
    fn parses_the_documented_syntax() {
        let s: RetrySchedule = "5m, 10m, 30m, 1h, 2h, 4h, 8h".parse().unwrap();
        assert_eq!(s.intervals(), &[300, 600, 1800, 3600, 7200, 14400, 28800]);
        assert_eq!("90s".parse::<RetrySchedule>().unwrap().intervals(), &[90]);
        assert_eq!(
            "1h 30m".parse::<RetrySchedule>().unwrap().intervals(),
            &[5400]
        );
        for bad in [
            "",
            "5m,",
            ",5m",
            "5m,,1h",
            "0s",
            "5 parsecs",
            "-5m",
            "5m; 1h",
        ] {
            assert!(bad.parse::<RetrySchedule>().is_err(), "{bad:?}");
        }
        assert!("366d".parse::<RetrySchedule>().is_err());
        let many = vec!["1s"; 101].join(",");
        assert!(many.parse::<RetrySchedule>().is_err());
        assert!(vec!["1s"; 100].join(",").parse::<RetrySchedule>().is_ok());
        assert!(RetrySchedule::new(&[]).is_err());
    }

    #[test]
    fn delay_warning_window() {
        let s = RetrySchedule::default();
        assert!(!s.delay_warning_due(0, 4 * 3600 - 1));
        assert!(s.delay_warning_due(0, 4 * 3600));
        assert!(!s.delay_warning_due(0, 5 * 86400));
        let off = s.with_delay_warning(None);
        assert!(!off.delay_warning_due(0, 86400));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let s = RetrySchedule::default().with_max_age(Duration::from_secs(u64::MAX));
        assert_eq!(s.expires_at(u64::MAX), u64::MAX);
        assert_eq!(
            s.next_attempt(u64::MAX, u32::MAX, u64::MAX - 1),
            Retry::At(u64::MAX)
        );
        assert_eq!(s.next_attempt(0, 0, 0), Retry::At(300));
    }

    proptest! {
        #[test]
        fn next_attempt_is_in_the_future_and_before_expiry(
            arrival in 0u64..1 << 40, attempts in 0u32..1000, dt in 0u64..1 << 30
        ) {
            let s = RetrySchedule::default();
            let now = arrival + dt;
            match s.next_attempt(arrival, attempts, now) {
                Retry::At(t) => {
                    prop_assert!(t > now);
                    prop_assert!(t <= s.expires_at(arrival));
                }
                Retry::Expired => prop_assert!(now >= s.expires_at(arrival)),
            }
        }

        #[test]
        fn display_parse_round_trip(secs in proptest::collection::vec(1u64..=365 * 86_400, 1..10)) {
            let d: Vec<Duration> = secs.iter().map(|s| Duration::from_secs(*s)).collect();
            let s = RetrySchedule::new(&d).unwrap();
            prop_assert_eq!(s.to_string().parse::<RetrySchedule>().unwrap(), s);
        }
    }
}
