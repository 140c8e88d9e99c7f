//! The [`Scorer`] trait and the built-in scorer (GTUBE plus a few cheap header rules).
//!
//! # Built-in rules
//!
//! Names and scores follow SpamAssassin's rules of the same name where there is one
//! (rounded to one decimal); all are cheap and bounded.
//!
//! | rule | score | fires when |
//! |---|---|---|
//! | `GTUBE` | 1000.0 | the body (its first [`BuiltinOptions::max_body_scan`] bytes) holds the [`GTUBE`] string |
//! | `MISSING_DATE` | 1.4 | no `Date:` field |
//! | `MISSING_MID` | 0.5 | no `Message-ID:` field |
//! | `MISSING_FROM` | 1.0 | no `From:` field |
//! | `MISSING_HEADERS` | 1.0 | no `To:` field |
//! | `MISSING_SUBJECT` | 1.8 | no `Subject:` field |
//! | `SUBJ_ALL_CAPS` | 0.5 | the Subject has at least 10 ASCII letters and no lower-case one |
//! | `EMPTY_MESSAGE` | 2.3 | the body is empty or blank |
//!
//! The header block is read up to [`BuiltinOptions::max_header_scan`] bytes; when it is
//! longer, the rest of it is skipped (only its end is looked for), the `MISSING_*` and
//! `EMPTY_MESSAGE` rules do not fire (the field may come later), and the body is still
//! scanned: padding the header does not hide the body.

use crate::score::{RuleName, Score, Verdict};

/// The GTUBE test string (Generic Test for Unsolicited Bulk Email): any message whose body
/// holds it scores 1000 with SpamAssassin and with the built-in scorer.
pub const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A spam scorer: gives a score and the names of the rules that fired.
///
/// Scorers are synchronous and take the whole message (header block and body, as
/// received: CRLF or LF line ends). The built-in scorer also offers a streaming form
/// ([`BuiltinScorer::scan`]). The spamd client (module `spamd`, feature `spamd`) is
/// asynchronous and not a `Scorer`; both produce a [`Verdict`].
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::{BuiltinScorer, Scorer, GTUBE};
///
/// let mut msg = b"Subject: test\r\n\r\n".to_vec();
/// msg.extend_from_slice(GTUBE);
/// let v = BuiltinScorer::default().score(&msg);
/// assert!(v.score().value() >= 1000.0);
/// assert!(v.rules().iter().any(|r| r.as_str() == "GTUBE"));
/// ```
pub trait Scorer {
    /// Scores one message.
    fn score(&self, message: &[u8]) -> Verdict;
}

/// Limits of the built-in scorer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuiltinOptions {
    /// Bytes of header block read. Default: 64 KiB.
    pub max_header_scan: usize,
    /// Bytes of body searched for GTUBE. Default: 256 KiB.
    pub max_body_scan: usize,
}

impl Default for BuiltinOptions {
    fn default() -> Self {
        BuiltinOptions {
            max_header_scan: 64 * 1024,
            max_body_scan: 256 * 1024,
        }
    }
}

/// The built-in scorer (see the [module docs](self) for its rules).
#[derive(Debug, Clone, Default)]
pub struct BuiltinScorer {
    options: BuiltinOptions,
}

impl BuiltinScorer {
    /// A scorer with the given limits.
    pub fn new(options: BuiltinOptions) -> BuiltinScorer {
        BuiltinScorer { options }
    }

    /// Starts a streaming scan: feed the message in chunks, then [`BuiltinScan::finish`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::{BuiltinScorer, GTUBE};
    ///
    /// let scorer = BuiltinScorer::default();
    /// let mut scan = scorer.scan();
    /// scan.feed(b"Date: x\r\nMessage-ID: <a@b>\r\nFrom: a@b\r\nTo: c@d\r\nSubject: hi\r\n\r\n");
    /// scan.feed(&GTUBE[..30]);
    /// scan.feed(&GTUBE[30..]);
    /// assert_eq!(scan.finish().score().to_string(), "1000.0");
    /// ```
    pub fn scan(&self) -> BuiltinScan<'_> {
        BuiltinScan {
            options: &self.options,
            phase: Phase::Headers,
            line: Vec::new(),
            header_bytes: 0,
            truncated: false,
            seen: Seen::default(),
            current: Current::Other,
            subject: Vec::new(),
            body_bytes: 0,
            tail: Vec::new(),
            gtube: false,
            body_blank: true,
            skip_len: 0,
            skip_first: 0,
            skip_colon: false,
        }
    }
}

