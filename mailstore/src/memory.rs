//! The in-memory backend, for tests and embedding.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Cursor, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::marks::Marks;
use crate::{
    CommitSummary, CrlfCounter, Delivery, DeliveryReceipt, Error, Folder, Maildrop, MaildropEntry,
    Mailstore, MessageInfo, MessageReader, Uid, UserName,
};

/// Default per-message size limit of both backends: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 * 1024 * 1024;

/// Options of a [`MemoryStore`].
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::{MemoryOptions, MemoryStore};
///
/// let mut opts = MemoryOptions::default();
/// opts.user_quota = Some(10 * 1024 * 1024);
/// let store = MemoryStore::with_options(opts);
/// # let _ = store;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryOptions {
    /// Largest message accepted, in octets as written. Default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`] (64 MiB).
    pub max_message_size: u64,
    /// Total octets a user may hold over all folders; `None` (the default) for no quota.
    pub user_quota: Option<u64>,
    /// Report a full quota as temporary (SMTP 452) instead of permanent (552).
    /// Default `false`, like Dovecot's `quota_full_tempfail = no`.
    pub quota_tempfail: bool,
    /// Create a user's mailbox on first delivery instead of failing with
    /// [`Error::UnknownUser`]. Default `false`.
    pub auto_create_users: bool,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            user_quota: None,
            quota_tempfail: false,
            auto_create_users: false,
        }
    }
}

#[derive(Clone)]
struct Bytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

struct MemMessage {
    uid: u32,
    data: Bytes,
    size: u64,
    saved: SystemTime,
    seen: bool,
}

struct MemFolder {
    uidvalidity: u32,
    next_uid: u32,
    messages: Vec<MemMessage>,
}

impl MemFolder {
    fn uid_of(&self, m: &MemMessage) -> Uid {
        Uid::from_parts(m.uid, self.uidvalidity)
    }

    fn position(&self, uid: &Uid) -> Option<usize> {
        self.messages.iter().position(|m| &self.uid_of(m) == uid)
    }

    fn push(&mut self, data: Bytes, size: u64, saved: SystemTime, seen: bool) {
        let uid = self.next_uid;
        self.next_uid = self.next_uid.saturating_add(1);
        self.messages.push(MemMessage {
            uid,
            data,
            size,
            saved,
            seen,
        });
    }
}

struct MemUser {
    inbox: MemFolder,
    spam: MemFolder,
    /// The folders open as a maildrop.
    locked: Vec<Folder>,
}

impl MemUser {
    fn folder(&mut self, f: Folder) -> &mut MemFolder {
        match f {
            Folder::Spam => &mut self.spam,
            _ => &mut self.inbox,
        }
    }

    fn usage(&self) -> u64 {
        [&self.inbox, &self.spam]
            .iter()
            .flat_map(|f| f.messages.iter())
            .map(|m| m.data.0.len() as u64)
            .sum()
    }
}

#[derive(Default)]
struct State {
    users: BTreeMap<UserName, MemUser>,
    next_uidvalidity: u32,
}

impl State {
    fn new_folder(&mut self) -> MemFolder {
        self.next_uidvalidity = self.next_uidvalidity.wrapping_add(1).max(1);
        MemFolder {
            uidvalidity: self.next_uidvalidity,
            next_uid: 1,
            messages: Vec::new(),
        }
    }

    fn add_user(&mut self, user: &UserName) {
        let inbox = self.new_folder();
        let spam = self.new_folder();
        self.users.insert(
            user.clone(),
            MemUser {
                inbox,
                spam,
                locked: Vec::new(),
            },
        );
    }

    fn user(&mut self, user: &UserName) -> Result<&mut MemUser, Error> {
        self.users
            .get_mut(user)
            .ok_or_else(|| Error::UnknownUser(user.to_string()))
    }
}

struct Shared {
    state: Mutex<State>,
    options: MemoryOptions,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn quota_error(&self, quota: u64) -> Error {
        Error::QuotaExceeded {
            quota,
            temporary: self.options.quota_tempfail,
        }
    }
}

