//! The MIME structure of a message, line by line (RFC 2045, RFC 2046): which header
//! section, leaf body or delimiter each line belongs to. Both passes of the 7-bit
//! conversion walk a message with it and so number its leaf parts alike.

use alloc::vec::Vec;

use super::SevenBitOptions;

/// The longest boundary followed. RFC 2046 section 5.1.1 allows 70 characters, but
/// longer ones are common and readers (Python's email package among them) take
/// them; a multipart with a longer one is passed on as it is, never converted.
const MAX_BOUNDARY: usize = 256;

/// A `Content-Transfer-Encoding` (RFC 2045 section 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    /// No field.
    Absent,
    /// `7bit`.
    SevenBit,
    /// `8bit`.
    EightBit,
    /// `binary`.
    Binary,
    /// `quoted-printable`, `base64` or an unknown name: content that is not line text.
    Encoded,
}

impl Encoding {
    /// Whether content so labelled may be re-encoded as quoted-printable.
    pub(super) fn is_identity(self) -> bool {
        !matches!(self, Encoding::Encoded)
    }
}

/// What an entity is, from its header section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A leaf part (or a whole message that is no multipart), numbered in order.
    Leaf(usize),
    /// `multipart/*` or `message/rfc822`: its content is more entities.
    Composite,
}

/// One entity's header section as the walker understood it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entity {
    pub(super) kind: Kind,
    pub(super) encoding: Encoding,
    /// The section has a `Content-Type` field.
    pub(super) has_content_type: bool,
    /// The section has a `MIME-Version` field.
    pub(super) has_mime_version: bool,
    /// The message's own header section (not a part's).
    pub(super) top: bool,
    /// For a leaf: its content may be re-encoded. Not for one labelled `base64`
    /// or `quoted-printable`, nor for a multipart the walker does not enter (too
    /// deep, no usable boundary) or a `message/*` other than `rfc822` and
    /// `global`: RFC 2045 section 6.4 allows a composite only `7bit`, `8bit` or
    /// `binary` (a probe's converted multipart was unreadable).
    pub(super) convertible: bool,
}

