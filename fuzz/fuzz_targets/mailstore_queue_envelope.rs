//! mailstore::queue: the envelope file parser on arbitrary bytes. It never
//! panics; what parses encodes back to the same bytes (the format is
//! canonical), and parsing the encoding gives the same envelope. Queue ids
//! and retry schedules from arbitrary text as well.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbag_mailstore::queue::{Envelope, QueueId, RetrySchedule};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::parse(data) {
        let text = env.encode();
        assert_eq!(text, data);
        assert_eq!(Envelope::parse(&text).as_ref(), Ok(&env));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(id) = s.parse::<QueueId>() {
            assert_eq!(id.as_str(), s);
        }
        if let Ok(schedule) = s.parse::<RetrySchedule>() {
            let again: RetrySchedule = schedule.to_string().parse().unwrap();
            assert_eq!(again, schedule);
            let _ = schedule.next_attempt(u64::MAX - 5, u32::MAX, u64::MAX - 6);
        }
    }
});
