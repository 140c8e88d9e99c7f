//! The POP-before-SMTP table of a single host kept over a restart: written
//! at a graceful shutdown to `<data_dir>/mailbag-relay-table` (mode `0600`,
//! written whole and renamed into place), read back at start-up (logins
//! whose window has passed are left out) and then removed. Without it a
//! user who had checked mail a minute before a restart got `554 5.7.1 Relay
//! access denied`, a permanent refusal, until they checked mail again. With
//! `[cluster] redis` the table lives in Redis and needs none of this. A crash
//! loses the logins since the last graceful shutdown, as before.
//!
//! One line per login: `<unix milliseconds of the login> <address> <user>
//! <credential fingerprint>` (the user's [`crate::credentials::Credential::fingerprint`]
//! at shutdown: a password changed while the server was down revokes the
//! login; a line without it, from an older version, is read as before).

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailbag_pop_before_smtp::SharedRelayTable;

/// The file's name in the data directory.
pub const RELAY_TABLE_FILE: &str = "mailbag-relay-table";

/// Writes the logins of `table` still active at `now` (the wall clock then
/// reading `wall`) to `path`, each with its user's credential `fingerprint`
/// (`None`: the user is gone, the login is left out); returns how many.
///
/// # Errors
///
/// The file could not be written (nothing is left half written).
pub fn save(
    table: &SharedRelayTable,
    path: &Path,
    now: Instant,
    wall: SystemTime,
    fingerprint: impl Fn(&str) -> Option<String>,
) -> io::Result<usize> {
    let mut text = String::new();
    let n = table.with_table(|t| {
        let mut n = 0;
        for e in t.active(now) {
            let age = now.saturating_duration_since(e.logged_in_at());
            let at = wall.checked_sub(age).unwrap_or(UNIX_EPOCH);
            let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            let Some(fp) = fingerprint(e.user()) else {
                continue; // a user gone already: nothing to keep
            };
            text.push_str(&format!("{ms} {} {} {fp}\n", e.address(), e.user()));
            n += 1;
        }
        n
    });
    crate::private_file::replace(path, text.as_bytes())?;
    Ok(n)
}

