//! A domain with U-labels (`été.example`, which RFC 6531 lets an EHLO name
//! be) as its A-labels (`xn--t-9fab.example`): each non-ASCII label lower-cased
//! and Punycode-encoded (RFC 3492) behind the `xn--` prefix (RFC 5890), so
//! that an ASCII-only header can name it. No Unicode normalization is done
//! (a name not in NFC gives another A-label than IDNA would), and labels are
//! checked only for what keeps the result a host name: letters, digits and
//! hyphens in the ASCII part, no control, space or symbol in the rest, at
//! most 63 octets a label and 253 in all.

use alloc::string::String;
use alloc::vec::Vec;

const BASE: u32 = 36;
const T_MIN: u32 = 1;
const T_MAX: u32 = 26;
const SKEW: u32 = 38;
const DAMP: u32 = 700;
const INITIAL_BIAS: u32 = 72;
const INITIAL_N: u32 = 0x80;

/// The A-label form of `domain`; `None` when a label is empty or holds
/// something no host name may, or the result is too long.
pub(crate) fn to_a_labels(domain: &str) -> Option<String> {
    let mut out = String::new();
    for (i, label) in domain.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        let lower: Vec<char> = label.chars().flat_map(char::to_lowercase).collect();
        // A host name's label neither starts nor ends with a hyphen.
        if lower.is_empty() || lower.first() == Some(&'-') || lower.last() == Some(&'-') {
            return None;
        }
        let start = out.len();
        if lower.iter().all(char::is_ascii) {
            if !lower.iter().all(|c| c.is_ascii_alphanumeric() || *c == '-') {
                return None;
            }
            out.extend(lower.iter());
        } else {
            let fits = |c: &char| {
                if c.is_ascii() {
                    c.is_ascii_alphanumeric() || *c == '-'
                } else {
                    c.is_alphanumeric() || is_mark_or_joiner(*c)
                }
            };
            if !lower.iter().all(fits) {
                return None;
            }
            out.push_str("xn--");
            punycode(&lower, &mut out)?;
        }
        if out.len() - start > 63 {
            return None;
        }
    }
    (out.len() <= 253).then_some(out)
}

/// Combining marks and the zero-width joiners that scripts need inside
/// words (a rough stand-in for IDNA's rules: no symbols, punctuation,
/// controls or spaces).
fn is_mark_or_joiner(c: char) -> bool {
    matches!(u32::from(c),
        0x0300..=0x036f | 0x0483..=0x0489 | 0x0591..=0x05bd | 0x0610..=0x061a
        | 0x064b..=0x065f | 0x0900..=0x0903 | 0x093a..=0x094f | 0x0e31..=0x0e3a
        | 0x0e47..=0x0e4e | 0x1ab0..=0x1aff | 0x1dc0..=0x1dff | 0x200c | 0x200d
        | 0x20d0..=0x20ff | 0x302a..=0x302f | 0x3099 | 0x309a | 0xfe20..=0xfe2f)
}

/// RFC 3492 section 6.1.
fn adapt(mut delta: u32, points: u32, first: bool) -> u32 {
    delta /= if first { DAMP } else { 2 };
    delta += delta / points;
    let mut k = 0;
    while delta > ((BASE - T_MIN) * T_MAX) / 2 {
        delta /= BASE - T_MIN;
        k += BASE;
    }
    k + (BASE - T_MIN + 1) * delta / (delta + SKEW)
}

fn digit(d: u32) -> char {
    // 0..=25 are `a`..`z`, 26..=35 are `0`..`9`.
    let b = if d < 26 {
        b'a' + d as u8
    } else {
        b'0' + (d - 26) as u8
    };
    char::from(b)
}

/// RFC 3492 section 6.3: appends the Punycode of `input` to `out`; `None`
/// on overflow (a label no host name could hold anyway).
fn punycode(input: &[char], out: &mut String) -> Option<()> {
    let basic = input.iter().filter(|c| c.is_ascii()).count();
    out.extend(input.iter().filter(|c| c.is_ascii()));
    if basic > 0 {
        out.push('-');
    }
    let (mut n, mut delta, mut bias) = (INITIAL_N, 0u32, INITIAL_BIAS);
    let mut handled = u32::try_from(basic).ok()?;
    let total = u32::try_from(input.len()).ok()?;
    while handled < total {
        let m = input
            .iter()
            .map(|&c| u32::from(c))
            .filter(|&c| c >= n)
            .min()?;
        delta = delta.checked_add((m - n).checked_mul(handled + 1)?)?;
        n = m;
        for &c in input {
            let c = u32::from(c);
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = if k <= bias {
                        T_MIN
                    } else if k >= bias + T_MAX {
                        T_MAX
                    } else {
                        k - bias
                    };
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, handled + 1, handled == u32::try_from(basic).ok()?);
                delta = 0;
                handled += 1;
            }
        }
        delta = delta.checked_add(1)?;
        n += 1;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    /// Punycode as Python's `str.encode("punycode")` gives it.
    #[test]
    fn punycode_of_known_labels() {
        for (label, want) in [
            ("bücher", "bcher-kva"),
            ("münchen", "mnchen-3ya"),
            ("été", "t-9fab"),
            ("gmäil", "gmil-moa"),
            ("中文", "fiq228c"),
            ("例え", "r8jz45g"),
            ("ñ", "ida"),
            ("aé-b", "a-b-bma"),
            ("пример", "e1afmkfd"),
        ] {
            let chars: Vec<char> = label.chars().collect();
            let mut out = String::new();
            punycode(&chars, &mut out).unwrap();
            assert_eq!(out, want, "{label}");
        }
    }

    #[test]
    fn domains() {
        let a = |d: &str| to_a_labels(d);
        assert_eq!(a("été.Example").as_deref(), Some("xn--t-9fab.example"));
        assert_eq!(a("пример.рф").as_deref(), Some("xn--e1afmkfd.xn--p1ai"));
        assert_eq!(a("GMÄIL.com").as_deref(), Some("xn--gmil-moa.com"));
        for bad in [
            "é\r\nX: y",
            "é..x",
            "é x",
            "é_x.example",
            "é!.x",
            "",
            "é.",
            "é.-x-",
            "-é.x",
        ] {
            assert_eq!(a(bad), None, "{bad:?}");
        }
        let long = "é".repeat(60);
        assert_eq!(a(&long), None);
    }

    proptest::proptest! {
        /// Whatever comes in, what comes out is a host name in ASCII.
        #[test]
        fn the_result_is_an_ascii_host_name(d in "\\PC{0,80}") {
            if let Some(a) = to_a_labels(&d) {
                proptest::prop_assert!(a.len() <= 253);
                for label in a.split('.') {
                    proptest::prop_assert!(!label.is_empty() && label.len() <= 63, "{a}");
                    proptest::prop_assert!(
                        label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                        "{a}"
                    );
                }
            }
        }
    }
}
