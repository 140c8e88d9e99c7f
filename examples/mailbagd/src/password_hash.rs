//! Password hashes in the schemes of Dovecot's passwd-file: `{ARGON2ID}`,
//! `{ARGON2I}`, `{BLF-CRYPT}` (bcrypt), `{SHA512-CRYPT}`, `{SHA256-CRYPT}`,
//! and the same crypt strings without a `{SCHEME}` prefix (or with
//! Dovecot's `{CRYPT}`), recognised by their `$id$`. Checked and made by
//! well-kept crates (argon2, bcrypt, sha-crypt), never by hand. Dovecot's
//! older, fast schemes (MD5-crypt, CRAM-MD5, the plain and salted MD5 and SHA
//! digests: [`HashScheme::LEGACY`]) are read so that a passwd-file moved from
//! Dovecot works, and never made ([`crate::legacy_hash`]). What a check costs ([`HashCost`]) is known
//! without running it, so that an unknown user name can be made to cost the
//! same ([`HashCost::dummy`]).

use std::fmt;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use sha_crypt::ShaCrypt;

use crate::constant_time::constant_time_eq;
use crate::legacy_hash::{self, DigestKind, Encoding};

/// A password hash scheme, by its Dovecot name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashScheme {
    /// `{ARGON2ID}`: `$argon2id$v=19$m=…,t=…,p=…$salt$hash`.
    Argon2id,
    /// `{ARGON2I}`: `$argon2i$…`.
    Argon2i,
    /// `{BLF-CRYPT}`: bcrypt, `$2y$NN$…` (also `$2a$`, `$2b$`).
    BlfCrypt,
    /// `{SHA512-CRYPT}`: `$6$…`.
    Sha512Crypt,
    /// `{SHA256-CRYPT}`: `$5$…`.
    Sha256Crypt,
    /// `{MD5-CRYPT}` (also `{MD5}`): `$1$salt$…`. Read only.
    Md5Crypt,
    /// `{CRAM-MD5}` (also `{HMAC-MD5}`): HMAC-MD5's two key states, hex. Read only.
    CramMd5,
    /// `{PLAIN-MD5}`: MD5, hex. Read only.
    PlainMd5,
    /// `{LDAP-MD5}`: MD5, base64. Read only.
    LdapMd5,
    /// `{SMD5}`: MD5 of the password and a salt, then the salt, base64. Read only.
    Smd5,
    /// `{SHA}` (also `{SHA1}`): SHA-1, base64. Read only.
    Sha1,
    /// `{SSHA}`: salted SHA-1, base64. Read only.
    Ssha,
    /// `{SHA256}`: SHA-256, base64. Read only.
    Sha256,
    /// `{SSHA256}`: salted SHA-256, base64. Read only.
    Ssha256,
    /// `{SHA512}`: SHA-512, base64. Read only.
    Sha512,
    /// `{SSHA512}`: salted SHA-512, base64. Read only.
    Ssha512,
}

impl HashScheme {
    /// Every scheme new hashes are made in, strongest first.
    pub const ALL: [HashScheme; 5] = [
        HashScheme::Argon2id,
        HashScheme::Argon2i,
        HashScheme::BlfCrypt,
        HashScheme::Sha512Crypt,
        HashScheme::Sha256Crypt,
    ];

    /// Dovecot's older, fast schemes: read so that a passwd-file moved from
    /// Dovecot keeps working, never made.
    pub const LEGACY: [HashScheme; 11] = [
        HashScheme::Md5Crypt,
        HashScheme::CramMd5,
        HashScheme::PlainMd5,
        HashScheme::LdapMd5,
        HashScheme::Smd5,
        HashScheme::Sha1,
        HashScheme::Ssha,
        HashScheme::Sha256,
        HashScheme::Ssha256,
        HashScheme::Sha512,
        HashScheme::Ssha512,
    ];

