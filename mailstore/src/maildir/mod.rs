//! The Maildir++ backend.
//!
//! Layout under the root directory:
//!
//! ```text
//! <root>/<user>/{tmp,new,cur}/           INBOX
//! <root>/<user>/.Spam/{tmp,new,cur}/     Spam (with a `maildirfolder` marker)
//! <root>/<user>/mailbag-pop3.lock        POP3 maildrop lock (dot-lock, see below)
//! <root>/<user>/maildirsize              Maildir++ quota totals (users with a quota)
//! <folder>/mailbag-uidlist               UID index (see below)
//! <folder>/mailbag-uidlist.lock          serialises index updates (dot-lock)
//! ```
//!
//! Both locks are dot-locks, safe when several hosts share the root over
//! NFS: a file created with `O_EXCL` that holds its holder's pid, host name
//! and a unique token, removed at release. A POP3 session keeps its lock
//! fresh with [`Maildrop::lock_keep_alive`]; a lock left unrefreshed for
//! [`MaildirOptions::maildrop_lock_stale`] (a host that died) is taken over
//! by the next session. An index update waits for the index lock, which
//! turns stale after [`MaildirOptions::index_lock_stale`]. The hosts'
//! clocks must agree to within a third of these timeouts.
//!
//! Delivered files are named `<secs>.M<usecs>P<pid>Q<counter>.<host>,S=<size>,W=<crlf size>`
//! in `new/`; when POP3 has retrieved a message, commit moves it to `cur/`
//! with `:2,S` appended, as Dovecot does. Files written by Dovecot, Postfix,
//! mutt or other MTAs are read too; Dovecot's own files (`dovecot-uidlist`,
//! `dovecot.index*`) are ignored, except that a `dovecot-uidlist` seeds our
//! index the first time, so that UIDs survive a move from Dovecot.
//!
//! UIDs are assigned when a folder is scanned (maildrop open, listing) to
//! files not yet in the index, in delivery order, and the index is rewritten
//! atomically (temporary file, fsync, rename, fsync of the directory) before
//! any UID is handed out. Sizes with CRLF line endings come from the `,W=`
//! part of the name or, for files without it, are computed once and cached
//! in the index, so opening a big maildrop reads no message.
//!
//! When the index cannot be rewritten (a full disk, a read-only file system),
//! the folder is still served: messages already in the index keep their UIDs,
//! and each new one gets a provisional UID derived from its file name (32 hex
//! digits, never the 16 of an indexed UID, so never one handed out before or
//! after), stable as long as the index cannot be written; a maildrop reports
//! the failure through [`Maildrop::index_error`].
//!
//! A user exists when `<root>/<user>/` is a directory. Missing `tmp/`, `new/`
//! or `cur/` folders (a directory made by an administrator's `mkdir`, or by
//! another delivery agent that created only `.Spam/`) and a missing
//! `maildirfolder` marker are created on first use, as Dovecot does
//! ([`MaildirStore::repair_user`] does it up front).
//!
//! Everything the store creates is private to the server's account:
//! directories `0700`, files `0600` (before the umask).

mod dotlock;
mod maildirsize;
mod name;
mod size_check;
pub(crate) mod uidlist;
mod usage;

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use maildirsize::DEFAULT_QUOTA_FILE_RECOUNT_SIZE;
pub use name::MaildirName;

use crate::crlf::count_reader;
use crate::keep_alive::Refresh;
use crate::marks::Marks;
use crate::memory::DEFAULT_MAX_MESSAGE_SIZE;
use crate::uidl_format::UidlFormat;
use crate::{
    CommitSummary, CrlfCounter, Delivery, DeliveryReceipt, Error, Folder, LockKeepAlive, Maildrop,
    MaildropEntry, Mailstore, MessageInfo, MessageReader, Uid, UserName,
};
use dotlock::DotLock;
use size_check::Corrections;
use uidlist::{Record, UidList};
use usage::Usage;

/// Default age after which files left in `tmp/` by an interrupted delivery
/// are removed: 36 hours, as the Maildir specification suggests.
pub const DEFAULT_STALE_TMP_AGE: Duration = Duration::from_secs(36 * 3600);

/// Default of [`MaildirOptions::maildrop_lock_stale`]: 60 seconds.
pub const DEFAULT_MAILDROP_LOCK_STALE: Duration = Duration::from_secs(60);

/// Default of [`MaildirOptions::index_lock_stale`]: 30 seconds.
pub const DEFAULT_INDEX_LOCK_STALE: Duration = Duration::from_secs(30);

/// Buffer size for message reads and writes: 64 KiB.
const IO_BUFFER: usize = 64 * 1024;

const POP3_LOCK: &str = "mailbag-pop3.lock";
const UIDLIST_LOCK: &str = "mailbag-uidlist.lock";
const UIDLIST_TMP: &str = "mailbag-uidlist.tmp";
const DOVECOT_UIDLIST: &str = "dovecot-uidlist";
const SPAM_DIR: &str = ".Spam";
/// Mode of the directories the store creates (before the umask).
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of the files the store creates (before the umask).
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates `path` and missing parents with [`DIR_MODE`].
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Options to open a new file with [`FILE_MODE`] for writing.
pub(crate) fn private_file() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).mode(FILE_MODE);
    o
}

/// Gives a user's quota in octets (`None`: no quota):
/// [`MaildirStore::with_quota_lookup`].
pub type QuotaLookup = dyn Fn(&UserName) -> Option<u64> + Send + Sync;

/// Options of a [`MaildirStore`].
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::MaildirOptions;
///
/// let mut opts = MaildirOptions::default();
/// opts.max_message_size = 25 * 1024 * 1024;
/// opts.user_quota = Some(1 << 30);
/// assert!(opts.fsync); // on unless you turn it off
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaildirOptions {
    /// Largest message accepted, in octets as written. Default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`](crate::DEFAULT_MAX_MESSAGE_SIZE) (64 MiB).
    pub max_message_size: u64,
    /// Total stored octets a user may hold over INBOX and Spam; `None` (the
    /// default) for no quota. Checked when a delivery starts and when it
    /// commits; concurrent deliveries can overshoot by at most their own sizes.
    /// The totals are kept in the Maildir++ `maildirsize` file, as Dovecot's
    /// and Courier's Maildir++ quota keep them, so a check reads one small
    /// file; the Maildir is counted when that file is missing, stale or
    /// broken, and before a delivery is refused.
    pub user_quota: Option<u64>,
    /// Report a full quota as temporary (SMTP 452) instead of permanent (552).
    /// Default `false`, like Dovecot's `quota_full_tempfail = no`.
    pub quota_tempfail: bool,
    /// Create a user's Maildir on first delivery or maildrop open (a login)
    /// instead of failing with [`Error::UnknownUser`]: for a user database
    /// too large to create every Maildir up front. Listing, reading and
    /// moving never create (a background scan must not bring back a Maildir
    /// an administrator removed). Default `false`: users are made with
    /// [`Mailstore::create_user`] (or exist already on disk).
    pub auto_create_users: bool,
    /// fsync message files, the index and directories. Default `true`.
    /// Turning it off loses durability on power failure; meant for benchmarks
    /// and tests only.
    pub fsync: bool,
    /// Host name used in new file names. Default `None`: the system's host name.
    pub hostname: Option<String>,
    /// Files in `tmp/` (of INBOX and Spam) older than this are removed when
    /// the user's maildrop is opened, and by
    /// [`Mailstore::remove_interrupted_deliveries`].
    /// Default [`DEFAULT_STALE_TMP_AGE`] (36 hours).
    pub stale_tmp_age: Duration,
    /// A POP3 maildrop's lock file not refreshed for this long belongs to a
    /// session that died (or a host that was cut off) and is taken over by
    /// the next one; its holder refreshes it every third of it through
    /// [`Maildrop::lock_keep_alive`]. Default
    /// [`DEFAULT_MAILDROP_LOCK_STALE`] (60 seconds).
    pub maildrop_lock_stale: Duration,
    /// An index lock file older than this was left by a scan that died and
    /// is removed by the next one; a scan that waits for the index lock
    /// waits about this long at most. Default [`DEFAULT_INDEX_LOCK_STALE`]
    /// (30 seconds).
    pub index_lock_stale: Duration,
    /// A `maildirsize` file of this many octets or more (about 400 changes
    /// since its last recount) is recounted from the Maildir and rewritten
    /// rather than read. Default [`DEFAULT_QUOTA_FILE_RECOUNT_SIZE`] (5,120,
    /// the Maildir++ specification's).
    pub quota_file_recount_size: u64,
    /// How POP3 unique ids are made: as the server that served these Maildirs
    /// before made them (its `pop3_uidl_format`), so that clients leaving mail
    /// on the server fetch nothing twice after the move. A change later changes
    /// every id: such clients fetch everything again. Default
    /// [`UidlFormat::UidValidity`] (`%08Xu%08Xv`, Dovecot's).
    pub uidl_format: UidlFormat,
}

impl Default for MaildirOptions {
    fn default() -> Self {
        MaildirOptions {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            user_quota: None,
            quota_tempfail: false,
            auto_create_users: false,
            fsync: true,
            hostname: None,
            stale_tmp_age: DEFAULT_STALE_TMP_AGE,
            maildrop_lock_stale: DEFAULT_MAILDROP_LOCK_STALE,
            index_lock_stale: DEFAULT_INDEX_LOCK_STALE,
            quota_file_recount_size: DEFAULT_QUOTA_FILE_RECOUNT_SIZE,
            uidl_format: UidlFormat::UidValidity,
        }
    }
}

/// A [`Mailstore`] on Maildir++ directories, interoperable with Dovecot and mutt.
///
/// Cheap to clone; clones share options and the file-name counter. Several
/// processes may use the same root: every cross-process step is protected
/// by file locks or atomic renames.
///
/// # Examples
///
/// ```
/// use std::io::Read;
/// use mailbag_mailstore::{Folder, MaildirOptions, MaildirStore, Mailstore, UserName};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let root = tempfile::tempdir()?;
/// let store = MaildirStore::new(root.path(), MaildirOptions::default())?;
/// let joe = UserName::new("joe")?;
/// store.create_user(&joe)?;
///
/// let mut d = store.begin_delivery(&joe, Folder::Inbox)?;
/// d.write_chunk(b"Subject: hello\n\n")?;
/// d.write_chunk(b"Hi Joe!\n")?;
/// let receipt = d.commit()?; // fsynced and visible in new/
/// assert_eq!((receipt.stored_size, receipt.size), (24, 27));
///
/// let mut md = store.open_maildrop(&joe)?;
/// let mut msg = String::new();
/// md.read_message(1)?.read_to_string(&mut msg)?;
/// assert_eq!(msg, "Subject: hello\r\n\r\nHi Joe!\r\n");
/// md.commit()?; // the retrieved message moves to cur/ with :2,S
/// assert_eq!(std::fs::read_dir(root.path().join("joe/cur"))?.count(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MaildirStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    options: MaildirOptions,
    /// Per-user quotas ([`MaildirStore::with_quota_lookup`]).
    quota: Option<Arc<QuotaLookup>>,
    host: String,
    pid: u32,
    counter: AtomicU64,
    /// Each user's quota usage while their Maildir is unchanged.
    usage: usage::UsageCache,
}

impl fmt::Debug for MaildirStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaildirStore")
            .field("root", &self.inner.root)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// A message found by a folder scan.
#[derive(Clone, Debug)]
struct Msg {
    uid: u32,
    base: String,
    name: String,
    cur: bool,
    crlf_size: u64,
    /// Not in the index (it could not be written): the UID is derived from the base.
    provisional: bool,
    /// The POP3 id Dovecot kept for it (`P<uidl>` in `dovecot-uidlist`).
    pop3_uidl: Option<String>,
}

/// How a folder's POP3 ids are made from its UIDs.
#[derive(Clone, Copy, Debug)]
struct Numbering {
    validity: u32,
    /// The index was seeded from Dovecot's, whose UIDs stop below this.
    dovecot_next: Option<u32>,
    /// The form of the ids ([`MaildirOptions::uidl_format`]).
    format: UidlFormat,
}

/// A folder scan: the UID validity, the messages by UID, and the error that
/// kept the index from being rewritten, if one did.
struct Scanned {
    numbering: Numbering,
    msgs: Vec<Msg>,
    unsaved: Option<Error>,
}

/// 64-bit FNV-1a of `bytes` from `basis`: a hash fixed by its definition (the
/// standard library's may change between releases), for provisional UIDs.
fn fnv1a(basis: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(basis, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Msg {
    /// The POP3 unique id: `%08x%08x` of UID and validity (Dovecot's
    /// `%08Xu%08Xv`), or for a provisional UID 32 hex digits derived from the
    /// base name. In a folder whose index was seeded from Dovecot's, the id
    /// Dovecot kept for the message (`P<uidl>`) if it has one, and for a UID
    /// we gave (from where Dovecot's numbering stopped) the same 16 digits
    /// followed by `m`: Dovecot, serving the same Maildir, numbers new
    /// messages on its own under the same validity, and the id of one of
    /// ours must never be the id Dovecot gives another message.
    fn unique_id(&self, numbering: Numbering) -> Uid {
        let Numbering {
            validity,
            dovecot_next,
            format,
        } = numbering;
        if self.provisional {
            let b = self.base.as_bytes();
            let id = format!(
                "{:016x}{:016x}",
                fnv1a(0xcbf2_9ce4_8422_2325, b),
                fnv1a(0x6c62_272e_07bb_0142, b)
            );
            Uid::new(id).unwrap_or_else(|_| Uid::from_parts(self.uid, validity))
        } else if let Some(id) = self
            .pop3_uidl
            .as_ref()
            .and_then(|i| Uid::new(i.as_str()).ok())
        {
            id
        } else {
            let id = format.render(self.uid, validity, &self.base);
            let ours = format.uses_uid() && dovecot_next.is_some_and(|next| self.uid >= next);
            let id = if ours { format!("{id}m") } else { id };
            // A base name too long for an id (over 70 characters) gets the default form.
            Uid::new(id).unwrap_or_else(|_| Uid::from_parts(self.uid, validity))
        }
    }

    fn path(&self, folder_dir: &Path) -> PathBuf {
        folder_dir.join(sub(self.cur)).join(&self.name)
    }
}

fn sub(cur: bool) -> &'static str {
    if cur { "cur" } else { "new" }
}

fn system_host() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// Calls `f` with each regular file of the directory `d` (a `new/` or a
/// `cur/`; none when it does not exist) whose name is UTF-8, and that name:
/// not a directory, and not a symbolic link, which would serve whatever file
/// it points to as a message. The caller parses the name
/// ([`MaildirName::parse`]) and skips what it refuses; an error of `f` stops
/// the walk.
fn each_file(
    d: &Path,
    f: impl FnMut(&fs::DirEntry, String) -> Result<(), Error>,
) -> Result<(), Error> {
    each_file_or_other(d, f, |_| {})
}

/// [`each_file`], handing `other` each file whose name is not UTF-8.
fn each_file_or_other(
    d: &Path,
    mut f: impl FnMut(&fs::DirEntry, String) -> Result<(), Error>,
    mut other: impl FnMut(&fs::DirEntry),
) -> Result<(), Error> {
    let rd = match fs::read_dir(d) {
        Ok(rd) => rd,
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(Error::io("read directory", d, e)),
    };
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read directory", d, e))?;
        if !ent.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match ent.file_name().into_string() {
            Ok(name) => f(&ent, name)?,
            Err(_) => other(&ent),
        }
    }
    Ok(())
}

