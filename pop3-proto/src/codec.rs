//! Framing, parsing and encoding. Everything is re-exported here; each part
//! lives in a file of its own:
//!
//! * `codec/framer.rs`: [`LineFramer`] finds lines with `memchr`, enforces a
//!   length limit and throws away an over-long line without losing sync;
//!   the RFC 2449 limits [`MAX_COMMAND_LINE`] and [`MAX_RESPONSE_LINE`].
//! * `codec/parse.rs`: [`parse_command`], [`parse_response`] (and
//!   [`parse_response_lossy`], as a client reads replies),
//!   [`parse_sasl_response`], [`parse_capability`], [`parse_list_entry`],
//!   [`parse_stat`] and [`parse_uidl_entry`] read one complete line (without its line end) with
//!   `nom` in complete mode. Their output borrows from the line.
//! * `codec/encode.rs`: [`Encode`] writes every value back, so
//!   `parse(encode(x)) == x`.
//! * `codec/body.rs`: [`BodyEncoder`] and [`BodyDecoder`] stream a
//!   multi-line body (dot-stuffing, bare LF to CRLF, the `.` terminator)
//!   chunk by chunk; `codec/body/scan.rs` is the encoder's SIMD scan for
//!   line ends that need work.
//!
//! `parse` and `encode` use only [`crate::types`]; `framer` and `body` use
//! nothing else of the crate; none of the four uses another.
//!
//! # Examples
//!
//! ```
//! use mailbag_pop3_proto::codec::{parse_command, LineFramer, MAX_COMMAND_LINE};
//! use mailbag_pop3_proto::types::Command;
//!
//! let mut framer = LineFramer::new();
//! framer.push(b"STAT\r\nLIST\r\nQU");
//! let mut cmds = Vec::new();
//! while let Some(Ok(line)) = framer.next_line(MAX_COMMAND_LINE) {
//!     cmds.push(parse_command(line).unwrap().into_owned());
//! }
//! assert_eq!(cmds, [Command::Stat, Command::List(None)]);
//! framer.push(b"IT\r\n");
//! assert_eq!(parse_command(framer.next_line(MAX_COMMAND_LINE).unwrap().unwrap()), Ok(Command::Quit));
//! ```

mod body;
mod encode;
mod framer;
mod parse;

pub use body::{
    BodyDecoder, BodyEncoder, BodyProgress, DecodeStatus, TERMINATOR, crlf_len, normalize_crlf,
};
pub use encode::Encode;
pub(crate) use encode::push_num;
pub use framer::{
    DEFAULT_MAX_SASL_LINE, FrameError, LineFramer, MAX_COMMAND_LINE, MAX_RESPONSE_LINE,
};
pub use parse::{
    ParseError, parse_capability, parse_command, parse_list_entry, parse_response,
    parse_response_lossy, parse_sasl_response, parse_stat, parse_uidl_entry,
};
