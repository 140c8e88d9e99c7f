//! The backend-independent API: [`Mailstore`], [`Delivery`] and [`Maildrop`].

use std::fmt;
use std::io::{self, Read, Write};
use std::time::SystemTime;

use crate::{
    CommitSummary, DeliveryReceipt, Error, Folder, LockKeepAlive, MaildropEntry, MessageInfo,
    MessageReader, Uid, UserName,
};

/// A mail store: users, each with an INBOX and a Spam folder.
///
/// Synchronous and thread-safe: file systems block, so an async server calls
/// these methods through `tokio::task::spawn_blocking`. The objects handed out
/// ([`Delivery`], [`Maildrop`], [`MessageReader`]) own what they need
/// (`Send + 'static`), so they can move between such blocking tasks.
///
/// Implemented by [`MaildirStore`](crate::MaildirStore) and
/// [`MemoryStore`](crate::MemoryStore).
///
/// # Examples
///
/// ```
/// use std::io::Read;
/// use mailbag_mailstore::{Folder, Mailstore, MemoryStore, UserName};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let joe = UserName::new("joe")?;
/// store.create_user(&joe)?;
///
/// let mut d = store.begin_delivery(&joe, Folder::Inbox)?;
/// d.write_chunk(b"Subject: hi\n\nhello\n")?;
/// d.commit()?;
///
/// let mut md = store.open_maildrop(&joe)?;
/// assert_eq!(md.entries()[0].size, 22); // CRLF octets
/// let mut text = Vec::new();
/// md.read_message(1)?.read_to_end(&mut text)?;
/// assert_eq!(text, b"Subject: hi\r\n\r\nhello\r\n");
/// md.mark_deleted(1)?;
/// md.commit()?;
/// assert!(store.open_maildrop(&joe)?.entries().is_empty());
/// # Ok(()) }
/// ```
pub trait Mailstore: Send + Sync + fmt::Debug {
    /// Creates a user's mailbox (INBOX and Spam). [`Error::UserExists`] if it exists.
    fn create_user(&self, user: &UserName) -> Result<(), Error>;

    /// Whether the user has a mailbox.
    fn user_exists(&self, user: &UserName) -> Result<bool, Error>;

    /// All users, sorted by name.
    fn users(&self) -> Result<Vec<UserName>, Error>;

    /// Starts storing a message into a user's folder. Write the message (any
    /// size, in chunks) into the returned [`Delivery`], then
    /// [`commit`](Delivery::commit) it; dropping it without commit stores
    /// nothing. Fails with [`Error::UnknownUser`] for a user without a mailbox
    /// (unless the store creates users on demand) and [`Error::QuotaExceeded`]
    /// when the user is already over quota.
    fn begin_delivery(&self, user: &UserName, folder: Folder) -> Result<Box<dyn Delivery>, Error>;

    /// Whether `user` has room for a message of `incoming` octets (`0` when
    /// its size is not known yet): [`Error::QuotaExceeded`] when the user is
    /// at or over quota already, or would be over it with `incoming` more.
    /// An SMTP server asks at RCPT, so that a full mailbox refuses its copy
    /// before the message is sent and the other recipients still get theirs.
    /// A user without a mailbox yet counts as holding nothing. The default
    /// (a store without quotas) always answers `Ok(())`.
    fn check_quota(&self, user: &UserName, incoming: u64) -> Result<(), Error> {
        let _ = (user, incoming);
        Ok(())
    }

