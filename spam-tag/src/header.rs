//! Reading a message's header block for display and inspection: its fields, unfolded,
//! within bounds.
//!
//! The block follows the same rules as the [tagger](crate::tagger): it ends at the first
//! empty line, at a line that is neither a header field (`name:` with a printable ASCII
//! name, blanks allowed before the colon) nor a continuation (a line starting with a
//! blank), or at the end of the input; what follows is ignored. Lines end in CRLF or LF.
//!
//! Reading is linear in the input and bounded by [`HeaderLimits`]: at most
//! [`HeaderLimits::max_fields`] fields are read, and a field's value is cut after
//! [`HeaderLimits::max_field_len`] octets.
//!
//! # Examples
//!
//! ```
//! use mailbag_spam_tag::header::HeaderBlock;
//!
//! let head = HeaderBlock::new(
//!     b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n and more\r\nX-Spam-Flag: YES\r\n\r\nbody",
//! );
//! let names: Vec<&str> = head.fields().map(|f| f.name()).collect();
//! assert_eq!(names, ["Subject", "X-Spam-Flag"]);
//! assert_eq!(head.decoded("subject", 100).as_deref(), Some("Grüße and more"));
//! assert_eq!(head.decoded("From", 100), None);
//! ```

use std::borrow::Cow;

use crate::rfc2047;

/// Bounds for reading a header block.
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::header::{HeaderBlock, HeaderLimits};
///
/// let mut limits = HeaderLimits::default();
/// assert_eq!((limits.max_fields, limits.max_field_len), (1000, 16 * 1024));
/// limits.max_fields = 1;
/// let head = HeaderBlock::with_limits(b"A: 1\nB: 2\n\n", limits);
/// assert_eq!(head.fields().count(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderLimits {
    /// The most fields read; later ones are ignored. Default: 1000.
    pub max_fields: usize,
    /// The most octets of one field's value kept (as written, before unfolding); the rest
    /// is skipped. Default: 16 KiB.
    pub max_field_len: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        HeaderLimits {
            max_fields: 1000,
            max_field_len: 16 * 1024,
        }
    }
}

/// The header block of a message: the octets from its start (the rest of the message may
/// follow; it is ignored), read within [`HeaderLimits`].
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::header::HeaderBlock;
///
/// let head = HeaderBlock::new(b"From: Ann <ann@example.org>\nSubject: hi\n\nSubject: body\n");
/// let subject = head.first("SUBJECT").unwrap();
/// assert_eq!(subject.value().as_ref(), b"hi");
/// assert_eq!(head.fields().count(), 2);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct HeaderBlock<'a> {
    head: &'a [u8],
    limits: HeaderLimits,
}

impl<'a> HeaderBlock<'a> {
    /// The header block at the start of `head`, with the default [`HeaderLimits`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::header::HeaderBlock;
    ///
    /// assert_eq!(HeaderBlock::new(b"").fields().count(), 0);
    /// ```
    pub fn new(head: &'a [u8]) -> Self {
        Self::with_limits(head, HeaderLimits::default())
    }

    /// The header block at the start of `head`, read within `limits`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::header::{HeaderBlock, HeaderLimits};
    ///
    /// let mut limits = HeaderLimits::default();
    /// limits.max_field_len = 3;
    /// let head = HeaderBlock::with_limits(b"Subject: long\n\n", limits);
    /// let f = head.first("Subject").unwrap();
    /// assert_eq!(f.value().as_ref(), b"lo");
    /// assert!(f.is_truncated());
    /// ```
    pub fn with_limits(head: &'a [u8], limits: HeaderLimits) -> Self {
        HeaderBlock { head, limits }
    }

