//! Converting 8-bit MIME content to 7-bit for a next hop that does not offer 8BITMIME
//! (RFC 6152 section 3: a relay must convert such a message, or return it).
//!
//! Two passes over the message, each streaming, chunk by chunk:
//!
//! 1. [`MimeScan`] walks the MIME structure (RFC 2045, RFC 2046) and finds the leaf
//!    parts whose content holds octets above 127. It gives a [`SevenBitPlan`].
//! 2. When [`SevenBitPlan::needs_conversion`], [`SevenBitPlan::converter`] gives a
//!    [`SevenBitConverter`] that copies the message again with each such part
//!    re-encoded as quoted-printable (RFC 2045 section 6.7): its
//!    `Content-Transfer-Encoding` field replaced, each line end kept as a hard line
//!    break. A composite part labelled `8bit` or `binary` (a multipart, a
//!    `message/rfc822`) is then labelled `7bit`, and a message that had no MIME
//!    header fields gets `MIME-Version: 1.0` and a `Content-Type` naming `utf-8`, or
//!    `unknown-8bit` (RFC 1428) when its text is not UTF-8.
//!
//! A part's line longer than 998 octets (RFC 5321 section 4.5.3.1.6) is converted the
//! same way, for any next hop: [`SevenBitPlan::has_long_lines`] says so, and
//! [`SevenBitPlan::line_converter`] re-encodes only those parts, so that no line has to
//! be broken on the way (a break puts a line end into the part's text, or a space into
//! an HTML attribute).
//!
//! What cannot be converted is passed on as it is, and the plan says so
//! ([`SevenBitPlan::is_seven_bit_after`]): octets above 127 in a header section (RFC
//! 2047 would need each field's syntax and the text's charset), in a preamble or an
//! epilogue, or in a part labelled `base64` or `quoted-printable`. So is the content of
//! a header section longer than [`SevenBitOptions::max_header_section`], up to the next
//! delimiter. The input must use CRLF line ends, as a queued message does. A signature
//! over a converted part (`multipart/signed`, DKIM) no longer verifies, as with every
//! MTA that converts.
//!
//! # Examples
//!
//! ```
//! use mailbag_smtp_proto::seven_bit::{MimeScan, SevenBitOptions};
//!
//! let message = "Subject: menu\r\n\r\ncaf\u{e9} cr\u{e8}me\r\n".as_bytes();
//! let mut scan = MimeScan::new(SevenBitOptions::default());
//! scan.feed(message);
//! let plan = scan.finish();
//! assert!(plan.needs_conversion() && plan.is_seven_bit_after());
//!
//! let mut conv = plan.converter();
//! let mut out = Vec::new();
//! conv.feed(message, &mut out);
//! conv.finish(&mut out);
//! assert_eq!(
//!     out,
//!     b"Subject: menu\r\nMIME-Version: 1.0\r\n\
//!       Content-Type: text/plain; charset=utf-8\r\n\
//!       Content-Transfer-Encoding: quoted-printable\r\n\r\n\
//!       caf=C3=A9 cr=C3=A8me\r\n"
//! );
//! ```

mod quoted_printable;
mod structure;

use alloc::vec::Vec;

use crate::data::MAX_TEXT_LINE;
pub use quoted_printable::QuotedPrintable;
use structure::{Encoding, Entity, Event, Kind, Walker, fields};

/// Default of [`SevenBitOptions::max_header_section`]: 64 KiB.
pub const DEFAULT_MAX_HEADER_SECTION: usize = 64 * 1024;

/// Default of [`SevenBitOptions::max_depth`]: 32 nested multiparts.
pub const DEFAULT_MAX_DEPTH: usize = 32;