    /// Stores a whole message read from `message` (a convenience over
    /// [`begin_delivery`](Mailstore::begin_delivery)).
    fn deliver(
        &self,
        user: &UserName,
        folder: Folder,
        message: &mut dyn Read,
    ) -> Result<DeliveryReceipt, Error> {
        let mut d = self.begin_delivery(user, folder)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match message.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read the message from", "(caller's reader)", e)),
            };
            d.write_chunk(buf.get(..n).unwrap_or_default())?;
        }
        d.commit()
    }

    /// Opens the user's INBOX as a POP3 maildrop with an exclusive lock.
    /// [`Error::InUse`] if another maildrop of that user's INBOX is open, in
    /// this process or another one.
    fn open_maildrop(&self, user: &UserName) -> Result<Box<dyn Maildrop>, Error> {
        self.open_folder_maildrop(user, Folder::Inbox)
    }

    /// Opens one of the user's folders as a POP3 maildrop with an exclusive
    /// lock of its own: a session on the Spam folder (a POP3 login as
    /// `joe/Spam`) and one on the INBOX can run at once; a second one on the
    /// same folder gets [`Error::InUse`].
    fn open_folder_maildrop(
        &self,
        user: &UserName,
        folder: Folder,
    ) -> Result<Box<dyn Maildrop>, Error>;

    /// The messages of a folder, oldest UID first, with size and save time.
    fn list(&self, user: &UserName, folder: Folder) -> Result<Vec<MessageInfo>, Error>;

    /// Reads one message of a folder (CRLF line endings), e.g. for a web view.
    fn read(&self, user: &UserName, folder: Folder, uid: &Uid) -> Result<MessageReader, Error>;

    /// Reads several messages of a folder, one result per id in `uids`
    /// ([`Error::NoSuchMessage`] for an id that is not there), e.g. the
    /// messages shown on one page of a web view. The default calls
    /// [`read`](Mailstore::read) for each; the Maildir backend scans the
    /// folder once for all of them.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use mailbag_mailstore::{Error, Folder, Mailstore, MemoryStore, Uid, UserName};
    ///
    /// # fn main() -> Result<(), Error> {
    /// let store = MemoryStore::new();
    /// let joe = UserName::new("joe")?;
    /// store.create_user(&joe)?;
    /// store.deliver(&joe, Folder::Spam, &mut &b"Subject: a\n\n1\n"[..])?;
    /// let uid = store.list(&joe, Folder::Spam)?[0].uid.clone();
    /// let other = Uid::new("ffffffffffffffff")?;
    /// let mut readers = store.read_many(&joe, Folder::Spam, &[uid, other])?;
    /// assert!(matches!(readers[1], Err(Error::NoSuchMessage)));
    /// let mut text = String::new();
    /// readers.remove(0)?.read_to_string(&mut text).unwrap();
    /// assert_eq!(text, "Subject: a\r\n\r\n1\r\n");
    /// # Ok(()) }
    /// ```
    fn read_many(
        &self,
        user: &UserName,
        folder: Folder,
        uids: &[Uid],
    ) -> Result<Vec<Result<MessageReader, Error>>, Error> {
        if !self.user_exists(user)? {
            return Err(Error::UnknownUser(user.as_str().to_owned()));
        }
        Ok(uids.iter().map(|u| self.read(user, folder, u)).collect())
    }

    /// Moves a message to another folder (e.g. releases it from Spam to the
    /// INBOX). The message gets a new UID there and its save time restarts.
    fn move_message(
        &self,
        user: &UserName,
        from: Folder,
        uid: &Uid,
        to: Folder,
    ) -> Result<(), Error>;

    /// Deletes one message. [`Error::NoSuchMessage`] if it is not there.
    fn delete(&self, user: &UserName, folder: Folder, uid: &Uid) -> Result<(), Error>;

    /// Removes the messages saved into `folder` before `cutoff` (by the time
    /// they were saved into that folder, never their Date header) and returns
    /// how many were removed.
    fn expunge_older_than(
        &self,
        user: &UserName,
        folder: Folder,
        cutoff: SystemTime,
    ) -> Result<usize, Error>;

    /// Removes what deliveries interrupted by a crash left in `user`'s
    /// folders and returns how many files went: for a Maildir, files in
    /// `tmp/` (INBOX and Spam) older than
    /// [`MaildirOptions::stale_tmp_age`](crate::MaildirOptions::stale_tmp_age),
    /// which opening a maildrop also removes; for a user who never opens
    /// one, a periodic sweep calls this. The default removes nothing (a store
    /// with no such leftovers).
    fn remove_interrupted_deliveries(&self, user: &UserName) -> Result<usize, Error> {
        let _ = user;
        Ok(0)
    }

    /// [`expunge_older_than`](Mailstore::expunge_older_than) for every user;
    /// the total removed.
    fn expunge_all_older_than(&self, folder: Folder, cutoff: SystemTime) -> Result<usize, Error> {
        let mut n = 0;
        for u in self.users()? {
            n += self.expunge_older_than(&u, folder, cutoff)?;
        }
        Ok(n)
    }
}

