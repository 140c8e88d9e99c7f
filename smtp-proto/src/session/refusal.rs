//! The replies a [`ServerSession`](super::ServerSession) refuses a command with
//! on its own, without asking the application: a syntax error, a command out
//! of sequence, the recipient or size limit. The application sees the
//! refusals it makes itself as its own answers; these it takes from the
//! session ([`ServerSession::take_refusals`](super::ServerSession::take_refusals)),
//! for logs and metrics.

use alloc::vec::Vec;

use crate::types::Reply;

/// Refusals kept until they are taken: a caller that takes them after each
/// input (the tokio driver does) never comes near it; more are not kept.
pub const MAX_PENDING_REFUSALS: usize = 64;

/// Which command a refusal answered, as far as its line named one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusedCommand {
    /// `HELO`, `EHLO` or `LHLO`.
    Hello,
    /// `MAIL`.
    Mail,
    /// `RCPT`.
    Rcpt,
    /// `DATA` or `BDAT`.
    Data,
    /// The end of a message's data: over the size limit, or a bare LF the
    /// policy refuses (the application was told by
    /// [`Event::MessageAborted`](super::Event::MessageAborted)).
    Message,
    /// Any other command, or a line that names none.
    Other,
}

impl RefusedCommand {
    /// The command a command line names (its first word, any letter case).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_smtp_proto::session::RefusedCommand;
    ///
    /// assert_eq!(RefusedCommand::of_line(b"rcpt TO:<bad address>"), RefusedCommand::Rcpt);
    /// assert_eq!(RefusedCommand::of_line(b"BDAT 10 LAST"), RefusedCommand::Data);
    /// assert_eq!(RefusedCommand::of_line(b"MAILX"), RefusedCommand::Other);
    /// ```
    pub fn of_line(line: &[u8]) -> Self {
        let is = |verb: &[u8]| super::has_verb(line, verb);
        if is(b"HELO") || is(b"EHLO") || is(b"LHLO") {
            Self::Hello
        } else if is(b"MAIL") {
            Self::Mail
        } else if is(b"RCPT") {
            Self::Rcpt
        } else if is(b"DATA") || is(b"BDAT") {
            Self::Data
        } else {
            Self::Other
        }
    }

    /// A lower-case name: `hello`, `mail`, `rcpt`, `data`, `message`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::Mail => "mail",
            Self::Rcpt => "rcpt",
            Self::Data => "data",
            Self::Message => "message",
            Self::Other => "other",
        }
    }
}

/// One command the session refused on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The command refused.
    pub command: RefusedCommand,
    /// The reply sent (4xx or 5xx).
    pub reply: Reply<'static>,
}

/// The refusals not taken yet, at most [`MAX_PENDING_REFUSALS`].
#[derive(Debug, Default)]
pub(super) struct Refusals(Vec<Refusal>);

impl Refusals {
    /// Keeps one, if there is room.
    pub(super) fn push(&mut self, command: RefusedCommand, reply: &Reply<'_>) {
        if self.0.len() < MAX_PENDING_REFUSALS {
            self.0.push(Refusal {
                command,
                reply: reply.clone().into_owned(),
            });
        }
    }

    /// Takes them all, oldest first.
    pub(super) fn take(&mut self) -> Vec<Refusal> {
        core::mem::take(&mut self.0)
    }
}
