//! `tokio_util::codec` adapters (feature `tokio-codec`).
//!
//! - [`CommandCodec`]: decodes command lines into owned [`Command`]s (server side) and
//!   encodes [`Reply`]s; over-long lines are discarded and surface as
//!   [`CommandError::LineTooLong`] without losing sync.
//! - [`ReplyCodec`]: decodes [`Reply`]s and encodes [`Command`]s (client side).
//!
//! DATA/BDAT bodies are not framed by these codecs: switch to [`crate::data::DataReceiver`]
//! on the underlying buffer (e.g. with `FramedParts`) or use [`crate::session`].
//!
//! # Examples
//!
//! ```
//! use bytes::BytesMut;
//! use mailbag_smtp_proto::tokio_codec::CommandCodec;
//! use mailbag_smtp_proto::types::Command;
//! use tokio_util::codec::Decoder;
//!
//! let mut codec = CommandCodec::default();
//! let mut buf = BytesMut::from(&b"NOOP\r\nQUI"[..]);
//! assert_eq!(codec.decode(&mut buf).unwrap(), Some(Ok(Command::Noop(None))));
//! assert_eq!(codec.decode(&mut buf).unwrap(), None);
//! ```

use alloc::vec::Vec;

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::codec::{
    CommandError, DEFAULT_COMMAND_LINE_LIMIT, Frame, LineFramer, ReplyError, ReplyOptions,
    ReplyParser, parse_command,
};
use crate::types::{Command, Reply};

/// I/O or protocol failure of a codec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A reply could not be parsed (the stream is out of sync).
    #[error("reply error: {0}")]
    Reply(#[from] ReplyError),
}

/// Server-side codec: command lines in, replies out.
#[derive(Debug, Clone)]
pub struct CommandCodec {
    framer: LineFramer,
}

impl CommandCodec {
    /// A codec with the given command line limit (octets, CRLF included).
    pub fn new(max_line: usize) -> Self {
        CommandCodec {
            framer: LineFramer::new(max_line),
        }
    }
}

impl Default for CommandCodec {
    /// Limit [`DEFAULT_COMMAND_LINE_LIMIT`] (512).
    fn default() -> Self {
        CommandCodec::new(DEFAULT_COMMAND_LINE_LIMIT)
    }
}

impl Decoder for CommandCodec {
    type Item = Result<Command<'static>, CommandError>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        match self.framer.frame(src) {
            Frame::Incomplete { consumed } => {
                src.advance(consumed);
                Ok(None)
            }
            Frame::TooLong { consumed } => {
                src.advance(consumed);
                Ok(Some(Err(CommandError::LineTooLong)))
            }
            Frame::Line { line, consumed } => {
                let item = parse_command(&src[line]).map(Command::into_owned);
                src.advance(consumed);
                Ok(Some(item))
            }
        }
    }
}

impl Encoder<&Reply<'_>> for CommandCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Reply<'_>, dst: &mut BytesMut) -> Result<(), CodecError> {
        let mut v = Vec::new();
        item.encode(&mut v);
        dst.extend_from_slice(&v);
        Ok(())
    }
}

/// Client-side codec: replies in, commands out.
#[derive(Debug, Clone, Default)]
pub struct ReplyCodec {
    parser: ReplyParser,
}

impl ReplyCodec {
    /// A codec with the given reply limits.
    pub fn new(options: ReplyOptions) -> Self {
        ReplyCodec {
            parser: ReplyParser::new(options),
        }
    }
}

impl Decoder for ReplyCodec {
    type Item = Reply<'static>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Reply<'static>>, CodecError> {
        match self.parser.parse(src)? {
            Some((reply, used)) => {
                let reply = reply.into_owned();
                src.advance(used);
                Ok(Some(reply))
            }
            None => Ok(None),
        }
    }
}

impl Encoder<&Command<'_>> for ReplyCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Command<'_>, dst: &mut BytesMut) -> Result<(), CodecError> {
        let mut v = Vec::new();
        item.encode(&mut v);
        dst.extend_from_slice(&v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    #[test]
    fn long_line_then_command() {
        let mut c = CommandCodec::new(8);
        let mut buf = BytesMut::from(&b"AAAAAAAAAAAA"[..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        assert!(buf.is_empty());
        buf.extend_from_slice(b"AA\r\nQUIT\r\n");
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(Err(CommandError::LineTooLong))
        );
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Ok(Command::Quit)));
    }

    #[test]
    fn reply_codec_round_trip() {
        let mut c = ReplyCodec::default();
        let mut buf = BytesMut::from(&b"250-a\r\n250 b\r\n"[..]);
        let r = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(r.lines(), ["a", "b"]);
        let mut out = BytesMut::new();
        CommandCodec::default().encode(&r, &mut out).unwrap();
        assert_eq!(&out[..], b"250-a\r\n250 b\r\n");
    }
}
