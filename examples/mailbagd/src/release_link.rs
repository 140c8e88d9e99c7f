//! The release links of the weekly Spam digest: each names one message of
//! one user's Spam folder and carries an HMAC of (user, message, expiry)
//! under the server's persistent [`SigningKey`], so nobody can make one up
//! or point it at another message. A link expires when its message is
//! deleted from Spam (saved time plus `spam_retention`).
//!
//! Opening a link only shows a confirmation page; the release itself is the
//! confirming POST (link previewers and scanners only GET).
//!
//! Sans-IO: the caller passes the time (seconds since the Unix epoch).

use mailbag_mailstore::{Uid, UserName};

use crate::constant_time::constant_time_eq;
use crate::signing_key::{SigningKey, hex};

/// One message of one user, until `expires`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseLink {
    /// The mailbox.
    pub user: UserName,
    /// The message's id in the user's Spam folder.
    pub uid: Uid,
    /// Seconds since the Unix epoch after which the link is dead.
    pub expires: u64,
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl ReleaseLink {
    fn message(&self) -> Vec<u8> {
        format!(
            "mailbag-release\0{}\0{}\0{}",
            self.user.as_str(),
            self.uid.as_str(),
            self.expires
        )
        .into_bytes()
    }

    /// The link's signature: 32 hex digits.
    pub fn sign(&self, key: &SigningKey) -> String {
        hex(&key.mac(&self.message()))
    }

    /// The query string of the link (`u=…&m=…&e=…&t=…`, percent-encoded).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_mailstore::{Uid, UserName};
    /// use mailbagd::release_link::ReleaseLink;
    /// use mailbagd::signing_key::SigningKey;
    ///
    /// let key = SigningKey::from_bytes([3; 32]);
    /// let link = ReleaseLink {
    ///     user: UserName::new("joe").unwrap(),
    ///     uid: Uid::new("7-1700000000").unwrap(),
    ///     expires: 2_000,
    /// };
    /// let q = link.query(&key);
    /// assert!(q.starts_with("u=joe&m=7-1700000000&e=2000&t="));
    /// let t = &q[q.len() - 32..];
    /// assert_eq!(ReleaseLink::verify(&key, "joe", "7-1700000000", 2_000, t, 1_999), Some(link.clone()));
    /// assert_eq!(ReleaseLink::verify(&key, "joe", "7-1700000000", 2_000, t, 2_001), None, "expired");
    /// assert_eq!(ReleaseLink::verify(&key, "ann", "7-1700000000", 2_000, t, 1_999), None);
    /// ```
    pub fn query(&self, key: &SigningKey) -> String {
        format!(
            "u={}&m={}&e={}&t={}",
            encode(self.user.as_str()),
            encode(self.uid.as_str()),
            self.expires,
            self.sign(key)
        )
    }

    /// The link these fields make, if `token` is its signature under `key`
    /// and it has not expired at `now`.
    pub fn verify(
        key: &SigningKey,
        user: &str,
        uid: &str,
        expires: u64,
        token: &str,
        now: u64,
    ) -> Option<ReleaseLink> {
        let link = ReleaseLink {
            user: UserName::new(user).ok()?,
            uid: Uid::new(uid).ok()?,
            expires,
        };
        let ok = constant_time_eq(link.sign(key).as_bytes(), token.as_bytes());
        (ok && now <= expires).then_some(link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn altered_links_are_refused() {
        let key = SigningKey::from_bytes([9; 32]);
        let link = ReleaseLink {
            user: UserName::new("joe").unwrap(),
            uid: Uid::new("12-99").unwrap(),
            expires: 10_000,
        };
        let t = link.sign(&key);
        assert!(ReleaseLink::verify(&key, "joe", "12-99", 10_000, &t, 10_000).is_some());
        let other = SigningKey::from_bytes([8; 32]);
        for (u, m, e, tok, k) in [
            ("joe", "13-99", 10_000, t.as_str(), &key),
            ("joe", "12-99", 10_001, t.as_str(), &key),
            ("Joe", "12-99", 10_000, t.as_str(), &key),
            ("joe", "12-99", 10_000, "", &key),
            ("joe", "12-99", 10_000, &t[..31], &key),
            ("joe", "12-99", 10_000, t.as_str(), &other),
            ("../x", "12-99", 10_000, t.as_str(), &key),
            ("joe", "", 10_000, t.as_str(), &key),
        ] {
            assert!(
                ReleaseLink::verify(k, u, m, e, tok, 0).is_none(),
                "{u} {m} {e} {tok}"
            );
        }
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
