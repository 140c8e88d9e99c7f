//! `mailbagd user add|passwd|del|list|check` and `mailbagd pw`: the
//! passwd-file administration an ISP does with `doveadm pw` and an editor,
//! done safely. Every change rewrites the file atomically
//! ([`passwd_file::write_atomically`]) and keeps comments, other users and
//! unknown fields as they were; the running server reads the file at start.
//! Changes made at the same time (two administrators, a script adding users
//! in parallel) are made one after the other: each holds an exclusive
//! `flock` on `<file>.lock` from reading the file to renaming the new one
//! into place, so none is lost.

use std::io::Write;
use std::path::Path;

use crate::config::check_user_name;
use crate::credentials::Credential;
use crate::passwd_file::{self, EditError};
use crate::password_hash::{HashScheme, PasswordHash};

/// A scheme by the name `--scheme` takes (Dovecot's: `ARGON2ID`,
/// `BLF-CRYPT`, `SHA512-CRYPT`, ...; any letter case).
///
/// # Errors
///
/// A message listing the known names.
pub fn scheme(name: &str) -> Result<HashScheme, String> {
    let known = || {
        let names: Vec<&str> = HashScheme::ALL.iter().map(|s| s.dovecot_name()).collect();
        names.join(", ")
    };
    if crate::passwd_file::PLAIN_SCHEMES
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "{name:?}: a password in clear is read (passwd-files moved from Dovecot) but never written; use one of {}",
            known()
        ));
    }
    match HashScheme::from_dovecot_name(name) {
        Some(s) if s.is_legacy() => Err(format!(
            "{name:?}: new hashes are not made in this fast, older scheme (read only, for passwd-files moved from Dovecot); use one of {}",
            known()
        )),
        Some(s) => Ok(s),
        None => Err(format!("unknown scheme {name:?} (known: {})", known())),
    }
}

/// `mailbagd pw`: the passwd-file form of a new hash of `password`.
///
/// # Errors
///
/// When hashing fails.
pub fn pw(scheme: HashScheme, password: &str) -> Result<String, String> {
    PasswordHash::make(scheme, password.as_bytes())
        .map(|h| h.to_dovecot())
        .map_err(|e| e.to_string())
}