/// A fresh name for a file whose name is not UTF-8 (another program wrote it; it
/// would not be listed): `base`, and the name's `:2,` flags when they are
/// ASCII. Hidden files (`.`) get none.
fn readable_name(name: &std::ffi::OsStr, base: impl FnOnce() -> String) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    if bytes.first() == Some(&b'.') {
        return None;
    }
    let flags = bytes
        .windows(3)
        .rposition(|w| w == b":2,")
        .and_then(|i| bytes.get(i..))
        .and_then(|f| std::str::from_utf8(f).ok())
        .unwrap_or("");
    Some(format!("{}{flags}", base()))
}

/// Reads the valid message names of `dir/new` then `dir/cur`, keyed by base.
///
/// The same base twice is either one message that moved from `new/` to
/// `cur/` (or had its flags changed) while we looked, or two files that share
/// a base (a broken Maildir: a copy made by hand, a restore): when both files
/// still exist and are not one file under two names, the one in `new/` (else
/// either of the two) is renamed to a fresh base from `fresh_base`, keeping
/// the rest of its name, so that both messages are shown, each under its own
/// UID, and deleting one never brings the other back under the same UID (as
/// Dovecot renames such a duplicate). If the rename fails, the second one
/// stays hidden until it works. A file whose name is not UTF-8 (written by
/// another program) is renamed the same way, keeping its `:2,` flags, so
/// that it is listed (a probe's such message was never shown).
fn read_names(
    folder_dir: &Path,
    fresh_base: &mut dyn FnMut() -> String,
) -> Result<HashMap<String, (bool, String)>, Error> {
    let mut out: HashMap<String, (bool, String)> = HashMap::new();
    // The entry each repeated base displaced, with that base.
    let mut twins: Vec<(String, (bool, String))> = Vec::new();
    // Files whose names are not UTF-8: renamed below to fresh names.
    let mut unreadable: Vec<(bool, PathBuf)> = Vec::new();
    for cur in [false, true] {
        each_file_or_other(
            &folder_dir.join(sub(cur)),
            |_, name| {
                if let Some(base) = MaildirName::parse(&name).map(|n| n.base().to_owned())
                    && let Some(first) = out.insert(base.clone(), (cur, name))
                {
                    twins.push((base, first));
                }
                Ok(())
            },
            |ent| unreadable.push((cur, ent.path())),
        )?;
    }
    for (cur, path) in unreadable {
        let Some(old) = path.file_name() else {
            continue;
        };
        let mut fresh = String::new();
        let Some(new_name) = readable_name(old, || {
            fresh = fresh_base();
            fresh.clone()
        }) else {
            continue;
        };
        if fs::rename(&path, path.with_file_name(&new_name)).is_ok() {
            out.insert(fresh, (cur, new_name));
        }
    }
    for (base, (cur, name)) in twins {
        let path = folder_dir.join(sub(cur)).join(&name);
        let Ok(meta) = fs::metadata(&path) else {
            continue; // it moved while we looked: one message
        };
        let Some((other_cur, other_name)) = out.get(&base).cloned() else {
            continue;
        };
        let other = folder_dir.join(sub(other_cur)).join(&other_name);
        let same_file = fs::metadata(&other)
            .map(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()))
            .unwrap_or(true);
        if same_file {
            continue;
        }
        // Rename the one in new/ (not yet seen by any client), else this one;
        // new/ is read first, so the displaced entry is in new/ whenever the
        // other is not.
        let ((rename_cur, rename_name), keep) = if other_cur {
            ((cur, name), (other_cur, other_name))
        } else {
            ((other_cur, other_name), (cur, name))
        };
        let fresh = fresh_base();
        let tail = &rename_name[first_field(&rename_name)..];
        let new_name = format!("{fresh}{tail}");
        let dir = folder_dir.join(sub(rename_cur));
        if fs::rename(dir.join(&rename_name), dir.join(&new_name)).is_ok() {
            out.insert(base, keep);
            out.insert(fresh, (rename_cur, new_name));
        }
    }
    Ok(out)
}

/// Where the part of a Maildir name after its unique part starts: its first
/// `,` field (`,S=`, `,W=`) or its `:` info, else its end.
fn first_field(name: &str) -> usize {
    name.find([',', ':']).unwrap_or(name.len())
}

/// Stored octets and messages of the files in `dirs` (each a `new/` or
/// `cur/`), the octets from `,S=` or the file's metadata, without the map
/// [`read_names`] builds. A file caught between `new/` and `cur/` by a
/// rename may count twice for that moment.
fn count_usage(dirs: &[PathBuf]) -> Result<Usage, Error> {
    let mut total = Usage::default();
    for d in dirs {
        each_file(d, |ent, name| {
            if let Some(n) = MaildirName::parse(&name) {
                let size = n
                    .size()
                    .unwrap_or_else(|| ent.metadata().map_or(0, |m| m.len()));
                total.octets = total.octets.saturating_add(size);
                total.messages += 1;
            }
            Ok(())
        })?;
    }
    Ok(total)
}

/// Stored octets of the message file at `path`, as [`count_usage`] counts
/// them: from `,S=` in its name, else its size (0 when it is gone).
fn stored_size(path: &Path) -> u64 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(MaildirName::parse)
        .and_then(|n| n.size())
        .unwrap_or_else(|| fs::metadata(path).map_or(0, |m| m.len()))
}

/// A count (octets or messages) as a `maildirsize` change.
fn signed(octets: u64) -> i64 {
    i64::try_from(octets).unwrap_or(i64::MAX)
}

/// Finds the current name of a message whose file moved (e.g. new -> cur, or a
/// flag change by another program).
fn relocate(folder_dir: &Path, base: &str) -> Option<(bool, String)> {
    for cur in [true, false] {
        let Ok(rd) = fs::read_dir(folder_dir.join(sub(cur))) else {
            continue;
        };
        for ent in rd.flatten() {
            if let Ok(name) = ent.file_name().into_string()
                && ent.file_type().is_ok_and(|t| t.is_file())
                && MaildirName::parse(&name).is_some_and(|n| n.base() == base)
            {
                return Some((cur, name));
            }
        }
    }
    None
}

impl MaildirStore {
    /// A store rooted at `root` (created `0700` if missing).
    pub fn new(root: impl Into<PathBuf>, options: MaildirOptions) -> Result<Self, Error> {
        MaildirStore::open(root.into(), options, None)
    }

    /// Like [`MaildirStore::new`], with each user's quota asked of `lookup`
    /// (octets over INBOX and Spam; `None`: no quota) at every delivery,
    /// instead of the one [`MaildirOptions::user_quota`]: for quotas kept
    /// per user in a user database that can change while the store is open.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mailbag_mailstore::{Error, Folder, MaildirOptions, MaildirStore, Mailstore, UserName};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let mut opts = MaildirOptions::default();
    /// opts.quota_tempfail = true;
    /// let small = UserName::new("small")?;
    /// let lookup = Arc::new(|u: &UserName| (u.as_str() == "small").then_some(36));
    /// let store = MaildirStore::with_quota_lookup(dir.path(), opts, lookup)?;
    /// let big = UserName::new("big")?;
    /// for u in [&small, &big] {
    ///     store.create_user(u)?;
    ///     store.deliver(u, Folder::Inbox, &mut &b"Subject: a\r\n\r\nmore than ten octets\r\n"[..])?;
    /// }
    /// // `small` holds its 36 octets now: the next delivery is refused, temporarily.
    /// let err = store.deliver(&small, Folder::Inbox, &mut &b"x\r\n"[..]).unwrap_err();
    /// assert!(matches!(err, Error::QuotaExceeded { quota: 36, temporary: true }));
    /// store.deliver(&big, Folder::Inbox, &mut &b"x\r\n"[..])?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`MaildirStore::new`].
    pub fn with_quota_lookup(
        root: impl Into<PathBuf>,
        options: MaildirOptions,
        lookup: Arc<QuotaLookup>,
    ) -> Result<Self, Error> {
        MaildirStore::open(root.into(), options, Some(lookup))
    }

    fn open(
        root: PathBuf,
        options: MaildirOptions,
        quota: Option<Arc<QuotaLookup>>,
    ) -> Result<Self, Error> {
        create_private_dir(&root).map_err(|e| Error::io("create", &root, e))?;
        let host = name::escape_host(&options.hostname.clone().unwrap_or_else(system_host));
        Ok(MaildirStore {
            inner: Arc::new(Inner {
                root,
                options,
                quota,
                host,
                pid: std::process::id(),
                counter: AtomicU64::new(0),
                usage: usage::UsageCache::default(),
            }),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The directory of a user's folder (which may not exist yet).
    pub fn folder_path(&self, user: &UserName, folder: Folder) -> PathBuf {
        self.inner.folder_dir(user, folder)
    }

    /// Creates what is missing of an existing user's Maildir: `tmp/`, `new/`
    /// and `cur/` of INBOX and Spam and Spam's `maildirfolder` marker (a
    /// directory made with `mkdir`, or by another delivery agent). Returns
    /// `Ok(false)`, creating nothing, when `<root>/<user>/` does not exist.
    /// Every other operation does the same for what it uses; this is for a
    /// check at start-up.
    pub fn repair_user(&self, user: &UserName) -> Result<bool, Error> {
        if !self.inner.user_exists(user) {
            return Ok(false);
        }
        for folder in Folder::ALL {
            self.inner.ensure_folder(user, folder)?;
        }
        Ok(true)
    }

    /// Removes files in a folder's `tmp/` last modified before `cutoff` (left
    /// by deliveries interrupted by a crash); returns how many.
    pub fn remove_stale_tmp(
        &self,
        user: &UserName,
        folder: Folder,
        cutoff: SystemTime,
    ) -> Result<usize, Error> {
        self.inner.remove_stale_tmp(user, folder, cutoff)
    }
}

impl Inner {
    fn user_dir(&self, user: &UserName) -> PathBuf {
        self.root.join(user.as_str())
    }

    fn folder_dir(&self, user: &UserName, folder: Folder) -> PathBuf {
        match folder {
            Folder::Spam => self.user_dir(user).join(SPAM_DIR),
            _ => self.user_dir(user),
        }
    }

    /// Makes a user's Maildir (INBOX and Spam); [`Error::UserExists`] when
    /// the directory is there already.
    fn create_user(&self, user: &UserName) -> Result<(), Error> {
        let dir = self.user_dir(user);
        match DirBuilder::new().mode(DIR_MODE).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::UserExists(user.to_string()));
            }
            Err(e) => return Err(Error::io("create", dir, e)),
        }
        self.ensure_folder(user, Folder::Inbox)?;
        self.ensure_folder(user, Folder::Spam)?;
        self.sync_dir(&self.root)
    }

    /// The user's directory exists (its folders are created on first use).
    fn user_exists(&self, user: &UserName) -> bool {
        self.user_dir(user).is_dir()
    }

