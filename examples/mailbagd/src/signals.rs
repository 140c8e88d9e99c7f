//! The signals mailbagd acts on.
//!
//! - SIGTERM and SIGINT (Ctrl-C): graceful shutdown ([`shutdown_signal`]).
//! - SIGHUP: configuration reload is not implemented; the signal is logged
//!   and ignored, so that a `systemctl reload` or a closed terminal does not
//!   kill the server without draining its connections (the default action of
//!   SIGHUP terminates the process).

/// Completes on SIGTERM or SIGINT (Ctrl-C). While it is being awaited, SIGHUP
/// is logged and ignored (the handlers are installed when it is first polled).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                let mut hup = match signal(SignalKind::hangup()) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot handle SIGHUP");
                        None
                    }
                };
                loop {
                    tokio::select! {
                        _ = term.recv() => return,
                        _ = int.recv() => return,
                        Some(()) = async {
                            match hup.as_mut() {
                                Some(h) => h.recv().await,
                                None => std::future::pending().await,
                            }
                        } => {
                            tracing::warn!(
                                "SIGHUP received: configuration reload is not supported; \
                                 ignoring it (restart the server to apply a new configuration)"
                            );
                        }
                    }
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
