//! Telling an HTTP request that reached an SMTP port: a web page can make a
//! browser `POST` a body of SMTP commands to any port it can reach, and the
//! server, seeing the request line and headers as bad commands, would run
//! the body's commands as from the browser's address (a cross-protocol
//! attack: relay authorized by address, as POP-before-SMTP does, or mail to
//! local users). The server session (`session::ServerSession`) answers
//! such a line with `421` and closes (`ServerConfig::close_on_http`), as
//! Postfix's `smtpd_forbidden_commands` does for `GET`, `POST` and
//! `CONNECT`.

/// The HTTP methods a request line may start with (RFC 9110 section 9, and
/// `PATCH`, RFC 5789): none is an SMTP command.
const METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"PUT", b"HEAD", b"CONNECT", b"OPTIONS", b"DELETE", b"PATCH", b"TRACE",
];

/// Whether `line` (a command line, with or without its line end) is an
/// HTTP request line (`POST / HTTP/1.1`: a method, in capitals as HTTP
/// sends it, then a space) or a header field line (`Host: mx.example`: a
/// field name of token characters and a colon; no SMTP command has a colon
/// straight after its first word).
///
/// # Examples
///
/// ```
/// use mailbag_smtp_proto::http_request::is_http_line;
///
/// assert!(is_http_line(b"POST / HTTP/1.1\r\n"));
/// assert!(is_http_line(b"CONNECT mx.example:25 HTTP/1.1\r\n"));
/// assert!(is_http_line(b"Content-Type: text/plain\r\n"));
/// assert!(!is_http_line(b"MAIL FROM:<a@example.org>\r\n"));
/// assert!(!is_http_line(b"EHLO client.example\r\n"));
/// assert!(!is_http_line(b"get a life\r\n"));
/// ```
pub fn is_http_line(line: &[u8]) -> bool {
    let word_end = line
        .iter()
        .position(|&b| !is_token_char(b))
        .unwrap_or(line.len());
    let (word, rest) = line.split_at(word_end);
    if word.is_empty() {
        return false;
    }
    match rest.first() {
        Some(b' ') => METHODS.contains(&word),
        Some(b':') => true,
        _ => false,
    }
}

/// A `tchar` of RFC 9110 section 5.6.2.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::test_prelude::*;

    #[test]
    fn requests_and_headers_but_no_smtp_command() {
        for http in [
            &b"GET / HTTP/1.1"[..],
            b"POST /x HTTP/1.0\r\n",
            b"PUT /a HTTP/1.1\n",
            b"OPTIONS * HTTP/1.1\r\n",
            b"Host: 127.0.0.1:2525\r\n",
            b"User-Agent: Mozilla/5.0\r\n",
            b"Sec-Fetch-Mode:no-cors\r\n",
        ] {
            assert!(is_http_line(http), "{}", String::from_utf8_lossy(http));
        }
        for smtp in [
            &b"HELO x"[..],
            b"EHLO [127.0.0.1]\r\n",
            b"MAIL FROM:<>\r\n",
            b"RCPT TO:<postmaster>\r\n",
            b"DATA\r\n",
            b"BDAT 10 LAST\r\n",
            b"AUTH PLAIN AGFiYwBkZWY=\r\n",
            b"QUIT\r\n",
            b"RSET\r\n",
            b"VRFY postmaster\r\n",
            b"HELP\r\n",
            b"post / HTTP/1.1\r\n",
            b"\r\n",
            b"",
            b": x\r\n",
        ] {
            assert!(!is_http_line(smtp), "{}", String::from_utf8_lossy(smtp));
        }
    }
}
