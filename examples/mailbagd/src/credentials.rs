//! Credentials: passwords that never show in logs ([`Secret`]), how a
//! user's password is checked ([`Credential`]: clear text or a
//! [`PasswordHash`]), and the one constant-time comparison the server uses
//! for passwords and tokens.

use std::fmt;

use serde::Deserialize;

pub use crate::password_hash::{HashCost, HashScheme, PasswordHash};

/// A password that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The password bytes (only for comparing).
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// How a user's password is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A clear-text password (`password` in the config, `{PLAIN}` in a
    /// passwd-file).
    Plain(Secret),
    /// A hash in one of the passwd-file schemes ([`PasswordHash`]).
    Hash(PasswordHash),
}

impl Credential {
    /// Checks a password (a clear-text one in constant time with respect to
    /// the content). The empty password never matches, whatever the
    /// credential: a passwd-file line with a hash of the empty password
    /// (`doveadm pw -p ''`) would otherwise let anyone log in, and so relay.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbagd::credentials::{Credential, Secret};
    /// use mailbagd::password_hash::PasswordHash;
    /// let c = Credential::Plain(Secret::new("secret"));
    /// assert!(c.verify(b"secret"));
    /// assert!(!c.verify(b"secreT"));
    /// // SHA512-CRYPT of the empty password, made by `doveadm pw -p ''`.
    /// let empty = PasswordHash::parse(
    ///     "$6$JCqeGEAbM9/m9.N8$7M5J/KpWVfveV2OzDj/t3TmEN91WvxA9MTCq//4g60pd6NtiUGy2LIYXCgpcaLiuH4xw2iAHTSynjByK.b/X9/",
    /// ).unwrap();
    /// assert!(empty.verify(b"")); // the hash alone matches it
    /// assert!(!Credential::Hash(empty).verify(b""));
    /// ```
    ///
    /// A password whose octets are not UTF-8 comes from a client set up for
    /// a legacy charset (POP3 gives passwords none). It is checked as sent
    /// (a hash made of those very octets matches) and then as windows-1252
    /// (Latin-1's superset) turned into UTF-8, which matches a password set
    /// as text, e.g. by `mailbagd pw` or a web form:
    ///
    /// ```
    /// use mailbagd::credentials::{Credential, Secret};
    /// let c = Credential::Plain(Secret::new("grün"));
    /// assert!(c.verify("grün".as_bytes()));
    /// assert!(c.verify(b"gr\xfcn")); // Latin-1
    /// assert!(!c.verify(b"gr\xfdn"));
    /// ```
    pub fn verify(&self, password: &[u8]) -> bool {
        if password.is_empty() {
            return false;
        }
        let check = |password: &[u8]| match self {
            Credential::Plain(s) => crate::constant_time::constant_time_eq(s.expose(), password),
            Credential::Hash(h) => h.verify(password),
        };
        if check(password) {
            return true;
        }
        if std::str::from_utf8(password).is_ok() {
            return false;
        }
        let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(password);
        check(text.as_bytes())
    }

    /// A fingerprint of this credential, for noticing that a user's password
    /// changed (a web session started with another one ends): a keyed hash
    /// whose key is random for each process, so it tells nothing of the
    /// password and is not comparable across processes.
    pub fn stamp(&self) -> u64 {
        use std::hash::BuildHasher;
        static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
            std::sync::OnceLock::new();
        let key = KEY.get_or_init(std::collections::hash_map::RandomState::new);
        match self {
            Credential::Plain(s) => key.hash_one((0u8, s.expose())),
            Credential::Hash(h) => key.hash_one((1u8, h.as_str())),
        }
    }

    /// A fingerprint of this credential that is the same in every process
    /// (unlike [`Credential::stamp`]): 16 hex digits of SHA-256 over the
    /// stored hash (or clear-text password). For files the server keeps
    /// private (`0600`) beside the passwd-file, to notice a password changed
    /// while it was not running; it tells nothing the passwd-file does not.
    ///
    /// ```
    /// use mailbagd::credentials::{Credential, Secret};
    /// let a = Credential::Plain(Secret::new("one"));
    /// assert_eq!(a.fingerprint(), Credential::Plain(Secret::new("one")).fingerprint());
    /// assert_ne!(a.fingerprint(), Credential::Plain(Secret::new("two")).fingerprint());
    /// assert_eq!(a.fingerprint().len(), 16);
    /// ```
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        match self {
            Credential::Plain(s) => {
                h.update(b"plain\0");
                h.update(s.expose());
            }
            Credential::Hash(p) => {
                h.update(b"hash\0");
                h.update(p.as_str().as_bytes());
            }
        }
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The cost of checking a password against this credential (`None`
    /// for a clear-text password).
    pub fn hash_cost(&self) -> Option<HashCost> {
        match self {
            Credential::Plain(_) => None,
            Credential::Hash(h) => Some(h.cost()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha_crypt::{PasswordVerifier, ShaCrypt};

    #[test]
    fn legacy_charset_passwords_match_as_sent_or_as_windows_1252() {
        let scheme = HashScheme::Sha512Crypt;
        // Set as text: a Latin-1 (or windows-1252: "€" is 0x80) client matches.
        let text = Credential::Hash(PasswordHash::make(scheme, "grün€".as_bytes()).unwrap());
        assert!(text.verify("grün€".as_bytes()));
        assert!(text.verify(b"gr\xfcn\x80"));
        assert!(!text.verify(b"gr\xfdn\x80"));
        // Made of the legacy octets themselves: they match as sent.
        let octets = Credential::Hash(PasswordHash::make(scheme, b"gr\xfcn").unwrap());
        assert!(octets.verify(b"gr\xfcn"));
        assert!(!octets.verify("grün".as_bytes()));
        // UTF-8 is not read a second way: "Ã¼" is "ü" read as windows-1252.
        let mojibake = Credential::Plain(Secret::new("grÃ¼n"));
        assert!(!mojibake.verify("grün".as_bytes()));
    }

    #[test]
    fn dummies_cost_a_full_check_and_match_nothing() {
        for cost in [
            HashCost::ShaCrypt {
                scheme: HashScheme::Sha256Crypt,
                rounds: 1000,
            },
            HashCost::ShaCrypt {
                scheme: HashScheme::Sha512Crypt,
                rounds: 1000,
            },
        ] {
            let h = cost.dummy();
            // A wrong password, not an unreadable hash: the digest was computed.
            assert_eq!(
                ShaCrypt::default().verify_password(b"secret", h.as_str()),
                Err(sha_crypt::password_hash::Error::PasswordInvalid),
                "{h:?}"
            );
            assert_eq!(Credential::Hash(h).hash_cost(), Some(cost));
        }
    }
}