    /// Fails with [`Error::UnknownUser`] unless the user exists; creates what
    /// is missing of the INBOX and of `folder`, and returns `folder`'s directory.
    /// `create`: make a missing Maildir when `auto_create_users` is set (a
    /// delivery or a maildrop open; listing and reading never create).
    fn open_user(&self, user: &UserName, folder: Folder, create: bool) -> Result<PathBuf, Error> {
        if !self.user_exists(user) {
            if !(create && self.options.auto_create_users) {
                return Err(Error::UnknownUser(user.to_string()));
            }
            match self.create_user(user) {
                Ok(()) | Err(Error::UserExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let inbox = self.ensure_folder(user, Folder::Inbox)?;
        match folder {
            Folder::Inbox => Ok(inbox),
            other => self.ensure_folder(user, other),
        }
    }

    fn sync_dir(&self, dir: &Path) -> Result<(), Error> {
        if !self.options.fsync {
            return Ok(());
        }
        File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("fsync directory", dir, e))
    }

    /// Creates the folder's missing `tmp/`, `new/`, `cur/` (and, but for
    /// the INBOX, its `maildirfolder` marker); only looks when nothing is missing.
    fn ensure_folder(&self, user: &UserName, folder: Folder) -> Result<PathBuf, Error> {
        let dir = self.folder_dir(user, folder);
        let marker = (folder != Folder::Inbox).then(|| dir.join("maildirfolder"));
        let missing: Vec<&str> = ["tmp", "new", "cur"]
            .into_iter()
            .filter(|s| !dir.join(s).is_dir())
            .collect();
        let marker_missing = marker.as_ref().is_some_and(|m| !m.is_file());
        if missing.is_empty() && !marker_missing {
            return Ok(dir);
        }
        for s in missing {
            let p = dir.join(s);
            create_private_dir(&p).map_err(|e| Error::io("create", p, e))?;
        }
        if let Some(marker) = marker.filter(|_| marker_missing) {
            private_file()
                .create(true)
                .truncate(false)
                .open(&marker)
                .map_err(|e| Error::io("create", marker, e))?;
        }
        self.sync_dir(&dir)?;
        if let Some(parent) = dir.parent() {
            self.sync_dir(parent)?;
        }
        Ok(dir)
    }

    fn next_base(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        name::unique_base(now.as_secs(), now.subsec_micros(), self.pid, n, &self.host)
    }

    /// The quota of `user`: the lookup's, else the options'.
    fn quota_of(&self, user: &UserName) -> Option<u64> {
        match &self.quota {
            Some(lookup) => lookup(user),
            None => self.options.user_quota,
        }
    }

    fn quota_error(&self, quota: u64) -> Error {
        Error::QuotaExceeded {
            quota,
            temporary: self.options.quota_tempfail,
        }
    }

    /// Stored octets and messages over both folders, from `,S=` or the
    /// file's metadata: remembered while the directories are unchanged
    /// ([`usage::UsageCache`]), else counted without building the name map a
    /// scan needs.
    fn count_user(&self, user: &UserName) -> Result<Usage, Error> {
        let dirs: Vec<PathBuf> = Folder::ALL
            .into_iter()
            .flat_map(|f| {
                let d = self.folder_dir(user, f);
                [d.join(sub(false)), d.join(sub(true))]
            })
            .collect();
        self.usage.usage(user, &dirs, || count_usage(&dirs))
    }

    fn quota_file(&self, user: &UserName) -> PathBuf {
        self.user_dir(user).join(maildirsize::FILE_NAME)
    }

    /// Fails with the quota error when `user` has a quota and holds it all
    /// already, or `incoming` more octets would pass it. The totals come
    /// from `maildirsize`; when that file is missing, stale or broken, or
    /// its totals would refuse, the Maildir is counted (a refusal is never
    /// made on the file's word) and the file rewritten if it was wrong.
    fn check_quota(&self, user: &UserName, incoming: u64) -> Result<(), Error> {
        let Some(quota) = self.quota_of(user) else {
            return Ok(());
        };
        let refuses = |used: u64| used >= quota || used.saturating_add(incoming) > quota;
        let path = self.quota_file(user);
        let recount_size = self.options.quota_file_recount_size;
        // An unreadable file is counted instead, like a broken one.
        let from_file = maildirsize::read(&path, recount_size)
            .ok()
            .flatten()
            .and_then(|content| maildirsize::parse(&content, quota, recount_size));
        if from_file.is_some_and(|u| !refuses(u.octets)) {
            return Ok(());
        }
        let counted = self.count_user(user)?;
        if from_file != Some(counted) {
            // Best effort: without the file, the next check counts again.
            let tmp = self.user_dir(user).join("tmp").join(format!(
                "{}.{}",
                self.next_base(),
                maildirsize::FILE_NAME
            ));
            let _ = maildirsize::write(&path, &tmp, quota, counted);
        }
        if refuses(counted.octets) {
            return Err(self.quota_error(quota));
        }
        Ok(())
    }

    /// Adds a change to the user's `maildirsize`, if it has one.
    fn quota_file_change(&self, user: &UserName, octets: i64, messages: i64) {
        maildirsize::append(&self.quota_file(user), octets, messages);
    }

    fn fresh_uidvalidity(old: Option<u32>) -> u32 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1);
        let v = u32::try_from(now).unwrap_or(u32::MAX).max(1);
        match old {
            Some(o) if o >= v => o.wrapping_add(1).max(1),
            _ => v,
        }
    }

    /// Assigns UIDs to new files, updates the index, returns the folder's
    /// messages sorted by UID and the UID validity. When the index cannot be
    /// rewritten, the new files get provisional UIDs and the error is in
    /// [`Scanned::unsaved`].
    fn scan(&self, dir: &Path) -> Result<Scanned, Error> {
        if !dir.join("cur").is_dir() {
            return Ok(Scanned {
                numbering: Numbering {
                    validity: 1,
                    dovecot_next: None,
                    format: self.options.uidl_format,
                },
                msgs: Vec::new(),
                unsaved: None,
            });
        }
        // Without the lock (its file cannot be created on a full disk) the
        // index is only read, never written: new messages get provisional UIDs.
        let stale = self.options.index_lock_stale;
        let (_lock, lock_error) = match DotLock::take(&dir.join(UIDLIST_LOCK), stale, &self.host) {
            Ok(l) => (Some(l), None),
            Err(e @ Error::Io { .. }) => (None, Some(e)),
            Err(e) => return Err(e),
        };
        let list_path = dir.join(uidlist::FILE_NAME);
        // An unreadable index is replaced; the caller hears of it, since
        // every UID of the folder changes (clients that leave mail on the
        // server fetch it all again).
        let mut discarded = None;
        let (list, mut changed) = match fs::read(&list_path) {
            Ok(b) => match UidList::parse(&b) {
                Some(l) => (l, false),
                None => {
                    discarded = Some(Error::io(
                        "parse",
                        &list_path,
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            "unreadable UID index replaced: the folder's UID validity and every UID changed",
                        ),
                    ));
                    (UidList::new(Self::fresh_uidvalidity(None)), true)
                }
            },
            Err(e) if not_found(&e) => {
                let seeded = fs::read(dir.join(DOVECOT_UIDLIST))
                    .ok()
                    .and_then(|b| UidList::from_dovecot(&b));
                (
                    seeded.unwrap_or_else(|| UidList::new(Self::fresh_uidvalidity(None))),
                    true,
                )
            }
            Err(e) => return Err(Error::io("read", list_path, e)),
        };
        let mut names = read_names(dir, &mut || self.next_base())?;
        let mut msgs = Vec::with_capacity(names.len());
        for rec in &list.records {
            let Some((cur, name)) = names.remove(&rec.base) else {
                changed = true; // gone: drop from the index
                continue;
            };
            // The index's size wins over the name's `,W=`: a read that found
            // the name wrong corrected the index (`size_check`). A record
            // without one (seeded from Dovecot's list) takes the name's only
            // if it fits the file, as a new file's does.
            let from_name = MaildirName::parse(&name)
                .and_then(|n| n.crlf_size().map(|w| (n.size(), w)))
                .filter(|&(s, w)| {
                    rec.crlf_size.is_some() || Self::name_sizes_hold(dir, cur, &name, s, w)
                })
                .map(|(_, w)| w);
            let crlf_size = match rec.crlf_size.or(from_name) {
                Some(s) => s,
                None => {
                    changed = true;
                    match self.count(dir, cur, &name)? {
                        Some(s) => s,
                        None => continue,
                    }
                }
            };
            msgs.push(Msg {
                uid: rec.uid,
                base: rec.base.clone(),
                name,
                cur,
                crlf_size,
                provisional: false,
                pop3_uidl: rec.pop3_uidl.clone(),
            });
        }
        let indexed = msgs.len();
        // Newcomers, in delivery order.
        let mut fresh: Vec<(String, (bool, String))> = names.into_iter().collect();
        fresh.sort_by(|a, b| {
            let ka = MaildirName::parse(&a.1.1).map(|n| n.sort_key());
            let kb = MaildirName::parse(&b.1.1).map(|n| n.sort_key());
            ka.cmp(&kb)
        });
        let mut validity = list.uidvalidity;
        let mut next_uid = list.next_uid;
        let mut dovecot_next = list.dovecot_next;
        // The UIDs left cannot number the newcomers (a folder that has had 4 billion
        // messages, or an index that says so): the folder starts over with a new
        // UID validity, every message numbered again from 1, as after a broken
        // index, rather than refusing to open from now on.
        let renumbered = u64::from(next_uid) + fresh.len() as u64 > u64::from(u32::MAX);
        if renumbered {
            validity = Self::fresh_uidvalidity(Some(validity));
            next_uid = 1;
            // A new validity of ours: no id can be Dovecot's any more.
            dovecot_next = None;
            for m in &mut msgs {
                m.uid = next_uid;
                m.pop3_uidl = None;
                next_uid += 1;
            }
            changed = true;
            discarded = Some(Error::io(
                "assign a UID in",
                dir,
                io::Error::other(
                    "UID space of the folder exhausted: its UID validity and every UID changed",
                ),
            ));
        }
        // In a folder Dovecot numbered too, a newcomer Dovecot has numbered
        // meanwhile (a move back to it and here again) keeps the id Dovecot gave
        // it, so that its clients do not fetch it twice (a migration probe's
        // did); it gets a UID of ours all the same.
        let dovecot_ids: HashMap<String, String> = if fresh.is_empty() || dovecot_next.is_none() {
            HashMap::new()
        } else {
            Self::dovecot_ids(dir, validity, self.options.uidl_format)
        };
        for (base, (cur, name)) in fresh {
            let from_name = MaildirName::parse(&name)
                .and_then(|n| n.crlf_size().map(|w| (n.size(), w)))
                .filter(|&(s, w)| Self::name_sizes_hold(dir, cur, &name, s, w))
                .map(|(_, w)| w);
            let crlf_size = match from_name {
                Some(s) => s,
                None => match self.count(dir, cur, &name)? {
                    Some(s) => s,
                    None => continue,
                },
            };
            let uid = next_uid;
            next_uid = next_uid.checked_add(1).ok_or_else(|| {
                Error::io(
                    "assign a UID in",
                    dir,
                    io::Error::other("UID space of the folder exhausted"),
                )
            })?;
            changed = true;
            let pop3_uidl = dovecot_ids.get(&base).cloned();
            msgs.push(Msg {
                uid,
                base,
                name,
                cur,
                crlf_size,
                provisional: false,
                pop3_uidl,
            });
        }
        let mut unsaved = None;
        if changed {
            let new_list = UidList {
                uidvalidity: validity,
                next_uid,
                dovecot_next,
                records: msgs
                    .iter()
                    .map(|m| Record {
                        uid: m.uid,
                        crlf_size: Some(m.crlf_size),
                        base: m.base.clone(),
                        pop3_uidl: m.pop3_uidl.clone(),
                    })
                    .collect(),
            };
            let written = match lock_error {
                Some(e) => Err(e),
                None => self.write_atomic(dir, &new_list.serialize()),
            };
            if let Err(e) = written {
                // Still serve the folder: the UIDs assigned now are not
                // durable, so they must not be handed out (the next scan could
                // give them to other messages); derive them from the names.
                // After a renumbering, none of them is.
                let skip = if renumbered { 0 } else { indexed };
                for m in msgs.iter_mut().skip(skip) {
                    m.provisional = true;
                }
                unsaved = Some(e);
            }
        }
        Ok(Scanned {
            numbering: Numbering {
                validity,
                dovecot_next,
                format: self.options.uidl_format,
            },
            msgs,
            unsaved: unsaved.or(discarded),
        })
    }

    /// The POP3 ids Dovecot's `dovecot-uidlist` in `dir` gives, by base name,
    /// when it numbers under `validity` (ours, seeded from it): its kept
    /// `P` ids, else `format` made from its UIDs. Empty when there is no such
    /// list, or it is of another validity.
    fn dovecot_ids(dir: &Path, validity: u32, format: UidlFormat) -> HashMap<String, String> {
        let Some(list) = fs::read(dir.join(DOVECOT_UIDLIST))
            .ok()
            .and_then(|b| UidList::from_dovecot(&b))
            .filter(|l| l.uidvalidity == validity)
        else {
            return HashMap::new();
        };
        list.records
            .into_iter()
            .map(|r| {
                let id = r
                    .pop3_uidl
                    .unwrap_or_else(|| format.render(r.uid, validity, &r.base));
                (r.base, id)
            })
            .collect()
    }

    /// Writes the sizes whole reads found (`(base, size)`) into the folder's
    /// index, so that the next scan gives them. Best effort: without the
    /// index lock, or when the index cannot be read or written, the next
    /// read finds them again.
    fn correct_sizes(&self, dir: &Path, fixes: &[(String, u64)]) {
        if fixes.is_empty() {
            return;
        }
        let stale = self.options.index_lock_stale;
        let Ok(_lock) = DotLock::take(&dir.join(UIDLIST_LOCK), stale, &self.host) else {
            return;
        };
        let Some(mut list) = fs::read(dir.join(uidlist::FILE_NAME))
            .ok()
            .and_then(|b| UidList::parse(&b))
        else {
            return;
        };
        let mut changed = false;
        for r in &mut list.records {
            if let Some((_, size)) = fixes.iter().find(|(b, _)| *b == r.base)
                && r.crlf_size != Some(*size)
            {
                r.crlf_size = Some(*size);
                changed = true;
            }
        }
        if changed {
            let _ = self.write_atomic(dir, &list.serialize());
        }
    }

    /// Whether a new file's `,S=` and `,W=` agree with its length on disk
    /// (one `stat`): `S=` is the length, and `W=` (the CRLF size) is at
    /// least that. A name another program got wrong (a probe's `S=10,W=20`
    /// on 63 octets) would make LIST and RETR's `+OK` give a size the
    /// message does not have; its size is counted instead.
    fn name_sizes_hold(dir: &Path, cur: bool, name: &str, size: Option<u64>, crlf: u64) -> bool {
        match fs::metadata(dir.join(sub(cur)).join(name)) {
            Ok(md) => size.is_none_or(|s| s == md.len()) && crlf >= md.len(),
            Err(_) => false,
        }
    }

    /// CRLF size of a file by reading it; `None` if it vanished.
    fn count(&self, dir: &Path, cur: bool, name: &str) -> Result<Option<u64>, Error> {
        let path = dir.join(sub(cur)).join(name);
        match File::open(&path) {
            Ok(f) => count_reader(BufReader::with_capacity(IO_BUFFER, f))
                .map(|(_, crlf)| Some(crlf))
                .map_err(|e| Error::io("read", path, e)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(Error::io("open", path, e)),
        }
    }

    fn write_atomic(&self, dir: &Path, bytes: &[u8]) -> Result<(), Error> {
        let tmp = dir.join(UIDLIST_TMP);
        let dst = dir.join(uidlist::FILE_NAME);
        let res = (|| -> io::Result<()> {
            let mut f = private_file().create(true).truncate(true).open(&tmp)?;
            f.write_all(bytes)?;
            if self.options.fsync {
                f.sync_all()?;
            }
            fs::rename(&tmp, &dst)
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("write", dst, e));
        }
        self.sync_dir(dir)
    }

    fn find(&self, dir: &Path, uid: &Uid) -> Result<Msg, Error> {
        let Scanned {
            numbering, msgs, ..
        } = self.scan(dir)?;
        msgs.into_iter()
            .find(|m| &m.unique_id(numbering) == uid)
            .ok_or(Error::NoSuchMessage)
    }

    fn remove_stale_tmp(
        &self,
        user: &UserName,
        folder: Folder,
        cutoff: SystemTime,
    ) -> Result<usize, Error> {
        let tmp = self.folder_dir(user, folder).join("tmp");
        let rd = match fs::read_dir(&tmp) {
            Ok(rd) => rd,
            Err(e) if not_found(&e) => return Ok(0),
            Err(e) => return Err(Error::io("read directory", tmp, e)),
        };
        let mut n = 0;
        for ent in rd.flatten() {
            let old = ent
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff);
            if old
                && ent.file_type().is_ok_and(|t| t.is_file())
                && fs::remove_file(ent.path()).is_ok()
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes the files in `tmp/` of every folder of `user` older than
    /// [`MaildirOptions::stale_tmp_age`]; every folder is tried, the first
    /// error is returned.
    fn remove_interrupted_deliveries(&self, user: &UserName) -> Result<usize, Error> {
        let Some(cutoff) = SystemTime::now().checked_sub(self.options.stale_tmp_age) else {
            return Ok(0);
        };
        let mut n = 0;
        let mut first_error = None;
        for folder in Folder::ALL {
            match self.remove_stale_tmp(user, folder, cutoff) {
                Ok(k) => n += k,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(n), Err)
    }
}

impl Mailstore for MaildirStore {
    fn create_user(&self, user: &UserName) -> Result<(), Error> {
        self.inner.create_user(user)
    }

    fn user_exists(&self, user: &UserName) -> Result<bool, Error> {
        Ok(self.inner.user_exists(user))
    }

    /// The directories under the root that are Maildirs (have a `cur/`);
    /// [`Mailstore::user_exists`] is true for any directory.
    fn users(&self) -> Result<Vec<UserName>, Error> {
        let root = &self.inner.root;
        let rd = fs::read_dir(root).map_err(|e| Error::io("read directory", root, e))?;
        let mut users: Vec<UserName> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| UserName::new(n).ok())
            .filter(|u| self.inner.user_dir(u).join("cur").is_dir())
            .collect();
        users.sort();
        Ok(users)
    }

    /// Reads the totals of the user's `maildirsize` file, or counts both
    /// folders (from the file names' `,S=` or the files) when it is
    /// missing, stale or broken, or its totals would refuse.
    fn check_quota(&self, user: &UserName, incoming: u64) -> Result<(), Error> {
        self.inner.check_quota(user, incoming)
    }

    fn begin_delivery(&self, user: &UserName, folder: Folder) -> Result<Box<dyn Delivery>, Error> {
        let inner = &self.inner;
        let dir = inner.open_user(user, folder, true)?;
        // Refused when already at or over quota.
        self.check_quota(user, 0)?;
        let mut attempt = 0;
        let (base, tmp_path, file) = loop {
            let base = inner.next_base();
            let tmp_path = dir.join("tmp").join(&base);
            match private_file().create_new(true).open(&tmp_path) {
                Ok(f) => break (base, tmp_path, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 8 => {
                    attempt += 1;
                }
                Err(e) => return Err(Error::io("create", tmp_path, e)),
            }
        };
        Ok(Box::new(MaildirDelivery {
            inner: Arc::clone(inner),
            user: user.clone(),
            folder,
            dir,
            base,
            tmp_path,
            file: Some(BufWriter::with_capacity(IO_BUFFER, file)),
            counter: CrlfCounter::new(),
            sealed: false,
            committed: false,
        }))
    }

    fn open_folder_maildrop(
        &self,
        user: &UserName,
        folder: Folder,
    ) -> Result<Box<dyn Maildrop>, Error> {
        let inner = &self.inner;
        let dir = inner.open_user(user, folder, true)?;
        // The INBOX's lock is `<user>/mailbag-pop3.lock`, the Spam folder's
        // `<user>/.Spam/mailbag-pop3.lock`: one POP3 session per folder.
        let stale = inner.options.maildrop_lock_stale;
        let lock: Arc<dyn Refresh> =
            Arc::new(DotLock::try_take(&dir.join(POP3_LOCK), stale, &inner.host)?);
        // Best effort: a failure to clean tmp/ must not block the maildrop.
        let _ = inner.remove_interrupted_deliveries(user);
        let Scanned {
            numbering,
            msgs,
            unsaved,
        } = inner.scan(&dir)?;
        let entries = msgs
            .iter()
            .map(|m| MaildropEntry {
                uid: m.unique_id(numbering),
                size: m.crlf_size,
            })
            .collect();
        let n = msgs.len();
        Ok(Box::new(MaildirMaildrop {
            inner: Arc::clone(inner),
            user: user.clone(),
            dir,
            msgs,
            entries,
            marks: Marks::new(n),
            index_error: unsaved,
            lock,
            corrections: Corrections::default(),
        }))
    }

    fn list(&self, user: &UserName, folder: Folder) -> Result<Vec<MessageInfo>, Error> {
        let inner = &self.inner;
        let dir = inner.open_user(user, folder, false)?;
        let Scanned {
            numbering, msgs, ..
        } = inner.scan(&dir)?;
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            let path = m.path(&dir);
            let saved = match fs::metadata(&path).and_then(|md| md.modified()) {
                Ok(t) => t,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(Error::io("stat", path, e)),
            };
            out.push(MessageInfo {
                uid: m.unique_id(numbering),
                size: m.crlf_size,
                saved,
                seen: MaildirName::parse(&m.name).is_some_and(|n| n.is_seen()),
            });
        }
        Ok(out)
    }

    fn read(&self, user: &UserName, folder: Folder, uid: &Uid) -> Result<MessageReader, Error> {
        let inner = &self.inner;
        let dir = inner.open_user(user, folder, false)?;
        let m = inner.find(&dir, uid)?;
        let path = m.path(&dir);
        let f = File::open(&path).map_err(|e| {
            if not_found(&e) {
                Error::NoSuchMessage
            } else {
                Error::io("open", path, e)
            }
        })?;
        Ok(MessageReader::whole(BufReader::with_capacity(IO_BUFFER, f)))
    }

    fn read_many(
        &self,
        user: &UserName,
        folder: Folder,
        uids: &[Uid],
    ) -> Result<Vec<Result<MessageReader, Error>>, Error> {
        let inner = &self.inner;
        let dir = inner.open_user(user, folder, false)?;
        // One scan for all ids (`read` scans the folder per call).
        let Scanned {
            numbering, msgs, ..
        } = inner.scan(&dir)?;
        let by_uid: HashMap<Uid, &Msg> = msgs.iter().map(|m| (m.unique_id(numbering), m)).collect();
        Ok(uids
            .iter()
            .map(|uid| {
                let path = by_uid.get(uid).ok_or(Error::NoSuchMessage)?.path(&dir);
                let f = File::open(&path).map_err(|e| {
                    if not_found(&e) {
                        Error::NoSuchMessage
                    } else {
                        Error::io("open", path, e)
                    }
                })?;
                Ok(MessageReader::whole(BufReader::with_capacity(IO_BUFFER, f)))
            })
            .collect())
    }

    fn move_message(
        &self,
        user: &UserName,
        from: Folder,
        uid: &Uid,
        to: Folder,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        let src_dir = inner.open_user(user, from, false)?;
        let m = inner.find(&src_dir, uid)?;
        if from == to {
            return Ok(());
        }
        let dst_dir = inner.ensure_folder(user, to)?;
        let src = m.path(&src_dir);
        let parsed = MaildirName::parse(&m.name).ok_or(Error::NoSuchMessage)?;
        let stored = match parsed.size() {
            Some(s) => s,
            None => fs::metadata(&src)
                .map_err(|e| Error::io("stat", &src, e))?
                .len(),
        };
        // A fresh base: a new UID in the destination, never an old one.
        let mut new_name = name::delivered_name(&inner.next_base(), stored, m.crlf_size);
        if let Some(flags) = parsed.flags() {
            new_name.push_str(":2,");
            new_name.push_str(flags);
        }
        // The save time (mtime) restarts in the destination folder.
        OpenOptions::new()
            .write(true)
            .open(&src)
            .and_then(|f| f.set_modified(SystemTime::now()))
            .map_err(|e| Error::io("set the save time of", &src, e))?;
        let dst = dst_dir.join(sub(m.cur)).join(&new_name);
        fs::rename(&src, &dst).map_err(|e| Error::io("move", &src, e))?;
        inner.sync_dir(&dst_dir.join(sub(m.cur)))?;
        inner.sync_dir(&src_dir.join(sub(m.cur)))
    }

    fn delete(&self, user: &UserName, folder: Folder, uid: &Uid) -> Result<(), Error> {
        let inner = &self.inner;
        let dir = inner.open_user(user, folder, false)?;
        let m = inner.find(&dir, uid)?;
        let path = m.path(&dir);
        let size = stored_size(&path);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if not_found(&e) => return Err(Error::NoSuchMessage),
            Err(e) => return Err(Error::io("remove", path, e)),
        }
        inner.quota_file_change(user, -signed(size), -1);
        inner.sync_dir(&dir.join(sub(m.cur)))
    }

    fn remove_interrupted_deliveries(&self, user: &UserName) -> Result<usize, Error> {
        if !self.inner.user_exists(user) {
            return Err(Error::UnknownUser(user.as_str().to_owned()));
        }
        self.inner.remove_interrupted_deliveries(user)
    }

    fn expunge_older_than(
        &self,
        user: &UserName,
        folder: Folder,
        cutoff: SystemTime,
    ) -> Result<usize, Error> {
        let inner = &self.inner;
        let dir = inner.open_user(user, folder, false)?;
        // What was removed before an error counts too.
        let mut removed = Usage::default();
        let res = expunge_dir(&dir, cutoff, inner, &mut removed);
        inner.quota_file_change(user, -signed(removed.octets), -signed(removed.messages));
        res.map(|()| usize::try_from(removed.messages).unwrap_or(usize::MAX))
    }
}

