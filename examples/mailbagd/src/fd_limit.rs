//! The open-file limit. Every connection is a file descriptor, and a server
//! started by hand usually gets a soft limit of 1,024, far below what
//! `[limits] max_connections` allows. At start-up mailbagd raises its soft
//! `RLIMIT_NOFILE` to the hard limit (which needs no privilege), lowers the
//! connection limits the configuration left at their defaults until they
//! fit it (the way HAProxy sizes its default `maxconn` from the limit), and
//! warns when the limits the configuration wrote need more ([`needed`]).

use std::io;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tracing::{info, warn};

use crate::config::Config;
use crate::limits::MaxConnections;

/// Below this many connections for a role, lowering the defaults is logged as
/// a warning.
pub const FEW_CONNECTIONS: usize = 10;

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

/// Descriptors one inbound connection holds at most: its socket, and a POP3
/// session's maildrop lock file and the message it is reading, or an SMTP
/// transaction's spool file and the one copy it is writing (each local
/// copy is sealed, that is fsynced and closed, before the next is written,
/// and the relay queue's copy comes after them). A delivery that finds no
/// descriptor gets a temporary `4xx`.
pub const DESCRIPTORS_PER_CONNECTION: u64 = 3;

/// Descriptors one outbound relay connection's pass holds at most: the
/// message's queue lock, its body and the socket. Messages waiting for a
/// connection hold none (the engine takes a message's lock only once it may
/// connect).
pub const DESCRIPTORS_PER_RELAY_CONNECTION: u64 = 3;

/// The descriptors `config`'s outbound relay connections can use at once:
/// [`DESCRIPTORS_PER_RELAY_CONNECTION`] per `[relay] max_connections`.
fn outbound(config: &Config) -> u64 {
    DESCRIPTORS_PER_RELAY_CONNECTION.saturating_mul(config.relay.max_connections as u64)
}

/// The descriptors `config` can use at once: [`DESCRIPTORS_PER_CONNECTION`]
/// per inbound connection, [`DESCRIPTORS_PER_RELAY_CONNECTION`] per outbound
/// relay connection and [`RESERVED_DESCRIPTORS`].
pub fn needed(config: &Config) -> u64 {
    let inbound = config.limits.max_connections.total() as u64;
    DESCRIPTORS_PER_CONNECTION
        .saturating_mul(inbound)
        .saturating_add(outbound(config))
        .saturating_add(RESERVED_DESCRIPTORS)
}

/// The inbound connections a soft limit of `limit` descriptors leaves room
/// for, with what `config`'s outbound relay connections need and
/// [`RESERVED_DESCRIPTORS`] set aside.
pub fn connection_capacity(config: &Config, limit: u64) -> usize {
    let room = limit
        .saturating_sub(outbound(config))
        .saturating_sub(RESERVED_DESCRIPTORS);
    usize::try_from(room / DESCRIPTORS_PER_CONNECTION).unwrap_or(usize::MAX)
}

/// `config`'s connection limits with the roles left at their default
/// lowered to fit a soft limit of `limit` descriptors
/// ([`MaxConnections::fit`] over [`connection_capacity`]).
pub fn fitted_limits(config: &Config, limit: u64) -> MaxConnections {
    let l = &config.limits;
    l.max_connections.fit(
        l.max_connections_defaulted,
        connection_capacity(config, limit),
    )
}

