//! Free space on the file systems the server writes mail to, and the sizes
//! of the `[limits] min_free_space` setting (`"256MiB"`, `"1G"`, `"0"`).
//!
//! SMTP refuses new mail with `452 4.3.1` while the data or queue file
//! system has less free space than the limit, so that a full disk stops
//! intake instead of failing deliveries, and POP3 users can still log in and
//! delete mail to make room.

use std::io;
use std::path::Path;

/// Default of `[limits] min_free_space`: 256 MiB.
pub const DEFAULT_MIN_FREE_SPACE: u64 = 256 * 1024 * 1024;

/// Octets available to an unprivileged user on the file system holding
/// `path` (`statvfs`: free blocks for non-root times the fragment size).
///
/// # Errors
///
/// The `statvfs` failure (e.g. `path` does not exist).
pub fn available(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path).map_err(io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Parses a size: a whole number with an optional unit, `B`, `K`/`KiB`,
/// `M`/`MiB`, `G`/`GiB`, `T`/`TiB` (powers of 1024) or `KB`, `MB`, `GB`,
/// `TB` (powers of 1000), case-insensitive, spaces allowed before the unit.
///
/// # Errors
///
/// A message saying what is wrong (no number, unknown unit, too large).
///
/// # Examples
///
/// ```
/// use mailbagd::disk_space::parse_size;
///
/// assert_eq!(parse_size("256MiB"), Ok(256 << 20));
/// assert_eq!(parse_size("1G"), Ok(1 << 30));
/// assert_eq!(parse_size("2 KB"), Ok(2000));
/// assert_eq!(parse_size("0"), Ok(0));
/// assert!(parse_size("12 parsecs").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = s.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "{s:?}: expected a number of octets, e.g. \"256MiB\""
        ));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: number too large"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (B, K, KiB, KB, M, MiB, MB, G, GiB, GB, T, TiB, TB)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_size("256MiB"), Ok(DEFAULT_MIN_FREE_SPACE));
        assert_eq!(parse_size("1000000TiB"), Ok(1_000_000 << 40));
        assert_eq!(parse_size(" 7 "), Ok(7));
        assert_eq!(parse_size("3mb"), Ok(3_000_000));
        for bad in [
            "",
            "MiB",
            "-1",
            "1.5G",
            "1 PiB",
            "99999999999999999999",
            "20000000T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn available_space_of_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available(dir.path()).is_ok());
        assert!(available(&dir.path().join("missing")).is_err());
    }
}
