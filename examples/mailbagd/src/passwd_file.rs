//! Dovecot's passwd-file user database: one user a line,
//! `name:password:uid:gid:gecos:home:shell:extra_fields` (Dovecot's eight
//! fields; a seventh field holding `key=value` pairs is read as the extra
//! fields too). Empty fields are allowed, lines starting with `#` and blank
//! lines are ignored. The password is `{SCHEME}hash` ([`HashScheme`], or
//! `{PLAIN}` clear text) or a crypt string recognised by its `$id$`.
//!
//! [`parse`] reads a file into [`Entry`]s and reports each bad line with its
//! number; what the extra fields mean (per-user spam defaults) is the
//! configuration's business. [`add`], [`set_password`] and [`remove`] edit
//! the text line by line, keeping comments, other users and unknown fields
//! as they were; [`write_atomically`] replaces the file in one rename.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::credentials::{Credential, Secret};
use crate::legacy_hash::Encoding;
use crate::password_hash::{HashError, HashScheme, PasswordHash};

/// One user line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The user name (first field), not yet checked against mailstore's rules.
    pub name: String,
    /// The password check.
    pub credential: Credential,
    /// The extra fields, `key=value` (a lone `key` has an empty value), in
    /// file order.
    pub extra: Vec<(String, String)>,
    /// Its 1-based line number.
    pub line: usize,
}

/// A line that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// Its 1-based line number.
    pub line: usize,
    /// What is wrong (names the user when the name was readable).
    pub message: String,
    /// The user the line is for, when it names one whose entry is unusable
    /// (an unknown scheme, a bad extra-field value): mail for that name is a
    /// local fault to retry, not an unknown recipient.
    pub user: Option<String>,
}

/// Why a passwd-file edit cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// `add` of a name that is there already (in any letter case).
    #[error("user {0:?} already exists")]
    Exists(String),
    /// `set_password` or `remove` of a name that is not there.
    #[error("no user {0:?}")]
    NoSuchUser(String),
    /// The name cannot be a passwd-file name (`:`, a line break, empty, `#`
    /// first).
    #[error("{0:?} cannot be a user name in a passwd-file")]
    BadName(String),
}

/// The `{SCHEME}` names that mean a clear-text password (read, never written).
pub const PLAIN_SCHEMES: [&str; 3] = ["PLAIN", "CLEAR", "CLEARTEXT"];

/// Reads a password field as a passwd-file holds it: `{SCHEME}value` (with
/// Dovecot's `.HEX`/`.B64` suffixes), or a crypt string without a prefix.
///
/// # Errors
///
/// A message saying what is wrong with it.
pub fn credential(field: &str) -> Result<Credential, String> {
    if field.is_empty() {
        return Err("empty password field".into());
    }
    if let Some(rest) = field.strip_prefix('{') {
        let (scheme, value) = rest
            .split_once('}')
            .ok_or_else(|| "unterminated {SCHEME} prefix".to_owned())?;
        // `{SHA256.HEX}`, `{PLAIN.B64}`: Dovecot's encoding suffix.
        let (name, encoding) = match scheme.rsplit_once('.') {
            Some((name, suffix)) => match Encoding::from_suffix(suffix) {
                Some(e) => (name, Some(e)),
                None => (scheme, None),
            },
            None => (scheme, None),
        };
        if PLAIN_SCHEMES.iter().any(|p| p.eq_ignore_ascii_case(name)) {
            let password = match encoding {
                None => value.to_owned(),
                Some(e) => crate::legacy_hash::decode(value, e, Some(e))
                    .and_then(|octets| String::from_utf8(octets).ok())
                    .ok_or_else(|| format!("not a valid {scheme} password (or not UTF-8)"))?,
            };
            // Anyone could log in (and relay, by POP-before-SMTP).
            if password.is_empty() {
                return Err("empty password".into());
            }
            return Ok(Credential::Plain(Secret::new(password)));
        }
        // `{CRYPT}` is the system's crypt(3): the `$id$` says which.
        if scheme.eq_ignore_ascii_case("CRYPT") {
            return crypt_string(value);
        }
        let known = HashScheme::from_dovecot_name(name)
            .ok_or_else(|| HashError::UnknownScheme(scheme.to_owned()).to_string())?;
        return PasswordHash::parse_encoded(known, value, encoding)
            .map(Credential::Hash)
            .map_err(|e| e.to_string());
    }
    // Dovecot's default scheme for a passwd-file is CRYPT: a `$id$` string.
    crypt_string(field)
}

