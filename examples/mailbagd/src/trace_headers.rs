//! Trace header fields added on delivery: `Return-Path:` and `Received:`
//! (RFC 5321 4.4), with an RFC 5322 date.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `t` as an RFC 5322 date-time in UTC, e.g.
/// `Fri, 27 Nov 2026 17:30:00 +0000`.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_secs(1_795_800_600);
/// assert_eq!(mailbagd::trace_headers::rfc5322_date(t), "Fri, 27 Nov 2026 17:30:00 +0000");
/// ```
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // 1970-01-01 was a Thursday.
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = WD.get((days % 7) as usize).copied().unwrap_or("Thu");
    let (y, mo, d) = civil_from_days(days as i64);
    let mon = MON
        .get((mo as usize).saturating_sub(1))
        .copied()
        .unwrap_or("Jan");
    format!("{wd}, {d:02} {mon} {y} {h:02}:{m:02}:{s:02} +0000")
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31)
/// (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Keeps only characters safe inside a header comment/token.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '(' | ')' | '\\' | ';'))
        .take(255)
        .collect()
}

/// What goes into a `Received:` field.
#[derive(Clone, Debug)]
pub struct ReceivedInfo<'a> {
    /// The client's EHLO/HELO argument.
    pub helo: &'a str,
    /// The client's address.
    pub client: IpAddr,
    /// Our host name.
    pub by: &'a str,
    /// `SMTP`, `ESMTP`, `ESMTPS`, ... (RFC 3848).
    pub with: &'a str,
    /// Connection id (logged as `id`).
    pub id: u64,
    /// The recipient when there is exactly one (`for <...>`).
    pub for_rcpt: Option<&'a str>,
    /// Time of reception.
    pub time: SystemTime,
}

impl ReceivedInfo<'_> {
    /// The complete `Received:` header field, folded, ending in CRLF.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use mailbagd::trace_headers::ReceivedInfo;
    /// let r = ReceivedInfo {
    ///     helo: "client.example.org",
    ///     client: "127.0.0.2".parse().unwrap(),
    ///     by: "mail.example.test",
    ///     with: "ESMTP",
    ///     id: 7,
    ///     for_rcpt: Some("<joe@example.test>"),
    ///     time: UNIX_EPOCH + Duration::from_secs(1_795_800_600),
    /// };
    /// assert_eq!(
    ///     r.header(),
    ///     "Received: from client.example.org ([127.0.0.2])\r\n\tby mail.example.test (mailbagd) with ESMTP id 7\r\n\tfor <joe@example.test>; Fri, 27 Nov 2026 17:30:00 +0000\r\n"
    /// );
    /// ```
    pub fn header(&self) -> String {
        let helo = sanitize(self.helo);
        let helo = if helo.is_empty() {
            "unknown".to_owned()
        } else {
            helo
        };
        let mut h = format!(
            "Received: from {helo} ([{}])\r\n\tby {} (mailbagd) with {} id {}\r\n\t",
            self.client,
            sanitize(self.by),
            sanitize(self.with),
            self.id
        );
        if let Some(r) = self.for_rcpt {
            h.push_str("for ");
            h.push_str(&sanitize(r));
            h.push_str("; ");
        }
        h.push_str(&rfc5322_date(self.time));
        h.push_str("\r\n");
        h
    }
}

/// `Return-Path: <sender>` ending in CRLF (`<>` for the null path).
///
/// # Examples
///
/// ```
/// assert_eq!(mailbagd::trace_headers::return_path("a@b.example"), "Return-Path: <a@b.example>\r\n");
/// assert_eq!(mailbagd::trace_headers::return_path(""), "Return-Path: <>\r\n");
/// ```
pub fn return_path(sender: &str) -> String {
    let s: String = sender.chars().filter(|c| !c.is_control()).collect();
    format!("Return-Path: <{s}>\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        let at = |s| rfc5322_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(at(1_709_251_199), "Thu, 29 Feb 2024 23:59:59 +0000");
        assert_eq!(at(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 +0000");
    }

    #[test]
    fn received_strips_injection() {
        let r = ReceivedInfo {
            helo: "evil\r\nX-Spam-Flag: NO",
            client: "127.0.0.1".parse().unwrap(),
            by: "mx",
            with: "SMTP",
            id: 1,
            for_rcpt: None,
            time: UNIX_EPOCH,
        };
        let h = r.header();
        assert_eq!(h.matches("\r\n").count(), 3, "{h}");
        assert!(h.starts_with("Received: from evilX-Spam-Flag:NO ([127.0.0.1])"));
    }
}