impl Scorer for BuiltinScorer {
    fn score(&self, message: &[u8]) -> Verdict {
        let mut scan = self.scan();
        scan.feed(message);
        scan.finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Headers,
    /// Past `max_header_scan`: looking only for the end of the header.
    SkipHeaders,
    Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    Subject,
    Other,
}

#[derive(Debug, Default)]
struct Seen {
    date: bool,
    message_id: bool,
    from: bool,
    to: bool,
    subject: bool,
}

/// The most Subject bytes kept for `SUBJ_ALL_CAPS`.
const SUBJECT_KEEP: usize = 4096;

/// A streaming scan by the [`BuiltinScorer`]; memory is bounded by its options.
#[derive(Debug)]
pub struct BuiltinScan<'s> {
    options: &'s BuiltinOptions,
    phase: Phase,
    line: Vec<u8>,
    header_bytes: usize,
    truncated: bool,
    seen: Seen,
    current: Current,
    subject: Vec<u8>,
    body_bytes: usize,
    tail: Vec<u8>,
    gtube: bool,
    body_blank: bool,
    /// In [`Phase::SkipHeaders`]: the current line's length so far, its first octet,
    /// and whether it holds a colon (a line without one starts the body).
    skip_len: usize,
    skip_first: u8,
    skip_colon: bool,
}