/// A crypt(3) string, by its `$id$`.
fn crypt_string(text: &str) -> Result<Credential, String> {
    if text.len() == 13 && !text.starts_with('$') {
        return Err(
            "a DES-crypt hash (it checks only 8 characters of a password) is not supported: give the user a new password"
                .into(),
        );
    }
    PasswordHash::parse(text)
        .map(Credential::Hash)
        .map_err(|e| match e {
            HashError::Malformed(_) => {
                "no {SCHEME} prefix and not a crypt string ($argon2id$, $2y$, $6$, $5$, $1$)".into()
            }
            other => other.to_string(),
        })
}

/// Splits the extra fields (space-separated `key=value`).
fn extra_fields(text: &str) -> Vec<(String, String)> {
    text.split_ascii_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect()
}

/// The fields of a user line: name, password, extra fields.
fn fields(line: &str) -> Option<(&str, &str, &str)> {
    // name:password:uid:gid:gecos:home:shell:extra (an extra field may hold `:`).
    let fields: Vec<&str> = line.splitn(8, ':').collect();
    let extra = match fields.as_slice() {
        [.., extra] if fields.len() == 8 => extra,
        // Seven fields: the last is the shell in Dovecot's layout, unless it
        // holds `key=value` pairs.
        [_, _, _, _, _, _, shell] if shell.contains('=') => shell,
        _ => "",
    };
    Some((fields.first()?, fields.get(1)?, extra))
}

/// Whether the line carries no user.
fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// Reads a passwd-file: the usable users, and an error for every line that
/// is not one (with its number and, when readable, the user's name).
///
/// # Examples
///
/// ```
/// use mailbagd::passwd_file::parse;
///
/// let text = "# users\njoe:{PLAIN}secret::::::spam_folder=INBOX\nann:{OTP}x\nbad line\n";
/// let (users, errors) = parse(text);
/// assert_eq!(users.len(), 1);
/// assert_eq!(users[0].extra, [("spam_folder".to_owned(), "INBOX".to_owned())]);
/// assert_eq!(errors[0].line, 3);
/// assert!(errors[0].message.contains("ann") && errors[0].message.contains("{OTP}"));
/// assert_eq!(errors[1].line, 4);
/// ```
pub fn parse(text: &str) -> (Vec<Entry>, Vec<LineError>) {
    let mut users = Vec::new();
    let errors = parse_each(text, |e| users.push(e));
    (users, errors)
}

/// [`parse`] without collecting the users: each goes to `user` as it is
/// read (a server loading 100,000 users keeps only its own form of them).
/// Returns the errors.
pub fn parse_each(text: &str, mut user: impl FnMut(Entry)) -> Vec<LineError> {
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if is_blank_or_comment(raw) {
            continue;
        }
        let Some((name, password, extra)) = fields(raw) else {
            errors.push(LineError {
                line,
                message: "not `name:password:…` (no `:` after the user name)".into(),
                user: None,
            });
            continue;
        };
        if name.is_empty() {
            errors.push(LineError {
                line,
                message: "empty user name".into(),
                user: None,
            });
            continue;
        }
        // A file read with its bytes that are not UTF-8 replaced (U+FFFD).
        if name.contains(char::REPLACEMENT_CHARACTER)
            || password.contains(char::REPLACEMENT_CHARACTER)
        {
            errors.push(LineError {
                line,
                message: "the user name or password is not UTF-8".into(),
                user: (!name.contains(char::REPLACEMENT_CHARACTER)).then(|| name.to_owned()),
            });
            continue;
        }
        match credential(password) {
            Ok(credential) => user(Entry {
                name: name.to_owned(),
                credential,
                extra: extra_fields(extra),
                line,
            }),
            Err(message) => errors.push(LineError {
                line,
                message: format!("user {name:?}: {message}"),
                user: Some(name.to_owned()),
            }),
        }
    }
    errors
}

