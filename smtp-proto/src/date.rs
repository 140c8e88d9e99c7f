//! RFC 5322 date-time (section 3.3): the one implementation the crate uses for the `Date`
//! header, DSN date fields and `Received:` trace fields.
//!
//! [`DateTime`] is unix seconds plus the local offset from UTC in minutes. It never reads
//! a clock: the caller passes the time in (sans-IO).
//!
//! # Examples
//!
//! ```
//! use mailbag_smtp_proto::date::DateTime;
//!
//! let d = DateTime::new(1_700_000_000, 60)?;
//! assert_eq!(d.to_string(), "Tue, 14 Nov 2023 23:13:20 +0100");
//! assert_eq!("Tue, 14 Nov 2023 23:13:20 +0100".parse::<DateTime>()?, d);
//!
//! // The civil parts, e.g. for a web page (in the date's own offset).
//! let c = DateTime::new(1_795_000_000, 0)?.civil();
//! assert_eq!(
//!     format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", c.year, c.month, c.day, c.hour, c.minute),
//!     "2026-11-18 11:06 UTC"
//! );
//! # Ok::<(), mailbag_smtp_proto::date::DateError>(())
//! ```

use core::fmt;
use core::str::FromStr;
#[cfg(feature = "std")]
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a [`DateTime`] could not be made or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DateError {
    /// The offset is outside ±23:59, or the time is before 1970 or after year 9999.
    #[error("date out of range (1970 to 9999, offset within ±23:59)")]
    OutOfRange,
    /// The text is not an RFC 5322 date-time this parser reads.
    #[error("not an RFC 5322 date-time")]
    Syntax,
}

/// A point in time with the UTC offset it is shown in, formatted per RFC 5322 section 3.3:
/// `Tue, 14 Nov 2023 23:13:20 +0100` (the day of the month is not zero-padded, as in the
/// RFC's examples).
///
/// Unix seconds from 0 (1970) to [`DateTime::MAX_UNIX`] (the end of year 9999); the offset
/// within ±23:59. Equality compares both the instant and the offset.
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::date::{DateError, DateTime};
///
/// let d = DateTime::new(0, -90)?;
/// assert_eq!(d.to_string(), "Wed, 31 Dec 1969 22:30:00 -0130");
/// assert_eq!(d.unix(), 0);
/// assert_eq!(d.offset_minutes(), -90);
/// assert_eq!(DateTime::new(0, 24 * 60), Err(DateError::OutOfRange));
/// // Parsing takes an optional day name, a two-digit day and a trailing comment.
/// let p: DateTime = "Thu, 01 Jan 1970 01:00:00 +0100 (CET)".parse()?;
/// assert_eq!((p.unix(), p.offset_minutes()), (0, 60));
/// # Ok::<(), DateError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    unix: u64,
    offset_minutes: i16,
}

/// The parts of a [`DateTime`] on the calendar (proleptic Gregorian) and the clock, in the
/// date's own offset. Returned by [`DateTime::civil`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Civil {
    /// Year, e.g. `2023` (1969 only for a negative offset on 1 January 1970).
    pub year: u16,
    /// Month, 1 (January) to 12.
    pub month: u8,
    /// Day of the month, 1 to 31.
    pub day: u8,
    /// Hour, 0 to 23.
    pub hour: u8,
    /// Minute, 0 to 59.
    pub minute: u8,
    /// Second, 0 to 59.
    pub second: u8,
    /// Day of the week, ISO 8601: 1 (Monday) to 7 (Sunday).
    pub weekday: u8,
}

