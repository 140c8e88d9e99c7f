//! The signals mailbagd acts on.
//!
//! - SIGTERM and SIGINT (Ctrl-C): graceful shutdown ([`shutdown_signal`]).
//! - SIGHUP: reload (the configuration, the passwd-file, the TLS
//!   certificate); [`crate::server::Server::run`] handles it for as long as
//!   it serves, so that a `systemctl reload` or a closed terminal never
//!   kills the server (the default action of SIGHUP terminates the process).

/// Completes on SIGTERM or SIGINT (Ctrl-C) (the handlers are installed when
/// it is first polled).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