/// The user part of a passwd-file name: before its last `@`, if any.
fn user_part(name: &str) -> &str {
    name.rsplit_once('@').map_or(name, |(user, _)| user)
}

/// Which of `written` (passwd-file names, by index) an administrator means
/// by `name`: the one equal to it in any letter case; else the only one with
/// the same user part where one of the two has no domain (`joe` finds
/// `joe@example.test` and the other way round, since a `user@domain` name
/// of a local domain is the user `user`; `joe@evil.test` finds neither).
/// `None` when none is, or several are: an edit must not guess.
pub fn position_of<'a>(
    written: impl Iterator<Item = &'a str> + Clone,
    name: &str,
) -> Option<usize> {
    if let Some(i) = written.clone().position(|w| w.eq_ignore_ascii_case(name)) {
        return Some(i);
    }
    // `joe` for `joe@a.test` or `joe@a.test` for `joe`, never one domain
    // for another.
    let mut same_user = written.enumerate().filter(|(_, w)| {
        user_part(w).eq_ignore_ascii_case(user_part(name))
            && !(w.contains('@') && name.contains('@'))
    });
    match (same_user.next(), same_user.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

/// The line of user `name` ([`position_of`]), by index.
fn find(lines: &[&str], name: &str) -> Option<usize> {
    let names = lines.iter().map(|l| {
        if is_blank_or_comment(l) {
            "" // never a name: empty names are refused
        } else {
            l.split(':').next().unwrap_or_default()
        }
    });
    position_of(names, name).filter(|&i| !is_blank_or_comment(lines[i]))
}

fn check_name(name: &str) -> Result<(), EditError> {
    if name.is_empty()
        || name.starts_with('#')
        || name.contains([':', '\n', '\r'])
        || name.trim() != name
    {
        return Err(EditError::BadName(name.to_owned()));
    }
    Ok(())
}

/// The line break of `text`: CRLF when its first line ends with one (a file
/// written on Windows), else LF.
fn line_break(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if text[..i].ends_with('\r') => "\r\n",
        _ => "\n",
    }
}

/// Joins edited lines of `text` with its line break, keeping its final one.
fn join(text: &str, lines: &[&str], had_final_newline: bool) -> String {
    let eol = line_break(text);
    let mut out = lines.join(eol);
    if had_final_newline || !out.is_empty() {
        out.push_str(eol);
    }
    out
}

/// `text` with a line for a new user `name` with password field `password`
/// (`{SCHEME}hash`) appended.
///
/// # Errors
///
/// [`EditError::Exists`] or [`EditError::BadName`].
pub fn add(text: &str, name: &str, password: &str) -> Result<String, EditError> {
    check_name(name)?;
    let lines: Vec<&str> = text.lines().collect();
    // One namespace of users: a line for the same user part in any spelling
    // or domain is this user already (two would both be left out).
    let taken = lines.iter().any(|l| {
        !is_blank_or_comment(l)
            && l.split(':')
                .next()
                .is_some_and(|n| user_part(n).eq_ignore_ascii_case(user_part(name)))
    });
    if taken {
        return Err(EditError::Exists(name.to_owned()));
    }
    let new = format!("{name}:{password}::::::");
    let mut all = lines;
    all.push(&new);
    Ok(join(text, &all, true))
}

/// `text` with the password field of user `name` replaced, every other
/// field and line as it was.
///
/// # Errors
///
/// [`EditError::NoSuchUser`].
///
/// ```
/// use mailbagd::passwd_file::set_password;
/// let text = "# keep me\njoe:{PLAIN}old:8:8::/home/joe::quota=1G userdb_x=y\n";
/// assert_eq!(
///     set_password(text, "JOE", "{PLAIN}new").unwrap(),
///     "# keep me\njoe:{PLAIN}new:8:8::/home/joe::quota=1G userdb_x=y\n"
/// );
/// ```
pub fn set_password(text: &str, name: &str, password: &str) -> Result<String, EditError> {
    let lines: Vec<&str> = text.lines().collect();
    let i = find(&lines, name).ok_or_else(|| EditError::NoSuchUser(name.to_owned()))?;
    let old = lines[i];
    let (user, rest) = old.split_once(':').unwrap_or((old, ""));
    let after = rest.split_once(':').map(|(_, after)| after);
    let new = match after {
        Some(after) => format!("{user}:{password}:{after}"),
        None => format!("{user}:{password}"),
    };
    let mut all = lines;
    all[i] = &new;
    Ok(join(text, &all, text.ends_with('\n')))
}

/// `text` without the line of user `name`.
///
/// # Errors
///
/// [`EditError::NoSuchUser`].
pub fn remove(text: &str, name: &str) -> Result<String, EditError> {
    let mut lines: Vec<&str> = text.lines().collect();
    let i = find(&lines, name).ok_or_else(|| EditError::NoSuchUser(name.to_owned()))?;
    lines.remove(i);
    Ok(join(text, &lines, text.ends_with('\n')))
}

/// Replaces `path` with `contents` in one step: a temporary file in the same
/// directory, written and synced, then renamed over it (readers see the old
/// file or the new one, never a part). The new file keeps the old one's
/// permissions (0600 when there was none: it holds password hashes) and its
/// owner and group, so that root editing the file of a server that runs as
/// another user does not take the file away from it.
///
/// # Errors
///
/// The I/O error of any step (also when the owner cannot be kept: only
/// root, or the owner, can write the file as it was); the old file is then
/// unchanged. A symbolic link is followed: its target is replaced and the
/// link stays (a file shared by several hosts through a link keeps being
/// shared).
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let resolved;
    let path = if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        resolved = fs::canonicalize(path)?;
        resolved.as_path()
    } else {
        path
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let old = fs::metadata(path).ok();
    let mode = old
        .as_ref()
        .map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    if let Some(m) = &old {
        std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid())).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot keep the owner {}:{} of {} ({e}): run this as root or as that user",
                    m.uid(),
                    m.gid(),
                    path.display()
                ),
            )
        })?;
    }
    // After the owner: chown clears set-id bits.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename itself is durable once the directory is synced.
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_layouts_and_extra_fields() {
        let text = "\
joe:{SHA512-CRYPT}$6$rZliekdh/s9yXx8x$WjZ0eTVB5/b6wE5aRACN6JUUH8u.35TQqOL/T1ik5i0x/PIA42QKijuolgDlmXzOeul57ylilK3UM2eDg8edx0:1000:1000::/home/joe::spam_scanning=no quota=1G
ann:$2y$05$tZrlwmJV1.E.U8IYZ5Cw7Ok8ZlWbqWgrL6FB3mpIrm8JFzI7CaHqG
bob:{plain}pa:ss::::/bin/false
  # an indented comment

eve:{PLAIN}x:::::spam_folder=INBOX nopassword
";
        let (users, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["joe", "ann", "bob", "eve"]);
        assert!(users[0].credential.verify(b"secret"));
        assert_eq!(
            users[0].extra,
            [
                ("spam_scanning".into(), "no".into()),
                ("quota".into(), "1G".into())
            ]
        );
        assert!(users[1].credential.verify(b"secret"), "bare $2y$");
        // `:` ends the password field: bob's password is "pa".
        assert!(users[2].credential.verify(b"pa"));
        assert!(users[2].extra.is_empty(), "a shell is not an extra field");
        assert_eq!(users[3].line, 6);
        assert_eq!(
            users[3].extra,
            [
                ("spam_folder".into(), "INBOX".into()),
                ("nopassword".into(), String::new())
            ]
        );
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = "ok:{PLAIN}x\nnocolon\n:{PLAIN}x\nmd4:{PLAIN-MD4}67d3dafef63ff00603aeef3769cfbf0d\nempty:\nbad:{ARGON2ID}$2y$05$x\nplainless:secret\nnothing:{PLAIN}:1:1\n";
        let (users, errors) = parse(text);
        assert_eq!(users.len(), 1);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7, 8]);
        assert!(
            errors[6].message.contains("empty password"),
            "{}",
            errors[6]
        );
        assert!(
            errors[2].message.contains("\"md4\"")
                && errors[2].message.contains("unknown password scheme")
        );
        assert!(
            errors[4].message.contains("not a valid ARGON2ID hash"),
            "{}",
            errors[4]
        );
    }

    /// Every scheme `doveadm pw -s SCHEME -p secret -u joe` (Dovecot 2.3.19,
    /// Debian) prints that this server reads, as passwd-file lines; `{CRYPT}`
    /// is what `doveadm pw -p secret` prints with Debian's defaults.
    const DOVEADM_PW: &str = "\
crypt:{CRYPT}$2y$05$0DzEjGw/NOJC1wnqqkaQX.vxhhyFEqPoebckXOq34Ro997d1LBDjm
md5crypt:{MD5-CRYPT}$1$98V1Wwfp$H4couabZ2BdHO57iNVWWO.
md5:{MD5}$1$r0mhMi1O$7pA8857vh06oRRq88xRtU1
bare1:$1$98V1Wwfp$H4couabZ2BdHO57iNVWWO.
cram:{CRAM-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56
hmac:{HMAC-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56
plainmd5:{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69
plainmd5b64:{PLAIN-MD5.B64}Xr4ilOzQ4PCOq3aQ0qbuaQ==
ldapmd5:{LDAP-MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==
smd5:{SMD5}PTj7ywo1bM1Mm05Ie+ZbNQhREtU=
sha:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=
sha1:{SHA1}5en6G6MezRroT3XKqkdPOmY/BfQ=
ssha:{SSHA}q5Nje79GcXQ8yr8Znv1nUWVsb1lBTLHW
sshahex:{SSHA.HEX}421d2058ad419a83748e0f64105ecc19a2e68e9cf6f44d12
sha256:{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=
sha256hex:{SHA256.HEX}2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b
ssha256:{SSHA256}HL0BCE8fhdhybjqQ53P7vAIJndhURd3WGnWjfqJYLWxKFUEb
sha512:{SHA512}vSsar3708Jvp9Szi2NWZZ02Bqp1qRCFpbcTZPdBhnWgs5WtNZKnvCXdhztmeD2cmW192CF5bDufKRpayrW/isg==
ssha512:{SSHA512}Mi32JaU5FvNbbEFeWtRww1NIRzNvLqCsVatPUV52L4yAd9O2bl4xHbTv+GrgG+jJmNpm3sT62jdAKxcEjSK7Ec/yQtQ=
plainb64:{PLAIN.B64}c2VjcmV0
plainhex:{PLAIN.HEX}736563726574
";

    #[test]
    fn every_scheme_doveadm_pw_makes_is_read() {
        let (users, errors) = parse(DOVEADM_PW);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(users.len(), DOVEADM_PW.lines().count());
        for u in &users {
            assert!(u.credential.verify(b"secret"), "{}", u.name.as_str());
            assert!(!u.credential.verify(b"Secret"), "{}", u.name.as_str());
            assert!(!u.credential.verify(b""), "{}", u.name.as_str());
        }
        // What is not read says why.
        let (_, errors) = parse(
            "des:{DES-CRYPT}sTSJrYRO3H93Q\nbaredes:sTSJrYRO3H93Q\ncryptdes:{CRYPT}sTSJrYRO3H93Q\n\
             scram:{SCRAM-SHA-256}4096,dCY8UC2ax2RBj4bOgwc1DA==,a,b\nshort:{SHA256}K7gNU3sdo+OL0w==\n\
             badb64:{PLAIN.B64}c2VjcmV0!\n",
        );
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert!(
            messages[0].contains("unknown password scheme {DES-CRYPT}"),
            "{messages:?}"
        );
        assert!(messages[1].contains("DES-crypt"), "{messages:?}");
        assert!(messages[2].contains("DES-crypt"), "{messages:?}");
        assert!(
            messages[3].contains("unknown password scheme {SCRAM-SHA-256}"),
            "{messages:?}"
        );
        assert!(
            messages[4].contains("not a valid SHA256 hash"),
            "{messages:?}"
        );
        assert!(
            messages[5].contains("not a valid PLAIN.B64 password"),
            "{messages:?}"
        );
    }

    #[test]
    fn edits_keep_crlf_line_breaks() {
        let text = "# made on Windows\r\njoe:{PLAIN}a\r\nann:{PLAIN}b\r\n";
        let added = add(text, "bob", "{PLAIN}c").unwrap();
        assert_eq!(added, format!("{text}bob:{{PLAIN}}c::::::\r\n"));
        let changed = set_password(&added, "ann", "{PLAIN}d").unwrap();
        assert_eq!(
            changed,
            "# made on Windows\r\njoe:{PLAIN}a\r\nann:{PLAIN}d\r\nbob:{PLAIN}c::::::\r\n"
        );
        let removed = remove(&changed, "joe").unwrap();
        assert_eq!(
            removed,
            "# made on Windows\r\nann:{PLAIN}d\r\nbob:{PLAIN}c::::::\r\n"
        );
    }

    #[test]
    fn edits_keep_everything_else() {
        let text = "# header\njoe:{PLAIN}a:1:1::/h::quota=2G\n\nann:{PLAIN}b\n";
        let added = add(text, "bob", "{PLAIN}c").unwrap();
        assert_eq!(added, format!("{text}bob:{{PLAIN}}c::::::\n"));
        assert!(matches!(
            add(&added, "JOE", "{PLAIN}x"),
            Err(EditError::Exists(_))
        ));
        assert!(matches!(
            add(text, "a:b", "{PLAIN}x"),
            Err(EditError::BadName(_))
        ));
        let removed = remove(&added, "joe").unwrap();
        assert_eq!(removed, "# header\n\nann:{PLAIN}b\nbob:{PLAIN}c::::::\n");
        assert!(matches!(
            remove(&removed, "joe"),
            Err(EditError::NoSuchUser(_))
        ));
        let changed = set_password(&removed, "ann", "{PLAIN}z").unwrap();
        assert!(changed.contains("\nann:{PLAIN}z\n"));
        let (users, errors) = parse(&changed);
        assert!(errors.is_empty());
        assert_eq!(users.len(), 2);
    }

    #[test]
    fn atomic_writes_keep_the_mode_and_make_new_files_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        write_atomically(&path, b"joe:{PLAIN}x\n").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, b"ann:{PLAIN}y\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "ann:{PLAIN}y\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    /// An edit through a symbolic link replaces the link's target, and the
    /// link stays (a probe found the link replaced by a file of its own).
    #[test]
    fn atomic_writes_follow_a_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("shared")).unwrap();
        let real = dir.path().join("shared/passwd");
        let link = dir.path().join("passwd");
        fs::write(&real, "joe:{PLAIN}x\n").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomically(&link, b"ann:{PLAIN}y\n").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&real).unwrap(), "ann:{PLAIN}y\n");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary left"
        );
    }

    /// Root editing the file of a server that runs as another user keeps
    /// that user's file (a probe found it turned root's, 0600, unreadable to
    /// the server at the next reload).
    #[test]
    fn atomic_writes_keep_the_owner() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            // Only root can hand a file to another user; as anyone else the
            // owner is the writer already.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("users");
            write_atomically(&path, b"a\n").unwrap();
            write_atomically(&path, b"b\n").unwrap();
            assert_eq!(
                fs::metadata(&path).unwrap().uid(),
                nix::unistd::geteuid().as_raw()
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        fs::write(&path, "joe:{PLAIN}x\n").unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65533)).unwrap();
        write_atomically(&path, b"ann:{PLAIN}y\n").unwrap();
        let m = fs::metadata(&path).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65533));
        assert_eq!(fs::read_to_string(&path).unwrap(), "ann:{PLAIN}y\n");
    }
}
