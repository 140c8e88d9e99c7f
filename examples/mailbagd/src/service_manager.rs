//! systemd integration, without libsystemd: socket activation
//! ([`passed_listeners`]: `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`) and
//! readiness notification ([`Notifier`]: `NOTIFY_SOCKET`, `READY=1`,
//! `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1` every half `WATCHDOG_USEC`).
//!
//! Both follow `sd_listen_fds(3)` and `sd_notify(3)`; outside systemd (no
//! such variables) they do nothing, so the same binary runs under any
//! service manager or none.

use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A listening socket the service manager passed, with its
/// `FileDescriptorName=`.
#[derive(Debug)]
pub struct PassedListener {
    /// The name (`LISTEN_FDNAMES`; systemd says `unknown` when the unit
    /// names none).
    pub name: String,
    /// The socket.
    pub listener: TcpListener,
}

/// The listening sockets passed by socket activation, in order, when
/// `LISTEN_PID` is this process (`None`: not socket-activated).
///
/// # Errors
///
/// A passed descriptor that is not a TCP listening socket.
pub fn passed_listeners() -> io::Result<Option<Vec<PassedListener>>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(fds.len());
    for i in 0..fds.len() {
        let name = names
            .get(i)
            .cloned()
            .unwrap_or_else(|| "unknown".to_owned());
        let listener = fds.take_tcp_listener(i)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("passed socket {i} ({name}) was already taken"),
            )
        })?;
        listener.set_nonblocking(true)?;
        out.push(PassedListener { name, listener });
    }
    Ok(Some(out))
}

/// Tells the service manager about the server's state (`sd_notify`). A
/// clone shares the socket. Does nothing without `NOTIFY_SOCKET`.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    socket: Option<std::sync::Arc<(UnixDatagram, std::os::unix::net::SocketAddr)>>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace)
    /// and `WATCHDOG_USEC` (when `WATCHDOG_PID` is unset or this process).
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let addr = if let Some(name) = path.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            } else {
                std::os::unix::net::SocketAddr::from_pathname(&path).ok()?
            };
            let sock = UnixDatagram::unbound().ok()?;
            Some(std::sync::Arc::new((sock, addr)))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .map(|p| p.trim() == std::process::id().to_string())
            .unwrap_or(true);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&us| us > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// Sends one notification (`KEY=VALUE` lines); errors are ignored, as
    /// `sd_notify` callers do.
    pub fn send(&self, state: &str) {
        if let Some(s) = &self.socket {
            let (sock, addr) = &**s;
            if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
                tracing::debug!(error = %e, "sd_notify");
            }
        }
    }

    /// `READY=1`: every listener is up (also after a reload).
    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=serving\n");
    }

    /// `RELOADING=1` with the monotonic time systemd's `Type=notify-reload`
    /// asks for.
    pub fn reloading(&self) {
        let usec = monotonic_usec();
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading\n"
        ));
    }

    /// `STOPPING=1`: shutting down.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping\n");
    }

    /// How often `WATCHDOG=1` is due: half of `WATCHDOG_USEC`, as
    /// `sd_watchdog_enabled(3)` advises (`None`: no watchdog).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Sends `WATCHDOG=1` every [`Notifier::watchdog_interval`] until
    /// `stop` is cancelled. The pings come from the runtime that also
    /// serves the clients: a stuck runtime stops them and systemd restarts
    /// the service.
    pub async fn run_watchdog(self, stop: tokio_util::sync::CancellationToken) {
        let Some(every) = self.watchdog_interval() else {
            return;
        };
        loop {
            self.send("WATCHDOG=1\n");
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// `CLOCK_MONOTONIC` in microseconds.
fn monotonic_usec() -> u128 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u128::from(t.tv_sec.unsigned_abs()) * 1_000_000 + u128::from(t.tv_nsec.unsigned_abs()) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_an_abstract_and_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: Some(std::sync::Arc::new((
                UnixDatagram::unbound().unwrap(),
                std::os::unix::net::SocketAddr::from_pathname(&path).unwrap(),
            ))),
            watchdog: Some(Duration::from_secs(10)),
        };
        n.ready();
        n.reloading();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving\n");
        let len = server.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));
        // Without NOTIFY_SOCKET nothing is sent and nothing fails.
        Notifier::default().ready();
        assert_eq!(Notifier::default().watchdog_interval(), None);
    }
}
