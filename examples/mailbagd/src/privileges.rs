//! Giving up root (`[server] user` and `group`): started as root, mailbagd
//! binds its ports and reads its TLS key, then becomes an ordinary user
//! before it opens the mail store or serves anyone.

use nix::unistd::{Gid, Group, Uid, User, getegid, geteuid, getgid, getuid};

/// Why the server would not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivilegeError {
    /// `[server] user` names no user of this system.
    #[error("server.user: no user {0:?} on this system")]
    NoUser(String),
    /// `[server] group` names no group of this system.
    #[error("server.group: no group {0:?} on this system")]
    NoGroup(String),
    /// The user or group database could not be read.
    #[error("cannot look up {what}: {source}")]
    Lookup {
        /// The user or group name.
        what: String,
        /// The error.
        source: nix::Error,
    },
    /// A step of the change failed: the server refuses to serve as root.
    #[error("cannot become {user}: {step} failed: {source}")]
    Change {
        /// The target user.
        user: String,
        /// `setgroups`, `setgid` or `setuid`.
        step: &'static str,
        /// The error.
        source: nix::Error,
    },
    /// The process could get root back after the change.
    #[error("still able to regain root after becoming {0}: refusing to serve")]
    RootRegained(String),
}

/// What [`drop_to`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The process now runs as the user (it was root).
    Changed {
        /// The user id.
        uid: u32,
        /// The group id.
        gid: u32,
    },
    /// The process was not root and already ran as the user.
    AlreadyThatUser,
    /// The process was not root and runs as someone else: it cannot change
    /// and has no root to give up.
    NotRoot {
        /// The user id it keeps.
        uid: u32,
    },
}

/// Becomes `user` (and `group`, else the user's primary group, with no
/// supplementary groups) when running as root; checks that root cannot be
/// regained. libc's `setuid` changes every thread of the process.
///
/// # Errors
///
/// [`PrivilegeError`]: the caller must not serve.
pub fn drop_to(user: &str, group: Option<&str>) -> Result<Dropped, PrivilegeError> {
    let (uid, gid) = ids_of(user, group)?;
    if !geteuid().is_root() {
        return Ok(if geteuid() == uid {
            Dropped::AlreadyThatUser
        } else {
            Dropped::NotRoot {
                uid: geteuid().as_raw(),
            }
        });
    }
    let change = |step: &'static str, r: nix::Result<()>| {
        r.map_err(|source| PrivilegeError::Change {
            user: user.to_owned(),
            step,
            source,
        })
    };
    change("setgroups", nix::unistd::setgroups(&[gid]))?;
    change("setgid", nix::unistd::setgid(gid))?;
    change("setuid", nix::unistd::setuid(uid))?;
    let dropped = getuid() == uid
        && geteuid() == uid
        && getgid() == gid
        && getegid() == gid
        && (uid.is_root() || nix::unistd::setuid(Uid::from_raw(0)).is_err())
        && (gid == Gid::from_raw(0) || nix::unistd::setgid(Gid::from_raw(0)).is_err());
    if !dropped {
        return Err(PrivilegeError::RootRegained(user.to_owned()));
    }
    Ok(Dropped::Changed {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
    })
}

/// The user id of `user` and the group id of `group` (else the user's
/// primary group), as `[server] user` and `group` name them.
///
/// # Errors
///
/// [`PrivilegeError`]: no such user or group, or the lookup failed.
pub fn ids_of(user: &str, group: Option<&str>) -> Result<(Uid, Gid), PrivilegeError> {
    let u = User::from_name(user)
        .map_err(|source| PrivilegeError::Lookup {
            what: user.to_owned(),
            source,
        })?
        .ok_or_else(|| PrivilegeError::NoUser(user.to_owned()))?;
    let gid = match group {
        None => u.gid,
        Some(g) => {
            Group::from_name(g)
                .map_err(|source| PrivilegeError::Lookup {
                    what: g.to_owned(),
                    source,
                })?
                .ok_or_else(|| PrivilegeError::NoGroup(g.to_owned()))?
                .gid
        }
    };
    Ok((u.uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_errors() {
        assert!(matches!(
            drop_to("no-such-user-mailbag", None),
            Err(PrivilegeError::NoUser(_))
        ));
        assert!(matches!(
            drop_to("root", Some("no-such-group-mailbag")),
            Err(PrivilegeError::NoGroup(_))
        ));
    }
}
