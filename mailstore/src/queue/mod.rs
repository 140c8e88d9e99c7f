//! A durable outbound mail queue: messages accepted for relay wait here,
//! with their envelopes, until the next hop has taken them.
//!
//! - **Enqueue** ([`Queue::enqueue`] → [`QueueWriter`] → [`QueueWriter::commit`]):
//!   the body is streamed to its file and fsynced, the envelope written to a
//!   temporary file and fsynced, renamed into place (this makes the message
//!   visible), and the directory fsynced. When `commit` returns, an SMTP
//!   server may answer `250`. A crash at any moment leaves either nothing
//!   visible or the complete message; leftovers of dead writers are removed
//!   by the next [`Queue::open`].
//! - **Deliver** (one process at a time: [`Queue::lock_delivery`] →
//!   [`DeliveryLock`]): [`due`](DeliveryLock::due) lists what to attempt,
//!   [`update`](DeliveryLock::update) replaces an envelope atomically after
//!   each reply of the next hop, [`remove`](DeliveryLock::remove) drops a
//!   finished message.
//! - **Inspect** without any lock ([`Queue::list`], [`Queue::envelope`],
//!   [`Queue::body`]): an admin command may run next to the server.
//! - **Administer** one message next to a running deliverer
//!   ([`Queue::lock_message`] → [`MessageLock`]: hold, release, reschedule,
//!   delete). The deliverer takes the same lock
//!   ([`Queue::try_lock_message`]) for each message it works on, so the two
//!   never change one envelope at once, and it skips held messages
//!   ([`Envelope::held`]).
//! - **Retry** ([`RetrySchedule`]): the backoff and the maximum age, as pure
//!   functions of times the caller passes in. The crate never reads a clock.
//!
//! # Layout
//!
//! ```text
//! <dir>/msg/<id>.body      the message, exactly as it will be relayed (immutable)
//! <dir>/msg/<id>.env       its envelope, text (see Envelope), replaced atomically;
//!                          the message exists when this file exists
//! <dir>/tmp/<n>/           envelopes being written by queue instance <n>
//! <dir>/tmp/<n>.lock       held (flock) while instance <n> lives
//! <dir>/corrupt/<id>.*     messages set aside by DeliveryLock::quarantine
//! <dir>/lock               the delivery lock (flock)
//! <dir>/locks/<id>.lock    one message's lock (flock; MessageLock), removed with it (or, left by a crash, at the next open)
//!
//! Directories are created `0700` and files `0600` (before the umask): the
//! queue holds other people's mail.
//! <dir>/seq                the last queue instance number (ids are never reused)
//! ```
//!
//! A body without an envelope is a message being written, or the leftover
//! of a dead writer (the id names the queue instance, whose lock tells
//! which). An enqueue makes three fsyncs (body, envelope, `msg/`), an
//! update two.
//!
//! Every envelope is a small text file an administrator can read (see
//! [`Envelope`] for the format); it is parsed strictly, and a corrupt one is
//! reported ([`QueueError::Corrupt`], [`Listing::corrupt`]), never skipped.
//!
//! # Examples
//!
//! ```
//! use std::io::{Read, Write};
//! use mailbag_mailstore::queue::{
//!     NewEnvelope, Outcome, Queue, QueueOptions, Recipient, RecipientState, Retry, RetrySchedule,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let queue = Queue::open(dir.path(), QueueOptions::default())?;
//! let now = 1_700_000_000; // unix seconds, from the caller's clock
//!
//! // SMTP side: after DATA, queue the message; answer 250 only after commit.
//! let mut env = NewEnvelope::new("ann@example.org", now);
//! env.recipients.push(Recipient::new("joe@example.net"));
//! env.recipients.push(Recipient::new("kim@example.net"));
//! let mut writer = queue.enqueue(&env)?;
//! writer.write_all(b"Subject: hi\r\n\r\nhello\r\n")?;
//! let id = writer.commit()?;
//!
//! // Delivery side: one process holds the lock.
//! let lock = queue.lock_delivery()?;
//! assert_eq!(lock.due(now)?, vec![id.clone()]);
//! let mut env = lock.envelope(&id)?;
//! let (mut body, len) = lock.body(&id)?;
//! let mut text = String::new();
//! body.read_to_string(&mut text)?;
//! assert_eq!((text.as_str(), len), ("Subject: hi\r\n\r\nhello\r\n", 22));
//!
//! // The next hop accepted joe and greylisted kim: record it at once.
//! let host = Some("mx.example.net".to_string());
//! env.recipients[0].state = RecipientState::Delivered(Outcome {
//!     at: now, host: host.clone(), reply: "250 2.0.0 ok".into(),
//! });
//! env.recipients[1].state = RecipientState::Pending {
//!     last: Some(Outcome { at: now, host, reply: "451 4.7.1 try later".into() }),
//! };
//! env.attempts += 1;
//! match RetrySchedule::default().next_attempt(env.arrival, env.attempts, now) {
//!     Retry::At(t) => env.next_attempt = t,
//!     Retry::Expired => unreachable!("just arrived"),
//! }
//! lock.update(&env)?;
//! assert!(lock.due(now)?.is_empty());
//! assert_eq!(lock.due(now + 300)?, vec![id.clone()]);
//!
//! // An admin listing works without the lock.
//! let listing = queue.list()?;
//! assert_eq!(listing.messages, vec![env]);
//! assert!(listing.corrupt.is_empty());
//!
//! lock.remove(&id)?; // once every recipient is settled
//! assert!(queue.list()?.messages.is_empty());
//! # Ok(()) }
//! ```

mod envelope;
mod error;
mod id;
mod schedule;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use envelope::{
    BodyType, ENVELOPE_MAGIC, Envelope, NewEnvelope, Notify, Outcome, Recipient, RecipientState,
    ReportState, Ret,
};
pub use error::{EnvelopeError, QueueError};
pub use id::QueueId;
pub use schedule::{
    DEFAULT_DELAY_WARNING, DEFAULT_MAX_AGE, MAX_INTERVAL, MAX_INTERVALS, Retry, RetrySchedule,
    ScheduleError, parse_duration_setting,
};

/// Default [`QueueOptions::max_recipients`]: 1000.
pub const DEFAULT_MAX_RECIPIENTS: usize = 1000;

/// Default [`QueueOptions::max_envelope_size`]: 1 MiB.
pub const DEFAULT_MAX_ENVELOPE_SIZE: usize = 1024 * 1024;

/// Size of the write buffer in front of a body file.
const WRITE_BUFFER: usize = 64 * 1024;

