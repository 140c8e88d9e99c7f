//! Validated names and the small value types of the API.

use std::fmt;
use std::time::SystemTime;

use crate::Error;

/// The longest accepted user name, in bytes.
pub const MAX_USER_NAME_LEN: usize = 64;

/// A validated user (mailbox owner) name, safe to use as one path component.
///
/// Accepted: 1 to [`MAX_USER_NAME_LEN`] bytes of UTF-8 without `/`, `\`,
/// whitespace or control characters (NUL included), nor the invisible
/// formatting characters that make one name look like another in a log or a
/// page (bidirectional overrides and isolates such as U+202E, zero-width
/// characters, the byte order mark, the soft hyphen), not starting with `.`
/// (so `.`, `..` and Maildir++ folder names are impossible). The name is used
/// as given: case folding, if wanted, is the caller's business.
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::UserName;
///
/// let joe = UserName::new("joe").unwrap();
/// assert_eq!(joe.as_str(), "joe");
/// assert!(UserName::new("../etc").is_err());
/// assert!(UserName::new("a/b").is_err());
/// assert!(UserName::try_from(".Spam").is_err());
/// assert!(UserName::new("joe\u{202e}nimda").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        validate_user(&name)?;
        Ok(UserName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate_user(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::InvalidUserName("empty"));
    }
    if name.len() > MAX_USER_NAME_LEN {
        return Err(Error::InvalidUserName("too long"));
    }
    if name.starts_with('.') {
        return Err(Error::InvalidUserName("starts with '.'"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control() || c.is_whitespace())
    {
        return Err(Error::InvalidUserName(
            "contains '/', '\\', whitespace or a control character",
        ));
    }
    if name.chars().any(is_invisible_format) {
        return Err(Error::InvalidUserName(
            "contains an invisible formatting character (bidirectional or zero-width)",
        ));
    }
    Ok(())
}

/// The format characters (Unicode category Cf) that change how text around
/// them is shown or hide in it: the soft hyphen, the Arabic letter mark, the
/// Mongolian vowel separator, zero-width spaces and joiners, the directional
/// marks, embeddings, overrides and isolates, the invisible operators, the
/// byte order mark and the interlinear annotation characters.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{61c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

impl TryFrom<&str> for UserName {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        UserName::new(s)
    }
}

impl TryFrom<String> for UserName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        UserName::new(s)
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for UserName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A folder of a user's mailbox.
///
/// On disk (Maildir++): `Inbox` is `<root>/<user>/`, `Spam` is `<root>/<user>/.Spam/`.
/// POP3 serves the INBOX ([`Mailstore::open_maildrop`](crate::Mailstore::open_maildrop));
/// a server may offer another folder as a maildrop of its own
/// ([`Mailstore::open_folder_maildrop`](crate::Mailstore::open_folder_maildrop)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Folder {
    /// The INBOX, the POP3 maildrop.
    Inbox,
    /// The Spam folder (Maildir++ `.Spam`, IMAP `Spam`).
    Spam,
}

impl Folder {
    /// All folders, INBOX first.
    pub const ALL: [Folder; 2] = [Folder::Inbox, Folder::Spam];

    /// The IMAP-style name: `INBOX` or `Spam`.
    pub fn name(self) -> &'static str {
        match self {
            Folder::Inbox => "INBOX",
            Folder::Spam => "Spam",
        }
    }
}

impl fmt::Display for Folder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The longest unique id RFC 1939 allows.
pub const MAX_UID_LEN: usize = 70;

/// A message's unique id (POP3 UIDL): 1 to 70 characters in `0x21..=0x7E`,
/// stable across sessions and restarts and never reused in a folder.
///
/// Both backends produce 16 lower-case hex digits: 8 of the per-folder
/// message UID, then 8 of the folder's UID validity, exactly what Dovecot
/// sends with `pop3_uidl_format = %08Xu%08Xv` (its `%X` prints lower case).
/// The Maildir backend gives a message that arrived while its UID index
/// could not be written a provisional UID of 32 hex digits instead (from
/// its file name).
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::Uid;
///
/// let uid = Uid::new("0000000100000001").unwrap();
/// assert_eq!(uid.as_str(), "0000000100000001");
/// assert!(matches!(Uid::new("has space"), Err(mailbag_mailstore::Error::InvalidUid(_))));
/// assert!(Uid::new("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(String);

