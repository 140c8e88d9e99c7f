//! What a Spam folder listing shows of a message: From, Subject and the spam score, read
//! from the header block within bounds and made safe to display.
//!
//! # Examples
//!
//! ```
//! use mailbag_spam_tag::{Score, Summary};
//!
//! let s = Summary::parse(
//!     b"From: =?UTF-8?Q?J=C3=B6rg?= <j@example.org>\r\nSubject: **SPAM( 1000.0)** hi\r\n\
//!       X-Spam-Status: Yes, score=1000.0 required=5.0\r\n\ttests=GTUBE\r\n\r\nbody",
//! );
//! assert_eq!(s.from, "Jörg <j@example.org>");
//! assert_eq!(s.subject, "**SPAM( 1000.0)** hi");
//! assert_eq!(s.score, Some(Score::from_tenths(10_000)));
//! ```

use crate::header::{Field, HeaderBlock, HeaderLimits};
use crate::rfc2047;
use crate::score::Score;

/// How [`Summary::parse_with`] reads a header block.
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::{Summary, SummaryOptions};
///
/// let mut opts = SummaryOptions::default();
/// assert_eq!(opts.max_chars, 200);
/// opts.max_chars = 5;
/// let s = Summary::parse_with(b"Subject: Hello world\n\n", &opts);
/// assert_eq!(s.subject, "Hello…");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SummaryOptions {
    /// The most characters shown of From and Subject; a longer value is cut and ends with
    /// `…` (so it has at most `max_chars + 1` characters). Default: 200.
    pub max_chars: usize,
    /// The bounds for reading the header block. Default: [`HeaderLimits::default`].
    pub limits: HeaderLimits,
}

impl Default for SummaryOptions {
    fn default() -> Self {
        SummaryOptions {
            max_chars: 200,
            limits: HeaderLimits::default(),
        }
    }
}

/// The From, Subject and spam score of a message, for display.
///
/// `from` and `subject` are the first field of that name, unfolded, RFC 2047 encoded
/// words decoded ([`rfc2047`]), control characters turned into spaces, bidirectional
/// formatting characters removed (a right-to-left override, U+202E, before `gpj.exe`
/// would show it as `exe.jpg`), runs of white
/// space collapsed to one space, leading and trailing white space removed, cut at
/// [`SummaryOptions::max_chars`]; empty when the field is absent. The subject is as
/// stored: a spam tag is not removed (see [`crate::remove_tag`]).
///
/// `score` is from the last `X-Spam-Status` field holding `score=N` (the one our delivery
/// appended; incoming ones are removed: see [`status_score`]), or else from the last
/// `X-Spam-Score: N`.
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::{Score, Summary};
///
/// let s = Summary::parse(b"Subject: a\r\n  b\x07c\r\nX-Spam-Score: -1.5\r\n\r\n");
/// assert_eq!(s.from, "");
/// assert_eq!(s.subject, "a b c");
/// assert_eq!(s.score, Some(Score::from_tenths(-15)));
/// assert_eq!(s.score.unwrap().to_string(), "-1.5");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// `From:`, decoded and tamed; empty if absent.
    pub from: String,
    /// `Subject:`, decoded and tamed; empty if absent.
    pub subject: String,
    /// The spam score, if the header block records one.
    pub score: Option<Score>,
}

impl Summary {
    /// Reads the summary of the header block at the start of `head` (the rest of the
    /// message may follow; it is ignored) with the default [`SummaryOptions`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::Summary;
    ///
    /// assert_eq!(Summary::parse(b""), Summary::default());
    /// ```
    pub fn parse(head: &[u8]) -> Summary {
        Summary::parse_with(head, &SummaryOptions::default())
    }

    /// Reads the summary of the header block at the start of `head` with `opts`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::{Summary, SummaryOptions};
    ///
    /// let mut opts = SummaryOptions::default();
    /// opts.limits.max_fields = 1;
    /// let s = Summary::parse_with(b"From: a@example.org\nSubject: hi\n\n", &opts);
    /// assert_eq!((s.from.as_str(), s.subject.as_str()), ("a@example.org", ""));
    /// ```
    pub fn parse_with(head: &[u8], opts: &SummaryOptions) -> Summary {
        let mut out = Summary::default();
        let (mut from, mut subject) = (None, None);
        let (mut status, mut plain_score) = (None, None);
        for field in HeaderBlock::with_limits(head, opts.limits).fields() {
            if field.is("From") {
                from = from.or(Some(field));
            } else if field.is("Subject") {
                subject = subject.or(Some(field));
            } else if field.is("X-Spam-Status") {
                status = status_score(&field.value()).or(status);
            } else if field.is("X-Spam-Score") {
                plain_score = parse_score(&field.value()).or(plain_score);
            }
        }
        if let Some(f) = from {
            out.from = shown(&f, opts.max_chars);
        }
        if let Some(f) = subject {
            out.subject = shown(&f, opts.max_chars);
        }
        out.score = status.or(plain_score);
        out
    }
}