/// Default of [`SevenBitOptions::max_line`]: 64 KiB.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Limits of the MIME walk, the same for both passes (memory stays within them
/// whatever the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SevenBitOptions {
    /// The longest header section read to learn a part's type and encoding; a longer
    /// one is passed on unread, with its part's content, up to the next delimiter.
    /// Default [`DEFAULT_MAX_HEADER_SECTION`].
    pub max_header_section: usize,
    /// The most multiparts nested in one another; a deeper one is taken as a leaf
    /// (and its content passed on, as it holds delimiters). Default
    /// [`DEFAULT_MAX_DEPTH`].
    pub max_depth: usize,
    /// The most octets of one line held at a time; a longer line is handled in pieces
    /// of this size (at least 2). Default [`DEFAULT_MAX_LINE`].
    pub max_line: usize,
}

impl Default for SevenBitOptions {
    fn default() -> Self {
        SevenBitOptions {
            max_header_section: DEFAULT_MAX_HEADER_SECTION,
            max_depth: DEFAULT_MAX_DEPTH,
            max_line: DEFAULT_MAX_LINE,
        }
    }
}

/// Splits the input into lines, and lines over the limit into pieces.
#[derive(Debug, Clone)]
struct Lines {
    buf: Vec<u8>,
    line_start: bool,
    max_line: usize,
}

impl Lines {
    fn new(max_line: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            line_start: true,
            max_line: max_line.max(2),
        }
    }

    /// Hands `f` each line (with its line end) or piece of a long line, and whether it
    /// starts a line.
    fn feed(&mut self, mut chunk: &[u8], f: &mut impl FnMut(&[u8], bool)) {
        while !chunk.is_empty() {
            let (line, complete) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (chunk.get(..=i).unwrap_or_default(), true),
                None => (chunk, false),
            };
            chunk = chunk.get(line.len()..).unwrap_or_default();
            if complete && self.buf.is_empty() {
                f(line, self.line_start);
                self.line_start = true;
                continue;
            }
            self.buf.extend_from_slice(line);
            if complete {
                f(&self.buf, self.line_start);
                self.buf.clear();
                self.line_start = true;
            } else if self.buf.len() >= self.max_line {
                // A CR is held back: the LF that may follow makes it a line end.
                let keep = usize::from(self.buf.last() == Some(&b'\r'));
                let n = self.buf.len() - keep;
                f(self.buf.get(..n).unwrap_or_default(), self.line_start);
                self.buf.drain(..n);
                self.line_start = false;
            }
        }
    }

    fn finish(&mut self, f: &mut impl FnMut(&[u8], bool)) {
        if !self.buf.is_empty() {
            f(&self.buf, self.line_start);
            self.buf.clear();
        }
    }
}

/// One pass over a message: its lines, and the walk of its structure.
#[derive(Debug, Clone)]
struct Pass {
    lines: Lines,
    walker: Walker,
}

impl Pass {
    fn new(options: SevenBitOptions) -> Pass {
        Pass {
            lines: Lines::new(options.max_line),
            walker: Walker::new(options),
        }
    }

    fn feed(&mut self, chunk: &[u8], emit: &mut impl FnMut(Event<'_>)) {
        let Pass { lines, walker } = self;
        lines.feed(chunk, &mut |line, start| walker.line(line, start, emit));
    }

    fn finish(&mut self, emit: &mut impl FnMut(Event<'_>)) {
        let Pass { lines, walker } = self;
        lines.finish(&mut |line, start| walker.line(line, start, emit));
        walker.finish(emit);
    }
}

/// What the first pass learned of one leaf part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Leaf {
    /// Its content has an octet above 127.
    eight_bit: bool,
    /// Its content is valid UTF-8 (as far as each line goes).
    utf8: bool,
    /// Its `Content-Transfer-Encoding` is an identity one (absent, `7bit`, `8bit`,
    /// `binary`): its content may be re-encoded.
    convertible: bool,
    /// A line of its content is longer than [`MAX_TEXT_LINE`] octets.
    long_line: bool,
}

/// What a converter re-encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Every part that is 8-bit or has a long line: for a next hop without 8BITMIME.
    SevenBit,
    /// Only parts with a long line: for any next hop.
    LineLength,
}