impl BuiltinScan<'_> {
    /// Feeds the next chunk of the message.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            match self.phase {
                Phase::Body => {
                    self.body(chunk);
                    return;
                }
                Phase::SkipHeaders => chunk = self.skip_header(chunk),
                Phase::Headers => {
                    let (piece, rest, complete) = match memchr::memchr(b'\n', chunk) {
                        Some(i) => (&chunk[..=i], &chunk[i + 1..], true),
                        None => (chunk, &[][..], false),
                    };
                    chunk = rest;
                    self.header_bytes += piece.len();
                    if self.header_bytes > self.options.max_header_scan {
                        // The rest of the header is skipped, this line included (what
                        // was kept of it seeds the skipper).
                        self.truncated = true;
                        self.phase = Phase::SkipHeaders;
                        self.skip_len = self.line.len();
                        self.skip_first = self.line.first().copied().unwrap_or(0);
                        self.skip_colon = memchr::memchr(b':', &self.line).is_some();
                        self.line.clear();
                        let left = self.skip_header(piece);
                        debug_assert!(left.is_empty());
                        continue;
                    }
                    // Lines are kept up to SUBJECT_KEEP bytes: enough for every rule.
                    let room = SUBJECT_KEEP.saturating_sub(self.line.len());
                    self.line.extend_from_slice(&piece[..piece.len().min(room)]);
                    if complete {
                        let line = std::mem::take(&mut self.line);
                        self.header_line(&line);
                        self.line = line;
                        self.line.clear();
                    }
                }
            }
        }
    }

    /// In [`Phase::SkipHeaders`]: consumes header lines without reading them until the
    /// blank line (or a line that is no header field), then hands the rest to the body.
    /// Returns what is left of `chunk`.
    fn skip_header<'c>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        let (piece, rest, complete) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (&chunk[..i], &chunk[i + 1..], true),
            None => (chunk, &[][..], false),
        };
        if self.skip_len == 0 {
            self.skip_first = piece.first().copied().unwrap_or(b'\n');
        }
        self.skip_len += piece.len();
        self.skip_colon |= memchr::memchr(b':', piece).is_some();
        if !complete {
            return rest;
        }
        let blank = self.skip_len == 0 || (self.skip_len == 1 && self.skip_first == b'\r');
        let field = self.skip_colon || matches!(self.skip_first, b' ' | b'\t');
        if blank {
            self.phase = Phase::Body;
        } else if !field {
            // Not a header field: the body starts with this line.
            self.phase = Phase::Body;
            self.body(piece);
            self.body(b"\n");
        }
        self.skip_len = 0;
        self.skip_colon = false;
        rest
    }

    fn header_line(&mut self, line: &[u8]) {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        match content.first() {
            None => self.phase = Phase::Body,
            Some(b' ' | b'\t') => {
                if self.current == Current::Subject {
                    self.keep_subject(content);
                }
            }
            Some(_) => {
                let Some(colon) = memchr::memchr(b':', content) else {
                    // Not a header field: the body starts here.
                    self.phase = Phase::Body;
                    self.body(line);
                    return;
                };
                let name = content.get(..colon).unwrap_or_default().trim_ascii_end();
                let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
                self.current = Current::Other;
                if is(b"date") {
                    self.seen.date = true;
                } else if is(b"message-id") {
                    self.seen.message_id = true;
                } else if is(b"from") {
                    self.seen.from = true;
                } else if is(b"to") {
                    self.seen.to = true;
                } else if is(b"subject") {
                    self.seen.subject = true;
                    self.current = Current::Subject;
                    self.keep_subject(content.get(colon + 1..).unwrap_or_default());
                }
            }
        }
    }

    fn keep_subject(&mut self, part: &[u8]) {
        let room = SUBJECT_KEEP.saturating_sub(self.subject.len());
        self.subject
            .extend_from_slice(&part[..part.len().min(room)]);
    }

    fn body(&mut self, chunk: &[u8]) {
        let room = self.options.max_body_scan.saturating_sub(self.body_bytes);
        let chunk = &chunk[..chunk.len().min(room)];
        self.body_bytes += chunk.len();
        if chunk.is_empty() {
            return;
        }
        if self.body_blank && chunk.iter().any(|b| !b.is_ascii_whitespace()) {
            self.body_blank = false;
        }
        if !self.gtube {
            // Look across the chunk boundary: old tail + the start of this chunk.
            if !self.tail.is_empty() {
                let old = self.tail.len();
                self.tail
                    .extend_from_slice(&chunk[..chunk.len().min(GTUBE.len() - 1)]);
                self.gtube = memchr::memmem::find(&self.tail, GTUBE).is_some();
                self.tail.truncate(old);
            }
            if !self.gtube {
                self.gtube = memchr::memmem::find(chunk, GTUBE).is_some();
            }
            // Keep the last GTUBE.len() - 1 bytes seen.
            self.tail.extend_from_slice(chunk);
            let excess = self.tail.len().saturating_sub(GTUBE.len() - 1);
            self.tail.drain(..excess);
        }
    }

    /// Ends the scan and returns the verdict.
    pub fn finish(mut self) -> Verdict {
        if self.phase == Phase::Headers && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.header_line(&line);
        }
        let mut rules: Vec<(&str, i32)> = Vec::new();
        if self.gtube {
            rules.push(("GTUBE", 10_000));
        }
        if !self.truncated {
            let s = &self.seen;
            for (seen, name, tenths) in [
                (s.date, "MISSING_DATE", 14),
                (s.message_id, "MISSING_MID", 5),
                (s.from, "MISSING_FROM", 10),
                (s.to, "MISSING_HEADERS", 10),
                (s.subject, "MISSING_SUBJECT", 18),
            ] {
                if !seen {
                    rules.push((name, tenths));
                }
            }
            if self.body_blank {
                rules.push(("EMPTY_MESSAGE", 23));
            }
        }
        let letters = self.subject.iter().filter(|b| b.is_ascii_alphabetic());
        if letters.clone().count() >= 10 && !letters.clone().any(u8::is_ascii_lowercase) {
            rules.push(("SUBJ_ALL_CAPS", 5));
        }
        let tenths: i32 = rules.iter().map(|r| r.1).sum();
        let names = rules
            .iter()
            .filter_map(|(n, _)| RuleName::new(n).ok())
            .collect();
        Verdict::new(Score::from_tenths(tenths), names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &[u8] = b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@x>\r\n\
From: a@x\r\nTo: b@y\r\nSubject: Hello there\r\n\r\nHi Bob.\r\n";

    fn names(v: &Verdict) -> Vec<&str> {
        v.rules().iter().map(RuleName::as_str).collect()
    }

    #[test]
    fn clean_message_scores_zero() {
        let v = BuiltinScorer::default().score(FULL);
        assert_eq!(v.score(), Score::ZERO);
        assert!(v.rules().is_empty());
    }

    #[test]
    fn missing_headers_and_empty_body() {
        let v = BuiltinScorer::default().score(b"Subject: x\n\n");
        assert_eq!(
            names(&v),
            [
                "EMPTY_MESSAGE",
                "MISSING_DATE",
                "MISSING_FROM",
                "MISSING_HEADERS",
                "MISSING_MID"
            ]
        );
        assert_eq!(v.score().to_string(), "6.2");
        let v = BuiltinScorer::default().score(b"");
        assert!(names(&v).contains(&"MISSING_SUBJECT"));
    }

    #[test]
    fn all_caps_subject() {
        let msg = b"Subject: BUY CHEAP\r\n WATCHES NOW!!\r\n\r\nx";
        assert!(names(&BuiltinScorer::default().score(msg)).contains(&"SUBJ_ALL_CAPS"));
        let msg = b"Subject: BUY CHEAP watches\r\n\r\nx";
        assert!(!names(&BuiltinScorer::default().score(msg)).contains(&"SUBJ_ALL_CAPS"));
        let msg = b"Subject: HI!\r\n\r\nx";
        assert!(!names(&BuiltinScorer::default().score(msg)).contains(&"SUBJ_ALL_CAPS"));
    }

    #[test]
    fn gtube_across_every_split() {
        let mut msg = FULL.to_vec();
        msg.extend_from_slice(b"text ");
        msg.extend_from_slice(GTUBE);
        msg.extend_from_slice(b" more\r\n");
        let scorer = BuiltinScorer::default();
        for split in 0..msg.len() {
            let mut scan = scorer.scan();
            scan.feed(&msg[..split]);
            scan.feed(&msg[split..]);
            assert_eq!(names(&scan.finish()), ["GTUBE"], "split at {split}");
        }
        // Byte by byte.
        let mut scan = scorer.scan();
        for b in &msg {
            scan.feed(std::slice::from_ref(b));
        }
        assert_eq!(scan.finish().score().to_string(), "1000.0");
    }

    #[test]
    fn gtube_in_headers_does_not_count_and_scan_limits_apply() {
        let mut msg = b"X-Test: ".to_vec();
        msg.extend_from_slice(GTUBE);
        msg.extend_from_slice(b"\r\n\r\nbody");
        assert!(!names(&BuiltinScorer::default().score(&msg)).contains(&"GTUBE"));

        let opts = BuiltinOptions {
            max_body_scan: 100,
            ..BuiltinOptions::default()
        };
        let mut late = FULL.to_vec();
        late.extend(std::iter::repeat_n(b'a', 200));
        late.extend_from_slice(GTUBE);
        assert!(!names(&BuiltinScorer::new(opts).score(&late)).contains(&"GTUBE"));

        let opts = BuiltinOptions {
            max_header_scan: 10,
            ..BuiltinOptions::default()
        };
        let v = BuiltinScorer::new(opts).score(FULL);
        assert!(
            v.rules().is_empty(),
            "truncated headers fire no MISSING_* rule"
        );
    }

    /// A header padded past `max_header_scan` is skipped, and the body is still scored
    /// (the web probe hid GTUBE behind 70 KB of header fields), whatever the chunking.
    #[test]
    fn a_padded_header_does_not_hide_the_body() {
        let mut msg = Vec::new();
        for i in 0..70 {
            msg.extend_from_slice(format!("X-H{i}: {}\r\n", "y".repeat(990)).as_bytes());
            msg.extend_from_slice(b"\t folded\r\n");
        }
        msg.extend_from_slice(b"From: a@b\r\n\r\n");
        msg.extend_from_slice(GTUBE);
        msg.extend_from_slice(b"\r\n");
        let scorer = BuiltinScorer::default();
        assert_eq!(names(&scorer.score(&msg)), ["GTUBE"]);
        for chunk in [1, 7, 1000, 65_536] {
            let mut scan = scorer.scan();
            for c in msg.chunks(chunk) {
                scan.feed(c);
            }
            assert_eq!(names(&scan.finish()), ["GTUBE"], "chunks of {chunk}");
        }
        // A line without a colon after the limit starts the body, as before it.
        let mut bare = b"X-A: ".to_vec();
        bare.extend(std::iter::repeat_n(b'y', 70_000));
        bare.extend_from_slice(b"\r\nno colon here ");
        bare.extend_from_slice(GTUBE);
        bare.extend_from_slice(b"\r\n");
        assert_eq!(names(&scorer.score(&bare)), ["GTUBE"]);
        // A header that never ends scores nothing, and the truncation fires no rule.
        let mut endless = b"X-A: ".to_vec();
        endless.extend(std::iter::repeat_n(b'y', 70_000));
        assert!(scorer.score(&endless).rules().is_empty());
    }

    #[test]
    fn non_header_line_starts_body() {
        let mut msg = b"Subject: x\r\nno colon here ".to_vec();
        msg.extend_from_slice(GTUBE);
        assert!(names(&BuiltinScorer::default().score(&msg)).contains(&"GTUBE"));
    }
}