/// The score in an `X-Spam-Status` value as SpamAssassin (and our tagger) writes it:
/// `Yes, score=7.3 required=5.0 tests=...` (the first `score=` word; `None` when there is
/// none or it is not a plain decimal, as in `Unknown, not scanned`).
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::{Score, status_score};
///
/// assert_eq!(status_score(b"No, score=-1.5 required=5.0"), Some(Score::from_tenths(-15)));
/// assert_eq!(status_score(b"Yes,\r\n\tscore=7.3\trequired=5.0"), Some(Score::from_tenths(73)));
/// assert_eq!(status_score(b"Yes, score=<script> required=5"), None);
/// assert_eq!(status_score(b"Unknown, not scanned"), None);
/// ```
pub fn status_score(value: &[u8]) -> Option<Score> {
    value
        .split(|&b| b.is_ascii_whitespace() || b == b',')
        .find_map(|word| {
            let (key, v) = word.split_at_checked(6)?;
            key.eq_ignore_ascii_case(b"score=").then_some(v)
        })
        .and_then(parse_score)
}

/// A plain decimal score (`-?[0-9]+(\.[0-9]+)?`), blanks around it ignored.
fn parse_score(value: &[u8]) -> Option<Score> {
    std::str::from_utf8(value.trim_ascii()).ok()?.parse().ok()
}

