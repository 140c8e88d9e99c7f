//! The Maildir++ quota file, `<user>/maildirsize`: a running total of a
//! user's stored octets and messages, so that checking a quota reads one
//! small file instead of every name in the Maildir.
//!
//! Its first line holds the limits (`<octets>S`, optionally `,<count>C`;
//! `0S` for none); every later line is a change, `<octets> <messages>`,
//! either of them negative for a removal. A recount writes the limits and
//! one line of totals to a new file and renames it over the old one; every
//! delivery and removal appends its change with one `O_APPEND` write, so
//! that other hosts on the same storage, Dovecot's and Courier's Maildir++
//! quota included, keep the same file. This follows the Maildir++ quota
//! specification and what Dovecot does with it:
//! - a file of [`MaildirOptions::quota_file_recount_size`] octets or more
//!   (default [`DEFAULT_QUOTA_FILE_RECOUNT_SIZE`], the specification's 5,120)
//!   is recounted rather than read;
//! - so is one with a NUL, a malformed line, negative totals, no line of
//!   changes, or octet limits other than the user's quota now;
//! - a last line without its LF (a write cut short, or in progress) is left
//!   out;
//! - a total that would refuse a delivery is never trusted: the store
//!   recounts before it refuses (see `Inner::usage`).
//!
//! Appends are not atomic across NFS clients, and a delivery that appends
//! while another host recounts can be counted twice or not at all; each of
//! these is corrected by the next recount, and a wrong total can only let a
//! message in, never refuse one.
//!
//! [`MaildirOptions::quota_file_recount_size`]: super::MaildirOptions::quota_file_recount_size

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use super::usage::Usage;

/// The file's name in the user's Maildir.
pub(crate) const FILE_NAME: &str = "maildirsize";

/// Default of [`MaildirOptions::quota_file_recount_size`]: 5,120 octets, the
/// size at which the Maildir++ specification has the file recounted.
///
/// [`MaildirOptions::quota_file_recount_size`]: super::MaildirOptions::quota_file_recount_size
pub const DEFAULT_QUOTA_FILE_RECOUNT_SIZE: u64 = 5120;

/// The limits line for a quota of `octets`.
fn limits_line(octets: u64) -> String {
    format!("{octets}S")
}

/// The octet limit of a limits line (`0` and a missing `S` mean none);
/// `None` when the line is not limits, or limits a message count too,
/// which this store does not keep.
fn octet_limit(line: &str) -> Option<u64> {
    let mut octets = 0;
    for part in line.split(',') {
        let (digits, unit) = part.split_at(part.len().checked_sub(1)?);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: u64 = digits.parse().ok()?;
        match unit {
            "S" => octets = value,
            "C" if value == 0 => {}
            _ => return None,
        }
    }
    Some(octets)
}

/// One change line: two signed decimal numbers, separated (and possibly
/// preceded, as Courier pads them) by blanks.
fn change(line: &str) -> Option<(i64, i64)> {
    let mut fields = line.split_ascii_whitespace();
    let octets = fields.next()?.parse().ok()?;
    let messages = fields.next()?.parse().ok()?;
    fields.next().is_none().then_some((octets, messages))
}

/// The totals in `content`, a `maildirsize` file of a user whose quota is
/// `quota` octets; `None` when the file must be recounted instead.
pub(crate) fn parse(content: &[u8], quota: u64, recount_size: u64) -> Option<Usage> {
    if u64::try_from(content.len()).map_or(true, |n| n >= recount_size) || content.contains(&0) {
        return None;
    }
    // Up to the last LF: a line still being appended is left out.
    let end = content.iter().rposition(|&b| b == b'\n')?;
    let text = std::str::from_utf8(&content[..end]).ok()?;
    let mut lines = text.split('\n');
    if octet_limit(lines.next()?)? != quota {
        return None;
    }
    let (mut octets, mut messages, mut changes) = (0i64, 0i64, 0usize);
    for line in lines {
        let (o, m) = change(line)?;
        octets = octets.checked_add(o)?;
        messages = messages.checked_add(m)?;
        changes += 1;
    }
    if changes == 0 {
        return None;
    }
    Some(Usage {
        octets: u64::try_from(octets).ok()?,
        messages: u64::try_from(messages).ok()?,
    })
}

/// Reads the file at `path`, at most `recount_size` octets of it (a longer
/// file is recounted anyway); `None` when it does not exist.
pub(crate) fn read(path: &Path, recount_size: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut content = Vec::new();
    file.take(recount_size).read_to_end(&mut content)?;
    Ok(Some(content))
}

