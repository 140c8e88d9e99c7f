//! One SMTP connection to a next hop: tokio glue around `smtp-proto`'s sans-IO
//! [`ClientSession`]. Connects (with a timeout), upgrades with STARTTLS when the server
//! offers it (opportunistic TLS, RFC 7435: the certificate is **not** verified, so the
//! channel is encrypted against passive listeners only), runs one or more transactions and
//! quits.
//!
//! Every reply that settles a recipient is handed to the caller's [`Job::settle`] and
//! awaited **before** anything else is written or read, so that the queue records it first.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailbag_smtp_proto::client::{
    ClientEvent, ClientOptions, ClientSession, Outcome, Stage, Status, Timeouts, TlsPolicy,
    Transaction,
};
use mailbag_smtp_proto::driver::client::{Client, ClientIoOptions};
use mailbag_smtp_proto::types::{Capability, HeloName};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;
use tracing::{debug, info};

/// Octets of body read from the queue per step.
const BODY_CHUNK: usize = 64 * 1024;
/// Read buffer for replies.
const READ_BUFFER: usize = 4096;

/// How to talk to next hops.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TransportOptions {
    /// Our name in EHLO.
    pub helo: HeloName<'static>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Reply timeouts (RFC 5321 section 4.5.3.2 by default).
    pub timeouts: Timeouts,
    /// TLS client configuration for STARTTLS; `None`: never use STARTTLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl TransportOptions {
    /// Options with the RFC 5321 timeouts, a 30 s connect timeout and opportunistic TLS.
    pub fn new(helo: HeloName<'static>) -> TransportOptions {
        TransportOptions {
            helo,
            connect_timeout: Duration::from_secs(30),
            timeouts: Timeouts::RFC5321,
            tls: opportunistic_tls_config().ok(),
        }
    }
}