impl Civil {
    /// The English three-letter month name RFC 5322 uses (`"Jan"` .. `"Dec"`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::date::DateTime;
    /// assert_eq!(DateTime::new(0, 0)?.civil().month_name(), "Jan");
    /// # Ok::<(), mailbag_smtp_proto::date::DateError>(())
    /// ```
    pub fn month_name(&self) -> &'static str {
        MONTHS
            .get(usize::from(self.month).wrapping_sub(1))
            .copied()
            .unwrap_or("Jan")
    }

    /// The English three-letter day name RFC 5322 uses (`"Mon"` .. `"Sun"`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::date::DateTime;
    /// assert_eq!(DateTime::new(0, 0)?.civil().weekday_name(), "Thu");
    /// # Ok::<(), mailbag_smtp_proto::date::DateError>(())
    /// ```
    pub fn weekday_name(&self) -> &'static str {
        ISO_DAYS
            .get(usize::from(self.weekday).wrapping_sub(1))
            .copied()
            .unwrap_or("Mon")
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const ISO_DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl DateTime {
    /// The last second of year 9999 (UTC), the latest time a [`DateTime`] holds.
    pub const MAX_UNIX: u64 = 253_402_300_799;

    /// A date-time from unix seconds and the offset from UTC in minutes.
    ///
    /// # Errors
    ///
    /// [`DateError::OutOfRange`] for an offset outside ±23:59 or a time after
    /// [`DateTime::MAX_UNIX`].
    pub fn new(unix: u64, offset_minutes: i16) -> Result<Self, DateError> {
        if offset_minutes.unsigned_abs() >= 24 * 60 || unix > Self::MAX_UNIX {
            return Err(DateError::OutOfRange);
        }
        Ok(DateTime {
            unix,
            offset_minutes,
        })
    }

    /// A date-time from a [`SystemTime`] the caller read (this reads no clock), whole
    /// seconds, shown with `offset_minutes`.
    ///
    /// # Errors
    ///
    /// [`DateError::OutOfRange`] for a time before 1970 or after year 9999, or a bad offset.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use mailbag_smtp_proto::date::DateTime;
    ///
    /// let t = UNIX_EPOCH + Duration::from_millis(1_795_800_600_999);
    /// assert_eq!(DateTime::from_system_time(t, 0)?.to_string(), "Fri, 27 Nov 2026 17:30:00 +0000");
    /// # Ok::<(), mailbag_smtp_proto::date::DateError>(())
    /// ```
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn from_system_time(t: SystemTime, offset_minutes: i16) -> Result<Self, DateError> {
        let unix = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| DateError::OutOfRange)?
            .as_secs();
        Self::new(unix, offset_minutes)
    }

    /// Unix seconds.
    pub fn unix(self) -> u64 {
        self.unix
    }

    /// Offset from UTC in minutes.
    pub fn offset_minutes(self) -> i16 {
        self.offset_minutes
    }

    /// The same instant shown with another offset.
    ///
    /// # Errors
    ///
    /// [`DateError::OutOfRange`] for an offset outside ±23:59.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::date::DateTime;
    /// let d = DateTime::new(1_700_000_000, 60)?.with_offset(0)?;
    /// assert_eq!(d.to_string(), "Tue, 14 Nov 2023 22:13:20 +0000");
    /// # Ok::<(), mailbag_smtp_proto::date::DateError>(())
    /// ```
    pub fn with_offset(self, offset_minutes: i16) -> Result<Self, DateError> {
        Self::new(self.unix, offset_minutes)
    }

    /// The calendar and clock parts in the date's offset.
    pub fn civil(self) -> Civil {
        // Both fit easily: unix <= MAX_UNIX, |offset| < 1440.
        let local =
            i64::try_from(self.unix).unwrap_or(i64::MAX) + i64::from(self.offset_minutes) * 60;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        // 1970-01-01 (day 0) was a Thursday, ISO weekday 4.
        let weekday = (days + 3).rem_euclid(7) + 1;
        let small = |v: i64| u8::try_from(v).unwrap_or(0);
        Civil {
            year: u16::try_from(y).unwrap_or(0),
            month: small(m),
            day: small(d),
            hour: small(secs / 3600),
            minute: small(secs / 60 % 60),
            second: small(secs % 60),
            weekday: small(weekday),
        }
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (proleptic Gregorian;
/// Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.civil();
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let off = self.offset_minutes.unsigned_abs();
        write!(
            f,
            "{}, {} {} {:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
            c.weekday_name(),
            c.day,
            c.month_name(),
            c.year,
            c.hour,
            c.minute,
            c.second,
            off / 60,
            off % 60
        )
    }
}

