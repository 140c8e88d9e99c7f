//! RFC 2047 encoded words (`=?charset?Q?text?=`, `=?charset?B?text?=`): decoding a
//! header field value for display.
//!
//! # What is decoded
//!
//! - `=?charset[*language]?E?encoded-text?=` with the encoding `E` being `Q` or `B` in
//!   either case; an RFC 2231 language suffix (`*en`) is ignored.
//! - `Q`: `_` is a space, `=XX` one octet (hex digits in either case), any other printable
//!   character itself. A `=` not followed by two hex digits makes the word malformed.
//! - `B`: standard base64, padding optional (`SGk` and `SGk=` both give `Hi`); any other
//!   character makes the word malformed.
//! - Every charset that [`encoding_rs`] knows by a WHATWG label
//!   ([`Encoding::for_label_no_replacement`]): UTF-8, ISO-8859-x, windows-125x, KOI8-R,
//!   Shift_JIS, EUC-JP, ISO-2022-JP, GBK, gb18030, Big5, EUC-KR, UTF-16, .... As in
//!   browsers, `ISO-8859-1` and `US-ASCII` are read as windows-1252. Invalid octets become
//!   U+FFFD. Adjacent words in the same charset are decoded as one stream, so a character
//!   split across two words (which RFC 2047 forbids, but mailers do) comes out whole.
//! - Linear white space (blanks, CR, LF) between two adjacent encoded words is dropped
//!   (RFC 2047 §6.2); elsewhere it is kept as written.
//!
//! A word with an unknown charset (or one the WHATWG maps to the "replacement"
//! encoding, such as ISO-2022-KR), a malformed word, and a word longer than
//! [`MAX_READ_WORD_LEN`] octets are kept literally. Words longer than RFC 2047's
//! [`MAX_WORD_LEN`] are decoded, as mail readers do: mailers write them (Python's
//! `email` package, 76 octets). Encoded words are recognised anywhere,
//! also when not delimited by white space (e.g. inside a comment's parentheses), as most
//! mail readers do. Text outside encoded words is read as UTF-8 (RFC 6532); a run of it
//! that is not UTF-8 (8-bit Latin-1 from an older mailer) is read as windows-1252, as
//! mail readers do. Control characters are passed through: a caller that displays
//! the text must deal with them (as [`crate::Summary`] does).
//!
//! # Cost
//!
//! Linear in the input: the end of an encoded word (`?=`) is looked for only within
//! [`MAX_READ_WORD_LEN`] octets of its start, and each look ends at the next `?`, which
//! any later word start holds; decoding stops once the output reaches the caller's bound
//! (`max_len` octets of UTF-8).
//!
//! # Examples
//!
//! ```
//! use mailbag_spam_tag::rfc2047::{decode, DEFAULT_MAX_LEN};
//!
//! assert_eq!(decode(b"=?UTF-8?Q?J=C3=B6rg?= <j@example.org>", DEFAULT_MAX_LEN), "Jörg <j@example.org>");
//! assert_eq!(decode(b"=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=", DEFAULT_MAX_LEN), "a b");
//! assert_eq!(decode(b"=?Shift_JIS?B?g2WDWINn?=", DEFAULT_MAX_LEN), "テスト");
//! assert_eq!(decode(b"=?x-unknown?Q?a?=", DEFAULT_MAX_LEN), "=?x-unknown?Q?a?=");
//! assert_eq!(decode(b"=?UTF-8?Q?=C3=A9=C3=A9?=", 3), "é");
//! ```

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use encoding_rs::{CoderResult, Decoder, Encoding};

/// The longest encoded word, in octets, including `=?` and `?=` (RFC 2047 §2): what
/// this crate writes.
pub const MAX_WORD_LEN: usize = 75;

/// The longest encoded word read, in octets: a line's 998 (RFC 5322 §2.1.1; a word
/// holds no white space, so it cannot be folded). A longer one is kept literally.
pub const MAX_READ_WORD_LEN: usize = 998;

/// A default output bound for [`decode`], in octets: 4 KiB, far more than any field a
/// person reads, small enough that a hostile field costs nothing.
pub const DEFAULT_MAX_LEN: usize = 4096;

