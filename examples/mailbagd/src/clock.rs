//! Unix seconds: what the queue, login tokens and the CLI store and compare.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time in unix seconds.
pub fn unix_now() -> u64 {
    unix_seconds(SystemTime::now())
}

/// `t` in unix seconds (0 before the epoch).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
