//! Framing and parsing of policy requests and responses.
//!
//! Frame first, parse second: lines are found with `memchr` and their length is
//! bounded before any parsing; a complete request (ended by an empty line) is then
//! parsed line by line with nom.

use nom::Parser;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::combinator::all_consuming;

use super::action::{ActionError, PolicyAction};
use super::request::{Attribute, PolicyRequest, SMTPD_ACCESS_POLICY};

/// Default [`PolicyLimits::max_line_len`]: 4096 bytes.
pub const DEFAULT_MAX_LINE_LEN: usize = 4096;
/// Default [`PolicyLimits::max_attributes`]: 128.
pub const DEFAULT_MAX_ATTRIBUTES: usize = 128;
/// Default [`PolicyLimits::max_request_size`]: 32 KiB.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 32 * 1024;

/// Bounds on what the parsers accept, so that a bad peer cannot make them use
/// unbounded memory.
///
/// Postfix 3.12 sends about 40 attributes of which only a certificate subject or a
/// long address comes near a few hundred bytes: the defaults leave a wide margin.
///
/// # Examples
///
/// ```
/// use mailbag_pop_before_smtp::policy::PolicyLimits;
///
/// let limits = PolicyLimits::default().with_max_line_len(1024);
/// assert_eq!(limits.max_line_len, 1024);
/// assert_eq!(limits.max_attributes, 128);
/// assert_eq!(limits.max_request_size, 32 * 1024);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyLimits {
    /// Longest line, in bytes, not counting its LF. Default [`DEFAULT_MAX_LINE_LEN`]
    /// (4096).
    pub max_line_len: usize,
    /// Most attributes in one request. Default [`DEFAULT_MAX_ATTRIBUTES`] (128).
    pub max_attributes: usize,
    /// Largest request (or response), in bytes, including every LF and the empty line.
    /// Default [`DEFAULT_MAX_REQUEST_SIZE`] (32 KiB).
    pub max_request_size: usize,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        Self {
            max_line_len: DEFAULT_MAX_LINE_LEN,
            max_attributes: DEFAULT_MAX_ATTRIBUTES,
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
        }
    }
}

impl PolicyLimits {
    /// Sets [`max_line_len`](Self::max_line_len).
    pub fn with_max_line_len(mut self, n: usize) -> Self {
        self.max_line_len = n;
        self
    }

    /// Sets [`max_attributes`](Self::max_attributes).
    pub fn with_max_attributes(mut self, n: usize) -> Self {
        self.max_attributes = n;
        self
    }

    /// Sets [`max_request_size`](Self::max_request_size).
    pub fn with_max_request_size(mut self, n: usize) -> Self {
        self.max_request_size = n;
        self
    }
}

/// A malformed or over-limit request or response. The protocol's answer to any of
/// them is: send nothing, log, and close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A line is longer than [`PolicyLimits::max_line_len`].
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// The request is larger than [`PolicyLimits::max_request_size`].
    #[error("request larger than {limit} bytes")]
    RequestTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The request has more than [`PolicyLimits::max_attributes`] attributes.
    #[error("more than {limit} attributes")]
    TooManyAttributes {
        /// The limit.
        limit: usize,
    },
    /// A line is not `name=value` with a valid name and a value without NUL.
    #[error("line {line} is not a valid name=value attribute")]
    BadAttribute {
        /// The line number, from 1.
        line: usize,
    },
    /// The request has no `request` attribute.
    #[error("the request has no request= attribute")]
    MissingRequest,
    /// The `request` attribute is not `smtpd_access_policy`.
    #[error("unsupported request type (only request=smtpd_access_policy is served)")]
    UnsupportedRequest,
    /// A response is not exactly one `action=` line followed by an empty line.
    #[error("a response must be one action= line and an empty line")]
    BadResponse,
    /// A response's action is not valid.
    #[error("invalid action: {0}")]
    BadAction(#[from] ActionError),
}

/// Parses one `name=value` line (without its LF).
fn attribute_line(line: &[u8]) -> Option<Attribute<'_>> {
    let name = take_while1(|b: u8| b.is_ascii_graphic() && b != b'=');
    let value = take_while(|b: u8| b != 0 && b != b'\n');
    let (_, (name, _, value)) = all_consuming((name, tag(&b"="[..]), value))
        .parse(line)
        .map_err(|_: nom::Err<nom::error::Error<&[u8]>>| ())
        .ok()?;
    // The name is ASCII, hence UTF-8.
    let name = std::str::from_utf8(name).ok()?;
    Some(Attribute::from_parts(name, value))
}