/// Base64 as encoded words use it, tolerant of missing padding and non-zero trailing bits.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes the encoded words in a header field value (unfolded or not) into at most
/// `max_len` octets of UTF-8 (cut at a character boundary). See the [module
/// documentation](self) for the rules.
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::rfc2047::decode;
///
/// let subject = b"=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n \
///                 =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=";
/// assert_eq!(decode(subject, 1000), "If you can read this you understand the example.");
/// assert_eq!(decode(b"=?utf-8?q?caf=C3=A9_au_lait?=", 4), "caf");
/// ```
pub fn decode(value: &[u8], max_len: usize) -> String {
    let mut out = String::new();
    decode_to(value, max_len, &mut out);
    out
}

/// Like [`decode`], but appends at most `max_len` octets to `out` and tells whether the
/// whole value was decoded (`false`: decoding stopped at the bound).
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::rfc2047::decode_to;
///
/// let mut out = String::from("Subject: ");
/// assert!(decode_to(b"=?UTF-8?B?SGk=?= there", 100, &mut out));
/// assert_eq!(out, "Subject: Hi there");
///
/// let mut out = String::new();
/// assert!(!decode_to(b"=?UTF-8?B?SGk=?= there", 4, &mut out));
/// assert_eq!(out, "Hi t");
/// // No limit: `usize::MAX`, after text already in `out`.
/// let mut out = String::from("> ");
/// assert!(decode_to(b"=?UTF-8?B?SGk=?=", usize::MAX, &mut out));
/// assert_eq!(out, "> Hi");
/// ```
pub fn decode_to(value: &[u8], max_len: usize, out: &mut String) -> bool {
    let mut out = Bounded {
        start: out.len(),
        max: max_len,
        full: false,
        s: out,
    };
    // The decoder of the last encoded word, kept open while only white space follows.
    let mut run: Option<Run> = None;
    // Literal text not written yet starts at `lit`; `=?` is looked for from `search`.
    let mut lit = 0;
    let mut search = 0;
    // The end of the white space run at `lit`.
    let mut lws_end = 0;
    while !out.full {
        let Some(p) = memchr::memmem::find(&value[search..], b"=?").map(|p| search + p) else {
            break;
        };
        let adjacent = run.is_some() && lws_end >= p;
        if !adjacent && p - lit > out.room().saturating_add(4) {
            // The pending literal text alone fills the output.
            break;
        }
        let Some(word) = parse_word(&value[p..]) else {
            search = p + 2;
            continue;
        };
        let gap = &value[lit..p];
        if !adjacent {
            flush(&mut run, &mut out);
            out.push_lossy(gap);
        }
        match &mut run {
            Some(r) if r.encoding == word.encoding => {}
            _ => {
                flush(&mut run, &mut out);
                run = Some(Run {
                    encoding: word.encoding,
                    decoder: word.encoding.new_decoder_without_bom_handling(),
                });
            }
        }
        if let Some(r) = &mut run {
            out.feed(&mut r.decoder, &word.octets, false);
        }
        lit = p + word.len;
        search = lit;
        lws_end = lit + value[lit..].iter().take_while(|&&b| is_lws(b)).count();
    }
    flush(&mut run, &mut out);
    out.push_lossy(&value[lit..]);
    !out.full
}

/// An open run of adjacent encoded words in one charset.
struct Run {
    encoding: &'static Encoding,
    decoder: Decoder,
}

/// Ends a run: a character left incomplete becomes U+FFFD.
fn flush(run: &mut Option<Run>, out: &mut Bounded<'_>) {
    if let Some(mut r) = run.take() {
        out.feed(&mut r.decoder, &[], true);
    }
}

/// The output, cut at `max` octets past `start`.
struct Bounded<'a> {
    s: &'a mut String,
    start: usize,
    max: usize,
    full: bool,
}

