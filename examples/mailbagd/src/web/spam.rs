//! The Spam folder: listing (newest first, paged, reading only the header
//! of the messages shown), release to the INBOX with the Subject tag
//! removed, and deletion. Blocking (file system): the web handlers call it
//! through `spawn_blocking`.

use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use mailbag_mailstore::{Error as StoreError, Folder, Mailstore, Uid, UserName};
use mailbag_smtp_proto::date::DateTime;
use mailbag_spam_tag::{
    HeaderAction, HeaderRewriter, RewriteOptions, Summary, SummaryOptions, Template, remove_tag,
};

use crate::read_chunks::each_chunk;

/// `YYYY-MM-DD HH:MM UTC`.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use mailbagd::web::spam::format_time;
/// assert_eq!(format_time(UNIX_EPOCH + Duration::from_secs(1_795_000_000)), "2026-11-18 11:06 UTC");
/// ```
pub fn format_time(t: SystemTime) -> String {
    match DateTime::from_system_time(t, 0) {
        Ok(d) => {
            let c = d.civil();
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                c.year, c.month, c.day, c.hour, c.minute
            )
        }
        Err(_) => "–".to_owned(),
    }
}

/// One message of the Spam page.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpamEntry {
    /// The message's id in the user's Spam folder.
    pub uid: String,
    /// When it was saved into Spam.
    pub received: SystemTime,
    /// When the retention sweeper removes it (`received + spam_retention`).
    pub deleted_at: SystemTime,
    /// Size in octets.
    pub size: u64,
    /// From, Subject (with the spam tag removed, as it will read once
    /// released) and score, read and RFC 2047-decoded by spam-tag.
    pub header: Summary,
}

/// One page of the Spam folder.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpamPage {
    /// The messages shown, newest first.
    pub entries: Vec<SpamEntry>,
    /// Messages in the folder.
    pub total: usize,
    /// This page (from 1; clamped to the last page).
    pub page: usize,
    /// Number of pages (at least 1).
    pub pages: usize,
}

