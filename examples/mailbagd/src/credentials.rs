//! Credentials: passwords that never show in logs ([`Secret`]), how a
//! user's password is checked ([`Credential`]), and the one constant-time
//! comparison the server uses for passwords and tokens.

use std::fmt;

use serde::Deserialize;
use sha_crypt::{PasswordVerifier, ShaCrypt};

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
    /// A clear-text password from the config file.
    Plain(Secret),
    /// A SHA-crypt hash (`$5$...` SHA-256-crypt or `$6$...` SHA-512-crypt),
    /// e.g. from `openssl passwd -6` or `mkpasswd -m sha-512`.
    Hash(String),
}

impl Credential {
    /// Checks a password in constant time (with respect to the content).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbagd::credentials::{Credential, Secret};
    /// let c = Credential::Plain(Secret::new("secret"));
    /// assert!(c.verify(b"secret"));
    /// assert!(!c.verify(b"secreT"));
    /// ```
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Credential::Plain(s) => constant_time_eq(s.expose(), password),
            Credential::Hash(h) => ShaCrypt::default()
                .verify_password(password, h.as_str())
                .is_ok(),
        }
    }

    /// The cost of checking a password against this credential (`None`
    /// for a clear-text password).
    pub fn hash_cost(&self) -> Option<HashCost> {
        match self {
            Credential::Plain(_) => None,
            Credential::Hash(h) => HashCost::of(h),
        }
    }
}

/// The SHA-crypt scheme of a password hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashScheme {
    /// `$5$`: SHA-256-crypt.
    Sha256Crypt,
    /// `$6$`: SHA-512-crypt.
    Sha512Crypt,
}

/// What checking a password against a SHA-crypt hash costs: its scheme and
/// rounds (the salt, at most 16 characters, hardly matters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashCost {
    /// The scheme.
    pub scheme: HashScheme,
    /// The rounds (`rounds=N`; 5000 when the hash does not say).
    pub rounds: u32,
}

/// Rounds of a SHA-crypt hash without `rounds=` (the scheme's default).
pub const DEFAULT_ROUNDS: u32 = 5_000;
/// The fewest and the most rounds a SHA-crypt hash may ask for.
pub const ROUNDS_RANGE: std::ops::RangeInclusive<u32> = 1_000..=999_999_999;

impl HashCost {
    /// The scheme and rounds of a `$5$`/`$6$` hash (`None` for anything else).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbagd::credentials::{HashCost, HashScheme};
    /// let c = HashCost::of("$6$rounds=10000$salt$hash").unwrap();
    /// assert_eq!((c.scheme, c.rounds), (HashScheme::Sha512Crypt, 10_000));
    /// assert_eq!(HashCost::of("$5$salt$hash").unwrap().rounds, 5_000);
    /// ```
    pub fn of(hash: &str) -> Option<HashCost> {
        let mut fields = hash.strip_prefix('$')?.split('$');
        let scheme = match fields.next()? {
            "5" => HashScheme::Sha256Crypt,
            "6" => HashScheme::Sha512Crypt,
            _ => return None,
        };
        let rounds = match fields.next()?.strip_prefix("rounds=") {
            Some(n) => n.parse().ok()?,
            None => DEFAULT_ROUNDS,
        };
        Some(HashCost { scheme, rounds })
    }

    /// A comparable estimate of the work: rounds times the cost of one
    /// round (a SHA-512 block costs about 1.5 times a SHA-256 block on a
    /// 64-bit machine, and a round hashes about one block in either scheme).
    pub fn work(&self) -> u64 {
        let per_round = match self.scheme {
            HashScheme::Sha256Crypt => 2,
            HashScheme::Sha512Crypt => 3,
        };
        u64::from(self.rounds) * per_round
    }

    /// A hash of this scheme and these rounds that no password matches
    /// (its digest is all zero bits, which SHA-crypt never yields in
    /// practice) and whose check costs the same as a real one's: for unknown
    /// user names.
    pub fn dummy(&self) -> Credential {
        let (id, digest_chars) = match self.scheme {
            HashScheme::Sha256Crypt => ("5", 43),
            HashScheme::Sha512Crypt => ("6", 86),
        };
        Credential::Hash(format!(
            "${id}$rounds={}$mailbagdummysalt${}",
            self.rounds,
            ".".repeat(digest_chars)
        ))
    }
}

/// Compares two byte strings in time that depends only on their lengths, not
/// on where they differ (passwords, session tokens, CSRF tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummies_cost_a_full_check_and_match_nothing() {
        for cost in [
            HashCost {
                scheme: HashScheme::Sha256Crypt,
                rounds: 1000,
            },
            HashCost {
                scheme: HashScheme::Sha512Crypt,
                rounds: 1000,
            },
        ] {
            let Credential::Hash(h) = cost.dummy() else {
                panic!("not a hash");
            };
            assert_eq!(HashCost::of(&h), Some(cost));
            // A wrong password, not an unreadable hash: the digest was computed.
            assert_eq!(
                ShaCrypt::default().verify_password(b"secret", h.as_str()),
                Err(sha_crypt::password_hash::Error::PasswordInvalid),
                "{h}"
            );
        }
    }

    #[test]
    fn hash_costs_are_read_and_compared() {
        assert_eq!(HashCost::of("$1$abc$def"), None);
        assert_eq!(HashCost::of("$6$rounds=x$a$b"), None);
        let c = |s| HashCost::of(s).unwrap().work();
        assert!(c("$6$rounds=10000$a$b") > c("$5$rounds=5000$a$b"));
        assert!(c("$6$a$b") > c("$5$a$b"));
        assert!(c("$5$rounds=20000$a$b") > c("$6$rounds=10000$a$b"));
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
