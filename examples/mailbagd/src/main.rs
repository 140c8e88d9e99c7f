//! `mailbagd`: the Mailbag mail server (POP3, SMTP, submission, POP-before-SMTP,
//! spam tagging, Maildir storage). See `examples/mailbagd/README.md`.

use std::process::ExitCode;

use clap::Parser;
use mailbagd::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    mailbagd::cli::init_tracing(&cli);
    // `pw` and `user ...` need no valid configuration (a passwd-file with a
    // bad line must stay repairable).
    match mailbagd::cli::run_user_command(&cli, &mut std::io::stdout()) {
        Ok(Some(true)) => return ExitCode::SUCCESS,
        Ok(Some(false)) => return ExitCode::FAILURE,
        Ok(None) => {}
        Err(e) => {
            eprintln!("mailbagd: {e}");
            return ExitCode::FAILURE;
        }
    }
    let (mut config, skipped) = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailbagd: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        // A certificate and key that do not load are a configuration error (exit
        // status 2, the keys named), as they are for a start (below); the admin
        // commands do not use them.
        if let Some(message) = mailbagd::cli::check_tls(&config) {
            eprintln!("mailbagd: invalid config: {message}");
            return ExitCode::from(2);
        }
        if let Some(message) = mailbagd::cli::check_passwd_lines(&skipped) {
            eprintln!("mailbagd: invalid config: {message}");
            return ExitCode::from(2);
        }
        // The user and group to serve as must exist (a start would stop on them).
        if let Some(user) = &config.server.user
            && let Err(e) = mailbagd::privileges::ids_of(user, config.server.group.as_deref())
        {
            eprintln!("mailbagd: invalid config: {e}");
            return ExitCode::from(2);
        }
        for w in config.warnings() {
            eprintln!("mailbagd: warning: {w}");
        }
        println!("mailbagd: configuration OK");
        return ExitCode::SUCCESS;
    }
    // Left out, as a reload leaves them out: the other users keep their mail.
    for line in &skipped {
        tracing::error!("{line}");
    }
    if let Some(command) = &cli.command {
        return match mailbagd::cli::run_command(command, &config, &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mailbagd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    mailbagd::fd_limit::raise_for(&mut config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailbagd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let server = match mailbagd::server::Server::bind(config).await {
            Ok(s) => s,
            // Loaded once, here: a pair that does not load is the configuration's fault.
            Err(mailbagd::server::StartError::Context(mailbagd::context::ContextError::Tls(e))) => {
                eprintln!("mailbagd: invalid config: {e}");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("mailbagd: {e}");
                return ExitCode::FAILURE;
            }
        };
        server.run(mailbagd::signals::shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}