    /// The name in `{…}`, as Dovecot writes it.
    pub fn dovecot_name(self) -> &'static str {
        match self {
            HashScheme::Argon2id => "ARGON2ID",
            HashScheme::Argon2i => "ARGON2I",
            HashScheme::BlfCrypt => "BLF-CRYPT",
            HashScheme::Sha512Crypt => "SHA512-CRYPT",
            HashScheme::Sha256Crypt => "SHA256-CRYPT",
            HashScheme::Md5Crypt => "MD5-CRYPT",
            HashScheme::CramMd5 => "CRAM-MD5",
            HashScheme::PlainMd5 => "PLAIN-MD5",
            HashScheme::LdapMd5 => "LDAP-MD5",
            HashScheme::Smd5 => "SMD5",
            HashScheme::Sha1 => "SHA",
            HashScheme::Ssha => "SSHA",
            HashScheme::Sha256 => "SHA256",
            HashScheme::Ssha256 => "SSHA256",
            HashScheme::Sha512 => "SHA512",
            HashScheme::Ssha512 => "SSHA512",
        }
    }

    /// Whether this is one of the [`HashScheme::LEGACY`] schemes (read, never made).
    pub fn is_legacy(self) -> bool {
        HashScheme::LEGACY.contains(&self)
    }

    /// For the digest schemes: the digest, whether a salt follows it, and
    /// the encoding Dovecot writes them in unless the name has a suffix.
    fn digest(self) -> Option<(DigestKind, bool, Encoding)> {
        use {DigestKind as D, Encoding as E};
        Some(match self {
            HashScheme::PlainMd5 => (D::Md5, false, E::Hex),
            HashScheme::LdapMd5 => (D::Md5, false, E::Base64),
            HashScheme::Smd5 => (D::Md5, true, E::Base64),
            HashScheme::Sha1 => (D::Sha1, false, E::Base64),
            HashScheme::Ssha => (D::Sha1, true, E::Base64),
            HashScheme::Sha256 => (D::Sha256, false, E::Base64),
            HashScheme::Ssha256 => (D::Sha256, true, E::Base64),
            HashScheme::Sha512 => (D::Sha512, false, E::Base64),
            HashScheme::Ssha512 => (D::Sha512, true, E::Base64),
            _ => return None,
        })
    }

    /// The scheme named `name` (any letter case; `None` for one this server
    /// does not check).
    ///
    /// ```
    /// use mailbagd::password_hash::HashScheme;
    /// assert_eq!(HashScheme::from_dovecot_name("blf-crypt"), Some(HashScheme::BlfCrypt));
    /// assert_eq!(HashScheme::from_dovecot_name("MD5"), Some(HashScheme::Md5Crypt));
    /// assert_eq!(HashScheme::from_dovecot_name("DES-CRYPT"), None);
    /// ```
    pub fn from_dovecot_name(name: &str) -> Option<HashScheme> {
        // Dovecot's other names for the same schemes.
        let name = match name.to_ascii_uppercase().as_str() {
            "MD5" => "MD5-CRYPT",
            "SHA1" => "SHA",
            "HMAC-MD5" => "CRAM-MD5",
            _ => name,
        };
        HashScheme::ALL
            .into_iter()
            .chain(HashScheme::LEGACY)
            .find(|s| s.dovecot_name().eq_ignore_ascii_case(name))
    }

    /// The scheme of a crypt string, by its `$id$`.
    fn of_crypt(text: &str) -> Option<HashScheme> {
        let id = text.strip_prefix('$')?.split('$').next()?;
        Some(match id {
            "argon2id" => HashScheme::Argon2id,
            "argon2i" => HashScheme::Argon2i,
            "2a" | "2b" | "2y" => HashScheme::BlfCrypt,
            "6" => HashScheme::Sha512Crypt,
            "5" => HashScheme::Sha256Crypt,
            "1" => HashScheme::Md5Crypt,
            _ => return None,
        })
    }
}

impl fmt::Display for HashScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dovecot_name())
    }
}