impl Leaf {
    fn converts(&self, target: Target) -> bool {
        self.convertible
            && match target {
                Target::SevenBit => self.eight_bit || self.long_line,
                Target::LineLength => self.long_line,
            }
    }
}

/// The first pass: finds the 8-bit content of a message (see the
/// [module documentation](self)).
#[derive(Debug, Clone)]
pub struct MimeScan {
    pass: Pass,
    plan: SevenBitPlan,
}

impl MimeScan {
    /// A scan at the start of a message.
    pub fn new(options: SevenBitOptions) -> MimeScan {
        MimeScan {
            pass: Pass::new(options),
            plan: SevenBitPlan {
                options,
                leaves: Vec::new(),
                header_8bit: false,
                other_8bit: false,
                line: 0,
            },
        }
    }

    /// Reads the next chunk of the message.
    pub fn feed(&mut self, chunk: &[u8]) {
        let plan = &mut self.plan;
        self.pass.feed(chunk, &mut |e| plan.record(e));
    }

    /// The end of the message: what the second pass needs.
    pub fn finish(mut self) -> SevenBitPlan {
        let plan = &mut self.plan;
        self.pass.finish(&mut |e| plan.record(e));
        self.plan
    }
}

/// What [`MimeScan`] found: whether the message needs converting, and the second
/// pass's map of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevenBitPlan {
    options: SevenBitOptions,
    leaves: Vec<Leaf>,
    header_8bit: bool,
    other_8bit: bool,
    /// The scan's place: octets of the current leaf line so far.
    line: usize,
}

impl SevenBitPlan {
    /// Whether a part's content is 8-bit, or has a line longer than
    /// [`MAX_TEXT_LINE`] octets, and can be converted: for a next hop without
    /// 8BITMIME ([`SevenBitPlan::converter`]).
    pub fn needs_conversion(&self) -> bool {
        self.leaves.iter().any(|l| l.converts(Target::SevenBit))
    }

    /// Whether a part's content has a line longer than [`MAX_TEXT_LINE`] octets
    /// (RFC 5321 section 4.5.3.1.6) and can be converted: for any next hop
    /// ([`SevenBitPlan::line_converter`]), so that no line must be broken on the
    /// way (a break inserts a line end into the part's text).
    pub fn has_long_lines(&self) -> bool {
        self.leaves.iter().any(|l| l.converts(Target::LineLength))
    }

    /// Whether the converted message (or the message, when
    /// [`SevenBitPlan::needs_conversion`] is false) holds only 7-bit octets: nothing
    /// 8-bit was found that cannot be converted.
    pub fn is_seven_bit_after(&self) -> bool {
        !self.header_8bit
            && !self.other_8bit
            && self.leaves.iter().all(|l| !l.eight_bit || l.convertible)
    }

    /// Whether a header section holds an octet above 127 (passed on as it is).
    pub fn has_8bit_header(&self) -> bool {
        self.header_8bit
    }

    /// The second pass for a next hop without 8BITMIME, to run over the same
    /// message from its start: every part that is 8-bit or has a long line
    /// becomes quoted-printable.
    pub fn converter(&self) -> SevenBitConverter {
        self.second_pass(Target::SevenBit, self.needs_conversion())
    }

    /// The second pass for a next hop with 8BITMIME: only the parts with a line
    /// longer than [`MAX_TEXT_LINE`] octets become quoted-printable; 8-bit parts
    /// and their labels stay as they are.
    pub fn line_converter(&self) -> SevenBitConverter {
        self.second_pass(Target::LineLength, false)
    }

    fn second_pass(&self, target: Target, relabel: bool) -> SevenBitConverter {
        SevenBitConverter {
            pass: Pass::new(self.options),
            rewrite: Rewrite {
                leaves: self.leaves.clone(),
                qp: QuotedPrintable::default(),
                target,
                relabel,
            },
        }
    }