/// Reads at most `limit` octets of a message's header block.
fn read_head(mut r: impl Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(4096.min(limit));
    let mut buf = [0u8; 4096];
    while head.len() < limit {
        let want = buf.len().min(limit - head.len());
        let n = match r.read(buf.get_mut(..want).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        if let Some(p) = find(head.get(from..).unwrap_or_default(), b"\r\n\r\n") {
            head.truncate(from + p + 2);
            break;
        }
    }
    Ok(head)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Lists page `page` (from 1) of `user`'s Spam folder, newest first.
/// The user's Spam folder; empty for a user whose Maildir is not made yet (a
/// passwd-file user before the first delivery or login: listing never
/// creates it).
///
/// # Errors
///
/// The store's error.
pub fn list_spam(
    store: &dyn Mailstore,
    user: &UserName,
) -> Result<Vec<mailbag_mailstore::MessageInfo>, StoreError> {
    match store.list(user, Folder::Spam) {
        Err(StoreError::UnknownUser(_)) => Ok(Vec::new()),
        other => other,
    }
}

/// Lists the folder (names and save times), then reads the header of the
/// messages on the page only (with one [`Mailstore::read_many`]).
pub fn list_page(
    store: &dyn Mailstore,
    user: &UserName,
    template: &Template,
    page: usize,
    page_size: usize,
    retention: Duration,
    max_header: usize,
) -> Result<SpamPage, StoreError> {
    let mut all = list_spam(store, user)?;
    all.sort_by(|a, b| b.saved.cmp(&a.saved).then_with(|| b.uid.cmp(&a.uid)));
    let total = all.len();
    let page_size = page_size.max(1);
    let pages = total.div_ceil(page_size).max(1);
    let page = page.clamp(1, pages);
    let shown: Vec<_> = all
        .iter()
        .skip((page - 1) * page_size)
        .take(page_size)
        .collect();
    let uids: Vec<Uid> = shown.iter().map(|i| i.uid.clone()).collect();
    // One folder scan for the page's messages, then only their headers (none
    // for an empty page: the user may have no Maildir yet).
    let readers = if uids.is_empty() {
        Vec::new()
    } else {
        store.read_many(user, Folder::Spam, &uids)?
    };
    let mut entries = Vec::with_capacity(shown.len());
    for (info, reader) in shown.into_iter().zip(readers) {
        entries.extend(to_entry(info, reader, template, retention, max_header)?);
    }
    Ok(SpamPage {
        entries,
        total,
        page,
        pages,
    })
}

/// The most characters of a sender or subject shown on the page and in the digest.
pub const SHOWN_CHARS: usize = 200;

/// Characters read beyond [`SHOWN_CHARS`] for the spam tag that is removed before
/// the cut (`**SPAM( 1000.0)** ` is 18).
const TAG_ROOM: usize = 64;

/// `header`'s Subject without its spam tag, then From and Subject cut to
/// [`SHOWN_CHARS`] (and `…`): the tag does not take room from the subject (a probe
/// saw 182 of 200 characters shown).
fn shown(header: &mut Summary, template: &Template) {
    let cut = |s: &str| match s.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", s[..end].trim_end_matches('…')),
        None => s.to_owned(),
    };
    let subject = String::from_utf8_lossy(remove_tag(template, header.subject.as_bytes()))
        .trim()
        .to_owned();
    header.subject = cut(&subject);
    header.from = cut(&header.from);
}

/// The entry of a listed message from its reader: the header read (at most
/// `max_header` octets), the Subject's tag removed. `None` when the message
/// was removed meanwhile (sweeper, another session).
fn to_entry(
    info: &mailbag_mailstore::MessageInfo,
    reader: Result<mailbag_mailstore::MessageReader, StoreError>,
    template: &Template,
    retention: Duration,
    max_header: usize,
) -> Result<Option<SpamEntry>, StoreError> {
    let mut opts = SummaryOptions::default();
    opts.max_chars = SHOWN_CHARS + TAG_ROOM;
    let mut header = match reader {
        Ok(r) => read_head(r, max_header)
            .map(|h| Summary::parse_with(&h, &opts))
            .unwrap_or_default(),
        Err(StoreError::NoSuchMessage) => return Ok(None),
        Err(e) => return Err(e),
    };
    shown(&mut header, template);
    Ok(Some(SpamEntry {
        uid: info.uid.as_str().to_owned(),
        received: info.saved,
        deleted_at: info.saved.checked_add(retention).unwrap_or(info.saved),
        size: info.size,
        header,
    }))
}

/// Messages read at once by [`entries_where`] (each open file has a read buffer).
const READ_BATCH: usize = 100;

/// The messages of `user`'s Spam folder that `keep` selects from the
/// listing, oldest first, as the Spam page shows them. The folder is listed
/// once; only the selected messages' headers are read, 100 (`READ_BATCH`) files
/// at a time (a folder of thousands of spam opens no more at once).
pub fn entries_where(
    store: &dyn Mailstore,
    user: &UserName,
    template: &Template,
    retention: Duration,
    max_header: usize,
    keep: impl Fn(&mailbag_mailstore::MessageInfo) -> bool,
) -> Result<Vec<SpamEntry>, StoreError> {
    let mut chosen: Vec<_> = list_spam(store, user)?
        .into_iter()
        .filter(|m| keep(m))
        .collect();
    chosen.sort_by(|a, b| a.saved.cmp(&b.saved).then_with(|| a.uid.cmp(&b.uid)));
    let mut out = Vec::with_capacity(chosen.len());
    for batch in chosen.chunks(READ_BATCH) {
        let uids: Vec<Uid> = batch.iter().map(|m| m.uid.clone()).collect();
        let readers = store.read_many(user, Folder::Spam, &uids)?;
        for (info, reader) in batch.iter().zip(readers) {
            out.extend(to_entry(info, reader, template, retention, max_header)?);
        }
    }
    Ok(out)
}

/// One message of `user`'s Spam folder, as the Spam page shows it (`None`
/// when it is not there: released, deleted or swept).
pub fn entry(
    store: &dyn Mailstore,
    user: &UserName,
    uid: &Uid,
    template: &Template,
    retention: Duration,
    max_header: usize,
) -> Result<Option<SpamEntry>, StoreError> {
    let found = entries_where(store, user, template, retention, max_header, |m| {
        m.uid == *uid
    })?;
    Ok(found.into_iter().next())
}

/// The releases in progress (user and uid), so that one message is released
/// once; the claim ends when the guard drops.
struct Releasing(String);

static RELEASING: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl Releasing {
    fn claim(key: String) -> Option<Releasing> {
        let mut v = RELEASING.lock().unwrap_or_else(|p| p.into_inner());
        if v.contains(&key) {
            return None;
        }
        v.push(key.clone());
        Some(Releasing(key))
    }
}

impl Drop for Releasing {
    fn drop(&mut self) {
        let mut v = RELEASING.lock().unwrap_or_else(|p| p.into_inner());
        v.retain(|k| *k != self.0);
    }
}

/// How long an action of the web page waits for the Spam folder before it
/// answers that it is in use (1 second): long enough for another action of
/// the page (a second tab, a double click), short for a POP3 session.
pub const SPAM_HOLD_WAIT: Duration = Duration::from_secs(1);

/// Runs `change` on `user`'s Spam folder while holding the folder as a
/// POP3 maildrop does (its lock, without a commit), so that the web page
/// never changes the folder under a `joe/Spam` POP3 session, whose maildrop
/// is exclusive (RFC 1939; a probe's session got `-ERR [SYS/TEMP]` for a
/// message released meanwhile). [`StoreError::InUse`] when the folder stays
/// held for [`SPAM_HOLD_WAIT`] (a session is open); a POP3 login meanwhile
/// gets `-ERR [IN-USE]`.
///
/// # Errors
///
/// The folder could not be held: [`StoreError::InUse`], or a store failure.
pub fn with_spam_held<T>(
    store: &dyn Mailstore,
    user: &UserName,
    change: impl FnOnce() -> T,
) -> Result<T, StoreError> {
    // Another action of the page holds it for milliseconds; a POP3 session
    // for as long as the mail program fetches.
    let start = std::time::Instant::now();
    let held = loop {
        match store.open_folder_maildrop(user, Folder::Spam) {
            Err(StoreError::InUse) if start.elapsed() < SPAM_HOLD_WAIT => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => break other?,
        }
    };
    let out = change();
    // Let go without a commit: the maildrop changes nothing.
    drop(held);
    Ok(out)
}

/// Why a release failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// No such message in the user's Spam folder.
    #[error("no such message in Spam")]
    NotFound,
    /// A POP3 session has the Spam folder open ([`with_spam_held`]);
    /// nothing changed.
    #[error("the Spam folder is open in a POP3 session")]
    InUse,
    /// The store failed; the message is still in Spam.
    #[error("mail store: {0}")]
    Store(StoreError),
    /// Reading the message failed; the message is still in Spam.
    #[error("reading the message: {0}")]
    Read(io::Error),
    /// The message's header is too large to rewrite; it is still in Spam.
    #[error("header too large to rewrite")]
    Header,
    /// The copy is in the INBOX but the message could not be removed from
    /// Spam (nothing is lost; it is there twice).
    #[error("released, but not removed from Spam: {0}")]
    NotRemoved(StoreError),
}