/// Where a framed request ends, or why it cannot.
enum Frame {
    /// The request (including its empty line) is `input[..end]`.
    Complete { end: usize },
    /// More input is needed; `scanned` bytes hold only complete, in-limit lines.
    Partial,
}

/// Frames one request: finds its empty line while bounding line length, the number
/// of lines, and the total size.
fn frame(input: &[u8], limits: &PolicyLimits) -> Result<Frame, PolicyError> {
    let mut pos = 0;
    let mut lines = 0;
    loop {
        let rest = input.get(pos..).unwrap_or_default();
        let Some(i) = memchr::memchr(b'\n', rest) else {
            if rest.len() > limits.max_line_len {
                return Err(PolicyError::LineTooLong {
                    limit: limits.max_line_len,
                });
            }
            if input.len() >= limits.max_request_size {
                return Err(PolicyError::RequestTooLarge {
                    limit: limits.max_request_size,
                });
            }
            return Ok(Frame::Partial);
        };
        if i > limits.max_line_len {
            return Err(PolicyError::LineTooLong {
                limit: limits.max_line_len,
            });
        }
        let end = pos + i + 1;
        if end > limits.max_request_size {
            return Err(PolicyError::RequestTooLarge {
                limit: limits.max_request_size,
            });
        }
        if i == 0 {
            return Ok(Frame::Complete { end });
        }
        lines += 1;
        if lines > limits.max_attributes {
            return Err(PolicyError::TooManyAttributes {
                limit: limits.max_attributes,
            });
        }
        pos = end;
    }
}

/// The LF-terminated lines of `body` (which is empty or ends with LF), without LFs.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    body.split(|&b| b == b'\n')
        .filter(move |_| !body.is_empty())
}

/// Parses the lines of a framed request (`body` holds the attribute lines, each with
/// its LF, without the final empty line).
fn parse_framed(body: &[u8]) -> Result<PolicyRequest<'_>, PolicyError> {
    let mut attributes = Vec::new();
    for (n, line) in lines(body).enumerate() {
        let attribute = attribute_line(line).ok_or(PolicyError::BadAttribute { line: n + 1 })?;
        attributes.push(attribute);
    }
    match attributes.iter().find(|a| a.name() == "request") {
        None => Err(PolicyError::MissingRequest),
        Some(a) if a.value() != SMTPD_ACCESS_POLICY.as_bytes() => {
            Err(PolicyError::UnsupportedRequest)
        }
        Some(_) => Ok(PolicyRequest::from_attributes(attributes)),
    }
}

/// Parses one request from the start of `input`, borrowing from it.
///
/// Returns `Ok(None)` when `input` does not yet hold a complete request (and is within
/// the limits), `Ok(Some((request, consumed)))` when it does, where `consumed` is the
/// request's length including the empty line, and an error for a malformed request
/// or one that exceeds `limits` (detected as early as possible: an over-long line is
/// refused before its end arrives).
///
/// Rules: lines end in LF (a CR is part of the value); a line is `name=value` where the
/// name is printable ASCII without `=` and the value has no NUL; unknown names are
/// kept but never consulted; the first `request` attribute must be
/// `smtpd_access_policy`.
///
/// # Examples
///
/// ```
/// use mailbag_pop_before_smtp::policy::{parse_request, PolicyLimits};
///
/// let wire = b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n\n";
/// let (request, used) = parse_request(wire, &PolicyLimits::default())?.unwrap();
/// assert_eq!(used, wire.len());
/// assert_eq!(request.get_str("protocol_state"), Some("RCPT"));
/// // Incomplete: no empty line yet.
/// assert!(parse_request(&wire[..40], &PolicyLimits::default())?.is_none());
/// # Ok::<(), mailbag_pop_before_smtp::policy::PolicyError>(())
/// ```
pub fn parse_request<'a>(
    input: &'a [u8],
    limits: &PolicyLimits,
) -> Result<Option<(PolicyRequest<'a>, usize)>, PolicyError> {
    match frame(input, limits)? {
        Frame::Partial => Ok(None),
        Frame::Complete { end } => {
            let body = input.get(..end.saturating_sub(1)).unwrap_or_default();
            Ok(Some((parse_framed(body)?, end)))
        }
    }
}

