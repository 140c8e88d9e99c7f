//! Dovecot's older password schemes, read (never made) so that a passwd-file
//! moved from Dovecot keeps working: MD5-crypt (`$1$`, `{MD5-CRYPT}` and
//! `{MD5}`), `{CRAM-MD5}` (`{HMAC-MD5}`), and the plain and salted digests
//! `{PLAIN-MD5}`, `{LDAP-MD5}`, `{SMD5}`, `{SHA}` (`{SHA1}`), `{SSHA}`,
//! `{SHA256}`, `{SSHA256}`, `{SHA512}`, `{SSHA512}`, with Dovecot's `.HEX`,
//! `.B64` and `.BASE64` encoding suffixes.
//!
//! The digests come from RustCrypto's md-5, sha1 and sha2. Two things no
//! crate offers are written here, each checked against hashes `doveadm pw`
//! made: MD5-crypt's 1,000-round loop and its output encoding, and the MD5
//! compression function, whose state after one block is what `{CRAM-MD5}`
//! stores. All of these are fast hashes: a stolen file gives the passwords up
//! quickly, so users should get a new password in a strong scheme
//! (`mailbagd user passwd`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::Digest as _;

/// A digest function of the plain and salted schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestKind {
    /// MD5 (16 octets).
    Md5,
    /// SHA-1 (20 octets).
    Sha1,
    /// SHA-256 (32 octets).
    Sha256,
    /// SHA-512 (64 octets).
    Sha512,
}

impl DigestKind {
    /// The digest's length in octets.
    pub fn output_len(self) -> usize {
        match self {
            DigestKind::Md5 => 16,
            DigestKind::Sha1 => 20,
            DigestKind::Sha256 => 32,
            DigestKind::Sha512 => 64,
        }
    }

    /// The digest of `password` followed by `salt`.
    pub fn of(self, password: &[u8], salt: &[u8]) -> Vec<u8> {
        match self {
            DigestKind::Md5 => md5::Md5::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize()
                .to_vec(),
            DigestKind::Sha1 => {
                use sha1::Digest as _;
                sha1::Sha1::new()
                    .chain_update(password)
                    .chain_update(salt)
                    .finalize()
                    .to_vec()
            }
            DigestKind::Sha256 => {
                use sha2::Digest as _;
                sha2::Sha256::new()
                    .chain_update(password)
                    .chain_update(salt)
                    .finalize()
                    .to_vec()
            }
            DigestKind::Sha512 => {
                use sha2::Digest as _;
                sha2::Sha512::new()
                    .chain_update(password)
                    .chain_update(salt)
                    .finalize()
                    .to_vec()
            }
        }
    }
}

/// How the octets of a digest scheme are written in the passwd-file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Lower- or upper-case hexadecimal.
    Hex,
    /// Base64 with padding.
    Base64,
}

impl Encoding {
    /// The encoding a `.HEX`/`.B64`/`.BASE64` suffix of a scheme name asks for.
    pub fn from_suffix(suffix: &str) -> Option<Encoding> {
        if suffix.eq_ignore_ascii_case("HEX") {
            Some(Encoding::Hex)
        } else if suffix.eq_ignore_ascii_case("B64") || suffix.eq_ignore_ascii_case("BASE64") {
            Some(Encoding::Base64)
        } else {
            None
        }
    }

    /// `octets` written in this encoding.
    pub fn encode(self, octets: &[u8]) -> String {
        match self {
            Encoding::Hex => octets.iter().map(|b| format!("{b:02x}")).collect(),
            Encoding::Base64 => BASE64.encode(octets),
        }
    }

    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => {
                if text.len() % 2 != 0 {
                    return None;
                }
                text.as_bytes()
                    .chunks(2)
                    .map(|p| {
                        let s = std::str::from_utf8(p).ok()?;
                        u8::from_str_radix(s, 16).ok()
                    })
                    .collect()
            }
            Encoding::Base64 => BASE64.decode(text).ok(),
        }
    }
}

