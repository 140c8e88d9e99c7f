//! The `mailbagd` configuration: TOML types, defaults and validation.
//!
//! [`Config::from_toml_str`] parses a TOML document and validates it; every
//! problem comes back as a [`ConfigError`] whose message names the key (and,
//! for syntax and type errors, the line). Unknown keys are rejected.
//!
//! Relative paths (`data_dir`, `relay.queue_dir`, `tls.cert_file`,
//! `tls.key_file`) are taken relative to the working directory of the
//! process, so that the embedded demo configuration keeps its data in
//! `./mailbag-data`.
//!
//! # Examples
//!
//! ```
//! use mailbagd::config::{Config, SpamFolder};
//!
//! let config = Config::from_toml_str(
//!     r#"
//!     hostname = "mail.example.test"
//!     local_domains = ["example.test"]
//!     [[users]]
//!     name = "joe"
//!     password = "secret"
//!     spam_folder = "INBOX"
//!     "#,
//! )
//! .unwrap();
//! assert_eq!(config.users[0].spam_folder, SpamFolder::Inbox);
//! assert_eq!(config.pop3.listen, vec!["127.0.0.1:1110".parse().unwrap()]);
//! assert_eq!(config.spam.spam_retention.as_secs(), 7 * 24 * 3600);
//!
//! // An unknown key is an error that names the key.
//! let err = Config::from_toml_str("colour = 1\n[[users]]\nname = \"a\"\npassword = \"b\"\n")
//!     .unwrap_err();
//! assert!(err.to_string().contains("colour"));
//! ```

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailbag_mailstore::{UidlFormat, UserName};
use mailbag_smtp_proto::address::{Domain, LocalPart};
use mailbag_smtp_proto::data::BareLfPolicy;
use serde::Deserialize;

use crate::client_endpoint::{Endpoint, Security};
use crate::limits::{ConnectionClass, DefaultedRoles, MaxConnections, PerRole};
use crate::login_limiter::failure_delay;

pub use crate::credentials::{Credential, HashCost, PasswordHash, Secret};

/// The demo configuration shipped as `examples/mailbagd/mailbag.toml`; `mailbagd`
/// runs on it when started without `--config`.
pub const DEMO_CONFIG: &str = include_str!("../mailbag.toml");

/// A configuration problem, with a message meant for the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key, wrong type, bad address or duration.
    #[error("invalid config: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value that parses but is not acceptable.
    #[error("invalid config: {key}: {message}")]
    Invalid {
        /// The dotted key path, e.g. `users[1].name`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Most messages per Spam folder page (`web.page_size`).
pub const MAX_PAGE_SIZE: usize = 1000;

fn web_config(raw: RawWeb, login: &LoginConfig, data_dir: &Path) -> Result<WebConfig, ConfigError> {
    // The web page's own rate limit gave way to the one login limiter.
    for (key, set, instead) in [
        (
            "web.login_attempts_per_ip",
            raw.login_attempts_per_ip.is_some(),
            "login.failures_before_lockout",
        ),
        (
            "web.login_window",
            raw.login_window.is_some(),
            "login.lockout",
        ),
        (
            "web.max_tracked_addresses",
            raw.max_tracked_addresses.is_some(),
            "login.max_tracked",
        ),
    ] {
        if set {
            return Err(invalid(
                key,
                format!("replaced by `{instead}` (one login limiter for POP3 and the web page)"),
            ));
        }
    }
    let listen = raw
        .listen
        .unwrap_or_else(|| vec![SocketAddr::from(([127, 0, 0, 1], 8080))]);
    let tls = raw.tls.unwrap_or(false);
    let public_url = match raw.public_url {
        Some(u) => Some({
            let u = u.trim_end_matches('/').to_owned();
            let scheme_ok = u.starts_with("http://") || u.starts_with("https://");
            if !scheme_ok || u.len() > 200 || u.chars().any(|c| !c.is_ascii_graphic()) {
                return Err(invalid(
                    "web.public_url",
                    "must be an http:// or https:// URL without spaces",
                ));
            }
            u
        }),
        None => None,
    };
    let web = WebConfig {
        listen,
        tls,
        secret_file: raw
            .secret_file
            .unwrap_or_else(|| data_dir.join("mailbag-web-secret")),
        public_url,
        session_idle_timeout: nonzero(
            "web.session_idle_timeout",
            raw.session_idle_timeout,
            Duration::from_secs(30 * 60),
        )?,
        session_lifetime: nonzero(
            "web.session_lifetime",
            raw.session_lifetime,
            Duration::from_secs(12 * 3600),
        )?,
        max_sessions: raw.max_sessions.unwrap_or(10_000),
        max_sessions_per_user: raw.max_sessions_per_user.unwrap_or(20),
        login_failure_delay: raw
            .login_failure_delay
            .map(|d| d.0)
            .unwrap_or(login.failure_delay),
        page_size: raw.page_size.unwrap_or(50),
        max_header_read: raw.max_header_read.unwrap_or(64 * 1024),
        max_request_body: raw.max_request_body.unwrap_or(16 * 1024),
        max_request_head: raw.max_request_head.unwrap_or(64 * 1024),
        request_timeout: nonzero(
            "web.request_timeout",
            raw.request_timeout,
            Duration::from_secs(30),
        )?,
    };
    for (key, value) in [
        ("web.max_sessions", web.max_sessions),
        ("web.max_sessions_per_user", web.max_sessions_per_user),
        ("web.page_size", web.page_size),
        ("web.max_header_read", web.max_header_read),
        ("web.max_request_body", web.max_request_body),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be greater than zero"));
        }
    }
    if web.page_size > MAX_PAGE_SIZE {
        return Err(invalid("web.page_size", "must be at most 1000"));
    }
    if !(8192..=1024 * 1024).contains(&web.max_request_head) {
        return Err(invalid(
            "web.max_request_head",
            "must be between 8192 and 1048576",
        ));
    }
    let longest = failure_delay(web.login_failure_delay, login.failures_before_lockout);
    if longest >= web.request_timeout {
        return Err(invalid(
            "web.login_failure_delay",
            format!(
                "times login.failures_before_lockout ({longest:?}, the longest delay) must be \
                 shorter than web.request_timeout"
            ),
        ));
    }
    if web.max_request_body < 1024 {
        return Err(invalid("web.max_request_body", "must be at least 1024"));
    }
    Ok(web)
}

// ---------------------------------------------------------------------------
// `[login]`: the one login limiter of POP3 and the web page.

/// `[login]`: failed logins counted per client address (IPv6: per /64) and
/// per user name, for POP3 and the web page together (see
/// [`crate::login_limiter`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LoginConfig {
    /// Failed logins of one client address, or of one user name, before it
    /// is locked out (default 5).
    pub failures_before_lockout: u32,
    /// How long a lock-out lasts, and how long a failure is remembered
    /// (default 15 minutes).
    pub lockout: Duration,
    /// Base of the growing delay before a failed login is answered: the
    /// `n`-th failure waits `n` times it (default 1 second; `"0s"`: none);
    /// `pop3.auth_failure_delay` and `web.login_failure_delay` override it
    /// per service.
    pub failure_delay: Duration,
    /// Records (client addresses and user names) kept at once; the one
    /// whose last failure is oldest is forgotten to make room (default 100000).
    pub max_tracked: usize,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    failures_before_lockout: Option<u32>,
    lockout: Option<HumanDuration>,
    failure_delay: Option<HumanDuration>,
    max_tracked: Option<usize>,
}

fn login_config(raw: RawLogin) -> Result<LoginConfig, ConfigError> {
    let login = LoginConfig {
        failures_before_lockout: raw.failures_before_lockout.unwrap_or(5),
        lockout: nonzero("login.lockout", raw.lockout, Duration::from_secs(15 * 60))?,
        failure_delay: raw
            .failure_delay
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(1)),
        max_tracked: raw.max_tracked.unwrap_or(100_000),
    };
    if login.failures_before_lockout == 0 {
        return Err(invalid(
            "login.failures_before_lockout",
            "must be greater than zero",
        ));
    }
    if login.max_tracked < 2 {
        return Err(invalid("login.max_tracked", "must be at least 2"));
    }
    Ok(login)
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Default of `[limits] write_timeout`.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// A duration written in humantime syntax (`"30m"`, `"7d"`, `"1h 30m"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

/// Where a user's spam goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
pub enum SpamFolder {
    /// The Maildir++ `.Spam` folder, invisible to POP3 (the default).
    #[default]
    Spam,
    /// The INBOX, tagged in the Subject.
    #[serde(rename = "INBOX")]
    Inbox,
}

/// One mail user.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct User {
    /// POP3 user name and local part of the user's address at every local domain.
    pub name: UserName,
    /// Password check.
    pub credential: Credential,
    /// Score incoming mail (default true).
    pub spam_scanning: bool,
    /// Tag the Subject of spam (default true).
    pub subject_prefix: bool,
    /// Where spam goes (default `Spam`).
    pub spam_folder: SpamFolder,
    /// The line of `[userdb] passwd_file` the user comes from (`None`: a
    /// `[[users]]` entry). Such a user's Maildir is made on first use.
    pub passwd_file_line: Option<usize>,
    /// The user's own quota in octets over INBOX and Spam (the passwd-file's
    /// `quota=1G`, a `[[users]]` entry's `quota = "1G"`), over
    /// `[limits] user_quota`; `Some(0)` is no quota. [`Config::quota_of`]
    /// gives the one that applies.
    pub quota: Option<u64>,
    /// Dovecot's `nologin` extra field (`nologin=y`, usually with `reason=`):
    /// the user cannot log in (POP3, the web page), and so cannot authorize
    /// relay; mail is still delivered, as with Dovecot.
    pub nologin: bool,
    /// Dovecot's `allow_nets` extra field (`allow_nets=10.0.0.0/8,::1`): the
    /// user logs in only from these networks; empty: from anywhere.
    pub allow_nets: Vec<crate::proxy::Cidr>,
}

impl User {
    /// Whether the user may log in from `ip` (`nologin`, `allow_nets`),
    /// asked once the password matched.
    pub fn may_log_in_from(&self, ip: std::net::IpAddr) -> bool {
        !self.nologin
            && (self.allow_nets.is_empty() || self.allow_nets.iter().any(|n| n.contains(ip)))
    }
}

/// `[pop3]`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Pop3Config {
    /// Plain listeners with STLS when `[tls]` is set (default `["127.0.0.1:1110"]`).
    pub listen: Vec<SocketAddr>,
    /// Implicit-TLS listeners (port-995 role; default none; needs `[tls]`).
    pub tls_listen: Vec<SocketAddr>,
    /// Refuse USER/PASS and plaintext SASL before STLS (default false).
    pub require_tls_for_login: bool,
    /// Autologout timer: close an idle connection after this long
    /// (default 10 minutes, the RFC 1939 minimum).
    pub idle_timeout: Duration,
    /// Delay before answering a failed POP3 login, per failure counted by
    /// the login limiter (the `n`-th failure waits `n` times it; a locked-out
    /// client waits the longest); default `login.failure_delay`, `"0s"`: none.
    pub auth_failure_delay: Duration,
    /// A login name ending in this opens the user's Spam folder as the
    /// maildrop instead of the INBOX (`joe/Spam`; default `"/Spam"`, matched
    /// in any letter case; `""` turns it off). Starts with `/`, which no
    /// user name contains.
    pub spam_login_suffix: String,
    /// How POP3 unique ids are made (Dovecot's `pop3_uidl_format`; default
    /// `"%08Xu%08Xv"`, Dovecot's): the form of the server these Maildirs come
    /// from, so that clients leaving mail on the server fetch nothing twice
    /// ([`UidlFormat`]). Read at start-up.
    pub uidl_format: UidlFormat,
    /// After this many erroneous commands in a session (unknown, malformed,
    /// out of state) the session answers `-ERR` and closes (default 10).
    pub max_errors: u32,
}

/// `[userdb]`: how login names find users.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct UserdbConfig {
    /// Mailbox names compare case-insensitively at login and in recipient
    /// addresses (default true; the Maildir keeps the configured spelling).
    /// Names must be unique ignoring case either way.
    pub case_insensitive: bool,
    /// A Dovecot passwd-file with more users ([`crate::passwd_file`];
    /// default none). Its users and `[[users]]` are one list: a name in
    /// both is an error naming the line. Extra fields `spam_scanning=yes|no`,
    /// `subject_prefix=yes|no` and `spam_folder=INBOX|Spam` set the user's
    /// defaults (the self-service page's settings still win); other extra
    /// fields are kept in the file and ignored.
    pub passwd_file: Option<PathBuf>,
    /// How often the running server looks at the passwd-file's modification
    /// time, size and inode, re-reading it when one changed and the look
    /// before saw it the same (default 5 seconds): `mailbagd user add` takes
    /// effect without a signal, and a file being written is not read half
    /// written.
    pub check_interval: Duration,
}

/// `[server]`: the process itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The user to serve as (default none: stay who started it). Started as
    /// root, mailbagd binds its ports and loads the TLS key, then becomes
    /// this user (and [`ServerConfig::group`], else the user's primary
    /// group, with no supplementary groups) before it opens the mail store;
    /// if that fails it does not serve. The data and queue directories must
    /// belong to this user. Started as another user, it stays that user
    /// (with a warning unless it is this one).
    pub user: Option<String>,
    /// The group to serve as (default: `user`'s primary group).
    pub group: Option<String>,
}

/// `[cluster]`: several mailbagd hosts as one service.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// A Redis URL (`redis://HOST:PORT/DB`; default none: the
    /// POP-before-SMTP table stays in this process's memory). Every host
    /// naming the same Redis shares one table: a POP3 login on any host
    /// authorizes relay on all of them. A relay check that cannot read it
    /// answers `451 4.3.0` (never a relay without a proof); a login still
    /// succeeds (its record is retried and logged).
    pub redis: Option<String>,
    /// Time allowed for each Redis command, connecting included (default 1
    /// second).
    pub redis_timeout: Duration,
    /// How long a POP3 maildrop lock outlives a host that died (default 60
    /// seconds): the stale timeout of the maildrop's lock file, and with
    /// `redis` the length of its lease there; both are renewed every third
    /// of it while the session lives.
    pub lock_lease: Duration,
    /// How often the server asks Redis `PING` while no client uses it, so
    /// that the `redis_up` metric follows Redis (default 10 seconds).
    pub ping_interval: Duration,
}

/// `[proxy]`: mailbagd behind TCP load balancers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// The balancers' addresses or networks (CIDR; default none). A
    /// connection from one of them must start with a PROXY protocol header
    /// (version 1 or 2) and is served as coming from the client address it
    /// carries: limits, relay authorization, logs, `Received:`. Such an
    /// address itself is never authorized to relay. Connections from
    /// elsewhere are served as they are (a PROXY header from them is no
    /// protocol command and is refused as such).
    pub trusted_networks: Vec<crate::proxy::Cidr>,
    /// How long a trusted connection may take to send its header (default
    /// 5 seconds); then it is closed.
    pub header_timeout: Duration,
}

impl ProxyConfig {
    /// Whether `ip` is a trusted balancer's.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_networks.iter().any(|n| n.contains(ip))
    }
}

/// `[client_settings]`: what the help page and the autoconfiguration
/// documents (Thunderbird, Outlook, Apple) tell mail clients, when that is
/// not this host's own name and listeners: several hosts behind a load
/// balancer, whose name and ports clients must use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientSettingsConfig {
    /// The server name clients connect to (default: `hostname`).
    pub server: Option<Domain<'static>>,
    /// POP3 ports, best first (default: from `[pop3]`'s listeners).
    pub pop3: Option<Vec<Endpoint>>,
    /// SMTP ports for sending, best first (default: from `[smtp]`'s listeners).
    pub smtp: Option<Vec<Endpoint>>,
}

