//! `tokio_util::codec` adapters (feature `tokio-codec`).
//!
//! * [`CommandCodec`], server side: decodes command lines, encodes
//!   [`Response`]s and [`StatusResponse`]s.
//! * [`ResponseCodec`], client side: decodes first lines of replies, encodes
//!   [`Command`]s.
//!
//! Both frame lines like [`crate::codec::LineFramer`]: a bad or over-long line
//! becomes an `Err` item and the stream continues with the next line. They
//! only handle single lines; multi-line bodies are read with
//! [`crate::codec::BodyDecoder`] (client) or written with
//! [`crate::codec::BodyEncoder`] (server). For a complete server, prefer
//! [`crate::session::ServerSession`], which needs no codec.
//!
//! # Examples
//!
//! ```
//! use bytes::BytesMut;
//! use tokio_util::codec::{Decoder, Encoder};
//! use mailbag_pop3_proto::tokio_codec::CommandCodec;
//! use mailbag_pop3_proto::types::{Command, StatusResponse};
//!
//! let mut codec = CommandCodec::new();
//! let mut buf = BytesMut::from(&b"NOOP\r\nBOGUS\r\nQUIT\r\n"[..]);
//! assert_eq!(codec.decode(&mut buf).unwrap(), Some(Ok(Command::Noop)));
//! assert!(codec.decode(&mut buf).unwrap().unwrap().is_err());
//! assert_eq!(codec.decode(&mut buf).unwrap(), Some(Ok(Command::Quit)));
//!
//! let mut out = BytesMut::new();
//! codec.encode(&StatusResponse::ok("Logging out.").unwrap(), &mut out).unwrap();
//! assert_eq!(&out[..], b"+OK Logging out.\r\n");
//! ```

use std::io;

use bytes::{Buf, BufMut, BytesMut};
use memchr::memchr;
use tokio_util::codec::{Decoder, Encoder};

use crate::codec::{
    Encode, FrameError, MAX_COMMAND_LINE, MAX_RESPONSE_LINE, ParseError, parse_command,
    parse_response,
};
use crate::types::{Command, Response, StatusResponse};

/// A line that could not be decoded; the stream goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// The line was too long and was thrown away.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The line did not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

#[derive(Debug, Clone)]
struct Lines {
    max: usize,
    discarding: bool,
}

impl Lines {
    /// Next line (without line end) split off `src`, or a frame error.
    fn next(&mut self, src: &mut BytesMut) -> Option<Result<BytesMut, FrameError>> {
        if self.discarding {
            match memchr(b'\n', src) {
                Some(nl) => {
                    src.advance(nl + 1);
                    self.discarding = false;
                    return Some(Err(FrameError::TooLong { max: self.max }));
                }
                None => {
                    src.clear();
                    return None;
                }
            }
        }
        match memchr(b'\n', src) {
            Some(nl) => {
                let mut line = src.split_to(nl + 1);
                if nl + 1 > self.max {
                    return Some(Err(FrameError::TooLong { max: self.max }));
                }
                line.truncate(nl);
                if line.last() == Some(&b'\r') {
                    line.truncate(nl - 1);
                }
                Some(Ok(line))
            }
            None => {
                if src.len() >= self.max {
                    src.clear();
                    self.discarding = true;
                }
                None
            }
        }
    }
}

/// Server-side codec: command lines in, responses out.
#[derive(Debug, Clone)]
pub struct CommandCodec {
    lines: Lines,
}

impl Default for CommandCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandCodec {
    /// A codec with the 255-octet command line limit.
    pub fn new() -> Self {
        Self::with_max_line(MAX_COMMAND_LINE)
    }

    /// A codec with another line limit (CRLF included).
    pub fn with_max_line(max: usize) -> Self {
        Self {
            lines: Lines {
                max,
                discarding: false,
            },
        }
    }
}

impl Decoder for CommandCodec {
    type Item = Result<Command<'static>, LineError>;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, io::Error> {
        Ok(self.lines.next(src).map(|r| match r {
            Ok(line) => parse_command(&line)
                .map(Command::into_owned)
                .map_err(LineError::from),
            Err(e) => Err(LineError::from(e)),
        }))
    }
}

impl Encoder<&StatusResponse<'_>> for CommandCodec {
    type Error = io::Error;
    fn encode(&mut self, item: &StatusResponse<'_>, dst: &mut BytesMut) -> io::Result<()> {
        dst.put_slice(&item.to_bytes());
        Ok(())
    }
}

impl Encoder<&Response<'_>> for CommandCodec {
    type Error = io::Error;
    fn encode(&mut self, item: &Response<'_>, dst: &mut BytesMut) -> io::Result<()> {
        dst.put_slice(&item.to_bytes());
        Ok(())
    }
}

/// Client-side codec: first lines of replies in, commands out.
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::{Decoder, Encoder};
/// use mailbag_pop3_proto::tokio_codec::ResponseCodec;
/// use mailbag_pop3_proto::types::{Command, Response};
///
/// let mut codec = ResponseCodec::new();
/// let mut out = BytesMut::new();
/// codec.encode(&Command::Stat, &mut out).unwrap();
/// assert_eq!(&out[..], b"STAT\r\n");
/// let mut buf = BytesMut::from(&b"+OK 2 320\r\n"[..]);
/// match codec.decode(&mut buf).unwrap() {
///     Some(Ok(Response::Status(s))) => assert_eq!(s.text(), "2 320"),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ResponseCodec {
    lines: Lines,
}

impl Default for ResponseCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseCodec {
    /// A codec with the 512-octet response line limit.
    pub fn new() -> Self {
        Self {
            lines: Lines {
                max: MAX_RESPONSE_LINE,
                discarding: false,
            },
        }
    }
}

impl Decoder for ResponseCodec {
    type Item = Result<Response<'static>, LineError>;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, io::Error> {
        Ok(self.lines.next(src).map(|r| match r {
            Ok(line) => parse_response(&line)
                .map(Response::into_owned)
                .map_err(LineError::from),
            Err(e) => Err(LineError::from(e)),
        }))
    }
}

impl Encoder<&Command<'_>> for ResponseCodec {
    type Error = io::Error;
    fn encode(&mut self, item: &Command<'_>, dst: &mut BytesMut) -> io::Result<()> {
        dst.put_slice(&item.to_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    #[test]
    fn too_long_line_resyncs() {
        let mut c = CommandCodec::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[b'x'; 300]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty(), "over-long line not buffered");
        buf.extend_from_slice(b"yyy\r\nSTAT\r\n");
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(Err(LineError::Frame(FrameError::TooLong { max: 255 })))
        );
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Ok(Command::Stat)));
        assert_eq!(c.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn partial_line_waits() {
        let mut c = ResponseCodec::new();
        let mut buf = BytesMut::from(&b"+OK"[..]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b" hi\r\n");
        assert!(matches!(
            c.decode(&mut buf).unwrap(),
            Some(Ok(Response::Status(_)))
        ));
    }
}
