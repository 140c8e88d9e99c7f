//! The command line of `mailbagd` and its logging set-up.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::clock::unix_now;
use crate::config::{Config, ConfigError};
use crate::context::Context;
use crate::digest::{Outcome, send_digest};
use crate::queue_list::queue_list;

/// What `mailbagd --help` says before the options.
const ABOUT: &str = "mailbagd: an ISP mail server. POP3 retrieval (STLS, implicit TLS), \
SMTP for local mail and relay authorized by POP-before-SMTP (no SMTP AUTH), \
submission, per-user spam filtering into INBOX or a Spam folder, Maildir storage, \
an outbound queue with retries and bounces, and a self-service web page.";

/// What `mailbagd --help` says after the options.
const AFTER_HELP: &str = "\
Without --config, mailbagd serves the embedded demo configuration \
(examples/mailbagd/mailbag.toml): POP3 127.0.0.1:1110, SMTP 127.0.0.1:2525, \
submission 127.0.0.1:5870, web page http://127.0.0.1:8080, user joe with password \
secret at example.test, mail kept in ./mailbag-data. No root and no setup needed.

What it does:
  mailbagd              run the server until SIGTERM or Ctrl-C (SIGHUP is ignored)
  mailbagd queue list   list the outbound relay queue (also while the server runs)
  mailbagd digest --now [USER]
                        send the Spam digest now (spam since the last digest)

Manual: examples/mailbagd/README.md";

/// `mailbagd`: the Mailbag mail server.
///
/// Without `--config` it runs on the embedded demo configuration
/// (`examples/mailbagd/mailbag.toml`: loopback ports 1110, 2525 and 5870, data in
/// `./mailbag-data`, user `joe` with password `secret` at `example.test`).
#[derive(Debug, Parser)]
#[command(name = "mailbagd", version, about = ABOUT, long_about = None, after_help = AFTER_HELP)]
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
    /// Sends the Spam digest now (spam since the last digest), whether or
    /// not `[spam] digest_interval` has passed.
    Digest {
        /// Required: send now.
        #[arg(long, required = true)]
        now: bool,
        /// Only this user (default: every user whose spam goes to the Spam folder).
        user: Option<String>,
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
    let now = unix_now();
    match command {
        Command::Queue {
            action: QueueCommand::List { json },
        } => queue_list(config, now, *json, out),
        Command::Digest { user, .. } => digest_now(config, user.as_deref(), out),
    }
}

/// `mailbagd digest --now [USER]`: one line per user.
fn digest_now(config: &Config, user: Option<&str>, out: &mut impl Write) -> Result<(), String> {
    let users: Vec<&crate::config::User> = match user {
        Some(name) => vec![
            config
                .user(name)
                .ok_or_else(|| format!("no user {name:?} in the configuration"))?,
        ],
        None => config.users.iter().collect(),
    };
    let ctx = Context::open(config.clone()).map_err(|e| e.to_string())?;
    let mut failed = false;
    for u in users {
        let line = match send_digest(&ctx, u, std::time::SystemTime::now(), true) {
            Ok(Outcome::Sent(n)) => format!("{}: digest of {n} message(s) sent", u.name),
            Ok(Outcome::NothingNew) => format!("{}: no new spam since the last digest", u.name),
            Ok(Outcome::SpamInInbox) => format!("{}: spam goes to the INBOX, no digest", u.name),
            Ok(Outcome::NotDue) => format!("{}: not due", u.name),
            Err(e) => {
                failed = true;
                format!("{}: digest failed: {e}", u.name)
            }
        };
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    if failed {
        Err("some digests failed".to_owned())
    } else {
        Ok(())
    }
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
}