/// `[metrics]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Where `/metrics` (OpenMetrics text format) and `/health` are served
    /// over plain HTTP: one address or a list (default none: off, e.g.
    /// `"127.0.0.1:9187"`). The labels name roles, services and reply
    /// codes, never a user or an address.
    pub listen: Vec<SocketAddr>,
}

/// `[smtp]`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SmtpConfig {
    /// Port-25-role listeners (default `["127.0.0.1:2525"]`).
    pub listen: Vec<SocketAddr>,
    /// Submission (port-587 role) listeners (default `["127.0.0.1:5870"]`).
    pub submission_listen: Vec<SocketAddr>,
    /// Implicit-TLS submission listeners (port-465 role; default none; needs `[tls]`).
    pub tls_listen: Vec<SocketAddr>,
    /// Largest message accepted, in octets (default 26214400 = 25 MiB).
    pub max_message_size: u64,
    /// Most recipients per message (default 100).
    pub max_recipients: usize,
    /// Close a connection idle for this long (default 5 minutes).
    pub idle_timeout: Duration,
    /// What happens to a bare CR or bare LF in a message, DATA or BDAT alike
    /// (`bare_line_endings`: `"normalize"`, the default, stores and relays it as CRLF;
    /// `"reject"` refuses the message with `550 5.6.0`). Never stored or relayed as sent.
    pub bare_line_endings: BareLfPolicy,
    /// A message with more `Received:` fields than this is a mail loop and is refused
    /// with `554 5.4.6` (default 50, RFC 5321 section 6.3).
    pub max_received_headers: usize,
    /// After this many erroneous commands in a session (5xx: syntax, sequence,
    /// refused parameters) the session answers `421 4.7.0` and closes (default 20).
    pub max_errors: u32,
    /// The largest header section of a message delivered to a local user, in octets
    /// (default [`DEFAULT_MAX_HEADER_SIZE`], at least 1,000): delivery rewrites the
    /// header (the spam fields, the tagged Subject) and holds it whole while it does,
    /// so a larger one gets `552 5.3.4 Message header too large`.
    pub max_header_size: usize,
}

/// Default of `[smtp] max_header_size`: 256 KiB, against Exim's `header_maxsize`
/// of 1 MiB and Postfix's `header_size_limit` of 100 KiB.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 256 * 1024;

/// `[tls]`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// `[pop_before_smtp]`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PopBeforeSmtpConfig {
    /// How long a POP3 login authorizes its client address to relay (default 30 minutes).
    pub window: Duration,
    /// Most addresses remembered at once (default 100000).
    pub max_entries: usize,
    /// Postfix policy delegation listeners (`check_policy_service
    /// inet:HOST:PORT`; default none): mailbagd answers from its live relay
    /// table, so a site that keeps Postfix for SMTP can use mailbagd for POP3
    /// and POP-before-SMTP. One address or a list. The protocol has no
    /// authentication: listen on loopback or a private network only.
    pub policy_listen: Vec<SocketAddr>,
}

/// `[spam]`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SpamConfig {
    /// Score at or above which a message is spam (default 5.0).
    pub threshold: f64,
    /// Subject tag template (default `**SPAM( _SCORE_)**`).
    pub tag_template: String,
    /// Spam older than this is removed by the sweeper (default 7 days).
    pub spam_retention: Duration,
    /// How often the sweeper runs after the start-up sweep (default 1 hour).
    pub sweep_interval: Duration,
    /// spamd address; when unset the built-in scorer is used (default unset).
    pub spamd: Option<SocketAddr>,
    /// Largest message sent to spamd, in octets (`max_scan_size`, default
    /// 512,000, spamc's `-s` default); a larger one is delivered unscanned
    /// (`X-Spam-Status: Unknown, not scanned`), as spamc does, and logged.
    pub max_scan_size: usize,
    /// After this many spamd failures in a row (unreachable, timed out, a
    /// broken reply), spamd is not asked for [`SpamConfig::spamd_pause`]:
    /// mail is delivered unscanned at once meanwhile (default 3).
    pub spamd_failures_before_pause: u32,
    /// How long such a pause lasts (default 60 seconds); then the next
    /// message tries spamd again.
    pub spamd_pause: Duration,
    /// How often a user whose spam goes to the Spam folder gets a digest of
    /// the spam that arrived since the last one, in the INBOX (`digest_interval`,
    /// default 7 days; `"0"`: no digests).
    pub digest_interval: Option<Duration>,
    /// The most messages a digest lists, oldest first: those the sweeper deletes
    /// soonest (`digest_max_entries`,
    /// default [`DEFAULT_DIGEST_MAX_ENTRIES`], at least 1); it counts the rest and
    /// points to the Spam folder's page for them.
    pub digest_max_entries: usize,
}

/// Default of `[spam] digest_max_entries`: 200 messages (a digest of 5,000 was 3 MB).
pub const DEFAULT_DIGEST_MAX_ENTRIES: usize = 200;

/// Default of `[spam] max_scan_size`: 512,000 octets, spamc's default `-s`
/// limit (spamd is not built for larger messages, and spam rarely is one).
pub const DEFAULT_MAX_SCAN_SIZE: usize = 512_000;

/// `[relay]`: the outbound queue and its delivery engine.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Where mail accepted for relay is queued (default `<data_dir>/queue`).
    pub queue_dir: PathBuf,
    /// Next hop for all outbound mail, `"host:port"` (host name or IP address,
    /// `"[::1]:25"` for IPv6); default unset: deliver to each domain's MX hosts.
    pub smarthost: Option<Smarthost>,
    /// Retry intervals after temporary failures (default
    /// `"5m, 10m, 20m, 40m, 1h, 2h, 4h"`, the last one repeating).
    pub retry_schedule: mailbag_mailstore::queue::RetrySchedule,
    /// How long a message may stay queued before it is bounced (default 5 days).
    pub max_queue_age: Duration,
    /// After how long a still-pending message gets a "delayed" DSN (once, if NOTIFY asks
    /// for it; absent NOTIFY does); default 4 hours, `"0s"` = never.
    pub delay_warning: Option<Duration>,
    /// Simultaneous connections per destination (domain or smarthost; default 4).
    pub concurrency: usize,
    /// Simultaneous outbound connections in total (default 20).
    pub max_connections: usize,
    /// TCP connect timeout per address (default 30 seconds).
    pub connect_timeout: Duration,
    /// When set, every reply timeout of RFC 5321 section 4.5.3.2 (5 minutes for the
    /// greeting, MAIL, RCPT; 2 for DATA; 3 per data block; 10 after the final dot) is
    /// replaced by this value (default unset: the RFC values).
    pub command_timeout: Option<Duration>,
    /// Name in EHLO (default: `hostname`).
    pub helo_name: String,
    /// Use STARTTLS when the next hop offers it (opportunistic, certificate not verified,
    /// RFC 7435; default true).
    pub starttls: bool,
    /// DNS server for MX and address lookups (default unset: `/etc/resolv.conf`).
    pub dns_server: Option<SocketAddr>,
    /// Port of MX hosts (default 25; other values are for tests).
    pub mx_port: u16,
    /// How often the queue is scanned for due messages (default 10 seconds; new mail is
    /// tried at once).
    pub scan_interval: Duration,
    /// Deliver to next hops at loopback, unspecified or link-local addresses found
    /// through MX, A/AAAA records or address literals (default false: such hops are
    /// refused, so DNS cannot point relayed mail back into this host or its network;
    /// a configured `smarthost` is always used).
    pub allow_internal_next_hops: bool,
}

/// The `smarthost` setting: a host name or IP address and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smarthost {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::str::FromStr for Smarthost {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not host:port"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{s:?}: bad port"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if host.parse::<std::net::IpAddr>().is_err() && !valid_name {
            return Err(format!("{s:?}: bad host name"));
        }
        Ok(Smarthost {
            host: host.to_string(),
            port,
        })
    }
}

/// `[web]`: the self-service web page (see the `web` module).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WebConfig {
    /// HTTP listeners (default `["127.0.0.1:8080"]`; an empty list turns the page off).
    pub listen: Vec<SocketAddr>,
    /// Serve HTTPS with the `[tls]` certificate (default false; needs `[tls]`).
    /// Session cookies then carry `Secure`.
    pub tls: bool,
    /// A session unused for this long is logged out (default 30 minutes).
    pub session_idle_timeout: Duration,
    /// A session ends this long after login, used or not (default 12 hours).
    pub session_lifetime: Duration,
    /// Most sessions held at once; the one idle longest is dropped to make
    /// room (default 10000).
    pub max_sessions: usize,
    /// Most sessions of one user at once; that user's idle-longest is
    /// dropped to make room (default 20).
    pub max_sessions_per_user: usize,
    /// Delay before answering a failed web login, per failure counted by
    /// the login limiter (the `n`-th failure waits `n` times it), the same
    /// for an unknown user and a wrong password (default
    /// `login.failure_delay`; `"0s"`: none).
    pub login_failure_delay: Duration,
    /// Messages per Spam folder page (default 50, at most 1000).
    pub page_size: usize,
    /// Octets of a message's header read to list it on the Spam page
    /// (default 65536); fields past that are not shown.
    pub max_header_read: usize,
    /// Largest request body (a form post) accepted, in octets (default 16384).
    pub max_request_body: usize,
    /// Largest request line plus header fields, in octets (default 65536,
    /// 8192 to 1048576); larger gets `431` (`414` for an over-long URL), more
    /// than 100 header fields too.
    pub max_request_head: usize,
    /// Time allowed to receive a request's header, for an idle keep-alive
    /// connection, and for a whole request to be read and answered (a body
    /// that stops short of its `Content-Length` gets `408`) (default 30
    /// seconds; must be longer than `login_failure_delay`).
    pub request_timeout: Duration,
    /// The key that signs the Spam digest's release links, made there on
    /// first use (default `<data_dir>/mailbag-web-secret`; mode 0600). Kept
    /// over restarts, so links stay valid; several hosts share one file.
    pub secret_file: PathBuf,
    /// The address of the web page in links the server sends (the digest),
    /// without a trailing `/`; unset: [`WebConfig::link_base`] makes it.
    pub public_url: Option<String>,
}

impl WebConfig {
    /// The start of the links the server sends: `public_url`, or
    /// `http://<hostname>:<port of the first web listener>` (`https` with
    /// `tls = true`).
    pub fn link_base(&self, hostname: &str) -> String {
        if let Some(u) = &self.public_url {
            return u.clone();
        }
        let scheme = if self.tls { "https" } else { "http" };
        match self.listen.first() {
            Some(a) => format!("{scheme}://{hostname}:{}", a.port()),
            None => format!("{scheme}://{hostname}"),
        }
    }
}

/// `[limits]`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Most simultaneous connections: per listener role (a table
    /// `pop3`/`smtp`/`submission`/`web`, a missing key at its
    /// [`PerRole::DEFAULT`]) or, given as a plain integer, over all
    /// listeners together.
    pub max_connections: MaxConnections,
    /// The roles of `max_connections` left at their default, which start-up
    /// lowers to fit the open-file limit.
    pub max_connections_defaulted: DefaultedRoles,
    // `max_connections` as read, before start-up fitted it: what a reload
    // compares with a new reading.
    configured_max_connections: MaxConnections,
    /// Most simultaneous connections from one client address (default 20).
    pub max_connections_per_ip: usize,
    /// Time allowed for a TLS handshake (default 30 seconds).
    pub tls_handshake_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight work may take before it is
    /// cut off (default 30 seconds).
    pub shutdown_timeout: Duration,
    /// When `shutdown_timeout` passed while deliveries were committing their
    /// copies: how long their connections get to send the `250` before the
    /// process exits (default 2 seconds).
    pub shutdown_reply_grace: Duration,
    /// Free octets the data and queue file systems must keep: below it SMTP
    /// refuses new mail with `452 4.3.1` (default
    /// [`DEFAULT_MIN_FREE_SPACE`](crate::disk_space::DEFAULT_MIN_FREE_SPACE),
    /// 256 MiB; `0`: no check).
    pub min_free_space: u64,
    /// Octets all SMTP spools (messages being received) may hold in memory
    /// together (default [`DEFAULT_SPOOL_MEMORY_TOTAL`], 64 MiB): past it a
    /// message is spilled to `<data_dir>/.spool` at once. Each holds at most
    /// 256 KiB in memory before it spills anyway. Needs a restart.
    pub spool_memory: u64,
    // Connections (issue 14): write deadline.
    /// Time allowed for each write to a POP3 or SMTP client (a reply, a
    /// chunk of a message being retrieved); a client that stops reading is
    /// disconnected when it passes (default 60 seconds).
    pub write_timeout: Duration,
    /// Octets each user may keep over INBOX and Spam unless their own
    /// [`User::quota`] says otherwise (default none). A delivery over it is
    /// refused with `452 4.2.2` (temporary: the sender retries once the
    /// user has made room); POP3 keeps working.
    pub user_quota: Option<u64>,
    /// A user's Maildir++ `maildirsize` file (the quota totals) of this
    /// many octets or more is recounted from the Maildir rather than read
    /// (default
    /// [`DEFAULT_QUOTA_FILE_RECOUNT_SIZE`](mailbag_mailstore::DEFAULT_QUOTA_FILE_RECOUNT_SIZE),
    /// 5,120; `0`: every check counts the Maildir).
    pub quota_file_recount_size: u64,
}