/// The file's text. One that is not UTF-8 is refused, naming its first such
/// line: rewriting it from a lossy reading would replace those bytes in
/// every other user's line (the server itself only skips such a line).
fn read(path: &Path) -> Result<String, String> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|e| {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let line = bytes.get(..at).unwrap_or_default().iter().filter(|&&b| b == b'\n').count() + 1;
            format!(
                "{}: line {line} is not UTF-8; convert the file (iconv -f latin1 -t utf-8) before editing it",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    passwd_file::write_atomically(path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The lock file of the passwd-file at `path`: `<path>.lock`.
fn lock_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    name.into()
}

/// Applies `change` to the file's text and writes the result, holding the
/// file's edit lock throughout (it waits for another edit to finish).
fn edit(path: &Path, change: impl FnOnce(&str) -> Result<String, String>) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    // Through a symbolic link, the lock is the target's: edits by either name take turns.
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let lock_path = lock_path(&target);
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    // The lock belongs to whoever owns the file (root making it must not keep
    // the file's own user out of later edits); best effort, it only orders edits.
    if let (Ok(file), Ok(held)) = (std::fs::metadata(path), lock.metadata()) {
        use std::os::unix::fs::MetadataExt;
        if (file.uid(), file.gid()) != (held.uid(), held.gid()) {
            let _ = std::os::unix::fs::fchown(&lock, Some(file.uid()), Some(file.gid()));
        }
    }
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    let text = read(path)?;
    write(path, &change(&text)?)
    // The lock goes with `lock`, after the rename.
}

fn edit_error(e: EditError) -> String {
    e.to_string()
}

/// `mailbagd user add NAME`: a new line for `name` with a hash of
/// `password` (the file is made, mode 0600, when it does not exist).
///
/// # Errors
///
/// A name the server would refuse, a name already there, or an I/O error.
pub fn add(path: &Path, name: &str, scheme: HashScheme, password: &str) -> Result<(), String> {
    // `user@domain` (Dovecot's virtual users): its domain is checked against
    // `local_domains` only with `--config` (`Config::refuses_new_user`).
    crate::config::passwd_user_name(name, None)
        .and_then(check_user_name)
        .map_err(|e| format!("{name:?}: {e}"))?;
    let hash = pw(scheme, password)?;
    edit(path, |text| {
        passwd_file::add(text, name, &hash).map_err(edit_error)
    })
}

/// `mailbagd user passwd NAME`: a new hash for `name`, every other field
/// kept.
///
/// # Errors
///
/// No such user, or an I/O error.
pub fn passwd(path: &Path, name: &str, scheme: HashScheme, password: &str) -> Result<(), String> {
    let hash = pw(scheme, password)?;
    edit(path, |text| {
        passwd_file::set_password(text, name, &hash).map_err(edit_error)
    })
}

/// `mailbagd user del NAME`: removes the line of `name` (the Maildir stays).
///
/// # Errors
///
/// No such user, or an I/O error.
pub fn delete(path: &Path, name: &str) -> Result<(), String> {
    edit(path, |text| {
        passwd_file::remove(text, name).map_err(edit_error)
    })
}

/// `mailbagd user list`: one line per user, `name scheme`, then a line for
/// each bad line of the file.
///
/// # Errors
///
/// An I/O error (of reading or of `out`).
pub fn list(path: &Path, out: &mut impl Write) -> Result<(), String> {
    let text = read(path)?;
    // As the server takes the file: a name it refuses, a duplicate in
    // another letter case, a bad extra field are bad lines here too.
    let (users, bad) = crate::config::passwd_file_users(path, &text);
    list_users(users.iter(), &bad, out)
}

/// Writes `name scheme` for each of `users`, then each of `bad` as a `#`
/// line: `mailbagd user list` (with `--config`, of the configuration as a
/// reload takes it, so the checks that need the rest of it count too).
///
/// # Errors
///
/// An error of writing to `out`.
pub fn list_users<'a>(
    users: impl Iterator<Item = &'a crate::config::User>,
    bad: &[String],
    out: &mut impl Write,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    for u in users {
        let scheme = match &u.credential {
            Credential::Plain(_) => "PLAIN",
            Credential::Hash(h) => h.scheme().dovecot_name(),
        };
        writeln!(out, "{} {scheme}", u.name.as_str()).map_err(io)?;
    }
    for b in bad {
        writeln!(out, "# {b}").map_err(io)?;
    }
    Ok(())
}

