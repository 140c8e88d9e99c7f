//! TLS: a rustls server configuration from PEM files, and a stream that can
//! start plain and be upgraded (STLS/STARTTLS) or start in TLS (implicit TLS).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{key} {path}: cannot read it: {source}")]
    Read {
        /// `tls.cert_file` or `tls.key_file`.
        key: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("tls.cert_file {0}: no PEM certificate found")]
    NoCertificate(String),
    /// The key file holds no private key.
    #[error("tls.key_file {0}: no PEM private key found")]
    NoKey(String),
    /// The key file holds an encrypted private key, which the server cannot use.
    #[error(
        "tls.key_file {0}: the private key is encrypted; store it decrypted \
         (`openssl pkey -in KEY -out KEY.plain`), readable only by the server"
    )]
    EncryptedKey(String),
    /// rustls refused the certificate/key pair.
    #[error("tls.cert_file {cert} with tls.key_file {key}: {}", rustls_hint(.source))]
    Rustls {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// rustls's error.
        source: rustls::Error,
    },
}

/// What a rustls error means for the files an admin gave.
fn rustls_hint(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(_) => "the private key does not belong to the first \
             certificate of the file (the server's own certificate must come first, then its \
             chain)"
            .to_owned(),
        rustls::Error::InvalidCertificate(c) => format!("the certificate is not usable: {c:?}"),
        other => other.to_string(),
    }
}

/// Builds a rustls acceptor from a PEM certificate chain and a PEM private key.
///
/// # Examples
///
/// ```
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
/// std::fs::write(&c, cert.cert.pem()).unwrap();
/// std::fs::write(&k, cert.key_pair.serialize_pem()).unwrap();
/// let _acceptor = mailbagd::tls::load_acceptor(&c, &k).unwrap();
/// assert!(mailbagd::tls::load_acceptor(&k, &c).is_err());
/// ```
pub fn load_acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, TlsError> {
    let read = |key: &'static str, p: &Path| {
        let path = p.display().to_string();
        if p.is_dir() {
            return Err(TlsError::Read {
                key,
                path,
                source: io::Error::other("a directory, not a file"),
            });
        }
        std::fs::read(p).map_err(|source| TlsError::Read { key, path, source })
    };
    let cert_pem = read("tls.cert_file", cert_file)?;
    let key_pem = read("tls.key_file", key_file)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            key: "tls.cert_file",
            path: cert_file.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_file.display().to_string()));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::Read {
            key: "tls.key_file",
            path: key_file.display().to_string(),
            source,
        })?
        .ok_or_else(|| {
            let path = key_file.display().to_string();
            if memchr::memmem::find(&key_pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----").is_some()
                || memchr::memmem::find(&key_pem, b"Proc-Type: 4,ENCRYPTED").is_some()
            {
                TlsError::EncryptedKey(path)
            } else {
                TlsError::NoKey(path)
            }
        })?;
    let rustls_error = |source| TlsError::Rustls {
        cert: cert_file.display().to_string(),
        key: key_file.display().to_string(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rustls_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(rustls_error)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A client connection, plain or TLS.
#[derive(Debug)]
pub enum MaybeTls {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl MaybeTls {
    /// Is TLS active?
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// Runs the TLS handshake on a plain stream (STLS/STARTTLS or implicit
    /// TLS), bounded by `timeout`, and given up when `shutdown` is cancelled: a
    /// client silent in its handshake does not hold the server's shutdown for
    /// `limits.shutdown_timeout` (a probe's restart waited the whole time for one).
    /// A stream already in TLS is an error.
    pub async fn upgrade(
        self,
        acceptor: &TlsAcceptor,
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> io::Result<MaybeTls> {
        match self {
            MaybeTls::Plain(tcp) => {
                let handshake = tokio::time::timeout(timeout, acceptor.accept(tcp));
                let tls = tokio::select! {
                    r = handshake => r.map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                    })??,
                    () = shutdown.cancelled() => {
                        return Err(io::Error::new(
                            io::ErrorKind::Interrupted,
                            "server shutting down during the TLS handshake",
                        ));
                    }
                };
                Ok(MaybeTls::Tls(Box::new(tls)))
            }
            MaybeTls::Tls(_) => Err(io::Error::other("TLS is already active")),
        }
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