/// A validated `mailbagd` configuration.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Greeting and EHLO name (default `localhost`).
    pub hostname: Domain<'static>,
    /// Domains delivered here, normalized: lower case, no trailing dot
    /// (default `[hostname]`).
    pub local_domains: Vec<Domain<'static>>,
    /// Maildir root (default `mailbag-data`).
    pub data_dir: PathBuf,
    /// User receiving mail for `postmaster` (default: the first user).
    pub postmaster: UserName,
    /// `[pop3]`.
    pub pop3: Pop3Config,
    /// `[smtp]`.
    pub smtp: SmtpConfig,
    /// `[tls]` (optional).
    pub tls: Option<TlsConfig>,
    /// `[pop_before_smtp]`.
    pub pop_before_smtp: PopBeforeSmtpConfig,
    /// `[spam]`.
    pub spam: SpamConfig,
    /// `[relay]`.
    pub relay: RelayConfig,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[web]`.
    pub web: WebConfig,
    /// `[login]`: the login limiter of every service.
    pub login: LoginConfig,
    /// `[userdb]`.
    pub userdb: UserdbConfig,
    /// `[server]`: the process.
    pub server: ServerConfig,
    /// `[metrics]`: Prometheus metrics and the health check.
    pub metrics: MetricsConfig,
    /// `[client_settings]`: what mail clients are told to connect to.
    pub client_settings: ClientSettingsConfig,
    /// `[proxy]`: load balancers that send the PROXY protocol.
    pub proxy: ProxyConfig,
    /// `[cluster]`: what several hosts share.
    pub cluster: ClusterConfig,
    /// `[[users]]`, at least one.
    pub users: Vec<User>,
    /// `users` by ASCII-lower-case name.
    by_name: HashMap<String, usize>,
    /// ASCII-lower-case names of passwd-file lines skipped for an unusable
    /// entry ([`Config::is_unusable_user`]).
    unusable_users: HashSet<String>,
    /// What an unknown user name's password is checked against.
    dummies: Dummies,
    /// The file read ([`Config::path`]).
    path: Option<PathBuf>,
}

/// What loading does with a bad passwd-file line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BadLines {
    /// Refuse the configuration (start-up: exit status 2).
    Refuse,
    /// Skip the line and report it (a reload keeps serving everyone else).
    Skip,
}

/// The default of `[cluster] lock_lease`.
pub const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(60);

/// The default of `[cluster] ping_interval`: how often Redis is asked `PING`
/// while no client uses it (`redis_up` is at most this old).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(10);

/// The default of `[cluster] redis_timeout`.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// RFC 1939 section 3: a POP3 autologout timer "MUST be of at least 10
/// minutes' duration". Shorter `[pop3] idle_timeout`s are allowed, with a
/// warning.
pub const RFC1939_MIN_AUTOLOGOUT: Duration = Duration::from_secs(600);

/// The default of `[limits] spool_memory`: 64 MiB.
pub const DEFAULT_SPOOL_MEMORY_TOTAL: u64 = 64 << 20;

/// The default of `[userdb] check_interval`.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The credentials an unknown user name's password is checked against
/// ([`Config::authenticate`]), made once when the configuration is loaded.
#[derive(Clone, Debug, PartialEq)]
struct Dummies {
    /// A hash as costly to check as the costliest configured one (none
    /// without hashed passwords).
    hash: Option<Credential>,
    /// A clear-text password as long as the longest configured one.
    plain: Credential,
}

impl Dummies {
    fn for_users(users: &[User]) -> Dummies {
        let hash = users
            .iter()
            .filter_map(|u| u.credential.hash_cost())
            .max_by_key(HashCost::work)
            .map(|c| Credential::Hash(c.dummy()));
        let longest = users
            .iter()
            .map(|u| match &u.credential {
                Credential::Plain(p) => p.expose().len(),
                Credential::Hash(_) => 0,
            })
            .max()
            .unwrap_or(0);
        // NUL bytes: no password typed over POP3 or a form is this.
        let plain = Credential::Plain(Secret::new("\u{0}".repeat(longest.max(1))));
        Dummies { hash, plain }
    }
}

// ---------------------------------------------------------------------------
// Raw TOML shapes.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    hostname: Option<String>,
    local_domains: Option<Vec<String>>,
    data_dir: Option<PathBuf>,
    postmaster: Option<String>,
    #[serde(default)]
    pop3: RawPop3,
    #[serde(default)]
    smtp: RawSmtp,
    tls: Option<RawTls>,
    #[serde(default)]
    pop_before_smtp: RawPbs,
    #[serde(default)]
    spam: RawSpam,
    #[serde(default)]
    relay: RawRelay,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    web: RawWeb,
    #[serde(default)]
    login: RawLogin,
    #[serde(default)]
    userdb: RawUserdb,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    client_settings: RawClientSettings,
    #[serde(default)]
    proxy: RawProxy,
    #[serde(default)]
    cluster: RawCluster,
    #[serde(default)]
    users: Vec<RawUser>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    user: Option<String>,
    group: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    redis: Option<String>,
    redis_timeout: Option<HumanDuration>,
    lock_lease: Option<HumanDuration>,
    ping_interval: Option<HumanDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    trusted_networks: Option<Vec<String>>,
    header_timeout: Option<HumanDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<OneOrMany>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawClientSettings {
    server: Option<String>,
    pop3: Option<Vec<RawEndpoint>>,
    smtp: Option<Vec<RawEndpoint>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    port: u16,
    security: String,
}

/// A `[client_settings]` port list: at least one, ports nonzero, each
/// security `tls`, `starttls` or `none` (`tls` and `starttls` need `[tls]`
/// only on this host's own listeners: a balancer may end TLS itself).
fn endpoints(
    key: &str,
    raw: Option<Vec<RawEndpoint>>,
) -> Result<Option<Vec<Endpoint>>, ConfigError> {
    let Some(list) = raw else {
        return Ok(None);
    };
    if list.is_empty() {
        return Err(invalid(key, "needs at least one { port, security }"));
    }
    list.into_iter()
        .map(|e| {
            if e.port == 0 {
                return Err(invalid(key, "port must be greater than zero"));
            }
            let security = Security::from_config_word(&e.security).ok_or_else(|| {
                invalid(
                    key,
                    format!(
                        "security {:?}: expected \"tls\", \"starttls\" or \"none\"",
                        e.security
                    ),
                )
            })?;
            Ok(Endpoint {
                port: e.port,
                security,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUserdb {
    case_insensitive: Option<bool>,
    passwd_file: Option<PathBuf>,
    check_interval: Option<HumanDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPop3 {
    listen: Option<Vec<SocketAddr>>,
    tls_listen: Option<Vec<SocketAddr>>,
    require_tls_for_login: Option<bool>,
    idle_timeout: Option<HumanDuration>,
    auth_failure_delay: Option<HumanDuration>,
    spam_login_suffix: Option<String>,
    uidl_format: Option<String>,
    max_errors: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    listen: Option<Vec<SocketAddr>>,
    submission_listen: Option<Vec<SocketAddr>>,
    tls_listen: Option<Vec<SocketAddr>>,
    max_message_size: Option<u64>,
    max_recipients: Option<usize>,
    idle_timeout: Option<HumanDuration>,
    bare_line_endings: Option<String>,
    max_received_headers: Option<usize>,
    max_errors: Option<u32>,
    max_header_size: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPbs {
    window: Option<HumanDuration>,
    max_entries: Option<usize>,
    policy_listen: Option<OneOrMany>,
}

/// A listen key given as one address or a list of them.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "an IP address and port such as \"127.0.0.1:9187\" (no host names), or a list of them"
)]
enum OneOrMany {
    One(SocketAddr),
    Many(Vec<SocketAddr>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<SocketAddr> {
        match self {
            OneOrMany::One(a) => vec![a],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSpam {
    threshold: Option<f64>,
    tag_template: Option<String>,
    spam_retention: Option<HumanDuration>,
    sweep_interval: Option<HumanDuration>,
    spamd: Option<SocketAddr>,
    max_scan_size: Option<String>,
    spamd_failures_before_pause: Option<u32>,
    spamd_pause: Option<HumanDuration>,
    digest_interval: Option<HumanDuration>,
    digest_max_entries: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    queue_dir: Option<PathBuf>,
    smarthost: Option<String>,
    retry_schedule: Option<String>,
    max_queue_age: Option<HumanDuration>,
    delay_warning: Option<HumanDuration>,
    concurrency: Option<usize>,
    max_connections: Option<usize>,
    connect_timeout: Option<HumanDuration>,
    command_timeout: Option<HumanDuration>,
    helo_name: Option<String>,
    starttls: Option<bool>,
    dns_server: Option<SocketAddr>,
    mx_port: Option<u16>,
    scan_interval: Option<HumanDuration>,
    allow_internal_next_hops: Option<bool>,
}

// Connections (issue 14): `[limits] max_connections` as an integer (one
// pool, the older form) or a table per role.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawMaxConnections {
    Shared(usize),
    PerRole(RawPerRole),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerRole {
    pop3: Option<usize>,
    smtp: Option<usize>,
    submission: Option<usize>,
    web: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<RawMaxConnections>,
    max_connections_per_ip: Option<usize>,
    tls_handshake_timeout: Option<HumanDuration>,
    shutdown_timeout: Option<HumanDuration>,
    shutdown_reply_grace: Option<HumanDuration>,
    min_free_space: Option<String>,
    spool_memory: Option<String>,
    // Connections (issue 14).
    write_timeout: Option<HumanDuration>,
    user_quota: Option<String>,
    quota_file_recount_size: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    listen: Option<Vec<SocketAddr>>,
    tls: Option<bool>,
    session_idle_timeout: Option<HumanDuration>,
    session_lifetime: Option<HumanDuration>,
    max_sessions: Option<usize>,
    max_sessions_per_user: Option<usize>,
    // Replaced by `[login]`; refused with a message naming the new key.
    login_attempts_per_ip: Option<u32>,
    login_window: Option<HumanDuration>,
    max_tracked_addresses: Option<usize>,
    login_failure_delay: Option<HumanDuration>,
    page_size: Option<usize>,
    max_header_read: Option<usize>,
    max_request_body: Option<usize>,
    max_request_head: Option<usize>,
    request_timeout: Option<HumanDuration>,
    secret_file: Option<PathBuf>,
    public_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password: Option<Secret>,
    password_hash: Option<String>,
    spam_scanning: Option<bool>,
    subject_prefix: Option<bool>,
    spam_folder: Option<SpamFolder>,
    quota: Option<String>,
}

// ---------------------------------------------------------------------------
// Validation.

/// Every bad line of a passwd-file in one message (the first
/// [`MAX_REPORTED_LINES`], then a count).
const MAX_REPORTED_LINES: usize = 20;

/// The users of a passwd-file's `text` as a reload would take them, and a
/// message for each bad line it would skip (`mailbagd user list`): every
/// check of the server but the ones that need the rest of the configuration
/// (names also in `[[users]]`, reserved names, whether the domain of a
/// `user@domain` name is local: any is taken).
pub fn passwd_file_users(path: &Path, text: &str) -> (Vec<User>, Vec<String>) {
    let mut skipped = Vec::new();
    let users = passwd_users(
        path,
        text,
        PasswdContext {
            seen: &mut HashSet::new(),
            reserved: &[],
            local_domains: None,
        },
        BadLines::Skip,
        &mut skipped,
        &mut HashSet::new(),
    )
    .unwrap_or_default();
    (users, skipped)
}

/// What the names of a passwd-file are checked against.
struct PasswdContext<'a> {
    /// The names taken so far, in lower case (extended).
    seen: &'a mut HashSet<String>,
    /// Names where the server keeps its own files ([`reserved_names`]).
    reserved: &'a [(String, &'static str)],
    /// The local domains a `user@domain` name may name (`None`: any).
    local_domains: Option<&'a [Domain<'static>]>,
}

/// The user a passwd-file name names: a name `local@domain` of a local
/// domain is the user `local`, as files of Dovecot's virtual users spell
/// them (`auth_username_format = %Lu`); a name with no `@` is itself.
pub fn passwd_user_name<'n>(
    name: &'n str,
    local_domains: Option<&[Domain<'static>]>,
) -> Result<&'n str, String> {
    let Some((local, domain)) = name.rsplit_once('@') else {
        return Ok(name);
    };
    let is_local = Domain::try_from(domain).is_ok_and(|d| {
        let d = d.normalized();
        local_domains.is_none_or(|l| l.iter().any(|x| x.as_str() == d))
    });
    if is_local {
        Ok(local)
    } else {
        Err(format!(
            "{domain:?} is not one of `local_domains` (a `user@domain` name is read as the user of a local domain)"
        ))
    }
}

/// The users of a passwd-file, validated as `[[users]]` entries are: a
/// mailbox name (or `name@domain` of a local domain: [`passwd_user_name`]),
/// unique ignoring case among the context's `seen` (which it extends),
/// known extra-field values. With [`BadLines::Refuse`] any bad line refuses
/// the whole file, naming every such line; with [`BadLines::Skip`] (a
/// reload) the good lines are kept and the bad ones returned.
fn passwd_users(
    path: &Path,
    text: &str,
    cx: PasswdContext<'_>,
    bad_lines: BadLines,
    skipped: &mut Vec<String>,
    unusable: &mut HashSet<String>,
) -> Result<Vec<User>, ConfigError> {
    let PasswdContext {
        seen,
        reserved,
        local_domains,
    } = cx;
    let mut users = Vec::with_capacity(text.lines().count());
    let mut errors = Vec::new();
    // User parts that several lines name in different spellings, one at least
    // as `user@domain` (`joe@a.test` and `joe@b.test`: two people in Dovecot's
    // file, one mailbox here): none of those lines is used, and mail for the
    // name gets 451, rather than one of them getting the other's mail.
    let shared_user_parts = {
        let mut spellings: HashMap<String, HashSet<String>> = HashMap::new();
        let _ = crate::passwd_file::parse_each(text, |e| {
            if let Ok(name) = passwd_user_name(&e.name, local_domains) {
                spellings
                    .entry(name.to_ascii_lowercase())
                    .or_default()
                    .insert(e.name.to_ascii_lowercase());
            }
        });
        spellings
            .into_iter()
            .filter(|(_, written)| written.len() > 1 && written.iter().any(|w| w.contains('@')))
            .map(|(name, _)| name)
            .collect::<HashSet<String>>()
    };
    let mut line_errors = crate::passwd_file::parse_each(text, |e| {
        let crate::passwd_file::Entry {
            name: typed_name,
            credential,
            extra,
            line,
        } = e;
        let entry_name = match passwd_user_name(&typed_name, local_domains) {
            Ok(name) => name.to_owned(),
            Err(message) => {
                errors.push(crate::passwd_file::LineError {
                    line,
                    message: format!("user {typed_name:?}: {message}"),
                    user: None,
                });
                return;
            }
        };
        if shared_user_parts.contains(&entry_name.to_ascii_lowercase()) {
            errors.push(crate::passwd_file::LineError {
                line,
                message: format!(
                    "user {typed_name:?}: another line names the user {entry_name:?} too (in \
                     another domain or spelling); mailbagd has one mailbox per user name, so \
                     neither line is used and mail for {entry_name:?} is deferred (451)"
                ),
                user: Some(entry_name),
            });
            return;
        }
        // `unusable`: the name is this line's user's, whose entry is broken (not a
        // name that cannot be a user, or one another line serves).
        let mut bad_entry = |message: String, unusable: bool| {
            errors.push(crate::passwd_file::LineError {
                line,
                message: format!("user {entry_name:?}: {message}"),
                user: unusable.then(|| entry_name.clone()),
            });
        };
        let mut bad = |message: String| bad_entry(message, false);
        let name = match parse_user_name("name", &entry_name) {
            Ok(n) => n,
            Err(err) => {
                bad(err.to_string());
                return;
            }
        };
        if entry_name.eq_ignore_ascii_case("postmaster") {
            bad("\"postmaster\" is reserved; use the top-level `postmaster` key".into());
            return;
        }
        if let Some(why) = reserved_for(reserved, &entry_name) {
            bad(why);
            return;
        }
        if !seen.insert(entry_name.to_ascii_lowercase()) {
            bad("a user of this name (in some letter case) is already configured".into());
            return;
        }
        let mut user = User {
            name,
            credential,
            spam_scanning: true,
            subject_prefix: true,
            spam_folder: SpamFolder::default(),
            passwd_file_line: Some(line),
            quota: None,
            nologin: false,
            allow_nets: Vec::new(),
        };
        let mut usable = true;
        for (key, value) in &extra {
            let yes_no = |v: &str| match v.to_ascii_lowercase().as_str() {
                "yes" | "y" | "true" | "1" => Some(true),
                "no" | "n" | "false" | "0" => Some(false),
                _ => None,
            };
            let ok = match key.as_str() {
                "spam_scanning" => yes_no(value).map(|b| user.spam_scanning = b),
                "subject_prefix" => yes_no(value).map(|b| user.subject_prefix = b),
                "spam_folder" => match value.to_ascii_lowercase().as_str() {
                    "inbox" => Some(SpamFolder::Inbox),
                    "spam" => Some(SpamFolder::Spam),
                    _ => None,
                }
                .map(|f| user.spam_folder = f),
                "quota" => crate::disk_space::parse_size(value)
                    .ok()
                    .map(|q| user.quota = Some(q)),
                // Dovecot's: any value disables logins (`nologin=y`, or empty).
                "nologin" => {
                    user.nologin = true;
                    Some(())
                }
                "allow_nets" => value
                    .split(',')
                    .map(|n| n.trim().parse::<crate::proxy::Cidr>())
                    .collect::<Result<Vec<_>, _>>()
                    .ok()
                    .filter(|nets| !nets.is_empty())
                    .map(|nets| user.allow_nets = nets),
                // Dovecot's own fields and anything else: not ours.
                _ => Some(()),
            };
            if ok.is_none() {
                bad_entry(format!("{key}={value}: not a valid value"), true);
                usable = false;
            }
        }
        // A line with a bad value is skipped as a whole (as its message says):
        // serving the user without, say, their quota would loosen what the
        // file asks for.
        if usable {
            users.push(user);
        }
    });
    errors.append(&mut line_errors);
    if errors.is_empty() {
        return Ok(users);
    }
    errors.sort_by_key(|e| e.line);
    if bad_lines == BadLines::Skip {
        skipped.extend(
            errors
                .iter()
                .map(|e| format!("{}: {e}; line skipped", path.display())),
        );
        unusable.extend(
            errors
                .iter()
                .filter_map(|e| e.user.as_deref())
                .filter_map(|name| passwd_user_name(name, local_domains).ok())
                .map(str::to_ascii_lowercase),
        );
        return Ok(users);
    }
    let mut message = format!("{}: ", path.display());
    let shown: Vec<String> = errors
        .iter()
        .take(MAX_REPORTED_LINES)
        .map(ToString::to_string)
        .collect();
    message.push_str(&shown.join("; "));
    if errors.len() > MAX_REPORTED_LINES {
        message.push_str(&format!(
            "; and {} more bad lines",
            errors.len() - MAX_REPORTED_LINES
        ));
    }
    Err(invalid("userdb.passwd_file", message))
}

/// Adds the listen addresses of `key` to `seen`, refusing one already there
/// (port 0, any free port, may appear more than once).
fn listed_once(
    key: &str,
    list: &[SocketAddr],
    seen: &mut HashSet<SocketAddr>,
) -> Result<(), ConfigError> {
    match list.iter().find(|a| a.port() != 0 && !seen.insert(**a)) {
        Some(a) => Err(invalid(key, format!("address {a} is listed twice"))),
        None => Ok(()),
    }
}

/// The names under `data_dir` that the server keeps its own files at
/// (`relay.queue_dir`, `web.secret_file`, when they are directly in it),
/// each with the key that puts it there: a user of that name would have
/// their Maildir at the same place.
fn reserved_names(
    data_dir: &Path,
    relay: &RelayConfig,
    web: &WebConfig,
) -> Vec<(String, &'static str)> {
    [
        ("relay.queue_dir", relay.queue_dir.as_path()),
        ("web.secret_file", web.secret_file.as_path()),
    ]
    .into_iter()
    .filter(|(_, p)| p.parent() == Some(data_dir))
    .filter_map(|(key, p)| Some((p.file_name()?.to_str()?.to_owned(), key)))
    .collect()
}

/// Why `name` cannot be a user's: the key whose file or directory is where
/// its Maildir would be.
fn reserved_for(reserved: &[(String, &'static str)], name: &str) -> Option<String> {
    // In any letter case: user names are looked up so by default, and some
    // file systems do not tell the cases apart.
    reserved
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, key)| {
            format!("{n:?} is where the server keeps `{key}`; the user's Maildir would be there")
        })
}

/// Checks a mailbox name as the configuration does (`mailbagd user add`):
/// a valid mailstore [`UserName`] that is also an unquoted ASCII RFC 5321
/// local part, and not `postmaster`.
///
/// # Errors
///
/// A message saying why.
///
/// ```
/// use mailbagd::config::check_user_name;
/// assert!(check_user_name("joe.smith").is_ok());
/// assert!(check_user_name("../etc").is_err());
/// assert!(check_user_name("Postmaster").is_err());
/// ```
pub fn check_user_name(name: &str) -> Result<UserName, String> {
    if name.eq_ignore_ascii_case("postmaster") {
        return Err("\"postmaster\" is reserved; use the top-level `postmaster` key".into());
    }
    parse_user_name("name", name).map_err(|e| match e {
        ConfigError::Invalid { message, .. } => message,
        other => other.to_string(),
    })
}

