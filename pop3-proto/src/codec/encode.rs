//! The encoders: [`Encode`] writes every protocol value in its wire form,
//! line end included, so that `parse(encode(x)) == x`.

use alloc::string::String;
use alloc::vec::Vec;

use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::types::{
    Capability, Command, Expire, LangArg, ListEntry, Response, SaslResponse, Status,
    StatusResponse, UidlEntry,
};

/// Writes a value in its wire form, line end included.
pub trait Encode {
    /// Appends the wire form to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// The wire form as a new vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

pub(crate) fn push_num(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(i..).unwrap_or_default());
}

fn push_b64(out: &mut Vec<u8>, data: &[u8]) {
    let start = out.len();
    out.resize(
        start + base64::encoded_len(data.len(), true).unwrap_or(0),
        0,
    );
    let written = B64
        .encode_slice(data, out.get_mut(start..).unwrap_or_default())
        .unwrap_or(0);
    out.truncate(start + written);
}

impl Encode for Command<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.keyword().as_bytes());
        match self {
            Command::User(u) => {
                out.push(b' ');
                out.extend_from_slice(u.as_str().as_bytes());
            }
            Command::Pass(p) => {
                out.push(b' ');
                out.extend_from_slice(p.expose());
            }
            Command::Apop { name, digest } => {
                out.push(b' ');
                out.extend_from_slice(name.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(digest.as_str().as_bytes());
            }
            Command::List(Some(n))
            | Command::Uidl(Some(n))
            | Command::Retr(n)
            | Command::Dele(n) => {
                out.push(b' ');
                push_num(out, u64::from(n.get()));
            }
            Command::Top { msg, lines } => {
                out.push(b' ');
                push_num(out, u64::from(msg.get()));
                out.push(b' ');
                push_num(out, u64::from(*lines));
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                out.push(b' ');
                out.extend_from_slice(mechanism.as_str().as_bytes());
                match initial_response {
                    None => {}
                    Some(ir) if ir.expose().is_empty() => out.extend_from_slice(b" ="),
                    Some(ir) => {
                        out.push(b' ');
                        push_b64(out, ir.expose());
                    }
                }
            }
            Command::Lang(Some(arg)) => {
                out.push(b' ');
                match arg {
                    LangArg::Tag(t) => out.extend_from_slice(t.as_str().as_bytes()),
                    LangArg::Wildcard => out.push(b'*'),
                }
            }
            Command::Stat
            | Command::List(None)
            | Command::Uidl(None)
            | Command::Noop
            | Command::Rset
            | Command::Quit
            | Command::Capa
            | Command::Stls
            | Command::AuthList
            | Command::Utf8
            | Command::Lang(None) => {}
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl Encode for StatusResponse<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.status() {
            Status::Ok => b"+OK",
            Status::Err => b"-ERR",
        });
        if let Some(code) = self.code() {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_str().as_bytes());
            out.push(b']');
        }
        if !self.text().is_empty() {
            out.push(b' ');
            out.extend_from_slice(self.text().as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl Encode for Response<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Response::Status(s) => s.encode(out),
            Response::Challenge(data) => {
                out.extend_from_slice(b"+ ");
                push_b64(out, data.expose());
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

impl Encode for SaslResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            SaslResponse::Cancel => out.push(b'*'),
            SaslResponse::Data(d) => push_b64(out, d.expose()),
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn push_user_flag(out: &mut Vec<u8>, per_user: bool) {
    if per_user {
        out.extend_from_slice(b" USER");
    }
}

impl Encode for Capability<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Capability::Top => out.extend_from_slice(b"TOP"),
            Capability::User => out.extend_from_slice(b"USER"),
            Capability::RespCodes => out.extend_from_slice(b"RESP-CODES"),
            Capability::Pipelining => out.extend_from_slice(b"PIPELINING"),
            Capability::Uidl => out.extend_from_slice(b"UIDL"),
            Capability::Stls => out.extend_from_slice(b"STLS"),
            Capability::AuthRespCode => out.extend_from_slice(b"AUTH-RESP-CODE"),
            Capability::Lang => out.extend_from_slice(b"LANG"),
            Capability::Sasl(mechs) => {
                out.extend_from_slice(b"SASL");
                for m in mechs {
                    out.push(b' ');
                    out.extend_from_slice(m.as_str().as_bytes());
                }
            }
            Capability::LoginDelay { seconds, per_user } => {
                out.extend_from_slice(b"LOGIN-DELAY ");
                push_num(out, u64::from(*seconds));
                push_user_flag(out, *per_user);
            }
            Capability::Expire { policy, per_user } => {
                out.extend_from_slice(b"EXPIRE ");
                match policy {
                    Expire::Never => out.extend_from_slice(b"NEVER"),
                    Expire::Days(d) => push_num(out, u64::from(*d)),
                }
                push_user_flag(out, *per_user);
            }
            Capability::Utf8 { user } => {
                out.extend_from_slice(b"UTF8");
                push_user_flag(out, *user);
            }
            Capability::Implementation(t) => {
                out.extend_from_slice(b"IMPLEMENTATION");
                if !t.is_empty() {
                    out.push(b' ');
                    out.extend_from_slice(t.as_str().as_bytes());
                }
            }
            Capability::Other(o) => {
                out.extend_from_slice(o.name().as_str().as_bytes());
                for a in o.args() {
                    out.push(b' ');
                    out.extend_from_slice(a.as_str().as_bytes());
                }
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl Encode for ListEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        push_num(out, u64::from(self.number.get()));
        out.push(b' ');
        push_num(out, self.size);
        out.extend_from_slice(b"\r\n");
    }
}

impl Encode for UidlEntry<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        push_num(out, u64::from(self.number.get()));
        out.push(b' ');
        out.extend_from_slice(self.uid.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Display for StatusResponse<'_> {
    /// The line as sent, without CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = Vec::new();
        self.encode(&mut v);
        let s = String::from_utf8_lossy(&v);
        f.write_str(s.trim_end_matches("\r\n"))
    }
}
