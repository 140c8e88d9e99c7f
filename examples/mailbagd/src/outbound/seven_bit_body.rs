//! A queued body made fit for the next hop: 7-bit for one that does not offer
//! 8BITMIME (RFC 6152 section 3), and for any next hop without a line longer than
//! 998 octets (RFC 5321 section 4.5.3.1.6) in a part that can be re-encoded (a break
//! on the way would put a line end into the part's text). `smtp-proto`'s
//! `seven_bit` conversion, from the body file into an unnamed file in the queue's
//! `tmp` directory (nothing is left behind, whatever happens), read from its start.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::path::Path;

use mailbag_smtp_proto::data::MAX_TEXT_LINE;
use mailbag_smtp_proto::seven_bit::{MimeScan, SevenBitOptions};

/// Octets read per step.
const CHUNK: usize = 64 * 1024;

/// What [`seven_bit_body`] did.
#[derive(Debug)]
pub enum SevenBitBody {
    /// Nothing to convert: send the body as it is.
    AsItIs {
        /// The body holds 8-bit octets nothing can convert (a header field, a
        /// preamble, a part labelled `base64`): sent as it is all the same.
        eight_bit_left: bool,
    },
    /// The converted copy, at its start.
    Converted {
        /// The copy.
        file: File,
        /// Octets above 127 that could not be converted are left in it.
        eight_bit_left: bool,
    },
}

/// Reads all of `file`, from its start, in chunks.
fn each_chunk(file: &mut File, f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    file.rewind()?;
    crate::read_chunks::each_chunk(file, CHUNK, |e| e, f)
}

/// Whether a line of `file` is longer than [`MAX_TEXT_LINE`] octets.
fn has_long_line(file: &mut File) -> io::Result<bool> {
    let mut line = 0usize;
    let mut long = false;
    each_chunk(file, |c| {
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', c) {
            line += end - start;
            long |= line > MAX_TEXT_LINE + 1;
            line = 0;
            start = end + 1;
        }
        line += c.len() - start;
        long |= line > MAX_TEXT_LINE + 1;
        Ok(())
    })?;
    Ok(long)
}

/// Reads `body` (a queued message, CRLF line ends) and, when a part of it must be
/// re-encoded for the next hop (`eight_bit`: it offers 8BITMIME), writes the
/// converted message into an unnamed file in `tmp_dir`: for a hop without
/// 8BITMIME every part that is 8-bit or has a line over 998 octets, for one with it
/// only the latter (a quick look for long lines first: most messages have none).
/// Blocking.
///
/// # Errors
///
/// Reading the body, or making or writing the copy (a local fault: the
/// attempt is retried).
pub fn seven_bit_body(
    body: &mut File,
    tmp_dir: &Path,
    eight_bit: bool,
) -> io::Result<SevenBitBody> {
    if eight_bit && !has_long_line(body)? {
        return Ok(SevenBitBody::AsItIs {
            eight_bit_left: false,
        });
    }
    let options = SevenBitOptions::default();
    let mut scan = MimeScan::new(options);
    each_chunk(body, |c| {
        scan.feed(c);
        Ok(())
    })?;
    let plan = scan.finish();
    // An 8BITMIME hop takes 8-bit octets: none are "left".
    let eight_bit_left = !eight_bit && !plan.is_seven_bit_after();
    let needed = if eight_bit {
        plan.has_long_lines()
    } else {
        plan.needs_conversion()
    };
    if !needed {
        return Ok(SevenBitBody::AsItIs { eight_bit_left });
    }
    let mut copy = io::BufWriter::new(tempfile::tempfile_in(tmp_dir)?);
    let mut conv = if eight_bit {
        plan.line_converter()
    } else {
        plan.converter()
    };
    let mut out = Vec::with_capacity(CHUNK * 2);
    each_chunk(body, |c| {
        out.clear();
        conv.feed(c, &mut out);
        copy.write_all(&out)
    })?;
    out.clear();
    conv.finish(&mut out);
    copy.write_all(&out)?;
    let mut file = copy.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.rewind()?;
    Ok(SevenBitBody::Converted {
        file,
        eight_bit_left,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn body(text: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(text).unwrap();
        f
    }

    #[test]
    fn an_8bit_body_is_copied_converted_and_an_ascii_one_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut ascii = body(b"Subject: a\r\n\r\nplain\r\n");
        assert!(matches!(
            seven_bit_body(&mut ascii, dir.path(), false).unwrap(),
            SevenBitBody::AsItIs {
                eight_bit_left: false
            }
        ));
        let mut latin = body("Subject: a\r\n\r\ncaf\u{e9}\r\n".as_bytes());
        assert!(matches!(
            seven_bit_body(&mut latin, dir.path(), true).unwrap(),
            SevenBitBody::AsItIs { .. }
        ));
        let SevenBitBody::Converted {
            mut file,
            eight_bit_left,
        } = seven_bit_body(&mut latin, dir.path(), false).unwrap()
        else {
            panic!("not converted");
        };
        assert!(!eight_bit_left);
        let mut out = String::new();
        file.read_to_string(&mut out).unwrap();
        assert!(out.ends_with("\r\n\r\ncaf=C3=A9\r\n"), "{out}");
        assert!(out.contains("Content-Transfer-Encoding: quoted-printable\r\n"));
        // Nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_long_line_is_converted_for_an_8bitmime_hop_too() {
        let dir = tempfile::tempdir().unwrap();
        let exactly = format!("Subject: a\r\n\r\n{}\r\n", "y".repeat(998));
        assert!(matches!(
            seven_bit_body(&mut body(exactly.as_bytes()), dir.path(), true).unwrap(),
            SevenBitBody::AsItIs { .. }
        ));
        let long = format!("Subject: a\r\n\r\n{}\r\n", "y".repeat(999));
        let SevenBitBody::Converted { mut file, .. } =
            seven_bit_body(&mut body(long.as_bytes()), dir.path(), true).unwrap()
        else {
            panic!("not converted");
        };
        let mut out = String::new();
        file.read_to_string(&mut out).unwrap();
        assert!(
            out.contains("Content-Transfer-Encoding: quoted-printable"),
            "{out}"
        );
        assert!(out.lines().all(|l| l.len() <= 76), "{out}");
    }
}
