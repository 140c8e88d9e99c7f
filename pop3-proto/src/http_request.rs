//! Telling an HTTP request that reached a POP3 port: a web page can make a
//! browser `POST` a body of POP3 commands to any port it can reach, and
//! each request's wrong passwords would count against the customer's own
//! address in the server's login limiter (a page could lock a customer out
//! of their mail). The server session (`session::ServerSession`) answers
//! a request line with `-ERR` and closes (`ServerConfig::close_on_http`),
//! before any later line runs, as `mailbag-smtp-proto` does for SMTP.

/// Whether `line` (a command line, with or without its line end) starts
/// like an HTTP request line: a method in capitals, as HTTP sends it, then
/// a space. No POP3 command is one of them.
///
/// # Examples
///
/// ```
/// use mailbag_pop3_proto::http_request::is_http_request_line;
///
/// assert!(is_http_request_line(b"POST / HTTP/1.1\r\n"));
/// assert!(is_http_request_line(b"GET /favicon.ico HTTP/1.1\r\n"));
/// assert!(!is_http_request_line(b"USER joe\r\n"));
/// assert!(!is_http_request_line(b"get\r\n"));
/// ```
pub fn is_http_request_line(line: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"CONNECT ",
        b"OPTIONS ",
        b"DELETE ",
        b"PATCH ",
        b"TRACE ",
    ];
    METHODS.iter().any(|m| line.starts_with(m))
}
