//! `mailbagd queue show|flush|hold|release|delete`: changing the relay queue
//! while the server runs. Each change takes the message's own lock
//! (mailstore's [`MessageLock`](mailbag_mailstore::queue::MessageLock)), which the server's outbound engine also
//! holds while it works on a message: a command waits for an attempt in
//! progress to end, and the engine leaves a message a command holds for its
//! next scan. A held message is never attempted and makes no DSN until it is
//! released.

use std::io::{Read, Write};

use mailbag_mailstore::queue::{Envelope, Queue, QueueError, QueueId, QueueOptions};

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

/// No such message: the words of every command.
fn not_queued(id: &QueueId, e: QueueError) -> String {
    match e {
        QueueError::NotFound(_) => format!("no queued message {id}"),
        e => format!("{id}: {e}"),
    }
}

/// Applies `change` to the message `id`; the line that says what was done.
/// A message in a delivery attempt is locked by it: a flush skips it (it is
/// being attempted), another change says so on `out` and waits for the
/// attempt to end (each of its replies within `[relay] command_timeout`).
fn apply(
    queue: &Queue,
    change: Change,
    id: &QueueId,
    now: u64,
    out: &mut impl Write,
) -> Result<String, QueueError> {
    let message = match queue.try_lock_message(id) {
        Err(QueueError::Locked) if matches!(change, Change::Flush) => {
            return Ok(format!("{id}: being attempted now, not flushed"));
        }
        Err(QueueError::Locked) => {
            let _ = writeln!(
                out,
                "{id}: a delivery attempt is in progress: waiting for it to end"
            );
            let _ = out.flush();
            queue.lock_message(id)?
        }
        r => r?,
    };
    if let Change::Delete = change {
        message.remove()?;
        return Ok(format!("{id}: deleted (no DSN sent)"));
    }
    let mut env = message.envelope()?;
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
    message.update(&env)?;
    Ok(line)
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
        let line = apply(&queue, change, id, now, out).map_err(|e| not_queued(id, e))?;
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Flushes every queued message that is not on hold. A message that leaves
/// the queue while the flush goes through it (the running server delivered
/// it: the case a flush is for, a next hop that came back) is said so and
/// skipped, not an error.
///
/// # Errors
///
/// The queue cannot be listed, or a message cannot be changed.
pub fn flush_all(config: &Config, now: u64, out: &mut impl Write) -> Result<(), String> {
    let queue = open(config)?;
    let listing = queue.list().map_err(|e| e.to_string())?;
    flush_listed(&queue, &listing.messages, now, out)
}

/// [`flush_all`] over the messages `listed` a moment ago.
fn flush_listed(
    queue: &Queue,
    listed: &[Envelope],
    now: u64,
    out: &mut impl Write,
) -> Result<(), String> {
    let mut due = 0;
    for env in listed.iter().filter(|e| !e.held) {
        let id = &env.id;
        let line = match apply(queue, Change::Flush, id, now, out) {
            Ok(line) => {
                if line.ends_with("due now") {
                    due += 1;
                }
                line
            }
            Err(QueueError::NotFound(_)) => format!("{id}: left the queue meanwhile"),
            Err(e) => return Err(not_queued(id, e)),
        };
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    writeln!(
        out,
        "{due} message(s) due now: the running server attempts them at its next queue scan \
         ([relay] scan_interval)"
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
    let env = queue.envelope(&id).map_err(|e| not_queued(&id, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use mailbag_mailstore::queue::{NewEnvelope, Recipient};

    /// A re-probe: `queue flush` stopped with `no queued message …` at the
    /// first message the running server delivered while the flush went
    /// through the queue, and flushed none after it.
    #[test]
    fn a_flush_skips_messages_that_left_the_queue_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), QueueOptions::default()).unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let mut env = NewEnvelope::new("ann@example.org", 1_000);
            env.recipients = vec![Recipient::new("kim@example.com")];
            let mut w = q.enqueue(&env).unwrap();
            w.write_all(b"Subject: x\r\n\r\ny\r\n").unwrap();
            ids.push(w.commit().unwrap());
        }
        // Not due before 9,000.
        let delivery = q.lock_delivery().unwrap();
        for id in &ids {
            let mut e = q.envelope(id).unwrap();
            e.next_attempt = 9_000;
            delivery.update(&e).unwrap();
        }
        drop(delivery);
        let listed = q.list().unwrap().messages;
        // Delivered by the server meanwhile.
        q.lock_message(&ids[0]).unwrap().remove().unwrap();
        let mut out = Vec::new();
        flush_listed(&q, &listed, 5_000, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(&format!("{}: left the queue meanwhile", ids[0])),
            "{out}"
        );
        assert!(out.contains("2 message(s) due now"), "{out}");
        for id in &ids[1..] {
            assert_eq!(q.envelope(id).unwrap().next_attempt, 5_000);
        }
    }

    /// A probe's `queue flush` hung behind a delivery attempt that a slow next
    /// hop held open: a flush now skips a message being attempted, and another
    /// change says that it waits, then waits for the attempt to end.
    #[test]
    fn a_message_being_attempted_is_skipped_by_flush_and_waited_for_by_hold() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), QueueOptions::default()).unwrap();
        let mut env = NewEnvelope::new("ann@example.org", 1_000);
        env.recipients = vec![Recipient::new("kim@example.com")];
        let mut w = q.enqueue(&env).unwrap();
        w.write_all(b"Subject: x\r\n\r\ny\r\n").unwrap();
        let id = w.commit().unwrap();
        let listed = q.list().unwrap().messages;
        // The engine's lock, as a pass holds it.
        let attempt = q.try_lock_message(&id).unwrap();
        let mut out = Vec::new();
        flush_listed(&q, &listed, 5_000, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(&format!("{id}: being attempted now, not flushed")),
            "{out}"
        );
        assert!(out.contains("0 message(s) due now"), "{out}");
        let ends = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(attempt);
        });
        let mut out = Vec::new();
        let line = apply(&q, Change::Hold, &id, 5_000, &mut out).unwrap();
        ends.join().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{id}: a delivery attempt is in progress: waiting for it to end\n")
        );
        assert_eq!(line, format!("{id}: on hold"));
        assert!(q.envelope(&id).unwrap().held);
    }
}