/// Removes the messages of the folder `dir` saved before `cutoff`, adding
/// each to `removed`: the files a scan serves and [`count_usage`] counts
/// ([`each_file`]), so that the quota file loses what it had counted.
fn expunge_dir(
    dir: &Path,
    cutoff: SystemTime,
    inner: &Inner,
    removed: &mut Usage,
) -> Result<(), Error> {
    for cur in [false, true] {
        let d = dir.join(sub(cur));
        let mut here = false;
        each_file(&d, |ent, name| {
            if MaildirName::parse(&name).is_none() {
                return Ok(());
            }
            let saved = match ent.metadata().and_then(|m| m.modified()) {
                Ok(t) => t,
                Err(e) if not_found(&e) => return Ok(()),
                Err(e) => return Err(Error::io("stat", ent.path(), e)),
            };
            if saved < cutoff {
                let size = stored_size(&ent.path());
                match fs::remove_file(ent.path()) {
                    Ok(()) => {
                        here = true;
                        removed.octets = removed.octets.saturating_add(size);
                        removed.messages += 1;
                    }
                    Err(e) if not_found(&e) => {}
                    Err(e) => return Err(Error::io("remove", ent.path(), e)),
                }
            }
            Ok(())
        })?;
        if here {
            inner.sync_dir(&d)?;
        }
    }
    Ok(())
}

struct MaildirDelivery {
    inner: Arc<Inner>,
    user: UserName,
    folder: Folder,
    dir: PathBuf,
    base: String,
    tmp_path: PathBuf,
    file: Option<BufWriter<File>>,
    counter: CrlfCounter,
    // Written, fsynced and closed: only the rename is left.
    sealed: bool,
    committed: bool,
}

impl fmt::Debug for MaildirDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaildirDelivery")
            .field("user", &self.user)
            .field("folder", &self.folder)
            .field("tmp_path", &self.tmp_path)
            .field("written", &self.counter.stored())
            .finish_non_exhaustive()
    }
}

impl MaildirDelivery {
    /// Gives up: closes and removes the temporary file.
    fn fail(&mut self, e: Error) -> Error {
        self.file = None;
        let _ = fs::remove_file(&self.tmp_path);
        e
    }

    /// Flushes, fsyncs and closes the file in `tmp/` (once).
    fn seal_file(&mut self) -> Result<(), Error> {
        if self.sealed {
            return Ok(());
        }
        let writer = self.file.take().ok_or(Error::DeliveryFailed)?;
        let file = writer
            .into_inner()
            .map_err(|e| Error::io("write", &self.tmp_path, e.into_error()))?;
        if self.inner.options.fsync {
            file.sync_all()
                .map_err(|e| Error::io("fsync", &self.tmp_path, e))?;
        }
        drop(file);
        self.sealed = true;
        Ok(())
    }

    fn finish(&mut self) -> Result<DeliveryReceipt, Error> {
        let inner = Arc::clone(&self.inner);
        self.seal_file()?;
        let stored = self.counter.stored();
        inner.check_quota(&self.user, stored)?;
        let name = name::delivered_name(&self.base, stored, self.counter.pop3_size());
        let new_dir = self.dir.join("new");
        let dst = new_dir.join(name);
        fs::rename(&self.tmp_path, &dst).map_err(|e| Error::io("rename", &self.tmp_path, e))?;
        if let Err(e) = inner.sync_dir(&new_dir) {
            // Not durable: withdraw it, so that a retry cannot duplicate it.
            let _ = fs::remove_file(&dst);
            return Err(e);
        }
        self.committed = true;
        inner.quota_file_change(&self.user, signed(stored), 1);
        Ok(DeliveryReceipt {
            folder: self.folder,
            stored_size: stored,
            size: self.counter.pop3_size(),
        })
    }
}

impl Delivery for MaildirDelivery {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), Error> {
        let limit = self.inner.options.max_message_size;
        if self.counter.stored().saturating_add(chunk.len() as u64) > limit {
            return Err(self.fail(Error::MessageTooLarge { limit }));
        }
        let Some(w) = self.file.as_mut() else {
            return Err(Error::DeliveryFailed);
        };
        if let Err(e) = w.write_all(chunk) {
            let err = Error::io("write", &self.tmp_path, e);
            return Err(self.fail(err));
        }
        self.counter.update(chunk);
        Ok(())
    }

    fn written(&self) -> u64 {
        self.counter.stored()
    }

    fn seal(&mut self) -> Result<(), Error> {
        self.seal_file().map_err(|e| self.fail(e))
    }

    fn commit(mut self: Box<Self>) -> Result<DeliveryReceipt, Error> {
        match self.finish() {
            Ok(r) => Ok(r),
            Err(e) => Err(self.fail(e)),
        }
    }
}

impl Write for MaildirDelivery {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_chunk(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(w) => w.flush(),
            None => Err(io::Error::other(Error::DeliveryFailed)),
        }
    }
}