impl FromStr for DateTime {
    type Err = DateError;

    /// Parses `[Day, ]D Mon YYYY HH:MM:SS ±HHMM [(comment)]` (RFC 5322 without obsolete
    /// zones); a given day name must be right; a leap second `:60` is read as `:59`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = DateError::Syntax;
        let mut s = s.trim();
        // A trailing comment such as `(CET)`, as Postfix writes.
        if s.ends_with(')') {
            if let Some(i) = s.rfind('(') {
                s = s.get(..i).unwrap_or("").trim_end();
            }
        }
        let (dow, rest) = match s.split_once(',') {
            Some((d, r)) => (Some(d.trim()), r),
            None => (None, s),
        };
        let mut it = rest.split_ascii_whitespace();
        let (Some(d), Some(mon), Some(y), Some(t), Some(z), None) = (
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
        ) else {
            return Err(bad);
        };
        let num = |s: &str, min: usize, max: usize| -> Option<i64> {
            if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let d = num(d, 1, 2).ok_or(bad)?;
        let m = MONTHS
            .iter()
            .position(|x| x.eq_ignore_ascii_case(mon))
            .ok_or(bad)?;
        let m = i64::try_from(m).map_err(|_| bad)? + 1;
        let y = num(y, 4, 4).ok_or(bad)?;
        let mut hms = t.split(':');
        let (Some(hh), Some(mm), Some(ss), None) = (hms.next(), hms.next(), hms.next(), hms.next())
        else {
            return Err(bad);
        };
        let (hh, mm, ss) = (
            num(hh, 2, 2).ok_or(bad)?,
            num(mm, 2, 2).ok_or(bad)?,
            num(ss, 2, 2).ok_or(bad)?,
        );
        if hh > 23 || mm > 59 || ss > 60 {
            return Err(bad);
        }
        let (sign, zd) = match z.as_bytes().first() {
            Some(b'+') => (1, z.get(1..)),
            Some(b'-') => (-1, z.get(1..)),
            _ => return Err(bad),
        };
        let zd = zd.and_then(|x| num(x, 4, 4)).ok_or(bad)?;
        let (zh, zm) = (zd / 100, zd % 100);
        if zh > 23 || zm > 59 {
            return Err(bad);
        }
        let offset = sign * (zh * 60 + zm);
        let days = days_from_civil(y, m, d);
        if civil_from_days(days) != (y, m, d) {
            return Err(bad); // 31 Feb and friends
        }
        if let Some(dow) = dow {
            let want = ISO_DAYS
                .get(usize::try_from((days + 3).rem_euclid(7)).unwrap_or(0))
                .copied()
                .unwrap_or("");
            if !dow.eq_ignore_ascii_case(want) {
                return Err(bad);
            }
        }
        let local = days * 86_400 + hh * 3600 + mm * 60 + ss.min(59);
        let unix = u64::try_from(local - offset * 60).map_err(|_| DateError::OutOfRange)?;
        DateTime::new(
            unix,
            i16::try_from(offset).map_err(|_| DateError::OutOfRange)?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;
    use proptest::prelude::*;
    #[cfg(feature = "std")]
    use std::time::Duration;

    fn utc(unix: u64) -> DateTime {
        DateTime::new(unix, 0).unwrap()
    }

    #[test]
    fn formats() {
        assert_eq!(utc(0).to_string(), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            DateTime::new(0, -90).unwrap().to_string(),
            "Wed, 31 Dec 1969 22:30:00 -0130"
        );
        assert_eq!(
            utc(DateTime::MAX_UNIX).to_string(),
            "Fri, 31 Dec 9999 23:59:59 +0000"
        );
        assert_eq!(
            DateTime::new(DateTime::MAX_UNIX + 1, 0),
            Err(DateError::OutOfRange)
        );
        assert_eq!(DateTime::new(0, -24 * 60), Err(DateError::OutOfRange));
        assert!(DateTime::new(0, 23 * 60 + 59).is_ok());
    }

    /// The cases of the server's former `trace_headers::rfc5322_date` (which zero-padded
    /// the day; RFC 5322 allows both, and the parser reads both).
    #[test]
    fn server_cases() {
        let at = |s| DateTime::new(s, 0).unwrap().to_string();
        assert_eq!(at(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(at(1_709_251_199), "Thu, 29 Feb 2024 23:59:59 +0000");
        assert_eq!(at(4_102_444_800), "Fri, 1 Jan 2100 00:00:00 +0000");
        assert_eq!(at(1_795_800_600), "Fri, 27 Nov 2026 17:30:00 +0000");
        for (s, unix) in [
            ("Thu, 01 Jan 1970 00:00:00 +0000", 0),
            ("Fri, 01 Jan 2100 00:00:00 +0000", 4_102_444_800),
        ] {
            assert_eq!(s.parse::<DateTime>().unwrap().unix(), unix);
        }
        #[cfg(feature = "std")]
        assert_eq!(
            DateTime::from_system_time(std::time::UNIX_EPOCH - Duration::from_secs(1), 0),
            Err(DateError::OutOfRange)
        );
    }

    #[test]
    fn civil_parts() {
        // The server's web page `format_time` case.
        let c = utc(1_795_000_000).civil();
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (2026, 11, 18, 11, 6, 40)
        );
        assert_eq!((c.weekday, c.weekday_name()), (3, "Wed"));
        let c = DateTime::new(0, -1).unwrap().civil();
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute),
            (1969, 12, 31, 23, 59)
        );
        assert_eq!((c.weekday_name(), c.month_name()), ("Wed", "Dec"));
        // Leap day and the last day of a leap year.
        let c = utc(951_782_400).civil();
        assert_eq!((c.year, c.month, c.day), (2000, 2, 29));
        let c = utc(978_307_200 - 1).civil();
        assert_eq!((c.year, c.month, c.day), (2000, 12, 31));
    }

    #[test]
    fn parses() {
        for bad in [
            "Thu, 1 Jan 1970 00:00:00",
            "Fri, 1 Jan 1970 00:00:00 +0000",
            "Thu, 1 Jan 70 00:00:00 +0000",
            "Thu, 1 Foo 1970 00:00:00 +0000",
            "31 Feb 2001 00:00:00 +0000",
            "1 Jan 1970 24:00:00 +0000",
            "1 Jan 1970 00:00:00 +2400",
            "1 Jan 1970 00:00:00 0000",
            "1 Jan 1970 00:00:00 +0000 extra",
            "",
        ] {
            assert_eq!(bad.parse::<DateTime>(), Err(DateError::Syntax), "{bad:?}");
        }
        assert_eq!(
            "1 Jan 1970 00:00:00 +0100".parse::<DateTime>(),
            Err(DateError::OutOfRange)
        );
        assert_eq!(
            "1 jan 1970 01:00:00 +0100"
                .parse::<DateTime>()
                .unwrap()
                .unix(),
            0
        );
        assert_eq!(
            "Sat, 31 Dec 2016 23:59:60 +0000"
                .parse::<DateTime>()
                .unwrap()
                .unix(),
            1_483_228_799
        );
    }

    proptest! {
        #[test]
        fn round_trip(unix in 0u64..=DateTime::MAX_UNIX, off in -1439i16..1440) {
            let d = DateTime::new(unix, off).unwrap();
            prop_assert_eq!(d.to_string().parse::<DateTime>(), Ok(d));
            let c = d.civil();
            let padded = format!(
                "{}, {:02} {} {} {:02}:{:02}:{:02} {}",
                c.weekday_name(), c.day, c.month_name(), c.year, c.hour, c.minute, c.second,
                d.to_string().rsplit(' ').next().unwrap_or("")
            );
            prop_assert_eq!(padded.parse::<DateTime>(), Ok(d));
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,60}") {
            let _ = s.parse::<DateTime>();
        }
    }
}
