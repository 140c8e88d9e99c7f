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
use super::responses::plain_error;
use super::routes::router;
use crate::listener::{Connection, Service, WriteDeadline};

impl Service for Web {
    fn serve(self: Arc<Self>, conn: Connection) -> BoxFuture<'static, io::Result<()>> {
        Box::pin(serve_connection(self, conn))
    }
}

async fn serve_connection(web: Arc<Web>, conn: Connection) -> io::Result<()> {
    let ctx = Arc::clone(&web.ctx);
    let app = router(web);
    let peer = conn.peer;
    let timeout = ctx.config().web.request_timeout;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            if let Some(refused) = check_host(&req) {
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
                    Ok(plain_error(
                        StatusCode::REQUEST_TIMEOUT,
                        "Request timeout\n",
                    ))
                }
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
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

/// RFC 9112 §3.2: an HTTP/1.1 request without a `Host` field, or with more
/// than one, gets `400` (HTTP/1.0 may omit it).
fn check_host<B>(req: &hyper::Request<B>) -> Option<Response> {
    let hosts = req.headers().get_all(header::HOST).iter().count();
    let bad = hosts > 1 || (hosts == 0 && req.version() >= hyper::Version::HTTP_11);
    bad.then(|| plain_error(StatusCode::BAD_REQUEST, "Bad request: Host header\n"))
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
    }
}