/// Whether `c` is one of Unicode's explicit bidirectional formatting characters
/// (UAX #9): the marks ALM, LRM and RLM, the embeddings and overrides
/// U+202A-U+202E and the isolates U+2066-U+2069. Each changes how the text around
/// it is displayed; [`Summary`] removes them.
///
/// ```
/// use mailbag_spam_tag::summary::is_bidi_format;
/// assert!(is_bidi_format('\u{202e}') && !is_bidi_format('a'));
/// ```
pub fn is_bidi_format(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A field's value decoded and made safe to display in at most `max_chars` characters
/// (plus `…` when cut).
fn shown(field: &Field<'_>, max_chars: usize) -> String {
    let mut text = String::new();
    // Up to 4 octets a character; one more to see whether there is more.
    let bound = max_chars.saturating_mul(4).saturating_add(4);
    let complete = rfc2047::decode_to(&field.value(), bound, &mut text);
    let mut out = String::with_capacity(text.len().min(bound));
    let mut chars = 0;
    let mut blank = false;
    let mut cut = !complete || field.is_truncated();
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() {
            blank = chars > 0;
            continue;
        }
        if is_bidi_format(c) {
            continue;
        }
        if chars + usize::from(blank) + 1 > max_chars {
            cut = true;
            break;
        }
        if blank {
            out.push(' ');
            chars += 1;
            blank = false;
        }
        out.push(c);
        chars += 1;
    }
    if cut {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX_SHOWN: usize = 200;

    fn score(s: &str) -> Option<Score> {
        Some(s.parse().unwrap())
    }

    // Ported from the server's Spam page (examples/src/web/spam.rs).

    #[test]
    fn header_fields_and_unfolding() {
        let h = Summary::parse(
            b"Received: from x\r\n\tby y\r\nFrom: Ann <ann@example.org>\r\nSubject: a\r\n b\r\n\
              X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=7.3\r\n required=5.0 tests=A\r\n\r\n\
              Subject: not this\r\n",
        );
        assert_eq!(h.from, "Ann <ann@example.org>");
        assert_eq!(h.subject, "a b");
        assert_eq!(h.score, score("7.3"));
    }

    #[test]
    fn score_from_x_spam_score_and_missing() {
        let h = Summary::parse(b"Subject: x\nX-Spam-Score: 12.5\n\n");
        assert_eq!(h.score, score("12.5"));
        let h = Summary::parse(b"Subject: x\nX-Spam-Status: Unknown, not scanned\n\n");
        assert_eq!(h.score, None);
        let h = Summary::parse(b"X-Spam-Status: Yes, score=<script> required=5\n\n");
        assert_eq!(h.score, None);
        let h = Summary::parse(b"X-Spam-Status: No, score=-1.5 required=5.0\n\n");
        assert_eq!(h.score, score("-1.5"));
        assert_eq!(Summary::parse(b""), Summary::default());
    }

    #[test]
    fn the_last_status_wins_over_x_spam_score() {
        let h = Summary::parse(
            b"X-Spam-Status: Yes, score=1.0\nX-Spam-Score: 3.0\n\
              X-Spam-Status: Yes, score=2.0\nX-Spam-Status: Unknown, not scanned\n\n",
        );
        assert_eq!(h.score, score("2.0"));
        let h = Summary::parse(b"X-Spam-Score: 3.0\nX-Spam-Score: junk\n\n");
        assert_eq!(h.score, score("3.0"));
    }

    #[test]
    fn the_first_from_and_subject_count() {
        let h = Summary::parse(b"Subject: one\nFROM: a\nsubject: two\nFrom: b\n\n");
        assert_eq!((h.from.as_str(), h.subject.as_str()), ("a", "one"));
    }

    #[test]
    fn encoded_words() {
        let h = Summary::parse(
            b"From: =?ISO-8859-1?Q?Andr=E9?= <a@example.org>\r\n\
              Subject: =?UTF-8?Q?a?=\r\n =?UTF-8?B?Yg==?= c\r\n\r\n",
        );
        assert_eq!(h.from, "André <a@example.org>");
        assert_eq!(h.subject, "ab c");
        // Control characters hidden in encoded words are tamed too.
        let h = Summary::parse(b"Subject: =?UTF-8?Q?a=0D=0Ab=1B[31m?=\n\n");
        assert_eq!(h.subject, "a b [31m");
    }

    #[test]
    fn bidirectional_overrides_are_removed() {
        // U+202E RIGHT-TO-LEFT OVERRIDE before "gpj.exe": shown "exe.jpg".
        let h = Summary::parse(b"Subject: =?UTF-8?B?4oCuZ3BqLmV4ZQ==?=\n\n");
        assert_eq!(h.subject, "gpj.exe");
        let h = Summary::parse("Subject: a\u{2067}b\u{2069} \u{200f}c\u{061c}\n\n".as_bytes());
        assert_eq!(h.subject, "ab c");
    }

    #[test]
    fn control_characters_and_long_values_are_tamed() {
        let mut line = b"Subject: a\x07b ".to_vec();
        line.extend(std::iter::repeat_n(b'x', 500));
        line.extend_from_slice(b"\r\n\r\n");
        let h = Summary::parse(&line);
        assert!(h.subject.starts_with("a b x"));
        assert_eq!(h.subject.chars().count(), MAX_SHOWN + 1);
        assert!(h.subject.ends_with('…'));
    }

    #[test]
    fn cutting() {
        let mut opts = SummaryOptions {
            max_chars: 3,
            ..SummaryOptions::default()
        };
        let subject = |head: &[u8], opts: &SummaryOptions| Summary::parse_with(head, opts).subject;
        assert_eq!(subject(b"Subject: abc\n\n", &opts), "abc");
        assert_eq!(subject(b"Subject: abcd\n\n", &opts), "abc…");
        assert_eq!(subject(b"Subject: ab c\n\n", &opts), "ab…");
        assert_eq!(subject(b"Subject: ab   \n\n", &opts), "ab");
        assert_eq!(subject(b"Subject: a  b\n\n", &opts), "a b");
        // Cut by the header reader: there is more.
        opts.limits.max_field_len = 3;
        assert_eq!(subject(b"Subject: ab   \n\n", &opts), "ab…");
        opts.max_chars = 0;
        assert_eq!(subject(b"Subject: a\n\n", &opts), "…");
        assert_eq!(subject(b"Subject:\n\n", &opts), "");
    }

    /// The page view that took 5.9 s: `From:` is `=?a` 21,000 times.
    #[test]
    fn hostile_from_is_cheap_and_cut() {
        let head = format!("From: {}\r\nSubject: s\r\n\r\n", "=?a".repeat(21_000));
        let h = Summary::parse(head.as_bytes());
        assert_eq!(h.from, format!("{}…", &"=?a".repeat(67)[..200]));
        assert_eq!(h.subject, "s");
    }

    proptest! {
        #[test]
        fn header_parsing_never_panics_and_output_is_tame(
            head in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            let h = Summary::parse(&head);
            for field in [&h.from, &h.subject] {
                prop_assert!(!field.chars().any(char::is_control));
                prop_assert!(!field.chars().any(is_bidi_format));
                prop_assert!(field.chars().count() <= MAX_SHOWN + 1);
            }
        }

        #[test]
        fn plain_ascii_subjects_survive(subject in "[a-zA-Z0-9][a-zA-Z0-9 ,.!]{0,60}[a-zA-Z0-9]") {
            let h = Summary::parse(format!("Subject: {subject}\r\n\r\n").as_bytes());
            let expected = subject.split_whitespace().collect::<Vec<_>>().join(" ");
            prop_assert_eq!(h.subject, expected);
        }

        #[test]
        fn scores_round_trip(tenths in -10_000i32..10_000) {
            let s = Score::from_tenths(tenths);
            let head = format!("X-Spam-Status: Yes, score={s} required=5.0\r\n\r\n");
            prop_assert_eq!(Summary::parse(head.as_bytes()).score, Some(s));
        }
    }
}
