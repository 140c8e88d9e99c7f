//! A tokio client for spamd (feature `spamd`), built on the sans-IO [`crate::spamc`] codec.
//!
//! One request per TCP connection (spamd closes after each reply). Every stage is bounded:
//! connect by [`SpamdOptions::connect_timeout`], the request's write by
//! [`SpamdOptions::write_timeout`], the whole reply by [`SpamdOptions::read_timeout`]
//! (however slowly it trickles in), and the reply's size by [`SpamdOptions::limits`].
//!
//! # Failure policy
//!
//! [`SpamdClient::scan`] is what a delivery path calls. When spamd cannot be used
//! (connection refused, timeout, protocol error, non-zero status), it follows
//! [`SpamdOptions::fail_mode`]:
//! - [`FailMode::Open`] (the default): `Ok(ScanOutcome::Unscanned { .. })` — deliver the
//!   message unscored. With [`crate::decide`] that means INBOX and
//!   [`crate::HeaderAction::Unscanned`], which adds `X-Spam-Status: Unknown, not scanned`.
//!   Mail keeps flowing when spamd is down; spam may get through meanwhile.
//! - [`FailMode::Closed`]: `Err(SpamdError)` — the caller should answer the SMTP
//!   transaction with a temporary failure (`451 4.7.1`) so that the sender retries later.
//!   No unscanned mail gets in; no mail is lost either, the sender keeps it.
//!
//! Messages over [`SpamdOptions::max_message_size`] are never sent (like spamc's `-s`
//! limit): `scan` returns `Unscanned` whatever the fail mode, since big messages are
//! rarely spam and refusing them would lose mail.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::score::Verdict;
use crate::spamc::{
    RequestHead, Response, ResponseReader, SpamResult, SpamcError, SpamcLimits, StatusCode,
    UserName, Verb, encode_request_head,
};

/// What [`SpamdClient::scan`] does when spamd cannot be used (see the
/// [module docs](self#failure-policy)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailMode {
    /// Deliver unscored (the default).
    #[default]
    Open,
    /// Return the error, so the caller can answer with a temporary failure.
    Closed,
}

/// Options of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpamdOptions {
    /// spamd's address. Default: `127.0.0.1:783` (spamd's default port).
    pub addr: SocketAddr,
    /// Time allowed to connect. Default: 5 s.
    pub connect_timeout: Duration,
    /// Time allowed for writing the whole request. Default: 30 s.
    pub write_timeout: Duration,
    /// Time allowed for reading the whole reply, from the end of the request to the
    /// reply's last octet (spamd takes ~0.2 s for 10 KB on a small VM, more with network
    /// tests). Default: 60 s.
    pub read_timeout: Duration,
    /// Largest message sent to spamd; larger ones are not scanned. Default: 512,000 bytes
    /// (spamc's default `-s` limit is 500 KiB).
    pub max_message_size: usize,
    /// The `User:` header (whose spamd preferences apply). Default: none.
    pub user: Option<String>,
    /// What [`SpamdClient::scan`] does when spamd fails. Default: [`FailMode::Open`].
    pub fail_mode: FailMode,
    /// Codec limits for the reply. Default: [`SpamcLimits::default`].
    pub limits: SpamcLimits,
}