/// Releases message `uid` of `user`'s Spam folder to the INBOX: the message
/// is streamed through spam-tag's [`HeaderRewriter`] with
/// [`HeaderAction::Untag`] (the Subject loses its tag by the [`remove_tag`]
/// rule, and the verdict fields `X-Spam-Flag`, `X-Spam-Status` and
/// `X-Spam-Level` are removed so a client that trusts them does not file the
/// message as junk again; nothing else changes) into a new INBOX delivery, which is committed
/// (fsynced) before the Spam copy is deleted. A failure before the commit
/// leaves the message in Spam; a failure of the delete leaves it in both.
pub fn release(
    store: &dyn Mailstore,
    user: &UserName,
    uid: &Uid,
    template: &Template,
) -> Result<(), ReleaseError> {
    // One release of a message at a time in this process: two at once (a
    // double-clicked button, a release link opened twice) would both copy it
    // into the INBOX. The second finds it in progress, or gone.
    let key = format!("{}\0{}", user.as_str(), uid.as_str());
    let Some(_releasing) = Releasing::claim(key) else {
        return Err(ReleaseError::NotFound);
    };
    match with_spam_held(store, user, || release_held(store, user, uid, template)) {
        Ok(result) => result,
        Err(StoreError::InUse) => Err(ReleaseError::InUse),
        Err(e) => Err(ReleaseError::Store(e)),
    }
}

