//! Per-user spam settings and the routing decision made from them and a verdict.

use crate::score::{Score, Verdict};
use crate::tagger::HeaderAction;

/// Where a message is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Folder {
    /// The INBOX (the folder POP3 serves).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "INBOX", alias = "inbox", alias = "Inbox")
    )]
    Inbox,
    /// The Spam folder (Maildir++ `.Spam`).
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "Spam", alias = "spam"))]
    Spam,
}

/// One user's spam settings. With the `serde` feature, missing fields take their defaults
/// when deserialized.
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::{Folder, UserSettings};
///
/// let s = UserSettings::default();
/// assert!(s.scanning && s.subject_prefix);
/// assert_eq!(s.spam_folder, Folder::Spam);
///
/// // With the `serde` feature:
/// # #[cfg(feature = "serde")] {
/// let s: UserSettings = toml::from_str("spam_folder = \"INBOX\"\nthreshold = 6.5").unwrap();
/// assert!(s.scanning && s.subject_prefix);
/// assert_eq!(s.spam_folder, Folder::Inbox);
/// assert_eq!(s.threshold.to_string(), "6.5");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct UserSettings {
    /// Scan this user's mail. Default: `true`. Off means no scan and no added headers
    /// (incoming `X-Spam-*` headers are still removed, so nobody can forge a verdict).
    pub scanning: bool,
    /// Tag the Subject of spam. Default: `true`. Spam is tagged in either folder, so that a
    /// message released from Spam to INBOX can be untagged ([`HeaderAction::Untag`]).
    pub subject_prefix: bool,
    /// Where spam goes: [`Folder::Inbox`] or [`Folder::Spam`]. Default: `Spam`.
    pub spam_folder: Folder,
    /// The threshold: spam when `score >= threshold`. Default: 5.0.
    pub threshold: Score,
}

impl Default for UserSettings {
    fn default() -> Self {
        UserSettings {
            scanning: true,
            subject_prefix: true,
            spam_folder: Folder::Spam,
            threshold: Score::DEFAULT_THRESHOLD,
        }
    }
}

/// What to do with one message for one user: the folder and the header rewrite.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Decision {
    /// The folder to deliver to.
    pub folder: Folder,
    /// The header rewrite to apply while delivering (with [`crate::HeaderRewriter`]).
    pub action: HeaderAction,
    /// Whether the message is spam: `None` when it was not scanned.
    pub is_spam: Option<bool>,
}