/// `mailbagd user check NAME`: whether `password` is the password of
/// `name` in the file.
///
/// # Errors
///
/// No such user, or an I/O error.
pub fn check(path: &Path, name: &str, password: &str) -> Result<bool, String> {
    let text = read(path)?;
    let (users, errors) = passwd_file::parse(&text);
    let found = passwd_file::position_of(users.iter().map(|u| u.name.as_str()), name);
    let Some(user) = found.and_then(|i| users.get(i)) else {
        // A line for the name that the server skips: say why, not "no user".
        let skipped = passwd_file::position_of(
            errors.iter().map(|e| e.user.as_deref().unwrap_or_default()),
            name,
        )
        .and_then(|i| errors.get(i));
        return Err(match skipped {
            Some(e) => format!("{}: {e}; the server skips this line", path.display()),
            None => format!("no user {name:?} in {}", path.display()),
        });
    };
    Ok(user.credential.verify(password.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_passwd_check_del_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "# the ISP's users\nann:{PLAIN}a::::::quota=1G\n").unwrap();
        add(&path, "joe", HashScheme::Sha512Crypt, "s3cret").unwrap();
        assert!(
            add(&path, "JOE", HashScheme::Sha512Crypt, "x")
                .unwrap_err()
                .contains("already exists")
        );
        assert!(add(&path, "../x", HashScheme::Sha512Crypt, "x").is_err());
        assert!(check(&path, "joe", "s3cret").unwrap());
        assert!(!check(&path, "joe", "wrong").unwrap());
        // A line the server skips is named as such, not as a missing user.
        let skipped = dir.path().join("skipped");
        std::fs::write(&skipped, "pbk:{PBKDF2}$1$abcdefgh$1000$deadbeef\n").unwrap();
        let err = check(&skipped, "pbk", "x").unwrap_err();
        assert!(
            err.contains("line 1") && err.contains("PBKDF2") && err.contains("skips"),
            "{err}"
        );
        assert!(
            check(&skipped, "nobody", "x")
                .unwrap_err()
                .contains("no user")
        );
        passwd(&path, "joe", HashScheme::BlfCrypt, "n3w").unwrap();
        assert!(check(&path, "joe", "n3w").unwrap());
        let mut out = Vec::new();
        list(&path, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ann PLAIN\njoe BLF-CRYPT\n"
        );
        delete(&path, "joe").unwrap();
        assert!(check(&path, "joe", "n3w").is_err());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# the ISP's users\nann:{PLAIN}a::::::quota=1G\n"
        );
        // A `user@domain` line (Dovecot's virtual users) is found by either name.
        add(&path, "zoe@example.test", HashScheme::Sha512Crypt, "z").unwrap();
        assert!(check(&path, "zoe", "z").unwrap());
        assert!(check(&path, "ZOE@example.test", "z").unwrap());
        assert!(add(&path, "Zoe", HashScheme::Sha512Crypt, "x").is_err());
        passwd(&path, "zoe", HashScheme::Sha512Crypt, "z2").unwrap();
        assert!(check(&path, "zoe@example.test", "z2").unwrap());
        delete(&path, "zoe").unwrap();
        assert!(check(&path, "zoe", "z2").is_err());
        // `add` refuses a second line for one user (one namespace) ...
        add(&path, "kim@a.test", HashScheme::Sha512Crypt, "ka").unwrap();
        assert!(add(&path, "kim@b.test", HashScheme::Sha512Crypt, "kb").is_err());
        // ... but a file another tool made may hold two: a bare `kim` is
        // then ambiguous, not a guess.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("kim@b.test:{PLAIN}kb::::::\n");
        std::fs::write(&path, text).unwrap();
        assert!(check(&path, "kim", "ka").is_err());
        assert!(passwd(&path, "kim", HashScheme::Sha512Crypt, "x").is_err());
        assert!(check(&path, "kim@b.test", "kb").unwrap());
        assert!(check(&path, "kim@c.test", "ka").is_err(), "another domain");
        delete(&path, "kim@a.test").unwrap();
        delete(&path, "kim@b.test").unwrap();
        assert!(scheme("sha512-crypt").is_ok());
        assert!(scheme("MD5").unwrap_err().contains("ARGON2ID"));
        assert!(scheme("MD5").unwrap_err().contains("read only"));
        assert!(scheme("plain").unwrap_err().contains("never written"));
    }

    /// What the server would skip is listed as a bad line, not as a user.
    #[test]
    fn list_shows_what_the_server_refuses_as_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(
            &path,
            "ok:{PLAIN}x\n..:{PLAIN}x\nu@example.test:{PLAIN}x\nd1:{PLAIN}x\nD1:{PLAIN}x\n\
             \u{feff}bom:{PLAIN}x\n",
        )
        .unwrap();
        let mut out = Vec::new();
        list(&path, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        // Without a configuration any domain of a `user@domain` name is taken.
        assert_eq!(lines[..3], ["ok PLAIN", "u PLAIN", "d1 PLAIN"], "{out}");
        for n in [2, 5, 6] {
            assert!(
                lines[2..]
                    .iter()
                    .any(|l| l.starts_with('#') && l.contains(&format!("line {n}:"))),
                "line {n} not reported:\n{out}"
            );
        }
        assert_eq!(lines.len(), 6, "{out}");
    }

    /// Twelve edits at once (each read, changed and renamed into place
    /// while the others run) lose none: they take turns.
    #[test]
    fn edits_at_the_same_time_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "old:{PLAIN}x\n").unwrap();
        std::thread::scope(|s| {
            for i in 0..12 {
                let path = &path;
                s.spawn(move || {
                    add(path, &format!("u{i}"), HashScheme::Sha256Crypt, "pw").unwrap();
                });
            }
            s.spawn(|| passwd(&path, "old", HashScheme::Sha256Crypt, "new").unwrap());
        });
        let text = std::fs::read_to_string(&path).unwrap();
        for i in 0..12 {
            assert!(text.contains(&format!("\nu{i}:")), "u{i} lost:\n{text}");
        }
        assert!(check(&path, "old", "new").unwrap());
    }
}