impl Drop for MaildirDelivery {
    fn drop(&mut self) {
        if !self.committed {
            self.file = None;
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

struct MaildirMaildrop {
    inner: Arc<Inner>,
    user: UserName,
    dir: PathBuf,
    msgs: Vec<Msg>,
    entries: Vec<MaildropEntry>,
    marks: Marks,
    index_error: Option<Error>,
    /// The maildrop's dot-lock, refreshed through [`LockKeepAlive`].
    lock: Arc<dyn Refresh>,
    /// Sizes whole reads found that differ from the indexed ones; the commit
    /// writes them into the index.
    corrections: Corrections,
}

impl fmt::Debug for MaildirMaildrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaildirMaildrop")
            .field("user", &self.user)
            .field("entries", &self.entries)
            .field("marks", &self.marks)
            .finish_non_exhaustive()
    }
}

impl MaildirMaildrop {
    /// Runs `op` on the message's path; if the file moved (another program
    /// renamed it), finds it again and retries once.
    fn with_path<T>(
        &mut self,
        i: usize,
        mut op: impl FnMut(&Path) -> io::Result<T>,
    ) -> Result<T, Error> {
        let m = self.msgs.get_mut(i).ok_or(Error::NoSuchMessage)?;
        let path = m.path(&self.dir);
        match op(&path) {
            Ok(t) => return Ok(t),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(Error::io("access", path, e)),
        }
        let (cur, name) = relocate(&self.dir, &m.base).ok_or(Error::NoSuchMessage)?;
        m.cur = cur;
        m.name = name;
        let path = m.path(&self.dir);
        op(&path).map_err(|e| {
            if not_found(&e) {
                Error::NoSuchMessage
            } else {
                Error::io("access", path, e)
            }
        })
    }

    fn open(&mut self, n: usize) -> Result<(usize, BufReader<File>), Error> {
        let i = self.marks.index(n)?;
        let f = self.with_path(i, |p| File::open(p))?;
        Ok((i, BufReader::with_capacity(IO_BUFFER, f)))
    }
}

impl Maildrop for MaildirMaildrop {
    fn entries(&self) -> &[MaildropEntry] {
        &self.entries
    }

    fn is_deleted(&self, n: usize) -> bool {
        self.marks.is_deleted(n)
    }

    fn index_error(&self) -> Option<&Error> {
        self.index_error.as_ref()
    }

    fn lock_keep_alive(&self) -> Option<LockKeepAlive> {
        let every = self.inner.options.maildrop_lock_stale / 3;
        Some(LockKeepAlive::new(&self.lock, every))
    }

    /// The read also checks the message's size (`size_check`).
    fn read_message(&mut self, n: usize) -> Result<MessageReader, Error> {
        let (i, r) = self.open(n)?;
        self.marks.set_retrieved(i);
        let (expected, base) = self
            .msgs
            .get(i)
            .map(|m| (m.crlf_size, m.base.clone()))
            .unwrap_or_default();
        let corrections = Arc::clone(&self.corrections);
        Ok(MessageReader::whole(r).on_end(size_check::check(expected, base, corrections)))
    }

    fn read_top(&mut self, n: usize, body_lines: u64) -> Result<MessageReader, Error> {
        let (_, r) = self.open(n)?;
        Ok(MessageReader::top(r, body_lines))
    }

    fn mark_deleted(&mut self, n: usize) -> Result<(), Error> {
        self.marks.mark_deleted(n)
    }

    fn unmark_all(&mut self) {
        self.marks.unmark_all();
    }

    /// Fails first, changing nothing, when the maildrop's lock file is no
    /// longer this session's: it went unrefreshed past
    /// [`MaildirOptions::maildrop_lock_stale`] (a host that stalled) and
    /// another session took the maildrop over; that session's marks are the
    /// ones that count. Otherwise the lock is refreshed, so it cannot turn
    /// stale while the commit runs.
    fn commit(mut self: Box<Self>) -> Result<CommitSummary, Error> {
        self.lock.refresh()?;
        let mut summary = CommitSummary::default();
        let mut first_err = None;
        let (mut touched_new, mut touched_cur) = (false, false);
        let mut deleted_octets = 0u64;
        for i in 0..self.msgs.len() {
            let deleted = self.marks.deleted_at(i);
            let retrieved = self.marks.retrieved_at(i);
            let res = if deleted {
                match self.with_path(i, |p| {
                    let size = stored_size(p);
                    fs::remove_file(p).map(|()| size)
                }) {
                    Ok(size) => {
                        summary.deleted += 1;
                        deleted_octets = deleted_octets.saturating_add(size);
                        Ok(true)
                    }
                    Err(Error::NoSuchMessage) => Ok(false), // already gone
                    Err(e) => Err(e),
                }
            } else if retrieved {
                let dir = self.dir.clone();
                let mut seen_now = false;
                let r = self.with_path(i, |path| {
                    let file_name = path.file_name().and_then(|n| n.to_str());
                    let Some((file_name, name)) =
                        file_name.and_then(|f| Some((f, MaildirName::parse(f)?)))
                    else {
                        return Ok(false);
                    };
                    let in_new = path.parent().and_then(|p| p.file_name())
                        == Some(std::ffi::OsStr::new("new"));
                    // An info part of another version (`:1,...`) is kept as it is:
                    // such a name only moves out of new/.
                    let foreign_info = file_name.contains(':') && name.flags().is_none();
                    if !in_new && (name.is_seen() || foreign_info) {
                        return Ok(false);
                    }
                    let target = if foreign_info {
                        file_name.to_owned()
                    } else {
                        name::with_flag(&name, 'S')
                    };
                    fs::rename(path, dir.join("cur").join(target))?;
                    seen_now = true;
                    Ok(true)
                });
                if seen_now {
                    summary.seen += 1;
                }
                match r {
                    Err(Error::NoSuchMessage) => Ok(false),
                    other => other,
                }
            } else {
                Ok(false)
            };
            match res {
                Ok(true) => {
                    let was_cur = self.msgs.get(i).is_some_and(|m| m.cur);
                    touched_cur |= was_cur || retrieved;
                    touched_new |= !was_cur;
                }
                Ok(false) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let corrections =
            std::mem::take(&mut *self.corrections.lock().unwrap_or_else(|p| p.into_inner()));
        self.inner.correct_sizes(&self.dir, &corrections);
        self.inner.quota_file_change(
            &self.user,
            -signed(deleted_octets),
            -i64::try_from(summary.deleted).unwrap_or(i64::MAX),
        );
        for (touched, s) in [(touched_new, "new"), (touched_cur, "cur")] {
            if touched && let Err(e) = self.inner.sync_dir(&self.dir.join(s)) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn store(dir: &Path) -> MaildirStore {
        let o = MaildirOptions {
            hostname: Some("test.host".into()),
            ..MaildirOptions::default()
        };
        MaildirStore::new(dir, o).unwrap()
    }

    fn joe() -> UserName {
        UserName::new("joe").unwrap()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Sets the modification time of the file at `path` to `to`.
    fn backdate(path: &Path, to: SystemTime) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(to)
            .unwrap();
    }

    fn quota_store(dir: &Path, quota: Option<u64>, recount_size: u64) -> MaildirStore {
        let o = MaildirOptions {
            hostname: Some("test.host".into()),
            user_quota: quota,
            quota_file_recount_size: recount_size,
            ..MaildirOptions::default()
        };
        MaildirStore::new(dir, o).unwrap()
    }

    fn quota_file(dir: &Path) -> String {
        fs::read_to_string(dir.join("joe").join(maildirsize::FILE_NAME)).unwrap()
    }

    fn put(s: &MaildirStore, folder: Folder, octets: usize) {
        s.deliver(&joe(), folder, &mut &b"x".repeat(octets)[..])
            .unwrap();
    }

    #[test]
    fn every_delivery_and_removal_is_added_to_maildirsize() {
        let t = tempfile::tempdir().unwrap();
        let s = quota_store(t.path(), Some(1000), DEFAULT_QUOTA_FILE_RECOUNT_SIZE);
        s.create_user(&joe()).unwrap();
        put(&s, Folder::Inbox, 100);
        // Made by the first check, which counted an empty Maildir.
        assert_eq!(quota_file(t.path()), "1000S\n0 0\n100 1\n");
        put(&s, Folder::Spam, 200);
        put(&s, Folder::Inbox, 30);
        // POP3 deletes at commit (only what it deleted).
        let mut md = s.open_maildrop(&joe()).unwrap();
        // The larger of its two (POP3 sizes count a final CRLF).
        let sizes: Vec<u64> = md.entries().iter().map(|e| e.size).collect();
        let larger = if sizes[0] > sizes[1] { 1 } else { 2 };
        md.mark_deleted(larger).unwrap();
        md.commit().unwrap();
        // The web page deletes, the Spam retention expunges.
        let spam = s.list(&joe(), Folder::Spam).unwrap();
        s.delete(&joe(), Folder::Spam, &spam[0].uid).unwrap();
        let future = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(
            s.expunge_older_than(&joe(), Folder::Inbox, future).unwrap(),
            1
        );
        assert_eq!(
            quota_file(t.path()),
            "1000S\n0 0\n100 1\n200 1\n30 1\n-100 -1\n-200 -1\n-30 -1\n"
        );
        // Moving between the folders changes no total.
        put(&s, Folder::Spam, 7);
        let uid = s.list(&joe(), Folder::Spam).unwrap()[0].uid.clone();
        s.move_message(&joe(), Folder::Spam, &uid, Folder::Inbox)
            .unwrap();
        assert!(quota_file(t.path()).ends_with("-30 -1\n7 1\n"));
        // A store without quotas keeps an existing file up to date, but
        // makes none.
        let no_quota = quota_store(t.path(), None, DEFAULT_QUOTA_FILE_RECOUNT_SIZE);
        no_quota
            .deliver(&joe(), Folder::Inbox, &mut &b"abc"[..])
            .unwrap();
        assert!(quota_file(t.path()).ends_with("7 1\n3 1\n"));
        let ann = UserName::new("ann").unwrap();
        no_quota.create_user(&ann).unwrap();
        no_quota
            .deliver(&ann, Folder::Inbox, &mut &b"abc"[..])
            .unwrap();
        assert!(!t.path().join("ann").join(maildirsize::FILE_NAME).exists());
    }

    /// The retention removes what a scan serves and the quota counts:
    /// regular files, not a symbolic link named like a message.
    #[test]
    fn expunging_skips_symbolic_links_and_the_quota_file_loses_only_messages() {
        let t = tempfile::tempdir().unwrap();
        let s = quota_store(t.path(), Some(1000), DEFAULT_QUOTA_FILE_RECOUNT_SIZE);
        s.create_user(&joe()).unwrap();
        put(&s, Folder::Inbox, 5);
        let outside = t.path().join("outside");
        fs::write(&outside, b"not mail, 27 octets long.\n").unwrap();
        let link = t.path().join("joe/new/1700000003.link,S=27");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let future = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(
            s.expunge_older_than(&joe(), Folder::Inbox, future).unwrap(),
            1
        );
        assert!(fs::symlink_metadata(&link).is_ok(), "the link stays");
        assert_eq!(quota_file(t.path()), "1000S\n0 0\n5 1\n-5 -1\n");
    }

    #[test]
    fn maildirsize_is_trusted_until_its_total_would_refuse() {
        let t = tempfile::tempdir().unwrap();
        let s = quota_store(t.path(), Some(1000), DEFAULT_QUOTA_FILE_RECOUNT_SIZE);
        s.create_user(&joe()).unwrap();
        put(&s, Folder::Inbox, 100);
        let path = t.path().join("joe").join(maildirsize::FILE_NAME);
        // A total that is wrong but lets mail in is believed: 500 + 500 fits.
        fs::write(&path, "1000S\n500 1\n").unwrap();
        s.check_quota(&joe(), 500).unwrap();
        assert_eq!(quota_file(t.path()), "1000S\n500 1\n");
        // One that would refuse is checked by counting (100 + 600 fits),
        // and the file is corrected.
        s.check_quota(&joe(), 600).unwrap();
        assert_eq!(quota_file(t.path()), "1000S\n100 1\n");
        // A count that agrees refuses, and leaves the file as it was.
        fs::write(&path, "1000S\n0 0\n60 1\n40 0\n").unwrap();
        let e = s.check_quota(&joe(), 901).unwrap_err();
        assert!(matches!(e, Error::QuotaExceeded { quota: 1000, .. }), "{e}");
        assert_eq!(quota_file(t.path()), "1000S\n0 0\n60 1\n40 0\n");
        put(&s, Folder::Spam, 900);
        // Full: refused with no room at all, even for an empty message.
        assert!(s.check_quota(&joe(), 0).is_err());
        assert!(s.begin_delivery(&joe(), Folder::Inbox).is_err());
    }

    #[test]
    fn a_broken_or_outdated_maildirsize_is_recounted() {
        let t = tempfile::tempdir().unwrap();
        let s = quota_store(t.path(), Some(1000), 24);
        s.create_user(&joe()).unwrap();
        put(&s, Folder::Inbox, 10);
        let path = t.path().join("joe").join(maildirsize::FILE_NAME);
        let recounted = "1000S\n10 1\n";
        for broken in [
            "garbage\n",
            "1000S\n10 1\n5 x\n",
            "1000S\n",
            "900S\n10 1\n", // another quota
            "1000S\n10 1\n-20 -1\n",
        ] {
            fs::write(&path, broken).unwrap();
            s.check_quota(&joe(), 0).unwrap();
            assert_eq!(quota_file(t.path()), recounted, "after {broken:?}");
        }
        // A missing file is made; an unreadable one (a directory) is
        // counted around.
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        s.check_quota(&joe(), 990).unwrap();
        assert!(s.check_quota(&joe(), 991).is_err());
        put(&s, Folder::Inbox, 0);
        fs::remove_dir(&path).unwrap();
        s.check_quota(&joe(), 0).unwrap();
        assert_eq!(quota_file(t.path()), "1000S\n10 2\n");
        fs::write(&path, recounted).unwrap();
        // Changes accumulate up to the recount size (24 octets here), then
        // the file is counted afresh.
        put(&s, Folder::Inbox, 1);
        put(&s, Folder::Inbox, 1);
        put(&s, Folder::Inbox, 1);
        put(&s, Folder::Inbox, 1);
        assert_eq!(quota_file(t.path()), "1000S\n10 1\n1 1\n1 1\n1 1\n1 1\n");
        put(&s, Folder::Inbox, 1);
        assert_eq!(quota_file(t.path()), "1000S\n14 6\n1 1\n");
        // Another quota rewrites the limits line.
        let bigger = quota_store(t.path(), Some(5000), 24);
        bigger.check_quota(&joe(), 0).unwrap();
        assert_eq!(quota_file(t.path()), "5000S\n15 7\n");
    }

    #[test]
    fn a_maildrop_whose_lock_was_taken_over_commits_nothing() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        for body in ["1", "2"] {
            s.deliver(&joe(), Folder::Inbox, &mut body.as_bytes())
                .unwrap();
        }
        let mut md = s.open_maildrop(&joe()).unwrap();
        md.read_message(2).unwrap();
        md.mark_deleted(1).unwrap();
        // This session's host stalled past the stale time: another session
        // removed its lock file as stale and took the maildrop.
        let lock = t.path().join("joe").join(POP3_LOCK);
        fs::remove_file(&lock).unwrap();
        fs::write(&lock, "4242 other.host 1234567890\n").unwrap();
        let e = md.commit().unwrap_err();
        assert!(e.is_temporary(), "{e}");
        assert_eq!(
            files(&t.path().join("joe/new")).len(),
            2,
            "nothing removed or moved"
        );
        assert!(files(&t.path().join("joe/cur")).is_empty());
        assert_eq!(
            fs::read_to_string(&lock).unwrap(),
            "4242 other.host 1234567890\n",
            "the other session's lock stays"
        );
    }

    #[test]
    fn read_many_reads_each_id_with_one_scan() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        for body in ["1", "2", "3"] {
            s.deliver(&joe(), Folder::Spam, &mut format!("S: {body}\n").as_bytes())
                .unwrap();
        }
        s.deliver(&joe(), Folder::Inbox, &mut &b"inbox\n"[..])
            .unwrap();
        let list = s.list(&joe(), Folder::Spam).unwrap();
        let inbox_uid = s.list(&joe(), Folder::Inbox).unwrap()[0].uid.clone();
        let uids = vec![
            list[2].uid.clone(),
            Uid::new("ffffffffffffffff").unwrap(),
            list[0].uid.clone(),
        ];
        let got: Vec<Result<String, String>> = s
            .read_many(&joe(), Folder::Spam, &uids)
            .unwrap()
            .into_iter()
            .map(|r| {
                r.map(|mut m| {
                    let mut t = String::new();
                    m.read_to_string(&mut t).unwrap();
                    t
                })
                .map_err(|e| e.to_string())
            })
            .collect();
        assert_eq!(got[0].as_deref(), Ok("S: 3\r\n"));
        assert!(got[1].is_err());
        assert_eq!(got[2].as_deref(), Ok("S: 1\r\n"));
        // An id is looked up only in the folder asked for (unless the two
        // folders happen to share a UID validity and number).
        if !list.iter().any(|m| m.uid == inbox_uid) {
            let r = s.read_many(&joe(), Folder::Spam, &[inbox_uid]).unwrap();
            assert!(matches!(r[0], Err(Error::NoSuchMessage)));
        }
        assert!(
            s.read_many(&UserName::new("nobody").unwrap(), Folder::Spam, &[])
                .is_err()
        );
    }

    #[test]
    fn delivery_writes_dovecot_style_name_and_leaves_tmp_empty() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        assert!(t.path().join("joe/.Spam/maildirfolder").is_file());
        let r = s
            .deliver(&joe(), Folder::Inbox, &mut &b"a\nb\r\n"[..])
            .unwrap();
        assert_eq!((r.stored_size, r.size), (5, 6));
        let new = files(&t.path().join("joe/new"));
        assert_eq!(new.len(), 1);
        assert!(new[0].ends_with(".test.host,S=5,W=6"), "{}", new[0]);
        assert!(new[0].contains(&format!("P{}Q", std::process::id())));
        assert!(files(&t.path().join("joe/tmp")).is_empty());
    }

    #[test]
    fn uncommitted_and_oversized_deliveries_leave_nothing() {
        let t = tempfile::tempdir().unwrap();
        let o = MaildirOptions {
            max_message_size: 10,
            ..MaildirOptions::default()
        };
        let s = MaildirStore::new(t.path(), o).unwrap();
        s.create_user(&joe()).unwrap();
        let mut d = s.begin_delivery(&joe(), Folder::Inbox).unwrap();
        d.write_chunk(b"12345").unwrap();
        assert_eq!(files(&t.path().join("joe/tmp")).len(), 1);
        drop(d);
        assert!(files(&t.path().join("joe/tmp")).is_empty());
        let mut d = s.begin_delivery(&joe(), Folder::Inbox).unwrap();
        d.write_chunk(b"12345").unwrap();
        assert!(matches!(
            d.write_chunk(b"678901"),
            Err(Error::MessageTooLarge { limit: 10 })
        ));
        assert!(files(&t.path().join("joe/tmp")).is_empty());
        assert!(matches!(d.write_chunk(b"x"), Err(Error::DeliveryFailed)));
        assert!(matches!(d.commit(), Err(Error::DeliveryFailed)));
        assert!(files(&t.path().join("joe/new")).is_empty());
    }

    /// Open descriptors of this process.
    fn open_fds() -> usize {
        fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[test]
    fn sealed_deliveries_hold_no_descriptor_until_commit() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        // 40 copies prepared at once, as for 40 recipients; other tests of
        // this binary open files meanwhile, hence the slack below.
        let before = open_fds();
        let mut prepared = Vec::new();
        for i in 0..40 {
            let mut d = s.begin_delivery(&joe(), Folder::Inbox).unwrap();
            d.write_chunk(format!("Subject: {i}\n\nbody\n").as_bytes())
                .unwrap();
            d.seal().unwrap();
            d.seal().unwrap(); // Once is enough; again changes nothing.
            assert!(matches!(d.write_chunk(b"more"), Err(Error::DeliveryFailed)));
            prepared.push(d);
        }
        if cfg!(target_os = "linux") {
            assert!(open_fds() < before + 20, "{} -> {}", before, open_fds());
        }
        assert_eq!(files(&t.path().join("joe/tmp")).len(), 40);
        assert!(files(&t.path().join("joe/new")).is_empty());
        // A sealed copy dropped without commit is removed.
        drop(prepared.pop());
        assert_eq!(files(&t.path().join("joe/tmp")).len(), 39);
        for d in prepared {
            let r = d.commit().unwrap();
            assert_eq!(r.size, r.stored_size + 3); // three LFs become CRLF
        }
        assert_eq!(files(&t.path().join("joe/new")).len(), 39);
        assert!(files(&t.path().join("joe/tmp")).is_empty());
        let mut md = s.open_maildrop(&joe()).unwrap();
        let mut text = String::new();
        md.read_message(39)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert!(
            text.starts_with("Subject: ") && text.ends_with("body\r\n"),
            "{text:?}"
        );
    }

    #[test]
    fn failed_commit_is_temporary_and_leaves_no_file() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        let mut d = s.begin_delivery(&joe(), Folder::Inbox).unwrap();
        d.write_chunk(b"Subject: x\n\nbody\n").unwrap();
        // Make the rename into new/ fail: new/ is now a plain file.
        let new = t.path().join("joe/new");
        fs::remove_dir(&new).unwrap();
        fs::write(&new, b"").unwrap();
        let e = d.commit().unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        assert!(e.is_temporary());
        assert!(files(&t.path().join("joe/tmp")).is_empty());
    }