/// Why a password hash cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// `{NAME}` is not a scheme this server checks.
    #[error(
        "unknown password scheme {{{0}}} (known: ARGON2ID, ARGON2I, BLF-CRYPT, SHA512-CRYPT, SHA256-CRYPT, CRYPT, PLAIN, and the older MD5-CRYPT, CRAM-MD5, PLAIN-MD5, LDAP-MD5, SMD5, SHA, SSHA, SHA256, SSHA256, SHA512, SSHA512)"
    )]
    UnknownScheme(String),
    /// A legacy scheme: read, but no new hash is made in it.
    #[error(
        "{0} hashes are read but not made (too fast to resist guessing): use ARGON2ID, BLF-CRYPT or SHA512-CRYPT"
    )]
    ReadOnly(&'static str),
    /// The text is not a hash of its scheme (or of any, without a prefix).
    #[error("not a valid {0} hash")]
    Malformed(&'static str),
    /// Its cost parameters are outside what the scheme allows.
    #[error("{0} cost parameters out of range")]
    CostOutOfRange(&'static str),
    /// Making a new hash failed.
    #[error("cannot hash the password: {0}")]
    Hashing(String),
}

/// What checking a password against a hash costs: its scheme and cost
/// parameters (the salt hardly matters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashCost {
    /// SHA-crypt (`$5$`/`$6$`) with this many rounds.
    ShaCrypt {
        /// `Sha256Crypt` or `Sha512Crypt`.
        scheme: HashScheme,
        /// `rounds=N`; [`DEFAULT_ROUNDS`] when the hash does not say.
        rounds: u32,
    },
    /// bcrypt with this cost (2^cost rounds of the key schedule).
    Bcrypt {
        /// The log2 cost, 4 to 31.
        cost: u32,
    },
    /// One of the fixed-cost [`HashScheme::LEGACY`] schemes.
    Fixed {
        /// The scheme.
        scheme: HashScheme,
    },
    /// Argon2 with these parameters.
    Argon2 {
        /// `Argon2id` or `Argon2i`.
        scheme: HashScheme,
        /// Memory in KiB (`m=`).
        memory_kib: u32,
        /// Passes (`t=`).
        passes: u32,
        /// Lanes (`p=`).
        lanes: u32,
    },
}

/// Rounds of a SHA-crypt hash without `rounds=` (the scheme's default).
pub const DEFAULT_ROUNDS: u32 = 5_000;
/// The fewest and the most rounds a SHA-crypt hash may ask for.
pub const ROUNDS_RANGE: std::ops::RangeInclusive<u32> = 1_000..=999_999_999;

impl HashCost {
    /// An estimate of the time a check takes, in nanoseconds on a current
    /// x86-64 core, to compare costs across schemes (measured roughly:
    /// 5,000 rounds of SHA-512-crypt ≈ 1.8 ms, bcrypt cost 10 ≈ 80 ms, Argon2
    /// ≈ 1 µs per KiB and pass).
    pub fn work(&self) -> u64 {
        match *self {
            HashCost::ShaCrypt { scheme, rounds } => {
                let per_round = if scheme == HashScheme::Sha256Crypt {
                    250
                } else {
                    350
                };
                u64::from(rounds) * per_round
            }
            HashCost::Bcrypt { cost } => 78_000u64 << cost.min(40),
            HashCost::Argon2 {
                memory_kib, passes, ..
            } => u64::from(memory_kib) * u64::from(passes) * 1_000,
            // 1,000 MD5 rounds; one digest or two MD5 blocks.
            HashCost::Fixed {
                scheme: HashScheme::Md5Crypt,
            } => 300_000,
            HashCost::Fixed { .. } => 1_000,
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> HashScheme {
        match *self {
            HashCost::ShaCrypt { scheme, .. }
            | HashCost::Argon2 { scheme, .. }
            | HashCost::Fixed { scheme } => scheme,
            HashCost::Bcrypt { .. } => HashScheme::BlfCrypt,
        }
    }

    /// A hash of this scheme and cost that no password matches (its digest
    /// is all zero bits, which no scheme yields in practice) and whose
    /// check costs the same as a real one's: for unknown user names.
    ///
    /// ```
    /// use mailbagd::password_hash::{HashCost, PasswordHash};
    /// let real = PasswordHash::parse("$2y$05$tZrlwmJV1.E.U8IYZ5Cw7Ok8ZlWbqWgrL6FB3mpIrm8JFzI7CaHqG").unwrap();
    /// let dummy = real.cost().dummy();
    /// assert_eq!(dummy.cost(), real.cost());
    /// assert!(!dummy.verify(b"secret") && real.verify(b"secret"));
    /// ```
    pub fn dummy(&self) -> PasswordHash {
        let text = match *self {
            HashCost::ShaCrypt { scheme, rounds } => {
                let (id, digest_chars) = if scheme == HashScheme::Sha256Crypt {
                    ("5", 43)
                } else {
                    ("6", 86)
                };
                format!(
                    "${id}$rounds={rounds}$mailbagdummysalt${}",
                    ".".repeat(digest_chars)
                )
            }
            HashCost::Bcrypt { cost } => {
                format!("$2y${cost:02}${}", ".".repeat(53))
            }
            HashCost::Argon2 {
                scheme,
                memory_kib,
                passes,
                lanes,
            } => {
                let id = if scheme == HashScheme::Argon2i {
                    "argon2i"
                } else {
                    "argon2id"
                };
                format!(
                    "${id}$v=19$m={memory_kib},t={passes},p={lanes}$bWFpbGJhZ2R1bW15c2FsdA${}",
                    "A".repeat(43)
                )
            }
            HashCost::Fixed { scheme } => match scheme.digest() {
                Some((kind, salted, encoding)) => {
                    let zeros = vec![0u8; kind.output_len() + if salted { 4 } else { 0 }];
                    encoding.encode(&zeros)
                }
                None if scheme == HashScheme::CramMd5 => "0".repeat(64),
                None => format!("$1$mailbagd${}", ".".repeat(22)),
            },
        };
        PasswordHash {
            scheme: self.scheme(),
            cost: *self,
            text,
        }
    }
}

/// A password hash whose scheme and cost parameters were checked when it
/// was read. Shown in `Debug` as its scheme only.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    scheme: HashScheme,
    cost: HashCost,
    /// The crypt or PHC string, without a `{SCHEME}` prefix.
    text: String,
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({}, <redacted>)", self.scheme)
    }
}

/// Default Argon2 cost of new hashes: OWASP's minimum for Argon2id (19 MiB,
/// 2 passes, 1 lane; about 20 ms a login here), the argon2 crate's own
/// default. Dovecot's `doveadm pw` uses 64 MiB and 3 passes: both verify.
const NEW_ARGON2: (u32, u32, u32) = (19 * 1024, 2, 1);
/// The most octets of a password bcrypt reads; `make` refuses longer ones.
pub const MAX_BCRYPT_PASSWORD: usize = 72;

/// Default bcrypt cost of new hashes (Dovecot's `doveadm pw` uses 5).
const NEW_BCRYPT_COST: u32 = 10;

impl PasswordHash {
    /// Reads a crypt string and finds its scheme by its `$id$`.
    ///
    /// # Errors
    ///
    /// [`HashError::Malformed`] when no scheme reads it,
    /// [`HashError::CostOutOfRange`] for absurd cost parameters.
    pub fn parse(text: &str) -> Result<PasswordHash, HashError> {
        let scheme = HashScheme::of_crypt(text)
            .ok_or(HashError::Malformed("crypt ($argon2id$, $2y$, $6$, $5$)"))?;
        PasswordHash::parse_as(scheme, text)
    }

    /// Reads `text` as a hash of `scheme` (the `{SCHEME}` of a passwd-file).
    ///
    /// # Errors
    ///
    /// As [`PasswordHash::parse`], also when the text is of another scheme.
    pub fn parse_as(scheme: HashScheme, text: &str) -> Result<PasswordHash, HashError> {
        PasswordHash::parse_encoded(scheme, text, None)
    }

    /// Reads `text` as a hash of `scheme` whose name had Dovecot's encoding
    /// suffix (`{SHA256.HEX}`: `Some(Encoding::Hex)`); the suffix only
    /// matters for the digest schemes. A digest scheme's value is kept in
    /// the scheme's own encoding, so that [`PasswordHash::to_dovecot`] reads
    /// back the same.
    ///
    /// # Errors
    ///
    /// As [`PasswordHash::parse_as`].
    ///
    /// ```
    /// use mailbagd::legacy_hash::Encoding;
    /// use mailbagd::password_hash::{HashScheme, PasswordHash};
    ///
    /// // `doveadm pw -s SHA256.HEX -p secret`
    /// let hex = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
    /// let h = PasswordHash::parse_encoded(HashScheme::Sha256, hex, Some(Encoding::Hex)).unwrap();
    /// assert!(h.verify(b"secret"));
    /// assert_eq!(h.to_dovecot(), "{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=");
    /// ```
    pub fn parse_encoded(
        scheme: HashScheme,
        text: &str,
        encoding: Option<Encoding>,
    ) -> Result<PasswordHash, HashError> {
        let malformed = HashError::Malformed(scheme.dovecot_name());
        if let Some((kind, salted, default)) = scheme.digest() {
            let octets = legacy_hash::decode(text, default, encoding).ok_or(malformed.clone())?;
            let fits = if salted {
                octets.len() > kind.output_len()
            } else {
                octets.len() == kind.output_len()
            };
            if !fits {
                return Err(malformed);
            }
            return Ok(PasswordHash::fixed(scheme, default.encode(&octets)));
        }
        if scheme == HashScheme::CramMd5 {
            let octets =
                legacy_hash::decode(text, Encoding::Hex, encoding).ok_or(malformed.clone())?;
            if octets.len() != 32 {
                return Err(malformed);
            }
            return Ok(PasswordHash::fixed(scheme, Encoding::Hex.encode(&octets)));
        }
        if HashScheme::of_crypt(text) != Some(scheme) {
            return Err(malformed);
        }
        let cost = match scheme {
            HashScheme::Md5Crypt => {
                legacy_hash::md5_crypt_salt(text).ok_or(malformed.clone())?;
                HashCost::Fixed { scheme }
            }
            HashScheme::Sha512Crypt | HashScheme::Sha256Crypt => {
                sha_crypt::PasswordHashRef::new(text).map_err(|_| malformed.clone())?;
                let rounds = match text
                    .split('$')
                    .nth(2)
                    .and_then(|f| f.strip_prefix("rounds="))
                {
                    Some(n) => n.parse().map_err(|_| malformed.clone())?,
                    None => DEFAULT_ROUNDS,
                };
                if !ROUNDS_RANGE.contains(&rounds) {
                    return Err(HashError::CostOutOfRange(scheme.dovecot_name()));
                }
                // The checksum is the last field, of a fixed length in crypt's
                // base64 (86 characters for SHA-512, 43 for SHA-256): a cut
                // or missing one would parse, and no password would match it.
                let want = if scheme == HashScheme::Sha512Crypt {
                    86
                } else {
                    43
                };
                let checksum = text.rsplit('$').next().unwrap_or_default();
                let crypt64 = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'/';
                if text.split('$').count() < 4
                    || checksum.len() != want
                    || !checksum.bytes().all(crypt64)
                {
                    return Err(malformed);
                }
                HashCost::ShaCrypt { scheme, rounds }
            }
            HashScheme::BlfCrypt => {
                let parts: bcrypt::HashParts = text.parse().map_err(|_| malformed.clone())?;
                let cost = parts.get_cost();
                if !(4..=31).contains(&cost) {
                    return Err(HashError::CostOutOfRange(scheme.dovecot_name()));
                }
                HashCost::Bcrypt { cost }
            }
            HashScheme::Argon2id | HashScheme::Argon2i => {
                let phc = argon2::PasswordHash::new(text).map_err(|_| malformed.clone())?;
                let params = argon2::Params::try_from(&phc)
                    .map_err(|_| HashError::CostOutOfRange(scheme.dovecot_name()))?;
                // A hash that asks for gigabytes would let one login exhaust memory.
                if params.m_cost() > MAX_ARGON2_MEMORY_KIB {
                    return Err(HashError::CostOutOfRange(scheme.dovecot_name()));
                }
                HashCost::Argon2 {
                    scheme,
                    memory_kib: params.m_cost(),
                    passes: params.t_cost(),
                    lanes: params.p_cost(),
                }
            }
            _ => return Err(malformed),
        };
        // Every unknown user name costs what the costliest user's check
        // costs: one such line would make every failed login that dear.
        if cost.work() > MAX_HASH_WORK_NANOS {
            return Err(HashError::CostOutOfRange(scheme.dovecot_name()));
        }
        Ok(PasswordHash {
            scheme,
            cost,
            text: text.to_owned(),
        })
    }

    /// A new hash of `password` in `scheme`, with a fresh random salt and
    /// this server's default cost (Argon2id: 19 MiB, 2 passes; bcrypt: 10;
    /// SHA-crypt: 5,000 rounds).
    ///
    /// # Errors
    ///
    /// [`HashError::Hashing`] when the hashing crate fails (no randomness).
    ///
    /// ```
    /// use mailbagd::password_hash::{HashScheme, PasswordHash};
    /// let h = PasswordHash::make(HashScheme::Argon2id, b"secret").unwrap();
    /// assert!(h.to_dovecot().starts_with("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$"));
    /// assert!(h.verify(b"secret") && !h.verify(b"Secret"));
    /// ```
    pub fn make(scheme: HashScheme, password: &[u8]) -> Result<PasswordHash, HashError> {
        let failed = |e: &dyn fmt::Display| HashError::Hashing(e.to_string());
        if scheme.is_legacy() {
            return Err(HashError::ReadOnly(scheme.dovecot_name()));
        }
        let text = match scheme {
            HashScheme::Argon2id | HashScheme::Argon2i => {
                let (m, t, p) = NEW_ARGON2;
                let params = argon2::Params::new(m, t, p, None).map_err(|e| failed(&e))?;
                let algorithm = if scheme == HashScheme::Argon2i {
                    argon2::Algorithm::Argon2i
                } else {
                    argon2::Algorithm::Argon2id
                };
                let salt = SaltString::generate(&mut OsRng);
                argon2::Argon2::new(algorithm, argon2::Version::V0x13, params)
                    .hash_password(password, &salt)
                    .map_err(|e| failed(&e))?
                    .to_string()
            }
            // bcrypt reads 72 octets: a longer password would match any other that
            // shares them (Dovecot's bcrypt too); make such hashes in another scheme.
            HashScheme::BlfCrypt if password.len() > MAX_BCRYPT_PASSWORD => {
                return Err(HashError::Hashing(format!(
                    "BLF-CRYPT reads only the first {MAX_BCRYPT_PASSWORD} octets of a password: use ARGON2ID or SHA512-CRYPT for a longer one"
                )));
            }
            HashScheme::BlfCrypt => bcrypt::hash_with_result(password, NEW_BCRYPT_COST)
                .map_err(|e| failed(&e))?
                .format_for_version(bcrypt::Version::TwoY),
            HashScheme::Sha512Crypt | HashScheme::Sha256Crypt => {
                let params = sha_crypt::Params::new(DEFAULT_ROUNDS).map_err(|e| failed(&e))?;
                let algorithm = if scheme == HashScheme::Sha256Crypt {
                    sha_crypt::Algorithm::Sha256Crypt
                } else {
                    sha_crypt::Algorithm::Sha512Crypt
                };
                // 12 octets: 16 characters once encoded, SHA-crypt's longest salt.
                let mut salt = [0u8; 12];
                getrandom::fill(&mut salt).map_err(|e| failed(&e))?;
                sha_crypt::PasswordHasher::hash_password_with_salt(
                    &ShaCrypt::new(algorithm, params),
                    password,
                    &salt,
                )
                .map_err(|e| failed(&e))?
                .to_string()
            }
            _ => return Err(HashError::ReadOnly(scheme.dovecot_name())),
        };
        PasswordHash::parse_as(scheme, &text)
    }

    /// A hash of a fixed-cost legacy scheme, its text already checked.
    fn fixed(scheme: HashScheme, text: String) -> PasswordHash {
        PasswordHash {
            scheme,
            cost: HashCost::Fixed { scheme },
            text,
        }
    }

    /// Whether `password` matches. A malformed hash matches nothing.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self.scheme {
            HashScheme::Sha512Crypt | HashScheme::Sha256Crypt => {
                sha_crypt::PasswordVerifier::verify_password(
                    &ShaCrypt::default(),
                    password,
                    self.text.as_str(),
                )
                .is_ok()
            }
            HashScheme::BlfCrypt => bcrypt::verify(password, &self.text).unwrap_or(false),
            HashScheme::Argon2id | HashScheme::Argon2i => argon2::PasswordHash::new(&self.text)
                .is_ok_and(|phc| {
                    argon2::Argon2::default()
                        .verify_password(password, &phc)
                        .is_ok()
                }),
            HashScheme::Md5Crypt => legacy_hash::md5_crypt_salt(&self.text).is_some_and(|salt| {
                constant_time_eq(
                    legacy_hash::md5_crypt(password, salt).as_bytes(),
                    self.text.as_bytes(),
                )
            }),
            HashScheme::CramMd5 => legacy_hash::decode(&self.text, Encoding::Hex, None)
                .is_some_and(|stored| constant_time_eq(&legacy_hash::cram_md5(password), &stored)),
            other => match other.digest() {
                Some((kind, salted, encoding)) => {
                    legacy_hash::decode(&self.text, encoding, Some(encoding)).is_some_and(
                        |stored| legacy_hash::verify_digest(kind, salted, &stored, password),
                    )
                }
                None => false,
            },
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> HashScheme {
        self.scheme
    }

    /// What a check costs.
    pub fn cost(&self) -> HashCost {
        self.cost
    }

    /// The crypt string, without a `{SCHEME}` prefix.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The passwd-file form, `{SCHEME}crypt-string`, as `doveadm pw` prints it.
    pub fn to_dovecot(&self) -> String {
        format!("{{{}}}{}", self.scheme.dovecot_name(), self.text)
    }
}

/// The most memory an Argon2 hash may ask for (1 GiB): more would let one
/// login exhaust the server's memory.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 1024 * 1024;

/// The costliest check a hash may ask for, as [`HashCost::work`] estimates
/// it: 2 s of a core (bcrypt cost 14, 5.7 million SHA-512-crypt rounds,
/// Argon2 with 64 MiB and 30 passes or 1 GiB and 1 pass; Dovecot's `doveadm pw` makes bcrypt
/// cost 5, 5,000 rounds, and Argon2 with 64 MiB and 3 passes). A dearer
/// hash is refused: each login of its user would take that long, and so
/// would every login of an unknown user name, which costs what the costliest
/// user's check costs.
pub const MAX_HASH_WORK_NANOS: u64 = 2_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by Dovecot 2.3's `doveadm pw -s SCHEME -p secret` (Debian).
    const DOVEADM: [(&str, &str); 4] = [
        (
            "ARGON2ID",
            "$argon2id$v=19$m=65536,t=3,p=1$PxPbANXVvnqwhuuxHCzGhw$JVg+hi4ZZODuhGTwzV6bshHjJVlfYa248UIDqmZxXIA",
        ),
        (
            "ARGON2I",
            "$argon2i$v=19$m=32768,t=4,p=1$o5aWFd9XA09E43cdxDS9VQ$Gx80GkBt0oSjBc8HBAGzEk2MY7Nz5IXjQaqZDyebKXg",
        ),
        (
            "BLF-CRYPT",
            "$2y$05$tZrlwmJV1.E.U8IYZ5Cw7Ok8ZlWbqWgrL6FB3mpIrm8JFzI7CaHqG",
        ),
        (
            "SHA512-CRYPT",
            "$6$rZliekdh/s9yXx8x$WjZ0eTVB5/b6wE5aRACN6JUUH8u.35TQqOL/T1ik5i0x/PIA42QKijuolgDlmXzOeul57ylilK3UM2eDg8edx0",
        ),
    ];

    #[test]
    fn doveadm_hashes_verify_and_their_dummies_cost_the_same() {
        for (name, text) in DOVEADM {
            let scheme = HashScheme::from_dovecot_name(name).unwrap();
            let h = PasswordHash::parse_as(scheme, text).unwrap();
            assert_eq!(PasswordHash::parse(text).unwrap(), h, "{name}: $id$ alone");
            assert!(h.verify(b"secret"), "{name}");
            assert!(!h.verify(b"secreT"), "{name}");
            let dummy = h.cost().dummy();
            assert_eq!(dummy.cost(), h.cost(), "{name}");
            assert_eq!(
                PasswordHash::parse(dummy.as_str()).unwrap().cost(),
                h.cost(),
                "{name}: dummy parses"
            );
            assert!(!dummy.verify(b"secret") && !dummy.verify(b""), "{name}");
        }
    }

    #[test]
    fn made_hashes_verify_in_every_scheme() {
        for scheme in HashScheme::ALL {
            let h = PasswordHash::make(scheme, b"p\xc3\xa4ss").unwrap();
            assert_eq!(h.scheme(), scheme);
            assert!(h.verify(b"p\xc3\xa4ss"), "{scheme}");
            assert!(!h.verify(b"pass"), "{scheme}");
            let form = h.to_dovecot();
            assert!(form.starts_with(&format!("{{{scheme}}}$")), "{form}");
        }
    }

    #[test]
    fn wrong_scheme_and_bad_costs_are_refused() {
        let (_, argon) = DOVEADM[0];
        assert_eq!(
            PasswordHash::parse_as(HashScheme::BlfCrypt, argon),
            Err(HashError::Malformed("BLF-CRYPT"))
        );
        assert!(PasswordHash::parse("$1$md5crypt$xyz").is_err());
        assert!(PasswordHash::parse("secret").is_err());
        assert_eq!(
            PasswordHash::parse("$6$rounds=10$salt$hash").map(|_| ()),
            Err(HashError::CostOutOfRange("SHA512-CRYPT"))
        );
        let greedy = format!(
            "$argon2id$v=19$m={},t=1,p=1$bWFpbGJhZ2R1bW15c2FsdA${}",
            4 * 1024 * 1024,
            "A".repeat(43)
        );
        assert_eq!(
            PasswordHash::parse(&greedy).map(|_| ()),
            Err(HashError::CostOutOfRange("ARGON2ID"))
        );
        assert!(!format!("{:?}", PasswordHash::parse(argon).unwrap()).contains("argon2id$"));
        // Within the memory limit, but 150 passes of 64 MiB: about 10 s.
        let slow = format!(
            "$argon2id$v=19$m=65536,t=150,p=1$bWFpbGJhZ2R1bW15c2FsdA${}",
            "A".repeat(43)
        );
        assert_eq!(
            PasswordHash::parse(&slow).map(|_| ()),
            Err(HashError::CostOutOfRange("ARGON2ID"))
        );
        let near_limit = slow.replace("t=150", "t=30");
        assert!(PasswordHash::parse(&near_limit).is_ok(), "about 2 s: kept");
        assert_eq!(
            PasswordHash::parse(&format!("$2y$15${}", "A".repeat(53))).map(|_| ()),
            Err(HashError::CostOutOfRange("BLF-CRYPT"))
        );
        assert_eq!(
            PasswordHash::parse(&format!("$6$rounds=6000000$salt${}", "A".repeat(86))).map(|_| ()),
            Err(HashError::CostOutOfRange("SHA512-CRYPT"))
        );
    }

    /// A SHA-crypt string cut short (or without its checksum) parses with
    /// the crypt crate but can match no password: it is refused, so that
    /// `--check` and the start-up log name the line.
    #[test]
    fn a_cut_sha_crypt_checksum_is_malformed() {
        let whole = PasswordHash::make(HashScheme::Sha512Crypt, b"pw").unwrap();
        let text = whole.as_str().to_owned();
        assert!(PasswordHash::parse(&text).is_ok());
        for cut in [
            text[..text.len() - 43].to_owned(),
            text[..text.len() - 1].to_owned(),
            "$6$garbage".to_owned(),
            format!("{}!", &text[..text.len() - 1]),
        ] {
            assert!(
                matches!(PasswordHash::parse(&cut), Err(HashError::Malformed(_))),
                "{cut}"
            );
        }
        let sha256 = PasswordHash::make(HashScheme::Sha256Crypt, b"pw").unwrap();
        let t = sha256.as_str();
        assert!(PasswordHash::parse(t).is_ok());
        assert!(PasswordHash::parse(&t[..t.len() - 2]).is_err());
    }

    #[test]
    fn bcrypt_is_not_made_for_passwords_it_would_cut() {
        let long = [b'p'; MAX_BCRYPT_PASSWORD + 1];
        assert!(matches!(
            PasswordHash::make(HashScheme::BlfCrypt, &long),
            Err(HashError::Hashing(m)) if m.contains("72")
        ));
        let h = PasswordHash::make(HashScheme::BlfCrypt, &long[..MAX_BCRYPT_PASSWORD]).unwrap();
        assert!(h.verify(&long[..MAX_BCRYPT_PASSWORD]));
        assert!(PasswordHash::make(HashScheme::Argon2id, &long).is_ok_and(|h| h.verify(&long)));
    }

    #[test]
    fn legacy_schemes_are_read_never_made_and_their_dummies_match_nothing() {
        for scheme in HashScheme::LEGACY {
            assert!(scheme.is_legacy());
            assert_eq!(
                PasswordHash::make(scheme, b"secret"),
                Err(HashError::ReadOnly(scheme.dovecot_name()))
            );
            let cost = HashCost::Fixed { scheme };
            let dummy = cost.dummy();
            assert_eq!(dummy.cost(), cost, "{scheme}");
            assert_eq!(
                PasswordHash::parse_as(scheme, dummy.as_str()).map(|h| h.cost()),
                Ok(cost),
                "{scheme}: the dummy reads as its scheme"
            );
            assert!(!dummy.verify(b"secret") && !dummy.verify(b""), "{scheme}");
            assert!(
                cost.work() < HashCost::Bcrypt { cost: 5 }.work(),
                "{scheme}"
            );
        }
        assert!(HashScheme::ALL.iter().all(|s| !s.is_legacy()));
        // Dovecot's other names.
        for (alias, scheme) in [
            ("md5", HashScheme::Md5Crypt),
            ("SHA1", HashScheme::Sha1),
            ("Hmac-Md5", HashScheme::CramMd5),
        ] {
            assert_eq!(HashScheme::from_dovecot_name(alias), Some(scheme));
        }
    }

    #[test]
    fn work_orders_the_schemes_sensibly() {
        let sha = HashCost::ShaCrypt {
            scheme: HashScheme::Sha512Crypt,
            rounds: 5_000,
        };
        let bcrypt5 = HashCost::Bcrypt { cost: 5 };
        let bcrypt10 = HashCost::Bcrypt { cost: 10 };
        let argon = HashCost::Argon2 {
            scheme: HashScheme::Argon2id,
            memory_kib: 65_536,
            passes: 3,
            lanes: 1,
        };
        assert!(sha.work() < bcrypt5.work() && bcrypt5.work() < bcrypt10.work());
        assert!(bcrypt10.work() < argon.work());
    }
}