/// A [`Mailstore`] that keeps everything in memory. Cheap to clone (clones
/// share the same mailboxes). Save times come from the system clock.
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::{Folder, Mailstore, MemoryStore, UserName};
///
/// # fn main() -> Result<(), mailbag_mailstore::Error> {
/// let store = MemoryStore::new();
/// let ann = UserName::new("ann")?;
/// store.create_user(&ann)?;
/// store.deliver(&ann, Folder::Spam, &mut &b"Subject: buy now\r\n\r\n!\r\n"[..])?;
/// assert_eq!(store.list(&ann, Folder::Spam)?.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store with default options.
    pub fn new() -> Self {
        Self::with_options(MemoryOptions::default())
    }

    /// An empty store.
    pub fn with_options(options: MemoryOptions) -> Self {
        MemoryStore {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                options,
            }),
        }
    }
}

impl Mailstore for MemoryStore {
    fn create_user(&self, user: &UserName) -> Result<(), Error> {
        let mut st = self.shared.lock();
        if st.users.contains_key(user) {
            return Err(Error::UserExists(user.to_string()));
        }
        st.add_user(user);
        Ok(())
    }

    fn user_exists(&self, user: &UserName) -> Result<bool, Error> {
        Ok(self.shared.lock().users.contains_key(user))
    }

    fn users(&self) -> Result<Vec<UserName>, Error> {
        Ok(self.shared.lock().users.keys().cloned().collect())
    }

    fn check_quota(&self, user: &UserName, incoming: u64) -> Result<(), Error> {
        let st = self.shared.lock();
        let Some(q) = self.shared.options.user_quota else {
            return Ok(());
        };
        let used = st.users.get(user).map_or(0, MemUser::usage);
        if used >= q || used.saturating_add(incoming) > q {
            return Err(self.shared.quota_error(q));
        }
        Ok(())
    }

    fn begin_delivery(&self, user: &UserName, folder: Folder) -> Result<Box<dyn Delivery>, Error> {
        let mut st = self.shared.lock();
        if !st.users.contains_key(user) {
            if !self.shared.options.auto_create_users {
                return Err(Error::UnknownUser(user.to_string()));
            }
            st.add_user(user);
        }
        let usage = st.user(user)?.usage();
        if let Some(q) = self.shared.options.user_quota
            && usage >= q
        {
            return Err(self.shared.quota_error(q));
        }
        Ok(Box::new(MemDelivery {
            shared: Arc::clone(&self.shared),
            user: user.clone(),
            folder,
            data: Vec::new(),
            counter: CrlfCounter::new(),
            failed: false,
            sealed: false,
        }))
    }

    fn open_folder_maildrop(
        &self,
        user: &UserName,
        folder: Folder,
    ) -> Result<Box<dyn Maildrop>, Error> {
        let mut st = self.shared.lock();
        let u = st.user(user)?;
        if u.locked.contains(&folder) {
            return Err(Error::InUse);
        }
        u.locked.push(folder);
        let f = u.folder(folder);
        let messages: Vec<_> = f
            .messages
            .iter()
            .map(|m| {
                (
                    m.uid,
                    MaildropEntry {
                        uid: f.uid_of(m),
                        size: m.size,
                    },
                    m.data.clone(),
                )
            })
            .collect();
        let n = messages.len();
        Ok(Box::new(MemMaildrop {
            entries: messages.iter().map(|(_, e, _)| e.clone()).collect(),
            uids: messages.iter().map(|(u, _, _)| *u).collect(),
            data: messages.into_iter().map(|(_, _, d)| d).collect(),
            marks: Marks::new(n),
            guard: LockGuard {
                shared: Arc::clone(&self.shared),
                user: user.clone(),
                folder,
            },
        }))
    }

    fn list(&self, user: &UserName, folder: Folder) -> Result<Vec<MessageInfo>, Error> {
        let mut st = self.shared.lock();
        let f = st.user(user)?.folder(folder);
        Ok(f.messages
            .iter()
            .map(|m| MessageInfo {
                uid: f.uid_of(m),
                size: m.size,
                saved: m.saved,
                seen: m.seen,
            })
            .collect())
    }