/// Decodes a digest scheme's value as Dovecot does: in the `explicit`
/// encoding if the scheme name had a suffix, else in the scheme's `default`
/// one, and a hexadecimal default that does not decode is tried as base64.
pub fn decode(text: &str, default: Encoding, explicit: Option<Encoding>) -> Option<Vec<u8>> {
    match explicit {
        Some(e) => e.decode(text),
        None => default.decode(text).or_else(|| {
            if default == Encoding::Hex {
                Encoding::Base64.decode(text)
            } else {
                None
            }
        }),
    }
}

/// Whether `password` matches `stored`, the decoded value of a plain
/// (`salted == false`: the digest alone) or salted (the digest, then the
/// salt) digest scheme.
pub fn verify_digest(kind: DigestKind, salted: bool, stored: &[u8], password: &[u8]) -> bool {
    let Some((digest, salt)) = stored.split_at_checked(kind.output_len()) else {
        return false;
    };
    if salted == salt.is_empty() {
        return false;
    }
    crate::constant_time::constant_time_eq(&kind.of(password, salt), digest)
}

/// The 64 characters of crypt's base64, in order.
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Rounds of MD5-crypt (fixed by the scheme).
pub const MD5_CRYPT_ROUNDS: usize = 1_000;

/// Reads an MD5-crypt string, `$1$salt$digest`: its salt (at most 8
/// characters are used) when it has that form.
pub fn md5_crypt_salt(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("$1$")?;
    let (salt, digest) = rest.split_once('$')?;
    let ok = |s: &str| s.bytes().all(|b| CRYPT_ALPHABET.contains(&b));
    (salt.len() <= 8 && ok(salt) && digest.len() == 22 && ok(digest)).then_some(salt)
}

/// The MD5-crypt string (`$1$salt$digest`) of `password` with `salt` (at
/// most 8 characters of crypt's alphabet), as FreeBSD's `crypt(3)` made it
/// first and `openssl passwd -1` and Dovecot still do.
pub fn md5_crypt(password: &[u8], salt: &str) -> String {
    let salt = &salt.as_bytes()[..salt.len().min(8)];
    let alternate = md5::Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = md5::Md5::new()
        .chain_update(password)
        .chain_update(b"$1$")
        .chain_update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alternate[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut digest = ctx.finalize();
    for round in 0..MD5_CRYPT_ROUNDS {
        let mut c = md5::Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(digest);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(digest);
        } else {
            c.update(password);
        }
        digest = c.finalize();
    }
    let mut out = String::with_capacity(34);
    out.push_str("$1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(char::from(CRYPT_ALPHABET[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    let d = |i: usize| u32::from(digest[i]);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((d(a) << 16) | (d(b) << 8) | d(c), 4);
    }
    put(d(11), 2);
    out
}

/// The 32 octets `{CRAM-MD5}` stores for `password`: the MD5 states after the
/// HMAC-MD5 outer and inner key blocks (RFC 2104; key longer than 64 octets
/// replaced by its MD5), each as four little-endian words, as Dovecot's
/// `hmac_md5_get_cram_context` writes them.
pub fn cram_md5(password: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 64];
    if password.len() > 64 {
        key[..16].copy_from_slice(&md5::Md5::digest(password));
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let mut out = [0u8; 32];
    for (half, pad) in [(0, 0x5cu8), (1, 0x36u8)] {
        let mut block = key;
        for b in &mut block {
            *b ^= pad;
        }
        let mut state = MD5_INIT;
        md5_block(&mut state, &block);
        for (w, word) in state.iter().enumerate() {
            let at = half * 16 + w * 4;
            out[at..at + 4].copy_from_slice(&word.to_le_bytes());
        }
    }
    out
}

/// MD5's initial state (RFC 1321 section 3.3).
const MD5_INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Per-step left rotations (RFC 1321 section 3.4).
const MD5_SHIFT: [u32; 16] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

