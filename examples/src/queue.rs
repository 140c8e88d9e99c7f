//! The relay queue: mail accepted for a remote destination is kept here,
//! durably, until the outbound delivery (a later issue) sends it on.
//!
//! One file per message under `<queue_dir>/new/`, written in
//! `<queue_dir>/tmp/`, fsynced, renamed, and the directory fsynced, before
//! the SMTP `250` is sent. The file starts with an envelope block, then a
//! blank line, then the message exactly as it will be relayed:
//!
//! ```text
//! mailbag-queue 1
//! client 127.0.0.2
//! from <sender@example.org>
//! to <friend@elsewhere.example>
//!
//! Received: ...
//! ```
//!
//! # Examples
//!
//! ```
//! use std::io::Write;
//! use mailbag_examples::queue::{Envelope, RelayQueue};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let q = RelayQueue::open(dir.path()).unwrap();
//! let env = Envelope {
//!     client: "127.0.0.2".parse().unwrap(),
//!     from: "<a@example.org>".into(),
//!     to: vec!["<b@elsewhere.example>".into()],
//! };
//! let mut w = q.begin(&env).unwrap();
//! w.write_all(b"Subject: hi\r\n\r\nhello\r\n").unwrap();
//! let path = w.commit().unwrap();
//! let text = std::fs::read_to_string(path).unwrap();
//! assert!(text.starts_with("mailbag-queue 1\nclient 127.0.0.2\nfrom <a@example.org>\n"));
//! assert!(text.ends_with("\n\nSubject: hi\r\n\r\nhello\r\n"));
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The envelope of a queued message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The submitting client's address.
    pub client: IpAddr,
    /// Reverse path as received, with angle brackets (`<>` for bounces).
    pub from: String,
    /// Forward paths, with angle brackets.
    pub to: Vec<String>,
}

/// The queue directory.
#[derive(Debug)]
pub struct RelayQueue {
    tmp: PathBuf,
    new: PathBuf,
    counter: AtomicU64,
}

/// A message being written into the queue; dropped without
/// [`commit`](QueueWriter::commit) it leaves nothing behind.
#[derive(Debug)]
pub struct QueueWriter {
    file: Option<File>,
    tmp_path: PathBuf,
    final_path: PathBuf,
    new_dir: PathBuf,
}

fn one_line(s: &str) -> io::Result<&str> {
    if s.contains(['\r', '\n']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "envelope address contains a line break",
        ));
    }
    Ok(s)
}

impl RelayQueue {
    /// Opens (creating if needed) the queue directory.
    pub fn open(dir: &Path) -> io::Result<RelayQueue> {
        let tmp = dir.join("tmp");
        let new = dir.join("new");
        fs::create_dir_all(&tmp)?;
        fs::create_dir_all(&new)?;
        Ok(RelayQueue {
            tmp,
            new,
            counter: AtomicU64::new(0),
        })
    }

    /// Starts a queue file with `envelope` written at its head.
    pub fn begin(&self, envelope: &Envelope) -> io::Result<QueueWriter> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}.M{}P{}Q{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            n
        );
        let tmp_path = self.tmp.join(&name);
        let final_path = self.new.join(&name);
        let mut head = format!(
            "mailbag-queue 1\nclient {}\nfrom {}\n",
            envelope.client,
            one_line(&envelope.from)?
        );
        for to in &envelope.to {
            head.push_str("to ");
            head.push_str(one_line(to)?);
            head.push('\n');
        }
        head.push('\n');
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)?;
        let mut w = QueueWriter {
            file: Some(file),
            tmp_path,
            final_path,
            new_dir: self.new.clone(),
        };
        w.write_all(head.as_bytes())?;
        Ok(w)
    }

    /// Messages waiting in the queue (file paths, unordered).
    pub fn list(&self) -> io::Result<Vec<PathBuf>> {
        let mut v = Vec::new();
        for e in fs::read_dir(&self.new)? {
            v.push(e?.path());
        }
        Ok(v)
    }
}

impl QueueWriter {
    /// fsyncs the file, renames it into `new/` and fsyncs the directory.
    pub fn commit(mut self) -> io::Result<PathBuf> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("queue file already closed"))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp_path, &self.final_path)?;
        File::open(&self.new_dir)?.sync_all()?;
        Ok(self.final_path.clone())
    }
}

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("queue file already closed")),
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
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Envelope {
        Envelope {
            client: "127.0.0.2".parse().unwrap(),
            from: "<>".into(),
            to: vec!["<a@x.example>".into(), "<b@y.example>".into()],
        }
    }

    #[test]
    fn committed_file_is_in_new_with_envelope() {
        let dir = tempfile::tempdir().unwrap();
        let q = RelayQueue::open(dir.path()).unwrap();
        let mut w = q.begin(&env()).unwrap();
        w.write_all(b"body\r\n").unwrap();
        let p = w.commit().unwrap();
        assert_eq!(q.list().unwrap(), vec![p.clone()]);
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "mailbag-queue 1\nclient 127.0.0.2\nfrom <>\nto <a@x.example>\nto <b@y.example>\n\nbody\r\n"
        );
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let q = RelayQueue::open(dir.path()).unwrap();
        let mut w = q.begin(&env()).unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert!(q.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn line_breaks_in_envelope_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let q = RelayQueue::open(dir.path()).unwrap();
        let mut e = env();
        e.from = "<a@b>\nto <evil@x>".into();
        assert!(q.begin(&e).is_err());
        assert!(q.list().unwrap().is_empty());
    }

    #[test]
    fn names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let q = RelayQueue::open(dir.path()).unwrap();
        for _ in 0..50 {
            q.begin(&env()).unwrap().commit().unwrap();
        }
        assert_eq!(q.list().unwrap().len(), 50);
    }
}