/// Options of a [`Queue`]; start from [`QueueOptions::default`].
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::queue::QueueOptions;
///
/// let mut o = QueueOptions::default();
/// assert!(o.fsync);
/// o.max_message_size = 10 * 1024 * 1024;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct QueueOptions {
    /// fsync bodies, envelopes and directories. Default `true`. Turning it
    /// off loses durability on power failure; for tests and benchmarks only.
    pub fsync: bool,
    /// Largest body accepted by a [`QueueWriter`], in octets. Default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`](crate::DEFAULT_MAX_MESSAGE_SIZE) (64 MiB).
    pub max_message_size: u64,
    /// Most recipients of one message. Default [`DEFAULT_MAX_RECIPIENTS`] (1000).
    pub max_recipients: usize,
    /// Largest envelope file written or read, in octets. Default
    /// [`DEFAULT_MAX_ENVELOPE_SIZE`] (1 MiB).
    pub max_envelope_size: usize,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            fsync: true,
            max_message_size: crate::DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_envelope_size: DEFAULT_MAX_ENVELOPE_SIZE,
        }
    }
}

/// What [`Queue::list`] found, oldest first.
#[derive(Debug)]
#[non_exhaustive]
pub struct Listing {
    /// The readable messages.
    pub messages: Vec<Envelope>,
    /// Messages whose envelope cannot be read, including the quarantined ones.
    pub corrupt: Vec<CorruptMessage>,
}

/// A queued message whose envelope cannot be read.
#[derive(Debug)]
#[non_exhaustive]
pub struct CorruptMessage {
    /// The message's id (its directory name).
    pub id: QueueId,
    /// Why it cannot be read.
    pub error: QueueError,
    /// Whether it was moved to `corrupt/` by [`DeliveryLock::quarantine`].
    pub quarantined: bool,
}

/// A queue directory. Cheap to clone (clones share one instance); `Send +
/// Sync`. Several processes may open the same directory; only one at a
/// time holds the [`DeliveryLock`].
#[derive(Clone, Debug)]
pub struct Queue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    msg: PathBuf,
    tmp: PathBuf,
    corrupt: PathBuf,
    /// `<id>.lock` files of [`MessageLock`]s.
    locks: PathBuf,
    lock_path: PathBuf,
    options: QueueOptions,
    instance: u64,
    instance_dir: PathBuf,
    instance_lock_path: PathBuf,
    _instance_lock: File,
    seq: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Our own leftovers (uncommitted writers are gone, or we would not be
        // dropped); failures are harmless, the next open cleans up.
        let _ = fs::remove_dir_all(&self.instance_dir);
        let _ = fs::remove_file(&self.instance_lock_path);
    }
}

fn sync_dir(fsync: bool, dir: &Path) -> Result<(), QueueError> {
    if !fsync {
        return Ok(());
    }
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| QueueError::io("fsync directory", dir, e))
}

fn create_dir(path: &Path) -> Result<(), QueueError> {
    crate::maildir::create_private_dir(path)
        .map_err(|e| QueueError::io("create directory", path, e))
}

/// Options to open a file for writing, created `0600`.
fn private_file() -> OpenOptions {
    crate::maildir::private_file()
}

/// Writes `data` to `tmp`, fsyncs it, and renames it to `dest` (same directory).
fn replace_file(fsync: bool, tmp: &Path, dest: &Path, data: &[u8]) -> Result<(), QueueError> {
    write_private(fsync, tmp, data)?;
    fs::rename(tmp, dest).map_err(|e| QueueError::io("rename", tmp, e))
}

/// What is wrong with a body file of `len` octets (`None`: missing) whose
/// envelope recorded `size`, if anything.
fn body_fault(len: Option<u64>, size: u64) -> Option<&'static str> {
    match len {
        None => Some("body file missing"),
        Some(n) if n < size => Some("body file shorter than the size recorded"),
        Some(n) if n > size => Some("body file longer than the size recorded"),
        Some(_) => None,
    }
}

/// Whether `e` says the file system (or the user's quota) is full.
fn is_out_of_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Writes `data` over the start of the existing file `path` and cuts it
/// there (fsynced if asked): no new block for a file of one block.
fn overwrite_in_place(fsync: bool, path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(data)?;
    f.set_len(data.len() as u64)?;
    if fsync {
        f.sync_all()?;
    }
    Ok(())
}

/// Writes `data` to a new private file at `path` (fsynced if asked).
fn write_private(fsync: bool, path: &Path, data: &[u8]) -> Result<(), QueueError> {
    let mut f = private_file()
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| QueueError::io("create", path, e))?;
    f.write_all(data)
        .map_err(|e| QueueError::io("write", path, e))?;
    if fsync {
        f.sync_all().map_err(|e| QueueError::io("fsync", path, e))?;
    }
    Ok(())
}