/// A message being stored. Write it with [`Write`] or
/// [`write_chunk`](Delivery::write_chunk), then [`commit`](Delivery::commit).
///
/// Dropping an uncommitted delivery removes everything written. After an error
/// (size limit, I/O) the delivery is dead: later writes and the commit fail.
///
/// # Examples
///
/// One message for two recipients, streamed chunk by chunk:
///
/// ```
/// use mailbag_mailstore::{Folder, Mailstore, MemoryStore, UserName};
///
/// # fn main() -> Result<(), mailbag_mailstore::Error> {
/// let store = MemoryStore::new();
/// let (joe, ann) = (UserName::new("joe")?, UserName::new("ann")?);
/// store.create_user(&joe)?;
/// store.create_user(&ann)?;
/// let mut deliveries = vec![
///     store.begin_delivery(&joe, Folder::Inbox)?,
///     store.begin_delivery(&ann, Folder::Spam)?,
/// ];
/// for chunk in [&b"Subject: hi\r\n\r\n"[..], b"hello\r\n"] {
///     for d in &mut deliveries {
///         d.write_chunk(chunk)?;
///     }
/// }
/// for d in deliveries {
///     let receipt = d.commit()?; // each recipient gets its own result
///     assert_eq!(receipt.size, 22);
/// }
/// # Ok(()) }
/// ```
pub trait Delivery: Write + Send + fmt::Debug {
    /// Appends a chunk of the message, with the crate's error type.
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), Error>;

    /// Octets written so far.
    fn written(&self) -> u64;

    /// Ends the writing: what was written is made durable where it is not
    /// yet visible, and what writing held is released (for the Maildir
    /// backend: the buffer flushed, the file in `tmp/` fsynced and closed).
    /// A server that writes every recipient's copy before committing any
    /// (so that a failure leaves none behind) seals each copy once written,
    /// and then holds no file descriptor per recipient. Both stores of this
    /// crate refuse a write after `seal` with [`Error::DeliveryFailed`], and
    /// their [`commit`](Delivery::commit) seals first when this was not
    /// called; on error the delivery is given up, as for a failed write. The
    /// default does nothing, for backends that hold nothing per delivery.
    fn seal(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Makes the message visible, durably (for the Maildir backend: file
    /// fsynced, renamed from `tmp/` into `new/`, directory fsynced) before
    /// returning.
    fn commit(self: Box<Self>) -> Result<DeliveryReceipt, Error>;
}

/// A POP3 view of a user's INBOX, locked for this session.
///
/// Message numbers start at 1 and are fixed at open; mail arriving later is
/// not visible. Deletions are marks until [`commit`](Maildrop::commit);
/// dropping the maildrop without commit changes nothing and releases the lock.
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::{Error, Folder, Mailstore, MemoryStore, UserName};
///
/// # fn main() -> Result<(), Error> {
/// let store = MemoryStore::new();
/// let joe = UserName::new("joe")?;
/// store.create_user(&joe)?;
/// for body in [&b"Subject: 1\n\none\n"[..], b"Subject: 2\n\ntwo\n"] {
///     store.deliver(&joe, Folder::Inbox, &mut &body[..])?;
/// }
/// let mut md = store.open_maildrop(&joe)?;       // after PASS
/// assert_eq!(md.stat(), (2, 38));                // STAT
/// md.mark_deleted(1)?;                           // DELE 1
/// assert!(matches!(md.read_message(1), Err(Error::MessageDeleted)));
/// assert_eq!(md.stat(), (1, 19));
/// md.unmark_all();                               // RSET
/// md.mark_deleted(2)?;
/// let summary = md.commit()?;                    // QUIT
/// assert_eq!(summary.deleted, 1);
/// assert_eq!(store.open_maildrop(&joe)?.stat(), (1, 19));
/// # Ok(()) }
/// ```
pub trait Maildrop: Send + fmt::Debug {
    /// All messages, number `n` at index `n - 1`, deleted ones included.
    fn entries(&self) -> &[MaildropEntry];

    /// Whether message `n` is marked as deleted.
    fn is_deleted(&self, n: usize) -> bool;

    /// A failure while opening that did not keep the maildrop from being
    /// served, for the caller to log: the UID index could not be rewritten
    /// (a full disk), so the UIDs of messages new to it are provisional
    /// (derived from their file names; stable, and never a UID handed out
    /// otherwise); or the index was unreadable and was replaced, so every
    /// UID of the folder changed. `None` by default.
    fn index_error(&self) -> Option<&Error> {
        None
    }

    /// The handle that keeps this maildrop's lock from turning stale, for a
    /// store whose lock is a file that another host may take over when it
    /// is not refreshed ([`MaildirStore`](crate::MaildirStore)): call
    /// [`LockKeepAlive::refresh`] every [`LockKeepAlive::every`] while the
    /// session lasts. `None` (the default) for a lock that needs nothing.
    fn lock_keep_alive(&self) -> Option<LockKeepAlive> {
        None
    }

    /// Count and total size of the messages not marked as deleted (POP3 `STAT`).
    fn stat(&self) -> (usize, u64) {
        self.entries()
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.is_deleted(i + 1))
            .fold((0, 0), |(c, s), (_, e)| (c + 1, s + e.size))
    }

    /// The entry of message `n`, unless out of range or deleted.
    fn entry(&self, n: usize) -> Result<&MaildropEntry, Error> {
        if self.is_deleted(n) {
            return Err(Error::MessageDeleted);
        }
        n.checked_sub(1)
            .and_then(|i| self.entries().get(i))
            .ok_or(Error::NoSuchMessage)
    }

    /// Streams message `n` (CRLF line endings: exactly `size` octets, two
    /// fewer if its last line has no line end, which the POP3 encoder adds)
    /// and remembers it as seen (POP3 `RETR`), which commit records.
    fn read_message(&mut self, n: usize) -> Result<MessageReader, Error>;

    /// Streams the header, blank line and `body_lines` body lines of message
    /// `n` (POP3 `TOP`); does not mark the message as seen.
    fn read_top(&mut self, n: usize, body_lines: u64) -> Result<MessageReader, Error>;

    /// Marks message `n` as deleted (POP3 `DELE`).
    fn mark_deleted(&mut self, n: usize) -> Result<(), Error>;

    /// Removes every deletion mark (POP3 `RSET`).
    fn unmark_all(&mut self);

    /// Applies the session (POP3 `QUIT` in the UPDATE state): removes marked
    /// messages, records retrieved ones as seen, releases the lock. A store
    /// whose lock can be taken over (the Maildir store's, once it has gone
    /// unrefreshed past its stale time) fails here, changing nothing, when
    /// the lock is no longer this maildrop's.
    fn commit(self: Box<Self>) -> Result<CommitSummary, Error>;
}