/// Parses one response (`action=...\n\n`) from the start of `input`, borrowing from it.
///
/// Returns `Ok(None)` when incomplete, `Ok(Some((action, consumed)))` when complete.
/// A response must hold exactly one attribute, `action`, with a valid UTF-8 value.
///
/// # Examples
///
/// ```
/// use mailbag_pop_before_smtp::policy::{parse_response, PolicyAction, PolicyLimits};
///
/// let (action, used) = parse_response(b"action=OK\n\n", &PolicyLimits::default())?.unwrap();
/// assert_eq!((action, used), (PolicyAction::Ok, 11));
/// # Ok::<(), mailbag_pop_before_smtp::policy::PolicyError>(())
/// ```
pub fn parse_response<'a>(
    input: &'a [u8],
    limits: &PolicyLimits,
) -> Result<Option<(PolicyAction<'a>, usize)>, PolicyError> {
    let end = match frame(input, limits)? {
        Frame::Partial => return Ok(None),
        Frame::Complete { end } => end,
    };
    let body = input.get(..end.saturating_sub(1)).unwrap_or_default();
    let mut lines = lines(body);
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return Err(PolicyError::BadResponse);
    };
    let attribute = attribute_line(line).ok_or(PolicyError::BadResponse)?;
    if attribute.name() != "action" {
        return Err(PolicyError::BadResponse);
    }
    let value = line.get("action=".len()..).unwrap_or_default();
    let value = std::str::from_utf8(value).map_err(|_| ActionError::InvalidText)?;
    Ok(Some((PolicyAction::parse(value)?, end)))
}