/// [`raise`] (or, when that fails, the limit in force); then the connection
/// limits left at their defaults lowered to fit it ([`MaxConnections::fit`]),
/// and log lines: the new limit, the lowered connection limits (a warning
/// when a role is left below [`FEW_CONNECTIONS`]), and a warning naming the
/// need when the connection limits still need more than the limit.
pub fn raise_for(config: &mut Config) {
    let read = || getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from);
    let Some(limit) = limit_in_force(raise(), read) else {
        warn!(needed = needed(config), "cannot read the open-file limit");
        return;
    };
    let fitted = fitted_limits(config, limit);
    if fitted != config.limits.max_connections {
        config.limits.max_connections = fitted;
        if let MaxConnections::PerRole(p) = fitted {
            // One line, at the level chosen below.
            macro_rules! lowered {
                ($level:ident) => {
                    $level!(
                        limit,
                        pop3 = p.pop3,
                        smtp = p.smtp,
                        submission = p.submission,
                        web = p.web,
                        "default connection limits lowered to fit the open-file limit"
                    )
                };
            }
            // A role squeezed to a handful of connections is as good as
            // closed: worth a warning, not a note.
            if [p.pop3, p.smtp, p.submission, p.web].into_iter().min() < Some(FEW_CONNECTIONS) {
                lowered!(warn);
            } else {
                lowered!(info);
            }
        }
    }
    let need = needed(config);
    if limit < need {
        warn!(
            limit,
            needed = need,
            "open-file limit below what the connection limits need: raise the hard limit (LimitNOFILE=, ulimit -Hn) or lower [limits] max_connections"
        );
    }
}

/// The soft limit to fit the connection limits to: the raised one (logged
/// when it went up), or, when raising failed (a platform or a filter that
/// refuses), the one in force as `read` finds it; `None` when neither is
/// known.
fn limit_in_force(
    raised: io::Result<FdLimit>,
    read: impl FnOnce() -> io::Result<(u64, u64)>,
) -> Option<u64> {
    match raised {
        Ok(l) => {
            if l.soft > l.before {
                info!(from = l.before, to = l.soft, "open-file limit raised");
            }
            Some(l.soft)
        }
        Err(e) => {
            let soft = read().ok().map(|(soft, _)| soft);
            warn!(error = %e, limit = ?soft, "cannot raise the open-file limit");
            soft
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::PerRole;

    fn config(limits: &str) -> Config {
        Config::from_toml_str(&format!(
            "{limits}\n[[users]]\nname = \"joe\"\npassword = \"secret\"\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_limit_that_cannot_be_raised_is_fitted_as_it_is() {
        let raised = FdLimit {
            before: 1_024,
            soft: 4_096,
            hard: 4_096,
        };
        let unread = || -> io::Result<(u64, u64)> { Err(io::Error::other("no")) };
        assert_eq!(limit_in_force(Ok(raised), unread), Some(4_096));
        let refused = || Err(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(
            limit_in_force(refused(), || Ok((1_024, 4_096))),
            Some(1_024)
        );
        assert_eq!(limit_in_force(refused(), unread), None);
    }

    #[test]
    fn needs_three_per_connection_plus_outbound_and_reserve() {
        // 11,000 default connections, 20 outbound (3 each), 128 reserved.
        assert_eq!(needed(&config("")), 33_188);
        assert_eq!(needed(&config("[limits]\nmax_connections = 10")), 218);
    }

    #[test]
    fn capacity_sets_aside_outbound_and_reserve() {
        let c = config("");
        assert_eq!(connection_capacity(&c, 33_188), 11_000);
        assert_eq!(connection_capacity(&c, 1_024), 278);
        assert_eq!(connection_capacity(&c, 100), 0);
        assert_eq!(
            connection_capacity(&c, u64::MAX),
            (u64::MAX - 188) as usize / 3
        );
    }

    #[test]
    fn defaults_fit_the_limit_and_written_values_stay() {
        let c = config("");
        let per_role = |p, s, sub, w| MaxConnections::PerRole(PerRole::new(p, s, sub, w));
        assert_eq!(fitted_limits(&c, 1_024), per_role(126, 126, 12, 12));
        // With the hard limit of this project's VM (20,000) and of the shipped
        // unit (65,536).
        assert_eq!(fitted_limits(&c, 20_000), per_role(3_001, 3_001, 300, 300));
        assert_eq!(fitted_limits(&c, 65_536), c.limits.max_connections);

        let c = config("[limits.max_connections]\npop3 = 900");
        assert_eq!(fitted_limits(&c, 1_024), per_role(900, 1, 1, 1));
        let c = config("[limits]\nmax_connections = 900");
        assert_eq!(fitted_limits(&c, 1_024), MaxConnections::Shared(900));
    }
}
