//! The error type shared by every backend.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in a [`Mailstore`](crate::Mailstore) operation.
///
/// [`Error::is_temporary`] tells an SMTP server whether to answer with a 4xx
/// (try again later) or a 5xx (give up) reply; a POP3 server maps
/// [`Error::InUse`] to `-ERR [IN-USE]` and other errors to `-ERR [SYS/TEMP]`.
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::Error;
///
/// let e = Error::MessageTooLarge { limit: 1024 };
/// assert!(!e.is_temporary()); // SMTP: 552 5.3.4
/// assert!(Error::InUse.is_temporary());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The user name is not acceptable (see [`UserName`](crate::UserName)).
    #[error("invalid user name: {0}")]
    InvalidUserName(&'static str),
    /// The user has no mailbox (and the store does not create users on demand).
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// [`Mailstore::create_user`](crate::Mailstore::create_user) for a user that exists.
    #[error("user {0:?} already exists")]
    UserExists(String),
    /// The maildrop is locked by another session (this process or another one).
    #[error("maildrop is in use by another session")]
    InUse,
    /// The message exceeds the per-message size limit (in octets as written).
    #[error("message exceeds the size limit of {limit} octets")]
    MessageTooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// Storing the message would exceed the user's quota.
    #[error("quota of {quota} octets exceeded")]
    QuotaExceeded {
        /// The configured quota.
        quota: u64,
        /// Whether the store was configured to report this as a temporary failure.
        temporary: bool,
    },
    /// A string that is not a valid unique id (see [`Uid`](crate::Uid)).
    #[error("invalid unique id: {0}")]
    InvalidUid(&'static str),
    /// No message with this number or UID (or it was removed by someone else).
    #[error("no such message")]
    NoSuchMessage,
    /// The message is marked as deleted in this maildrop session.
    #[error("message is marked as deleted")]
    MessageDeleted,
    /// A delivery was used after it failed (the message is discarded).
    #[error("delivery already failed; the message was discarded")]
    DeliveryFailed,
    /// The operating system reported an error.
    #[error("I/O error while trying to {op} {path:?}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Whether the condition may go away by itself, so that the sender should
    /// retry later (SMTP 4xx: 451 for I/O, 452 for storage) rather than give up (5xx).
    ///
    /// A local fault is never a reason to refuse a message for good: every
    /// error is temporary except a verdict about the message or the request
    /// itself — [`Error::MessageTooLarge`], [`Error::QuotaExceeded`] unless the
    /// store is configured to report it as temporary (`quota_tempfail`),
    /// [`Error::UnknownUser`], [`Error::InvalidUserName`], [`Error::UserExists`],
    /// [`Error::InvalidUid`], [`Error::NoSuchMessage`] and [`Error::MessageDeleted`].
    /// [`Error::Io`] (permissions, EIO, a full disk, a broken Maildir),
    /// [`Error::InUse`] and [`Error::DeliveryFailed`] are temporary.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::QuotaExceeded { temporary, .. } => *temporary,
            Error::MessageTooLarge { .. }
            | Error::UnknownUser(_)
            | Error::InvalidUserName(_)
            | Error::UserExists(_)
            | Error::InvalidUid(_)
            | Error::NoSuchMessage
            | Error::MessageDeleted => false,
            Error::Io { .. } | Error::InUse | Error::DeliveryFailed => true,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_classification() {
        assert!(Error::io("open", "/x", io::Error::other("boom")).is_temporary());
        assert!(Error::InUse.is_temporary());
        assert!(
            Error::QuotaExceeded {
                quota: 1,
                temporary: true
            }
            .is_temporary()
        );
        assert!(
            !Error::QuotaExceeded {
                quota: 1,
                temporary: false
            }
            .is_temporary()
        );
        assert!(!Error::UnknownUser("joe".into()).is_temporary());
        assert!(!Error::MessageTooLarge { limit: 3 }.is_temporary());
        assert!(!Error::InvalidUserName("empty").is_temporary());
        // A delivery that failed for a local reason is retried, not refused.
        assert!(Error::DeliveryFailed.is_temporary());
        let full = io::Error::from(io::ErrorKind::StorageFull);
        assert!(Error::io("write", "/x", full).is_temporary());
    }

    #[test]
    fn io_error_message_names_the_path() {
        let e = Error::io("open", "/some/where", io::Error::other("boom"));
        let s = e.to_string();
        assert!(
            s.contains("/some/where") && s.contains("open") && s.contains("boom"),
            "{s}"
        );
    }
}