impl Uid {
    /// Validates a unique id.
    pub fn new(s: impl Into<String>) -> Result<Self, Error> {
        let s = s.into();
        if s.is_empty() || s.len() > MAX_UID_LEN {
            return Err(Error::InvalidUid("not 1 to 70 characters"));
        }
        if !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(Error::InvalidUid("a character outside 0x21 to 0x7E"));
        }
        Ok(Uid(s))
    }

    /// Builds the `%08x%08x` form from a message UID and the folder's UID validity.
    pub(crate) fn from_parts(uid: u32, uidvalidity: u32) -> Self {
        Uid(format!("{uid:08x}{uidvalidity:08x}"))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One message of a folder listing ([`Mailstore::list`](crate::Mailstore::list)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageInfo {
    /// The message's unique id.
    pub uid: Uid,
    /// Exact size in octets with every line ending as CRLF, counting the
    /// CRLF that ends an unterminated last line (what POP3 sends; see
    /// [`crate::CrlfCounter::pop3_size`]).
    pub size: u64,
    /// When the message was saved into this folder (delivery or move).
    pub saved: SystemTime,
    /// Whether the message was read (Maildir `S` flag).
    pub seen: bool,
}

/// One message of a POP3 maildrop listing, numbered from 1 in listing order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaildropEntry {
    /// The message's unique id.
    pub uid: Uid,
    /// Exact size in octets as POP3 sends it ([`crate::CrlfCounter::pop3_size`]).
    pub size: u64,
}

/// What a committed delivery stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryReceipt {
    /// The folder the message went into.
    pub folder: Folder,
    /// Octets stored (as written).
    pub stored_size: u64,
    /// Size as POP3 sends it ([`crate::CrlfCounter::pop3_size`]).
    pub size: u64,
}

/// What [`Maildrop::commit`](crate::Maildrop::commit) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitSummary {
    /// Messages removed.
    pub deleted: usize,
    /// Messages newly flagged as seen (moved from `new/` to `cur/` in a Maildir).
    pub seen: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn user_names() {
        for ok in [
            "joe",
            "ann.smith",
            "a",
            "x_y-z+tag",
            "jörg",
            &"a".repeat(64),
        ] {
            assert!(UserName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".Spam",
            "a/b",
            "/",
            "a\\b",
            "a\0b",
            "a\nb",
            "a b",
            "\t",
            "a\u{7f}",
            "joe\u{202e}nimda",
            "ad\u{200b}min",
            "\u{feff}joe",
            "jo\u{ad}e",
            "a\u{2066}b\u{2069}",
            &"a".repeat(65),
        ] {
            assert!(UserName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uid_format() {
        let u = Uid::from_parts(1, 0x5f00_0000);
        assert_eq!(u.as_str(), "000000015f000000");
        assert!(Uid::new(u.as_str()).is_ok());
        assert!(Uid::new("x".repeat(70)).is_ok());
        assert!(Uid::new("x".repeat(71)).is_err());
        assert!(Uid::new("a\u{7f}").is_err());
    }

    #[test]
    fn folder_names() {
        assert_eq!(Folder::Inbox.to_string(), "INBOX");
        assert_eq!(Folder::Spam.name(), "Spam");
    }

    proptest! {
        #[test]
        fn accepted_user_names_are_single_safe_components(s in "\\PC{0,70}") {
            if let Ok(u) = UserName::new(s.as_str()) {
                let p = std::path::Path::new(u.as_str());
                let comps: Vec<_> = p.components().collect();
                prop_assert_eq!(comps.len(), 1);
                prop_assert!(matches!(comps[0], std::path::Component::Normal(_)));
                prop_assert!(!u.as_str().starts_with('.'));
            }
        }

        #[test]
        fn from_parts_is_always_valid(a: u32, b: u32) {
            let u = Uid::from_parts(a, b);
            prop_assert!(Uid::new(u.as_str()).is_ok());
            prop_assert_eq!(u.as_str().len(), 16);
        }
    }
}