impl Bounded<'_> {
    fn room(&self) -> usize {
        self.max - (self.s.len() - self.start)
    }

    /// Cuts the output back to the bound (at a character boundary) if it went past it.
    fn clamp(&mut self) {
        let limit = self.start.saturating_add(self.max);
        if self.s.len() > limit {
            let mut cut = limit;
            while !self.s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.s.truncate(cut);
            self.full = true;
        }
    }

    /// Appends literal octets, read as UTF-8, or as windows-1252 when they
    /// are not UTF-8.
    fn push_lossy(&mut self, bytes: &[u8]) {
        if self.full || bytes.is_empty() {
            return;
        }
        // Each octet gives at least one octet of output, and a character cut short at the
        // end (at most 3 octets) only affects output past the bound.
        let take = bytes.len().min(self.room().saturating_add(4));
        if std::str::from_utf8(bytes).is_ok() {
            self.s.push_str(&String::from_utf8_lossy(&bytes[..take]));
        } else {
            // 8-bit text from a mailer older than RFC 6532 (Latin-1 in practice), as
            // mail readers take it; windows-1252 maps every octet.
            let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&bytes[..take]);
            self.s.push_str(&text);
        }
        self.clamp();
        if take < bytes.len() {
            self.full = true;
        }
    }

    /// Decodes `bytes` with `decoder` onto the output.
    fn feed(&mut self, decoder: &mut Decoder, mut bytes: &[u8], last: bool) {
        if self.full {
            return;
        }
        loop {
            let need = decoder
                .max_utf8_buffer_length(bytes.len())
                .unwrap_or(bytes.len());
            self.s.reserve(need.max(4));
            let (result, read, _) = decoder.decode_to_string(bytes, self.s, last);
            bytes = &bytes[read..];
            if result == CoderResult::InputEmpty {
                break;
            }
        }
        self.clamp();
    }
}

/// One well-formed encoded word with a known charset.
struct Word {
    /// Its length in the input, `=?` to `?=`.
    len: usize,
    encoding: &'static Encoding,
    /// The octets it encodes, in `encoding`.
    octets: Vec<u8>,
}

/// Reads the encoded word at the start of `s` (which starts with `=?`), looking at most
/// [`MAX_READ_WORD_LEN`] octets ahead.
fn parse_word(s: &[u8]) -> Option<Word> {
    let w = &s[..s.len().min(MAX_READ_WORD_LEN)];
    let q1 = 2 + memchr::memchr(b'?', &w[2..])?;
    let spec = &w[2..q1];
    let kind = *w.get(q1 + 1)?;
    if w.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let q3 = text_start + memchr::memchr(b'?', w.get(text_start..)?)?;
    if w.get(q3 + 1) != Some(&b'=') {
        return None;
    }
    let text = &w[text_start..q3];
    if !spec.iter().chain(text).all(|b| b.is_ascii_graphic()) {
        return None;
    }
    // RFC 2231 §5: `charset*language`.
    let charset = spec.split(|&b| b == b'*').next().unwrap_or_default();
    if charset.is_empty() {
        return None;
    }
    let encoding = Encoding::for_label_no_replacement(charset)?;
    let octets = match kind {
        b'B' | b'b' => BASE64.decode(text).ok()?,
        b'Q' | b'q' => q_decode(text)?,
        _ => return None,
    };
    Some(Word {
        len: q3 + 2,
        encoding,
        octets,
    })
}