/// Decides the folder and the header rewrite from a user's settings and a verdict
/// (`None` when the message was not scanned, e.g. spamd down with the fail-open policy).
/// The score is compared with the user's [`UserSettings::threshold`], not with the
/// threshold spamd reports.
///
/// | settings / verdict | folder | action |
/// |---|---|---|
/// | scanning off (any verdict) | INBOX | [`HeaderAction::Strip`] |
/// | no verdict | INBOX | [`HeaderAction::Unscanned`] |
/// | ham (`score < threshold`) | INBOX | [`HeaderAction::Mark`], no subject tag |
/// | spam | `spam_folder` | [`HeaderAction::Mark`], subject tagged when `subject_prefix` |
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::{decide, Folder, HeaderAction, Score, UserSettings, Verdict};
///
/// let spam = Verdict::new(Score::from_tenths(73), vec![]);
/// let d = decide(&UserSettings::default(), Some(&spam));
/// assert_eq!(d.folder, Folder::Spam);
/// assert!(matches!(d.action, HeaderAction::Mark { tag_subject: true, .. }));
///
/// let d = decide(&UserSettings::default(), None);
/// assert_eq!((d.folder, d.action), (Folder::Inbox, HeaderAction::Unscanned));
/// ```
pub fn decide(settings: &UserSettings, verdict: Option<&Verdict>) -> Decision {
    if !settings.scanning {
        return Decision {
            folder: Folder::Inbox,
            action: HeaderAction::Strip,
            is_spam: None,
        };
    }
    let Some(verdict) = verdict else {
        return Decision {
            folder: Folder::Inbox,
            action: HeaderAction::Unscanned,
            is_spam: None,
        };
    };
    let spam = verdict.is_spam(settings.threshold);
    Decision {
        folder: if spam {
            settings.spam_folder
        } else {
            Folder::Inbox
        },
        action: HeaderAction::Mark {
            verdict: verdict.clone(),
            required: settings.threshold,
            tag_subject: spam && settings.subject_prefix,
        },
        is_spam: Some(spam),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::RuleName;
    use crate::tagger::{RewriteOptions, rewrite_message};

    fn v(tenths: i32) -> Verdict {
        Verdict::new(
            Score::from_tenths(tenths),
            vec![RuleName::new("X").unwrap()],
        )
    }

    #[test]
    fn defaults() {
        let s = UserSettings::default();
        assert!(s.scanning);
        assert!(s.subject_prefix);
        assert_eq!(s.spam_folder, Folder::Spam);
        assert_eq!(s.threshold, Score::from_tenths(50));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trip_and_errors() {
        let parsed: UserSettings = toml::from_str("").unwrap();
        assert_eq!(parsed, UserSettings::default());
        let s = UserSettings {
            scanning: false,
            subject_prefix: false,
            spam_folder: Folder::Inbox,
            threshold: Score::from_tenths(-15),
        };
        let text = toml::to_string(&s).unwrap();
        assert!(text.contains("spam_folder = \"INBOX\""), "{text}");
        assert_eq!(toml::from_str::<UserSettings>(&text).unwrap(), s);
        assert!(toml::from_str::<UserSettings>("threshold = nan").is_err());
        assert!(toml::from_str::<UserSettings>("spam_folder = \"Trash\"").is_err());
        assert!(toml::from_str::<UserSettings>("scaning = true").is_err());
        let int: UserSettings = toml::from_str("threshold = 6").unwrap();
        assert_eq!(int.threshold, Score::from_tenths(60));
        let lower: UserSettings = toml::from_str("spam_folder = \"spam\"").unwrap();
        assert_eq!(lower.spam_folder, Folder::Spam);
    }

    #[test]
    fn scanning_off_adds_nothing() {
        let off = UserSettings {
            scanning: false,
            ..UserSettings::default()
        };
        let d = decide(&off, Some(&v(1000)));
        assert_eq!(d.folder, Folder::Inbox);
        assert_eq!(d.action, HeaderAction::Strip);
        assert_eq!(d.is_spam, None);
        let msg = b"Subject: hi\r\n\r\nbody";
        let out = rewrite_message(msg, d.action, RewriteOptions::default()).unwrap();
        assert_eq!(out, msg);
    }

    #[test]
    fn ham_spam_and_threshold() {
        let s = UserSettings::default();
        let d = decide(&s, Some(&v(49)));
        assert_eq!(d.folder, Folder::Inbox);
        assert_eq!(d.is_spam, Some(false));
        assert!(matches!(
            d.action,
            HeaderAction::Mark {
                tag_subject: false,
                ..
            }
        ));
        let d = decide(&s, Some(&v(50)));
        assert_eq!(d.folder, Folder::Spam);
        assert_eq!(d.is_spam, Some(true));
        let strict = UserSettings {
            threshold: Score::from_tenths(30),
            ..UserSettings::default()
        };
        assert_eq!(decide(&strict, Some(&v(35))).folder, Folder::Spam);
    }

    #[test]
    fn spam_to_inbox_without_prefix() {
        let s = UserSettings {
            subject_prefix: false,
            spam_folder: Folder::Inbox,
            ..UserSettings::default()
        };
        let d = decide(&s, Some(&v(80)));
        assert_eq!(d.folder, Folder::Inbox);
        assert_eq!(d.is_spam, Some(true));
        let out = rewrite_message(b"Subject: hi\n\n", d.action, RewriteOptions::default()).unwrap();
        assert!(out.starts_with(b"Subject: hi\nX-Spam-Flag: YES\n"));
    }
}
