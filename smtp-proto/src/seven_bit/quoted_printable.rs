//! A streaming quoted-printable encoder (RFC 2045 section 6.7) for line-oriented
//! content: each input line end stays a hard line break (CRLF), and encoded lines are
//! kept to 76 characters with soft line breaks.

use alloc::vec::Vec;

/// The longest encoded line, soft-break `=` included (RFC 2045 section 6.7, rule 5).
const MAX_ENCODED_LINE: usize = 76;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// A streaming quoted-printable encoder (RFC 2045 section 6.7) for text: each line
/// end of the input is a hard line break (CRLF), encoded lines are at most 76
/// characters (soft line breaks `=CRLF`), `=` is always encoded, and no encoded line
/// starts with `-`, so no line of the output reads as a MIME boundary delimiter
/// (`--boundary`) whatever the text holds.
///
/// ```
/// use mailbag_smtp_proto::seven_bit::QuotedPrintable;
///
/// let mut qp = QuotedPrintable::new();
/// let mut out = Vec::new();
/// qp.encode("caf\u{e9} <b>".as_bytes(), true, &mut out);
/// qp.encode(b"--not-a-boundary", true, &mut out);
/// assert_eq!(out, b"caf=C3=A9 <b>\r\n=2D-not-a-boundary\r\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotedPrintable {
    column: usize,
}

impl QuotedPrintable {
    /// An encoder at the start of a line.
    pub fn new() -> Self {
        QuotedPrintable::default()
    }

    /// Encodes `content` (a piece of one line, without its line end) into `out`;
    /// `line_end`: the line ends after this piece (a CRLF follows in `out`). The last
    /// octet of a piece is encoded when it is a space or a tab, so that no encoded line
    /// ends in white space whether or not more of the line follows. A CR or LF inside
    /// `content` is encoded (`=0D`, `=0A`), not taken as a line end.
    pub fn encode(&mut self, content: &[u8], line_end: bool, out: &mut Vec<u8>) {
        for (i, &b) in content.iter().enumerate() {
            let last = i + 1 == content.len();
            let mut literal = match b {
                b'\t' | b' ' => !last,
                b'=' => false,
                33..=126 => true,
                _ => false,
            };
            let mut width = if literal { 1 } else { 3 };
            // Room for the token and, unless it ends the line here, a soft break's `=`.
            let fits_as_last = last && line_end && self.column + width <= MAX_ENCODED_LINE;
            if self.column + width >= MAX_ENCODED_LINE && !fits_as_last {
                out.extend_from_slice(b"=\r\n");
                self.column = 0;
            }
            // No encoded line starts with `-`: a soft break must never make a line
            // that reads as a MIME delimiter (`--boundary`), which would let a
            // sender's text cut the multipart (a probe's injection).
            if b == b'-' && self.column == 0 {
                literal = false;
                width = 3;
            }
            if literal {
                out.push(b);
            } else {
                out.push(b'=');
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0f)]);
            }
            self.column += width;
        }
        if line_end {
            out.extend_from_slice(b"\r\n");
            self.column = 0;
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    /// Decodes quoted-printable text (for the tests): soft breaks removed, `=XX`
    /// decoded, hard line breaks kept.
    pub(crate) fn decode(qp: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(&b) = qp.get(i) {
            if b == b'=' {
                if qp.get(i + 1..i + 3) == Some(b"\r\n") {
                    i += 3;
                    continue;
                }
                let hex = qp.get(i + 1..i + 3).expect("two hex digits");
                let s = core::str::from_utf8(hex).expect("hex");
                out.push(u8::from_str_radix(s, 16).expect("hex"));
                i += 3;
            } else {
                out.push(b);
                i += 1;
            }
        }
        out
    }

    fn encode_lines(lines: &[&[u8]]) -> Vec<u8> {
        let mut qp = QuotedPrintable::default();
        let mut out = Vec::new();
        for l in lines {
            qp.encode(l, true, &mut out);
        }
        out
    }

    #[test]
    fn eight_bit_and_equals_are_encoded() {
        assert_eq!(
            encode_lines(&["caf\u{e9} = ok".as_bytes()]),
            b"caf=C3=A9 =3D ok\r\n"
        );
    }

    #[test]
    fn trailing_white_space_is_encoded() {
        assert_eq!(encode_lines(&[b"a \t", b" "]), b"a =09\r\n=20\r\n");
    }

    #[test]
    fn long_lines_get_soft_breaks_within_76_characters() {
        let line = vec![b'x'; 200];
        let out = encode_lines(&[&line]);
        for l in out.split(|&b| b == b'\n') {
            assert!(l.len() <= MAX_ENCODED_LINE + 1, "{}", l.len());
        }
        assert_eq!(decode(&out), [&line[..], b"\r\n"].concat());
        // A line of exactly 76 literal characters needs no soft break.
        let line = vec![b'y'; 76];
        assert_eq!(encode_lines(&[&line]), [&line[..], b"\r\n"].concat());
        // Encoded octets are never split by a soft break.
        let line = vec![0xe9u8; 30];
        let out = encode_lines(&[&line]);
        assert!(out.split(|&b| b == b'\n').all(|l| l.len() <= 77));
        assert_eq!(decode(&out), [&line[..], b"\r\n"].concat());
    }

    #[test]
    fn no_encoded_line_starts_with_a_dash() {
        for prefix in [74usize, 75, 76, 0] {
            let line = [vec![b'a'; prefix], b"--abc--".to_vec()].concat();
            let out = encode_lines(&[&line]);
            assert!(
                out.split(|&b| b == b'\n').all(|l| !l.starts_with(b"-")),
                "{}",
                String::from_utf8_lossy(&out)
            );
            assert_eq!(decode(&out), [&line[..], b"\r\n"].concat());
        }
    }

    #[test]
    fn a_line_in_pieces_encodes_as_it_decodes() {
        let mut qp = QuotedPrintable::default();
        let mut out = Vec::new();
        qp.encode(b"one ", false, &mut out);
        qp.encode(b"two\xff", false, &mut out);
        qp.encode(b"", true, &mut out);
        assert_eq!(decode(&out), b"one two\xff\r\n");
        assert!(!out.windows(3).any(|w| w == b" \r\n"));
    }
}