    fn record(&mut self, e: Event<'_>) {
        match e {
            Event::Header(h, entity) => {
                self.header_8bit |= !h.is_ascii();
                self.line = 0;
                if let Kind::Leaf(_) = entity.kind {
                    self.leaves.push(Leaf {
                        eight_bit: false,
                        utf8: true,
                        convertible: entity.convertible,
                        long_line: false,
                    });
                }
            }
            Event::Leaf {
                index,
                content,
                line_end,
                ..
            } => {
                let Some(l) = self.leaves.get_mut(index) else {
                    return;
                };
                if !content.is_ascii() {
                    l.eight_bit = true;
                    l.utf8 &= core::str::from_utf8(content).is_ok();
                }
                self.line = self.line.saturating_add(content.len());
                l.long_line |= self.line > MAX_TEXT_LINE;
                if line_end {
                    self.line = 0;
                }
            }
            Event::Other(o) => self.other_8bit |= !o.is_ascii(),
        }
    }
}

/// The second pass: the message with its 8-bit parts quoted-printable (see the
/// [module documentation](self)).
#[derive(Debug, Clone)]
pub struct SevenBitConverter {
    pass: Pass,
    rewrite: Rewrite,
}

impl SevenBitConverter {
    /// Converts the next chunk of the message, appending the result to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let SevenBitConverter { pass, rewrite } = self;
        pass.feed(chunk, &mut |e| rewrite.event(e, out));
    }

    /// The end of the message: appends what was held back to `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        let SevenBitConverter { pass, rewrite } = &mut self;
        pass.finish(&mut |e| rewrite.event(e, out));
    }
}

/// What the second pass does with each line: the parts to convert and the
/// encoder's place.
#[derive(Debug, Clone)]
struct Rewrite {
    leaves: Vec<Leaf>,
    qp: QuotedPrintable,
    target: Target,
    /// Composites labelled `8bit` or `binary` are labelled `7bit`: the message is
    /// made 7-bit.
    relabel: bool,
}

impl Rewrite {
    fn event(&mut self, e: Event<'_>, out: &mut Vec<u8>) {
        let target = self.target;
        match e {
            Event::Header(h, entity) => match entity.kind {
                Kind::Leaf(i) => match self.leaves.get(i) {
                    Some(leaf) if leaf.converts(target) => {
                        self.qp = QuotedPrintable::default();
                        rewrite_header(h, &entity, Some(leaf), out);
                    }
                    _ => out.extend_from_slice(h),
                },
                Kind::Composite
                    if self.relabel
                        && matches!(entity.encoding, Encoding::EightBit | Encoding::Binary) =>
                {
                    rewrite_header(h, &entity, None, out);
                }
                Kind::Composite => out.extend_from_slice(h),
            },
            Event::Leaf {
                index,
                raw,
                content,
                line_end,
            } => {
                if self.leaves.get(index).is_some_and(|l| l.converts(target)) {
                    self.qp.encode(content, line_end, out);
                } else {
                    out.extend_from_slice(raw);
                }
            }
            Event::Other(o) => out.extend_from_slice(o),
        }
    }
}