/// [`release`] once the folder is held.
fn release_held(
    store: &dyn Mailstore,
    user: &UserName,
    uid: &Uid,
    template: &Template,
) -> Result<(), ReleaseError> {
    let mut reader = match store.read(user, Folder::Spam, uid) {
        Ok(r) => r,
        Err(StoreError::NoSuchMessage) => return Err(ReleaseError::NotFound),
        Err(e) => return Err(ReleaseError::Store(e)),
    };
    let mut delivery = store
        .begin_delivery(user, Folder::Inbox)
        .map_err(ReleaseError::Store)?;
    let mut opts = RewriteOptions::default();
    opts.template = template.clone();
    let mut rw = HeaderRewriter::new(HeaderAction::Untag, opts);
    const CHUNK: usize = 64 * 1024;
    let mut out = Vec::with_capacity(CHUNK + 1024);
    each_chunk(&mut reader, CHUNK, ReleaseError::Read, |c| {
        out.clear();
        rw.feed(c, &mut out).map_err(|_| ReleaseError::Header)?;
        delivery.write_chunk(&out).map_err(ReleaseError::Store)
    })?;
    out.clear();
    rw.finish(&mut out).map_err(|_| ReleaseError::Header)?;
    delivery.write_chunk(&out).map_err(ReleaseError::Store)?;
    delivery.commit().map_err(ReleaseError::Store)?;
    match store.delete(user, Folder::Spam, uid) {
        Ok(()) | Err(StoreError::NoSuchMessage) => Ok(()),
        Err(e) => Err(ReleaseError::NotRemoved(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tag is removed before the cut: a subject of 200 characters is shown whole
    /// under its tag, one of 250 is cut at 200 and ends with `…`.
    #[test]
    fn the_tag_takes_no_room_from_the_shown_subject() {
        let template = Template::default();
        let mut opts = SummaryOptions::default();
        opts.max_chars = SHOWN_CHARS + TAG_ROOM;
        for (len, want) in [
            (200, "s".repeat(200)),
            (250, format!("{}…", "s".repeat(200))),
        ] {
            let head = format!(
                "From: {}\r\nSubject: **SPAM( 1000.0)** {}\r\n\r\n",
                "f".repeat(len),
                "s".repeat(len)
            );
            let mut h = Summary::parse_with(head.as_bytes(), &opts);
            shown(&mut h, &template);
            assert_eq!(h.subject, want);
            assert_eq!(h.from, want.replace('s', "f"));
        }
    }

    #[test]
    fn one_release_of_a_message_at_a_time() {
        let a = Releasing::claim("joe:1".to_owned()).unwrap();
        assert!(Releasing::claim("joe:1".to_owned()).is_none());
        let b = Releasing::claim("joe:2".to_owned()).unwrap();
        drop(a);
        assert!(Releasing::claim("joe:1".to_owned()).is_some());
        drop(b);
    }
    use mailbag_mailstore::MemoryStore;
    use std::time::UNIX_EPOCH;

    #[test]
    fn dates() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01 00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3600 + 120); // 2000-02-29
        assert_eq!(format_time(t), "2000-02-29 01:02 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599); // 2026-12-31 23:59:59
        assert_eq!(format_time(t), "2026-12-31 23:59 UTC");
    }

    #[test]
    fn head_reading_stops_at_the_blank_line_and_the_limit() {
        let msg = b"A: 1\r\nB: 2\r\n\r\nbody body body";
        assert_eq!(read_head(&msg[..], 1000).unwrap(), b"A: 1\r\nB: 2\r\n");
        assert_eq!(read_head(&msg[..], 5).unwrap(), b"A: 1\r");
    }

    fn store_with_spam(n: usize) -> (MemoryStore, UserName) {
        let store = MemoryStore::new();
        let joe = UserName::new("joe").unwrap();
        store.create_user(&joe).unwrap();
        for i in 0..n {
            let msg = format!(
                "From: s{i}@example.org\r\nSubject: **SPAM( 9.0)** offer {i}\r\n\
                 X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=9.0 required=5.0 tests=X\r\n\
                 X-Spam-Prev-Subject: offer {i}\r\n\r\nbody {i}\r\n"
            );
            store
                .deliver(&joe, Folder::Spam, &mut msg.as_bytes())
                .unwrap();
        }
        (store, joe)
    }

    /// An action waits up to [`SPAM_HOLD_WAIT`] for the folder (another
    /// action of the page), then answers that it is in use (a POP3 session).
    #[test]
    fn an_action_waits_briefly_for_the_spam_folder() {
        let (store, joe) = store_with_spam(1);
        let store = std::sync::Arc::new(store);
        let held = store.open_folder_maildrop(&joe, Folder::Spam).unwrap();
        let (s, j) = (std::sync::Arc::clone(&store), joe.clone());
        let t0 = std::time::Instant::now();
        let waiting = std::thread::spawn(move || with_spam_held(s.as_ref(), &j, || 7));
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
        assert_eq!(waiting.join().unwrap().unwrap(), 7);
        assert!(t0.elapsed() >= Duration::from_millis(300));

        let _session = store.open_folder_maildrop(&joe, Folder::Spam).unwrap();
        let t0 = std::time::Instant::now();
        assert!(matches!(
            with_spam_held(store.as_ref(), &joe, || 7),
            Err(StoreError::InUse)
        ));
        assert!(t0.elapsed() >= SPAM_HOLD_WAIT);
    }

    #[test]
    fn listing_pages_newest_first() {
        let (store, joe) = store_with_spam(5);
        let t = Template::default();
        let day = Duration::from_secs(86_400);
        let p1 = list_page(&store, &joe, &t, 1, 2, 7 * day, 65536).unwrap();
        assert_eq!((p1.total, p1.page, p1.pages), (5, 1, 3));
        // Same save second: newest uid first.
        assert_eq!(p1.entries[0].header.subject, "offer 4");
        assert_eq!(p1.entries[1].header.subject, "offer 3");
        assert_eq!(
            p1.entries[0].header.score.map(|s| s.to_string()).as_deref(),
            Some("9.0")
        );
        assert_eq!(p1.entries[0].header.from, "s4@example.org");
        assert_eq!(p1.entries[0].deleted_at, p1.entries[0].received + 7 * day);
        let p3 = list_page(&store, &joe, &t, 3, 2, 7 * day, 65536).unwrap();
        assert_eq!(p3.entries.len(), 1);
        assert_eq!(p3.entries[0].header.subject, "offer 0");
        // Past the end: the last page.
        let p9 = list_page(&store, &joe, &t, 9, 2, 7 * day, 65536).unwrap();
        assert_eq!(p9.page, 3);
        let (empty, ann) = store_with_spam(0);
        let p = list_page(&empty, &ann, &t, 1, 50, 7 * day, 65536).unwrap();
        assert_eq!((p.total, p.pages, p.entries.len()), (0, 1, 0));
    }

    #[test]
    fn release_untags_into_inbox_and_removes_from_spam() {
        let (store, joe) = store_with_spam(2);
        let t = Template::default();
        let uid = store.list(&joe, Folder::Spam).unwrap()[0].uid.clone();
        release(&store, &joe, &uid, &t).unwrap();
        assert_eq!(store.list(&joe, Folder::Spam).unwrap().len(), 1);
        let inbox = store.list(&joe, Folder::Inbox).unwrap();
        assert_eq!(inbox.len(), 1);
        let mut text = String::new();
        store
            .read(&joe, Folder::Inbox, &inbox[0].uid)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        // The verdict fields are gone, the rest is as it was.
        assert_eq!(
            text,
            "From: s0@example.org\r\nSubject: offer 0\r\n\
             X-Spam-Prev-Subject: offer 0\r\n\r\nbody 0\r\n"
        );
        // Again: it is gone from Spam.
        assert!(matches!(
            release(&store, &joe, &uid, &t),
            Err(ReleaseError::NotFound)
        ));
        let other = Uid::new("ffffffffffffffff").unwrap();
        assert!(matches!(
            release(&store, &joe, &other, &t),
            Err(ReleaseError::NotFound)
        ));
    }
}
