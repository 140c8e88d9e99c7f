//! `mailbagd queue list`: the relay queue as text or JSON, for an admin.

use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use mailbag_mailstore::queue::{
    CorruptMessage, Envelope, Queue, QueueError, QueueOptions, RecipientState,
};

use crate::config::Config;

/// `mailbagd queue list`: the messages in `[relay] queue_dir`, oldest first,
/// then the ones whose envelope cannot be read. `now` (unix seconds) is used
/// for ages and "in ..." times. A missing queue directory is an empty queue
/// (it is not created).
pub fn queue_list(
    config: &Config,
    now: u64,
    json: bool,
    out: &mut impl Write,
) -> Result<(), String> {
    let dir = &config.relay.queue_dir;
    let (messages, corrupt) = if dir.is_dir() {
        let queue = Queue::open(dir, QueueOptions::default())
            .map_err(|e| format!("cannot open the queue {}: {e}", dir.display()))?;
        let listing = queue
            .list()
            .map_err(|e| format!("cannot list the queue {}: {e}", dir.display()))?;
        (listing.messages, listing.corrupt)
    } else {
        (Vec::new(), Vec::new())
    };
    let text = if json {
        list_json(&messages, &corrupt, now)
    } else {
        list_text(&messages, &corrupt, now, dir)
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e: io::Error| format!("cannot write the listing: {e}"))
}

fn utc(t: u64) -> String {
    let st = UNIX_EPOCH + Duration::from_secs(t.min(253_402_300_799));
    humantime::format_rfc3339_seconds(st).to_string()
}

/// A rough duration: the two largest units (`2h 5m`, `3d 4h`, `45s`).
fn rough(secs: u64) -> String {
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, name) in units {
        if rest >= size && parts.len() < 2 {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        } else if !parts.is_empty() {
            break;
        }
    }
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

/// Control characters of envelope values shown escaped, so a listing line
/// cannot be forged by a reply text (nor a terminal driven by one); so are
/// bidirectional formatting characters (U+202E would show `gpj.exe` as
/// `exe.jpg`).
pub fn clean(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || mailbag_spam_tag::summary::is_bidi_format(c) {
            o.extend(c.escape_default());
        } else {
            o.push(c);
        }
    }
    o
}

fn state_text(state: &RecipientState) -> (&'static str, String) {
    let outcome = |o: &mailbag_mailstore::queue::Outcome| {
        let host = o
            .host
            .as_deref()
            .map(clean)
            .unwrap_or_else(|| "local".into());
        format!("{} {host}: {}", utc(o.at), clean(&o.reply))
    };
    match state {
        RecipientState::Pending { last: None } => ("pending", String::new()),
        RecipientState::Pending { last: Some(o) } => {
            ("pending", format!("last error {}", outcome(o)))
        }
        RecipientState::Delivered(o) => ("delivered", outcome(o)),
        RecipientState::Failed(o) => ("failed", outcome(o)),
    }
}

fn corrupt_reason(c: &CorruptMessage) -> String {
    match &c.error {
        QueueError::Corrupt { error, .. } => error.to_string(),
        other => other.to_string(),
    }
}

fn list_text(
    messages: &[Envelope],
    corrupt: &[CorruptMessage],
    now: u64,
    dir: &std::path::Path,
) -> String {
    if messages.is_empty() && corrupt.is_empty() {
        return format!("The queue is empty ({}).\n", dir.display());
    }
    let mut t = describe(messages, now);
    let pending: usize = messages
        .iter()
        .map(|m| m.recipients.iter().filter(|r| r.state.is_pending()).count())
        .sum();
    for c in corrupt {
        t.push_str(&format!(
            "{}  CORRUPT{}: {}\n",
            c.id,
            if c.quarantined { " (quarantined)" } else { "" },
            corrupt_reason(c)
        ));
    }
    t.push_str(&format!(
        "-- {} message(s), {pending} recipient(s) pending, {} unreadable\n",
        messages.len(),
        corrupt.len()
    ));
    t
}

