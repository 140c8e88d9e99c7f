//! Durable Maildir++ mail storage with a POP3 maildrop view, a Spam folder and retention.
//!
//! The [`Mailstore`] trait is what a mail server needs from its storage:
//!
//! - **delivery** ([`Mailstore::begin_delivery`] → [`Delivery`]): stream a
//!   message of any size into a user's INBOX or Spam folder; it becomes
//!   visible whole or not at all, and is durable when
//!   [`commit`](Delivery::commit) returns, so an SMTP server can answer `250`;
//!   errors say whether they are temporary ([`Error::is_temporary`]: 4xx) or
//!   not (5xx);
//! - a **POP3 maildrop** ([`Mailstore::open_maildrop`] → [`Maildrop`]): an
//!   exclusive lock ([`Error::InUse`] → `-ERR [IN-USE]`), a listing fixed at
//!   open with exact CRLF sizes and stable unique ids ([`Uid`]), streaming
//!   reads of whole messages and of `TOP` ([`MessageReader`]), deletion marks
//!   applied only by [`commit`](Maildrop::commit);
//! - **retention** ([`Mailstore::expunge_older_than`]): remove what was saved
//!   into a folder before a cut-off (the Spam rule: 7 days), by save time;
//! - folder listing with save times, reading, moving (release from Spam) and
//!   deleting single messages for a web interface.
//! - a durable outbound **relay queue** ([`queue`]): messages with their SMTP
//!   envelopes and DSN parameters, fsynced before the `250`, atomic envelope
//!   updates after each reply of the next hop, a cross-process delivery
//!   lock, and a pure retry schedule.
//!
//! One message for several recipients: begin one [`Delivery`] per recipient,
//! write each chunk of DATA to all of them, and commit each; recipients whose
//! delivery failed get their own reply (4xx/5xx) while the others succeed.
//!
//! Two backends: [`MaildirStore`] (Maildir++ directories that Dovecot and mutt
//! read and write too) and [`MemoryStore`] (tests, embedding). The API is
//! synchronous; async servers call it through `spawn_blocking`, and every
//! object it hands out is `Send + 'static`.
//!
//! # Examples
//!
//! ```
//! use std::io::Read;
//! use std::time::{Duration, SystemTime};
//! use mailbag_mailstore::{Error, Folder, MaildirOptions, MaildirStore, Mailstore, UserName};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = tempfile::tempdir()?;
//! let store = MaildirStore::new(root.path(), MaildirOptions::default())?;
//! let joe = UserName::new("joe")?;
//! store.create_user(&joe)?;
//!
//! // SMTP side: stream DATA into a delivery, commit before answering 250.
//! let mut delivery = store.begin_delivery(&joe, Folder::Inbox)?;
//! delivery.write_chunk(b"From: ann@example.org\nSubject: lunch?\n\n")?;
//! delivery.write_chunk(b"At noon.\n")?;
//! delivery.commit()?;
//!
//! // POP3 side: one session at a time per user.
//! let mut maildrop = store.open_maildrop(&joe)?;
//! assert!(matches!(store.open_maildrop(&joe), Err(Error::InUse)));
//! let (count, octets) = maildrop.stat();
//! assert_eq!((count, octets), (1, 52));
//! let mut top = String::new();
//! maildrop.read_top(1, 0)?.read_to_string(&mut top)?;
//! assert_eq!(top, "From: ann@example.org\r\nSubject: lunch?\r\n\r\n");
//! maildrop.mark_deleted(1)?;
//! maildrop.commit()?; // QUIT: the message is gone, the lock released
//! assert_eq!(store.open_maildrop(&joe)?.stat(), (0, 0));
//!
//! // Retention: Spam saved more than 7 days ago goes.
//! let cutoff = SystemTime::now() - Duration::from_secs(7 * 86400);
//! assert_eq!(store.expunge_all_older_than(Folder::Spam, cutoff)?, 0);
//! # Ok(()) }
//! ```
//!
//! # Limits
//!
//! Per-message size ([`MaildirOptions::max_message_size`], default 64 MiB),
//! optional per-user quota ([`MaildirOptions::user_quota`]), user names of at
//! most [`MAX_USER_NAME_LEN`] bytes; the same for [`MemoryOptions`].

mod crlf;
mod error;
mod keep_alive;
mod maildir;
mod marks;
mod memory;
pub mod queue;
mod store;
mod types;
mod uidl_format;

pub use crlf::{CrlfCounter, MessageReader};
pub use error::Error;
pub use keep_alive::LockKeepAlive;
pub use maildir::{
    DEFAULT_INDEX_LOCK_STALE, DEFAULT_MAILDROP_LOCK_STALE, DEFAULT_QUOTA_FILE_RECOUNT_SIZE,
    DEFAULT_STALE_TMP_AGE, MaildirName, MaildirOptions, MaildirStore, QuotaLookup,
};
pub use memory::{DEFAULT_MAX_MESSAGE_SIZE, MemoryOptions, MemoryStore};
pub use store::{Delivery, Maildrop, Mailstore};
pub use types::{
    CommitSummary, DeliveryReceipt, Folder, MAX_UID_LEN, MAX_USER_NAME_LEN, MaildropEntry,
    MessageInfo, Uid, UserName,
};
pub use uidl_format::UidlFormat;

#[doc(hidden)]
pub use maildir::uidlist::fuzz_uidlist;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
