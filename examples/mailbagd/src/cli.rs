//! Command line, logging set-up and the shutdown signal of `mailbagd`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use mailbag_mailstore::queue::{
    CorruptMessage, Envelope, Queue, QueueError, QueueOptions, RecipientState,
};

use crate::config::{Config, ConfigError};

/// `mailbagd`: POP3 + SMTP mail server built from the Mailbag crates.
///
/// Without `--config` it runs on the embedded demo configuration
/// (`examples/mailbagd/mailbag.toml`: loopback ports 1110, 2525 and 5870, data in
/// `./mailbag-data`, user `joe` with password `secret` at `example.test`).
#[derive(Debug, Parser)]
#[command(name = "mailbagd", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file (default: the embedded demo configuration).
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Validate the configuration and exit.
    #[arg(long)]
    pub check: bool,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `debug` or
    /// `mailbagd=debug`. Overrides `RUST_LOG`; default `info`.
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,

    /// An administration command instead of running the server.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Administration commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The outbound relay queue (`[relay] queue_dir`).
    Queue {
        /// What to do with the queue.
        #[command(subcommand)]
        action: QueueCommand,
    },
}

/// `mailbagd queue ...`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Lists every queued message with its recipients, attempts and last
    /// error. Works while the server runs (takes no lock).
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    /// Loads the configuration named by `--config`, or the embedded one.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        match &self.config {
            Some(p) => Config::load(p),
            None => Config::demo(),
        }
    }
}

/// Runs an administration command; `Err` is a message for stderr (exit code 1).
pub fn run_command(command: &Command, config: &Config, out: &mut impl Write) -> Result<(), String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match command {
        Command::Queue {
            action: QueueCommand::List { json },
        } => queue_list(config, now, *json, out),
    }
}

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
/// cannot be forged by a reply text.
fn clean(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
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
    let mut t = String::new();
    if messages.is_empty() && corrupt.is_empty() {
        t.push_str(&format!("The queue is empty ({}).\n", dir.display()));
        return t;
    }
    let mut pending = 0;
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
        let next = if m.is_complete() {
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
            if r.state.is_pending() {
                pending += 1;
            }
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
            "{{\"id\":{},\"arrival\":{},\"age\":{},\"sender\":{},\"size\":{},\"attempts\":{},\"next_attempt\":{},\"recipients\":[{}]}}",
            json_str(m.id.as_str()),
            m.arrival,
            now.saturating_sub(m.arrival),
            json_str(&m.reverse_path),
            m.size,
            m.attempts,
            m.next_attempt,
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

/// Logs to stderr. Log lines of a connection carry its id, role and
/// client address; passwords are never logged.
pub fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let filter = match &cli.log {
        Some(f) => EnvFilter::try_new(f).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_config_flag() {
        let c = Cli::try_parse_from(["mailbagd", "--config", "x.toml"]).unwrap();
        assert_eq!(c.config, Some(PathBuf::from("x.toml")));
        let c = Cli::try_parse_from(["mailbagd"]).unwrap();
        assert!(c.config.is_none());
        assert!(c.load_config().is_ok());
        assert!(Cli::try_parse_from(["mailbagd", "--bogus"]).is_err());
    }

    #[test]
    fn parses_queue_list() {
        let c = Cli::try_parse_from(["mailbagd", "queue", "list", "--config", "x.toml", "--json"])
            .unwrap();
        assert_eq!(c.config, Some(PathBuf::from("x.toml")));
        assert!(matches!(
            c.command,
            Some(Command::Queue {
                action: QueueCommand::List { json: true }
            })
        ));
        assert!(Cli::try_parse_from(["mailbagd", "queue"]).is_err());
        assert!(Cli::try_parse_from(["mailbagd", "queue", "flush"]).is_err());
    }

    #[test]
    fn rough_durations_and_escapes() {
        assert_eq!(rough(0), "0s");
        assert_eq!(rough(45), "45s");
        assert_eq!(rough(3600 + 300 + 7), "1h 5m");
        assert_eq!(rough(3 * 86400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(rough(86400 + 59), "1d");
        assert_eq!(clean("a\r\nb"), "a\\r\\nb");
        assert_eq!(json_str("q\"\\\n\u{1}é"), "\"q\\\"\\\\\\u000a\\u0001é\"");
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
    }
}