/// Records in `table` the logins of `path` whose window (`window`) has not
/// passed at `wall` (the monotonic clock then reading `now`), then removes
/// the file; returns how many. A login older than this process's monotonic
/// clock can tell (a restart soon after the machine's) is recorded as of
/// `now`: it authorizes a full window from the restart. Lines that do not
/// read are skipped, and so are logins for which `may_log_in(user, saved
/// fingerprint)` is false (the user removed, barred or given another
/// password while the server was down). No file: none.
///
/// # Errors
///
/// The file exists but could not be read or removed.
pub fn restore(
    table: &SharedRelayTable,
    path: &Path,
    window: Duration,
    now: Instant,
    wall: SystemTime,
    may_log_in: impl Fn(&str, Option<&str>) -> bool,
) -> io::Result<usize> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let wall_ms = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut n = 0;
    for line in text.lines() {
        let mut f = line.split(' ');
        let (Some(ms), Some(ip), Some(user), fp, None) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let (Ok(ms), Ok(ip)) = (ms.parse::<u128>(), ip.parse::<IpAddr>()) else {
            continue;
        };
        let age_ms = wall_ms.saturating_sub(ms);
        let age = Duration::from_millis(u64::try_from(age_ms).unwrap_or(u64::MAX));
        // A user removed (or barred) while the server was down authorizes
        // nothing any more.
        if user.is_empty() || age >= window || !may_log_in(user, fp) {
            continue;
        }
        table.record_login(ip, user, now.checked_sub(age).unwrap_or(now));
        n += 1;
    }
    std::fs::remove_file(path)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailbag_pop_before_smtp::RelayOptions;

    fn table() -> SharedRelayTable {
        SharedRelayTable::new(RelayOptions::default().with_window(Duration::from_secs(1800)))
    }

    #[test]
    fn logins_survive_a_restart_with_the_rest_of_their_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RELAY_TABLE_FILE);
        let (t0, w0) = (Instant::now(), SystemTime::now());
        let before = table();
        let (joe, ann): (IpAddr, IpAddr) =
            ("192.0.2.7".parse().unwrap(), "2001:db8::9".parse().unwrap());
        before.record_login(joe, "joe", t0);
        before.record_login(ann, "ann", t0 + Duration::from_secs(1000));
        let at = t0 + Duration::from_secs(1200);
        let fp = |user: &str| Some(format!("fp-{user}"));
        assert_eq!(save(&before, &path, at, w0, fp).unwrap(), 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // Restarted 60 s later: joe logged in 1,260 s ago, ann 260 s ago.
        let after = table();
        let (t1, w1) = (Instant::now(), w0 + Duration::from_secs(60));
        let window = Duration::from_secs(1800);
        assert_eq!(
            restore(&after, &path, window, t1, w1, |_, _| true).unwrap(),
            2
        );
        assert!(!path.exists(), "read once");
        assert_eq!(
            after
                .lookup(joe, t1)
                .map(|e| e.user().to_owned())
                .as_deref(),
            Some("joe")
        );
        // joe's window ends 540 s after the restart, ann's 1,540 s after it.
        assert!(after.is_authorized(joe, t1 + Duration::from_secs(530)));
        assert!(!after.is_authorized(joe, t1 + Duration::from_secs(550)));
        assert!(after.is_authorized(ann, t1 + Duration::from_secs(1530)));
        assert!(!after.is_authorized(ann, t1 + Duration::from_secs(1550)));
        // No file: nothing.
        assert_eq!(
            restore(&after, &path, window, t1, w1, |_, _| true).unwrap(),
            0
        );
    }

    #[test]
    fn expired_and_unreadable_lines_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RELAY_TABLE_FILE);
        let wall = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let ms = |secs_ago: u64| (2_000_000_000 - secs_ago) * 1000;
        std::fs::write(
            &path,
            format!(
                "{} 192.0.2.1 old\n{} 192.0.2.2 new\nnonsense\n{} 192.0.2.3\n{} x.y.z bad\n",
                ms(1900),
                ms(100),
                ms(10),
                ms(10)
            ),
        )
        .unwrap();
        let t = table();
        let now = Instant::now();
        let n = restore(&t, &path, Duration::from_secs(1800), now, wall, |_, _| true).unwrap();
        assert_eq!(n, 1);
        assert!(t.is_authorized("192.0.2.2".parse().unwrap(), now));
        assert!(!t.is_authorized("192.0.2.1".parse().unwrap(), now));
    }

    /// A user removed, or given another password, while the server was
    /// down gets none of their logins back (a review and a re-probe: a
    /// restart after deleting a compromised user, or resetting their
    /// password, gave their address its relay right again). A line of an
    /// older version, without a fingerprint, is read as before.
    #[test]
    fn logins_of_users_who_may_not_log_in_are_not_restored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RELAY_TABLE_FILE);
        let wall = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let ms = (2_000_000_000u64 - 60) * 1000;
        std::fs::write(
            &path,
            format!(
                "{ms} 192.0.2.1 joe fp1\n{ms} 192.0.2.2 gone fp2\n\
                 {ms} 192.0.2.3 lou old\n{ms} 192.0.2.4 ann\n"
            ),
        )
        .unwrap();
        let t = table();
        let now = Instant::now();
        let window = Duration::from_secs(1800);
        let current = |user: &str| match user {
            "joe" => Some("fp1"),
            "lou" => Some("new"),
            "ann" => Some("any"),
            _ => None,
        };
        let may = |user: &str, saved: Option<&str>| {
            current(user).is_some_and(|now| saved.is_none_or(|s| s == now))
        };
        let n = restore(&t, &path, window, now, wall, may).unwrap();
        assert_eq!(n, 2);
        let ok = |ip: &str| t.is_authorized(ip.parse().unwrap(), now);
        assert!(ok("192.0.2.1") && ok("192.0.2.4"));
        assert!(!ok("192.0.2.2"), "removed");
        assert!(!ok("192.0.2.3"), "password changed");
    }

    /// A login of a user gone at shutdown is not saved.
    #[test]
    fn a_gone_users_login_is_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RELAY_TABLE_FILE);
        let (now, wall) = (Instant::now(), SystemTime::now());
        let t = table();
        t.record_login("192.0.2.1".parse().unwrap(), "joe", now);
        t.record_login("192.0.2.2".parse().unwrap(), "gone", now);
        let fp = |user: &str| (user == "joe").then(|| "fp1".to_owned());
        assert_eq!(save(&t, &path, now, wall, fp).unwrap(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(" 192.0.2.1 joe fp1\n"), "{text}");
    }
}