/// Whether `path` still names the file open as `file` (not removed or replaced).
#[cfg(unix)]
fn same_file(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(path: &Path, _file: &File) -> bool {
    path.exists()
}

/// The instance number of a `tmp/` entry name (`<n>` or `<n>.lock`).
fn tmp_instance(name: &str) -> Option<(u64, bool)> {
    match name.strip_suffix(".lock") {
        Some(n) => id::parse_canonical_u64(n).map(|n| (n, true)),
        None => id::parse_canonical_u64(name).map(|n| (n, false)),
    }
}

fn dir_names(dir: &Path) -> Result<Vec<String>, QueueError> {
    let mut names = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| QueueError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| QueueError::io("read directory", dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// The ids of the envelopes (`<id>.env`) in `dir`, sorted.
fn env_ids_in(dir: &Path) -> Result<Vec<QueueId>, QueueError> {
    let mut ids: Vec<QueueId> = dir_names(dir)?
        .iter()
        .filter_map(|n| n.strip_suffix(".env").and_then(|i| i.parse().ok()))
        .collect();
    ids.sort();
    Ok(ids)
}

/// The instance numbers in the ids of the `.env` and `.body` files in `dir`.
fn instances_in(dir: &Path) -> Result<Vec<u64>, QueueError> {
    Ok(dir_names(dir)?
        .iter()
        .filter_map(|n| n.strip_suffix(".env").or_else(|| n.strip_suffix(".body")))
        .filter_map(|i| i.parse::<QueueId>().ok())
        .map(|id| id.instance())
        .collect())
}

impl Queue {
    /// Opens the queue directory `dir`, creating it if needed, and removes
    /// what dead writers (crashed or killed processes) left in `tmp/`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_mailstore::queue::{Queue, QueueOptions};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let q = Queue::open(dir.path().join("queue"), QueueOptions::default()).unwrap();
    /// assert!(q.list().unwrap().messages.is_empty());
    /// ```
    pub fn open(dir: impl AsRef<Path>, options: QueueOptions) -> Result<Queue, QueueError> {
        let dir = dir.as_ref();
        let msg = dir.join("msg");
        let tmp = dir.join("tmp");
        let corrupt = dir.join("corrupt");
        let locks = dir.join("locks");
        for d in [&msg, &tmp, &corrupt, &locks] {
            create_dir(d)?;
        }
        let (instance, lock_file, instance_lock_path) =
            Self::allocate_instance(dir, &msg, &tmp, &corrupt, options.fsync)?;
        let instance_dir = tmp.join(instance.to_string());
        let inner = Inner {
            msg,
            tmp,
            corrupt,
            locks,
            lock_path: dir.join("lock"),
            options,
            instance,
            instance_dir,
            instance_lock_path,
            _instance_lock: lock_file,
            seq: AtomicU64::new(1),
        };
        match fs::DirBuilder::new()
            .mode(crate::maildir::DIR_MODE)
            .create(&inner.instance_dir)
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(QueueError::io("create directory", &inner.instance_dir, e)),
        }
        let queue = Queue {
            inner: Arc::new(inner),
        };
        queue.clean_tmp()?;
        Ok(queue)
    }

    /// Takes the next instance number (kept in `<dir>/seq` under a lock) and
    /// holds `tmp/<n>.lock` for it.
    fn allocate_instance(
        dir: &Path,
        msg: &Path,
        tmp: &Path,
        corrupt: &Path,
        fsync: bool,
    ) -> Result<(u64, File, PathBuf), QueueError> {
        let seq_lock_path = dir.join("seq.lock");
        let seq_lock = private_file()
            .read(true)
            .create(true)
            .truncate(false)
            .open(&seq_lock_path)
            .map_err(|e| QueueError::io("open", &seq_lock_path, e))?;
        seq_lock
            .lock()
            .map_err(|e| QueueError::io("lock", &seq_lock_path, e))?;
        let seq_path = dir.join("seq");
        let recorded = fs::read_to_string(&seq_path)
            .ok()
            .and_then(|s| id::parse_canonical_u64(s.trim_end_matches('\n')));
        // Above everything in use: for a lost or damaged `seq`, and for one that
        // cannot be written.
        let highest_in_use = || -> Result<u64, QueueError> {
            let mut max = 0;
            for d in [msg, corrupt] {
                for i in instances_in(d)? {
                    max = max.max(i);
                }
            }
            for name in dir_names(tmp)? {
                if let Some((i, _)) = tmp_instance(&name) {
                    max = max.max(i);
                }
            }
            Ok(max)
        };
        let mut scanned = recorded.is_none();
        let mut n = match recorded {
            Some(n) => n,
            None => highest_in_use()?,
        };
        for _ in 0..1000 {
            n = n.checked_add(1).ok_or(QueueError::InvalidEnvelope(
                "queue instance numbers exhausted",
            ))?;
            let seq_tmp = dir.join("seq.tmp");
            let text = format!("{n}\n");
            match replace_file(fsync, &seq_tmp, &seq_path, text.as_bytes())
                .and_then(|()| sync_dir(fsync, dir))
            {
                Ok(()) => {}
                // A full file system (or quota) must not keep the queue from
                // opening, and with it the server from starting (POP3 users
                // delete mail to make room). The number is written over the
                // old one in place, in the block `seq` already has (a crash
                // in that write leaves a damaged `seq`, which the next open
                // replaces by a scan, as above); when even that fails, it is
                // taken above every number in use, unrecorded.
                Err(QueueError::Io { source, .. }) if is_out_of_space(&source) => {
                    let _ = fs::remove_file(&seq_tmp);
                    if overwrite_in_place(fsync, &seq_path, text.as_bytes()).is_err() && !scanned {
                        n = n.max(highest_in_use()?.saturating_add(1));
                        scanned = true;
                    }
                }
                Err(e) => return Err(e),
            }
            let path = tmp.join(format!("{n}.lock"));
            let file = match private_file().create_new(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(QueueError::io("create", &path, e)),
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => return Err(QueueError::io("lock", &path, e)),
            }
            // A concurrent cleaner may have removed the file before we locked it.
            if same_file(&path, &file) {
                return Ok((n, file, path));
            }
        }
        Err(QueueError::io(
            "allocate an instance in",
            tmp,
            io::Error::other("too many collisions"),
        ))
    }

    /// Removes leftovers of instances whose lock is free (their process died).
    fn clean_tmp(&self) -> Result<(), QueueError> {
        let tmp = &self.inner.tmp;
        let names = dir_names(tmp)?;
        for name in &names {
            let Some((n, is_lock)) = tmp_instance(name) else {
                continue;
            };
            if n == self.inner.instance {
                continue;
            }
            let dir = tmp.join(n.to_string());
            if is_lock {
                let path = tmp.join(name);
                let Ok(file) = OpenOptions::new().write(true).open(&path) else {
                    continue;
                };
                if file.try_lock().is_ok() {
                    let _ = fs::remove_dir_all(&dir);
                    let _ = fs::remove_file(&path);
                }
            } else if !names.contains(&format!("{n}.lock")) {
                // A directory is made after its lock file and removed before it.
                let _ = fs::remove_dir_all(&dir);
            }
        }
        // Bodies without an envelope whose writer's instance is dead.
        let msg_names = dir_names(&self.inner.msg)?;
        for name in &msg_names {
            let Some(id) = name
                .strip_suffix(".body")
                .and_then(|i| i.parse::<QueueId>().ok())
            else {
                continue;
            };
            if msg_names.contains(&format!("{id}.env")) || self.instance_alive(id.instance()) {
                continue;
            }
            // Re-check: a writer may have committed since the listing.
            if !self.env_path(&id).exists() {
                let _ = fs::remove_file(self.body_path(&id));
            }
        }
        // Message locks of messages no longer queued, left by a holder that
        // died between the removal and its lock's (a probe counted 6 after
        // 25 kills): removed under their lock, as `MessageLock`'s drop does,
        // so a waiter on one starts over.
        for name in dir_names(&self.inner.locks)? {
            let Some(id) = name
                .strip_suffix(".lock")
                .and_then(|i| i.parse::<QueueId>().ok())
            else {
                continue;
            };
            if self.env_path(&id).exists() {
                continue;
            }
            let path = self.inner.locks.join(&name);
            let Ok(file) = OpenOptions::new().read(true).open(&path) else {
                continue;
            };
            if file.try_lock().is_ok() && !self.env_path(&id).exists() && same_file(&path, &file) {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }

    /// Whether queue instance `n` is alive (its lock file is locked).
    fn instance_alive(&self, n: u64) -> bool {
        if n == self.inner.instance {
            return true;
        }
        let path = self.inner.tmp.join(format!("{n}.lock"));
        match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f.try_lock().is_err(),
            Err(_) => false,
        }
    }

    fn env_path(&self, id: &QueueId) -> PathBuf {
        self.inner.msg.join(format!("{id}.env"))
    }

    fn body_path(&self, id: &QueueId) -> PathBuf {
        self.inner.msg.join(format!("{id}.body"))
    }

    /// The queue's directory for files being written: on the queue's file
    /// system, private to it, for the caller's temporary files too (such as a
    /// converted copy of a body, made unnamed so that nothing is left behind).
    pub fn tmp_dir(&self) -> &Path {
        &self.inner.tmp
    }

    /// The options the queue was opened with.
    pub fn options(&self) -> &QueueOptions {
        &self.inner.options
    }

    /// Starts queuing a message: write its body (exactly as it is to be
    /// relayed: CRLF line ends, not dot-stuffed) into the returned writer,
    /// then [`commit`](QueueWriter::commit). The new message is due at its
    /// arrival time, with no attempts made.
    ///
    /// Fails with [`QueueError::InvalidEnvelope`] without recipients, with
    /// more than [`QueueOptions::max_recipients`], or when the envelope would
    /// exceed [`QueueOptions::max_envelope_size`].
    pub fn enqueue(&self, envelope: &NewEnvelope) -> Result<QueueWriter, QueueError> {
        let options = &self.inner.options;
        if envelope.recipients.is_empty() {
            return Err(QueueError::InvalidEnvelope("no recipient"));
        }
        if envelope.recipients.len() > options.max_recipients {
            return Err(QueueError::InvalidEnvelope("too many recipients"));
        }
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let id = QueueId::new(envelope.arrival, self.inner.instance, seq);
        let env = Envelope::from_new(id.clone(), envelope, u64::MAX);
        if env.encode().len() > options.max_envelope_size {
            return Err(QueueError::InvalidEnvelope("envelope too large"));
        }
        let body_path = self.body_path(&id);
        let file = private_file()
            .create_new(true)
            .open(&body_path)
            .map_err(|e| QueueError::io("create", &body_path, e))?;
        Ok(QueueWriter {
            queue: self.clone(),
            envelope: env,
            body_path,
            file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            written: 0,
            too_large: false,
            broken: None,
            sealed_env: None,
            committed: false,
        })
    }

    /// Takes the delivery lock, without waiting: [`QueueError::Locked`] when
    /// another process (or another `DeliveryLock` in this one) holds it. The
    /// kernel releases it when its holder dies, however it dies.
    pub fn lock_delivery(&self) -> Result<DeliveryLock, QueueError> {
        let path = &self.inner.lock_path;
        let mut file = private_file()
            .read(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| QueueError::io("open", path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(QueueError::Locked),
            Err(TryLockError::Error(e)) => return Err(QueueError::io("lock", path, e)),
        }
        // Informational only (for an administrator).
        let _ = file
            .set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(DeliveryLock {
            queue: self.clone(),
            _file: file,
        })
    }

    fn read_envelope_at(&self, path: &Path, id: &QueueId) -> Result<Envelope, QueueError> {
        let corrupt = |line, reason| QueueError::Corrupt {
            id: id.clone(),
            error: EnvelopeError::new(line, reason),
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(QueueError::NotFound(id.clone()));
            }
            Err(e) => return Err(QueueError::io("open", path, e)),
        };
        let max = self.inner.options.max_envelope_size;
        let mut data = Vec::new();
        file.take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| QueueError::io("read", path, e))?;
        if data.len() > max {
            return Err(corrupt(0, "envelope file too large"));
        }
        let env = Envelope::parse(&data).map_err(|error| QueueError::Corrupt {
            id: id.clone(),
            error,
        })?;
        if env.id != *id {
            return Err(corrupt(2, "id does not match the file name"));
        }
        Ok(env)
    }

    /// Reads the envelope of a queued message ([`QueueError::NotFound`],
    /// [`QueueError::Corrupt`]).
    pub fn envelope(&self, id: &QueueId) -> Result<Envelope, QueueError> {
        self.read_envelope_at(&self.env_path(id), id)
    }

    /// Opens the body of a queued message for streaming; returns the file
    /// (at offset 0) and its length. The file stays readable even if the
    /// message is removed meanwhile. A message whose body file is missing is
    /// [`QueueError::Corrupt`].
    pub fn body(&self, id: &QueueId) -> Result<(File, u64), QueueError> {
        let path = self.body_path(id);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(if self.env_path(id).exists() {
                    QueueError::Corrupt {
                        id: id.clone(),
                        error: EnvelopeError::new(0, "body file missing"),
                    }
                } else {
                    QueueError::NotFound(id.clone())
                });
            }
            Err(e) => return Err(QueueError::io("open", &path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| QueueError::io("stat", &path, e))?
            .len();
        Ok((file, len))
    }

    /// Checks that the body of the queued message `env` is there and has the
    /// size its envelope recorded when it was committed: a body cut short
    /// (a truncated file, a damaged disk) must not be sent as if whole.
    ///
    /// # Errors
    ///
    /// [`QueueError::Corrupt`] when the body file is missing or of another
    /// size, [`QueueError::NotFound`] when the message is gone, I/O errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use mailbag_mailstore::queue::{NewEnvelope, Queue, QueueError, QueueOptions, Recipient};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let q = Queue::open(dir.path(), QueueOptions::default()).unwrap();
    /// let mut new = NewEnvelope::new("ann@example.org", 1_000);
    /// new.recipients.push(Recipient::new("kim@example.com"));
    /// let mut w = q.enqueue(&new).unwrap();
    /// w.write_all(b"Subject: x\r\n\r\nbody\r\n").unwrap();
    /// let id = w.commit().unwrap();
    /// let env = q.envelope(&id).unwrap();
    /// assert!(q.verify_body(&env).is_ok());
    /// let body = dir.path().join("msg").join(format!("{id}.body"));
    /// std::fs::OpenOptions::new().write(true).open(&body).unwrap().set_len(5).unwrap();
    /// assert!(matches!(q.verify_body(&env), Err(QueueError::Corrupt { .. })));
    /// std::fs::remove_file(&body).unwrap();
    /// assert!(matches!(q.verify_body(&env), Err(QueueError::Corrupt { .. })));
    /// ```
    pub fn verify_body(&self, env: &Envelope) -> Result<(), QueueError> {
        let (_, len) = self.body(&env.id)?;
        match body_fault(Some(len), env.size) {
            None => Ok(()),
            Some(reason) => Err(QueueError::Corrupt {
                id: env.id.clone(),
                error: EnvelopeError::new(0, reason),
            }),
        }
    }

    /// Takes the lock of message `id`, waiting while another holds it (a
    /// delivery attempt in progress, another admin command).
    ///
    /// # Errors
    ///
    /// [`QueueError::NotFound`] when no such message is queued (also when it
    /// was removed while waiting); I/O errors.
    pub fn lock_message(&self, id: &QueueId) -> Result<MessageLock, QueueError> {
        self.lock_message_with(id, true)
    }

    /// Like [`Queue::lock_message`] without waiting: [`QueueError::Locked`]
    /// when another holds it.
    ///
    /// # Errors
    ///
    /// [`QueueError::Locked`], [`QueueError::NotFound`], I/O errors.
    pub fn try_lock_message(&self, id: &QueueId) -> Result<MessageLock, QueueError> {
        self.lock_message_with(id, false)
    }

    fn lock_message_with(&self, id: &QueueId, wait: bool) -> Result<MessageLock, QueueError> {
        let path = self.inner.locks.join(format!("{id}.lock"));
        loop {
            if !self.env_path(id).exists() {
                return Err(QueueError::NotFound(id.clone()));
            }
            let file = private_file()
                .read(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| QueueError::io("open", &path, e))?;
            if wait {
                file.lock().map_err(|e| QueueError::io("lock", &path, e))?;
            } else {
                match file.try_lock() {
                    Ok(()) => {}
                    Err(TryLockError::WouldBlock) => return Err(QueueError::Locked),
                    Err(TryLockError::Error(e)) => return Err(QueueError::io("lock", &path, e)),
                }
            }
            // The holder before us may have removed the message and its lock
            // file (a lock on that unlinked file guards nothing): start over.
            if same_file(&path, &file) {
                let lock = MessageLock {
                    queue: self.clone(),
                    id: id.clone(),
                    path,
                    _file: file,
                };
                if !self.env_path(id).exists() {
                    return Err(QueueError::NotFound(id.clone()));
                }
                return Ok(lock);
            }
        }
    }

    /// Lists every queued message, oldest first, and the ones that cannot be
    /// read (also those in `corrupt/`). Needs no lock; messages removed while
    /// listing are left out.
    pub fn list(&self) -> Result<Listing, QueueError> {
        let mut messages = Vec::new();
        let mut corrupt = Vec::new();
        for id in env_ids_in(&self.inner.msg)? {
            match self.envelope(&id) {
                Ok(env) => messages.push(env),
                Err(QueueError::NotFound(_)) => {}
                Err(error) => corrupt.push(CorruptMessage {
                    id,
                    error,
                    quarantined: false,
                }),
            }
        }
        for id in env_ids_in(&self.inner.corrupt)? {
            let path = self.inner.corrupt.join(format!("{id}.env"));
            let error = match self.read_envelope_at(&path, &id) {
                Err(QueueError::NotFound(_)) => continue,
                Err(e) => e,
                // Moved aside for its body (missing, cut short)?
                Ok(env) => {
                    let body = fs::metadata(self.inner.corrupt.join(format!("{id}.body")));
                    match body_fault(body.ok().map(|m| m.len()), env.size) {
                        None => QueueError::InvalidEnvelope("quarantined, but readable now"),
                        Some(reason) => QueueError::Corrupt {
                            id: id.clone(),
                            error: EnvelopeError::new(0, reason),
                        },
                    }
                }
            };
            corrupt.push(CorruptMessage {
                id,
                error,
                quarantined: true,
            });
        }
        corrupt.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Listing { messages, corrupt })
    }
}

/// A message being written into the queue ([`Queue::enqueue`]). Dropped
/// without [`commit`](QueueWriter::commit), it leaves nothing behind.
#[derive(Debug)]
pub struct QueueWriter {
    queue: Queue,
    envelope: Envelope,
    body_path: PathBuf,
    file: Option<BufWriter<File>>,
    written: u64,
    too_large: bool,
    broken: Option<io::ErrorKind>,
    /// [`QueueWriter::seal`] wrote the envelope here (not visible yet).
    sealed_env: Option<PathBuf>,
    committed: bool,
}

impl QueueWriter {
    /// The id the message will have.
    pub fn id(&self) -> &QueueId {
        &self.envelope.id
    }

    /// Body octets written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes everything that can fail for want of space before the message
    /// is visible: flushes and fsyncs the body, then writes and fsyncs the
    /// envelope beside it, so that [`QueueWriter::commit`] is left with a
    /// rename and a directory fsync. A server storing several copies of one
    /// message seals each before it commits any: a full disk (or any write
    /// error) then fails the whole message with nothing stored. No more body
    /// can be written after it; calling it again does nothing.
    ///
    /// # Errors
    ///
    /// [`QueueError::TooLarge`] when more than
    /// [`QueueOptions::max_message_size`] octets were written, or the write
    /// error; nothing is visible then.
    pub fn seal(&mut self) -> Result<(), QueueError> {
        if self.sealed_env.is_some() {
            return Ok(());
        }
        let options = &self.queue.inner.options;
        if self.too_large {
            return Err(QueueError::TooLarge {
                limit: options.max_message_size,
            });
        }
        let body_path = self.body_path.clone();
        if let Some(kind) = self.broken {
            return Err(QueueError::io("write", &body_path, io::Error::from(kind)));
        }
        let Some(buffered) = self.file.take() else {
            return Err(QueueError::io(
                "write",
                &body_path,
                io::Error::other("writer closed"),
            ));
        };
        let file = buffered
            .into_inner()
            .map_err(|e| QueueError::io("write", &body_path, e.into_error()))?;
        if options.fsync {
            file.sync_all()
                .map_err(|e| QueueError::io("fsync", &body_path, e))?;
        }
        drop(file);
        self.envelope.size = self.written;
        let tmp = self
            .queue
            .inner
            .instance_dir
            .join(format!("{}.env", self.envelope.id));
        let written = write_private(options.fsync, &tmp, &self.envelope.encode());
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        self.sealed_env = Some(tmp);
        Ok(())
    }

    /// Makes the message durable and visible: [`QueueWriter::seal`] if that
    /// was not done (flush and fsync the body, write and fsync the
    /// envelope), then rename the envelope into `msg/` and fsync that. Only
    /// after `Ok` may the SMTP server answer `250`.
    ///
    /// [`QueueError::TooLarge`] when more than
    /// [`QueueOptions::max_message_size`] octets were written.
    pub fn commit(mut self) -> Result<QueueId, QueueError> {
        self.seal()?;
        let Some(tmp) = self.sealed_env.clone() else {
            return Err(QueueError::io(
                "write",
                &self.body_path,
                io::Error::other("not sealed"),
            ));
        };
        let id = self.envelope.id.clone();
        let dest = self.queue.env_path(&id);
        fs::rename(&tmp, &dest).map_err(|e| QueueError::io("rename", &tmp, e))?;
        // Visible from here on: the body must stay.
        self.committed = true;
        sync_dir(self.queue.inner.options.fsync, &self.queue.inner.msg)?;
        Ok(id)
    }
}

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.too_large {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "message exceeds the queue's size limit",
            ));
        }
        if let Some(kind) = self.broken {
            return Err(io::Error::new(kind, "an earlier write failed"));
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("writer closed"));
        };
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if self.written.saturating_add(len) > self.queue.inner.options.max_message_size {
            self.too_large = true;
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "message exceeds the queue's size limit",
            ));
        }
        match file.write(buf) {
            Ok(n) => {
                self.written += u64::try_from(n).unwrap_or(u64::MAX);
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.broken = Some(e.kind());
                }
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for QueueWriter {
    fn drop(&mut self) {
        if !self.committed {
            self.file = None;
            let _ = fs::remove_file(&self.body_path);
            if let Some(env) = &self.sealed_env {
                let _ = fs::remove_file(env);
            }
        }
    }
}

/// The right to deliver from the queue: held by one process at a time
/// ([`Queue::lock_delivery`]), released on drop. Reading works without it;
/// changing envelopes and removing messages needs it.
#[derive(Debug)]
pub struct DeliveryLock {
    queue: Queue,
    _file: File,
}

impl DeliveryLock {
    /// The queue this lock belongs to.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The messages due at `now` (`next_attempt <= now`, not
    /// [held](Envelope::held)), oldest first. A
    /// message with a corrupt envelope is included too, so that it is not
    /// silently forgotten: [`envelope`](Self::envelope) then reports
    /// [`QueueError::Corrupt`], and the caller logs it and calls
    /// [`quarantine`](Self::quarantine).
    pub fn due(&self, now: u64) -> Result<Vec<QueueId>, QueueError> {
        let mut due = Vec::new();
        for id in env_ids_in(&self.queue.inner.msg)? {
            match self.queue.envelope(&id) {
                Ok(env) if env.next_attempt <= now && !env.held => due.push(id),
                Ok(_) | Err(QueueError::NotFound(_)) => {}
                Err(_) => due.push(id),
            }
        }
        Ok(due)
    }

    /// Same as [`Queue::envelope`].
    pub fn envelope(&self, id: &QueueId) -> Result<Envelope, QueueError> {
        self.queue.envelope(id)
    }

    /// Same as [`Queue::body`].
    pub fn body(&self, id: &QueueId) -> Result<(File, u64), QueueError> {
        self.queue.body(id)
    }

    /// Replaces the envelope of the queued message `envelope.id` atomically
    /// and durably (write a temporary file, fsync, rename, fsync the
    /// directory). Call it right after each reply of the next hop that
    /// settles a recipient, so a crash never sends again what was accepted.
    pub fn update(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.queue.replace_envelope(envelope)
    }

    /// Removes a queued message (when all its recipients are settled and its
    /// DSNs are made). The removal is durable when this returns.
    pub fn remove(&self, id: &QueueId) -> Result<(), QueueError> {
        self.queue.remove_message(id)
    }
}

impl Queue {
    fn replace_envelope(&self, envelope: &Envelope) -> Result<(), QueueError> {
        let options = &self.inner.options;
        let inner = &self.inner;
        let id = &envelope.id;
        let dest = self.env_path(id);
        if !dest.exists() {
            return Err(QueueError::NotFound(id.clone()));
        }
        let data = envelope.encode();
        if data.len() > options.max_envelope_size {
            return Err(QueueError::InvalidEnvelope("envelope too large"));
        }
        replace_file(
            options.fsync,
            &inner.instance_dir.join(format!("{id}.env")),
            &dest,
            &data,
        )?;
        sync_dir(options.fsync, &inner.msg)
    }

    fn remove_message(&self, id: &QueueId) -> Result<(), QueueError> {
        let inner = &self.inner;
        let env = self.env_path(id);
        match fs::remove_file(&env) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(QueueError::NotFound(id.clone()));
            }
            Err(e) => return Err(QueueError::io("remove", &env, e)),
        }
        sync_dir(inner.options.fsync, &inner.msg)?;
        // Gone from the queue; a body left by a failure here is an orphan
        // that a later open removes.
        let _ = fs::remove_file(self.body_path(id));
        Ok(())
    }
}

