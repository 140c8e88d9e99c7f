//! The login name users type, and the mailbox and folder it opens.
//!
//! Mail clients and autoconfiguration often send the full address, so a
//! login name is, in order:
//! 1. with `[pop3] spam_login_suffix` (default `/Spam`, any letter case)
//!    at its end: the user's Spam folder instead of the INBOX (`joe/Spam`);
//! 2. `local@domain` with a local domain (any letter case, a trailing dot
//!    allowed): the mailbox `local` (`joe@example.test` is `joe`);
//! 3. a mailbox name, compared as [`Config::user`] does (case-insensitively
//!    by default, `[userdb] case_insensitive`).
//!
//! POP3 (USER, SASL), the web page and the relay authorization all take
//! logins through here, so `JOE@Example.TEST/spam` is `joe`'s Spam folder
//! everywhere, and a failed login counts against one user name however it
//! was spelled ([`limiter_key`]).

use mailbag_mailstore::Folder;
use mailbag_smtp_proto::address::Domain;

use crate::config::{Config, User};

/// A login name resolved to a configured user and the folder it opens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Login<'a> {
    /// The user (its `name` is the configured spelling).
    pub user: &'a User,
    /// The folder served as the POP3 maildrop: INBOX, or Spam for a login
    /// with the Spam suffix.
    pub folder: Folder,
}

/// The user and folder `typed` names, if any.
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::Folder;
/// use mailbagd::config::Config;
/// use mailbagd::login_name::resolve;
///
/// let config = Config::from_toml_str(
///     "hostname = \"mail.example.test\"\nlocal_domains = [\"example.test\"]\n\
///      [[users]]\nname = \"joe\"\npassword = \"x\"\n",
/// )
/// .unwrap();
/// let joe = |t| resolve(&config, t).map(|l| (l.user.name.as_str(), l.folder));
/// assert_eq!(joe("joe"), Some(("joe", Folder::Inbox)));
/// assert_eq!(joe("Joe@EXAMPLE.test"), Some(("joe", Folder::Inbox)));
/// assert_eq!(joe("joe/Spam"), Some(("joe", Folder::Spam)));
/// assert_eq!(joe("joe@example.test/spam"), Some(("joe", Folder::Spam)));
/// assert_eq!(joe("joe@elsewhere.test"), None);
/// assert_eq!(joe("ann"), None);
/// ```
pub fn resolve<'a>(config: &'a Config, typed: &str) -> Option<Login<'a>> {
    let (name, folder) = strip_spam_suffix(config, typed);
    let name = match name.rsplit_once('@') {
        Some((local, domain)) => {
            let domain = Domain::try_from(domain).ok()?;
            if !config.is_local_domain(&domain) {
                return None;
            }
            local
        }
        None => name,
    };
    config.user(name).map(|user| Login { user, folder })
}

/// Why [`check`] refused a login: for the server's log (an admin asks why
/// a user cannot log in), never for the client, who is told the same for
/// every one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The name is no configured user (nor a usable line of the passwd-file).
    UnknownUser,
    /// The password does not match.
    WrongPassword,
    /// The user may not log in at all (`nologin`).
    Barred,
    /// The user may not log in from this client address (`allow_nets`).
    NotFromHere,
}

impl Refusal {
    /// The reason as the log says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownUser => "unknown user",
            Refusal::WrongPassword => "wrong password",
            Refusal::Barred => "user may not log in (nologin)",
            Refusal::NotFromHere => "not allowed from this address (allow_nets)",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The login check of every service: [`resolve`], then
/// [`Config::authenticate`] (the same hash work for a name that resolves
/// to nobody), then whether the user may log in from the client's address
/// `ip` ([`crate::config::User::may_log_in_from`]: Dovecot's `nologin` and
/// `allow_nets`).
pub fn authenticate<'a>(
    config: &'a Config,
    typed: &str,
    password: &[u8],
    ip: std::net::IpAddr,
) -> Option<Login<'a>> {
    check(config, typed, password, ip).ok()
}