/// What the connection needs from the queue: the body, and a place to record outcomes.
pub trait Job: Send {
    /// Opens the message body from its start (once per transaction); `eight_bit`:
    /// the next hop offers 8BITMIME (else an 8-bit body is converted to 7-bit,
    /// RFC 6152 section 3).
    fn body(&mut self, eight_bit: bool)
    -> impl Future<Output = io::Result<tokio::fs::File>> + Send;
    /// Records the outcome of recipient `rcpt` of transaction `txn` (durably, before
    /// returning). Called for every permanent RCPT failure as it comes and for every
    /// recipient when its transaction completes.
    fn settle(
        &mut self,
        txn: usize,
        rcpt: usize,
        outcome: &Outcome,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

/// Why a connection attempt did not get to a transaction.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// TCP connect failed or timed out: try the next address.
    #[error("connect to {addr}: {reason}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The TLS handshake after STARTTLS failed: retry this host in plaintext once.
    #[error("TLS handshake with {addr}: {reason}")]
    Tls {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The session failed before any transaction (greeting, EHLO): try the next host.
    #[error("{addr}: {}", outcome.reply().lines().join(" "))]
    Session {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        outcome: Outcome,
    },
    /// Writing the outcome to the queue failed: stop delivering this message.
    #[error("queue update failed: {0}")]
    Queue(io::Error),
}

impl AttemptError {
    /// The failure as an outcome, for "pending with last error".
    pub fn outcome(&self) -> Outcome {
        match self {
            AttemptError::Session { outcome, .. } => outcome.clone(),
            AttemptError::Connect { .. } => Outcome::temporary(Stage::Greeting, self.to_string()),
            AttemptError::Tls { .. } => Outcome::temporary(Stage::StartTls, self.to_string()),
            AttemptError::Queue(_) => Outcome::temporary(Stage::Closing, self.to_string()),
        }
    }
}

/// The connection: plain TCP, or TLS after STARTTLS.
type Conn = Either<TcpStream, TlsStream<TcpStream>>;

/// How a connection ended.
#[derive(Debug)]
pub struct SessionEnd {
    /// Transactions started (MAIL sent).
    pub started: usize,
    /// Why the session failed after the transactions started, if it did.
    pub error: Option<Outcome>,
    /// Whether TLS was used.
    pub tls: bool,
    /// Whether the server offered DSN (RFC 3461): then it takes over success and
    /// failure reports for the recipients it accepted.
    pub dsn: bool,
}

/// Delivers `txns` over one connection to `addr` (`host` names it for SNI and logs).
/// `use_tls`: send STARTTLS when offered (false for the plaintext retry).
///
/// # Errors
///
/// [`AttemptError`] when no transaction could be started, or the queue update failed.
pub async fn deliver(
    addr: SocketAddr,
    host: &str,
    opts: &TransportOptions,
    use_tls: bool,
    txns: &[Transaction<'_>],
    job: &mut impl Job,
) -> Result<SessionEnd, AttemptError> {
    let tcp = match tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(AttemptError::Connect {
                addr,
                reason: e.to_string(),
            });
        }
        Err(_) => {
            return Err(AttemptError::Connect {
                addr,
                reason: "connect timeout".into(),
            });
        }
    };
    let _ = tcp.set_nodelay(true);
    let mut copts = ClientOptions::default();
    copts.timeouts = opts.timeouts;
    copts.tls = if use_tls && opts.tls.is_some() {
        TlsPolicy::Opportunistic
    } else {
        TlsPolicy::Disabled
    };
    let session = ClientSession::new(opts.helo.clone(), copts);
    let mut io = ClientIoOptions::default();
    io.read_buffer = READ_BUFFER;
    io.body_chunk = BODY_CHUNK;
    io.write_timeout = opts.timeouts.data_block;
    let mut client = Client::new(Conn::Left(tcp), session, io);
    let mut started = 0usize;
    let mut current = 0usize;

    while let Some(ev) = client.next_event().await {
        match ev {
            ClientEvent::Ready => match txns.get(started) {
                Some(t) => {
                    if client.session().send_mail(t).is_err() {
                        client.session().quit();
                    } else {
                        current = started;
                        started += 1;
                    }
                }
                None => client.session().quit(),
            },
            ClientEvent::StartTls => {
                let Some(cfg) = opts.tls.clone() else {
                    return Err(AttemptError::Tls {
                        addr,
                        reason: "no TLS configuration".into(),
                    });
                };
                let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                    .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
                let connector = TlsConnector::from(cfg);
                let limit = opts.timeouts.command;
                let handshake = |conn: Conn| async move {
                    let Either::Left(tcp) = conn else {
                        return Err(io::Error::other("not a plain connection"));
                    };
                    match tokio::time::timeout(limit, connector.connect(name, tcp)).await {
                        Ok(Ok(tls)) => Ok(Either::Right(tls)),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "handshake timeout")),
                    }
                };
                if let Err(e) = client.start_tls(handshake).await {
                    return Err(AttemptError::Tls {
                        addr,
                        reason: e.to_string(),
                    });
                }
                debug!(%addr, "STARTTLS: TLS established");
            }
            ClientEvent::RecipientReply { index, outcome }
                if outcome.status() == Status::Permanent =>
            {
                job.settle(current, index, &outcome)
                    .await
                    .map_err(AttemptError::Queue)?;
            }
            ClientEvent::SendBody => {
                let eight_bit = client.session().offers(&Capability::EightBitMime);
                let sent = match job.body(eight_bit).await {
                    Ok(file) => client.send_body(file).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = sent {
                    info!(%addr, error = %e, "sending the body failed");
                    client.session().connection_closed();
                }
            }
            ClientEvent::TransactionComplete(result) => {
                for (i, o) in result.recipients.iter().enumerate() {
                    job.settle(current, i, o)
                        .await
                        .map_err(AttemptError::Queue)?;
                }
            }
            ClientEvent::Closed { error } => {
                let tls = client.session().is_tls();
                let dsn = client.session().offers(&Capability::Dsn);
                client.close().await;
                if started == 0 {
                    let outcome = error.unwrap_or_else(|| {
                        Outcome::temporary(Stage::Greeting, "session ended without a transaction")
                    });
                    return Err(AttemptError::Session { addr, outcome });
                }
                return Ok(SessionEnd {
                    started,
                    error,
                    tls,
                    dsn,
                });
            }
            _ => {}
        }
    }
    // The session waits for nothing more without having said Closed: only
    // after an answer the loop above always gives (a transaction or QUIT).
    Err(AttemptError::Session {
        addr,
        outcome: Outcome::temporary(Stage::Closing, "session stopped without closing"),
    })
}

/// A rustls client configuration for opportunistic STARTTLS: any certificate is accepted
/// (RFC 7435; MX host names are not authenticated by DNS without DANE or MTA-STS anyway).
///
/// # Errors
///
/// Only if the ring provider lacks the default protocol versions (it does not).
pub fn opportunistic_tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyCertificate(Arc::clone(&provider)));
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    ))
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