    #[test]
    fn reads_foreign_names_and_caches_sizes_in_the_index() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        let cur = t.path().join("joe/cur");
        fs::write(cur.join("100.M1P1.mta,S=6:2,S"), b"x\ny\nz\n").unwrap();
        fs::write(t.path().join("joe/new/101.M1P1.mta"), b"q\r\n").unwrap();
        // A W= that cannot be right for its S= is counted, not believed.
        fs::write(cur.join("102.M1P1.mta,S=18,W=999:2,S"), b"a\nb\n").unwrap();
        let md = s.open_maildrop(&joe()).unwrap();
        let sizes: Vec<u64> = md.entries().iter().map(|e| e.size).collect();
        assert_eq!(sizes, vec![9, 3, 6]);
        drop(md);
        let idx = fs::read_to_string(t.path().join("joe/mailbag-uidlist")).unwrap();
        assert!(idx.contains(" 9 100.M1P1.mta,S=6\n"), "{idx}");
        // A second open finds nothing new and does not rewrite the index.
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        let idx_path = t.path().join("joe/mailbag-uidlist");
        let before = ino(&idx_path);
        drop(s.open_maildrop(&joe()).unwrap());
        assert_eq!(ino(&idx_path), before, "index rewritten without need");
        // The cached size is used: change the file behind our back, size stays.
        fs::write(cur.join("100.M1P1.mta,S=6:2,S"), b"x\n").unwrap();
        let md = s.open_maildrop(&joe()).unwrap();
        assert_eq!(md.entries()[0].size, 9);
    }

