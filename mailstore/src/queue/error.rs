//! Errors of the queue.

use std::io;
use std::path::PathBuf;

use super::QueueId;

/// Why an envelope file could not be parsed (see [`Envelope::parse`](super::Envelope::parse)).
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::queue::Envelope;
///
/// let err = Envelope::parse(b"mailbag-queue 2\nid nonsense\n").unwrap_err();
/// assert_eq!(err.line, 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", match line { 0 => String::new(), n => format!("envelope line {n}: ") } + reason)]
#[non_exhaustive]
pub struct EnvelopeError {
    /// 1-based line number where parsing stopped (0: the file as a whole).
    pub line: usize,
    /// What was wrong.
    pub reason: &'static str,
}

impl EnvelopeError {
    pub(crate) fn new(line: usize, reason: &'static str) -> Self {
        EnvelopeError { line, reason }
    }
}

/// Everything that can go wrong in a [`Queue`](super::Queue) operation.
///
/// [`QueueError::is_temporary`] tells an SMTP server whether to answer a
/// failed enqueue with 4xx (451) or 5xx (552 for [`QueueError::TooLarge`],
/// 550/554 for [`QueueError::InvalidEnvelope`]).
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::queue::QueueError;
///
/// assert!(QueueError::Locked.is_temporary());
/// assert!(!QueueError::TooLarge { limit: 10 }.is_temporary());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
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
    /// The delivery lock ([`Queue::lock_delivery`](super::Queue::lock_delivery))
    /// or a message's lock ([`Queue::try_lock_message`](super::Queue::try_lock_message))
    /// is held by another process or another holder in this one.
    #[error("locked by another process (the queue's delivery lock, or the message's)")]
    Locked,
    /// No message with this id (never queued, or removed meanwhile).
    #[error("no queued message {0}")]
    NotFound(QueueId),
    /// The message's envelope file cannot be read back.
    #[error("queued message {id} is corrupt: {error}")]
    Corrupt {
        /// The message.
        id: QueueId,
        /// What is wrong with its envelope.
        error: EnvelopeError,
    },
    /// The body exceeds [`QueueOptions::max_message_size`](super::QueueOptions::max_message_size).
    #[error("message exceeds the size limit of {limit} octets")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The envelope breaks a rule or limit (no recipient, too many
    /// recipients, encoded envelope too large).
    #[error("invalid envelope: {0}")]
    InvalidEnvelope(&'static str),
}

impl QueueError {
    /// Whether the condition may go away by itself (SMTP 4xx) rather than
    /// being a property of the message (5xx): everything but
    /// [`QueueError::TooLarge`] and [`QueueError::InvalidEnvelope`].
    pub fn is_temporary(&self) -> bool {
        !matches!(
            self,
            QueueError::TooLarge { .. } | QueueError::InvalidEnvelope(_)
        )
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        QueueError::Io {
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
    fn classification_and_messages() {
        let e = QueueError::io("open", "/q/x", io::Error::other("boom"));
        assert!(e.is_temporary());
        let s = e.to_string();
        assert!(s.contains("/q/x") && s.contains("boom"), "{s}");
        assert!(!QueueError::InvalidEnvelope("no recipient").is_temporary());
        let id: QueueId = "000000000001.1.1".parse().unwrap();
        let c = QueueError::Corrupt {
            id: id.clone(),
            error: EnvelopeError::new(3, "bad number"),
        };
        assert!(c.is_temporary());
        assert_eq!(
            c.to_string(),
            "queued message 000000000001.1.1 is corrupt: envelope line 3: bad number"
        );
        // Line 0: the file as a whole, or the body (a probe read a cut body
        // as "corrupt envelope: line 0").
        assert_eq!(
            EnvelopeError::new(0, "body file missing").to_string(),
            "body file missing"
        );
        assert!(
            QueueError::NotFound(id)
                .to_string()
                .contains("000000000001.1.1")
        );
    }
}
