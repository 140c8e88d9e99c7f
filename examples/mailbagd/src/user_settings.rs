//! Per-user spam settings chosen on the web page, overriding the config file.
//!
//! The `[[users]]` entries of the config file give each user's defaults
//! (`spam_scanning`, `subject_prefix`, `spam_folder`). A user may override
//! them on the self-service page; the overrides live in a small TOML file
//! beside the user's Maildir, `<data_dir>/<user>/mailbag-settings`:
//!
//! ```toml
//! # mailbag per-user settings, written by the web page
//! spam_scanning = true
//! subject_prefix = false
//! spam_folder = "INBOX"
//! ```
//!
//! A missing key takes the config file's value. The file is written
//! atomically (temporary file, fsync, rename, fsync of the directory), so a
//! crash leaves the old or the new settings, never a mix. A file that cannot
//! be parsed (or is larger than [`MAX_SETTINGS_FILE`]) is ignored with a
//! logged warning: the user gets the config file's values.
//!
//! [`SettingsStore`] caches the overrides in memory, so the delivery path
//! reads the file once per user and process; [`SettingsStore::save`] writes
//! through the cache, so the next delivery uses the new settings without a
//! restart, and the file makes them survive restarts. (A file edited by
//! hand is read at the next start.)
//!
//! # Examples
//!
//! ```
//! use mailbagd::config::{Config, SpamFolder};
//! use mailbagd::user_settings::{Overrides, SettingsStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let config = Config::from_toml_str(
//!     "[[users]]\nname = \"joe\"\npassword = \"secret\"\n",
//! ).unwrap();
//! let joe = config.user("joe").unwrap();
//! std::fs::create_dir(dir.path().join("joe")).unwrap();
//!
//! let store = SettingsStore::new(dir.path());
//! assert_eq!(store.effective(joe).spam_folder, SpamFolder::Spam); // config default
//!
//! let mut o = Overrides::default();
//! o.spam_folder = Some(SpamFolder::Inbox);
//! store.save("joe", &o).unwrap();
//! assert_eq!(store.effective(joe).spam_folder, SpamFolder::Inbox);
//!
//! // A new store (a restart) reads the file.
//! assert_eq!(SettingsStore::new(dir.path()).effective(joe).spam_folder, SpamFolder::Inbox);
//! ```

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::config::{SpamFolder, User};

/// The file name of a user's overrides, in `<data_dir>/<user>/`.
pub const SETTINGS_FILE: &str = "mailbag-settings";

/// The largest settings file read (octets); a larger one counts as corrupt.
pub const MAX_SETTINGS_FILE: u64 = 4096;

/// A user's overrides of the config file's spam settings (`None`: use the
/// config file's value).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Overrides {
    /// SPAM Scanning on or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spam_scanning: Option<bool>,
    /// Subject Prefixing on or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_prefix: Option<bool>,
    /// Deliver spam to which folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spam_folder: Option<SpamFolder>,
}

impl Overrides {
    /// Every setting given explicitly.
    pub fn all(spam_scanning: bool, subject_prefix: bool, spam_folder: SpamFolder) -> Overrides {
        Overrides {
            spam_scanning: Some(spam_scanning),
            subject_prefix: Some(subject_prefix),
            spam_folder: Some(spam_folder),
        }
    }

    /// The settings in effect for `user`: these overrides over the config
    /// file's values.
    pub fn apply(&self, user: &User) -> EffectiveSettings {
        EffectiveSettings {
            spam_scanning: self.spam_scanning.unwrap_or(user.spam_scanning),
            subject_prefix: self.subject_prefix.unwrap_or(user.subject_prefix),
            spam_folder: self.spam_folder.unwrap_or(user.spam_folder),
        }
    }

    /// Parses the settings file format.
    pub fn from_toml(text: &str) -> Result<Overrides, toml::de::Error> {
        toml::from_str(text)
    }

    /// The settings file's text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("# mailbag per-user settings, written by the web page\n{body}")
    }
}

/// The spam settings in effect for one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EffectiveSettings {
    /// Score this user's mail.
    pub spam_scanning: bool,
    /// Tag the Subject of spam.
    pub subject_prefix: bool,
    /// Where spam goes.
    pub spam_folder: SpamFolder,
}

/// Why a settings file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// Reading or writing failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not valid.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SettingsError + 'a {
    move |source| SettingsError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Reads a settings file: `Ok(None)` when there is none.
pub fn load_file(path: &Path) -> Result<Option<Overrides>, SettingsError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", path)(e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_SETTINGS_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("read", path))?;
    if bytes.len() as u64 > MAX_SETTINGS_FILE {
        return Err(SettingsError::Corrupt {
            path: path.to_owned(),
            message: format!("larger than {MAX_SETTINGS_FILE} octets"),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| SettingsError::Corrupt {
        path: path.to_owned(),
        message: "not UTF-8".to_owned(),
    })?;
    Overrides::from_toml(&text)
        .map(Some)
        .map_err(|e| SettingsError::Corrupt {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })
}

/// Writes a settings file atomically and durably: a temporary file in the
/// same directory, fsynced, renamed over `path`, then the directory fsynced.
pub fn save_file(path: &Path, overrides: &Overrides) -> Result<(), SettingsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix)
        .map_err(|e| io_err("make a temporary name in", dir)(io::Error::other(e.to_string())))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(SETTINGS_FILE);
    let tmp = dir.join(format!(".{name}.tmp.{}", u64::from_le_bytes(suffix)));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600) // private, as the mail next to it
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(overrides.to_toml().as_bytes())
            .map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The overrides of every user: read from `<data_dir>/<user>/mailbag-settings`