impl DeliveryLock {
    /// Moves a message (typically with a corrupt envelope) out of the queue
    /// into `corrupt/`, where [`Queue::list`] still reports it and an
    /// administrator can look at it.
    pub fn quarantine(&self, id: &QueueId) -> Result<(), QueueError> {
        let inner = &self.queue.inner;
        let body = self.queue.body_path(id);
        match fs::rename(&body, inner.corrupt.join(format!("{id}.body"))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(QueueError::io("rename", &body, e)),
        }
        let env = self.queue.env_path(id);
        match fs::rename(&env, inner.corrupt.join(format!("{id}.env"))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(QueueError::NotFound(id.clone()));
            }
            Err(e) => return Err(QueueError::io("rename", &env, e)),
        }
        sync_dir(inner.options.fsync, &inner.corrupt)?;
        sync_dir(inner.options.fsync, &inner.msg)
    }
}

/// One queued message, locked ([`Queue::lock_message`]): while it lives no
/// other `MessageLock` of that message exists, in any process. A deliverer
/// holds it for each message it works on; an administrator's command holds
/// it to change the message next to a running deliverer. Released on drop
/// (the lock file is removed with it when the message is gone).
#[derive(Debug)]
pub struct MessageLock {
    queue: Queue,
    id: QueueId,
    path: PathBuf,
    _file: File,
}

