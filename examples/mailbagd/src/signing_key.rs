//! A server secret for signing values it hands out and takes back (the web
//! login form's token, the release links of the Spam digest): HMAC-SHA-256
//! (RFC 2104), cut to 128 bits. `Debug` never shows the key.
//!
//! A key is random for the life of the process ([`SigningKey::random`]), or
//! kept in a file so that what it signed stays valid over restarts
//! ([`SigningKey::load_or_create`]).

use std::fmt;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Octets of a key.
pub const KEY_BYTES: usize = 32;
/// Octets of a MAC (128 bits).
pub const MAC_BYTES: usize = 16;
/// SHA-256's block size, for HMAC.
const BLOCK: usize = 64;

/// An HMAC-SHA-256 key.
#[derive(Clone)]
pub struct SigningKey([u8; KEY_BYTES]);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SigningKey {
    /// A fresh key from the OS random number generator.
    pub fn random() -> io::Result<SigningKey> {
        let mut k = [0u8; KEY_BYTES];
        getrandom::fill(&mut k).map_err(|e| io::Error::other(format!("random key: {e}")))?;
        Ok(SigningKey(k))
    }

    /// The key made of these bytes (tests).
    pub fn from_bytes(k: [u8; KEY_BYTES]) -> SigningKey {
        SigningKey(k)
    }

    /// The key kept in `path` (64 hex digits), made and written there
    /// (mode 0600, created exclusively) when the file does not exist yet.
    ///
    /// # Errors
    ///
    /// The file cannot be read or written, or does not hold a key.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbagd::signing_key::SigningKey;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("secret");
    /// let a = SigningKey::load_or_create(&path).unwrap();
    /// let b = SigningKey::load_or_create(&path).unwrap();
    /// assert_eq!(a.mac(b"x"), b.mac(b"x"), "the same key after a restart");
    /// ```
    pub fn load_or_create(path: &Path) -> io::Result<SigningKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::parse(text.trim()).ok_or_else(|| bad_key(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Written whole to a file of our own, then linked into place: the
        // link fails if another process made the key first (use theirs), and
        // a crash never leaves a half-written key at `path`.
        let key = SigningKey::random()?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let result = (|| {
            crate::private_file::write_synced(&tmp, format!("{}\n", hex(&key.0)).as_bytes())?;
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => Ok(key),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(path)?;
                    Self::parse(text.trim()).ok_or_else(|| bad_key(path))
                }
                Err(e) => Err(e),
            }
        })();
        let _ = std::fs::remove_file(&tmp);
        result
    }

    fn parse(text: &str) -> Option<SigningKey> {
        if text.len() != KEY_BYTES * 2 {
            return None;
        }
        let mut k = [0u8; KEY_BYTES];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(SigningKey(k))
    }

    /// HMAC-SHA-256 of `msg` under the key, cut to [`MAC_BYTES`].
    pub fn mac(&self, msg: &[u8]) -> [u8; MAC_BYTES] {
        let mut ipad = [0x36u8; BLOCK];
        let mut opad = [0x5cu8; BLOCK];
        for (i, k) in self.0.iter().enumerate() {
            if let (Some(a), Some(b)) = (ipad.get_mut(i), opad.get_mut(i)) {
                *a ^= k;
                *b ^= k;
            }
        }
        let inner = Sha256::new()
            .chain_update(ipad)
            .chain_update(msg)
            .finalize();
        let outer = Sha256::new()
            .chain_update(opad)
            .chain_update(inner)
            .finalize();
        let mut out = [0u8; MAC_BYTES];
        for (o, b) in out.iter_mut().zip(outer.iter()) {
            *o = *b;
        }
        out
    }
}

fn bad_key(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: not a key (64 hex digits)", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2_prefix() {
        // RFC 4231 test case 2 uses a 4-byte key; ours are 32 bytes, so check
        // the construction with a key padded the way HMAC pads it.
        let mut k = [0u8; KEY_BYTES];
        k[..4].copy_from_slice(b"Jefe");
        let mac = SigningKey(k).mac(b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c7");
    }

    #[test]
    fn key_files_are_private_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let a = SigningKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            SigningKey::load_or_create(&path).unwrap().mac(b"m"),
            a.mac(b"m")
        );
        assert!(!format!("{a:?}").contains(&hex(&a.0)[..8]));
        std::fs::write(&path, "not hex").unwrap();
        let e = SigningKey::load_or_create(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(SigningKey::load_or_create(&dir.path().join("no/such/dir")).is_err());
    }
}