/// Each message as `queue list` shows it: id, size, sender, arrival, the
/// next attempt (or that it is on hold), every recipient's state.
pub fn describe(messages: &[Envelope], now: u64) -> String {
    let mut t = String::new();
    for m in messages {
        let sender = if m.reverse_path.is_empty() {
            "<>".to_string()
        } else {
            format!("<{}>", clean(&m.reverse_path))
        };
        t.push_str(&format!("{}  {} octets  from {sender}\n", m.id, m.size));
        t.push_str(&format!(
            "    arrived {} ({} ago){}\n",
            utc(m.arrival),
            rough(now.saturating_sub(m.arrival)),
            m.client_ip
                .map(|ip| format!(" from client {ip}"))
                .unwrap_or_default()
        ));
        let next = if m.held {
            format!("none: on hold (mailbagd queue release {})", m.id)
        } else if m.is_complete() {
            "none (finished)".to_string()
        } else if m.is_finished() {
            format!("{} (only DSNs left to make)", utc(m.next_attempt))
        } else if m.next_attempt <= now {
            format!("{} (due now)", utc(m.next_attempt))
        } else {
            format!(
                "{} (in {})",
                utc(m.next_attempt),
                rough(m.next_attempt - now)
            )
        };
        t.push_str(&format!(
            "    attempts {}, next attempt {next}\n",
            m.attempts
        ));
        for (i, r) in m.recipients.iter().enumerate() {
            let (state, detail) = state_text(&r.state);
            t.push_str(&format!("    <{}>  {state}", clean(&r.address)));
            if !detail.is_empty() {
                t.push_str(&format!("  {detail}"));
            }
            if m.report_owed(i) {
                t.push_str("  (DSN owed)");
            }
            t.push('\n');
        }
    }
    t
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_opt(s: Option<&str>) -> String {
    s.map(json_str).unwrap_or_else(|| "null".into())
}

fn list_json(messages: &[Envelope], corrupt: &[CorruptMessage], now: u64) -> String {
    let mut items = Vec::new();
    for m in messages {
        let rcpts: Vec<String> = m
            .recipients
            .iter()
            .map(|r| {
                let (state, _) = state_text(&r.state);
                let o = r.state.outcome();
                format!(
                    "{{\"address\":{},\"state\":{},\"at\":{},\"host\":{},\"reply\":{}}}",
                    json_str(&r.address),
                    json_str(state),
                    o.map(|o| o.at.to_string()).unwrap_or_else(|| "null".into()),
                    json_opt(o.and_then(|o| o.host.as_deref())),
                    json_opt(o.map(|o| o.reply.as_str())),
                )
            })
            .collect();
        items.push(format!(
            "{{\"id\":{},\"arrival\":{},\"age\":{},\"sender\":{},\"size\":{},\"attempts\":{},\"next_attempt\":{},\"held\":{},\"recipients\":[{}]}}",
            json_str(m.id.as_str()),
            m.arrival,
            now.saturating_sub(m.arrival),
            json_str(&m.reverse_path),
            m.size,
            m.attempts,
            m.next_attempt,
            m.held,
            rcpts.join(",")
        ));
    }
    let bad: Vec<String> = corrupt
        .iter()
        .map(|c| {
            format!(
                "{{\"id\":{},\"error\":{},\"quarantined\":{}}}",
                json_str(c.id.as_str()),
                json_str(&corrupt_reason(c)),
                c.quarantined
            )
        })
        .collect();
    format!(
        "{{\"messages\":[{}],\"corrupt\":[{}]}}\n",
        items.join(","),
        bad.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rough_durations_and_escapes() {
        assert_eq!(rough(0), "0s");
        assert_eq!(rough(45), "45s");
        assert_eq!(rough(3600 + 300 + 7), "1h 5m");
        assert_eq!(rough(3 * 86400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(rough(86400 + 59), "1d");
        assert_eq!(clean("a\r\nb"), "a\\r\\nb");
        assert_eq!(clean("\u{202e}gpj.exe"), "\\u{202e}gpj.exe");
        assert_eq!(json_str("q\"\\\n\u{1}é"), "\"q\\\"\\\\\\u000a\\u0001é\"");
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
    }
}