impl MessageLock {
    /// The message's id.
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// Reads the message's envelope.
    ///
    /// # Errors
    ///
    /// As [`Queue::envelope`].
    pub fn envelope(&self) -> Result<Envelope, QueueError> {
        self.queue.envelope(&self.id)
    }

    /// Replaces the envelope atomically and durably, as
    /// [`DeliveryLock::update`] does (for an administrator: hold, release,
    /// reschedule).
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidEnvelope`] when `envelope` is another message's,
    /// or as [`DeliveryLock::update`].
    pub fn update(&self, envelope: &Envelope) -> Result<(), QueueError> {
        if envelope.id != self.id {
            return Err(QueueError::InvalidEnvelope("another message's envelope"));
        }
        self.queue.replace_envelope(envelope)
    }

    /// Removes the message from the queue, durably (an administrator's
    /// delete: no DSN is made).
    ///
    /// # Errors
    ///
    /// As [`DeliveryLock::remove`].
    pub fn remove(&self) -> Result<(), QueueError> {
        self.queue.remove_message(&self.id)
    }
}

impl Drop for MessageLock {
    fn drop(&mut self) {
        // Still locked: whoever waits on this file starts over (see
        // `lock_message_with`), so no two holders ever meet.
        if !self.queue.env_path(&self.id).exists() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Queue {
        Queue::open(dir, QueueOptions::default()).unwrap()
    }

    fn one(q: &Queue, arrival: u64, body: &[u8]) -> QueueId {
        let mut env = NewEnvelope::new("a@example.org", arrival);
        env.recipients.push(Recipient::new("b@example.net"));
        let mut w = q.enqueue(&env).unwrap();
        w.write_all(body).unwrap();
        w.commit().unwrap()
    }

    #[test]
    fn message_locks_exclude_each_other_and_hold_keeps_a_message_from_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        let admin = open(dir.path()); // another process's instance
        let id = one(&q, 100, b"body");
        let delivery = q.lock_delivery().unwrap();
        assert_eq!(delivery.due(100).unwrap(), vec![id.clone()]);

        let held = admin.lock_message(&id).unwrap();
        assert!(matches!(q.try_lock_message(&id), Err(QueueError::Locked)));
        let mut env = held.envelope().unwrap();
        env.held = true;
        held.update(&env).unwrap();
        drop(held);
        assert!(
            delivery.due(u64::MAX).unwrap().is_empty(),
            "a held message is never due"
        );
        assert!(q.list().unwrap().messages[0].held);

        let m = q.try_lock_message(&id).unwrap();
        let mut env = m.envelope().unwrap();
        env.held = false;
        env.next_attempt = 50;
        m.update(&env).unwrap();
        let other = one(&q, 1, b"other");
        let mut wrong = q.envelope(&other).unwrap();
        wrong.attempts = 9;
        assert!(matches!(
            m.update(&wrong),
            Err(QueueError::InvalidEnvelope(_))
        ));
        drop(m);
        assert_eq!(delivery.due(60).unwrap(), vec![other.clone(), id.clone()]);

        // Removed under its lock: the lock file goes with it.
        let m = admin.lock_message(&id).unwrap();
        m.remove().unwrap();
        drop(m);
        assert!(!dir.path().join("locks").join(format!("{id}.lock")).exists());
        assert!(matches!(q.lock_message(&id), Err(QueueError::NotFound(_))));
        assert!(matches!(
            q.try_lock_message(&id),
            Err(QueueError::NotFound(_))
        ));
        assert_eq!(delivery.due(60).unwrap(), vec![other]);
    }

    /// An entry moved aside for its body is listed with what is wrong with
    /// the body, not as a corrupt envelope (a probe's wording).
    #[test]
    fn a_body_moved_aside_is_listed_for_its_body() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        let id = one(&q, 1, b"a body of some length");
        let body = dir.path().join("msg").join(format!("{id}.body"));
        fs::OpenOptions::new()
            .write(true)
            .open(&body)
            .unwrap()
            .set_len(3)
            .unwrap();
        let err = q.verify_body(&q.envelope(&id).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("queued message {id} is corrupt: body file shorter than the size recorded")
        );
        let delivery = q.lock_delivery().unwrap();
        delivery.quarantine(&id).unwrap();
        let listed = q.list().unwrap();
        assert!(listed.messages.is_empty());
        assert_eq!(listed.corrupt.len(), 1);
        assert!(listed.corrupt[0].quarantined);
        assert!(
            listed.corrupt[0]
                .error
                .to_string()
                .ends_with("body file shorter than the size recorded"),
            "{}",
            listed.corrupt[0].error
        );
    }

    /// A message lock left behind by a holder that died after removing its
    /// message goes at the next open; the lock of a queued message stays.
    #[test]
    fn stale_message_locks_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        let id = one(&q, 1, b"kept");
        drop(q.lock_message(&id).unwrap());
        let gone: QueueId = "000000000002.9.9".parse().unwrap();
        let locks = dir.path().join("locks");
        fs::write(locks.join(format!("{gone}.lock")), b"").unwrap();
        fs::write(locks.join("not-an-id.lock"), b"").unwrap();
        let kept_lock = locks.join(format!("{id}.lock"));
        fs::write(&kept_lock, b"").unwrap();
        drop(q);
        let _q = open(dir.path());
        assert!(!locks.join(format!("{gone}.lock")).exists());
        assert!(kept_lock.exists());
        assert!(locks.join("not-an-id.lock").exists());
    }

    #[test]
    fn a_waiter_on_a_message_removed_meanwhile_gets_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        let id = one(&q, 1, b"x");
        let first = q.lock_message(&id).unwrap();
        let (q2, id2) = (open(dir.path()), id.clone());
        let waiter = std::thread::spawn(move || q2.lock_message(&id2).map(|_| ()));
        std::thread::sleep(std::time::Duration::from_millis(100));
        first.remove().unwrap();
        drop(first);
        assert!(matches!(
            waiter.join().unwrap(),
            Err(QueueError::NotFound(_))
        ));
    }

    #[test]
    fn instances_and_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = one(&open(dir.path()), 1, b"x");
        let b = one(&open(dir.path()), 1, b"y");
        assert_ne!(a, b);
        assert!(a < b, "later instance sorts later at equal arrival");
        // A lost seq file is rebuilt from what is there.
        fs::remove_file(dir.path().join("seq")).unwrap();
        let c = one(&open(dir.path()), 1, b"z");
        assert!(c > b);
        fs::write(dir.path().join("seq"), "garbage").unwrap();
        let d = one(&open(dir.path()), 1, b"z");
        assert!(d > c);
    }

    /// A probe's server did not start on a full queue file system: writing
    /// `seq.tmp` failed. `seq` is then written over in place (a link to
    /// /dev/full makes the write of `seq.tmp` fail with ENOSPC).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_file_system_does_not_keep_the_queue_from_opening() {
        let dir = tempfile::tempdir().unwrap();
        let a = one(&open(dir.path()), 1, b"x");
        let before = fs::read_to_string(dir.path().join("seq")).unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join("seq.tmp")).unwrap();
        let q = open(dir.path());
        let b = one(&q, 1, b"y");
        assert!(b > a);
        let after = fs::read_to_string(dir.path().join("seq")).unwrap();
        assert_eq!(
            after.trim_end().parse::<u64>().unwrap(),
            before.trim_end().parse::<u64>().unwrap() + 1
        );
        assert!(!dir.path().join("seq.tmp").exists());
        drop(q);
        let c = one(&open(dir.path()), 1, b"z");
        assert!(c > b);
    }

    #[test]
    fn queue_files_and_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        fn walk(p: &Path, out: &mut Vec<(PathBuf, u32)>) {
            let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
            out.push((p.to_owned(), mode));
            if p.is_dir() {
                for e in fs::read_dir(p).unwrap() {
                    walk(&e.unwrap().path(), out);
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("q");
        let q = open(&root);
        let id = one(&q, 1, b"secret mail");
        let lock = q.lock_delivery().unwrap();
        let mut env = lock.envelope(&id).unwrap();
        env.attempts += 1;
        lock.update(&env).unwrap();
        let mut all = Vec::new();
        walk(&root, &mut all);
        assert!(all.len() > 6, "{all:?}");
        for (p, mode) in all {
            let want = if p.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode & !want, 0, "{} is {mode:o}", p.display());
        }
    }

    #[test]
    fn dropped_writer_leaves_nothing_and_clone_shares_instance() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        let q2 = q.clone();
        let mut env = NewEnvelope::new("", 5);
        env.recipients.push(Recipient::new("b@example.net"));
        let mut w = q2.enqueue(&env).unwrap();
        w.write_all(b"partial").unwrap();
        assert_eq!(w.written(), 7);
        drop(w);
        assert_eq!(
            fs::read_dir(&q.inner.msg).unwrap().count(),
            0,
            "partial body removed"
        );
        assert!(q.list().unwrap().messages.is_empty());
        let inst = q.inner.instance_dir.clone();
        drop(q);
        assert!(inst.exists(), "a clone keeps the instance alive");
        drop(q2);
        assert!(!inst.exists(), "the last clone cleans its tmp directory");
    }

    /// `seal` writes what can fail for want of space, and nothing is
    /// visible until `commit`; a sealed writer dropped leaves nothing.
    #[test]
    fn a_sealed_writer_is_invisible_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        let mut env = NewEnvelope::new("a@example.org", 5);
        env.recipients.push(Recipient::new("b@example.net"));
        let files = |q: &Queue| {
            let mut n = 0;
            for d in [&q.inner.msg, &q.inner.instance_dir] {
                n += fs::read_dir(d).unwrap().count();
            }
            n
        };
        let mut w = q.enqueue(&env).unwrap();
        w.write_all(b"body\r\n").unwrap();
        w.seal().unwrap();
        w.seal().unwrap();
        assert!(w.write_all(b"more").is_err(), "sealed: no more body");
        assert!(q.list().unwrap().messages.is_empty(), "not visible yet");
        drop(w);
        assert_eq!(files(&q), 0, "a dropped sealed writer leaves nothing");
        let mut w = q.enqueue(&env).unwrap();
        w.write_all(b"body\r\n").unwrap();
        w.seal().unwrap();
        let id = w.commit().unwrap();
        let listed = q.list().unwrap().messages;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, id);
        assert_eq!(listed[0].size, 6);
    }

    #[test]
    fn size_limit_and_envelope_limits() {
        let dir = tempfile::tempdir().unwrap();
        let o = QueueOptions {
            max_message_size: 10,
            max_recipients: 2,
            max_envelope_size: 400,
            ..QueueOptions::default()
        };
        let q = Queue::open(dir.path(), o).unwrap();
        let mut env = NewEnvelope::new("a@x", 1);
        assert!(matches!(
            q.enqueue(&env),
            Err(QueueError::InvalidEnvelope("no recipient"))
        ));
        env.recipients = vec![Recipient::new("r@x"); 3];
        assert!(matches!(
            q.enqueue(&env),
            Err(QueueError::InvalidEnvelope("too many recipients"))
        ));
        env.recipients = vec![Recipient::new("r".repeat(300))];
        assert!(matches!(
            q.enqueue(&env),
            Err(QueueError::InvalidEnvelope("envelope too large"))
        ));
        env.recipients = vec![Recipient::new("r@x")];
        let mut w = q.enqueue(&env).unwrap();
        w.write_all(b"0123456789").unwrap();
        let e = w.write_all(b"!").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(matches!(
            w.commit(),
            Err(QueueError::TooLarge { limit: 10 })
        ));
        assert!(q.list().unwrap().messages.is_empty());
        // Exactly at the limit is fine.
        let mut w = q.enqueue(&env).unwrap();
        w.write_all(b"0123456789").unwrap();
        let id = w.commit().unwrap();
        assert_eq!(q.envelope(&id).unwrap().size, 10);
        // An update may not grow the envelope past the limit either.
        let lock = q.lock_delivery().unwrap();
        let mut e = q.envelope(&id).unwrap();
        e.reverse_path = "x".repeat(500);
        assert!(matches!(
            lock.update(&e),
            Err(QueueError::InvalidEnvelope("envelope too large"))
        ));
    }

    #[test]
    fn missing_and_mismatched_envelopes_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        let a = one(&q, 1, b"a");
        let b = one(&q, 2, b"b");
        fs::remove_file(q.body_path(&a)).unwrap();
        assert!(matches!(q.body(&a), Err(QueueError::Corrupt { .. })));
        let text = fs::read_to_string(q.env_path(&b)).unwrap();
        fs::write(q.env_path(&b), text.replace(b.as_str(), "000000000009.9.9")).unwrap();
        let listing = q.list().unwrap();
        assert_eq!(
            listing.messages.len(),
            1,
            "a body file is not read by list()"
        );
        let reasons: Vec<_> = listing
            .corrupt
            .iter()
            .map(|c| match &c.error {
                QueueError::Corrupt { error, .. } => error.reason,
                _ => "other",
            })
            .collect();
        assert_eq!(reasons, ["id does not match the file name"]);
        let unknown: QueueId = "000000000003.1.1".parse().unwrap();
        assert!(matches!(q.envelope(&unknown), Err(QueueError::NotFound(_))));
        assert!(matches!(q.body(&unknown), Err(QueueError::NotFound(_))));
    }
}