/// Replaces the file at `path` with the limits of `quota` and the totals
/// `usage`, through `tmp` (a unique name in the Maildir's `tmp/`).
pub(crate) fn write(path: &Path, tmp: &Path, quota: u64, usage: Usage) -> io::Result<()> {
    let content = format!(
        "{}\n{} {}\n",
        limits_line(quota),
        usage.octets,
        usage.messages
    );
    let res = super::private_file()
        .create_new(true)
        .open(tmp)
        .and_then(|mut f| f.write_all(content.as_bytes()))
        .and_then(|()| fs::rename(tmp, path));
    if res.is_err() {
        let _ = fs::remove_file(tmp);
    }
    res
}

/// Appends the change `octets`, `messages` to the file at `path` in one
/// write, if the file exists (without it, the next check recounts). When
/// the write fails, the file is removed, so that it is recounted rather
/// than trusted without this change.
pub(crate) fn append(path: &Path, octets: i64, messages: i64) {
    if octets == 0 && messages == 0 {
        return;
    }
    let line = format!("{octets} {messages}\n");
    let res = OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    match res {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            let _ = fs::remove_file(path);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = DEFAULT_QUOTA_FILE_RECOUNT_SIZE;

    fn usage(octets: u64, messages: u64) -> Option<Usage> {
        Some(Usage { octets, messages })
    }

    #[test]
    fn totals_are_the_sum_of_every_change_line() {
        let file = b"1000S\n300 2\n120 1\n-300 -2\n";
        assert_eq!(parse(file, 1000, SIZE), usage(120, 1));
    }

    #[test]
    fn courier_padding_and_dovecot_limits_with_a_zero_count_are_read() {
        // Courier pads the numbers; Dovecot writes `,0C`-free limits but
        // other writers may add a zero count.
        let file = b"5000S,0C\n      1234      3\n  -34 -1\n";
        assert_eq!(parse(file, 5000, SIZE), usage(1200, 2));
        assert_eq!(parse(b"0S\n7 1\n", 0, SIZE), usage(7, 1));
    }

    #[test]
    fn a_last_line_without_its_lf_is_left_out() {
        assert_eq!(parse(b"100S\n10 1\n20 1\n30", 100, SIZE), usage(30, 2));
        assert_eq!(parse(b"100S", 100, SIZE), None);
    }

    #[test]
    fn files_to_recount_are_refused() {
        let q = 100;
        for bad in [
            &b""[..],
            b"100S\n",                             // no change line
            b"200S\n10 1\n",                       // another quota
            b"100S,5C\n10 1\n",                    // a message-count limit
            b"100X\n10 1\n",                       // not limits
            b"S\n10 1\n",                          // no number
            b"+100S\n10 1\n",                      // not digits only
            b"100S\n10\n",                         // one field
            b"100S\n10 1 1\n",                     // three fields
            b"100S\n10 x\n",                       // not a number
            b"100S\n10 1\n-20 -1\n",               // negative octets
            b"100S\n10 1\n0 -2\n",                 // negative messages
            b"100S\n1\x000 1\n",                   // a NUL
            b"100S\n\xff 1\n",                     // not UTF-8
            b"100S\n9223372036854775807 1\n1 0\n", // overflow
        ] {
            assert_eq!(
                parse(bad, q, SIZE),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_file_of_the_recount_size_is_recounted() {
        let mut file = b"100S\n".to_vec();
        while file.len() < 64 {
            file.extend_from_slice(b"1 1\n");
        }
        let len = file.len() as u64;
        assert_eq!(parse(&file, 100, len + 1), usage(15, 15));
        assert_eq!(parse(&file, 100, len), None);
    }

    #[test]
    fn write_then_append_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        // No file: appends do nothing, reads find nothing.
        append(&path, 10, 1);
        assert_eq!(read(&path, SIZE).unwrap(), None);
        let tmp = dir.path().join("t1");
        write(
            &path,
            &tmp,
            500,
            Usage {
                octets: 40,
                messages: 2,
            },
        )
        .unwrap();
        assert!(!tmp.exists());
        append(&path, 10, 1);
        append(&path, 0, 0);
        append(&path, -40, -2);
        let content = read(&path, SIZE).unwrap().unwrap();
        assert_eq!(content, b"500S\n40 2\n10 1\n-40 -2\n");
        assert_eq!(parse(&content, 500, SIZE), usage(10, 1));
        // A longer file is read only up to the recount size.
        assert_eq!(read(&path, 7).unwrap().unwrap(), b"500S\n40");
    }

    #[test]
    fn an_append_that_fails_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A link to /dev/full: the open succeeds and the write fails (ENOSPC);
        // removing the link leaves /dev/full alone.
        let path = dir.path().join(FILE_NAME);
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        append(&path, 1, 1);
        assert!(fs::symlink_metadata(&path).is_err(), "the file is gone");
        assert!(Path::new("/dev/full").exists());
    }
}