    /// The fields, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::header::HeaderBlock;
    ///
    /// let head = HeaderBlock::new(b"Received: from a\r\n\tby b\r\nTo: c\r\n\r\n");
    /// let fields: Vec<_> = head.fields().map(|f| (f.name(), f.value().into_owned())).collect();
    /// assert_eq!(fields, [("Received", b"from a\tby b".to_vec()), ("To", b"c".to_vec())]);
    /// ```
    pub fn fields(&self) -> Fields<'a> {
        Fields {
            rest: self.head,
            left: self.limits.max_fields,
            max_field_len: self.limits.max_field_len,
        }
    }

    /// The first field named `name` (compared case-insensitively).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::header::HeaderBlock;
    ///
    /// let head = HeaderBlock::new(b"x-spam-score: 1\nX-Spam-Score: 2\n\n");
    /// assert_eq!(head.first("X-Spam-Score").unwrap().value().as_ref(), b"1");
    /// ```
    pub fn first(&self, name: &str) -> Option<Field<'a>> {
        self.fields().find(|f| f.is(name))
    }

    /// The first field named `name`, unfolded and with its RFC 2047 encoded words decoded
    /// into at most `max_len` octets (see [`rfc2047::decode`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::header::HeaderBlock;
    ///
    /// let head = HeaderBlock::new(b"From: =?ISO-8859-1?Q?Andr=E9?= <a@example.org>\n\n");
    /// assert_eq!(head.decoded("from", 200).as_deref(), Some("André <a@example.org>"));
    /// ```
    pub fn decoded(&self, name: &str, max_len: usize) -> Option<String> {
        self.first(name).map(|f| f.decoded(max_len))
    }
}

/// The fields of a [`HeaderBlock`], in order: an iterator of [`Field`]s.
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::header::HeaderBlock;
///
/// let mut fields = HeaderBlock::new(b"A: 1\nnot a field\nB: 2\n").fields();
/// assert_eq!(fields.next().unwrap().name(), "A");
/// assert!(fields.next().is_none());
/// ```
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    /// The input from the next line on; empty once the block has ended.
    rest: &'a [u8],
    /// Fields still allowed.
    left: usize,
    max_field_len: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        if self.left == 0 {
            self.rest = &[];
            return None;
        }
        let input = self.rest;
        let first_end = line_end(input, 0);
        let line = content(&input[..first_end]);
        let name = line
            .iter()
            .position(|&b| b == b':')
            .map(|colon| (colon, trim_end_wsp(&line[..colon])))
            .filter(|(_, name)| !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b)));
        let Some((colon, name)) = name else {
            // An empty line, a continuation with no field before it, or not a field.
            self.rest = &[];
            return None;
        };
        // The value runs on over continuation lines.
        let mut end = first_end;
        let mut value_end = line.len();
        while end < input.len() && is_wsp(input[end]) {
            let next = line_end(input, end);
            value_end = end + content(&input[end..next]).len();
            end = next;
        }
        self.rest = &input[end..];
        self.left -= 1;
        let raw = &input[colon + 1..value_end];
        let truncated = raw.len() > self.max_field_len;
        Some(Field {
            // The name is printable ASCII.
            name: std::str::from_utf8(name).unwrap_or_default(),
            raw: &raw[..raw.len().min(self.max_field_len)],
            truncated,
        })
    }
}

/// The index just past the line (with its LF) that starts at `start`.
fn line_end(input: &[u8], start: usize) -> usize {
    memchr::memchr(b'\n', &input[start..]).map_or(input.len(), |i| start + i + 1)
}

