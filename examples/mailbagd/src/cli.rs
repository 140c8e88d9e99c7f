//! The command line of `mailbagd` and its logging set-up.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::clock::unix_now;
use crate::config::{Config, ConfigError};
use crate::context::Context;
use crate::digest::{Outcome, send_digest};
use crate::queue_admin::{self, Change};
use crate::queue_list::queue_list;
use crate::user_admin;

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
  mailbagd              run the server until SIGTERM or Ctrl-C (SIGHUP reloads)
  mailbagd queue list|show ID|flush|hold ID..|release ID..|delete ID..
                        the outbound relay queue (also while the server runs)
  mailbagd digest --now [USER]
                        send the Spam digest now (spam since the last digest)
  mailbagd user add|passwd|del|list|check ...
                        edit or check the [userdb] passwd_file (Dovecot's format)
  mailbagd pw [-s SCHEME]
                        print a password hash, like `doveadm pw` (default ARGON2ID)

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
    /// `mailbagd=debug`. Overrides `RUST_LOG`; default `info`. rustls's
    /// handshake warnings (a client sending an IP address as the TLS server
    /// name) are left out unless the filter names rustls.
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
    /// Edits or checks the passwd-file (`[userdb] passwd_file`, or `--file`).
    /// Passwords are read from the terminal without echo, or as one line
    /// from standard input. The file is rewritten atomically, comments and
    /// unknown fields kept.
    User {
        /// The passwd-file (default: `[userdb] passwd_file` of the configuration).
        #[arg(long, value_name = "PATH", global = true)]
        file: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Prints the passwd-file form of a new hash of a password, like
    /// `doveadm pw` (`{ARGON2ID}$argon2id$...`).
    Pw {
        /// The scheme: ARGON2ID (default), ARGON2I, BLF-CRYPT, SHA512-CRYPT, SHA256-CRYPT.
        #[arg(long, short = 's', default_value = "ARGON2ID")]
        scheme: String,
        /// The password (default: asked for, or one line of standard input).
        #[arg(long, short = 'p')]
        password: Option<String>,
    },
}

/// `mailbagd user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Adds a user with a new password.
    Add {
        /// The mailbox name.
        name: String,
        /// The hash scheme (default ARGON2ID).
        #[arg(long, short = 's', default_value = "ARGON2ID")]
        scheme: String,
    },
    /// Sets a user's password.
    Passwd {
        /// The mailbox name.
        name: String,
        /// The hash scheme (default ARGON2ID).
        #[arg(long, short = 's', default_value = "ARGON2ID")]
        scheme: String,
    },
    /// Removes a user (the Maildir stays).
    Del {
        /// The mailbox name.
        name: String,
    },
    /// Lists the users and their schemes, and every bad line.
    List,
    /// Checks a password: exit status 0 when it is right, 1 when not.
    Check {
        /// The mailbox name.
        name: String,
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
    /// Shows one message: its envelope and its header section.
    Show {
        /// The queue id, as `queue list` shows it.
        id: String,
        /// The whole message, not only its header section.
        #[arg(long)]
        body: bool,
    },
    /// Makes every message that is not on hold due now: the running server
    /// attempts them at its next queue scan (`[relay] scan_interval`).
    Flush,
    /// Puts messages on hold: never attempted, no DSN, until released.
    Hold {
        /// Queue ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Takes messages off hold, due now.
    Release {
        /// Queue ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Removes messages from the queue without a DSN.
    Delete {
        /// Queue ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

impl Cli {
    /// Loads the configuration named by `--config`, or the embedded one, as
    /// the server starts with it: bad passwd-file lines are left out and
    /// listed (each with its line number), as a reload leaves them out, so
    /// that one bad line does not keep every other user from their mail
    /// after a restart. `--check` refuses them ([`check_passwd_lines`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for anything else wrong.
    pub fn load_config(&self) -> Result<(Config, Vec<String>), ConfigError> {
        match &self.config {
            Some(p) => Config::load_skipping(p),
            None => Config::demo().map(|c| (c, Vec::new())),
        }
    }
}

/// `--check` and start-up: why the `[tls]` certificate and key do not load as the
/// server loads them (a probe's `--check` said "configuration OK" for a key of
/// another certificate, which the start then refused).
pub fn check_tls(config: &Config) -> Option<String> {
    let tls = config.tls.as_ref()?;
    crate::tls::load_acceptor(&tls.cert_file, &tls.key_file)
        .err()
        .map(|e| e.to_string())
}

/// `--check`: the bad passwd-file lines a server would leave out, as one
/// message (`None` when there are none), naming at most the first 20.
pub fn check_passwd_lines(skipped: &[String]) -> Option<String> {
    if skipped.is_empty() {
        return None;
    }
    let mut text = format!(
        "{} bad passwd-file line(s); a running server leaves them out:",
        skipped.len()
    );
    for line in skipped.iter().take(20) {
        text.push_str("\n  ");
        text.push_str(line);
    }
    if skipped.len() > 20 {
        text.push_str(&format!("\n  ... and {} more", skipped.len() - 20));
    }
    Some(text)
}

/// The passwd-file a `user` command works on: `--file`, else the
/// configuration's `[userdb] passwd_file` (read from the TOML alone, so
/// that a passwd-file with a bad line can still be repaired).
///
/// # Errors
///
/// A message when neither names one.
pub fn passwd_file_of(cli: &Cli, file: Option<&PathBuf>) -> Result<PathBuf, String> {
    if let Some(f) = file {
        return Ok(f.clone());
    }
    let Some(config) = &cli.config else {
        return Err(
            "no passwd-file: pass --file PATH or --config with a [userdb] passwd_file".into(),
        );
    };
    let text = std::fs::read_to_string(config)
        .map_err(|e| format!("cannot read {}: {e}", config.display()))?;
    let value: toml::Table = toml::from_str(&text).map_err(|e| e.to_string())?;
    value
        .get("userdb")
        .and_then(|u| u.get("passwd_file"))
        .and_then(|p| p.as_str())
        .map(PathBuf::from)
        .ok_or_else(|| {
            format!(
                "{} has no [userdb] passwd_file; pass --file PATH",
                config.display()
            )
        })
}

/// `[server] user` and `group` of the `--config` file, read from the TOML
/// alone; `None` without a configuration or a user.
fn server_user_of(cli: &Cli) -> Option<(String, Option<String>)> {
    let text = std::fs::read_to_string(cli.config.as_deref()?).ok()?;
    let value: toml::Table = toml::from_str(&text).ok()?;
    let server = value.get("server")?;
    let user = server.get("user")?.as_str()?.to_owned();
    let group = server
        .get("group")
        .and_then(|g| g.as_str())
        .map(str::to_owned);
    Some((user, group))
}

/// The password of `pw`, `user add|passwd|check`: `given`, else asked for
/// on the terminal without echo (twice for a new one), else one line of
/// standard input.
///
/// # Errors
///
/// A read error, an empty password, or two that differ.
pub fn read_password(given: Option<&str>, new: bool) -> Result<String, String> {
    if let Some(p) = given {
        if p.is_empty() {
            return Err("empty password".into());
        }
        return Ok(p.to_owned());
    }
    let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let first = rpassword::prompt_password(if new { "New password: " } else { "Password: " })
            .map_err(|e| e.to_string())?;
        if new {
            let again =
                rpassword::prompt_password("Retype new password: ").map_err(|e| e.to_string())?;
            if again != first {
                return Err("the passwords differ".into());
            }
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        return Err("empty password".into());
    }
    Ok(password)
}

/// Runs `mailbagd pw` or `mailbagd user ...`, which need no valid
/// configuration. `Ok(None)`: not one of them. `Ok(Some(false))`: a `user
/// check` whose password is wrong.
///
/// # Errors
///
/// A message for stderr.
pub fn run_user_command(cli: &Cli, out: &mut impl Write) -> Result<Option<bool>, String> {
    let io = |e: std::io::Error| e.to_string();
    match &cli.command {
        Some(Command::Pw { scheme, password }) => {
            let scheme = user_admin::scheme(scheme)?;
            let password = read_password(password.as_deref(), true)?;
            writeln!(out, "{}", user_admin::pw(scheme, &password)?).map_err(io)?;
            Ok(Some(true))
        }
        Some(Command::User { file, action }) => {
            let path = passwd_file_of(cli, file.as_ref())?;
            match action {
                UserCommand::Add { name, scheme } => {
                    // With a configuration the server would start with,
                    // refuse what it would then refuse: a name it has
                    // already (in [[users]] too), or one it keeps files at.
                    let config = cli
                        .config
                        .as_deref()
                        .and_then(|c| Config::load_skipping(c).ok())
                        .map(|(c, _)| c);
                    if let Some(why) = config.as_ref().and_then(|c| c.refuses_new_user(name)) {
                        return Err(format!("{name:?}: {why}"));
                    }
                    let scheme = user_admin::scheme(scheme)?;
                    let new_file = !path.exists();
                    user_admin::add(&path, name, scheme, &read_password(None, true)?)?;
                    // A file made by root for a server that gives root up is the server's
                    // (read from the TOML alone: without the file the configuration
                    // does not load).
                    if new_file
                        && nix::unistd::geteuid().is_root()
                        && let Some((user, group)) = server_user_of(cli)
                    {
                        let (uid, gid) = crate::privileges::ids_of(&user, group.as_deref())
                            .map_err(|e| e.to_string())?;
                        std::os::unix::fs::chown(&path, Some(uid.as_raw()), Some(gid.as_raw()))
                            .map_err(|e| format!("chown {}: {e}", path.display()))?;
                    }
                    writeln!(out, "{name}: added to {}", path.display()).map_err(io)?;
                }
                UserCommand::Passwd { name, scheme } => {
                    let scheme = user_admin::scheme(scheme)?;
                    user_admin::passwd(&path, name, scheme, &read_password(None, true)?)?;
                    writeln!(out, "{name}: password changed").map_err(io)?;
                }
                UserCommand::Del { name } => {
                    user_admin::delete(&path, name)?;
                    writeln!(out, "{name}: removed from {}", path.display()).map_err(io)?;
                }
                UserCommand::List => {
                    // The configuration's own passwd-file, as a reload takes
                    // it: its reserved names and [[users]] clashes count.
                    let configured = cli
                        .config
                        .as_deref()
                        .filter(|_| file.is_none())
                        .and_then(|c| Config::load_skipping(c).ok());
                    match configured {
                        Some((config, bad)) => user_admin::list_users(
                            config.users.iter().filter(|u| u.passwd_file_line.is_some()),
                            &bad,
                            out,
                        )?,
                        None => user_admin::list(&path, out)?,
                    }
                }
                UserCommand::Check { name } => {
                    let ok = user_admin::check(&path, name, &read_password(None, false)?)?;
                    writeln!(
                        out,
                        "{name}: {}",
                        if ok { "password OK" } else { "wrong password" }
                    )
                    .map_err(io)?;
                    return Ok(Some(ok));
                }
            }
            Ok(Some(true))
        }
        _ => Ok(None),
    }
}

/// Runs an administration command; `Err` is a message for stderr (exit code 1).
///
/// Run as root with `[server] user` set, it first becomes that user, as the
/// server does: every file it writes (a queue envelope, a digest, an index)
/// stays the server's, which runs as that user and must read them (a probe's
/// `queue hold` as root left an envelope the server could not read).
pub fn run_command(command: &Command, config: &Config, out: &mut impl Write) -> Result<(), String> {
    if let Some(user) = &config.server.user {
        crate::privileges::drop_to(user, config.server.group.as_deref())
            .map_err(|e| e.to_string())?;
    }
    let now = unix_now();
    match command {
        Command::Queue { action } => match action {
            QueueCommand::List { json } => queue_list(config, now, *json, out),
            QueueCommand::Show { id, body } => queue_admin::show(config, id, *body, now, out),
            QueueCommand::Flush => queue_admin::flush_all(config, now, out),
            QueueCommand::Hold { ids } => queue_admin::change(config, Change::Hold, ids, now, out),
            QueueCommand::Release { ids } => {
                queue_admin::change(config, Change::Release, ids, now, out)
            }
            QueueCommand::Delete { ids } => {
                queue_admin::change(config, Change::Delete, ids, now, out)
            }
        },
        Command::Digest { user, .. } => digest_now(config, user.as_deref(), out),
        Command::User { .. } | Command::Pw { .. } => {
            Err("`user` and `pw` run before the configuration is loaded".into())
        }
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
    // No TLS: a digest is delivered to the store, and the key is often readable by
    // the server alone (a probe's `digest --now` failed on it where `queue list` ran).
    let ctx = Context::open_with_tls(config.clone(), None).map_err(|e| e.to_string())?;
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

/// What rustls says of a client's own habit at `warn` (every client that
/// sends an IP address as its TLS server name: fetchmail, mpop and others
/// set up with an address), one line per connection. Kept to its errors
/// unless the filter names rustls itself.
const RUSTLS_QUIET: &str = "rustls::msgs::handshake=error";

/// The log filter for `spec` (`--log` or `RUST_LOG`; default `info`), with
/// [`RUSTLS_QUIET`] added when `spec` does not name rustls.
fn log_filter(spec: Option<&str>) -> String {
    let spec = spec.map_or("info", str::trim);
    if spec.contains("rustls") {
        spec.to_owned()
    } else if spec.is_empty() {
        format!("info,{RUSTLS_QUIET}")
    } else {
        format!("{spec},{RUSTLS_QUIET}")
    }
}

/// Logs to stderr. Log lines of a connection carry its id, role and
/// client address; passwords are never logged.
pub fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let spec = cli
        .log
        .clone()
        .or_else(|| std::env::var(EnvFilter::DEFAULT_ENV).ok());
    let filter = EnvFilter::try_new(log_filter(spec.as_deref()))
        .unwrap_or_else(|_| EnvFilter::new(log_filter(None)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_filter_keeps_rustls_to_its_errors_unless_named() {
        assert_eq!(log_filter(None), "info,rustls::msgs::handshake=error");
        assert_eq!(log_filter(Some("")), "info,rustls::msgs::handshake=error");
        assert_eq!(
            log_filter(Some("mailbagd=debug")),
            "mailbagd=debug,rustls::msgs::handshake=error"
        );
        assert_eq!(log_filter(Some("debug,rustls=trace")), "debug,rustls=trace");
        for spec in [None, Some("debug"), Some("warn,mailbagd=info")] {
            assert!(tracing_subscriber::EnvFilter::try_new(log_filter(spec)).is_ok());
        }
    }

    #[test]
    fn check_names_twenty_bad_lines_and_counts_the_rest() {
        assert_eq!(check_passwd_lines(&[]), None);
        let lines: Vec<String> = (1..=23).map(|n| format!("f: line {n}: bad")).collect();
        let text = check_passwd_lines(&lines).unwrap();
        assert!(text.starts_with("23 bad passwd-file line(s)"), "{text}");
        assert!(
            text.contains("line 20: bad") && !text.contains("line 21: bad"),
            "{text}"
        );
        assert!(text.ends_with("... and 3 more"), "{text}");
    }
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
        assert!(c.load_config().is_ok_and(|(_, skipped)| skipped.is_empty()));
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
        assert!(Cli::try_parse_from(["mailbagd", "queue", "hold"]).is_err());
        assert!(Cli::try_parse_from(["mailbagd", "queue", "flush"]).is_ok());
    }
}