/// A streaming request decoder for a server connection: feed it the bytes read from
/// Postfix, and take out whole requests (borrowed from its buffer, zero-copy).
///
/// It buffers at most one request ([`PolicyLimits::max_request_size`]) plus whatever
/// one `feed` adds, and scans each byte once while a request is incomplete. After an
/// error it discards input up to the end of the bad request (the next empty line), so
/// it never loses sync; a policy server should nonetheless close the connection on an
/// error, as the protocol asks.
///
/// # Examples
///
/// ```
/// use mailbag_pop_before_smtp::policy::{PolicyDecoder, PolicyLimits};
///
/// let mut decoder = PolicyDecoder::new(PolicyLimits::default());
/// decoder.feed(b"request=smtpd_access_policy\nclient_add");
/// assert!(decoder.decode()?.is_none());
/// decoder.feed(b"ress=192.0.2.1\n\nrequest=smtpd_access_policy\n\n");
/// let first = decoder.decode()?.unwrap().into_owned();
/// assert_eq!(first.get_str("client_address"), Some("192.0.2.1"));
/// let second = decoder.decode()?.unwrap();
/// assert_eq!(second.client_address(), None);
/// assert!(decoder.decode()?.is_none());
/// # Ok::<(), mailbag_pop_before_smtp::policy::PolicyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PolicyDecoder {
    limits: PolicyLimits,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf` (consumed bytes are dropped lazily, on
    /// the next `feed`, so that decoding many buffered requests stays linear).
    start: usize,
    /// Bytes after `start` already scanned: complete, in-limit lines.
    scanned: usize,
    /// Lines counted in the scanned bytes.
    lines: usize,
    /// Discarding input until the end of a bad request.
    skipping: bool,
    /// While skipping: whether the next byte starts a line.
    skip_at_line_start: bool,
}

impl PolicyDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: PolicyLimits) -> Self {
        Self {
            limits,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            lines: 0,
            skipping: false,
            skip_at_line_start: true,
        }
    }

    /// Adds bytes read from the connection. Call [`decode`](Self::decode) until it
    /// returns `Ok(None)` after each `feed`, which keeps the buffer bounded.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet returned as a request.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether the decoder is discarding the rest of a bad request.
    pub fn is_skipping(&self) -> bool {
        self.skipping
    }

    /// The unconsumed bytes.
    fn pending(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Marks `n` more bytes consumed and restarts scanning after them.
    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        self.scanned = 0;
        self.lines = 0;
    }

    /// Enters skip mode, having consumed `n` bytes that end at a line start
    /// (`line_start`) or in the middle of a line.
    fn fail(&mut self, error: PolicyError, n: usize, line_start: bool) -> PolicyError {
        self.consume(n);
        self.skipping = true;
        self.skip_at_line_start = line_start;
        error
    }

    /// Discards input up to and including the empty line that ends a bad request.
    fn skip(&mut self) {
        let pending = self.pending();
        let mut at_line_start = self.skip_at_line_start;
        let mut pos = 0;
        let mut found = None;
        while let Some(i) = memchr::memchr(b'\n', pending.get(pos..).unwrap_or_default()) {
            let empty = i == 0 && at_line_start;
            at_line_start = true;
            pos += i + 1;
            if empty {
                found = Some(pos);
                break;
            }
        }
        let all = pending.len();
        match found {
            Some(end) => {
                self.skipping = false;
                self.skip_at_line_start = true;
                self.consume(end);
            }
            None => {
                self.skip_at_line_start = pos == all && at_line_start;
                self.consume(all);
            }
        }
    }

    /// The next complete request, `Ok(None)` if more input is needed, or the error
    /// that made the current request unusable (the decoder then skips the rest of it).
    ///
    /// The request borrows the decoder's buffer (zero-copy) until the next call;
    /// use [`PolicyRequest::into_owned`] to keep it longer.
    pub fn decode(&mut self) -> Result<Option<PolicyRequest<'_>>, PolicyError> {
        if self.skipping {
            self.skip();
            if self.skipping {
                return Ok(None);
            }
        }
        let limits = self.limits;
        loop {
            let pending = self.pending();
            let rest = pending.get(self.scanned..).unwrap_or_default();
            let Some(i) = memchr::memchr(b'\n', rest) else {
                let (all, partial) = (pending.len(), rest.len());
                if partial > limits.max_line_len {
                    let e = PolicyError::LineTooLong {
                        limit: limits.max_line_len,
                    };
                    return Err(self.fail(e, all, false));
                }
                if all >= limits.max_request_size {
                    let e = PolicyError::RequestTooLarge {
                        limit: limits.max_request_size,
                    };
                    return Err(self.fail(e, all, partial == 0));
                }
                return Ok(None);
            };
            let end = self.scanned + i + 1;
            if i > limits.max_line_len {
                let e = PolicyError::LineTooLong {
                    limit: limits.max_line_len,
                };
                return Err(self.fail(e, end, true));
            }
            if end > limits.max_request_size {
                let e = PolicyError::RequestTooLarge {
                    limit: limits.max_request_size,
                };
                return Err(self.fail(e, end, true));
            }
            if i == 0 {
                // A complete request: pending[..end]. Consumed bytes stay in the
                // buffer until the next `feed`, so the request can borrow them.
                let base = self.start;
                self.consume(end);
                let body = self.buf.get(base..base + end - 1).unwrap_or_default();
                return parse_framed(body).map(Some);
            }
            self.lines += 1;
            if self.lines > limits.max_attributes {
                let e = PolicyError::TooManyAttributes {
                    limit: limits.max_attributes,
                };
                return Err(self.fail(e, end, true));
            }
            self.scanned = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: PolicyLimits = PolicyLimits {
        max_line_len: DEFAULT_MAX_LINE_LEN,
        max_attributes: DEFAULT_MAX_ATTRIBUTES,
        max_request_size: DEFAULT_MAX_REQUEST_SIZE,
    };

    /// A request captured from Postfix 3.7.11 (Debian 12) at RCPT, sent by the
    /// `check_policy_service` of the peer instance in `shared/peers`.
    const POSTFIX_3_7_REQUEST: &[u8] = b"request=smtpd_access_policy\n\
protocol_state=RCPT\n\
protocol_name=ESMTP\n\
client_address=127.0.0.2\n\
client_name=unknown\n\
client_port=52517\n\
reverse_client_name=unknown\n\
server_address=127.0.0.1\n\
server_port=18725\n\
helo_name=vm\n\
sender=sender@client.test\n\
recipient=someone@elsewhere.example\n\
recipient_count=0\n\
queue_id=\n\
instance=3cda.6b09c1aa.bac99.0\n\
size=0\n\
etrn_domain=\n\
stress=\n\
sasl_method=\n\
sasl_username=\n\
sasl_sender=\n\
ccert_subject=\n\
ccert_issuer=\n\
ccert_fingerprint=\n\
ccert_pubkey_fingerprint=\n\
encryption_protocol=\n\
encryption_cipher=\n\
encryption_keysize=0\n\
policy_context=\n\
\n";

    #[test]
    fn parses_a_captured_postfix_3_7_request() {
        let (r, used) = parse_request(POSTFIX_3_7_REQUEST, &LIMITS)
            .unwrap()
            .unwrap();
        assert_eq!(used, POSTFIX_3_7_REQUEST.len());
        assert_eq!(r.attributes().len(), 29);
        assert_eq!(r.protocol_state(), Some(super::super::ProtocolState::Rcpt));
        assert_eq!(r.client_address(), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(r.recipient(), Some("someone@elsewhere.example"));
        assert_eq!(r.sender(), Some("sender@client.test"));
        assert_eq!(r.queue_id(), None); // sent empty: unavailable
        assert_eq!(r.get_str("encryption_keysize"), Some("0"));
        assert_eq!(r.to_bytes(), POSTFIX_3_7_REQUEST);
    }

    /// The example request of Postfix's SMTPD_POLICY_README (3.x attribute set).
    const README_REQUEST: &[u8] = b"request=smtpd_access_policy\n\
protocol_state=RCPT\n\
protocol_name=SMTP\n\
helo_name=some.domain.tld\n\
queue_id=8045F2AB23\n\
sender=foo@bar.tld\n\
recipient=bar@foo.tld\n\
recipient_count=0\n\
client_address=1.2.3.4\n\
client_name=another.domain.tld\n\
reverse_client_name=another.domain.tld\n\
instance=123.456.7\n\
sasl_method=plain\n\
sasl_username=you\n\
sasl_sender=\n\
size=12345\n\
ccert_subject=solaris9.porcupine.org\n\
ccert_issuer=Wietse+20Venema\n\
ccert_fingerprint=C2:9D:F4:87:71:73:73:D9:18:E7:C2:F3:C1:DA:6E:04\n\
encryption_protocol=TLSv1/SSLv3\n\
encryption_cipher=DHE-RSA-AES256-SHA\n\
encryption_keysize=256\n\
etrn_domain=\n\
stress=\n\
ccert_pubkey_fingerprint=68:B3:29:DA:98:93:E3:40:99:C7:D8:AD:5C:B9:C9:40\n\
client_port=1234\n\
policy_context=submission\n\
server_address=10.3.2.1\n\
server_port=54321\n\
compatibility_level=major.minor.patch\n\
mail_version=3.8.0\n\
\n";

    #[test]
    fn parses_the_readme_example() {
        let (r, used) = parse_request(README_REQUEST, &LIMITS).unwrap().unwrap();
        assert_eq!(used, README_REQUEST.len());
        assert_eq!(r.attributes().len(), 31);
        assert_eq!(r.client_address(), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(r.sender(), Some("foo@bar.tld"));
        assert_eq!(r.recipient(), Some("bar@foo.tld"));
        assert_eq!(r.helo_name(), Some("some.domain.tld"));
        assert_eq!(r.sasl_username(), Some("you"));
        assert_eq!(r.queue_id(), Some("8045F2AB23"));
        assert_eq!(r.instance(), Some("123.456.7"));
        assert_eq!(r.client_name(), Some("another.domain.tld"));
        assert_eq!(r.get_str("sasl_sender"), Some(""));
        assert_eq!(r.get_str("mail_version"), Some("3.8.0"));
        // Byte-for-byte re-encoding.
        assert_eq!(r.to_bytes(), README_REQUEST);
    }

    #[test]
    fn minimal_request_and_order_independence() {
        let (r, _) = parse_request(
            b"client_address=::1\nrequest=smtpd_access_policy\n\n",
            &LIMITS,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.client_address(), Some("::1".parse().unwrap()));
    }

    #[test]
    fn unknown_names_are_kept_and_ignored() {
        let wire = b"request=smtpd_access_policy\nfuture_thing=x=y\nclient_address=1.2.3.4\n\n";
        let (r, _) = parse_request(wire, &LIMITS).unwrap().unwrap();
        assert_eq!(r.get_str("future_thing"), Some("x=y"));
        assert_eq!(r.to_bytes(), wire);
    }

    #[test]
    fn values_are_bytes_and_may_hold_cr() {
        let wire = b"request=smtpd_access_policy\nhelo_name=\xc3\xa9t\xe9\r\n\n";
        let (r, _) = parse_request(wire, &LIMITS).unwrap().unwrap();
        assert_eq!(r.get("helo_name"), Some(&b"\xc3\xa9t\xe9\r"[..]));
        assert_eq!(r.helo_name(), None);
    }

    #[test]
    fn request_attribute_is_required() {
        assert_eq!(
            parse_request(b"client_address=1.2.3.4\n\n", &LIMITS),
            Err(PolicyError::MissingRequest)
        );
        assert_eq!(
            parse_request(b"\n", &LIMITS),
            Err(PolicyError::MissingRequest)
        );
        assert_eq!(
            parse_request(b"request=junk\n\n", &LIMITS),
            Err(PolicyError::UnsupportedRequest)
        );
        // The first `request` attribute decides.
        assert_eq!(
            parse_request(b"request=junk\nrequest=smtpd_access_policy\n\n", &LIMITS),
            Err(PolicyError::UnsupportedRequest)
        );
        assert!(
            parse_request(b"request=smtpd_access_policy\nrequest=junk\n\n", &LIMITS)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn malformed_lines() {
        for (wire, line) in [
            (&b"request=smtpd_access_policy\nno equals sign\n\n"[..], 2),
            (b"=value\nrequest=smtpd_access_policy\n\n", 1),
            (b"request=smtpd_access_policy\nna me=x\n\n", 2),
            (b"request=smtpd_access_policy\nname=a\0b\n\n", 2),
            (b"request=smtpd_access_policy\n\xffname=x\n\n", 2),
        ] {
            assert_eq!(
                parse_request(wire, &LIMITS),
                Err(PolicyError::BadAttribute { line }),
                "{}",
                wire.escape_ascii()
            );
        }
    }

    #[test]
    fn limits_are_enforced_early() {
        let limits = PolicyLimits::default()
            .with_max_line_len(10)
            .with_max_attributes(2)
            .with_max_request_size(30);
        // A long line is refused before its LF arrives.
        assert_eq!(
            parse_request(b"aaaaaaaaaaa", &limits),
            Err(PolicyError::LineTooLong { limit: 10 })
        );
        assert_eq!(parse_request(b"aaaaaaaaaa", &limits), Ok(None));
        assert_eq!(
            parse_request(b"a=aaaaaaaaa\n", &limits),
            Err(PolicyError::LineTooLong { limit: 10 })
        );
        assert_eq!(
            parse_request(b"a=1\nb=2\nc=3\n", &limits),
            Err(PolicyError::TooManyAttributes { limit: 2 })
        );
        let limits = limits.with_max_attributes(100);
        assert_eq!(
            parse_request(b"a=1\nb=2\nc=3\nd=4\ne=5\nf=6\ng=7\nh=8\n", &limits),
            Err(PolicyError::RequestTooLarge { limit: 30 })
        );
    }

    #[test]
    fn responses() {
        assert_eq!(
            parse_response(b"action=DUNNO\n\nrest", &LIMITS).unwrap(),
            Some((PolicyAction::Dunno, 14))
        );
        assert_eq!(parse_response(b"action=OK\n", &LIMITS).unwrap(), None);
        for bad in [
            &b"\n"[..],
            b"action=OK\nextra=1\n\n",
            b"verdict=OK\n\n",
            b"action\n\n",
        ] {
            assert_eq!(
                parse_response(bad, &LIMITS),
                Err(PolicyError::BadResponse),
                "{}",
                bad.escape_ascii()
            );
        }
        assert_eq!(
            parse_response(b"action=\n\n", &LIMITS),
            Err(PolicyError::BadAction(ActionError::InvalidText))
        );
        assert_eq!(
            parse_response(b"action=REJECT \xff\n\n", &LIMITS),
            Err(PolicyError::BadAction(ActionError::InvalidText))
        );
    }

    #[test]
    fn decoder_handles_persistent_connections_byte_by_byte() {
        let mut wire = Vec::new();
        for _ in 0..3 {
            wire.extend_from_slice(README_REQUEST);
        }
        let mut d = PolicyDecoder::new(LIMITS);
        let mut got = Vec::new();
        for b in &wire {
            d.feed(std::slice::from_ref(b));
            while let Some(r) = d.decode().unwrap() {
                got.push(r.into_owned());
            }
        }
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|r| r.to_bytes() == README_REQUEST));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn decoder_resyncs_after_errors() {
        let limits = PolicyLimits::default().with_max_line_len(40);
        let mut d = PolicyDecoder::new(limits);
        let good = b"request=smtpd_access_policy\nclient_address=1.2.3.4\n\n";
        // A bad line, an over-long line split across feeds, then good requests.
        d.feed(b"request=smtpd_access_policy\nbad line\nx=y\n\n");
        assert_eq!(d.decode(), Err(PolicyError::BadAttribute { line: 2 }));
        d.feed(good);
        assert!(d.decode().unwrap().is_some());
        d.feed(&[b'a'; 50]);
        assert_eq!(d.decode(), Err(PolicyError::LineTooLong { limit: 40 }));
        assert!(d.is_skipping());
        d.feed(&[b'\n'; 1]); // ends the long line, not the request
        assert_eq!(d.decode(), Ok(None));
        assert!(d.is_skipping());
        d.feed(b"more=junk\n\n");
        d.feed(good);
        let r = d.decode().unwrap().unwrap();
        assert_eq!(r.client_address(), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(d.decode(), Ok(None));
        // A complete over-long line followed by more data in one feed.
        let mut wire = vec![b'b'; 45];
        wire.extend_from_slice(b"\nrest=1\n\n");
        wire.extend_from_slice(good);
        d.feed(&wire);
        assert_eq!(d.decode(), Err(PolicyError::LineTooLong { limit: 40 }));
        assert!(d.decode().unwrap().is_some());
    }

    #[test]
    fn decoder_bounds_its_buffer() {
        let limits = PolicyLimits::default().with_max_request_size(100);
        let mut d = PolicyDecoder::new(limits);
        let mut errors = 0;
        for _ in 0..1000 {
            d.feed(b"a=0123456789\n");
            if d.decode().is_err() {
                errors += 1;
            }
            assert!(d.buffered() <= 100 + 13);
        }
        assert!(errors >= 1);
        d.feed(b"\nrequest=smtpd_access_policy\n\n");
        assert!(d.decode().unwrap().is_some());
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z_]{1,12}"
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            any::<u8>().prop_filter("no NUL/LF", |b| *b != 0 && *b != b'\n'),
            0..20,
        )
    }

    fn request() -> impl Strategy<Value = PolicyRequest<'static>> {
        proptest::collection::vec((name(), value()), 0..20).prop_map(|attrs| {
            let mut r = PolicyRequest::new();
            for (n, v) in attrs {
                r.push(Attribute::new(n, v).unwrap());
            }
            r
        })
    }

    proptest! {
        #[test]
        fn request_round_trips(r in request()) {
            let wire = r.to_bytes();
            let (parsed, used) = parse_request(&wire, &LIMITS).unwrap().unwrap();
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(&parsed, &r);
        }

        #[test]
        fn decoder_equals_parser_for_any_split(
            reqs in proptest::collection::vec(request(), 1..4),
            cuts in proptest::collection::vec(0usize..200, 0..6),
        ) {
            let mut wire = Vec::new();
            for r in &reqs { r.encode(&mut wire); }
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            points.sort_unstable();
            let mut d = PolicyDecoder::new(LIMITS);
            let mut got = Vec::new();
            let mut last = 0;
            for p in points.into_iter().chain([wire.len()]) {
                d.feed(&wire[last..p]);
                last = p;
                while let Some(r) = d.decode().unwrap() { got.push(r.into_owned()); }
            }
            prop_assert_eq!(got, reqs);
        }

        #[test]
        fn parser_never_panics_on_noise(bytes in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'='), Just(0u8), any::<u8>(), Just(b'a')], 0..300)) {
            let limits = PolicyLimits::default().with_max_line_len(40).with_max_attributes(5).with_max_request_size(150);
            if let Ok(Some((r, used))) = parse_request(&bytes, &limits) {
                prop_assert!(used <= bytes.len());
                let wire = r.to_bytes();
                let (again, _) = parse_request(&wire, &limits).unwrap().unwrap();
                prop_assert_eq!(again, r);
            }
            let _ = parse_response(&bytes, &limits);
            let mut d = PolicyDecoder::new(limits);
            d.feed(&bytes);
            for _ in 0..bytes.len() + 1 {
                if let Ok(None) = d.decode() {
                    break;
                }
                prop_assert!(d.buffered() <= bytes.len());
            }
        }
    }
}