/// What one line (or piece of a long line) is.
#[derive(Debug)]
pub(super) enum Event<'a> {
    /// A whole header section, its empty line included, and what it says.
    Header(&'a [u8], Entity),
    /// A piece of a leaf body line: as it came (`raw`), its content without the line
    /// end, and whether the line ends after it.
    Leaf {
        index: usize,
        raw: &'a [u8],
        content: &'a [u8],
        line_end: bool,
    },
    /// Anything else, to be passed on as it is: delimiter lines, preambles and
    /// epilogues, a header section too large to read, a header section that a
    /// delimiter cut short.
    Other(&'a [u8]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Boundary {
    value: Vec<u8>,
    /// `multipart/digest`: its parts are `message/rfc822` by default.
    digest: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading a header section; `digest`: the default type is `message/rfc822`.
    Header {
        top: bool,
        digest: bool,
    },
    /// A header section over the limit: passed on until the next delimiter.
    Opaque,
    Leaf(usize),
    /// A multipart's preamble or epilogue, or content after a malformed structure.
    Between,
}

/// The walker: feed it lines with [`Walker::line`], it names each.
#[derive(Debug, Clone)]
pub(super) struct Walker {
    options: SevenBitOptions,
    boundaries: Vec<Boundary>,
    state: State,
    header: Vec<u8>,
    leaves: usize,
}

impl Walker {
    pub(super) fn new(options: SevenBitOptions) -> Walker {
        Walker {
            options,
            boundaries: Vec::new(),
            state: State::Header {
                top: true,
                digest: false,
            },
            header: Vec::new(),
            leaves: 0,
        }
    }

    /// Takes the next piece of input: a whole line with its line end, or (`line_start`
    /// false for all but the first) a piece of a line longer than the line limit, or
    /// the last octets of the message without a line end.
    pub(super) fn line(&mut self, line: &[u8], line_start: bool, emit: &mut impl FnMut(Event<'_>)) {
        if line_start && self.delimiter(line, emit) {
            return;
        }
        match self.state {
            State::Header { top, digest } => {
                let blank = line_start && (line == b"\r\n" || line == b"\n");
                if !blank && self.header.len() + line.len() > self.options.max_header_section {
                    emit(Event::Other(&self.header));
                    emit(Event::Other(line));
                    self.header.clear();
                    self.state = State::Opaque;
                    return;
                }
                self.header.extend_from_slice(line);
                if blank {
                    let entity = self.entity(top, digest);
                    emit(Event::Header(&self.header, entity));
                    self.header.clear();
                }
            }
            State::Leaf(index) => {
                let (content, line_end) = match line.strip_suffix(b"\n") {
                    Some(c) => (c.strip_suffix(b"\r").unwrap_or(c), true),
                    None => (line, false),
                };
                emit(Event::Leaf {
                    index,
                    raw: line,
                    content,
                    line_end,
                });
            }
            State::Opaque | State::Between => emit(Event::Other(line)),
        }
    }

    /// The end of the message: a header section never ended is passed on as it is.
    pub(super) fn finish(&mut self, emit: &mut impl FnMut(Event<'_>)) {
        if !self.header.is_empty() {
            emit(Event::Other(&self.header));
            self.header.clear();
        }
    }

    /// Handles `line` if it is a delimiter of an enclosing multipart.
    fn delimiter(&mut self, line: &[u8], emit: &mut impl FnMut(Event<'_>)) -> bool {
        let Some(rest) = line.strip_prefix(b"--") else {
            return false;
        };
        let Some((level, close)) = self.boundaries.iter().enumerate().rev().find_map(|(i, b)| {
            let after = rest.strip_prefix(b.value.as_slice())?;
            let (close, after) = match after.strip_prefix(b"--") {
                Some(a) => (true, a),
                None => (false, after),
            };
            after
                .iter()
                .all(|&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
                .then_some((i, close))
        }) else {
            return false;
        };
        if !self.header.is_empty() {
            emit(Event::Other(&self.header));
            self.header.clear();
        }
        emit(Event::Other(line));
        if close {
            self.boundaries.truncate(level);
            self.state = State::Between;
        } else {
            self.boundaries.truncate(level + 1);
            let digest = self.boundaries.get(level).is_some_and(|b| b.digest);
            self.state = State::Header { top: false, digest };
        }
        true
    }

    /// Reads the header section just ended and moves to what follows it.
    fn entity(&mut self, top: bool, digest: bool) -> Entity {
        let fields = Fields::read(&self.header);
        let mut entity = Entity {
            kind: Kind::Composite,
            encoding: fields.encoding,
            has_content_type: fields.content_type.is_some(),
            has_mime_version: fields.mime_version,
            top,
            convertible: false,
        };
        let (ty, sub, boundary) = match &fields.content_type {
            Some(ct) => (ct.ty.as_slice(), ct.subtype.as_slice(), ct.boundary.clone()),
            None if digest => (&b"message"[..], &b"rfc822"[..], None),
            None => (&b"text"[..], &b"plain"[..], None),
        };
        let depth_left = self.boundaries.len() < self.options.max_depth;
        if ty == b"multipart" && entity.encoding.is_identity() && depth_left {
            if let Some(value) = boundary.filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY) {
                self.boundaries.push(Boundary {
                    value,
                    digest: sub == b"digest",
                });
                self.state = State::Between;
                return entity;
            }
        }
        if ty == b"message" && sub == b"rfc822" && entity.encoding.is_identity() {
            self.state = State::Header {
                top: false,
                digest: false,
            };
            return entity;
        }
        entity.convertible = entity.encoding.is_identity()
            && ty != b"multipart"
            && (ty != b"message" || sub == b"rfc822" || sub == b"global");
        entity.kind = Kind::Leaf(self.leaves);
        self.state = State::Leaf(self.leaves);
        self.leaves += 1;
        entity
    }
}

/// `Content-Type: type/subtype; boundary=...`, names lower-cased.
#[derive(Debug, Default)]
struct ContentType {
    ty: Vec<u8>,
    subtype: Vec<u8>,
    boundary: Option<Vec<u8>>,
}

/// The fields of a header section that the structure depends on.
#[derive(Debug)]
struct Fields {
    content_type: Option<ContentType>,
    encoding: Encoding,
    mime_version: bool,
}

impl Fields {
    fn read(section: &[u8]) -> Fields {
        let mut f = Fields {
            content_type: None,
            encoding: Encoding::Absent,
            mime_version: false,
        };
        for field in fields(section) {
            let Some(colon) = field.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = field.split_at(colon);
            let value = value.get(1..).unwrap_or_default();
            let name = trim(name);
            if name.eq_ignore_ascii_case(b"content-type") && f.content_type.is_none() {
                f.content_type = Some(content_type(value));
            } else if name.eq_ignore_ascii_case(b"content-transfer-encoding")
                && f.encoding == Encoding::Absent
            {
                let v = trim(strip_comments(value).as_slice()).to_ascii_lowercase();
                f.encoding = match v.as_slice() {
                    b"7bit" => Encoding::SevenBit,
                    b"8bit" => Encoding::EightBit,
                    b"binary" => Encoding::Binary,
                    _ => Encoding::Encoded,
                };
            } else if name.eq_ignore_ascii_case(b"mime-version") {
                f.mime_version = true;
            }
        }
        f
    }
}

/// The fields of a header section, each with its continuation lines.
pub(super) fn fields(section: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = section;
    core::iter::from_fn(move || {
        if rest.is_empty() || rest == b"\r\n" || rest == b"\n" {
            return None;
        }
        let mut end = 0;
        loop {
            let next = match memchr::memchr(b'\n', rest.get(end..).unwrap_or_default()) {
                Some(i) => end + i + 1,
                None => rest.len(),
            };
            end = next;
            if !matches!(rest.get(end), Some(b' ' | b'\t')) {
                break;
            }
        }
        let (field, tail) = rest.split_at(end.min(rest.len()));
        rest = tail;
        Some(field)
    })
}

fn trim(s: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = s.iter().position(|b| !is_space(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// The value with RFC 5322 comments left out (quoted strings kept as they are).
fn strip_comments(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for &b in value {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(b);
            }
            continue;
        }
        match b {
            b'\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    out.push(b);
                }
            }
            b'"' if depth == 0 => {
                quoted = !quoted;
                out.push(b);
            }
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(b),
            _ => {}
        }
    }
    out
}

fn content_type(value: &[u8]) -> ContentType {
    let value = strip_comments(value);
    let mut parts = split_params(&value).into_iter();
    let mut ct = ContentType::default();
    let media = parts.next().unwrap_or_default();
    if let Some(slash) = media.iter().position(|&b| b == b'/') {
        let (ty, sub) = media.split_at(slash);
        ct.ty = trim(ty).to_ascii_lowercase();
        ct.subtype = trim(sub.get(1..).unwrap_or_default()).to_ascii_lowercase();
    }
    // RFC 2231 sections 3 and 4: `boundary*0`, `boundary*1*`, ... in pieces, and a
    // `*` piece percent-encoded after `charset'language'`.
    let mut pieces: Vec<(u32, Vec<u8>)> = Vec::new();
    for p in parts {
        let Some(eq) = p.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, v) = p.split_at(eq);
        let name = trim(name).to_ascii_lowercase();
        let v = trim(v.get(1..).unwrap_or_default());
        let Some(rest) = name.strip_prefix(b"boundary") else {
            continue;
        };
        match rest {
            // The first one counts (a second is a forgery's favourite).
            b"" if ct.boundary.is_none() => ct.boundary = Some(unquote(v)),
            b"*" if ct.boundary.is_none() => ct.boundary = Some(extended(v, true)),
            _ => {
                let Some(section) = rest.strip_prefix(b"*") else {
                    continue;
                };
                let (number, encoded) = match section.strip_suffix(b"*") {
                    Some(n) => (n, true),
                    None => (section, false),
                };
                let Some(n) = core::str::from_utf8(number)
                    .ok()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                let value = if encoded {
                    extended(v, n == 0)
                } else {
                    unquote(v)
                };
                pieces.push((n, value));
            }
        }
    }
    if ct.boundary.is_none() && !pieces.is_empty() {
        pieces.sort_by_key(|(n, _)| *n);
        let in_order = pieces
            .iter()
            .enumerate()
            .all(|(i, (n, _))| *n as usize == i);
        if in_order {
            ct.boundary = Some(pieces.into_iter().flat_map(|(_, v)| v).collect());
        }
    }
    ct
}

/// An RFC 2231 extended value: percent-decoded, after `charset'language'` when
/// `first`.
fn extended(v: &[u8], first: bool) -> Vec<u8> {
    let v = unquote(v);
    let mut text = v.as_slice();
    if first {
        let mut quotes = text.iter().enumerate().filter(|(_, b)| **b == b'\'');
        if let (Some(_), Some((second, _))) = (quotes.next(), quotes.next()) {
            text = text.get(second + 1..).unwrap_or_default();
        }
    }
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        let hex = text
            .get(i + 1..i + 3)
            .and_then(|h| core::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Splits at `;` outside quoted strings.
fn split_params(value: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in value.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' && quoted {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == b';' && !quoted {
            out.push(value.get(start..i).unwrap_or_default());
            start = i + 1;
        }
    }
    out.push(value.get(start..).unwrap_or_default());
    out
}

fn unquote(v: &[u8]) -> Vec<u8> {
    let Some(inner) = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")) else {
        return v.to_vec();
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if !escaped && b == b'\\' {
            escaped = true;
        } else {
            escaped = false;
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    /// The events of `message`, one line at a time, in a readable form.
    fn walk(message: &str) -> Vec<String> {
        let mut w = Walker::new(SevenBitOptions::default());
        let mut out = Vec::new();
        let mut emit = |e: Event<'_>| {
            out.push(match e {
                Event::Header(h, e) => {
                    alloc::format!("H{:?} {} lines", e.kind, fields(h).count())
                }
                Event::Leaf { index, content, .. } => {
                    alloc::format!("L{index} {}", String::from_utf8_lossy(content))
                }
                Event::Other(o) => alloc::format!("O {}", String::from_utf8_lossy(o).trim_end()),
            })
        };
        for line in message.split_inclusive('\n') {
            w.line(line.as_bytes(), true, &mut emit);
        }
        w.finish(&mut emit);
        out
    }

    #[test]
    fn nested_multiparts_and_a_message_part() {
        let m = "Content-Type: multipart/mixed; boundary=\"outer b\"\r\n\r\n\
                 preamble\r\n\
                 --outer b\r\n\
                 \r\n\
                 one\r\n\
                 --outer b\r\n\
                 Content-Type: multipart/alternative;\r\n boundary=inner\r\n\r\n\
                 --inner\r\n\
                 Content-Type: text/html\r\n\r\n\
                 two\r\n\
                 --outer b  \r\n\
                 Content-Type: message/rfc822\r\n\r\n\
                 Subject: x\r\n\r\n\
                 three\r\n\
                 --outer b--\r\n\
                 epilogue\r\n";
        assert_eq!(
            walk(m),
            vec![
                "HComposite 1 lines",
                "O preamble",
                "O --outer b",
                "HLeaf(0) 0 lines",
                "L0 one",
                "O --outer b",
                "HComposite 1 lines",
                "O --inner",
                "HLeaf(1) 1 lines",
                "L1 two",
                "O --outer b",
                "HComposite 1 lines",
                "HLeaf(2) 1 lines",
                "L2 three",
                "O --outer b--",
                "O epilogue",
            ]
        );
    }

    #[test]
    fn a_plain_message_is_one_leaf() {
        assert_eq!(
            walk("Subject: hi\r\n\r\n--not a boundary\r\nbody"),
            vec!["HLeaf(0) 1 lines", "L0 --not a boundary", "L0 body"]
        );
    }

    #[test]
    fn digest_parts_default_to_messages() {
        let m = "Content-Type: multipart/digest; boundary=d\r\n\r\n\
                 --d\r\n\r\nSubject: a\r\n\r\nbody\r\n--d--\r\n";
        assert_eq!(
            walk(m),
            vec![
                "HComposite 1 lines",
                "O --d",
                "HComposite 0 lines",
                "HLeaf(0) 1 lines",
                "L0 body",
                "O --d--",
            ]
        );
    }

    #[test]
    fn encoded_composites_and_missing_boundaries_are_leaves() {
        assert_eq!(
            walk("Content-Type: multipart/mixed\r\n\r\nx\r\n"),
            vec!["HLeaf(0) 1 lines", "L0 x"]
        );
        assert_eq!(
            walk(
                "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64 (odd)\r\n\r\nx\r\n"
            ),
            vec!["HLeaf(0) 2 lines", "L0 x"]
        );
    }

    #[test]
    fn a_header_section_cut_by_a_delimiter_is_passed_on() {
        let m = "Content-Type: multipart/mixed; boundary=b\r\n\r\n\
                 --b\r\nContent-Type: text/plain\r\n--b--\r\n";
        assert_eq!(
            walk(m),
            vec![
                "HComposite 1 lines",
                "O --b",
                "O Content-Type: text/plain",
                "O --b--",
            ]
        );
    }

    #[test]
    fn a_header_section_over_the_limit_is_passed_on() {
        let opts = SevenBitOptions {
            max_header_section: 30,
            ..SevenBitOptions::default()
        };
        let mut w = Walker::new(opts);
        let mut events = 0;
        let mut leaves = 0;
        let mut emit = |e: Event<'_>| {
            events += 1;
            if matches!(e, Event::Leaf { .. } | Event::Header(..)) {
                leaves += 1;
            }
        };
        for line in [
            "Subject: 0123456789\r\n",
            "X-Long: 0123456789\r\n",
            "\r\n",
            "b\r\n",
        ] {
            w.line(line.as_bytes(), true, &mut emit);
        }
        assert_eq!((events, leaves), (4, 0));
    }

    #[test]
    fn content_type_parameters() {
        let ct = content_type(b" Multipart/Mixed (c); charset=x;\r\n boundary=\"a;\\\"b\"");
        assert_eq!(ct.ty, b"multipart");
        assert_eq!(ct.subtype, b"mixed");
        assert_eq!(ct.boundary.as_deref(), Some(&b"a;\"b"[..]));
        // RFC 2231 pieces and encoding; the first of two plain ones.
        let ct = content_type(b"multipart/mixed; boundary*0=\"ab\"; boundary*1=\"cd\"");
        assert_eq!(ct.boundary.as_deref(), Some(&b"abcd"[..]));
        let ct = content_type(b"multipart/mixed; boundary*=us-ascii''ab%63d");
        assert_eq!(ct.boundary.as_deref(), Some(&b"abcd"[..]));
        let ct = content_type(b"multipart/mixed; boundary*1*=%64; boundary*0*=''ab%63");
        assert_eq!(ct.boundary.as_deref(), Some(&b"abcd"[..]));
        let ct = content_type(b"multipart/mixed; boundary=one; boundary=two");
        assert_eq!(ct.boundary.as_deref(), Some(&b"one"[..]));
    }
}
