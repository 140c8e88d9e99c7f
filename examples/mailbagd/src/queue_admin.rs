//! `mailbagd queue show|flush|hold|release|delete`: changing the relay queue
//! while the server runs. Each change takes the message's own lock
//! (mailstore's [`MessageLock`]), which the server's outbound engine also
//! holds while it works on a message: a command waits for an attempt in
//! progress to end, and the engine leaves a message a command holds for its
//! next scan. A held message is never attempted and makes no DSN until it is
//! released.

use std::io::{Read, Write};

use mailbag_mailstore::queue::{MessageLock, Queue, QueueError, QueueId, QueueOptions};

use crate::config::Config;

/// Most octets of a message `queue show` prints without `--body`: its header
/// section, up to this much.
pub const SHOW_HEADER_LIMIT: u64 = 64 * 1024;

/// What to do to one queued message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Never attempt it (nor make its DSNs) until released.
    Hold,
    /// Take it off hold; attempt it at the server's next scan.
    Release,
    /// Attempt it at the server's next scan, whatever its retry schedule says.
    Flush,
    /// Remove it from the queue without a DSN.
    Delete,
}

fn open(config: &Config) -> Result<Queue, String> {
    let dir = &config.relay.queue_dir;
    if !dir.is_dir() {
        return Err(format!("no queue at {}", dir.display()));
    }
    Queue::open(dir, QueueOptions::default())
        .map_err(|e| format!("cannot open the queue {}: {e}", dir.display()))
}

fn parse_id(id: &str) -> Result<QueueId, String> {
    id.parse()
        .map_err(|_| format!("{id:?} is not a queue id (as `mailbagd queue list` shows them)"))
}

fn lock(queue: &Queue, id: &QueueId) -> Result<MessageLock, String> {
    queue.lock_message(id).map_err(|e| match e {
        QueueError::NotFound(_) => format!("no queued message {id}"),
        e => format!("{id}: {e}"),
    })
}

/// Applies `change` to each message of `ids` (queue ids as listed), one
/// line of output per message. `now` (unix seconds) is when a released or
/// flushed message becomes due.
///
/// # Errors
///
/// A message naming the first id that is not queued or could not be
/// changed; the ones before it are changed.
pub fn change(
    config: &Config,
    change: Change,
    ids: &[String],
    now: u64,
    out: &mut impl Write,
) -> Result<(), String> {
    let queue = open(config)?;
    let ids: Vec<QueueId> = ids.iter().map(|i| parse_id(i)).collect::<Result<_, _>>()?;
    for id in &ids {
        let message = lock(&queue, id)?;
        let failed = |e: QueueError| format!("{id}: {e}");
        let line = match change {
            Change::Delete => {
                message.remove().map_err(failed)?;
                format!("{id}: deleted (no DSN sent)")
            }
            _ => {
                let mut env = message.envelope().map_err(failed)?;
                let line = match change {
                    Change::Hold => {
                        env.held = true;
                        format!("{id}: on hold")
                    }
                    Change::Release => {
                        env.held = false;
                        env.next_attempt = env.next_attempt.min(now);
                        format!("{id}: released, due now")
                    }
                    _ if env.held => format!("{id}: on hold, not flushed"),
                    _ => {
                        env.next_attempt = env.next_attempt.min(now);
                        format!("{id}: due now")
                    }
                };
                message.update(&env).map_err(failed)?;
                line
            }
        };
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Flushes every queued message that is not on hold.
///
/// # Errors
///
/// The queue cannot be listed, or a message cannot be changed.
pub fn flush_all(config: &Config, now: u64, out: &mut impl Write) -> Result<(), String> {
    let queue = open(config)?;
    let listing = queue.list().map_err(|e| e.to_string())?;
    let ids: Vec<String> = listing
        .messages
        .iter()
        .filter(|e| !e.held)
        .map(|e| e.id.to_string())
        .collect();
    change(config, Change::Flush, &ids, now, out)?;
    writeln!(
        out,
        "{} message(s) due now: the running server attempts them at its next queue scan \
         ([relay] scan_interval)",
        ids.len()
    )
    .map_err(|e| e.to_string())
}

/// `mailbagd queue show ID`: the envelope as `queue list` shows it, then
/// the message's header section (or, with `body`, the whole message).
///
/// # Errors
///
/// No such message, or it cannot be read.
pub fn show(
    config: &Config,
    id: &str,
    body: bool,
    now: u64,
    out: &mut impl Write,
) -> Result<(), String> {
    let queue = open(config)?;
    let id = parse_id(id)?;
    let env = queue.envelope(&id).map_err(|e| match e {
        QueueError::NotFound(_) => format!("no queued message {id}"),
        e => format!("{id}: {e}"),
    })?;
    let (file, len) = queue.body(&id).map_err(|e| format!("{id}: {e}"))?;
    let limit = if body {
        len
    } else {
        len.min(SHOW_HEADER_LIMIT)
    };
    let mut text = Vec::new();
    file.take(limit)
        .read_to_end(&mut text)
        .map_err(|e| format!("{id}: {e}"))?;
    if !body {
        // The header section: up to the empty line.
        if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
            text.truncate(end + 2);
        }
    }
    let listed = crate::queue_list::describe(&[env], now);
    // Line by line, control characters escaped: a header cannot drive the terminal.
    let shown: String = String::from_utf8_lossy(&text)
        .split("\r\n")
        .map(|l| crate::queue_list::clean(l) + "\n")
        .collect();
    out.write_all(listed.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.write_all(shown.as_bytes()))
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())
}
