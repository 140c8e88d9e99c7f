//! Maildir file names: parsing what Dovecot, mutt, Postfix and we write, and
//! making new unique names.

use std::fmt::Write as _;

/// What a Maildir file name tells without opening the file.
///
/// The layout is `<base>[:2,<flags>]` where the base is the unique name, for
/// example `1700000000.M123456P789Q1.host,S=2048,W=2100`. `S=` is the stored
/// size, `W=` the size with CRLF line endings (both optional; Dovecot and we
/// write them, most MTAs do not). The `W=` we write is the POP3 size
/// ([`crate::CrlfCounter::pop3_size`]): for a message whose last line has no
/// line end it also counts the CRLF POP3 sends there, which Dovecot's does
/// not; for every other message the two agree.
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::MaildirName;
///
/// let n = MaildirName::parse("1700000000.M5P9Q2.mx,S=100,W=104:2,RS").unwrap();
/// assert_eq!(n.base(), "1700000000.M5P9Q2.mx,S=100,W=104");
/// assert_eq!((n.size(), n.crlf_size()), (Some(100), Some(104)));
/// assert_eq!(n.flags(), Some("RS"));
/// assert!(n.is_seen());
/// assert!(MaildirName::parse(".hidden").is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaildirName<'a> {
    base: &'a str,
    flags: Option<&'a str>,
    size: Option<u64>,
    crlf_size: Option<u64>,
}

impl<'a> MaildirName<'a> {
    /// Parses a file name found in `new/` or `cur/`. `None` for names a Maildir
    /// reader must skip: empty, hidden (leading `.`), or containing `/` or a
    /// control character. Spaces are allowed: other programs write them, and
    /// skipping such a file would hide the message.
    pub fn parse(name: &'a str) -> Option<Self> {
        if name.is_empty()
            || name.starts_with('.')
            || name.bytes().any(|b| b == b'/' || b < b' ' || b == 0x7f)
        {
            return None;
        }
        let (base, info) = match name.split_once(':') {
            Some((b, i)) => (b, Some(i)),
            None => (name, None),
        };
        if base.is_empty() {
            return None;
        }
        let flags = info.and_then(|i| i.strip_prefix("2,"));
        let mut size = None;
        let mut crlf_size = None;
        for field in base.split(',').skip(1) {
            if let Some(v) = field.strip_prefix("S=") {
                size = parse_u64(v);
            } else if let Some(v) = field.strip_prefix("W=") {
                crlf_size = parse_u64(v);
            }
        }
        Some(MaildirName {
            base,
            flags,
            size,
            crlf_size,
        })
    }