/// [`authenticate`], saying why a login is refused.
///
/// ```
/// use mailbagd::config::Config;
/// use mailbagd::login_name::{Refusal, check};
///
/// let config = Config::from_toml_str(
///     "[[users]]\nname = \"joe\"\npassword = \"secret\"\n",
/// ).unwrap();
/// let ip = "192.0.2.1".parse().unwrap();
/// assert!(check(&config, "joe", b"secret", ip).is_ok());
/// assert_eq!(check(&config, "joe", b"guess", ip).err(), Some(Refusal::WrongPassword));
/// assert_eq!(check(&config, "kim", b"secret", ip).err(), Some(Refusal::UnknownUser));
/// ```
///
/// # Errors
///
/// The [`Refusal`].
pub fn check<'a>(
    config: &'a Config,
    typed: &str,
    password: &[u8],
    ip: std::net::IpAddr,
) -> Result<Login<'a>, Refusal> {
    match resolve(config, typed) {
        Some(login) => {
            let user = config
                .authenticate(login.user.name.as_str(), password)
                .ok_or(Refusal::WrongPassword)?;
            if user.nologin {
                Err(Refusal::Barred)
            } else if !user.may_log_in_from(ip) {
                Err(Refusal::NotFromHere)
            } else {
                Ok(login)
            }
        }
        None => {
            // Unknown: pay the dummy work; a name that is not a user (and
            // cannot be one: it has an `@`) finds nobody.
            let _ = config.authenticate("@", password);
            Err(Refusal::UnknownUser)
        }
    }
}

/// The user name the login limiter counts failures against, from the text
/// alone: the Spam suffix and an `@` local domain taken off, in lower case,
/// so that `joe`, `JOE`, `joe@example.test` and `joe/Spam` share one count.
/// It never depends on whether the user exists (that would tell a guesser
/// which names do, by which spellings lock out together).
pub fn limiter_key(config: &Config, typed: &str) -> String {
    let (name, _) = strip_spam_suffix(config, typed);
    let name = match name.rsplit_once('@') {
        Some((local, domain))
            if Domain::try_from(domain).is_ok_and(|d| config.is_local_domain(&d)) =>
        {
            local
        }
        _ => name,
    };
    name.to_lowercase()
}