impl Default for SpamdOptions {
    fn default() -> Self {
        SpamdOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 783)),
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            max_message_size: 512_000,
            user: None,
            fail_mode: FailMode::Open,
            limits: SpamcLimits::default(),
        }
    }
}

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpamdError {
    /// spamd could not be reached (not running, refused, unreachable).
    #[error("spamd at {addr} is unavailable: {source}")]
    Unavailable {
        /// The address tried.
        addr: SocketAddr,
        /// The connect error.
        source: std::io::Error,
    },
    /// A stage took longer than its timeout.
    #[error("spamd {stage} timed out after {after:?}")]
    Timeout {
        /// `connect`, `write` or `read`.
        stage: &'static str,
        /// The timeout that expired.
        after: Duration,
    },
    /// An I/O error on an established connection.
    #[error("spamd I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The reply broke the protocol.
    #[error("bad reply from spamd: {0}")]
    Protocol(#[from] SpamcError),
    /// spamd answered with a non-zero status.
    #[error("spamd answered {code}: {text}", code = .code.0)]
    Status {
        /// The status code.
        code: StatusCode,
        /// The status text.
        text: String,
    },
    /// A successful reply without the expected `Spam:` header or `PONG`.
    #[error("spamd reply lacks {0}")]
    Incomplete(&'static str),
    /// The message is larger than [`SpamdOptions::max_message_size`].
    #[error("message of {size} bytes is over the {max}-byte scan limit")]
    TooLarge {
        /// The message size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The configured user name is not a valid spamd user name.
    #[error("invalid spamd user name")]
    BadUser,
}

/// The outcome of [`SpamdClient::scan`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ScanOutcome {
    /// spamd scored the message.
    Scored {
        /// Score and rules.
        verdict: Verdict,
        /// spamd's own verdict line (its threshold may differ from the user's).
        spamd: SpamResult,
    },
    /// Not scanned: too large, or spamd failed under [`FailMode::Open`].
    Unscanned {
        /// Why.
        reason: SpamdError,
    },
}

impl ScanOutcome {
    /// The verdict, for [`crate::decide`] (`None` when not scanned).
    pub fn verdict(&self) -> Option<&Verdict> {
        match self {
            ScanOutcome::Scored { verdict, .. } => Some(verdict),
            ScanOutcome::Unscanned { .. } => None,
        }
    }
}

/// The spamd client.
///
/// # Examples
///
/// ```no_run
/// use mailbag_spam_tag::spamd::{SpamdClient, SpamdOptions};
///
/// # async fn run() {
/// let mut opts = SpamdOptions::default();
/// opts.addr = "127.0.0.1:7830".parse().unwrap();
/// let client = SpamdClient::new(opts);
/// let outcome = client.scan(b"Subject: hi\r\n\r\nhello\r\n").await;
/// # let _ = outcome;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SpamdClient {
    options: SpamdOptions,
}

impl SpamdClient {
    /// A client with the given options.
    pub fn new(options: SpamdOptions) -> SpamdClient {
        SpamdClient { options }
    }

    /// The options.
    pub fn options(&self) -> &SpamdOptions {
        &self.options
    }

    /// Sends one request (`message` is ignored for `PING` and `SKIP`) and reads the reply.
    /// A non-zero status is returned as a response, not as an error.
    pub async fn request(&self, verb: Verb, message: &[u8]) -> Result<Response, SpamdError> {
        let o = &self.options;
        let user = match &o.user {
            Some(u) => Some(UserName::new(u.as_str()).map_err(|_| SpamdError::BadUser)?),
            None => None,
        };
        let body: &[u8] = if verb.has_body() { message } else { b"" };
        let mut wire = Vec::with_capacity(body.len() + 64);
        let length = verb.has_body().then_some(body.len() as u64);
        encode_request_head(&RequestHead::new(verb, user, length), &mut wire);
        wire.extend_from_slice(body);

        let mut stream = match timeout(o.connect_timeout, TcpStream::connect(o.addr)).await {
            Err(_) => {
                return Err(SpamdError::Timeout {
                    stage: "connect",
                    after: o.connect_timeout,
                });
            }
            Ok(Err(source)) => {
                return Err(SpamdError::Unavailable {
                    addr: o.addr,
                    source,
                });
            }
            Ok(Ok(s)) => s,
        };
        let write = async {
            stream.write_all(&wire).await?;
            stream.shutdown().await
        };
        timeout(o.write_timeout, write)
            .await
            .map_err(|_| SpamdError::Timeout {
                stage: "write",
                after: o.write_timeout,
            })??;

        let mut reader = ResponseReader::new(o.limits.clone());
        let mut buf = vec![0u8; 16 * 1024];
        // One deadline for the whole reply: a reply sent an octet at a time
        // must not hold the delivery (and its SMTP client) for read_timeout
        // per octet.
        let deadline = tokio::time::Instant::now() + o.read_timeout;
        loop {
            let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
                .await
                .map_err(|_| SpamdError::Timeout {
                    stage: "read",
                    after: o.read_timeout,
                })??;
            if n == 0 {
                break;
            }
            reader.feed(buf.get(..n).unwrap_or_default())?;
            if reader.is_complete() {
                break;
            }
        }
        Ok(reader.finish()?)
    }

    async fn ok_request(&self, verb: Verb, message: &[u8]) -> Result<Response, SpamdError> {
        let resp = self.request(verb, message).await?;
        if !resp.head.code.is_ok() {
            return Err(SpamdError::Status {
                code: resp.head.code,
                text: resp.head.text.as_str().to_owned(),
            });
        }
        Ok(resp)
    }

    fn spam_of(resp: &Response) -> Result<SpamResult, SpamdError> {
        resp.head
            .spam
            .ok_or(SpamdError::Incomplete("a Spam header"))
    }

    /// `PING`: Ok when spamd answers `PONG`.
    pub async fn ping(&self) -> Result<(), SpamdError> {
        let resp = self.ok_request(Verb::Ping, b"").await?;
        if resp.head.text.as_str() == "PONG" {
            Ok(())
        } else {
            Err(SpamdError::Incomplete("PONG"))
        }
    }

    /// `CHECK`: spamd's verdict line.
    pub async fn check(&self, message: &[u8]) -> Result<SpamResult, SpamdError> {
        Self::spam_of(&self.ok_request(Verb::Check, message).await?)
    }

    /// `SYMBOLS`: the verdict with the rules that fired, and spamd's verdict line.
    pub async fn symbols(&self, message: &[u8]) -> Result<(Verdict, SpamResult), SpamdError> {
        let resp = self.ok_request(Verb::Symbols, message).await?;
        let spam = Self::spam_of(&resp)?;
        let rules = crate::spamc::parse_symbols(&resp.body)?;
        Ok((Verdict::new(spam.score, rules), spam))
    }

    /// `PROCESS`: spamd's verdict line and the message as spamd rewrote it.
    pub async fn process(&self, message: &[u8]) -> Result<(SpamResult, Vec<u8>), SpamdError> {
        let resp = self.ok_request(Verb::Process, message).await?;
        Ok((Self::spam_of(&resp)?, resp.body))
    }

    /// `HEADERS`: spamd's verdict line and the header block as spamd rewrote it.
    pub async fn headers(&self, message: &[u8]) -> Result<(SpamResult, Vec<u8>), SpamdError> {
        let resp = self.ok_request(Verb::Headers, message).await?;
        Ok((Self::spam_of(&resp)?, resp.body))
    }

    /// Scores a message with `SYMBOLS`, applying the size limit and the fail mode (see the
    /// [module docs](self#failure-policy)).
    pub async fn scan(&self, message: &[u8]) -> Result<ScanOutcome, SpamdError> {
        let max = self.options.max_message_size;
        if message.len() > max {
            return Ok(ScanOutcome::Unscanned {
                reason: SpamdError::TooLarge {
                    size: message.len(),
                    max,
                },
            });
        }
        match self.symbols(message).await {
            Ok((verdict, spamd)) => Ok(ScanOutcome::Scored { verdict, spamd }),
            Err(reason) => match self.options.fail_mode {
                FailMode::Open => Ok(ScanOutcome::Unscanned { reason }),
                FailMode::Closed => Err(reason),
            },
        }
    }
}
