//! A pause in asking spamd after it failed several times in a row (a circuit
//! breaker): a spamd that hangs would otherwise hold every message for its
//! whole reply timeout, and SMTP connections would pile up toward
//! `max_connections`. While paused, mail is delivered unscanned at once
//! (fail-open, as for any spamd failure); after the pause the next message
//! tries spamd again, and one success ends the count.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The state shared by every SMTP connection of the server.
#[derive(Debug, Default)]
pub struct SpamdBreaker {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Failures since the last success.
    failures: u32,
    /// No message is sent to spamd before this.
    paused_until: Option<Instant>,
}

impl SpamdBreaker {
    /// A breaker with no failure counted.
    pub fn new() -> SpamdBreaker {
        SpamdBreaker::default()
    }

    /// Whether a message may be sent to spamd `now` (`false` during a pause).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use mailbagd::spamd_breaker::SpamdBreaker;
    ///
    /// let b = SpamdBreaker::new();
    /// let t = Instant::now();
    /// let pause = Duration::from_secs(60);
    /// assert_eq!(b.record(false, t, 2, pause), None);
    /// assert_eq!(b.record(false, t, 2, pause), Some(pause)); // the second in a row
    /// assert!(!b.allows(t + Duration::from_secs(59)));
    /// assert!(b.allows(t + pause)); // then spamd is tried again
    /// ```
    pub fn allows(&self, now: Instant) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.paused_until.is_none_or(|until| now >= until)
    }

    /// Records how a scan went: a success ends the count; the
    /// `failures_before_pause`-th failure in a row (or any failure of the
    /// first try after a pause) starts a pause of `pause`, which is
    /// returned so that the caller can log it. A failure during a pause (of
    /// a request begun before it) changes nothing.
    pub fn record(
        &self,
        ok: bool,
        now: Instant,
        failures_before_pause: u32,
        pause: Duration,
    ) -> Option<Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            *state = State::default();
            return None;
        }
        // A request that began before the pause and failed during it: the
        // pause stands as it is (and is not logged again).
        if state.paused_until.is_some_and(|until| now < until) {
            return None;
        }
        state.failures = state.failures.saturating_add(1);
        if state.failures >= failures_before_pause.max(1) {
            state.paused_until = Some(now + pause);
            return Some(pause);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_pause_and_a_success_resets() {
        let b = SpamdBreaker::new();
        let t = Instant::now();
        let pause = Duration::from_secs(30);
        assert!(b.allows(t));
        assert_eq!(b.record(false, t, 3, pause), None);
        assert_eq!(b.record(true, t, 3, pause), None); // not in a row
        assert_eq!(b.record(false, t, 3, pause), None);
        assert_eq!(b.record(false, t, 3, pause), None);
        assert!(b.allows(t));
        assert_eq!(b.record(false, t, 3, pause), Some(pause));
        assert!(!b.allows(t + Duration::from_secs(29)));
        // Requests begun before the pause that fail during it (a probe saw
        // the pause logged twice under concurrent mail): no second pause.
        assert_eq!(b.record(false, t + Duration::from_secs(1), 3, pause), None);
        assert!(b.allows(t + pause), "not extended");
        // After the pause one try; its failure pauses again at once.
        let later = t + pause;
        assert!(b.allows(later));
        assert_eq!(b.record(false, later, 3, pause), Some(pause));
        assert!(!b.allows(later + Duration::from_secs(1)));
        // A success after the next pause ends it all.
        let again = later + pause;
        assert!(b.allows(again));
        assert_eq!(b.record(true, again, 3, pause), None);
        assert_eq!(b.record(false, again, 3, pause), None);
        assert!(b.allows(again));
    }
}
