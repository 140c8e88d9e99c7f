//! The open-file limit. Every connection is a file descriptor, and a server
//! started by hand usually gets a soft limit of 1,024, far below what
//! `[limits] max_connections` allows. At start-up mailbagd raises its soft
//! `RLIMIT_NOFILE` to the hard limit (which needs no privilege) and warns
//! when even the hard limit is below what the configuration can use
//! ([`needed`]).

use std::io;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tracing::{info, warn};

use crate::config::Config;

/// Descriptors kept for everything that is not a client connection.
pub const RESERVED_DESCRIPTORS: u64 = 128;

/// The limit before and after [`raise`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit found at start-up.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard one.
///
/// # Errors
///
/// The limits cannot be read or set.
pub fn raise() -> io::Result<FdLimit> {
    let (before, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if before < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok(FdLimit {
        before,
        soft: before.max(hard),
        hard,
    })
}

/// The descriptors `config` can use at once: two per inbound connection
/// (its socket, and a POP3 session's maildrop lock file or an SMTP
/// transaction's spool file), the outbound relay connections and
/// [`RESERVED_DESCRIPTORS`].
pub fn needed(config: &Config) -> u64 {
    let inbound = config.limits.max_connections.total() as u64;
    2 * inbound + config.relay.max_connections as u64 + RESERVED_DESCRIPTORS
}

/// [`raise`], and a log line: the new limit, or a warning naming the
/// configuration's need when the limit is below it.
pub fn raise_for(config: &Config) {
    let need = needed(config);
    match raise() {
        Ok(l) if l.soft < need => warn!(
            limit = l.soft,
            needed = need,
            "open-file limit below what [limits] max_connections allows: raise the hard limit (LimitNOFILE=, ulimit -Hn) or lower the connection limits"
        ),
        Ok(l) if l.soft > l.before => {
            info!(from = l.before, to = l.soft, "open-file limit raised")
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, needed = need, "cannot read or raise the open-file limit"),
    }
}