/// `floor(abs(sin(i + 1)) * 2^32)` (RFC 1321 section 3.4).
const MD5_K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// MD5's compression function (RFC 1321 section 3.4): `state` after one
/// 64-octet block. md-5 keeps its own private.
fn md5_block(state: &mut [u32; 4], block: &[u8; 64]) {
    let mut m = [0u32; 16];
    for (w, chunk) in m.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let (f, g) = match i / 16 {
            0 => ((b & c) | (!b & d), i),
            1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
            2 => (b ^ c ^ d, (3 * i + 5) % 16),
            _ => (c ^ (b | !d), (7 * i) % 16),
        };
        let sum = f.wrapping_add(a).wrapping_add(MD5_K[i]).wrapping_add(m[g]);
        a = d;
        d = c;
        c = b;
        b = b.wrapping_add(sum.rotate_left(MD5_SHIFT[(i / 16) * 4 + i % 4]));
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_md5_block_function_is_md5s() {
        // "abc" padded to one block: MD5 is that block's state, little-endian.
        let mut block = [0u8; 64];
        block[..3].copy_from_slice(b"abc");
        block[3] = 0x80;
        block[56] = 24; // length in bits
        let mut state = MD5_INIT;
        md5_block(&mut state, &block);
        let mine: Vec<u8> = state.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(mine, md5::Md5::digest(b"abc").to_vec());
    }

    #[test]
    fn md5_crypt_matches_openssl_and_doveadm() {
        // `openssl passwd -1 -salt abcdefgh secret`, `doveadm pw -s MD5-CRYPT -p secret`.
        for known in [
            "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1",
            "$1$98V1Wwfp$H4couabZ2BdHO57iNVWWO.",
        ] {
            let salt = md5_crypt_salt(known).unwrap();
            assert_eq!(md5_crypt(b"secret", salt), known);
            assert_ne!(md5_crypt(b"secreT", salt), known);
        }
        assert_eq!(md5_crypt_salt("$1$abc$short"), None);
        assert_eq!(
            md5_crypt_salt("$1$toolongsalt$cHJi5PXp/ki/ktXzqlk6I1"),
            None
        );
    }

    #[test]
    fn cram_md5_matches_doveadm() {
        // `doveadm pw -s CRAM-MD5 -p secret`.
        let hex = Encoding::Hex.encode(&cram_md5(b"secret"));
        assert_eq!(
            hex,
            "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"
        );
        // A key longer than a block is replaced by its MD5 (RFC 2104).
        let long = [b'x'; 65];
        assert_eq!(cram_md5(&long), cram_md5(&md5::Md5::digest(long)));
    }

    #[test]
    fn digests_decode_as_dovecot_does() {
        // PLAIN-MD5 is hex by default and also read as base64.
        let hex = decode("5ebe2294ecd0e0f08eab7690d2a6ee69", Encoding::Hex, None).unwrap();
        let b64 = decode("Xr4ilOzQ4PCOq3aQ0qbuaQ==", Encoding::Hex, None).unwrap();
        assert_eq!(hex, b64);
        assert!(verify_digest(DigestKind::Md5, false, &hex, b"secret"));
        // An explicit suffix is the only encoding tried.
        assert_eq!(
            decode(
                "Xr4ilOzQ4PCOq3aQ0qbuaQ==",
                Encoding::Hex,
                Some(Encoding::Hex)
            ),
            None
        );
        // A salted value needs its salt, a plain one has none.
        let ssha = decode("q5Nje79GcXQ8yr8Znv1nUWVsb1lBTLHW", Encoding::Base64, None).unwrap();
        assert!(verify_digest(DigestKind::Sha1, true, &ssha, b"secret"));
        assert!(!verify_digest(DigestKind::Sha1, false, &ssha, b"secret"));
        assert!(!verify_digest(
            DigestKind::Sha1,
            true,
            &ssha[..20],
            b"secret"
        ));
        assert!(!verify_digest(DigestKind::Sha1, true, &ssha, b"Secret"));
    }
}