    fn read(&self, user: &UserName, folder: Folder, uid: &Uid) -> Result<MessageReader, Error> {
        let mut st = self.shared.lock();
        let f = st.user(user)?.folder(folder);
        let i = f.position(uid).ok_or(Error::NoSuchMessage)?;
        let data = f
            .messages
            .get(i)
            .map(|m| m.data.clone())
            .ok_or(Error::NoSuchMessage)?;
        Ok(MessageReader::whole(Cursor::new(data)))
    }

    fn move_message(
        &self,
        user: &UserName,
        from: Folder,
        uid: &Uid,
        to: Folder,
    ) -> Result<(), Error> {
        let mut st = self.shared.lock();
        let u = st.user(user)?;
        let src = u.folder(from);
        let i = src.position(uid).ok_or(Error::NoSuchMessage)?;
        if from == to {
            return Ok(());
        }
        let m = src.messages.remove(i);
        u.folder(to).push(m.data, m.size, SystemTime::now(), m.seen);
        Ok(())
    }

    fn delete(&self, user: &UserName, folder: Folder, uid: &Uid) -> Result<(), Error> {
        let mut st = self.shared.lock();
        let f = st.user(user)?.folder(folder);
        let i = f.position(uid).ok_or(Error::NoSuchMessage)?;
        f.messages.remove(i);
        Ok(())
    }

    fn expunge_older_than(
        &self,
        user: &UserName,
        folder: Folder,
        cutoff: SystemTime,
    ) -> Result<usize, Error> {
        let mut st = self.shared.lock();
        let f = st.user(user)?.folder(folder);
        let before = f.messages.len();
        f.messages.retain(|m| m.saved >= cutoff);
        Ok(before - f.messages.len())
    }
}

struct MemDelivery {
    shared: Arc<Shared>,
    user: UserName,
    folder: Folder,
    data: Vec<u8>,
    counter: CrlfCounter,
    failed: bool,
    sealed: bool,
}

impl fmt::Debug for MemDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemDelivery")
            .field("user", &self.user)
            .field("folder", &self.folder)
            .field("written", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl Delivery for MemDelivery {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if self.failed || self.sealed {
            return Err(Error::DeliveryFailed);
        }
        let limit = self.shared.options.max_message_size;
        if self.data.len() as u64 + chunk.len() as u64 > limit {
            self.failed = true;
            self.data = Vec::new();
            return Err(Error::MessageTooLarge { limit });
        }
        self.counter.update(chunk);
        self.data.extend_from_slice(chunk);
        Ok(())
    }

    fn written(&self) -> u64 {
        self.data.len() as u64
    }

    /// Nothing to release in memory; later writes are refused, as for the
    /// Maildir backend.
    fn seal(&mut self) -> Result<(), Error> {
        if self.failed {
            return Err(Error::DeliveryFailed);
        }
        self.sealed = true;
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<DeliveryReceipt, Error> {
        if self.failed {
            return Err(Error::DeliveryFailed);
        }
        let me = *self;
        let mut st = me.shared.lock();
        let quota = me.shared.options.user_quota;
        let u = st.user(&me.user)?;
        if let Some(q) = quota
            && u.usage() + me.data.len() as u64 > q
        {
            return Err(me.shared.quota_error(q));
        }
        let receipt = DeliveryReceipt {
            folder: me.folder,
            stored_size: me.counter.stored(),
            size: me.counter.pop3_size(),
        };
        u.folder(me.folder).push(
            Bytes(Arc::new(me.data)),
            receipt.size,
            SystemTime::now(),
            false,
        );
        Ok(receipt)
    }
}

impl Write for MemDelivery {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_chunk(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct LockGuard {
    shared: Arc<Shared>,
    user: UserName,
    folder: Folder,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(u) = self.shared.lock().users.get_mut(&self.user) {
            u.locked.retain(|f| *f != self.folder);
        }
    }
}

struct MemMaildrop {
    entries: Vec<MaildropEntry>,
    uids: Vec<u32>,
    data: Vec<Bytes>,
    marks: Marks,
    guard: LockGuard,
}

impl fmt::Debug for MemMaildrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemMaildrop")
            .field("user", &self.guard.user)
            .field("entries", &self.entries)
            .field("marks", &self.marks)
            .finish_non_exhaustive()
    }
}