/// `section` without its `Content-Transfer-Encoding` fields, and with the fields a
/// converted leaf (`Some`) or a composite relabelled `7bit` (`None`) needs.
fn rewrite_header(section: &[u8], entity: &Entity, leaf: Option<&Leaf>, out: &mut Vec<u8>) {
    for field in fields(section) {
        let name = field
            .iter()
            .position(|&b| b == b':')
            .and_then(|i| field.get(..i))
            .unwrap_or_default();
        if !name
            .trim_ascii()
            .eq_ignore_ascii_case(b"content-transfer-encoding")
        {
            out.extend_from_slice(field);
        }
    }
    match leaf {
        Some(leaf) => {
            if entity.top && !entity.has_mime_version {
                out.extend_from_slice(b"MIME-Version: 1.0\r\n");
            }
            if !entity.has_content_type {
                out.extend_from_slice(if leaf.utf8 {
                    b"Content-Type: text/plain; charset=utf-8\r\n"
                } else {
                    b"Content-Type: text/plain; charset=unknown-8bit\r\n"
                });
            }
            out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n");
        }
        None => out.extend_from_slice(b"Content-Transfer-Encoding: 7bit\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;
    use proptest::prelude::*;

    fn plan(message: &[u8]) -> SevenBitPlan {
        let mut scan = MimeScan::new(SevenBitOptions::default());
        scan.feed(message);
        scan.finish()
    }

    fn convert(message: &[u8]) -> Vec<u8> {
        let mut conv = plan(message).converter();
        let mut out = Vec::new();
        conv.feed(message, &mut out);
        conv.finish(&mut out);
        out
    }

    #[test]
    fn a_multipart_with_one_8bit_part() {
        let m = "MIME-Version: 1.0\r\n\
                 Content-Type: multipart/mixed; boundary=b\r\n\
                 Content-Transfer-Encoding: 8bit\r\n\r\n\
                 --b\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\
                 Content-Transfer-Encoding: 8bit\r\n\r\n\
                 gr\u{fc}\u{df}e = hi \r\n\
                 --b\r\n\
                 Content-Type: text/plain\r\n\r\n\
                 plain = ascii\r\n\
                 --b--\r\n";
        let p = plan(m.as_bytes());
        assert!(p.needs_conversion() && p.is_seven_bit_after());
        let out = String::from_utf8(convert(m.as_bytes())).unwrap();
        assert_eq!(
            out,
            "MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=b\r\n\
             Content-Transfer-Encoding: 7bit\r\n\r\n\
             --b\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             gr=C3=BC=C3=9Fe =3D hi=20\r\n\
             --b\r\n\
             Content-Type: text/plain\r\n\r\n\
             plain = ascii\r\n\
             --b--\r\n"
        );
    }

    #[test]
    fn ascii_needs_nothing() {
        let p = plan(b"Subject: x\r\n\r\nhello\r\n");
        assert!(!p.needs_conversion() && p.is_seven_bit_after());
    }

    #[test]
    fn what_cannot_be_converted_is_reported() {
        let p = plan("Subject: caf\u{e9}\r\n\r\nhello\r\n".as_bytes());
        assert!(!p.needs_conversion() && !p.is_seven_bit_after() && p.has_8bit_header());
        let p = plan(b"Content-Transfer-Encoding: base64\r\n\r\n\xff\r\n");
        assert!(!p.needs_conversion() && !p.is_seven_bit_after());
        let p = plan(
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n\xe9\r\n--b\r\n\r\nx\r\n--b--\r\n",
        );
        assert!(!p.needs_conversion() && !p.is_seven_bit_after());
    }

    #[test]
    fn latin1_text_without_mime_fields_is_unknown_8bit() {
        let out = convert(b"Subject: x\r\n\r\ncaf\xe9\r\n");
        assert_eq!(
            out,
            b"Subject: x\r\nMIME-Version: 1.0\r\n\
              Content-Type: text/plain; charset=unknown-8bit\r\n\
              Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n"
        );
    }

    #[test]
    fn an_attached_message_is_converted_inside() {
        let m = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
                  Subject: inner\r\nContent-Transfer-Encoding:\r\n 8bit\r\n\r\n\xc3\xa9\r\n";
        assert_eq!(
            convert(m),
            b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
              Subject: inner\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9\r\n"
        );
    }

    #[test]
    fn a_long_8bit_line_converts_in_pieces() {
        let opts = SevenBitOptions {
            max_line: 10,
            ..SevenBitOptions::default()
        };
        let mut body = vec![0xe9u8; 50];
        body.extend_from_slice(b" \r\n");
        let m = [&b"Subject: x\r\n\r\n"[..], &body].concat();
        let mut scan = MimeScan::new(opts);
        scan.feed(&m);
        let mut conv = scan.finish().converter();
        let mut out = Vec::new();
        conv.feed(&m, &mut out);
        conv.finish(&mut out);
        assert!(out.is_ascii());
        let start = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let decoded = quoted_printable::tests::decode(&out[start..]);
        assert_eq!(decoded, body);
    }

    #[test]
    fn long_lines_are_converted_for_any_hop_and_8bit_parts_only_for_7bit_ones() {
        let long = "x".repeat(2000);
        let m = alloc::format!(
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/html\r\n\r\n{long}\r\n\
             --b\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\ncaf\u{e9}\r\n--b--\r\n"
        );
        let p = plan(m.as_bytes());
        assert!(p.has_long_lines() && p.needs_conversion());
        let mut conv = p.line_converter();
        let mut out = Vec::new();
        conv.feed(m.as_bytes(), &mut out);
        conv.finish(&mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        // The long line is soft-broken, the 8-bit part and its label kept.
        assert!(out.split(|&b| b == b'\n').all(|l| l.len() <= 998), "{text}");
        assert!(text.contains("Content-Transfer-Encoding: 8bit\r\n\r\ncaf\u{e9}\r\n"));
        assert_eq!(leaf_bodies(&out), leaf_bodies(m.as_bytes()));
        // For a 7-bit hop both are converted.
        let seven = convert(m.as_bytes());
        assert!(seven.is_ascii());
        assert_eq!(leaf_bodies(&seven), leaf_bodies(m.as_bytes()));
        // Short lines: nothing to do for an 8BITMIME hop.
        assert!(!plan("Subject: x\r\n\r\ncaf\u{e9}\r\n".as_bytes()).has_long_lines());
    }

    /// A soft break never makes a delimiter: the probe's lines that put
    /// `--abc` right where a break falls keep the multipart's two parts.
    #[test]
    fn soft_breaks_never_make_a_delimiter() {
        let m = alloc::format!(
            "Content-Type: multipart/mixed; boundary=\"abc\"\r\n\r\n\
             --abc\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
             {a}--abc\r\n{b}--abc--\r\n{c}\u{e9}--abc\r\n\
             --abc\r\n\r\nsecond\r\n--abc--\r\n",
            a = "a".repeat(75),
            b = "b".repeat(75),
            c = "c".repeat(74)
        );
        let out = convert(m.as_bytes());
        assert!(out.is_ascii());
        assert_eq!(leaf_bodies(&out), leaf_bodies(m.as_bytes()));
        assert_eq!(leaf_bodies(&out).len(), 2);
    }

    /// A multipart the walk does not enter (too deep, no boundary, one too
    /// long) is passed on as it is, never labelled quoted-printable (RFC 2045
    /// section 6.4; a probe's was unreadable), and the plan says 8-bit is left.
    #[test]
    fn a_multipart_not_entered_is_never_converted() {
        let long = "b".repeat(300);
        for head in [
            String::from("Content-Type: multipart/mixed\r\n"),
            String::from("Content-Type: multipart/mixed; boundary=\"\"\r\n"),
            alloc::format!("Content-Type: multipart/mixed; boundary={long}\r\n"),
        ] {
            let m = alloc::format!("{head}Content-Transfer-Encoding: 8bit\r\n\r\ncaf\u{e9}\r\n");
            let p = plan(m.as_bytes());
            assert!(!p.needs_conversion() && !p.is_seven_bit_after(), "{head}");
            assert_eq!(convert(m.as_bytes()), m.as_bytes());
        }
        // Too deep: the innermost multipart is passed on, the rest converted.
        let opts = SevenBitOptions {
            max_depth: 1,
            ..SevenBitOptions::default()
        };
        let m = "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\
                 Content-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\n\
                 caf\u{e9}\r\n--i--\r\n--o\r\n\r\nd\u{e9}j\u{e0}\r\n--o--\r\n";
        let mut scan = MimeScan::new(opts);
        scan.feed(m.as_bytes());
        let p = scan.finish();
        assert!(p.needs_conversion() && !p.is_seven_bit_after());
        let mut conv = p.converter();
        let mut out = Vec::new();
        conv.feed(m.as_bytes(), &mut out);
        conv.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("--i\r\n\r\ncaf\u{e9}\r\n--i--"), "{text}");
        assert!(text.contains("d=C3=A9j=C3=A0"), "{text}");
    }

    /// The bodies of the leaf parts of `message`, decoded when `qp` says so.
    fn leaf_bodies(message: &[u8]) -> Vec<Vec<u8>> {
        let mut w = Walker::new(SevenBitOptions::default());
        let mut bodies: Vec<(bool, Vec<u8>)> = Vec::new();
        let mut emit = |e: Event<'_>| match e {
            Event::Header(h, entity) => {
                if let Kind::Leaf(_) = entity.kind {
                    let qp = String::from_utf8_lossy(h).contains("quoted-printable");
                    bodies.push((qp, Vec::new()));
                }
            }
            Event::Leaf { index, raw, .. } => bodies[index].1.extend_from_slice(raw),
            Event::Other(_) => {}
        };
        for line in message.split_inclusive(|&b| b == b'\n') {
            w.line(line, true, &mut emit);
        }
        w.finish(&mut emit);
        bodies
            .into_iter()
            .map(|(qp, b)| {
                if qp {
                    quoted_printable::tests::decode(&b)
                } else {
                    b
                }
            })
            .collect()
    }

    /// A part: its transfer encoding field and its lines (no CR or LF inside).
    fn part() -> impl Strategy<Value = (Option<&'static str>, Vec<Vec<u8>>)> {
        (
            prop::sample::select(vec![None, Some("8bit"), Some("7bit"), Some(" BINARY ")]),
            prop::collection::vec(
                prop::collection::vec(
                    any::<u8>().prop_filter("no line end", |b| *b != b'\r' && *b != b'\n'),
                    0..1100,
                ),
                0..6,
            ),
        )
    }

    fn message(parts: &[(Option<&'static str>, Vec<Vec<u8>>)]) -> Vec<u8> {
        let mut m =
            b"Subject: t\r\nContent-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n".to_vec();
        for (cte, lines) in parts {
            m.extend_from_slice(b"--=_b\r\nContent-Type: text/plain\r\n");
            if let Some(c) = cte {
                m.extend_from_slice(
                    alloc::format!("Content-Transfer-Encoding: {c}\r\n").as_bytes(),
                );
            }
            m.extend_from_slice(b"\r\n");
            for l in lines {
                // A line that would read as a delimiter is not part content.
                if !l.starts_with(b"--=_b") {
                    m.extend_from_slice(l);
                    m.extend_from_slice(b"\r\n");
                }
            }
        }
        m.extend_from_slice(b"--=_b--\r\n");
        m
    }

    proptest! {
        /// Converted output is 7-bit, its parts decode to the original parts, and how
        /// the input is chunked changes nothing.
        #[test]
        fn converted_parts_decode_to_the_original(
            parts in prop::collection::vec(part(), 1..5),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let m = message(&parts);
            let mut scan = MimeScan::new(SevenBitOptions::default());
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(m.len() + 1)).collect();
            points.sort_unstable();
            let mut last = 0;
            for &p in &points {
                scan.feed(&m[last..p]);
                last = p;
            }
            scan.feed(&m[last..]);
            let plan = scan.finish();
            prop_assert!(plan.is_seven_bit_after());
            let mut conv = plan.converter();
            let mut out = Vec::new();
            let mut last = 0;
            for &p in &points {
                conv.feed(&m[last..p], &mut out);
                last = p;
            }
            conv.feed(&m[last..], &mut out);
            conv.finish(&mut out);
            prop_assert!(out.is_ascii());
            prop_assert_eq!(&out, &convert(&m));
            prop_assert_eq!(leaf_bodies(&out), leaf_bodies(&m));
            if !plan.needs_conversion() {
                prop_assert_eq!(out, m);
            }
        }
    }
}