/// A line without its line ending (LF or CRLF).
fn content(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_end_wsp(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., last] = s {
        if is_wsp(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// One header field: its name and its value as written.
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::header::HeaderBlock;
///
/// let head = HeaderBlock::new(b"Subject : =?UTF-8?B?SGk=?=\r\n  there\r\n\r\n");
/// let f = head.fields().next().unwrap();
/// assert_eq!(f.name(), "Subject");
/// assert!(f.is("subject"));
/// assert_eq!(f.raw_value(), b" =?UTF-8?B?SGk=?=\r\n  there");
/// assert_eq!(f.value().as_ref(), b"=?UTF-8?B?SGk=?=  there");
/// assert_eq!(f.decoded(100), "Hi  there");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    name: &'a str,
    raw: &'a [u8],
    truncated: bool,
}

impl<'a> Field<'a> {
    /// The field name as written (without blanks before the colon).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::header::HeaderBlock;
    ///
    /// let head = HeaderBlock::new(b"X-Spam-Status: No\n\n");
    /// assert_eq!(head.fields().next().unwrap().name(), "X-Spam-Status");
    /// ```
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Whether the field is named `name` (compared case-insensitively).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::header::HeaderBlock;
    ///
    /// let f = HeaderBlock::new(b"SUBJECT: x\n\n").fields().next().unwrap();
    /// assert!(f.is("Subject") && !f.is("Subjec"));
    /// ```
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The value as written: everything after the colon, continuation lines and their
    /// line endings included (but not the last line's ending), cut at
    /// [`HeaderLimits::max_field_len`] octets.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::header::HeaderBlock;
    ///
    /// let f = HeaderBlock::new(b"To: a,\n b\n\n").fields().next().unwrap();
    /// assert_eq!(f.raw_value(), b" a,\n b");
    /// ```
    pub fn raw_value(&self) -> &'a [u8] {
        self.raw
    }

    /// The value unfolded (RFC 5322 §2.2.3: the line breaks before continuation lines
    /// removed, the blanks kept) with leading and trailing blanks removed.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::header::HeaderBlock;
    ///
    /// let f = HeaderBlock::new(b"To: a,\r\n\tb \r\n\r\n").fields().next().unwrap();
    /// assert_eq!(f.value().as_ref(), b"a,\tb");
    /// ```
    pub fn value(&self) -> Cow<'a, [u8]> {
        let mut raw = self.raw;
        while let [first, rest @ ..] = raw {
            if is_wsp(*first) {
                raw = rest;
            } else {
                break;
            }
        }
        // A value cut inside a line ending may end in CR.
        let raw = trim_end_wsp(raw.strip_suffix(b"\r").unwrap_or(raw));
        if memchr::memchr(b'\n', raw).is_none() {
            return Cow::Borrowed(trim_end_wsp(raw));
        }
        let mut out = Vec::with_capacity(raw.len());
        for line in raw.split(|&b| b == b'\n') {
            out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        }
        let len = trim_end_wsp(&out).len();
        out.truncate(len);
        Cow::Owned(out)
    }

    /// Whether the value was cut at [`HeaderLimits::max_field_len`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::header::HeaderBlock;
    ///
    /// assert!(!HeaderBlock::new(b"A: 1\n\n").fields().next().unwrap().is_truncated());
    /// ```
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// The value unfolded, with its RFC 2047 encoded words decoded into at most `max_len`
    /// octets (see [`rfc2047::decode`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::header::HeaderBlock;
    ///
    /// let f = HeaderBlock::new(b"Subject: =?UTF-8?Q?a?=\n =?UTF-8?Q?b?=\n\n").fields().next().unwrap();
    /// assert_eq!(f.decoded(100), "ab");
    /// ```
    pub fn decoded(&self, max_len: usize) -> String {
        rfc2047::decode(&self.value(), max_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(head: &[u8]) -> Vec<(String, Vec<u8>)> {
        HeaderBlock::new(head)
            .fields()
            .map(|f| (f.name().to_owned(), f.value().into_owned()))
            .collect()
    }

    #[test]
    fn unfolding_and_the_end_of_the_block() {
        let got = fields(
            b"Received: from x\r\n\tby y\r\nFrom: Ann <ann@example.org>\r\nSubject: a\r\n b\r\n\
              X-Spam-Status: Yes, score=7.3\r\n required=5.0 tests=A\r\n\r\nSubject: not this\r\n",
        );
        let want: Vec<(String, Vec<u8>)> = [
            ("Received", &b"from x\tby y"[..]),
            ("From", b"Ann <ann@example.org>"),
            ("Subject", b"a b"),
            ("X-Spam-Status", b"Yes, score=7.3 required=5.0 tests=A"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_block_ends_at_a_line_that_is_not_a_field() {
        assert!(fields(b" leading continuation\nA: 1\n").is_empty());
        assert_eq!(fields(b"A: 1\nno colon\nB: 2\n").len(), 1);
        assert_eq!(fields(b"A: 1\nbad name: x\nB: 2\n").len(), 1);
        assert_eq!(fields(b"A: 1\n: empty name\nB: 2\n").len(), 1);
        assert_eq!(fields(b"A: 1\n\xc3\xa9: 8-bit name\n").len(), 1);
        // Blanks before the colon (obsolete syntax) are allowed.
        assert_eq!(fields(b"A : 1\n"), [("A".to_owned(), b"1".to_vec())]);
        // No line ending at the end, empty values, whitespace-only continuation.
        assert_eq!(
            fields(b"A:\nB:   \n \t\nC: x"),
            [
                ("A".to_owned(), vec![]),
                ("B".to_owned(), vec![]),
                ("C".to_owned(), b"x".to_vec())
            ]
        );
        assert!(fields(b"").is_empty());
        assert!(fields(b"\r\nA: 1\r\n").is_empty());
    }

    #[test]
    fn limits() {
        let mut limits = HeaderLimits {
            max_fields: 2,
            max_field_len: 4,
        };
        let head = HeaderBlock::with_limits(b"A: 123456\n 789\nB: 1\nC: 2\n\n", limits);
        let got: Vec<_> = head
            .fields()
            .map(|f| (f.name(), f.raw_value(), f.is_truncated()))
            .collect();
        assert_eq!(got, [("A", &b" 123"[..], true), ("B", b" 1", false)]);
        // Cut inside a line ending.
        limits.max_field_len = 3;
        let head = HeaderBlock::with_limits(b"A: a\r\n b\r\n", limits);
        assert_eq!(head.first("a").unwrap().value().as_ref(), b"a");
    }

    #[test]
    fn first_and_decoded() {
        let head = HeaderBlock::new(b"subject: =?UTF-8?Q?one?=\nSubject: two\n\n");
        assert_eq!(head.decoded("SUBJECT", 100).as_deref(), Some("one"));
        assert_eq!(head.decoded("Subject", 2).as_deref(), Some("on"));
        assert_eq!(head.decoded("From", 100), None);
    }

    /// Many fields and long folded fields: linear, and the output is what was asked.
    #[test]
    fn large_blocks() {
        let mut head = b"Subject: x".to_vec();
        for _ in 0..50_000 {
            head.extend_from_slice(b"\r\n =?a");
        }
        head.extend_from_slice(b"\r\nFrom: f\r\n\r\n");
        let block = HeaderBlock::new(&head);
        assert_eq!(block.decoded("from", 100).as_deref(), Some("f"));
        let subject = block.first("subject").unwrap();
        assert!(subject.is_truncated());
        assert_eq!(subject.decoded(12), "x =?a =?a =?");
        let many = "A: 1\n".repeat(5000);
        assert_eq!(HeaderBlock::new(many.as_bytes()).fields().count(), 1000);
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_within_limits(
            head in prop::collection::vec(
                prop_oneof![
                    Just(b"\r\n".to_vec()),
                    Just(b"\n".to_vec()),
                    Just(b": ".to_vec()),
                    Just(b" ".to_vec()),
                    Just(b"\t".to_vec()),
                    "[a-zA-Z-]{1,8}".prop_map(String::into_bytes),
                    prop::collection::vec(any::<u8>(), 0..4),
                ],
                0..60,
            ).prop_map(|v| v.concat()),
            max_fields in 0usize..8,
            max_field_len in 0usize..20,
        ) {
            let limits = HeaderLimits { max_fields, max_field_len };
            let block = HeaderBlock::with_limits(&head, limits);
            let mut n = 0;
            for f in block.fields() {
                n += 1;
                prop_assert!(f.raw_value().len() <= max_field_len);
                prop_assert!(!f.name().is_empty());
                prop_assert!(!f.name().bytes().any(|b| b == b':' || b.is_ascii_whitespace()));
                let v = f.value();
                prop_assert!(!v.contains(&b'\n'));
                let _ = f.decoded(50);
            }
            prop_assert!(n <= max_fields);
        }

        /// Unfolding then folding differently gives the same fields.
        #[test]
        fn folding_does_not_change_values(
            values in prop::collection::vec("[a-z]{1,5}( [a-z]{1,5}){0,4}", 1..5),
            crlf in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let flat: String = values.iter().enumerate().map(|(i, v)| format!("F{i}: {v}{eol}")).collect();
            let folded: String = values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("F{i}: {}{eol}", v.replace(' ', &format!("{eol} "))))
                .collect();
            prop_assert_eq!(fields(flat.as_bytes()), fields(folded.as_bytes()));
            prop_assert_eq!(fields(flat.as_bytes()).len(), values.len());
        }
    }
}