    /// The unique part, which stays the same when the message moves from
    /// `new/` to `cur/` or its flags change.
    pub fn base(&self) -> &'a str {
        self.base
    }

    /// The flags after `:2,`, if the name has an info part of version 2.
    pub fn flags(&self) -> Option<&'a str> {
        self.flags
    }

    /// Stored size from `,S=`.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// CRLF size from `,W=`; `None` also when it cannot be the CRLF size of
    /// a file of the `,S=` size (below it, or above twice it plus a final
    /// CRLF): a name another program got wrong, whose size must be counted.
    ///
    /// ```
    /// use mailbag_mailstore::MaildirName;
    /// let n = MaildirName::parse("1700000000.M5P9Q2.mx,S=18,W=999:2,S").unwrap();
    /// assert_eq!((n.size(), n.crlf_size()), (Some(18), None));
    /// ```
    pub fn crlf_size(&self) -> Option<u64> {
        match (self.size, self.crlf_size) {
            (Some(s), Some(w)) if w < s || w > s.saturating_mul(2).saturating_add(2) => None,
            (_, w) => w,
        }
    }

    /// Whether the `S` (seen) flag is set.
    pub fn is_seen(&self) -> bool {
        self.flags.is_some_and(|f| f.contains('S'))
    }

    /// Ordering key approximating delivery order: seconds, microseconds
    /// (`M`), our counter (`Q`), then the base itself.
    pub(crate) fn sort_key(&self) -> (u64, u64, u64, &'a str) {
        let mut parts = self.base.splitn(3, '.');
        let secs = parts.next().and_then(parse_u64).unwrap_or(0);
        let mid = parts.next().unwrap_or("");
        (
            secs,
            number_after(mid, 'M').unwrap_or(0),
            number_after(mid, 'Q').unwrap_or(0),
            self.base,
        )
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn number_after(s: &str, tag: char) -> Option<u64> {
    let i = s.find(tag)?;
    let rest = s.get(i + tag.len_utf8()..)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    parse_u64(rest.get(..end)?)
}

/// The file name for `base` with `flag` added to its flags (sorted, as the
/// Maildir spec asks), e.g. `base:2,S`.
pub(crate) fn with_flag(name: &MaildirName<'_>, flag: char) -> String {
    let mut flags: Vec<char> = name.flags().unwrap_or("").chars().collect();
    if !flags.contains(&flag) {
        flags.push(flag);
    }
    flags.sort_unstable();
    flags.dedup();
    let mut s = String::with_capacity(name.base().len() + 3 + flags.len());
    s.push_str(name.base());
    s.push_str(":2,");
    s.extend(flags);
    s
}

/// Escapes a host name for use in a Maildir name (`/` and `:` as Dovecot does,
/// and `,` so that our own `,S=` fields stay unambiguous); empty becomes `localhost`.
pub(crate) fn escape_host(host: &str) -> String {
    let mut out = String::with_capacity(host.len());
    for c in host.trim().chars() {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            ',' => out.push_str("\\054"),
            c if c.is_control() || c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    if out.is_empty() {
        out.push_str("localhost");
    }
    out
}

/// `<secs>.M<usecs>P<pid>Q<counter>.<host>`
pub(crate) fn unique_base(secs: u64, usecs: u32, pid: u32, counter: u64, host: &str) -> String {
    let mut s = String::with_capacity(48 + host.len());
    let _ = write!(s, "{secs}.M{usecs}P{pid}Q{counter}.{host}");
    s
}

/// `<base>,S=<size>,W=<crlf>`
pub(crate) fn delivered_name(base: &str, size: u64, crlf: u64) -> String {
    format!("{base},S={size},W={crlf}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dovecot_and_fill_maildir_names() {
        let n = MaildirName::parse("1764000000.M0000001P42.vm,S=2048:2,S").unwrap();
        assert_eq!(n.size(), Some(2048));
        assert_eq!(n.crlf_size(), None);
        assert!(n.is_seen());
        // A W= that cannot fit the S= is not trusted; one that can is.
        for (name, w) in [
            ("1.M1.h,S=18,W=999", None),
            ("1.M1.h,S=18,W=17", None),
            ("1.M1.h,S=18,W=38", Some(38)),
            ("1.M1.h,S=18,W=18", Some(18)),
            ("1.M1.h,S=0,W=2", Some(2)),
            ("1.M1.h,W=999", Some(999)),
        ] {
            assert_eq!(MaildirName::parse(name).unwrap().crlf_size(), w, "{name}");
        }
        let n = MaildirName::parse("1764000000.M0000001P42.vm").unwrap();
        assert_eq!((n.size(), n.flags(), n.is_seen()), (None, None, false));
        let n = MaildirName::parse("1.2.h:2,").unwrap();
        assert_eq!(n.flags(), Some(""));
        let n = MaildirName::parse("1.2.h:1,xyz").unwrap();
        assert_eq!(n.flags(), None);
        // A space is allowed (other programs write them); control characters not.
        assert_eq!(MaildirName::parse("a b").map(|n| n.base()), Some("a b"));
        assert!(MaildirName::parse("a\tb").is_none());
        assert!(MaildirName::parse("a\nb").is_none());
        assert!(MaildirName::parse(":2,S").is_none());
        assert!(
            MaildirName::parse("x,S=99999999999999999999999")
                .unwrap()
                .size()
                .is_none()
        );
    }

    #[test]
    fn sort_key_orders_by_time_then_counter() {
        let a = MaildirName::parse("100.M5P1Q9.h").unwrap();
        let b = MaildirName::parse("100.M5P1Q10.h").unwrap();
        let c = MaildirName::parse("100.M6P1Q1.h").unwrap();
        let d = MaildirName::parse("101.M0P1Q0.h").unwrap();
        assert!(a.sort_key() < b.sort_key());
        assert!(b.sort_key() < c.sort_key());
        assert!(c.sort_key() < d.sort_key());
    }

    #[test]
    fn flags_are_added_sorted() {
        let n = MaildirName::parse("b:2,RF").unwrap();
        assert_eq!(with_flag(&n, 'S'), "b:2,FRS");
        let n = MaildirName::parse("b").unwrap();
        assert_eq!(with_flag(&n, 'S'), "b:2,S");
        let n = MaildirName::parse("b:2,S").unwrap();
        assert_eq!(with_flag(&n, 'S'), "b:2,S");
    }

    #[test]
    fn hosts_are_escaped() {
        assert_eq!(escape_host("a/b:c,d"), "a\\057b\\072c\\054d");
        assert_eq!(escape_host(" \n"), "localhost");
        let base = unique_base(1, 2, 3, 4, "h");
        assert_eq!(delivered_name(&base, 5, 6), "1.M2P3Q4.h,S=5,W=6");
    }

    proptest! {
        #[test]
        fn our_names_round_trip(secs in 0u64..1u64<<40, us in 0u32..1_000_000, pid: u32, q: u64,
                                host in "\\PC{0,20}", size in 0u64..1u64<<60, extra in 0u64..1u64<<60) {
            // A CRLF size the stored size allows (at most twice it, plus a final CRLF).
            let crlf = size + extra % (size + 3);
            let h = escape_host(&host);
            let base = unique_base(secs, us, pid, q, &h);
            let name = delivered_name(&base, size, crlf);
            let n = MaildirName::parse(&name);
            prop_assume!(n.is_some()); // host made only of escaped junk still parses; spaces were dropped
            let n = n.unwrap();
            prop_assert_eq!(n.size(), Some(size));
            prop_assert_eq!(n.crlf_size(), Some(crlf));
            prop_assert_eq!(n.base(), name.as_str());
            let k = n.sort_key();
            prop_assert_eq!((k.0, k.1, k.2), (secs, u64::from(us), q));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,60}") {
            let _ = MaildirName::parse(&s).map(|n| n.sort_key());
        }
    }
}