impl MemMaildrop {
    fn source(&self, i: usize) -> Result<Cursor<Bytes>, Error> {
        self.data
            .get(i)
            .map(|d| Cursor::new(d.clone()))
            .ok_or(Error::NoSuchMessage)
    }
}

impl Maildrop for MemMaildrop {
    fn entries(&self) -> &[MaildropEntry] {
        &self.entries
    }

    fn is_deleted(&self, n: usize) -> bool {
        self.marks.is_deleted(n)
    }

    fn read_message(&mut self, n: usize) -> Result<MessageReader, Error> {
        let i = self.marks.index(n)?;
        let src = self.source(i)?;
        self.marks.set_retrieved(i);
        Ok(MessageReader::whole(src))
    }

    fn read_top(&mut self, n: usize, body_lines: u64) -> Result<MessageReader, Error> {
        let i = self.marks.index(n)?;
        Ok(MessageReader::top(self.source(i)?, body_lines))
    }

    fn mark_deleted(&mut self, n: usize) -> Result<(), Error> {
        self.marks.mark_deleted(n)
    }

    fn unmark_all(&mut self) {
        self.marks.unmark_all();
    }

    fn commit(self: Box<Self>) -> Result<CommitSummary, Error> {
        let mut summary = CommitSummary::default();
        let mut st = self.guard.shared.lock();
        let inbox = st.user(&self.guard.user)?.folder(self.guard.folder);
        for (i, uid) in self.uids.iter().enumerate() {
            let Some(pos) = inbox.messages.iter().position(|m| m.uid == *uid) else {
                continue;
            };
            if self.marks.deleted_at(i) {
                inbox.messages.remove(pos);
                summary.deleted += 1;
            } else if self.marks.retrieved_at(i)
                && let Some(m) = inbox.messages.get_mut(pos)
                && !m.seen
            {
                m.seen = true;
                summary.seen += 1;
            }
        }
        drop(st);
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn joe() -> UserName {
        UserName::new("joe").unwrap()
    }

    #[test]
    fn uids_are_never_reused_after_delete() {
        let s = MemoryStore::new();
        s.create_user(&joe()).unwrap();
        s.deliver(&joe(), Folder::Inbox, &mut &b"a\n"[..]).unwrap();
        let first = s.list(&joe(), Folder::Inbox).unwrap()[0].uid.clone();
        s.delete(&joe(), Folder::Inbox, &first).unwrap();
        s.deliver(&joe(), Folder::Inbox, &mut &b"b\n"[..]).unwrap();
        let second = s.list(&joe(), Folder::Inbox).unwrap()[0].uid.clone();
        assert_ne!(first, second);
    }

    #[test]
    fn maildrop_snapshot_survives_concurrent_delete() {
        let s = MemoryStore::new();
        s.create_user(&joe()).unwrap();
        s.deliver(&joe(), Folder::Inbox, &mut &b"a\n"[..]).unwrap();
        let mut md = s.open_maildrop(&joe()).unwrap();
        let uid = md.entries()[0].uid.clone();
        s.delete(&joe(), Folder::Inbox, &uid).unwrap();
        let mut out = Vec::new();
        md.read_message(1).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"a\r\n");
        md.mark_deleted(1).unwrap();
        assert_eq!(md.commit().unwrap().deleted, 0);
    }

    #[test]
    fn poisoned_state_is_still_usable() {
        let s = MemoryStore::new();
        let s2 = s.clone();
        let _ = std::thread::spawn(move || {
            let _g = s2.shared.lock();
            panic!("poison");
        })
        .join();
        assert!(s.create_user(&joe()).is_ok());
    }
}