/// A mailbox name: a valid mailstore [`UserName`] (it names a Maildir) that is
/// also an unquoted RFC 5321 local part (mail reaches it as `name@domain`, so it
/// must be addressable without quoting or SMTPUTF8), as the libraries' grammars say.
fn parse_user_name(key: &str, name: &str) -> Result<UserName, ConfigError> {
    let user = UserName::new(name).map_err(|e| invalid(key, e.to_string()))?;
    match LocalPart::try_from(name) {
        Ok(lp) if !lp.is_quoted() && lp.is_ascii() => Ok(user),
        _ => Err(invalid(
            key,
            format!(
                "{name:?} is not usable as the local part of an address (an ASCII RFC 5321 dot-atom)"
            ),
        )),
    }
}

/// A domain name by smtp-proto's RFC 5321 grammar, in its normalized form
/// (lower case, no trailing dot).
fn parse_domain(key: &str, d: &str) -> Result<Domain<'static>, ConfigError> {
    let domain =
        Domain::try_from(d).map_err(|_| invalid(key, format!("{d:?} is not a domain name")))?;
    Domain::try_from(domain.normalized().as_ref())
        .map(Domain::into_owned)
        .map_err(|_| invalid(key, format!("{d:?} is not a domain name")))
}

/// `[pop3] spam_login_suffix`: empty, or `/` and 1 to 32 printable ASCII
/// characters (no user name contains `/`, so a suffix never eats a name).
fn spam_login_suffix(raw: Option<String>) -> Result<String, ConfigError> {
    let s = raw.unwrap_or_else(|| "/Spam".to_owned());
    let ok = s.is_empty()
        || (s.starts_with('/')
            && (2..=33).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_graphic()));
    if ok {
        Ok(s)
    } else {
        Err(invalid(
            "pop3.spam_login_suffix",
            "must be empty or `/` followed by 1 to 32 printable ASCII characters",
        ))
    }
}

/// `[pop3] uidl_format`: one of [`UidlFormat`]'s templates.
fn uidl_format(raw: Option<String>) -> Result<UidlFormat, ConfigError> {
    let Some(text) = raw else {
        return Ok(UidlFormat::default());
    };
    UidlFormat::parse(&text).ok_or_else(|| {
        let known: Vec<&str> = UidlFormat::ALL.iter().map(|f| f.template()).collect();
        invalid(
            "pop3.uidl_format",
            format!(
                "{text:?} is not a form this server makes (one of {}, or %g)",
                known.join(", ")
            ),
        )
    })
}

fn nonzero(
    key: &str,
    d: Option<HumanDuration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = d.map(|h| h.0).unwrap_or(default);
    if d.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(d)
}

/// A count that must be above zero, `default` when not given.
fn nonzero_count(key: &str, value: Option<u32>, default: u32) -> Result<u32, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(invalid(key, "must be greater than zero")),
        n => Ok(n),
    }
}

/// A protocol session's `idle_timeout`: nonzero and at most the libraries'
/// `MAX_IDLE_TIMEOUT` (a week), which every session would refuse.
/// The longest `[limits] tls_handshake_timeout`: a handshake is a few round trips,
/// and each stalled one holds a connection slot (a probe's "100d" was taken).
pub const MAX_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(600);

/// `d`, or an error naming `key` when it is longer than `max`.
fn at_most(key: &str, d: Duration, max: Duration) -> Result<Duration, ConfigError> {
    if d > max {
        return Err(invalid(
            key,
            format!("must be at most {}", humantime::format_duration(max)),
        ));
    }
    Ok(d)
}

/// The keys of these tables whose values need a `[tls]` section, in this order:
/// `pop3.tls_listen`, `smtp.tls_listen`, `pop3.require_tls_for_login`, `web.tls`.
fn keys_needing_tls(pop3: &Pop3Config, smtp: &SmtpConfig, web: &WebConfig) -> Vec<&'static str> {
    [
        ("pop3.tls_listen", !pop3.tls_listen.is_empty()),
        ("smtp.tls_listen", !smtp.tls_listen.is_empty()),
        ("pop3.require_tls_for_login", pop3.require_tls_for_login),
        ("web.tls", web.tls),
    ]
    .into_iter()
    .filter_map(|(key, needs)| needs.then_some(key))
    .collect()
}

fn session_idle_timeout(
    key: &str,
    d: Option<HumanDuration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = nonzero(key, d, default)?;
    let max = mailbag_pop3_proto::session::MAX_IDLE_TIMEOUT
        .min(mailbag_smtp_proto::session::MAX_IDLE_TIMEOUT);
    at_most(key, d, max)
}

