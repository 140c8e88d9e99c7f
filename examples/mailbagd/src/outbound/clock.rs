//! The engine's clock: unix seconds, as the queue stores times.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time in unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