fn strip_spam_suffix<'t>(config: &Config, typed: &'t str) -> (&'t str, Folder) {
    let suffix = config.pop3.spam_login_suffix.as_str();
    if suffix.is_empty() || typed.len() <= suffix.len() {
        return (typed, Folder::Inbox);
    }
    let at = typed.len() - suffix.len();
    match (typed.get(..at), typed.get(at..)) {
        (Some(name), Some(end)) if end.eq_ignore_ascii_case(suffix) => (name, Folder::Spam),
        _ => (typed, Folder::Inbox),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml_str(&format!(
            "hostname = \"mail.example.test\"\nlocal_domains = [\"example.test\", \"mail.example.test\"]\n\
             {extra}\n[[users]]\nname = \"Joe\"\npassword = \"secret\"\n\
             [[users]]\nname = \"ann\"\npassword = \"other\"\n"
        ))
        .unwrap()
    }

    fn who(c: &Config, typed: &str) -> Option<(String, Folder)> {
        resolve(c, typed).map(|l| (l.user.name.as_str().to_owned(), l.folder))
    }

    #[test]
    fn address_forms_case_and_suffix() {
        let c = config("");
        let joe = Some(("Joe".to_owned(), Folder::Inbox));
        let joe_spam = Some(("Joe".to_owned(), Folder::Spam));
        for t in [
            "Joe",
            "joe",
            "JOE",
            "joe@example.test",
            "joe@EXAMPLE.TEST",
            "joe@example.test.",
            "joe@mail.example.test",
        ] {
            assert_eq!(who(&c, t), joe, "{t}");
        }
        for t in ["joe/Spam", "joe/SPAM", "JOE@Example.Test/spam"] {
            assert_eq!(who(&c, t), joe_spam, "{t}");
        }
        for t in [
            "",
            "/Spam",
            "joe@",
            "@example.test",
            "joe@other.test",
            "joe@[127.0.0.1]",
            "joe@example.test@example.test",
            "joe/Spam/Spam",
            "joe/Ham",
            "nobody",
            "nobody@example.test",
            "joe.",
        ] {
            assert_eq!(who(&c, t), None, "{t}");
        }
    }

    #[test]
    fn settings_turn_the_rules_off() {
        let c = config("[pop3]\nspam_login_suffix = \"\"\n[userdb]\ncase_insensitive = false");
        assert_eq!(who(&c, "joe/Spam"), None);
        assert_eq!(who(&c, "joe"), None);
        assert_eq!(
            who(&c, "Joe@EXAMPLE.test").map(|w| w.1),
            Some(Folder::Inbox)
        );
        let c = config("[pop3]\nspam_login_suffix = \"/junk\"");
        assert_eq!(who(&c, "joe/Junk").map(|w| w.1), Some(Folder::Spam));
        assert_eq!(who(&c, "joe/Spam"), None);
    }

    #[test]
    fn authenticate_and_limiter_key() {
        let c = config("");
        let here = std::net::IpAddr::from([127, 0, 0, 1]);
        let ok = |t: &str, p: &[u8]| authenticate(&c, t, p, here).map(|l| l.folder);
        assert_eq!(ok("joe@example.test", b"secret"), Some(Folder::Inbox));
        assert_eq!(ok("JOE/Spam", b"secret"), Some(Folder::Spam));
        assert_eq!(ok("joe", b"other"), None);
        assert_eq!(ok("ann@example.test", b"other"), Some(Folder::Inbox));
        assert_eq!(ok("nobody", b"secret"), None);
        assert_eq!(ok("@", b"secret"), None);
        for t in ["joe", "JOE", "joe@Example.test", "joe/spam"] {
            assert_eq!(limiter_key(&c, t), "joe", "{t}");
        }
        // Unknown names are keyed the same way: spelling tells nothing.
        for t in ["nobody", "NoBody", "nobody@Example.test", "nobody/spam"] {
            assert_eq!(limiter_key(&c, t), "nobody", "{t}");
        }
        assert_eq!(limiter_key(&c, "joe@elsewhere.test"), "joe@elsewhere.test");
    }

    /// The reasons a passwd-file user is refused, as the log gives them.
    #[test]
    fn refusals_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "joe:{PLAIN}a::::::nologin=y reason=moved\n\
             ann:{PLAIN}b::::::allow_nets=192.0.2.0/24\n",
        )
        .unwrap();
        let file = dir.path().join("mailbag.toml");
        std::fs::write(
            &file,
            format!(
                "data_dir = \"{}\"\n[userdb]\npasswd_file = \"{}\"\n",
                dir.path().join("data").display(),
                passwd.display()
            ),
        )
        .unwrap();
        let (c, skipped) = Config::load_skipping(&file).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        let (inside, outside) = (
            std::net::IpAddr::from([192, 0, 2, 9]),
            std::net::IpAddr::from([198, 51, 100, 9]),
        );
        let why = |t: &str, p: &[u8], ip| check(&c, t, p, ip).err();
        assert_eq!(why("joe", b"a", inside), Some(Refusal::Barred));
        assert_eq!(why("joe", b"x", inside), Some(Refusal::WrongPassword));
        assert_eq!(why("ann", b"b", outside), Some(Refusal::NotFromHere));
        assert_eq!(why("ann", b"b", inside), None);
        assert_eq!(why("Ann/Spam", b"b", inside), None);
        assert_eq!(why("nobody", b"b", inside), Some(Refusal::UnknownUser));
        assert_eq!(
            Refusal::NotFromHere.to_string(),
            "not allowed from this address (allow_nets)"
        );
    }
}