impl Config {
    /// Reads and validates a config file. Any bad line of the passwd-file
    /// refuses the whole configuration (start-up).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Ok(Config::load_with(Some(path), BadLines::Refuse)?.0)
    }

    /// Reads and validates the configuration again for a reload: from the
    /// file it was loaded from ([`Config::path`]; the embedded demo
    /// configuration when there is none). Bad passwd-file lines are skipped,
    /// each reported in the returned list with its line number.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for anything else wrong: the running configuration
    /// stays.
    pub fn reload(&self) -> Result<(Config, Vec<String>), ConfigError> {
        Config::load_with(self.path.as_deref(), BadLines::Skip)
    }

    /// Reads the config file at `path` as a reload would take it: bad
    /// passwd-file lines are skipped and listed (what `mailbagd user list`
    /// and `user add` go by).
    ///
    /// # Errors
    ///
    /// As [`Config::reload`].
    pub fn load_skipping(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        Config::load_with(Some(path), BadLines::Skip)
    }

    fn load_with(
        path: Option<&Path>,
        bad_lines: BadLines,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let Some(path) = path else {
            let raw: RawConfig = toml::from_str(DEMO_CONFIG)?;
            return Config::validate(raw, bad_lines);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let raw: RawConfig = toml::from_str(&text)?;
        let (mut config, skipped) = Config::validate(raw, bad_lines)?;
        config.path = Some(path.to_owned());
        Ok((config, skipped))
    }

    /// The keys a running server cannot change (listeners, storage places,
    /// what the connection and login limiters, the relay table, the store
    /// and the outbound engine were built with), each with its value
    /// rendered: a reload compares these with the values the server started
    /// with, names the ones that differ as "needs restart", and otherwise
    /// ignores them ([`Config::keep_restart_keys`]).
    pub fn restart_keys(&self) -> Vec<(&'static str, String)> {
        vec![
            ("pop3.listen", format!("{:?}", self.pop3.listen)),
            ("pop3.tls_listen", format!("{:?}", self.pop3.tls_listen)),
            ("smtp.listen", format!("{:?}", self.smtp.listen)),
            (
                "smtp.submission_listen",
                format!("{:?}", self.smtp.submission_listen),
            ),
            ("smtp.tls_listen", format!("{:?}", self.smtp.tls_listen)),
            (
                "smtp.max_message_size",
                self.smtp.max_message_size.to_string(),
            ),
            ("web.listen", format!("{:?}", self.web.listen)),
            ("metrics.listen", format!("{:?}", self.metrics.listen)),
            ("server", format!("{:?}", self.server)),
            ("cluster", format!("{:?}", self.cluster)),
            ("web.tls", self.web.tls.to_string()),
            ("web.secret_file", format!("{:?}", self.web.secret_file)),
            // The session table is made with these at start-up.
            ("web.max_sessions", self.web.max_sessions.to_string()),
            (
                "web.max_sessions_per_user",
                self.web.max_sessions_per_user.to_string(),
            ),
            ("pop_before_smtp", format!("{:?}", self.pop_before_smtp)),
            ("data_dir", format!("{:?}", self.data_dir)),
            ("pop3.uidl_format", self.pop3.uidl_format.to_string()),
            ("hostname", self.hostname.to_string()),
            ("relay", format!("{:?}", self.relay)),
            ("login", format!("{:?}", self.login)),
            (
                "limits.max_connections",
                // Which roles were defaulted counts too: writing the default
                // values out turns their fitting off.
                format!(
                    "{:?} {:?}",
                    self.limits.configured_max_connections, self.limits.max_connections_defaulted
                ),
            ),
            (
                "limits.max_connections_per_ip",
                self.limits.max_connections_per_ip.to_string(),
            ),
            // The shared spool budget is made with it at start-up.
            ("limits.spool_memory", self.limits.spool_memory.to_string()),
            (
                "spam.sweep_interval",
                format!("{:?}", self.spam.sweep_interval),
            ),
            (
                "spam.digest_interval",
                format!("{:?}", self.spam.digest_interval),
            ),
        ]
    }

    /// Copies every key of [`Config::restart_keys`] from `running` (a
    /// reload applies everything else).
    pub fn keep_restart_keys(&mut self, running: &Config) {
        self.pop3.listen.clone_from(&running.pop3.listen);
        self.pop3.tls_listen.clone_from(&running.pop3.tls_listen);
        self.smtp.listen.clone_from(&running.smtp.listen);
        self.smtp
            .submission_listen
            .clone_from(&running.smtp.submission_listen);
        self.smtp.tls_listen.clone_from(&running.smtp.tls_listen);
        self.smtp.max_message_size = running.smtp.max_message_size;
        self.web.listen.clone_from(&running.web.listen);
        self.metrics.listen.clone_from(&running.metrics.listen);
        self.server.clone_from(&running.server);
        self.cluster.clone_from(&running.cluster);
        self.web.tls = running.web.tls;
        self.web.secret_file.clone_from(&running.web.secret_file);
        self.pop_before_smtp.clone_from(&running.pop_before_smtp);
        self.data_dir.clone_from(&running.data_dir);
        self.hostname.clone_from(&running.hostname);
        self.relay.clone_from(&running.relay);
        self.login.clone_from(&running.login);
        self.limits.max_connections = running.limits.max_connections;
        self.limits.max_connections_defaulted = running.limits.max_connections_defaulted;
        self.limits.configured_max_connections = running.limits.configured_max_connections;
        self.limits.max_connections_per_ip = running.limits.max_connections_per_ip;
        self.limits.spool_memory = running.limits.spool_memory;
        self.spam.sweep_interval = running.spam.sweep_interval;
        self.spam.digest_interval = running.spam.digest_interval;
    }

    /// The keys whose values need a `[tls]` section (a loaded configuration without
    /// one has none; a reload checks the restart-only keys it keeps with it).
    pub fn keys_needing_tls(&self) -> Vec<&'static str> {
        keys_needing_tls(&self.pop3, &self.smtp, &self.web)
    }

    /// The file this configuration was read from (`None`: a string, or the
    /// embedded demo configuration).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Names no user may have, with why: the server keeps its own files
    /// where their Maildirs would be (`relay.queue_dir`, `web.secret_file`
    /// under `data_dir`). `mailbagd user add` refuses them; a passwd-file
    /// line with one is a bad line.
    pub fn reserved_user_names(&self) -> Vec<(String, &'static str)> {
        reserved_names(&self.data_dir, &self.relay, &self.web)
    }

    /// Why `name` cannot be added as a user: a configured user of that name
    /// in some letter case, or a reserved name
    /// ([`reserved_user_names`](Self::reserved_user_names)).
    pub fn refuses_new_user(&self, name: &str) -> Option<String> {
        let name = match passwd_user_name(name, Some(&self.local_domains)) {
            Ok(name) => name,
            Err(why) => return Some(why),
        };
        if let Some(u) = self
            .users
            .iter()
            .find(|u| u.name.as_str().eq_ignore_ascii_case(name))
        {
            let place = match u.passwd_file_line {
                Some(n) => format!("line {n} of the passwd-file"),
                None => "[[users]] of the configuration".to_owned(),
            };
            return Some(format!(
                "a user {:?} is configured already ({place})",
                u.name.as_str()
            ));
        }
        reserved_for(&self.reserved_user_names(), name)
    }

    /// The quota that applies to `user` in octets: the user's own
    /// ([`User::quota`], `0` for none) or `[limits] user_quota`.
    pub fn quota_of(&self, user: &User) -> Option<u64> {
        match user.quota {
            Some(0) => None,
            Some(q) => Some(q),
            None => self.limits.user_quota,
        }
    }

    /// [`quota_of`](Self::quota_of) the configured user named `name`
    /// ([`user`](Self::user)); `None` for no such user. What the store's
    /// quota lookup asks, and what SMTP asks at RCPT before counting.
    pub fn user_quota(&self, name: &str) -> Option<u64> {
        self.user(name).and_then(|u| self.quota_of(u))
    }

    /// The embedded demo configuration (`examples/mailbagd/mailbag.toml`).
    pub fn demo() -> Result<Config, ConfigError> {
        Config::from_toml_str(DEMO_CONFIG)
    }

    /// Parses and validates a TOML document. File existence of `[tls]`
    /// files is checked here too.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        Ok(Config::validate(raw, BadLines::Refuse)?.0)
    }

    fn validate(raw: RawConfig, bad_lines: BadLines) -> Result<(Config, Vec<String>), ConfigError> {
        let mut skipped = Vec::new();
        let mut unusable_users = HashSet::new();
        let hostname = parse_domain("hostname", raw.hostname.as_deref().unwrap_or("localhost"))?;
        let local_domains = match raw.local_domains {
            None => vec![hostname.clone()],
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, d)| parse_domain(&format!("local_domains[{i}]"), d))
                .collect::<Result<Vec<_>, _>>()?,
        };
        if local_domains.is_empty() {
            return Err(invalid("local_domains", "must name at least one domain"));
        }
        let data_dir = raw
            .data_dir
            .unwrap_or_else(|| PathBuf::from("mailbag-data"));

        let tls = match raw.tls {
            None => None,
            Some(t) => {
                for (key, p) in [
                    ("tls.cert_file", &t.cert_file),
                    ("tls.key_file", &t.key_file),
                ] {
                    if p.is_dir() {
                        return Err(invalid(
                            key,
                            format!("{} is a directory, not a file", p.display()),
                        ));
                    }
                    if !p.is_file() {
                        return Err(invalid(key, format!("file {} not found", p.display())));
                    }
                }
                Some(TlsConfig {
                    cert_file: t.cert_file,
                    key_file: t.key_file,
                })
            }
        };

        let login = login_config(raw.login)?;
        let pop3 = Pop3Config {
            listen: raw
                .pop3
                .listen
                .unwrap_or_else(|| vec![SocketAddr::from(([127, 0, 0, 1], 1110))]),
            tls_listen: raw.pop3.tls_listen.unwrap_or_default(),
            require_tls_for_login: raw.pop3.require_tls_for_login.unwrap_or(false),
            idle_timeout: session_idle_timeout(
                "pop3.idle_timeout",
                raw.pop3.idle_timeout,
                Duration::from_secs(600),
            )?,
            auth_failure_delay: raw
                .pop3
                .auth_failure_delay
                .map(|d| d.0)
                .unwrap_or(login.failure_delay),
            spam_login_suffix: spam_login_suffix(raw.pop3.spam_login_suffix)?,
            uidl_format: uidl_format(raw.pop3.uidl_format)?,
            max_errors: nonzero_count("pop3.max_errors", raw.pop3.max_errors, 10)?,
        };
        let smtp = SmtpConfig {
            listen: raw
                .smtp
                .listen
                .unwrap_or_else(|| vec![SocketAddr::from(([127, 0, 0, 1], 2525))]),
            submission_listen: raw
                .smtp
                .submission_listen
                .unwrap_or_else(|| vec![SocketAddr::from(([127, 0, 0, 1], 5870))]),
            tls_listen: raw.smtp.tls_listen.unwrap_or_default(),
            max_message_size: raw.smtp.max_message_size.unwrap_or(26_214_400),
            max_recipients: raw.smtp.max_recipients.unwrap_or(100),
            idle_timeout: session_idle_timeout(
                "smtp.idle_timeout",
                raw.smtp.idle_timeout,
                Duration::from_secs(300),
            )?,
            bare_line_endings: match raw.smtp.bare_line_endings.as_deref() {
                None | Some("normalize") => BareLfPolicy::Normalize,
                Some("reject") => BareLfPolicy::Reject,
                Some(other) => {
                    return Err(invalid(
                        "smtp.bare_line_endings",
                        format!("{other:?}: expected \"normalize\" or \"reject\""),
                    ));
                }
            },
            max_received_headers: raw.smtp.max_received_headers.unwrap_or(50),
            max_errors: nonzero_count("smtp.max_errors", raw.smtp.max_errors, 20)?,
            max_header_size: raw.smtp.max_header_size.unwrap_or(DEFAULT_MAX_HEADER_SIZE),
        };
        if smtp.max_header_size < 1_000 {
            return Err(invalid(
                "smtp.max_header_size",
                "must be at least 1000 (octets of the header section, its empty line included)",
            ));
        }
        if smtp.max_received_headers == 0 {
            return Err(invalid(
                "smtp.max_received_headers",
                "must be greater than zero",
            ));
        }
        if smtp.max_message_size == 0 {
            return Err(invalid(
                "smtp.max_message_size",
                "must be greater than zero",
            ));
        }
        if smtp.max_recipients == 0 {
            return Err(invalid("smtp.max_recipients", "must be greater than zero"));
        }
        let web = web_config(raw.web, &login, &data_dir)?;
        if tls.is_none()
            && let Some(&key) = keys_needing_tls(&pop3, &smtp, &web).first()
        {
            return Err(invalid(key, "needs a [tls] section"));
        }
        let mut seen = HashSet::new();
        for (key, list) in [
            ("pop3.listen", &pop3.listen),
            ("pop3.tls_listen", &pop3.tls_listen),
            ("smtp.listen", &smtp.listen),
            ("smtp.submission_listen", &smtp.submission_listen),
            ("smtp.tls_listen", &smtp.tls_listen),
            ("web.listen", &web.listen),
        ] {
            listed_once(key, list, &mut seen)?;
        }

        let pop_before_smtp = PopBeforeSmtpConfig {
            window: nonzero(
                "pop_before_smtp.window",
                raw.pop_before_smtp.window,
                Duration::from_secs(30 * 60),
            )?,
            max_entries: raw.pop_before_smtp.max_entries.unwrap_or(100_000),
            policy_listen: raw
                .pop_before_smtp
                .policy_listen
                .map(OneOrMany::into_vec)
                .unwrap_or_default(),
        };
        if pop_before_smtp.max_entries == 0 {
            return Err(invalid(
                "pop_before_smtp.max_entries",
                "must be greater than zero",
            ));
        }
        // The policy and metrics listeners share the address space too: a
        // clash would pass --check and fail only at start-up.
        let metrics_listen: Vec<SocketAddr> = raw
            .metrics
            .listen
            .map(OneOrMany::into_vec)
            .unwrap_or_default();
        for (key, list) in [
            (
                "pop_before_smtp.policy_listen",
                &pop_before_smtp.policy_listen,
            ),
            ("metrics.listen", &metrics_listen),
        ] {
            listed_once(key, list, &mut seen)?;
        }

        let spam = SpamConfig {
            threshold: raw.spam.threshold.unwrap_or(5.0),
            tag_template: raw
                .spam
                .tag_template
                .unwrap_or_else(|| "**SPAM( _SCORE_)**".to_owned()),
            spam_retention: nonzero(
                "spam.spam_retention",
                raw.spam.spam_retention,
                Duration::from_secs(7 * 24 * 3600),
            )?,
            sweep_interval: nonzero(
                "spam.sweep_interval",
                raw.spam.sweep_interval,
                Duration::from_secs(3600),
            )?,
            spamd: raw.spam.spamd,
            max_scan_size: match raw.spam.max_scan_size.as_deref() {
                None => DEFAULT_MAX_SCAN_SIZE,
                Some(s) => crate::disk_space::parse_size(s)
                    .map_err(|e| invalid("spam.max_scan_size", &e))
                    .and_then(|n| {
                        usize::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                            invalid("spam.max_scan_size", "must be greater than zero")
                        })
                    })?,
            },
            spamd_failures_before_pause: match raw.spam.spamd_failures_before_pause {
                None => 3,
                Some(0) => {
                    return Err(invalid(
                        "spam.spamd_failures_before_pause",
                        "must be greater than zero",
                    ));
                }
                Some(n) => n,
            },
            spamd_pause: nonzero(
                "spam.spamd_pause",
                raw.spam.spamd_pause,
                Duration::from_secs(60),
            )?,
            digest_interval: match raw.spam.digest_interval {
                None => Some(Duration::from_secs(7 * 24 * 3600)),
                Some(d) if d.0.is_zero() => None,
                Some(d) => Some(d.0),
            },
            digest_max_entries: raw
                .spam
                .digest_max_entries
                .unwrap_or(DEFAULT_DIGEST_MAX_ENTRIES),
        };
        if spam.digest_max_entries == 0 {
            return Err(invalid(
                "spam.digest_max_entries",
                "must be greater than zero",
            ));
        }
        if !spam.threshold.is_finite() {
            return Err(invalid("spam.threshold", "must be a finite number"));
        }
        if spam.tag_template.contains(['\r', '\n']) {
            return Err(invalid("spam.tag_template", "must be one line"));
        }
        if let Err(e) = mailbag_spam_tag::Template::new(&spam.tag_template) {
            return Err(invalid("spam.tag_template", e.to_string()));
        }
        if mailbag_spam_tag::Score::new(spam.threshold).is_err() {
            return Err(invalid(
                "spam.threshold",
                "must be a finite number within ±1000000",
            ));
        }

        let r = raw.relay;
        let smarthost = match r.smarthost {
            Some(s) => Some(
                s.parse::<Smarthost>()
                    .map_err(|e| invalid("relay.smarthost", e))?,
            ),
            None => None,
        };
        let max_queue_age = nonzero(
            "relay.max_queue_age",
            r.max_queue_age,
            mailbag_mailstore::queue::DEFAULT_MAX_AGE,
        )?;
        let delay_warning = match r.delay_warning {
            Some(d) if d.0.is_zero() => None,
            Some(d) => Some(d.0),
            None => Some(mailbag_mailstore::queue::DEFAULT_DELAY_WARNING),
        };
        let retry_schedule = match r.retry_schedule {
            Some(s) => s
                .parse::<mailbag_mailstore::queue::RetrySchedule>()
                .map_err(|e| invalid("relay.retry_schedule", e.to_string()))?,
            None => mailbag_mailstore::queue::RetrySchedule::default(),
        }
        .with_max_age(max_queue_age)
        .with_delay_warning(delay_warning);
        let helo_name = r.helo_name.unwrap_or_else(|| hostname.to_string());
        if mailbag_smtp_proto::types::HeloName::try_from(helo_name.as_str()).is_err() {
            return Err(invalid("relay.helo_name", "not a valid host name"));
        }
        let relay = RelayConfig {
            queue_dir: r.queue_dir.unwrap_or_else(|| data_dir.join("queue")),
            smarthost,
            retry_schedule,
            max_queue_age,
            delay_warning,
            concurrency: r.concurrency.unwrap_or(4),
            max_connections: r.max_connections.unwrap_or(20),
            connect_timeout: nonzero(
                "relay.connect_timeout",
                r.connect_timeout,
                Duration::from_secs(30),
            )?,
            command_timeout: match r.command_timeout {
                Some(d) => Some(nonzero("relay.command_timeout", Some(d), d.0)?),
                None => None,
            },
            helo_name,
            starttls: r.starttls.unwrap_or(true),
            dns_server: r.dns_server,
            mx_port: r.mx_port.unwrap_or(25),
            scan_interval: nonzero(
                "relay.scan_interval",
                r.scan_interval,
                Duration::from_secs(10),
            )?,
            allow_internal_next_hops: r.allow_internal_next_hops.unwrap_or(false),
        };
        if relay.concurrency == 0 {
            return Err(invalid("relay.concurrency", "must be greater than zero"));
        }
        if relay.max_connections == 0 {
            return Err(invalid(
                "relay.max_connections",
                "must be greater than zero",
            ));
        }
        if relay.mx_port == 0 {
            return Err(invalid("relay.mx_port", "must be greater than zero"));
        }

        // `[limits] min_free_space` (storage safety).
        let min_free_space = match raw.limits.min_free_space.as_deref() {
            None => crate::disk_space::DEFAULT_MIN_FREE_SPACE,
            Some(s) => crate::disk_space::parse_size(s)
                .map_err(|e| invalid("limits.min_free_space", &e))?,
        };
        let spool_memory = match raw.limits.spool_memory.as_deref() {
            None => DEFAULT_SPOOL_MEMORY_TOTAL,
            Some(s) => {
                crate::disk_space::parse_size(s).map_err(|e| invalid("limits.spool_memory", &e))?
            }
        };
        let (max_connections, max_connections_defaulted) = match &raw.limits.max_connections {
            None => (MaxConnections::default(), DefaultedRoles::ALL),
            Some(RawMaxConnections::Shared(n)) => {
                (MaxConnections::Shared(*n), DefaultedRoles::NONE)
            }
            Some(RawMaxConnections::PerRole(r)) => {
                let d = PerRole::DEFAULT;
                let mut defaulted = DefaultedRoles::NONE;
                for (given, class) in [
                    (r.pop3, ConnectionClass::Pop3),
                    (r.smtp, ConnectionClass::Smtp),
                    (r.submission, ConnectionClass::Submission),
                    (r.web, ConnectionClass::Web),
                ] {
                    if given.is_none() {
                        defaulted = defaulted.with(class);
                    }
                }
                let per_role = PerRole::new(
                    r.pop3.unwrap_or(d.pop3),
                    r.smtp.unwrap_or(d.smtp),
                    r.submission.unwrap_or(d.submission),
                    r.web.unwrap_or(d.web),
                );
                (MaxConnections::PerRole(per_role), defaulted)
            }
        };
        let limits = LimitsConfig {
            max_connections,
            max_connections_defaulted,
            configured_max_connections: max_connections,
            max_connections_per_ip: raw.limits.max_connections_per_ip.unwrap_or(20),
            tls_handshake_timeout: at_most(
                "limits.tls_handshake_timeout",
                nonzero(
                    "limits.tls_handshake_timeout",
                    raw.limits.tls_handshake_timeout,
                    Duration::from_secs(30),
                )?,
                MAX_TLS_HANDSHAKE_TIMEOUT,
            )?,
            shutdown_timeout: nonzero(
                "limits.shutdown_timeout",
                raw.limits.shutdown_timeout,
                Duration::from_secs(30),
            )?,
            shutdown_reply_grace: nonzero(
                "limits.shutdown_reply_grace",
                raw.limits.shutdown_reply_grace,
                Duration::from_secs(2),
            )?,
            min_free_space,
            spool_memory,
            write_timeout: nonzero(
                "limits.write_timeout",
                raw.limits.write_timeout,
                DEFAULT_WRITE_TIMEOUT,
            )?,
            user_quota: match raw.limits.user_quota.as_deref() {
                None => None,
                Some(s) => match crate::disk_space::parse_size(s)
                    .map_err(|e| invalid("limits.user_quota", &e))?
                {
                    0 => None,
                    n => Some(n),
                },
            },
            quota_file_recount_size: match raw.limits.quota_file_recount_size.as_deref() {
                None => mailbag_mailstore::DEFAULT_QUOTA_FILE_RECOUNT_SIZE,
                Some(s) => crate::disk_space::parse_size(s)
                    .map_err(|e| invalid("limits.quota_file_recount_size", &e))?,
            },
        };
        match limits.max_connections {
            MaxConnections::Shared(0) => {
                return Err(invalid(
                    "limits.max_connections",
                    "must be greater than zero",
                ));
            }
            MaxConnections::PerRole(r) => {
                for (role, n) in [
                    ("pop3", r.pop3),
                    ("smtp", r.smtp),
                    ("submission", r.submission),
                    ("web", r.web),
                ] {
                    if n == 0 {
                        return Err(invalid(
                            format!("limits.max_connections.{role}"),
                            "must be greater than zero",
                        ));
                    }
                }
            }
            _ => {}
        }
        if limits.max_connections_per_ip == 0 {
            return Err(invalid(
                "limits.max_connections_per_ip",
                "must be greater than zero",
            ));
        }

        if raw.users.is_empty() && raw.userdb.passwd_file.is_none() {
            return Err(invalid(
                "users",
                "at least one [[users]] entry (or a [userdb] passwd_file) is required",
            ));
        }
        let mut users = Vec::with_capacity(raw.users.len());
        let mut names = HashSet::new();
        let reserved = reserved_names(&data_dir, &relay, &web);
        for (i, u) in raw.users.into_iter().enumerate() {
            let key = format!("users[{i}]");
            let name = parse_user_name(&format!("{key}.name"), &u.name)?;
            if let Some(why) = reserved_for(&reserved, &u.name) {
                return Err(invalid(format!("{key}.name"), why));
            }
            if !names.insert(u.name.to_ascii_lowercase()) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("duplicate user {:?}", u.name),
                ));
            }
            if u.name.eq_ignore_ascii_case("postmaster") {
                return Err(invalid(
                    format!("{key}.name"),
                    "\"postmaster\" is reserved; use the top-level `postmaster` key",
                ));
            }
            let credential = match (u.password, u.password_hash) {
                (Some(p), None) if p.expose().is_empty() => {
                    return Err(invalid(
                        format!("{key}.password"),
                        "empty: anyone could log in (and relay, by POP-before-SMTP)",
                    ));
                }
                (Some(p), None) => Credential::Plain(p),
                // `doveadm pw` prints `{SCHEME}value`: read as a passwd-file reads it.
                (None, Some(h)) if h.starts_with('{') => crate::passwd_file::credential(&h)
                    .map_err(|e| invalid(format!("{key}.password_hash"), e))?,
                (None, Some(h)) => {
                    let hash = PasswordHash::parse(&h).map_err(|e| {
                        invalid(
                            format!("{key}.password_hash"),
                            format!(
                                "{e}: a crypt string ($argon2id$, $2y$, $6$, $5$, as `openssl passwd -6` prints) or `{{SCHEME}}value` (as `doveadm pw` and `mailbagd pw` print)"
                            ),
                        )
                    })?;
                    Credential::Hash(hash)
                }
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        key,
                        "give either `password` or `password_hash`, not both",
                    ));
                }
                (None, None) => {
                    return Err(invalid(key, "needs `password` or `password_hash`"));
                }
            };
            users.push(User {
                name,
                credential,
                spam_scanning: u.spam_scanning.unwrap_or(true),
                subject_prefix: u.subject_prefix.unwrap_or(true),
                spam_folder: u.spam_folder.unwrap_or_default(),
                passwd_file_line: None,
                quota: u
                    .quota
                    .as_deref()
                    .map(crate::disk_space::parse_size)
                    .transpose()
                    .map_err(|e| invalid(format!("{key}.quota"), &e))?,
                nologin: false,
                allow_nets: Vec::new(),
            });
        }
        if let Some(path) = &raw.userdb.passwd_file {
            let bytes = std::fs::read(path).map_err(|e| {
                invalid(
                    "userdb.passwd_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            // A byte that is not UTF-8 (a Latin-1 full name) spoils only its own
            // line, and only if it is in the name or the password (the parser
            // skips such a line); the other fields are not used.
            let text = String::from_utf8_lossy(&bytes);
            let from_file = passwd_users(
                path,
                &text,
                PasswdContext {
                    seen: &mut names,
                    reserved: &reserved,
                    local_domains: Some(&local_domains),
                },
                bad_lines,
                &mut skipped,
                &mut unusable_users,
            )?;
            drop(text);
            if users.is_empty() {
                users = from_file;
            } else {
                users.extend(from_file);
            }
            if users.is_empty() {
                let why: String = skipped
                    .iter()
                    .take(20)
                    .map(|line| format!("\n  {line}"))
                    .collect();
                return Err(invalid(
                    "userdb.passwd_file",
                    format!("{} has no users{why}", path.display()),
                ));
            }
        }
        let postmaster = match raw.postmaster {
            Some(p) => match users.iter().find(|u| u.name.as_str() == p) {
                Some(u) => u.name.clone(),
                None => {
                    return Err(invalid(
                        "postmaster",
                        format!("{p:?} is not a configured user"),
                    ));
                }
            },
            None => match users.first() {
                Some(u) => u.name.clone(),
                None => return Err(invalid("users", "at least one [[users]] entry is required")),
            },
        };

        let by_name = users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.name.as_str().to_ascii_lowercase(), i))
            .collect();
        let userdb = UserdbConfig {
            case_insensitive: raw.userdb.case_insensitive.unwrap_or(true),
            passwd_file: raw.userdb.passwd_file,
            check_interval: nonzero(
                "userdb.check_interval",
                raw.userdb.check_interval,
                DEFAULT_CHECK_INTERVAL,
            )?,
        };
        if raw.server.group.is_some() && raw.server.user.is_none() {
            return Err(invalid("server.group", "needs `server.user`"));
        }
        let proxy = ProxyConfig {
            trusted_networks: raw
                .proxy
                .trusted_networks
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    n.parse()
                        .map_err(|e| invalid(format!("proxy.trusted_networks[{i}]"), e))
                })
                .collect::<Result<_, _>>()?,
            header_timeout: nonzero(
                "proxy.header_timeout",
                raw.proxy.header_timeout,
                crate::proxy::DEFAULT_HEADER_TIMEOUT,
            )?,
        };
        if let Some(url) = &raw.cluster.redis {
            redis::Client::open(url.as_str())
                .map_err(|e| invalid("cluster.redis", format!("{url:?}: {e}")))?;
        }
        let cluster = ClusterConfig {
            redis: raw.cluster.redis,
            redis_timeout: nonzero(
                "cluster.redis_timeout",
                raw.cluster.redis_timeout,
                DEFAULT_REDIS_TIMEOUT,
            )?,
            lock_lease: nonzero(
                "cluster.lock_lease",
                raw.cluster.lock_lease,
                DEFAULT_LOCK_LEASE,
            )?,
            ping_interval: nonzero(
                "cluster.ping_interval",
                raw.cluster.ping_interval,
                DEFAULT_PING_INTERVAL,
            )?,
        };
        if cluster.redis.is_some() && cluster.lock_lease <= cluster.redis_timeout * 3 {
            return Err(invalid(
                "cluster.lock_lease",
                "must be more than three times cluster.redis_timeout (it is renewed every third)",
            ));
        }
        let config = Config {
            cluster,
            proxy,
            server: ServerConfig {
                user: raw.server.user,
                group: raw.server.group,
            },
            metrics: MetricsConfig {
                listen: metrics_listen,
            },
            client_settings: ClientSettingsConfig {
                server: raw
                    .client_settings
                    .server
                    .as_deref()
                    .map(|s| parse_domain("client_settings.server", s))
                    .transpose()?,
                pop3: endpoints("client_settings.pop3", raw.client_settings.pop3)?,
                smtp: endpoints("client_settings.smtp", raw.client_settings.smtp)?,
            },
            hostname,
            local_domains,
            data_dir,
            postmaster,
            pop3,
            smtp,
            tls,
            pop_before_smtp,
            spam,
            relay,
            limits,
            web,
            login,
            userdb,
            dummies: Dummies::for_users(&users),
            users,
            by_name,
            unusable_users,
            path: None,
        };
        Ok((config, skipped))
    }

    /// The login check of every service (POP3 USER/PASS and SASL, the web
    /// page): the user [`Config::user`] finds for `name` if `password` is
    /// theirs.
    ///
    /// Equal work for every failed login, so that timing does not tell
    /// which user names exist: an unknown user name's password is checked
    /// against a dummy hash with the scheme and rounds of the costliest
    /// configured hash (made once, at load) and compared with a dummy
    /// clear-text password as long as the longest configured one; a user
    /// with a clear-text password also pays for the dummy hash. (A user
    /// whose hash is cheaper than the costliest one is answered sooner: give
    /// every user the same scheme and rounds.)
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbagd::config::Config;
    ///
    /// let config = Config::from_toml_str(
    ///     "[[users]]\nname = \"joe\"\npassword = \"secret\"\n",
    /// ).unwrap();
    /// assert_eq!(config.authenticate("joe", b"secret").map(|u| u.name.as_str()), Some("joe"));
    /// assert!(config.authenticate("joe", b"wrong").is_none());
    /// assert!(config.authenticate("nobody", b"secret").is_none());
    /// ```
    pub fn authenticate(&self, name: &str, password: &[u8]) -> Option<&User> {
        let dummies = &self.dummies;
        match self.user(name) {
            Some(u) => {
                let ok = u.credential.verify(password);
                // A clear-text password costs nothing: pay for the costliest
                // hash as an unknown user does.
                if let (Credential::Plain(_), Some(hash)) = (&u.credential, &dummies.hash) {
                    let _ = std::hint::black_box(hash.verify(password));
                }
                ok.then_some(u)
            }
            None => {
                if let Some(hash) = &dummies.hash {
                    let _ = std::hint::black_box(hash.verify(password));
                }
                let _ = std::hint::black_box(dummies.plain.verify(password));
                None
            }
        }
    }

    /// The scheme and rounds of the dummy hash an unknown user name's
    /// password is checked against: those of the costliest configured hash
    /// (`None` when every user has a clear-text password).
    pub fn unknown_user_hash_cost(&self) -> Option<HashCost> {
        self.dummies.hash.as_ref().and_then(Credential::hash_cost)
    }

    /// Finds a user by mailbox name: in any letter case when
    /// `[userdb] case_insensitive` (the default), else exactly. One hash
    /// lookup, however many users there are.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbagd::config::Config;
    /// let users = "[[users]]\nname = \"Joe\"\npassword = \"x\"\n";
    /// let config = Config::from_toml_str(users).unwrap();
    /// assert_eq!(config.user("JOE").map(|u| u.name.as_str()), Some("Joe"));
    /// let exact = Config::from_toml_str(&format!("[userdb]\ncase_insensitive = false\n{users}")).unwrap();
    /// assert!(exact.user("joe").is_none());
    /// assert!(exact.user("Joe").is_some());
    /// ```
    pub fn user(&self, name: &str) -> Option<&User> {
        let u = self
            .by_name
            .get(&name.to_ascii_lowercase())
            .and_then(|&i| self.users.get(i))?;
        (self.userdb.case_insensitive || u.name.as_str() == name).then_some(u)
    }

    /// Whether `name` (any letter case) has a passwd-file line that was
    /// skipped for an unusable entry (a password scheme mailbagd does not
    /// read, a bad extra-field value, bytes that are not UTF-8) and no usable
    /// one: mail for it is a local fault, answered `451 4.3.5` so that the
    /// sender retries once the line is fixed, not `550` (the user exists).
    pub fn is_unusable_user(&self, name: &str) -> bool {
        self.user(name).is_none() && self.unusable_users.contains(&name.to_ascii_lowercase())
    }

    /// Where this host keeps its POP-before-SMTP logins over a restart
    /// ([`crate::relay_table_file`]), or `None`: the table is in Redis
    /// (`[cluster] redis`), which keeps it itself.
    pub fn relay_table_file(&self) -> Option<PathBuf> {
        self.cluster.redis.is_none().then(|| {
            self.data_dir
                .join(crate::relay_table_file::RELAY_TABLE_FILE)
        })
    }

    /// Settings that are valid but probably not meant, each as one
    /// sentence: logged as warnings at start-up and printed by `--check`.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(n) = self
            .proxy
            .trusted_networks
            .iter()
            .find(|n| n.is_everything())
        {
            out.push(format!(
                "[proxy] trusted_networks holds every address ({n:?}): any client can send a PROXY header and claim any source address (and so relay after someone else's POP3 login)"
            ));
        }
        if self.pop3.idle_timeout < RFC1939_MIN_AUTOLOGOUT {
            out.push(format!(
                "[pop3] idle_timeout is {}, below RFC 1939's 10-minute minimum for the autologout timer: clients that pause between commands are logged out",
                humantime::format_duration(self.pop3.idle_timeout)
            ));
        }
        out
    }

    /// Is `domain` one of ours? Compared in normalized form (case and a
    /// trailing dot do not matter).
    pub fn is_local_domain(&self, domain: &Domain<'_>) -> bool {
        let d = domain.normalized();
        self.local_domains.iter().any(|l| l.as_str() == d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &str = "[[users]]\nname = \"joe\"\npassword = \"secret\"\n";

    fn names(domains: &[Domain<'_>]) -> Vec<String> {
        domains.iter().map(|d| d.as_str().to_owned()).collect()
    }

    fn domain(d: &str) -> Domain<'_> {
        Domain::try_from(d).unwrap()
    }

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(s)
    }

    #[test]
    fn limits_fitted_at_start_up_are_no_change_for_a_reload() {
        let mut running = parse(USERS).unwrap();
        let l = &mut running.limits;
        l.max_connections = l.max_connections.fit(l.max_connections_defaulted, 100);
        assert_ne!(l.max_connections, MaxConnections::default());
        assert_eq!(parse(USERS).unwrap().restart_keys(), running.restart_keys());
        let changed = parse(&format!("[limits]\nmax_connections = 7\n{USERS}")).unwrap();
        let differ: Vec<_> = changed
            .restart_keys()
            .into_iter()
            .zip(running.restart_keys())
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.0)
            .collect();
        assert_eq!(differ, ["limits.max_connections"]);
        // The default values written out: the same limits, but no longer fitted.
        let written = parse(&format!(
            "[limits.max_connections]\npop3 = 5000\nsmtp = 5000\nsubmission = 500\nweb = 500\n{USERS}"
        ))
        .unwrap();
        assert_eq!(written.limits.max_connections, MaxConnections::default());
        assert!(written.restart_keys() != running.restart_keys());
        // The reloaded configuration keeps the running, fitted limits.
        let mut reloaded = changed;
        reloaded.keep_restart_keys(&running);
        assert_eq!(reloaded.limits, running.limits);
    }

    #[test]
    fn max_connections_integer_table_and_write_timeout() {
        let c = parse(&format!("[limits]\nmax_connections = 7\n{USERS}")).unwrap();
        assert_eq!(c.limits.max_connections, MaxConnections::Shared(7));
        assert_eq!(c.limits.max_connections_defaulted, DefaultedRoles::NONE);
        let c = parse(&format!(
            "[limits]\nwrite_timeout = \"2s\"\nmax_connections = {{ smtp = 3, web = 4 }}\n{USERS}"
        ))
        .unwrap();
        assert_eq!(
            c.limits.max_connections,
            MaxConnections::PerRole(PerRole::new(5_000, 3, 500, 4))
        );
        let d = c.limits.max_connections_defaulted;
        assert!(d.contains(ConnectionClass::Pop3) && d.contains(ConnectionClass::Submission));
        assert!(!d.contains(ConnectionClass::Smtp) && !d.contains(ConnectionClass::Web));
        assert_eq!(c.limits.write_timeout, Duration::from_secs(2));
        let c = parse(&format!(
            "[limits.max_connections]\npop3 = 1\nsubmission = 2\n{USERS}"
        ))
        .unwrap();
        assert_eq!(
            c.limits.max_connections,
            MaxConnections::PerRole(PerRole::new(1, 5_000, 2, 500))
        );
        let d = c.limits.max_connections_defaulted;
        assert!(!d.contains(ConnectionClass::Pop3) && !d.contains(ConnectionClass::Submission));
        assert!(d.contains(ConnectionClass::Smtp) && d.contains(ConnectionClass::Web));
        for (bad, key) in [
            ("max_connections = 0", "limits.max_connections"),
            (
                "max_connections = { smtp = 0 }",
                "limits.max_connections.smtp",
            ),
            ("write_timeout = \"0s\"", "limits.write_timeout"),
        ] {
            let e = parse(&format!("[limits]\n{bad}\n{USERS}")).unwrap_err();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
        assert!(
            parse(&format!(
                "[limits]\nmax_connections = {{ imap = 1 }}\n{USERS}"
            ))
            .is_err()
        );
    }

    #[test]
    fn demo_config_is_valid_and_matches_the_issue() {
        let c = Config::demo().unwrap();
        assert_eq!(c.pop3.listen, vec!["127.0.0.1:1110".parse().unwrap()]);
        assert_eq!(c.smtp.listen, vec!["127.0.0.1:2525".parse().unwrap()]);
        assert_eq!(
            c.smtp.submission_listen,
            vec!["127.0.0.1:5870".parse().unwrap()]
        );
        assert_eq!(c.data_dir, PathBuf::from("mailbag-data"));
        assert_eq!(names(&c.local_domains), ["example.test"]);
        let joe = c.user("joe").unwrap();
        assert!(joe.credential.verify(b"secret"));
        assert!(c.tls.is_none());
    }

    #[test]
    fn production_example_parses_up_to_missing_cert_files() {
        let text = include_str!("../mailbag-production.toml");
        match Config::from_toml_str(text) {
            Ok(c) => assert!(c.tls.is_some()),
            Err(e) => assert!(e.to_string().contains("tls.cert_file"), "{e}"),
        }
    }

    #[test]
    fn defaults() {
        let c = parse(USERS).unwrap();
        assert_eq!(c.hostname.as_str(), "localhost");
        assert_eq!(names(&c.local_domains), ["localhost"]);
        assert_eq!(c.smtp.max_message_size, 26_214_400);
        assert_eq!(c.smtp.max_recipients, 100);
        assert_eq!((c.smtp.max_errors, c.pop3.max_errors), (20, 10));
        for key in ["smtp", "pop3"] {
            let e = parse(&format!("{USERS}[{key}]\nmax_errors = 0\n")).unwrap_err();
            assert!(e.to_string().contains(&format!("{key}.max_errors")), "{e}");
        }
        assert_eq!(c.pop3.idle_timeout, Duration::from_secs(600));
        assert_eq!(c.pop3.auth_failure_delay, Duration::from_secs(1));
        assert_eq!(c.smtp.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.pop_before_smtp.window, Duration::from_secs(1800));
        assert_eq!(c.spam.threshold, 5.0);
        assert_eq!(c.spam.tag_template, "**SPAM( _SCORE_)**");
        assert_eq!(c.spam.sweep_interval, Duration::from_secs(3600));
        assert_eq!(c.relay.queue_dir, PathBuf::from("mailbag-data/queue"));
        assert_eq!(
            c.limits.max_connections,
            MaxConnections::PerRole(PerRole::new(5_000, 5_000, 500, 500))
        );
        assert_eq!(c.limits.max_connections_defaulted, DefaultedRoles::ALL);
        assert_eq!(c.limits.write_timeout, DEFAULT_WRITE_TIMEOUT);
        assert_eq!(c.limits.shutdown_reply_grace, Duration::from_secs(2));
        assert_eq!(c.limits.max_connections_per_ip, 20);
        assert_eq!(c.postmaster.as_str(), "joe");
        let u = &c.users[0];
        assert!(u.spam_scanning && u.subject_prefix);
        assert_eq!(u.spam_folder, SpamFolder::Spam);
    }

    #[test]
    fn quota_file_recount_size_default_and_errors() {
        let c = parse(USERS).unwrap();
        assert_eq!(
            c.limits.quota_file_recount_size,
            mailbag_mailstore::DEFAULT_QUOTA_FILE_RECOUNT_SIZE
        );
        let c = parse(&format!(
            "[limits]\nquota_file_recount_size = \"64K\"\n{USERS}"
        ))
        .unwrap();
        assert_eq!(c.limits.quota_file_recount_size, 64 << 10);
        let e = parse(&format!(
            "[limits]\nquota_file_recount_size = \"big\"\n{USERS}"
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("limits.quota_file_recount_size"),
            "{e}"
        );
    }

    #[test]
    fn spool_memory_default_sizes_and_errors() {
        let c = parse(USERS).unwrap();
        assert_eq!(c.limits.spool_memory, 64 << 20);
        let c = parse(&format!("[limits]\nspool_memory = \"8M\"\n{USERS}")).unwrap();
        assert_eq!(c.limits.spool_memory, 8 << 20);
        let e = parse(&format!("[limits]\nspool_memory = \"lots\"\n{USERS}")).unwrap_err();
        assert!(e.to_string().contains("limits.spool_memory"), "{e}");
    }

    #[test]
    fn min_free_space_default_sizes_and_errors() {
        let c = parse(USERS).unwrap();
        assert_eq!(c.limits.min_free_space, 256 << 20);
        let c = parse(&format!("[limits]\nmin_free_space = \"1G\"\n{USERS}")).unwrap();
        assert_eq!(c.limits.min_free_space, 1 << 30);
        let c = parse(&format!("[limits]\nmin_free_space = \"0\"\n{USERS}")).unwrap();
        assert_eq!(c.limits.min_free_space, 0);
        let e = parse(&format!("[limits]\nmin_free_space = \"lots\"\n{USERS}")).unwrap_err();
        assert!(e.to_string().contains("limits.min_free_space"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_at_every_level() {
        for bad in [
            "colour = 1\n",
            "[pop3]\nlisen = []\n",
            "[smtp]\nport = 25\n",
            "[spam]\nthreshhold = 1.0\n",
            "[limits]\nmax = 1\n",
        ] {
            let err = parse(&format!("{bad}{USERS}")).unwrap_err();
            assert!(err.to_string().contains("unknown field"), "{bad}: {err}");
        }
        let err = parse("[[users]]\nname=\"a\"\npassword=\"b\"\nfolder=\"x\"\n").unwrap_err();
        assert!(err.to_string().contains("folder"), "{err}");
    }

    #[test]
    fn users_are_required() {
        let err = parse("hostname = \"a.test\"\n").unwrap_err();
        assert!(err.to_string().contains("users"), "{err}");
        let err = parse("users = []\n").unwrap_err();
        assert!(err.to_string().contains("at least one"), "{err}");
    }

    #[test]
    fn bad_address_is_reported() {
        let err = parse(&format!("[pop3]\nlisten = [\"127.0.0.1\"]\n{USERS}")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("socket address"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn bad_duration_is_reported() {
        let err = parse(&format!("[spam]\nspam_retention = \"7 dayz\"\n{USERS}")).unwrap_err();
        assert!(err.to_string().contains("invalid duration"), "{err}");
        let err = parse(&format!("[pop_before_smtp]\nwindow = \"0s\"\n{USERS}")).unwrap_err();
        assert!(err.to_string().contains("pop_before_smtp.window"), "{err}");
    }

    #[test]
    fn duplicate_user_is_rejected() {
        let err = parse(&format!(
            "{USERS}[[users]]\nname = \"JOE\"\npassword = \"x\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("duplicate user"), "{err}");
    }

    #[test]
    fn bad_user_names_are_rejected() {
        for name in ["", ".hidden", "a/b", "a b", "../x", "postmaster", "é"] {
            let text = format!("[[users]]\nname = {name:?}\npassword = \"x\"\n");
            assert!(parse(&text).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn missing_cert_file_is_rejected() {
        let text = format!(
            "[tls]\ncert_file = \"/nonexistent/c.pem\"\nkey_file = \"/nonexistent/k.pem\"\n{USERS}"
        );
        let err = parse(&text).unwrap_err();
        assert!(err.to_string().contains("tls.cert_file"), "{err}");
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[test]
    fn tls_listeners_need_tls_section() {
        let err = parse(&format!(
            "[pop3]\ntls_listen = [\"127.0.0.1:995\"]\n{USERS}"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("pop3.tls_listen"), "{err}");
        let err = parse(&format!(
            "[smtp]\ntls_listen = [\"127.0.0.1:465\"]\n{USERS}"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("smtp.tls_listen"), "{err}");
        let err = parse(&format!("[pop3]\nrequire_tls_for_login = true\n{USERS}")).unwrap_err();
        assert!(err.to_string().contains("require_tls_for_login"), "{err}");
    }

    #[test]
    fn duplicate_listen_address_is_rejected() {
        let text = format!(
            "[pop3]\nlisten = [\"127.0.0.1:2000\"]\n[smtp]\nlisten = [\"127.0.0.1:2000\"]\n{USERS}"
        );
        let err = parse(&text).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
        // The metrics and policy listeners count too (a clash passed --check
        // and failed at start-up).
        for (table, key) in [("metrics", "listen"), ("pop_before_smtp", "policy_listen")] {
            let text = format!(
                "[pop3]\nlisten = [\"127.0.0.1:2000\"]\n[{table}]\n{key} = \"127.0.0.1:2000\"\n{USERS}"
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{table}.{key}")) && err.contains("listed twice"),
                "{err}"
            );
        }
        let err = parse(&format!("[metrics]\nlisten = \"localhost\"\n{USERS}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("IP address and port such as"), "{err}");
    }

    #[test]
    fn password_and_hash() {
        // `openssl passwd -6 -salt saltsalt secret`
        let hash = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
        let c = parse(&format!(
            "[[users]]\nname = \"ann\"\npassword_hash = \"{hash}\"\n"
        ))
        .unwrap();
        assert!(c.users[0].credential.verify(b"secret"));
        assert!(!c.users[0].credential.verify(b"Secret"));
        assert!(!c.users[0].credential.verify(b""));
        // As `doveadm pw -s SHA512-CRYPT` prints it (a probe's was refused), and with
        // Dovecot's encoding suffix.
        let c = parse(&format!(
            "[[users]]\nname = \"ann\"\npassword_hash = '{{SHA512-CRYPT}}{hash}'\n\
             [[users]]\nname = \"bob\"\npassword_hash = '{{SHA256.HEX}}\
             2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b'\n"
        ))
        .unwrap();
        assert!(c.users[0].credential.verify(b"secret"));
        assert!(c.users[1].credential.verify(b"secret"));
        assert!(!c.users[1].credential.verify(b"Secret"));
        let err = parse("[[users]]\nname = \"ann\"\npassword_hash = '{NOPE}x'\n").unwrap_err();
        assert!(err.to_string().contains("users[0].password_hash"), "{err}");

        let err = parse("[[users]]\nname = \"ann\"\npassword_hash = \"plain\"\n").unwrap_err();
        assert!(err.to_string().contains("password_hash"), "{err}");
        let err = parse("[[users]]\nname = \"ann\"\n").unwrap_err();
        assert!(err.to_string().contains("needs `password`"), "{err}");
        let err = parse(&format!(
            "[[users]]\nname = \"ann\"\npassword = \"x\"\npassword_hash = \"{hash}\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        let err = parse("[[users]]\nname = \"ann\"\npassword = \"\"\n").unwrap_err();
        assert!(
            err.to_string().contains("users[0].password") && err.to_string().contains("empty"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = parse("[[users]]\nname = \"joe\"\npassword = \"hunter2-pw\"\n").unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn spam_folder_values() {
        let c =
            parse("[[users]]\nname = \"a\"\npassword = \"b\"\nspam_folder = \"INBOX\"\n").unwrap();
        assert_eq!(c.users[0].spam_folder, SpamFolder::Inbox);
        assert!(
            parse("[[users]]\nname = \"a\"\npassword = \"b\"\nspam_folder = \"Junk\"\n").is_err()
        );
    }

    /// `[cluster] ping_interval`: 10 s by default, configurable, nonzero.
    #[test]
    fn cluster_ping_interval() {
        assert_eq!(
            parse(USERS).unwrap().cluster.ping_interval,
            Duration::from_secs(10)
        );
        let c = parse(&format!("[cluster]\nping_interval = \"3s\"\n{USERS}")).unwrap();
        assert_eq!(c.cluster.ping_interval, Duration::from_secs(3));
        assert!(parse(&format!("[cluster]\nping_interval = \"0s\"\n{USERS}")).is_err());
    }

    /// The protocol sessions refuse an `idle_timeout` over a week (its
    /// deadline might overflow the clock): so does the configuration, at
    /// start-up, naming the key, rather than every connection.
    #[test]
    fn the_tls_handshake_timeout_is_at_most_ten_minutes() {
        let err = parse(&format!(
            "[limits]\ntls_handshake_timeout = \"100d\"\n{USERS}"
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("limits.tls_handshake_timeout")
                && err.to_string().contains("at most 10m"),
            "{err}"
        );
        let ok = parse(&format!(
            "[limits]\ntls_handshake_timeout = \"10m\"\n{USERS}"
        ))
        .unwrap();
        assert_eq!(ok.limits.tls_handshake_timeout, MAX_TLS_HANDSHAKE_TIMEOUT);
    }

    #[test]
    fn session_idle_timeouts_are_at_most_a_week() {
        for key in ["pop3", "smtp"] {
            let err = parse(&format!("[{key}]\nidle_timeout = \"8days\"\n{USERS}")).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{key}.idle_timeout"))
                    && err.to_string().contains("at most 7days"),
                "{err}"
            );
            assert!(parse(&format!("[{key}]\nidle_timeout = \"7days\"\n{USERS}")).is_ok());
        }
    }

    #[test]
    fn local_domains_are_normalised_and_checked() {
        let c = parse(&format!("local_domains = [\"Example.TEST.\"]\n{USERS}")).unwrap();
        assert!(c.is_local_domain(&domain("example.test")));
        assert!(parse(&format!("local_domains = [\"bad domain\"]\n{USERS}")).is_err());
        assert!(parse(&format!("local_domains = []\n{USERS}")).is_err());
    }

    #[test]
    fn queue_dir_must_not_be_a_users_maildir() {
        let err = parse("[[users]]\nname = \"queue\"\npassword = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("relay.queue_dir"), "{err}");
        let ok = parse(
            "[relay]\nqueue_dir = \"/var/spool/q\"\n[[users]]\nname = \"queue\"\npassword = \"x\"\n",
        );
        assert!(ok.is_ok());
        let err =
            parse("[[users]]\nname = \"mailbag-web-secret\"\npassword = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("web.secret_file"), "{err}");
    }

    /// A passwd-file of Dovecot's virtual users names them `user@domain`:
    /// such a name of a local domain is the user `user` (in every letter
    /// case, mail and logins as for a plain name); another domain is a bad
    /// line naming the problem. Two lines for one user in different
    /// spellings (`zed@example.test` and `ZED`, or two local domains): neither
    /// is used and the user's mail is deferred, so that neither gets the
    /// other's (a review found the second skipped and its mail delivered to
    /// the first).
    #[test]
    fn user_at_local_domain_names_in_a_passwd_file() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "joe@example.test:{PLAIN}a\nAnn@Example.TEST.:{PLAIN}b\nbob@elsewhere.test:{PLAIN}c\n\
             zed@example.test:{PLAIN}d\neve@bad..domain:{PLAIN}e\nZED:{PLAIN}f\n\
             kim@example.test:{PLAIN}g\nkim@other.test:{PLAIN}h\n",
        )
        .unwrap();
        let file = dir.path().join("mailbag.toml");
        std::fs::write(
            &file,
            format!(
                "data_dir = \"{}\"\nlocal_domains = [\"example.test\", \"other.test\"]\n\
                 [userdb]\npasswd_file = \"{}\"\n",
                dir.path().join("data").display(),
                passwd.display()
            ),
        )
        .unwrap();
        let (config, skipped) = Config::load_skipping(&file).unwrap();
        let names: Vec<&str> = config.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["joe", "Ann"]);
        assert_eq!(skipped.len(), 6, "{skipped:?}");
        let line = |n: usize| {
            skipped
                .iter()
                .find(|l| l.contains(&format!("line {n}:")))
                .unwrap()
        };
        assert!(
            line(3).contains("\"elsewhere.test\" is not one of `local_domains`"),
            "{skipped:?}"
        );
        assert!(line(5).contains("bad..domain"), "{skipped:?}");
        for n in [4, 6, 7, 8] {
            assert!(
                line(n).contains("another line names the user"),
                "{skipped:?}"
            );
        }
        assert!(config.is_unusable_user("zed") && config.is_unusable_user("kim"));
        assert!(config.authenticate("joe", b"a").is_some());
        assert!(config.authenticate("ann", b"b").is_some());
        // What `mailbagd user add` asks before adding.
        assert!(
            config
                .refuses_new_user("JOE@example.test")
                .unwrap()
                .contains("already")
        );
        assert!(config.refuses_new_user("zoe@example.test").is_none());
        assert!(
            config
                .refuses_new_user("zoe@elsewhere.test")
                .unwrap()
                .contains("local_domains")
        );
        // Without a configuration (`mailbagd user list --file`) any domain is taken.
        let (users, bad) = passwd_file_users(&passwd, &std::fs::read_to_string(&passwd).unwrap());
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["joe", "Ann", "bob"], "{bad:?}");
    }

    /// A passwd-file line with a name the server keeps files at is a bad
    /// line: the strict load refuses it, and start-up and a reload skip it alone (the other
    /// users, and users added after it, keep working).
    #[test]
    fn reserved_names_are_bad_passwd_file_lines() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "joe:{PLAIN}a\nqueue:{PLAIN}b\nmailbag-web-secret:{PLAIN}c\nbob:{PLAIN}d\n",
        )
        .unwrap();
        let file = dir.path().join("mailbag.toml");
        std::fs::write(
            &file,
            format!(
                "data_dir = \"{}\"\n[[users]]\nname = \"ann\"\npassword = \"x\"\n\
                 [userdb]\npasswd_file = \"{}\"\n",
                dir.path().join("data").display(),
                passwd.display()
            ),
        )
        .unwrap();
        let err = Config::load(&file).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("relay.queue_dir"),
            "{err}"
        );
        assert!(
            err.contains("line 3") && err.contains("web.secret_file"),
            "{err}"
        );
        let (config, skipped) = Config::load_skipping(&file).unwrap();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        let names: Vec<&str> = config.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["ann", "joe", "bob"]);
        // What `mailbagd user add` asks before adding.
        assert!(
            config
                .refuses_new_user("queue")
                .unwrap()
                .contains("relay.queue_dir")
        );
        assert!(
            config
                .refuses_new_user("ANN")
                .unwrap()
                .contains("[[users]]")
        );
        assert!(config.refuses_new_user("Bob").unwrap().contains("line 4"));
        assert!(config.refuses_new_user("QUEUE").is_some());
        assert_eq!(config.refuses_new_user("eve"), None);
    }

    #[test]
    fn postmaster_must_be_a_user() {
        assert!(parse(&format!("postmaster = \"nobody\"\n{USERS}")).is_err());
        let c = parse(&format!("postmaster = \"joe\"\n{USERS}")).unwrap();
        assert_eq!(c.postmaster.as_str(), "joe");
    }

    #[test]
    fn web_defaults_and_demo() {
        let c = parse(USERS).unwrap();
        let w = &c.web;
        assert_eq!(w.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert!(!w.tls);
        assert_eq!(w.session_idle_timeout, Duration::from_secs(1800));
        assert_eq!(w.session_lifetime, Duration::from_secs(12 * 3600));
        assert_eq!(w.max_sessions, 10_000);
        assert_eq!(w.max_sessions_per_user, 20);
        assert_eq!(w.login_failure_delay, Duration::from_secs(1));
        assert_eq!(w.page_size, 50);
        assert_eq!(w.max_header_read, 65_536);
        assert_eq!(w.max_request_body, 16_384);
        assert_eq!(w.request_timeout, Duration::from_secs(30));
        assert_eq!(w.max_request_head, 65_536);
        // The demo config spells out the same values.
        assert_eq!(&Config::demo().unwrap().web, w);
        let off = parse(&format!("[web]\nlisten = []\n{USERS}")).unwrap();
        assert!(off.web.listen.is_empty());
    }

    #[test]
    fn bad_web_values_are_rejected() {
        for (bad, key) in [
            ("tls = true", "web.tls"),
            ("page_size = 0", "web.page_size"),
            ("page_size = 1001", "web.page_size"),
            ("max_sessions = 0", "web.max_sessions"),
            ("login_attempts_per_ip = 0", "web.login_attempts_per_ip"),
            ("session_lifetime = \"0s\"", "web.session_lifetime"),
            ("max_request_body = 10", "web.max_request_body"),
            ("max_request_head = 100", "web.max_request_head"),
            ("login_failure_delay = \"30s\"", "web.login_failure_delay"),
            ("listen = [\"127.0.0.1:1110\"]", "listed twice"),
            ("colour = 1", "unknown field"),
        ] {
            let err = parse(&format!("[web]\n{bad}\n{USERS}")).unwrap_err();
            assert!(err.to_string().contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn login_limiter_keys_defaults_overrides_and_checks() {
        let c = parse(USERS).unwrap();
        let l = &c.login;
        assert_eq!(l.failures_before_lockout, 5);
        assert_eq!(l.lockout, Duration::from_secs(900));
        assert_eq!(l.failure_delay, Duration::from_secs(1));
        assert_eq!(l.max_tracked, 100_000);
        assert_eq!(&Config::demo().unwrap().login, l);
        // The base applies to both services unless a service overrides it.
        let c = parse(&format!(
            "[login]\nfailure_delay = \"3s\"\nfailures_before_lockout = 3\n{USERS}"
        ))
        .unwrap();
        assert_eq!(c.pop3.auth_failure_delay, Duration::from_secs(3));
        assert_eq!(c.web.login_failure_delay, Duration::from_secs(3));
        let c = parse(&format!("[pop3]\nauth_failure_delay = \"0s\"\n{USERS}")).unwrap();
        assert_eq!(c.pop3.auth_failure_delay, Duration::ZERO);
        assert_eq!(c.web.login_failure_delay, Duration::from_secs(1));
        for (bad, key) in [
            (
                "[login]\nfailures_before_lockout = 0",
                "login.failures_before_lockout",
            ),
            ("[login]\nlockout = \"0s\"", "login.lockout"),
            ("[login]\nmax_tracked = 1", "login.max_tracked"),
            ("[login]\nretries = 1", "unknown field"),
            // The longest web delay (5 x 7s) must fit in the request timeout.
            ("[login]\nfailure_delay = \"7s\"", "web.login_failure_delay"),
            // The web page's old rate-limit keys name their replacement.
            (
                "[web]\nlogin_attempts_per_ip = 3",
                "login.failures_before_lockout",
            ),
            ("[web]\nlogin_window = \"1m\"", "login.lockout"),
            ("[web]\nmax_tracked_addresses = 9", "login.max_tracked"),
        ] {
            let err = parse(&format!("{bad}\n{USERS}")).unwrap_err();
            assert!(err.to_string().contains(key), "{bad}: {err}");
        }
    }

    /// A `$5$`/`$6$` hash with these rounds (a valid form; no password matches).
    fn hash(id: u8, rounds: u32) -> String {
        let n = if id == 5 { 43 } else { 86 };
        format!("${id}$rounds={rounds}$saltsalt${}", ".".repeat(n))
    }

    #[test]
    fn unknown_users_are_checked_against_the_costliest_hash() {
        let users = |a: &str, b: &str| {
            format!(
                "[[users]]\nname = \"p\"\npassword = \"a-long-clear-text-password\"\n\
                 [[users]]\nname = \"a\"\npassword_hash = \"{a}\"\n\
                 [[users]]\nname = \"b\"\npassword_hash = \"{b}\"\n"
            )
        };
        let cost = |text: &str| parse(text).unwrap().unknown_user_hash_cost();
        let sha512_10k = Some(HashCost::ShaCrypt {
            scheme: crate::credentials::HashScheme::Sha512Crypt,
            rounds: 10_000,
        });
        // The costliest, whatever the order of the users.
        assert_eq!(cost(&users(&hash(5, 5000), &hash(6, 10_000))), sha512_10k);
        assert_eq!(cost(&users(&hash(6, 10_000), &hash(5, 5000))), sha512_10k);
        // Without `rounds=`: 5000.
        let c = cost(&users(&hash(5, 5000), SECRET_HASH)).unwrap();
        assert_eq!(
            c,
            HashCost::ShaCrypt {
                scheme: crate::credentials::HashScheme::Sha512Crypt,
                rounds: 5000
            }
        );
        // More rounds of SHA-256 can cost more than SHA-512.
        let c = cost(&users(&hash(5, 40_000), &hash(6, 10_000))).unwrap();
        assert_eq!(c.scheme(), crate::credentials::HashScheme::Sha256Crypt);
        // Only clear-text passwords: no hash work at all.
        assert_eq!(cost(USERS), None);
        let c = parse(&users(&hash(5, 5000), &hash(6, 10_000))).unwrap();
        // The dummy clear text is as long as the longest configured password.
        assert!(c.dummies.plain.verify(&[0; 26]));
        assert!(
            c.authenticate("nobody", b"a-long-clear-text-password")
                .is_none()
        );
        assert!(c.authenticate("p", b"a-long-clear-text-password").is_some());
        // Rounds outside what SHA-crypt accepts are refused at load.
        for bad in [hash(6, 999), hash(5, 1_000_000_000)] {
            let err = parse(&format!(
                "[[users]]\nname = \"x\"\npassword_hash = \"{bad}\"\n"
            ))
            .unwrap_err();
            assert!(
                err.to_string().contains("cost parameters out of range"),
                "{err}"
            );
        }
    }

    #[test]
    fn policy_listen_takes_one_address_or_a_list() {
        assert!(
            parse(USERS)
                .unwrap()
                .pop_before_smtp
                .policy_listen
                .is_empty()
        );
        let one = parse(&format!(
            "[pop_before_smtp]\npolicy_listen = \"127.0.0.1:10040\"\n{USERS}"
        ))
        .unwrap();
        assert_eq!(
            one.pop_before_smtp.policy_listen,
            ["127.0.0.1:10040".parse().unwrap()]
        );
        let many = parse(&format!(
            "[pop_before_smtp]\npolicy_listen = [\"127.0.0.1:1\", \"[::1]:2\"]\n{USERS}"
        ))
        .unwrap();
        assert_eq!(many.pop_before_smtp.policy_listen.len(), 2);
        assert!(
            parse(&format!(
                "[pop_before_smtp]\npolicy_listen = \"nowhere\"\n{USERS}"
            ))
            .is_err()
        );
    }

    #[test]
    fn uidl_formats() {
        assert_eq!(
            parse(USERS).unwrap().pop3.uidl_format,
            UidlFormat::UidValidity
        );
        let c = parse(&format!("[pop3]\nuidl_format = \"%v-%u\"\n{USERS}")).unwrap();
        assert_eq!(c.pop3.uidl_format, UidlFormat::ValidityDashUid);
        let c = parse(&format!("[pop3]\nuidl_format = \"%g\"\n{USERS}")).unwrap();
        assert_eq!(c.pop3.uidl_format, UidlFormat::BaseName);
        let err = parse(&format!("[pop3]\nuidl_format = \"%Mf\"\n{USERS}")).unwrap_err();
        assert!(err.to_string().contains("pop3.uidl_format"), "{err}");
        assert!(err.to_string().contains("%v.%u"), "{err}");
    }

    #[test]
    fn spam_login_suffix_and_userdb() {
        let c = parse(USERS).unwrap();
        assert_eq!(c.pop3.spam_login_suffix, "/Spam");
        assert!(c.userdb.case_insensitive);
        let c = parse(&format!(
            "[pop3]\nspam_login_suffix = \"\"\n[userdb]\ncase_insensitive = false\n{USERS}"
        ))
        .unwrap();
        assert_eq!(c.pop3.spam_login_suffix, "");
        assert!(!c.userdb.case_insensitive);
        assert!(c.user("Joe").is_none());
        for bad in ["Spam", "/", "/a b", "/é", &format!("/{}", "x".repeat(33))] {
            let err = parse(&format!("[pop3]\nspam_login_suffix = {bad:?}\n{USERS}")).unwrap_err();
            assert!(
                err.to_string().contains("pop3.spam_login_suffix"),
                "{bad:?}: {err}"
            );
        }
    }

    const SECRET_HASH: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

    #[test]
    fn authenticate_is_the_one_login_check() {
        let c = parse(&format!(
            "{USERS}[[users]]\nname = \"ann\"\npassword_hash = \"$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.authenticate("joe", b"secret").unwrap().name.as_str(),
            "joe"
        );
        assert_eq!(
            c.authenticate("ann", b"secret").unwrap().name.as_str(),
            "ann"
        );
        assert!(c.authenticate("ann", b"Secret").is_none());
        // `[userdb] case_insensitive` is on by default.
        assert_eq!(
            c.authenticate("JOE", b"secret").map(|u| u.name.as_str()),
            Some("joe")
        );
        assert!(c.authenticate("nobody", b"secret").is_none());
        assert!(c.authenticate("", b"").is_none());
    }

    const USER: &str = "[[users]]\nname = \"joe\"\npassword = \"x\"\n";

    #[test]
    fn relay_defaults() {
        let c = parse(USER).unwrap();
        let r = &c.relay;
        assert_eq!(r.smarthost, None);
        assert_eq!(r.max_queue_age, Duration::from_secs(5 * 86400));
        assert_eq!(r.delay_warning, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(r.concurrency, 4);
        assert_eq!(r.max_connections, 20);
        assert_eq!(r.connect_timeout, Duration::from_secs(30));
        assert_eq!(r.command_timeout, None);
        assert_eq!(r.helo_name, "localhost");
        assert!(r.starttls);
        assert_eq!(r.dns_server, None);
        assert_eq!(r.mx_port, 25);
        assert_eq!(r.scan_interval, Duration::from_secs(10));
        assert_eq!(r.retry_schedule.max_age(), Duration::from_secs(5 * 86400));
    }

    #[test]
    fn relay_keys_are_parsed_and_checked() {
        let c = parse(&format!(
            "[relay]\nsmarthost = \"relay.isp.example:587\"\nretry_schedule = \"1m, 1h\"\n\
             max_queue_age = \"2d\"\ndelay_warning = \"0s\"\nconcurrency = 2\n\
             helo_name = \"out.example.org\"\nstarttls = false\n{USER}"
        ))
        .unwrap();
        assert_eq!(
            c.relay.smarthost,
            Some(Smarthost {
                host: "relay.isp.example".into(),
                port: 587
            })
        );
        assert_eq!(c.relay.retry_schedule.intervals(), [60, 3600]);
        assert_eq!(
            c.relay.retry_schedule.max_age(),
            Duration::from_secs(2 * 86400)
        );
        assert_eq!(c.relay.delay_warning, None);
        assert!(!c.relay.retry_schedule.delay_warning_due(0, 86400));
        assert_eq!(c.relay.concurrency, 2);
        assert!(!c.relay.starttls);
        let ip = parse(&format!("[relay]\nsmarthost = \"[::1]:2525\"\n{USER}")).unwrap();
        assert_eq!(ip.relay.smarthost.map(|s| s.host), Some("::1".to_string()));

        for (bad, key) in [
            ("smarthost = \"no-port\"", "relay.smarthost"),
            ("smarthost = \"host:0\"", "relay.smarthost"),
            ("smarthost = \"bad host:25\"", "relay.smarthost"),
            ("retry_schedule = \"soon\"", "relay.retry_schedule"),
            ("concurrency = 0", "relay.concurrency"),
            ("max_connections = 0", "relay.max_connections"),
            ("max_queue_age = \"0s\"", "relay.max_queue_age"),
            ("helo_name = \"two words\"", "relay.helo_name"),
            ("mx_port = 0", "relay.mx_port"),
        ] {
            let err = parse(&format!("[relay]\n{bad}\n{USER}")).unwrap_err();
            assert!(err.to_string().contains(key), "{bad}: {err}");
        }
    }
}