    #[test]
    fn names_with_spaces_are_messages_and_symlinks_are_not() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        let new = t.path().join("joe/new");
        fs::write(new.join("1700000001.odd name with spaces & \u{fc}"), b"a\n").unwrap();
        fs::write(new.join("1700000002. lead"), b"bb\n").unwrap();
        let outside = t.path().join("secret");
        fs::write(&outside, b"not mail\n").unwrap();
        std::os::unix::fs::symlink(&outside, new.join("1700000003.link")).unwrap();
        std::os::unix::fs::symlink(&outside, t.path().join("joe/cur/1700000004.link:2,S")).unwrap();
        let md = s.open_maildrop(&joe()).unwrap();
        let sizes: Vec<u64> = md.entries().iter().map(|e| e.size).collect();
        assert_eq!(sizes, vec![3, 4], "the two spaced names, not the links");
        drop(md);
        // The index keeps the spaced names and reads them back.
        let idx = fs::read_to_string(t.path().join("joe/mailbag-uidlist")).unwrap();
        assert!(
            idx.contains(" 3 1700000001.odd name with spaces & \u{fc}\n"),
            "{idx}"
        );
        let uids: Vec<Uid> = s
            .list(&joe(), Folder::Inbox)
            .unwrap()
            .into_iter()
            .map(|m| m.uid)
            .collect();
        let again: Vec<Uid> = s
            .list(&joe(), Folder::Inbox)
            .unwrap()
            .into_iter()
            .map(|m| m.uid)
            .collect();
        assert_eq!(uids, again);
        let mut text = String::new();
        s.read_many(&joe(), Folder::Inbox, &uids[..1])
            .unwrap()
            .remove(0)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "a\r\n");
    }

    #[test]
    fn an_unreadable_index_is_replaced_and_reported() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        s.deliver(&joe(), Folder::Inbox, &mut &b"hello\n"[..])
            .unwrap();
        drop(s.open_maildrop(&joe()).unwrap());
        // An index from long ago (UID validity 1000), read back as it is.
        let path = t.path().join("joe").join(uidlist::FILE_NAME);
        let text = fs::read_to_string(&path).unwrap();
        let (head, rest) = text.split_once('\n').unwrap();
        let next = head.rsplit(' ').next().unwrap();
        fs::write(&path, format!("mailbag-uidlist 1 V1000 {next}\n{rest}")).unwrap();
        let md = s.open_maildrop(&joe()).unwrap();
        assert!(md.index_error().is_none());
        let before = md.entries()[0].uid.clone();
        assert!(before.as_str().ends_with("000003e8"), "{before:?}");
        drop(md);
        fs::write(&path, b"\x00garbage\n").unwrap();
        let md = s.open_maildrop(&joe()).unwrap();
        let e = md.index_error().expect("the replaced index is reported");
        assert!(e.to_string().contains("every UID changed"), "{e}");
        assert_eq!(md.entries().len(), 1);
        let after = md.entries()[0].uid.clone();
        assert_ne!(after, before, "a new UID validity");
        drop(md);
        // Reported once: the new index is read back as it is.
        let md = s.open_maildrop(&joe()).unwrap();
        assert!(md.index_error().is_none());
        assert_eq!(md.entries()[0].uid, after);
    }

    #[test]
    fn uid_survives_rename_by_another_program_during_session() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        s.deliver(&joe(), Folder::Inbox, &mut &b"hello\n"[..])
            .unwrap();
        let mut md = s.open_maildrop(&joe()).unwrap();
        let uid = md.entries()[0].uid.clone();
        let name = files(&t.path().join("joe/new")).remove(0);
        fs::rename(
            t.path().join("joe/new").join(&name),
            t.path().join("joe/cur").join(format!("{name}:2,F")),
        )
        .unwrap();
        let mut out = Vec::new();
        md.read_message(1).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello\r\n");
        assert_eq!(md.commit().unwrap().seen, 1);
        assert_eq!(
            files(&t.path().join("joe/cur")),
            vec![format!("{name}:2,FS")]
        );
        let md = s.open_maildrop(&joe()).unwrap();
        assert_eq!(md.entries()[0].uid, uid);
    }

    #[test]
    fn corrupt_index_gives_new_validity_not_reused_uids() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        s.deliver(&joe(), Folder::Inbox, &mut &b"a\n"[..]).unwrap();
        let before = s.list(&joe(), Folder::Inbox).unwrap()[0].uid.clone();
        fs::write(t.path().join("joe/mailbag-uidlist"), b"garbage\x00\xff").unwrap();
        std::thread::sleep(Duration::from_millis(1100)); // validity is time based
        let after = s.list(&joe(), Folder::Inbox).unwrap()[0].uid.clone();
        assert_ne!(before, after);
    }

    /// joe's Maildir under `dir` with one message Dovecot numbered 7 (validity
    /// 1700000000, next UID 8).
    fn dovecot_numbered_joe(s: &MaildirStore, dir: &Path) {
        s.create_user(&joe()).unwrap();
        fs::write(dir.join("joe/cur/200.M1P1.vm,S=2:2,S"), b"a\n").unwrap();
        fs::write(
            dir.join("joe/dovecot-uidlist"),
            b"3 V1700000000 N8 Gabc\n7 :200.M1P1.vm,S=2\n",
        )
        .unwrap();
    }

    #[test]
    fn dovecot_uidlist_seeds_uids() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        dovecot_numbered_joe(&s, t.path());
        let md = s.open_maildrop(&joe()).unwrap();
        assert_eq!(md.entries()[0].uid.as_str(), "000000076553f100");
    }

    /// The ids follow [`MaildirOptions::uidl_format`]: the file's base name for
    /// `%f` (a Maildir a Courier server wrote, with no index of ours or
    /// Dovecot's), decimal `%v.%u`, and in a folder Dovecot numbered, an `m`
    /// after the ids of the UIDs we give (the base name needs none).
    #[test]
    fn ids_take_the_configured_form() {
        let with = |dir: &Path, format: UidlFormat| {
            let o = MaildirOptions {
                hostname: Some("test.host".into()),
                uidl_format: format,
                ..MaildirOptions::default()
            };
            MaildirStore::new(dir, o).unwrap()
        };
        let t = tempfile::tempdir().unwrap();
        let s = with(t.path(), UidlFormat::BaseName);
        s.create_user(&joe()).unwrap();
        fs::write(
            t.path().join("joe/cur/1100000000.12345.courier:2,S"),
            b"a\n",
        )
        .unwrap();
        let md = s.open_maildrop(&joe()).unwrap();
        assert_eq!(md.entries()[0].uid.as_str(), "1100000000.12345.courier");
        drop(md);
        // Seeded from Dovecot: its UID's id as `%v.%u`, ours with an `m`.
        let t = tempfile::tempdir().unwrap();
        let s = with(t.path(), UidlFormat::ValidityDotUid);
        dovecot_numbered_joe(&s, t.path());
        assert_eq!(
            s.open_maildrop(&joe()).unwrap().entries()[0].uid.as_str(),
            "1700000000.7"
        );
        s.deliver(&joe(), Folder::Inbox, &mut &b"Subject: x\r\n\r\ny\r\n"[..])
            .unwrap();
        let md = s.open_maildrop(&joe()).unwrap();
        let ids: Vec<&str> = md.entries().iter().map(|e| e.uid.as_str()).collect();
        assert_eq!(ids, ["1700000000.7", "1700000000.8m"]);
    }

    /// Moved back to Dovecot and here again: a message Dovecot numbered
    /// meanwhile keeps the id Dovecot gave it (a migration probe's clients
    /// fetched such mail twice); ours still get an `m`.
    #[test]
    fn mail_dovecot_numbered_after_the_seed_keeps_dovecots_ids() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        dovecot_numbered_joe(&s, t.path());
        assert_eq!(s.open_maildrop(&joe()).unwrap().entries().len(), 1);
        // Dovecot serves the folder again and numbers a new message 8.
        let j = t.path().join("joe");
        fs::write(j.join("cur/300.M2P2.vm,S=2:2,S"), b"b\n").unwrap();
        fs::write(
            j.join("dovecot-uidlist"),
            b"3 V1700000000 N9 Gabc\n7 :200.M1P1.vm,S=2\n8 :300.M2P2.vm,S=2\n",
        )
        .unwrap();
        s.deliver(&joe(), Folder::Inbox, &mut &b"Subject: x\r\n\r\ny\r\n"[..])
            .unwrap();
        let listed = || -> Vec<String> {
            let md = s.open_maildrop(&joe()).unwrap();
            md.entries().iter().map(|e| e.uid.to_string()).collect()
        };
        let ids = listed();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], "000000076553f100");
        assert!(ids.iter().any(|i| i == "000000086553f100"), "{ids:?}");
        assert!(
            ids.iter().filter(|i| i.ends_with('m')).count() == 1,
            "{ids:?}"
        );
        assert_eq!(listed(), ids);
    }

    /// A file whose name's `,S=`/`,W=` do not fit its length is counted:
    /// the first listing already gives the octets RETR sends. The same for
    /// a file Dovecot's list seeds without a `W` size.
    #[test]
    fn a_name_whose_sizes_do_not_fit_the_file_is_counted() {
        let body = b"Subject: lie\n\nthe name says 10 octets, the file has more\n";
        let crlf = body.len() as u64 + 3;
        for seeded in [false, true] {
            let t = tempfile::tempdir().unwrap();
            let s = store(t.path());
            s.create_user(&joe()).unwrap();
            let j = t.path().join("joe");
            fs::write(j.join("cur/1700000000.M1P1.x,S=10,W=20:2,S"), body).unwrap();
            let mut want = vec![crlf];
            if seeded {
                fs::write(
                    j.join("dovecot-uidlist"),
                    b"3 V1700000000 N2\n1 :1700000000.M1P1.x,S=10,W=20\n",
                )
                .unwrap();
            } else {
                fs::write(j.join("cur/1700000001.M1P1.x,W=5:2,S"), body).unwrap();
                // Right, and left alone: S= is the length, W= the CRLF size.
                fs::write(j.join("cur/1700000002.M1P1.x,S=4,W=6:2,S"), b"a\nb\n").unwrap();
                want.extend([crlf, 6]);
            }
            let mut md = s.open_maildrop(&joe()).unwrap();
            let sizes: Vec<u64> = md.entries().iter().map(|e| e.size).collect();
            assert_eq!(sizes, want, "seeded: {seeded}");
            let mut sent = Vec::new();
            md.read_message(1).unwrap().read_to_end(&mut sent).unwrap();
            assert_eq!(sent.len() as u64, crlf);
        }
    }

    /// A Maildir Dovecot served, and may serve again (a move back, or both
    /// serving it): the ids of the messages Dovecot numbered are Dovecot's
    /// (or the id it kept from an earlier server), and a message we number
    /// never gets the id Dovecot gives the next message it numbers, which
    /// would hide that message from a client that leaves mail on the server
    /// (a probe found exactly that with mpop). Durable over sessions.
    #[test]
    fn ids_we_give_after_a_dovecot_seed_are_never_dovecots() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        let j = t.path().join("joe");
        fs::write(j.join("cur/200.M1P1.vm,S=2:2,S"), b"a\n").unwrap();
        fs::write(j.join("cur/201.M1P1.vm,S=2:2,S"), b"b\n").unwrap();
        fs::write(
            j.join("dovecot-uidlist"),
            b"3 V1700000000 N8 G0123\n6 :200.M1P1.vm,S=2\n7 POLD-7 W2 :201.M1P1.vm,S=2\n",
        )
        .unwrap();
        s.deliver(&joe(), Folder::Inbox, &mut &b"c\n"[..]).unwrap();
        let ids = |s: &MaildirStore| -> Vec<String> {
            let md = s.open_maildrop(&joe()).unwrap();
            md.entries().iter().map(|e| e.uid.to_string()).collect()
        };
        let first = ids(&s);
        assert_eq!(first, ["000000066553f100", "OLD-7", "000000086553f100m"]);
        // A message Dovecot's delivery left after our index was made: ours too.
        fs::write(j.join("new/1700000300.M9P9.vm,S=2"), b"d\n").unwrap();
        let again = ids(&store(t.path()));
        assert_eq!(again[..3], first[..]);
        assert_eq!(again[3], "000000096553f100m");
        // A Maildir never seeded from Dovecot keeps the plain form.
        s.create_user(&UserName::new("ann").unwrap()).unwrap();
        let ann = UserName::new("ann").unwrap();
        s.deliver(&ann, Folder::Inbox, &mut &b"e\n"[..]).unwrap();
        let md = s.open_maildrop(&ann).unwrap();
        let id = md.entries()[0].uid.to_string();
        assert!(id.len() == 16 && id.starts_with("00000001"), "{id}");
    }

    /// A name whose info part is not version 2 (`:1,...`, experimental in
    /// the Maildir specification) keeps it: a retrieved message in `cur/` is
    /// not renamed, one in `new/` only moves to `cur/`.
    #[test]
    fn a_foreign_info_part_is_kept_when_a_message_is_seen() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        let j = t.path().join("joe");
        fs::write(j.join("cur/1000000014.M14P1.probe:1,foo"), b"a\n").unwrap();
        fs::write(j.join("new/1000000015.M15P1.probe:1,bar"), b"b\n").unwrap();
        fs::write(j.join("new/1000000016.M16P1.probe"), b"c\n").unwrap();
        let mut md = s.open_maildrop(&joe()).unwrap();
        for n in 1..=3 {
            let mut v = Vec::new();
            md.read_message(n).unwrap().read_to_end(&mut v).unwrap();
        }
        md.commit().unwrap();
        assert_eq!(
            files(&j.join("cur")),
            [
                "1000000014.M14P1.probe:1,foo",
                "1000000015.M15P1.probe:1,bar",
                "1000000016.M16P1.probe:2,S"
            ]
        );
        assert!(files(&j.join("new")).is_empty());
    }

    /// A `,W=` another program got wrong (within what a `,S=` allows), and a
    /// file changed after it was indexed: the first whole read finds the real
    /// size, the commit writes it into the index, and the next session lists
    /// the octets RETR sends.
    #[test]
    fn a_read_corrects_a_wrong_size_for_the_next_session() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        let j = t.path().join("joe");
        let body = b"From: a@b\nSubject: barelf\n\nline1\nline2\nline3\n";
        assert_eq!(body.len(), 45);
        fs::write(j.join("new/1.M1P1.e,S=45,W=50"), body).unwrap();
        fs::write(j.join("new/2.M2P1.e"), b"Subject: y\r\n\r\nlong enough\r\n").unwrap();
        let sizes = |md: &dyn Maildrop| md.entries().iter().map(|e| e.size).collect::<Vec<_>>();
        let mut md = s.open_maildrop(&joe()).unwrap();
        assert_eq!(sizes(md.as_ref()), [50, 27]);
        // The second file is cut short by another program after indexing.
        fs::write(j.join("new/2.M2P1.e"), b"Subject: y\r\n").unwrap();
        for n in 1..=2 {
            let mut v = Vec::new();
            md.read_message(n).unwrap().read_to_end(&mut v).unwrap();
        }
        md.commit().unwrap();
        let md = s.open_maildrop(&joe()).unwrap();
        assert_eq!(sizes(md.as_ref()), [51, 12]);
        md.commit().unwrap();
        // A read that stops early, or TOP, corrects nothing.
        fs::write(
            j.join("cur/2.M2P1.e:2,S"),
            b"Subject: y\r\n\r\nback again\r\n",
        )
        .unwrap();
        let mut md = s.open_maildrop(&joe()).unwrap();
        let mut first = [0u8; 4];
        md.read_message(2).unwrap().read_exact(&mut first).unwrap();
        let mut v = Vec::new();
        md.read_top(2, 0).unwrap().read_to_end(&mut v).unwrap();
        md.commit().unwrap();
        assert_eq!(sizes(s.open_maildrop(&joe()).unwrap().as_ref()), [51, 12]);
    }

    /// Two files with one base (a hand-made copy, a restore): both are shown
    /// under their own UIDs (the one in `new/` renamed to a fresh base), so
    /// deleting one never brings the other back under the deleted one's UID;
    /// one file under two names (a hard link) stays one message.
    #[test]
    fn files_sharing_a_base_are_both_shown_under_their_own_uids() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        let j = t.path().join("joe");
        fs::write(j.join("new/1600000000.M1P1.dup"), b"new copy\n").unwrap();
        fs::write(j.join("cur/1600000000.M1P1.dup:2,S"), b"cur copy longer\n").unwrap();
        fs::write(j.join("cur/1600000002.M3P1.x:2,S"), b"x\n").unwrap();
        fs::write(j.join("cur/1600000002.M3P1.x:2,RS"), b"xyz\n").unwrap();
        fs::write(j.join("new/1600000003.M4P1.link"), b"linked\n").unwrap();
        fs::hard_link(
            j.join("new/1600000003.M4P1.link"),
            j.join("cur/1600000003.M4P1.link:2,S"),
        )
        .unwrap();
        let text = |md: &mut Box<dyn Maildrop>, n: usize| {
            let mut v = Vec::new();
            md.read_message(n).unwrap().read_to_end(&mut v).unwrap();
            String::from_utf8(v).unwrap()
        };
        let mut md = s.open_maildrop(&joe()).unwrap();
        assert_eq!(md.entries().len(), 5, "{:?}", md.entries());
        let mut bodies: Vec<String> = (1..=5).map(|n| text(&mut md, n)).collect();
        bodies.sort();
        assert_eq!(
            bodies,
            [
                "cur copy longer\r\n",
                "linked\r\n",
                "new copy\r\n",
                "x\r\n",
                "xyz\r\n"
            ]
        );
        let uids: std::collections::HashSet<String> =
            md.entries().iter().map(|e| e.uid.to_string()).collect();
        assert_eq!(uids.len(), 5);
        // The copy in new/ got a fresh base; of the two in cur/ one did, and
        // kept its flags.
        let new = files(&j.join("new"));
        assert!(!new.contains(&"1600000000.M1P1.dup".to_string()), "{new:?}");
        let cur = files(&j.join("cur"));
        let x = cur
            .iter()
            .filter(|n| n.starts_with("1600000002.M3P1.x:2,"))
            .count();
        let flags = cur
            .iter()
            .filter(|n| n.ends_with(":2,S") || n.ends_with(":2,RS"));
        assert_eq!((x, flags.count()), (1, 4), "{cur:?}");
        // Delete the cur/ copy: the other does not come back under its UID.
        let n = (1..=5)
            .find(|&n| text(&mut md, n) == "cur copy longer\r\n")
            .unwrap();
        let deleted = md.entries()[n - 1].uid.clone();
        md.mark_deleted(n).unwrap();
        md.commit().unwrap();
        let md = s.open_maildrop(&joe()).unwrap();
        assert_eq!(md.entries().len(), 4);
        assert!(md.entries().iter().all(|e| e.uid != deleted));
    }

    /// Files whose names are not UTF-8 (written by another program) are
    /// listed under fresh names of this store's form, keeping their `:2,`
    /// flags; a hidden one is left alone (a probe's such message was never
    /// shown).
    #[test]
    fn files_named_in_other_encodings_are_listed_under_fresh_names() {
        use std::os::unix::ffi::OsStrExt;
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        let j = t.path().join("joe");
        let os = |b: &[u8]| std::ffi::OsStr::from_bytes(b).to_owned();
        fs::write(j.join("new").join(os(b"bad-\xff.host")), b"from new\n").unwrap();
        fs::write(j.join("cur").join(os(b"caf\xe9.host:2,S")), b"from cur\n").unwrap();
        fs::write(j.join("cur").join(os(b".hidden-\xff")), b"hidden\n").unwrap();
        let mut md = s.open_maildrop(&joe()).unwrap();
        assert_eq!(md.entries().len(), 2, "{:?}", md.entries());
        let mut bodies: Vec<String> = (1..=2)
            .map(|n| {
                let mut v = Vec::new();
                md.read_message(n).unwrap().read_to_end(&mut v).unwrap();
                String::from_utf8(v).unwrap()
            })
            .collect();
        bodies.sort();
        assert_eq!(bodies, ["from cur\r\n", "from new\r\n"]);
        let cur = files(&j.join("cur"));
        assert!(cur.iter().any(|n| n.ends_with(":2,S")), "{cur:?}");
        assert_eq!(files(&j.join("new")).len(), 1);
        // The UIDs hold at the next opening.
        let uids: Vec<String> = md.entries().iter().map(|e| e.uid.to_string()).collect();
        drop(md);
        let md = s.open_maildrop(&joe()).unwrap();
        let again: Vec<String> = md.entries().iter().map(|e| e.uid.to_string()).collect();
        assert_eq!(uids, again);
        assert!(j.join("cur").join(os(b".hidden-\xff")).exists());
    }

    /// An index whose next UID is the last one (a folder that has had four
    /// billion messages, or a Dovecot index seeded so): the next delivery
    /// numbers the folder again under a new UID validity instead of making
    /// it impossible to open, and the maildrop says so.
    #[test]
    fn exhausted_uid_space_starts_over_with_a_new_validity() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        fs::write(t.path().join("joe/cur/1500000000.M1P1.a:2,S"), b"a\n").unwrap();
        fs::write(t.path().join("joe/cur/1500000001.M2P1.a:2,S"), b"b\n").unwrap();
        fs::write(
            t.path().join("joe/dovecot-uidlist"),
            b"3 V1400000000 N4294967295\n4294967294 :1500000000.M1P1.a\n\
              4294967295 :1500000001.M2P1.a\n4294967295 :1500000000.M1P1.a\n",
        )
        .unwrap();
        let md = s.open_maildrop(&joe()).unwrap();
        let seeded: Vec<String> = md.entries().iter().map(|e| e.uid.to_string()).collect();
        assert_eq!(seeded, ["fffffffe53724e00", "ffffffff53724e00"]);
        assert!(md.index_error().is_none());
        md.commit().unwrap();

        s.deliver(&joe(), Folder::Inbox, &mut &b"c\n"[..]).unwrap();
        let md = s.open_maildrop(&joe()).unwrap();
        let e = md.index_error().expect("the renumbering is reported");
        assert!(e.to_string().contains("UID space"), "{e}");
        let uids: Vec<String> = md.entries().iter().map(|e| e.uid.to_string()).collect();
        assert_eq!(uids.len(), 3);
        for (i, u) in uids.iter().enumerate() {
            assert!(u.starts_with(&format!("{:08x}", i + 1)), "{uids:?}");
            assert!(!u.ends_with("53724e00"), "the old validity: {uids:?}");
        }
        md.commit().unwrap();
        // Durable: the next session sees the same UIDs and no error.
        let md = s.open_maildrop(&joe()).unwrap();
        assert!(md.index_error().is_none());
        let again: Vec<String> = md.entries().iter().map(|e| e.uid.to_string()).collect();
        assert_eq!(again, uids);
    }

    #[test]
    fn stale_tmp_files_are_removed_at_open() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        let p = t.path().join("joe/tmp/old");
        fs::write(&p, b"partial").unwrap();
        let old = SystemTime::now() - Duration::from_secs(40 * 3600);
        backdate(&p, old);
        fs::write(t.path().join("joe/tmp/young"), b"partial").unwrap();
        drop(s.open_maildrop(&joe()).unwrap());
        assert_eq!(files(&t.path().join("joe/tmp")), vec!["young".to_string()]);
    }

    /// The same without a login, for both folders, through the trait.
    #[test]
    fn interrupted_deliveries_are_removed_without_a_login() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        assert!(matches!(
            s.remove_interrupted_deliveries(&joe()),
            Err(Error::UnknownUser(_))
        ));
        s.create_user(&joe()).unwrap();
        let old = SystemTime::now() - Duration::from_secs(40 * 3600);
        for dir in ["joe/tmp", "joe/.Spam/tmp"] {
            let p = t.path().join(dir).join("old");
            fs::write(&p, b"partial").unwrap();
            backdate(&p, old);
            fs::write(t.path().join(dir).join("young"), b"partial").unwrap();
        }
        let store: &dyn Mailstore = &s;
        assert_eq!(store.remove_interrupted_deliveries(&joe()).unwrap(), 2);
        for dir in ["joe/tmp", "joe/.Spam/tmp"] {
            assert_eq!(files(&t.path().join(dir)), vec!["young".to_string()]);
        }
        assert_eq!(store.remove_interrupted_deliveries(&joe()).unwrap(), 0);
    }

    #[test]
    fn retention_uses_file_time_and_move_resets_it() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        for _ in 0..3 {
            s.deliver(
                &joe(),
                Folder::Spam,
                &mut &b"Date: Thu, 1 Jan 1970 00:00:00 +0000\n\nspam\n"[..],
            )
            .unwrap();
        }
        let week_ago = SystemTime::now() - Duration::from_secs(8 * 86400);
        let new = t.path().join("joe/.Spam/new");
        let names = files(&new);
        for n in &names[..2] {
            backdate(&new.join(n), week_ago);
        }
        // Release one of the old ones to the INBOX: its clock restarts there.
        let listed = s.list(&joe(), Folder::Spam).unwrap();
        let old_uid = listed
            .iter()
            .find(|m| m.saved <= week_ago)
            .unwrap()
            .uid
            .clone();
        s.move_message(&joe(), Folder::Spam, &old_uid, Folder::Inbox)
            .unwrap();
        let cutoff = SystemTime::now() - Duration::from_secs(7 * 86400);
        assert_eq!(
            s.expunge_older_than(&joe(), Folder::Spam, cutoff).unwrap(),
            1
        );
        assert_eq!(s.list(&joe(), Folder::Spam).unwrap().len(), 1);
        assert_eq!(
            s.expunge_older_than(&joe(), Folder::Inbox, cutoff).unwrap(),
            0
        );
        assert_eq!(s.list(&joe(), Folder::Inbox).unwrap().len(), 1);
    }

    /// Every file and directory under `dir` (itself included), with its mode bits.
    fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = vec![(
            dir.to_owned(),
            fs::metadata(dir).unwrap().permissions().mode() & 0o777,
        )];
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(modes(&p));
            } else {
                out.push((
                    p.clone(),
                    fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                ));
            }
        }
        out
    }

    fn read_all(md: &mut Box<dyn Maildrop>, n: usize) -> String {
        let mut t = String::new();
        md.read_message(n).unwrap().read_to_string(&mut t).unwrap();
        t
    }

    #[test]
    fn auto_created_users_get_a_maildir_on_delivery_or_login() {
        let t = tempfile::tempdir().unwrap();
        let o = MaildirOptions {
            fsync: false,
            auto_create_users: true,
            ..MaildirOptions::default()
        };
        let s = MaildirStore::new(t.path(), o).unwrap();
        let (ann, bob, cat) = (
            UserName::new("ann").unwrap(),
            UserName::new("bob").unwrap(),
            UserName::new("cat").unwrap(),
        );
        // A login before any mail: an empty maildrop, not an unknown user.
        let md = s.open_maildrop(&ann).unwrap();
        assert!(md.entries().is_empty());
        drop(md);
        assert!(t.path().join("ann/.Spam/cur").is_dir());
        // Listing does not create.
        assert!(matches!(
            s.list(&bob, Folder::Spam),
            Err(Error::UnknownUser(_))
        ));
        assert!(!t.path().join("bob").exists());
        s.deliver(&cat, Folder::Inbox, &mut &b"hi\n"[..]).unwrap();
        assert_eq!(s.users().unwrap(), [ann, cat.clone()]);
        // Without the option, a missing Maildir is an unknown user.
        let plain = store(t.path());
        let dan = UserName::new("dan").unwrap();
        assert!(matches!(
            plain.open_maildrop(&dan),
            Err(Error::UnknownUser(_))
        ));
        assert!(matches!(
            plain.list(&dan, Folder::Inbox),
            Err(Error::UnknownUser(_))
        ));
    }

    #[test]
    fn a_user_dir_made_with_mkdir_is_completed_on_first_use() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        // An administrator's `mkdir`: no tmp/, new/, cur/.
        fs::create_dir(t.path().join("joe")).unwrap();
        assert!(s.user_exists(&joe()).unwrap());
        s.deliver(&joe(), Folder::Inbox, &mut &b"Subject: a\n\nhi\n"[..])
            .unwrap();
        let mut md = s.open_maildrop(&joe()).unwrap();
        assert_eq!(read_all(&mut md, 1), "Subject: a\r\n\r\nhi\r\n");
        drop(md);
        // Another delivery agent made only `.Spam/` (without `maildirfolder`).
        let ann = UserName::new("ann").unwrap();
        fs::create_dir_all(t.path().join("ann/.Spam")).unwrap();
        s.deliver(&ann, Folder::Spam, &mut &b"spam\n"[..]).unwrap();
        assert!(t.path().join("ann/.Spam/maildirfolder").is_file());
        assert_eq!(s.list(&ann, Folder::Spam).unwrap().len(), 1);
        let far = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(s.expunge_older_than(&ann, Folder::Spam, far).unwrap(), 1);
        assert_eq!(s.open_maildrop(&ann).unwrap().entries().len(), 0);
        for sub in ["tmp", "new", "cur"] {
            assert!(t.path().join("ann").join(sub).is_dir(), "{sub}");
        }
        // The sweeper's first use of a bare directory.
        let bob = UserName::new("bob").unwrap();
        fs::create_dir(t.path().join("bob")).unwrap();
        assert_eq!(s.expunge_older_than(&bob, Folder::Spam, far).unwrap(), 0);
        // Up front, at start-up.
        let eve = UserName::new("eve").unwrap();
        fs::create_dir(t.path().join("eve")).unwrap();
        assert!(s.repair_user(&eve).unwrap());
        assert!(t.path().join("eve/.Spam/maildirfolder").is_file());
        assert!(t.path().join("eve/cur").is_dir());
        assert!(!s.repair_user(&UserName::new("nobody").unwrap()).unwrap());
        assert!(!t.path().join("nobody").exists());
        assert!(matches!(
            s.open_maildrop(&UserName::new("nobody").unwrap()),
            Err(Error::UnknownUser(_))
        ));
    }

    #[test]
    fn a_maildrop_is_served_when_the_index_cannot_be_written() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        s.deliver(&joe(), Folder::Inbox, &mut &b"first\n"[..])
            .unwrap();
        // Indexed once: this one keeps its numeric UID.
        let indexed = s.open_maildrop(&joe()).unwrap().entries()[0].uid.clone();
        for body in ["second\n", "third\n"] {
            s.deliver(&joe(), Folder::Inbox, &mut body.as_bytes())
                .unwrap();
        }
        // The index's temporary file cannot be created (as on a full disk).
        let blocker = t.path().join("joe").join(UIDLIST_TMP);
        fs::create_dir(&blocker).unwrap();
        let mut md = s.open_maildrop(&joe()).unwrap();
        assert!(md.index_error().is_some());
        let uids: Vec<Uid> = md.entries().iter().map(|e| e.uid.clone()).collect();
        assert_eq!(uids.len(), 3);
        assert_eq!(uids[0], indexed);
        assert_eq!(uids[1].as_str().len(), 32, "provisional: {uids:?}");
        assert_ne!(uids[1], uids[2]);
        assert_eq!(read_all(&mut md, 2), "second\r\n");
        // DELE + QUIT still frees space.
        md.mark_deleted(3).unwrap();
        assert_eq!(md.commit().unwrap().deleted, 1);
        // Stable while the index stays unwritable.
        let md = s.open_maildrop(&joe()).unwrap();
        let again: Vec<Uid> = md.entries().iter().map(|e| e.uid.clone()).collect();
        assert_eq!(again, uids[..2].to_vec());
        drop(md);
        // The index lock cannot be taken (as when its file cannot be created):
        // still served, read only.
        fs::remove_dir(&blocker).unwrap();
        let lock = t.path().join("joe").join(UIDLIST_LOCK);
        assert!(!lock.exists(), "a dot-lock is removed at release");
        fs::create_dir(&lock).unwrap();
        let md = s.open_maildrop(&joe()).unwrap();
        assert!(md.index_error().is_some());
        let again: Vec<Uid> = md.entries().iter().map(|e| e.uid.clone()).collect();
        assert_eq!(again, uids[..2].to_vec());
        drop(md);
        fs::remove_dir(&lock).unwrap();
        // Writable again: the index is written, and no UID ever seen is reused.
        let md = s.open_maildrop(&joe()).unwrap();
        assert!(md.index_error().is_none());
        let now: Vec<Uid> = md.entries().iter().map(|e| e.uid.clone()).collect();
        assert_eq!(now[0], indexed);
        assert!(!uids.contains(&now[1]));
        assert!(t.path().join("joe").join(uidlist::FILE_NAME).is_file());
    }

    #[test]
    fn created_files_and_directories_are_private() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let s = store(&root);
        s.create_user(&joe()).unwrap();
        s.deliver(&joe(), Folder::Inbox, &mut &b"a\n"[..]).unwrap();
        s.deliver(&joe(), Folder::Spam, &mut &b"b\n"[..]).unwrap();
        let mut md = s.open_maildrop(&joe()).unwrap();
        read_all(&mut md, 1);
        md.commit().unwrap();
        s.list(&joe(), Folder::Spam).unwrap();
        let all = modes(&root);
        assert!(all.len() > 12, "{all:?}");
        for (p, mode) in all {
            let want = if p.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode & !want, 0, "{} is {mode:o}", p.display());
        }
    }

    #[test]
    fn users_lists_only_maildirs() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create_user(&joe()).unwrap();
        s.create_user(&UserName::new("ann").unwrap()).unwrap();
        fs::create_dir(t.path().join("notamaildir")).unwrap();
        fs::create_dir(t.path().join(".hidden")).unwrap();
        let u: Vec<String> = s.users().unwrap().iter().map(|u| u.to_string()).collect();
        assert_eq!(u, vec!["ann", "joe"]);
    }
}
