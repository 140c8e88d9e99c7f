//! The login form's CSRF token, bound to the server: the time it was issued,
//! a random nonce, and an HMAC-SHA-256 of both under a random key the server
//! made at start-up. A client cannot make one up (a well-formed value it
//! planted in the login cookie and the form is refused), no two tokens are
//! alike (so one client's token is never another's cookie, even issued in
//! the same second), and a token ends when its cookie would
//! (`web.session_idle_timeout`). A restart makes a new key, so open login
//! forms must be reloaded.
//!
//! Sans-IO: the caller passes the time (seconds since the Unix epoch).

use std::time::Duration;

use super::session::RngError;
use crate::constant_time::constant_time_eq;
use crate::signing_key::{KEY_BYTES, MAC_BYTES, SigningKey, hex};

/// Octets of a token's random nonce.
pub const NONCE_BYTES: usize = 16;

/// Hex digits of a token: the issue time (16), the nonce (32) and the MAC.
pub const TOKEN_LEN: usize = 16 + NONCE_BYTES * 2 + MAC_BYTES * 2;

/// The server's key for login tokens. `Debug` does not show it.
#[derive(Clone, Debug)]
pub struct LoginTokenKey(SigningKey);

impl LoginTokenKey {
    /// A fresh key from the OS random number generator.
    pub fn random() -> Result<LoginTokenKey, RngError> {
        SigningKey::random()
            .map(LoginTokenKey)
            .map_err(|e| RngError::new(e.to_string()))
    }

    /// The key made of these bytes (tests).
    pub fn from_bytes(k: [u8; KEY_BYTES]) -> LoginTokenKey {
        LoginTokenKey(SigningKey::from_bytes(k))
    }

    /// A token issued at `now` (seconds since the Unix epoch), with a fresh
    /// random nonce: lower-case hex.
    ///
    /// # Errors
    ///
    /// [`RngError`] when the OS has no randomness to give.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mailbagd::web::login_token::LoginTokenKey;
    ///
    /// let key = LoginTokenKey::from_bytes([7; 32]);
    /// let token = key.issue(1_000).unwrap();
    /// let max_age = Duration::from_secs(60);
    /// assert!(key.verify(&token, 1_030, max_age));
    /// assert!(!key.verify(&token, 1_061, max_age)); // too old
    /// assert!(!LoginTokenKey::from_bytes([8; 32]).verify(&token, 1_030, max_age));
    /// assert_ne!(token, key.issue(1_000).unwrap(), "never the same twice");
    /// ```
    pub fn issue(&self, now: u64) -> Result<String, RngError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| RngError::new(e.to_string()))?;
        Ok(self.issue_with(now, &nonce))
    }

    /// The token of `now` and `nonce`.
    fn issue_with(&self, now: u64, nonce: &[u8; NONCE_BYTES]) -> String {
        let mut signed = [0u8; 8 + NONCE_BYTES];
        signed[..8].copy_from_slice(&now.to_be_bytes());
        signed[8..].copy_from_slice(nonce);
        format!("{}{}", hex(&signed), hex(&self.0.mac(&signed)))
    }

    /// Whether `token` was issued by this key no longer than `max_age`
    /// before `now` (and not after it).
    pub fn verify(&self, token: &str, now: u64, max_age: Duration) -> bool {
        if token.len() != TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let Some(issued) = token
            .get(..16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        else {
            return false;
        };
        let mut nonce = [0u8; NONCE_BYTES];
        for (i, n) in nonce.iter_mut().enumerate() {
            let Some(b) = token
                .get(16 + 2 * i..18 + 2 * i)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            else {
                return false;
            };
            *n = b;
        }
        let expected = self.issue_with(issued, &nonce);
        if !constant_time_eq(expected.as_bytes(), token.as_bytes()) {
            return false;
        }
        issued <= now && now - issued <= max_age.as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(100);

    #[test]
    fn own_tokens_verify_until_they_expire() {
        let key = LoginTokenKey::from_bytes([1; KEY_BYTES]);
        let t = key.issue(5_000).unwrap();
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(key.verify(&t, 5_000, AGE));
        assert!(key.verify(&t, 5_100, AGE));
        assert!(!key.verify(&t, 5_101, AGE));
        // Issued "in the future": refused.
        assert!(!key.verify(&t, 4_999, AGE));
    }

    #[test]
    fn made_up_and_altered_tokens_are_refused() {
        let key = LoginTokenKey::from_bytes([1; KEY_BYTES]);
        let t = key.issue(5_000).unwrap();
        // Another key's token, a later time with the old MAC, junk.
        assert!(!key.verify(
            &LoginTokenKey::from_bytes([2; 32]).issue(5_000).unwrap(),
            5_000,
            AGE
        ));
        let later = format!("{}{}", hex(&5_050u64.to_be_bytes()), &t[16..]);
        assert!(!key.verify(&later, 5_060, AGE));
        for bad in [
            String::new(),
            "0".repeat(TOKEN_LEN),
            "a".repeat(32),
            t.to_uppercase(),
            format!("{t}0"),
            t[..TOKEN_LEN - 1].to_owned(),
        ] {
            assert!(!key.verify(&bad, 5_000, AGE), "{bad}");
        }
    }
}
