//! Command line, logging set-up and the shutdown signal of `mailbagd`.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{Config, ConfigError};

/// `mailbagd`: POP3 + SMTP mail server built from the Mailbag crates.
///
/// Without `--config` it runs on the embedded demo configuration
/// (`examples/mailbag.toml`: loopback ports 1110, 2525 and 5870, data in
/// `./mailbag-data`, user `joe` with password `secret` at `example.test`).
#[derive(Debug, Parser)]
#[command(name = "mailbagd", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file (default: the embedded demo configuration).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Validate the configuration and exit.
    #[arg(long)]
    pub check: bool,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `debug` or
    /// `mailbag_examples=debug`. Overrides `RUST_LOG`; default `info`.
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
}

impl Cli {
    /// Loads the configuration named by `--config`, or the embedded one.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        match &self.config {
            Some(p) => Config::load(p),
            None => Config::demo(),
        }
    }
}

/// Logs to stderr. Log lines of a connection carry its id, role and
/// client address; passwords are never logged.
pub fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let filter = match &cli.log {
        Some(f) => EnvFilter::try_new(f).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_config_flag() {
        let c = Cli::try_parse_from(["mailbagd", "--config", "x.toml"]).unwrap();
        assert_eq!(c.config, Some(PathBuf::from("x.toml")));
        let c = Cli::try_parse_from(["mailbagd"]).unwrap();
        assert!(c.config.is_none());
        assert!(c.load_config().is_ok());
        assert!(Cli::try_parse_from(["mailbagd", "--bogus"]).is_err());
    }
}