/// The `Q` encoding (RFC 2047 §4.2); `None` for a `=` without two hex digits.
fn q_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hi = hex(*text.get(i + 1)?)?;
                let lo = hex(*text.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

fn hex(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Linear white space: what may separate two adjacent encoded words.
fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> String {
        decode(s.as_bytes(), DEFAULT_MAX_LEN)
    }

    #[test]
    fn rfc2047_section_8_examples() {
        assert_eq!(
            d("=?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>"),
            "Keith Moore <moore@cs.utk.edu>"
        );
        assert_eq!(
            d("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?= <keld@dkuug.dk>"),
            "Keld Jørn Simonsen <keld@dkuug.dk>"
        );
        assert_eq!(
            d("=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>"),
            "André Pirard <PIRARD@vm1.ulg.ac.be>"
        );
        assert_eq!(
            d("=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n    \
               =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?="),
            "If you can read this you understand the example."
        );
        assert_eq!(
            d("=?ISO-8859-1?Q?Olle_J=E4rnefors?= <ojarnef@admin.kth.se>"),
            "Olle Järnefors <ojarnef@admin.kth.se>"
        );
        assert_eq!(
            d("Nathaniel Borenstein <nsb@thumper.bellcore.com>\r\n    \
               (=?iso-8859-8?b?7eXs+SDv4SDp7Oj08A==?=)"),
            "Nathaniel Borenstein <nsb@thumper.bellcore.com>\r\n    (םולש ןב ילטפנ)"
        );
        // The table of §8: white space between adjacent words.
        let table = [
            ("(=?ISO-8859-1?Q?a?=)", "(a)"),
            ("(=?ISO-8859-1?Q?a?= b)", "(a b)"),
            ("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"),
            ("(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)"),
            ("(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)"),
            ("(=?ISO-8859-1?Q?a_b?=)", "(a b)"),
            ("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)"),
        ];
        for (input, want) in table {
            assert_eq!(d(input), want, "{input}");
        }
    }

    #[test]
    fn rfc2231_language_suffix_is_ignored() {
        assert_eq!(d("=?US-ASCII*EN?Q?Keith_Moore?="), "Keith Moore");
        assert_eq!(d("=?utf-8*de-CH?q?Gr=C3=BCezi?="), "Grüezi");
    }

    #[test]
    fn charsets() {
        // Latin-1, either name, any case.
        assert_eq!(d("x =?ISO-8859-1?Q?caf=E9?= y"), "x café y");
        assert_eq!(d("=?latin1?q?caf=e9?="), "café");
        // windows-1252: 0x80 is the euro sign (and so it is under the ISO-8859-1 label).
        assert_eq!(d("=?windows-1252?Q?=80_5?="), "€ 5");
        assert_eq!(d("=?iso-8859-1?Q?=80?="), "€");
        // Japanese: ISO-2022-JP (stateful) and Shift_JIS.
        assert_eq!(d("=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?="), "テスト");
        assert_eq!(d("=?Shift_JIS?B?g2WDWINn?="), "テスト");
        assert_eq!(d("=?koi8-r?Q?=F0=D2=C9=D7=C5=D4?="), "Привет");
        assert_eq!(d("=?UTF-16LE?B?SABpAA==?="), "Hi");
    }

    #[test]
    fn unknown_charsets_stay_literal() {
        assert_eq!(d("=?x-klingon?Q?a?= b"), "=?x-klingon?Q?a?= b");
        // The WHATWG "replacement" encoding counts as unknown.
        assert_eq!(d("=?ISO-2022-KR?B?QQ==?="), "=?ISO-2022-KR?B?QQ==?=");
        // A literal word is not adjacent to an encoded one: the blank stays.
        assert_eq!(d("=?x-klingon?Q?a?= =?UTF-8?Q?b?="), "=?x-klingon?Q?a?= b");
        assert_eq!(d("=?UTF-8?Q?a?= =?x-klingon?Q?b?="), "a =?x-klingon?Q?b?=");
    }

    #[test]
    fn q_encoding() {
        assert_eq!(d("=?UTF-8?Q?a_b__c?="), "a b  c");
        assert_eq!(d("=?UTF-8?Q?a=5Fb?="), "a_b");
        assert_eq!(d("=?UTF-8?q?=c3=a9?="), "é");
        assert_eq!(d("=?UTF-8?Q??="), "");
        // Malformed `=`: kept literally.
        assert_eq!(d("=?utf-8?Q?bad=Z?= ok"), "=?utf-8?Q?bad=Z?= ok");
        assert_eq!(d("=?utf-8?Q?bad=?= ok"), "=?utf-8?Q?bad=?= ok");
        // `_` outside an encoded word is itself.
        assert_eq!(d("a_b"), "a_b");
    }

    #[test]
    fn b_encoding() {
        assert_eq!(d("=?utf-8?B?SGVsbG8=?= world"), "Hello world");
        assert_eq!(d("=?utf-8?b?SGVsbG8?= world"), "Hello world");
        assert_eq!(d("=?UTF-8?B?SGk?="), "Hi");
        // Bad base64: kept literally.
        assert_eq!(d("=?UTF-8?B?SGVsbG8*?="), "=?UTF-8?B?SGVsbG8*?=");
        assert_eq!(d("=?UTF-8?B?A?="), "=?UTF-8?B?A?=");
        assert_eq!(d("=?UTF-8?B?SG=k?="), "=?UTF-8?B?SG=k?=");
        // Unknown encoding letter.
        assert_eq!(d("=?UTF-8?X?SGk?="), "=?UTF-8?X?SGk?=");
    }

    #[test]
    fn invalid_octets_become_replacement_characters() {
        assert_eq!(d("=?UTF-8?Q?a=FFb?="), "a\u{FFFD}b");
        // A character left incomplete at the end of a run.
        assert_eq!(d("=?UTF-8?Q?a=C3?= b"), "a\u{FFFD} b");
    }

    /// Raw 8-bit text outside words: UTF-8 when it is, else windows-1252 (a probe saw a
    /// Latin-1 `Subject: Grüße aus München` shown as `Gr��e aus M�nchen`), the whole run
    /// alike.
    #[test]
    fn raw_8bit_text_is_utf8_or_else_windows_1252() {
        assert_eq!(decode(b"caf\xc3\xa9", 100), "café");
        assert_eq!(
            decode(b"Gr\xfc\xdfe aus M\xfcnchen", 100),
            "Grüße aus München"
        );
        assert_eq!(decode(b"\x80 5 \xff", 100), "€ 5 ÿ");
        assert_eq!(decode(b"caf\xc3\xa9 \xff", 100), "cafÃ© ÿ");
        assert_eq!(
            decode(b"\xe9t\xe9 =?UTF-8?Q?=C3=A9?= caf\xc3\xa9", 100),
            "été é café"
        );
        // Bounded as any text: a Latin-1 octet is two octets of output.
        assert_eq!(decode(&[0xe9; 50], 10), "ééééé");
    }

    #[test]
    fn adjacent_words() {
        assert_eq!(d("=?UTF-8?Q?a?= =?UTF-8?Q?b?="), "ab");
        assert_eq!(d("=?UTF-8?Q?a?=\t\r\n =?UTF-8?B?Yg==?= c"), "ab c");
        assert_eq!(d("=?UTF-8?Q?a?==?UTF-8?Q?b?="), "ab");
        assert_eq!(d("=?UTF-8?Q?a?= x =?UTF-8?Q?b?="), "a x b");
        // A character split across two words in the same charset comes out whole.
        assert_eq!(d("=?UTF-8?Q?=C3?= =?UTF-8?Q?=A9?="), "é");
        // Across charsets it does not.
        assert_eq!(d("=?UTF-8?Q?=C3?= =?ISO-8859-1?Q?=A9?="), "\u{FFFD}©");
    }

    #[test]
    fn malformed_words_stay_literal() {
        for s in [
            "plain =? text",
            "=?",
            "=?utf-8",
            "=?utf-8?",
            "=?utf-8?q",
            "=?utf-8?q?",
            "=?utf-8?q?abc",
            "=?utf-8?q?abc?",
            "=??q?abc?=",
            "=?*en?q?abc?=",
            "=?utf-8?q?a b?=",
            "=?utf 8?q?ab?=",
            "=?utf-8?qq?ab?=",
        ] {
            assert_eq!(d(s), s);
        }
        // A literal `=?` before a real word.
        assert_eq!(d("=? =?UTF-8?Q?a?="), "=? a");
    }

    /// Words over RFC 2047's 75 octets are decoded, as mail readers do (a probe's
    /// subjects from Python's `email`, 76-octet words, showed as base64); words longer
    /// than a line stay literal.
    #[test]
    fn words_over_75_octets_are_read_up_to_a_line() {
        let text = "a".repeat(MAX_WORD_LEN - "=?UTF-8?Q??=".len());
        let word = format!("=?UTF-8?Q?{text}?=");
        assert_eq!(word.len(), MAX_WORD_LEN);
        assert_eq!(d(&word), text);
        let long = format!("=?UTF-8?Q?{text}a?=");
        assert_eq!(d(&long), format!("{text}a"));
        let b64 =
            "=?utf-8?b?w6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6k=?=";
        assert_eq!(b64.len(), 80);
        assert_eq!(d(b64), "é".repeat(25));
        let text = "a".repeat(MAX_READ_WORD_LEN - "=?UTF-8?Q??=".len());
        let word = format!("=?UTF-8?Q?{text}?=");
        assert_eq!(d(&word), text);
        let over = format!("=?UTF-8?Q?{text}a?=");
        assert_eq!(d(&over), over);
    }

    #[test]
    fn output_is_bounded() {
        assert_eq!(decode(b"=?UTF-8?Q?=C3=A9=C3=A9?=", 3), "é");
        assert_eq!(decode(b"=?UTF-8?Q?=C3=A9=C3=A9?=", 4), "éé");
        assert_eq!(decode(b"abc =?UTF-8?Q?x?=", 2), "ab");
        assert_eq!(decode("ééé".as_bytes(), 5), "éé");
        assert_eq!(decode(b"anything", 0), "");
        let mut out = String::from("keep ");
        assert!(!decode_to(b"=?UTF-8?Q?abc?=", 2, &mut out));
        assert_eq!(out, "keep ab");
        assert!(decode_to(b"", 0, &mut out));
    }

    /// The input that made the server's decoder quadratic: 21,000 `=?a`.
    #[test]
    fn linear_on_many_openings() {
        let input = "=?a".repeat(21_000);
        assert_eq!(decode(input.as_bytes(), usize::MAX), input);
        assert_eq!(decode(input.as_bytes(), 200), input[..200]);
        // Openings whose end is never found.
        let input = "=?utf-8?q?".repeat(21_000);
        assert_eq!(decode(input.as_bytes(), usize::MAX), input);
        // Many real words, all adjacent.
        let input = "=?utf-8?q?a?= ".repeat(21_000);
        assert_eq!(
            decode(input.as_bytes(), usize::MAX),
            "a".repeat(21_000) + " "
        );
        assert_eq!(decode(input.as_bytes(), 10), "a".repeat(10));
    }

    /// Encodes `text` as UTF-8 encoded words of at most [`MAX_WORD_LEN`] octets, each
    /// holding whole characters, separated by `sep`.
    fn encode(text: &str, b: bool, sep: &str) -> String {
        let mut words = Vec::new();
        let mut chunk = String::new();
        let flush = |chunk: &mut String, words: &mut Vec<String>| {
            let body = if b {
                base64::engine::general_purpose::STANDARD.encode(chunk.as_bytes())
            } else {
                chunk.bytes().map(|c| format!("={c:02X}")).collect()
            };
            words.push(format!("=?UTF-8?{}?{body}?=", if b { 'B' } else { 'Q' }));
            chunk.clear();
        };
        for c in text.chars() {
            // 12 octets of `=?UTF-8?Q??=`, 3 per octet in Q (4/3 in B).
            if (chunk.len() + c.len_utf8()) * 3 + 12 > MAX_WORD_LEN {
                flush(&mut chunk, &mut words);
            }
            chunk.push(c);
        }
        if !chunk.is_empty() {
            flush(&mut chunk, &mut words);
        }
        words.join(sep)
    }

    proptest! {
        #[test]
        fn never_panics_and_output_is_bounded(
            value in prop::collection::vec(
                prop_oneof![
                    Just(b"=?".to_vec()),
                    Just(b"?=".to_vec()),
                    Just(b"=?utf-8?q?".to_vec()),
                    Just(b"=?iso-2022-jp?b?".to_vec()),
                    Just(b"=?utf-16?B?".to_vec()),
                    "[a-zA-Z0-9_=?*+/ \t\r\n-]{0,8}".prop_map(String::into_bytes),
                    prop::collection::vec(any::<u8>(), 0..4),
                ],
                0..40,
            ).prop_map(|v| v.concat()),
            max_len in 0usize..300,
        ) {
            let out = decode(&value, max_len);
            prop_assert!(out.len() <= max_len);
            let mut whole = String::new();
            let complete = decode_to(&value, usize::MAX, &mut whole);
            prop_assert!(complete);
            // A bounded decode is a prefix of the unbounded one, unless a character
            // split across words ends a run early (then both differ only from there).
            if whole.len() <= max_len {
                prop_assert_eq!(out, whole);
            }
        }

        #[test]
        fn encoded_text_decodes_back(text in "\\PC{0,60}", b in any::<bool>(), sep in "[ \t]{1,3}|\r\n ") {
            let encoded = encode(&text, b, &sep);
            prop_assert_eq!(d(&encoded), text);
        }

        #[test]
        fn text_without_words_is_unchanged(text in "[^=]{0,100}") {
            prop_assert_eq!(decode(text.as_bytes(), usize::MAX), text);
        }
    }
}
