//! Queue ids.

use std::fmt;
use std::str::FromStr;

use super::EnvelopeError;

/// The id of a queued message: `<arrival>.<instance>.<sequence>`, the
/// arrival time in unix seconds zero-padded to 12 digits, then the number of
/// the [`Queue`](super::Queue) instance that queued it (allocated from a
/// counter kept in the queue directory) and a per-instance sequence number.
///
/// Unique and never reused within a queue directory, filesystem-safe
/// (digits and dots only), and ordered by arrival first, so sorting ids
/// sorts messages oldest first. Its text form is canonical: [`FromStr`]
/// accepts exactly what [`Display`](fmt::Display) writes.
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::queue::QueueId;
///
/// let a: QueueId = "001700000000.7.42".parse().unwrap();
/// let b: QueueId = "001700000001.1.1".parse().unwrap();
/// assert!(a < b);
/// assert_eq!(a.arrival(), 1_700_000_000);
/// assert_eq!(a.as_str(), "001700000000.7.42");
/// assert!("1700000000.7.42".parse::<QueueId>().is_err()); // not canonical
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId {
    arrival: u64,
    instance: u64,
    seq: u64,
    text: Box<str>,
}

impl QueueId {
    pub(crate) fn new(arrival: u64, instance: u64, seq: u64) -> Self {
        let text = format!("{arrival:012}.{instance}.{seq}").into_boxed_str();
        QueueId {
            arrival,
            instance,
            seq,
            text,
        }
    }

    /// The arrival time (unix seconds) the id was made with.
    pub fn arrival(&self) -> u64 {
        self.arrival
    }

    /// The queue instance number part.
    pub(crate) fn instance(&self) -> u64 {
        self.instance
    }

    /// The text form, also the name of the message's directory.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueId({})", self.text)
    }
}

/// Parses a canonical decimal `u64` (no sign, no leading zeros).
pub(crate) fn parse_canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl FromStr for QueueId {
    type Err = EnvelopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || EnvelopeError::new(0, "not a queue id");
        let mut parts = s.split('.');
        let (Some(a), Some(i), Some(q), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if a.len() < 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let arrival: u64 = a.parse().map_err(|_| bad())?;
        let instance = parse_canonical_u64(i).ok_or_else(bad)?;
        let seq = parse_canonical_u64(q).ok_or_else(bad)?;
        let id = QueueId::new(arrival, instance, seq);
        if id.as_str() != s {
            return Err(bad());
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_round_trip_and_order() {
        let id = QueueId::new(5, 1, 0);
        assert_eq!(id.as_str(), "000000000005.1.0");
        assert_eq!(id.to_string().parse::<QueueId>().unwrap(), id);
        let big = QueueId::new(u64::MAX, u64::MAX, u64::MAX);
        assert_eq!(big.to_string().parse::<QueueId>().unwrap(), big);
        assert!(QueueId::new(1, 9, 9) < QueueId::new(2, 0, 0));
        assert!(QueueId::new(1, 1, 9) < QueueId::new(1, 1, 10));
        assert!(QueueId::new(1, 1, 9) < QueueId::new(1, 2, 0));
    }

    #[test]
    fn rejects_non_canonical_and_garbage() {
        for s in [
            "",
            "1.1.1",
            "000000000001.01.1",
            "000000000001.1.01",
            "000000000001.1",
            "000000000001.1.1.1",
            "000000000001.1.-1",
            "000000000001.+1.1",
            "00000000000a.1.1",
            "0000000000001.1.1",
            "../etc.1.1",
            "000000000001.1.1 ",
            "099999999999999999999.1.1",
        ] {
            assert!(s.parse::<QueueId>().is_err(), "{s:?}");
        }
    }

    #[test]
    fn canonical_u64() {
        assert_eq!(parse_canonical_u64("0"), Some(0));
        assert_eq!(parse_canonical_u64("10"), Some(10));
        assert_eq!(parse_canonical_u64("010"), None);
        assert_eq!(parse_canonical_u64(""), None);
        assert_eq!(parse_canonical_u64("18446744073709551616"), None);
    }
}