/// on first use, cached, written through (see the [module docs](self)).
#[derive(Debug)]
pub struct SettingsStore {
    data_dir: PathBuf,
    cache: Mutex<HashMap<String, Overrides>>,
    write: Mutex<()>,
}

impl SettingsStore {
    /// A store over the Maildir root `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> SettingsStore {
        SettingsStore {
            data_dir: data_dir.into(),
            cache: Mutex::new(HashMap::new()),
            write: Mutex::new(()),
        }
    }

    /// The settings file of `user` (a validated configured user name).
    pub fn path(&self, user: &str) -> PathBuf {
        self.data_dir.join(user).join(SETTINGS_FILE)
    }

    /// The user's overrides (none when there is no file; none, with a
    /// logged warning, when the file is corrupt or unreadable).
    pub fn overrides(&self, user: &str) -> Overrides {
        if let Some(o) = self.cache.lock().ok().and_then(|c| c.get(user).copied()) {
            return o;
        }
        let path = self.path(user);
        let o = match load_file(&path) {
            Ok(o) => o.unwrap_or_default(),
            Err(e) => {
                warn!(user = %user, error = %e, "ignoring the user's settings file: using the config file's values");
                Overrides::default()
            }
        };
        match self.cache.lock() {
            // A save that raced with this read wins: keep what is cached.
            Ok(mut c) => *c.entry(user.to_owned()).or_insert(o),
            Err(_) => o,
        }
    }

    /// The settings in effect for `user`.
    pub fn effective(&self, user: &User) -> EffectiveSettings {
        self.overrides(user.name.as_str()).apply(user)
    }

    /// Saves the user's overrides (atomically, durably) and uses them from
    /// now on.
    pub fn save(&self, user: &str, overrides: &Overrides) -> Result<(), SettingsError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        save_file(&self.path(user), overrides)?;
        if let Ok(mut c) = self.cache.lock() {
            c.insert(user.to_owned(), *overrides);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config() -> Config {
        Config::from_toml_str(
            "[[users]]\nname = \"joe\"\npassword = \"x\"\nsubject_prefix = false\n\
             [[users]]\nname = \"ann\"\npassword = \"y\"\nspam_folder = \"INBOX\"\n",
        )
        .unwrap()
    }

    fn store() -> (tempfile::TempDir, SettingsStore) {
        let dir = tempfile::tempdir().unwrap();
        for u in ["joe", "ann"] {
            fs::create_dir(dir.path().join(u)).unwrap();
        }
        let s = SettingsStore::new(dir.path());
        (dir, s)
    }

    #[test]
    fn config_values_are_the_defaults() {
        let c = config();
        let (_d, s) = store();
        let joe = s.effective(c.user("joe").unwrap());
        assert_eq!(
            (joe.spam_scanning, joe.subject_prefix, joe.spam_folder),
            (true, false, SpamFolder::Spam)
        );
        let ann = s.effective(c.user("ann").unwrap());
        assert_eq!(ann.spam_folder, SpamFolder::Inbox);
    }

    #[test]
    fn save_overrides_and_survives_a_new_store() {
        let c = config();
        let (dir, s) = store();
        let o = Overrides::all(false, true, SpamFolder::Inbox);
        s.save("joe", &o).unwrap();
        let e = s.effective(c.user("joe").unwrap());
        assert_eq!(
            (e.spam_scanning, e.subject_prefix, e.spam_folder),
            (false, true, SpamFolder::Inbox)
        );
        // Only joe changed.
        assert_eq!(
            s.effective(c.user("ann").unwrap()).spam_folder,
            SpamFolder::Inbox
        );
        let path = dir.path().join("joe").join(SETTINGS_FILE);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("spam_folder = \"INBOX\""), "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "settings file mode {mode:o}");
        assert!(text.contains("spam_scanning = false"), "{text}");
        let again = SettingsStore::new(dir.path());
        assert_eq!(again.overrides("joe"), o);
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(dir.path().join("joe"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![SETTINGS_FILE.to_owned()]);
    }

    #[test]
    fn partial_file_keeps_config_values_for_missing_keys() {
        let c = config();
        let (dir, s) = store();
        fs::write(
            dir.path().join("joe").join(SETTINGS_FILE),
            "spam_folder = \"INBOX\"\n",
        )
        .unwrap();
        let e = s.effective(c.user("joe").unwrap());
        assert_eq!(
            (e.spam_scanning, e.subject_prefix, e.spam_folder),
            (true, false, SpamFolder::Inbox)
        );
    }

    #[test]
    fn corrupt_files_give_the_config_values() {
        let c = config();
        for bad in [
            &b"spam_folder = \"Junk\"\n"[..],
            b"colour = 1\n",
            b"spam_scanning = \"maybe\"\n",
            b"\xff\xfe not utf-8",
            b"[[[",
            &[b'#'; 5000][..],
        ] {
            let (dir, s) = store();
            fs::write(dir.path().join("joe").join(SETTINGS_FILE), bad).unwrap();
            assert!(load_file(&s.path("joe")).is_err(), "{bad:?}");
            let e = s.effective(c.user("joe").unwrap());
            assert_eq!(
                (e.spam_scanning, e.subject_prefix, e.spam_folder),
                (true, false, SpamFolder::Spam),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn round_trip_of_the_file_format() {
        for o in [
            Overrides::default(),
            Overrides::all(true, false, SpamFolder::Spam),
            Overrides::all(false, true, SpamFolder::Inbox),
        ] {
            assert_eq!(Overrides::from_toml(&o.to_toml()).unwrap(), o);
        }
    }

    #[test]
    fn save_into_a_missing_directory_fails_cleanly() {
        let (_d, s) = store();
        let err = s.save("nobody", &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("nobody"), "{err}");
    }
}
