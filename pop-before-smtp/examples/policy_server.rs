//! A Postfix SMTP access policy server answering from a POP-before-SMTP table.
//!
//! ```text
//! cargo run -p mailbag-pop-before-smtp --features policy-server --example policy_server -- \
//!     --listen 127.0.0.1:10040 --window-secs 1800 --authorize 192.0.2.10=joe
//! ```
//!
//! Each `--authorize IP=USER` records a login at start-up (it expires after the
//! window like any other). In a real deployment the POP3 server records logins in
//! the same `SharedRelayTable` (see `mailbagd` in the examples crate). Postfix:
//!
//! ```text
//! smtpd_relay_restrictions = permit_mynetworks,
//!     check_policy_service inet:127.0.0.1:10040, reject_unauth_destination
//! ```
//!
//! Stop with Ctrl-C. Logs: `RUST_LOG=debug` for every decision.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mailbag_pop_before_smtp::server::{PolicyServerOptions, serve_until};
use mailbag_pop_before_smtp::{RelayOptions, SharedRelayTable};

const USAGE: &str =
    "usage: policy_server [--listen ADDR:PORT] [--window-secs N] [--authorize IP=USER]...";

struct Args {
    listen: SocketAddr,
    window: Duration,
    authorize: Vec<(IpAddr, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 10040)),
        window: Duration::from_secs(30 * 60),
        authorize: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => {
                args.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?;
            }
            "--window-secs" => {
                let secs: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--window-secs: {e}"))?;
                args.window = Duration::from_secs(secs);
            }
            "--authorize" => {
                let v = value()?;
                let (ip, user) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--authorize wants IP=USER, got {v}"))?;
                let ip = ip.parse().map_err(|e| format!("--authorize {v}: {e}"))?;
                args.authorize.push((ip, user.to_owned()));
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let table = SharedRelayTable::new(RelayOptions::default().with_window(args.window));
    let now = Instant::now();
    for (ip, user) in &args.authorize {
        table.record_login(*ip, user, now);
        tracing::info!(%ip, user, "authorized");
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "policy server ready");
    serve_until(listener, table, PolicyServerOptions::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    tracing::info!("shutting down");
    Ok(())
}
