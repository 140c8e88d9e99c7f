//! Serving the web page on a connection the listener accepted: hyper
//! (HTTP/1.1, keep-alive, `web.request_timeout` for a request header, a whole
//! request and an idle keep-alive connection), and a graceful end on shutdown
//! (the request in progress finishes, then the connection closes).

use std::io;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use futures::future::BoxFuture;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt;
use tracing::{debug, info};

use axum::http::header;
use axum::response::Response;

use super::app::Web;
use super::responses::{add_security_headers, plain_error};
use super::routes::router;
use crate::listener::{Connection, Service, WriteDeadline};

impl Service for Web {
    fn serve(self: Arc<Self>, conn: Connection) -> BoxFuture<'static, io::Result<()>> {
        Box::pin(serve_connection(self, conn))
    }
}

async fn serve_connection(web: Arc<Web>, conn: Connection) -> io::Result<()> {
    let ctx = Arc::clone(&web.ctx);
    let secure = web.secure;
    let app = router(web);
    let peer = conn.peer;
    let timeout = ctx.config().web.request_timeout;
    let max_head = ctx.config().web.max_request_head;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            if let Some(mut refused) = check_head_size(&req, max_head).or_else(|| check_host(&req))
            {
                add_security_headers(refused.headers_mut(), secure);
                return Ok::<_, std::convert::Infallible>(refused);
            }
            // The whole request (body included) and its answer get
            // `request_timeout`: a client that announces a body and then
            // stops sending gets 408 and the connection is closed, instead
            // of holding a task forever (`header_read_timeout` only covers
            // the header).
            match tokio::time::timeout(timeout, app.oneshot(req)).await {
                Ok(r) => r,
                Err(_) => {
                    info!("web: request timed out");
                    let mut r = plain_error(StatusCode::REQUEST_TIMEOUT, "Request timeout\n");
                    add_security_headers(r.headers_mut(), secure);
                    Ok(r)
                }
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        // A client that shuts down its sending side after the request (`nc
        // -N`, socat, scripts) still gets the answer (RFC 9112 section 9.6).
        .half_close(true)
        .max_buf_size(ctx.config().web.max_request_head.max(8192))
        .keep_alive(true);
    // hyper has no write deadline of its own: a client that sends requests
    // and never reads the answers would hold the connection forever.
    let stream = WriteDeadline::new(conn.stream, ctx.config().limits.write_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = ctx.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(ctx.config().limits.shutdown_timeout, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "HTTP connection ended with an error");
    }
    Ok(())
}

/// `web.max_request_head`, exactly: hyper checks its buffer only between
/// reads, so a head of up to about 1.75 times its `max_buf_size` could pass.
/// Counted as the request line (`METHOD target HTTP/1.1` and CRLF) and each
/// field as `name: value` and CRLF, plus the empty line. A request target
/// longer than the limit on its own gets `414`, any other head over it `431`.
fn check_head_size<B>(req: &hyper::Request<B>, max: usize) -> Option<Response> {
    let target = req.uri().to_string().len();
    if target > max {
        return Some(plain_error(StatusCode::URI_TOO_LONG, "URI too long\n"));
    }
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    (line + fields + 2 > max).then(|| {
        plain_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request header fields too large\n",
        )
    })
}

/// RFC 9112 §3.2: an HTTP/1.1 request without a `Host` field, with more
/// than one, or with one whose value is not `uri-host [ ":" port ]` gets
/// `400` (HTTP/1.0 may omit it).
fn check_host<B>(req: &hyper::Request<B>) -> Option<Response> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let bad = match (hosts.next(), hosts.next()) {
        (Some(h), None) => !valid_host(h.as_bytes()),
        (None, _) => req.version() >= hyper::Version::HTTP_11,
        (Some(_), Some(_)) => true,
    };
    bad.then(|| plain_error(StatusCode::BAD_REQUEST, "Bad request: Host header\n"))
}

/// RFC 9110 section 7.2 / RFC 3986 section 3.2.2: `uri-host [ ":" port ]`,
/// the host a reg-name (unreserved, percent-encoded and sub-delims
/// characters) or an IPv6 literal in brackets, the port at most 5 digits.
fn valid_host(v: &[u8]) -> bool {
    let (host, port) = match v.first() {
        Some(b'[') => match v.iter().position(|&b| b == b']') {
            Some(end) => {
                let literal = v.get(1..end).unwrap_or_default();
                if literal.is_empty()
                    || !literal
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
                {
                    return false;
                }
                match v.get(end + 1..).unwrap_or_default() {
                    [] => return true,
                    [b':', port @ ..] => (&[][..], port),
                    _ => return false,
                }
            }
            None => return false,
        },
        _ => match v.iter().rposition(|&b| b == b':') {
            Some(i) => (
                v.get(..i).unwrap_or_default(),
                v.get(i + 1..).unwrap_or_default(),
            ),
            None => (v, &[][..]),
        },
    };
    let reg_name = host.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
    });
    reg_name && port.len() <= 5 && port.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_rules() {
        let req = |v, hosts: &[&str]| {
            let mut b = hyper::Request::get("/login").version(v);
            for h in hosts {
                b = b.header(header::HOST, *h);
            }
            b.body(()).unwrap()
        };
        let status = |r: &hyper::Request<()>| check_host(r).map(|r| r.status());
        assert_eq!(status(&req(hyper::Version::HTTP_11, &["a"])), None);
        assert_eq!(status(&req(hyper::Version::HTTP_10, &[])), None);
        assert_eq!(
            status(&req(hyper::Version::HTTP_11, &[])),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status(&req(hyper::Version::HTTP_11, &["a", "b"])),
            Some(StatusCode::BAD_REQUEST)
        );
        for ok in [
            "mail.example.test",
            "mail.example.test:8080",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "a,b",
            "xn--bcher-kva.example",
            "host:",
            // RFC 9112 section 3.2: a target without an authority.
            "",
        ] {
            assert_eq!(status(&req(hyper::Version::HTTP_11, &[ok])), None, "{ok}");
        }
        for bad in [
            "a b<script>",
            "a/b",
            "x@evil",
            "[::1",
            "[::1]x",
            "[]",
            "evil:99999999",
            "evil:8o",
        ] {
            assert_eq!(
                status(&req(hyper::Version::HTTP_11, &[bad])),
                Some(StatusCode::BAD_REQUEST),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn head_size_is_counted_as_sent() {
        // "GET /login HTTP/1.1\r\n" (21) + "host: x\r\n" (9) + the empty line (2).
        let req = |target: &str, field: &str| {
            hyper::Request::get(target)
                .header(header::HOST, "x")
                .header("x-a", field)
                .body(())
                .unwrap()
        };
        let status = |r: &hyper::Request<()>, max| check_head_size(r, max).map(|r| r.status());
        let r = req("/login", "abc"); // + "x-a: abc\r\n" (10) = 42
        assert_eq!(status(&r, 42), None);
        assert_eq!(
            status(&r, 41),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let r = req(&format!("/{}", "a".repeat(99)), "");
        assert_eq!(status(&r, 99), Some(StatusCode::URI_TOO_LONG));
        assert_ne!(status(&r, 100), Some(StatusCode::URI_TOO_LONG));
    }
}
