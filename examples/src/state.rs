//! Shared server state: the mail store, the POP-before-SMTP relay table and
//! the relay queue.

use std::num::NonZeroUsize;
use std::sync::Arc;

use mailbag_mailstore::{Error as StoreError, MaildirOptions, MaildirStore, Mailstore, UserName};
use mailbag_pop_before_smtp::{RelayOptions, SharedRelayTable};
use mailbag_spam_tag::Template;

use mailbag_mailstore::queue::{Queue, QueueError, QueueOptions};

use crate::config::Config;
use crate::user_settings::SettingsStore;

/// Headroom over `smtp.max_message_size` for the header fields the server
/// adds on delivery (`Return-Path`, `Received`, `X-Spam-*`).
pub const ADDED_HEADERS_ALLOWANCE: u64 = 64 * 1024;

/// Why the state could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The Maildir root or a user's Maildir could not be created.
    #[error("mail store at {path}: {source}")]
    Store {
        /// The data directory.
        path: String,
        /// The store error.
        source: StoreError,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The data directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The relay queue could not be opened.
    #[error("relay queue at {path}: {source}")]
    Queue {
        /// The queue directory.
        path: String,
        /// The queue error.
        source: QueueError,
    },
    /// The Subject tag template is invalid.
    #[error("spam.tag_template: {0}")]
    Template(String),
    /// A configured user name is not a valid mailbox name.
    #[error("user {0:?}: not a valid mailbox name")]
    UserName(String),
}

/// Long-lived state shared by every connection.
#[derive(Debug, Clone)]
pub struct State {
    /// The Maildir store.
    pub store: Arc<dyn Mailstore>,
    /// Client addresses that logged in over POP3 recently.
    pub relay: SharedRelayTable,
    /// Durable queue of mail accepted for relay (`mailbag_mailstore::queue`).
    pub queue: Queue,
    /// The Subject tag template (`spam.tag_template`).
    pub template: Template,
    /// Per-user overrides of the spam settings (the web page writes them,
    /// delivery reads them).
    pub settings: Arc<SettingsStore>,
}

impl State {
    /// Opens the Maildir root (creating every configured user's Maildir)
    /// and the relay queue.
    pub fn new(config: &Config) -> Result<State, StateError> {
        let store_err = |source| StateError::Store {
            path: config.data_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StateError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let mut opts = MaildirOptions::default();
        opts.max_message_size = config
            .smtp
            .max_message_size
            .saturating_add(ADDED_HEADERS_ALLOWANCE);
        opts.hostname = Some(config.hostname.clone());
        let store = MaildirStore::new(&config.data_dir, opts).map_err(store_err)?;
        for u in &config.users {
            let name =
                UserName::new(u.name.as_str()).map_err(|_| StateError::UserName(u.name.clone()))?;
            match store.create_user(&name) {
                Ok(()) | Err(StoreError::UserExists(_)) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        let mut qopts = QueueOptions::default();
        qopts.max_message_size = config
            .smtp
            .max_message_size
            .saturating_add(ADDED_HEADERS_ALLOWANCE);
        qopts.max_recipients = qopts.max_recipients.max(config.smtp.max_recipients);
        let queue =
            Queue::open(&config.relay.queue_dir, qopts).map_err(|source| StateError::Queue {
                path: config.relay.queue_dir.display().to_string(),
                source,
            })?;
        let max =
            NonZeroUsize::new(config.pop_before_smtp.max_entries).unwrap_or(NonZeroUsize::MIN);
        let relay = SharedRelayTable::new(
            RelayOptions::default()
                .with_window(config.pop_before_smtp.window)
                .with_max_entries(max),
        );
        let template = Template::new(&config.spam.tag_template)
            .map_err(|e| StateError::Template(e.to_string()))?;
        Ok(State {
            settings: Arc::new(SettingsStore::new(&config.data_dir)),
            template,
            store: Arc::new(store),
            relay,
            queue,
        })
    }
}
