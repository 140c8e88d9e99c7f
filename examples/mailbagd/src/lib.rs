//! `mailbagd`, the Mailbag mail server, and the example programs.
//!
//! The server is built from the five Mailbag library crates: `pop3-proto`
//! and `smtp-proto` (sans-IO protocol sessions), `mailstore` (Maildir),
//! `pop-before-smtp` (relay authorization) and `spam-tag` (scoring and
//! tagging). This crate is the runtime glue: configuration, listeners,
//! TLS, limits, the tokio drivers around the sessions, and shutdown; plus
//! the users' self-service web page ([`web`]: spam settings stored by
//! [`user_settings`], and the Spam folder).
//!
//! # Examples
//!
//! Start a server on free loopback ports, serve, and shut down gracefully:
//!
//! ```
//! use mailbagd::{config::Config, listener::Role, server::Server};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let config = Config::from_toml_str(&format!(
//!     r#"
//!     local_domains = ["example.test"]
//!     data_dir = {:?}
//!     [pop3]
//!     listen = ["127.0.0.1:0"]
//!     [smtp]
//!     listen = ["127.0.0.1:0"]
//!     submission_listen = []
//!     [web]
//!     listen = []
//!     [[users]]
//!     name = "joe"
//!     password = "secret"
//!     "#,
//!     dir.path().join("data")
//! ))?;
//! let server = Server::bind(config).await?;
//! let roles: Vec<Role> = server.local_addrs().iter().map(|(r, _)| *r).collect();
//! assert_eq!(roles, [Role::Pop3, Role::Smtp]);
//! // Serves until the future completes (here: at once), then shuts down.
//! server.run(async {}).await;
//! # Ok(()) }
//! ```

pub mod cli;
pub mod client_endpoint;
pub mod client_settings;
pub mod clock;
pub mod config;
pub mod constant_time;
pub mod context;
pub mod credentials;
pub mod delivery;
pub mod digest;
pub mod disk_space;
pub mod envelope;
pub mod fd_limit;
pub mod legacy_hash;
pub mod limits;
pub mod listener;
pub mod lock_keeper;
pub mod login_limiter;
pub mod login_name;
pub mod maildrop_lease;
pub mod metrics;
pub mod metrics_page;
pub mod outbound;
pub mod passwd_file;
pub mod password_hash;
pub mod pop3;
pub mod private_file;
pub mod privileges;
pub mod proxy;
pub mod queue_admin;
pub mod queue_list;
pub mod read_chunks;
pub mod redis_conn;
pub mod relay;
pub mod relay_store;
pub mod relay_table_file;
pub mod release_link;
pub mod reload;
pub mod replies;
pub mod server;
pub mod service_manager;
pub mod shared_login_limiter;
pub mod signals;
pub mod signing_key;
pub mod smtp;
pub mod spamd_breaker;
pub mod spool;
pub mod sweeper;
pub mod tls;
pub mod user_admin;
pub mod user_settings;
pub mod web;
