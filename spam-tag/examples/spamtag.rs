//! Scores a message read from stdin and writes it, tagged, to stdout; the decision goes
//! to stderr. Uses spamd when `--spamd HOST:PORT` is given (fail-open), else the built-in
//! scorer.
//!
//! ```sh
//! cargo run -p mailbag-spam-tag --example spamtag --features spamd -- --spamd 127.0.0.1:783 < msg.eml
//! cargo run -p mailbag-spam-tag --example spamtag --features spamd -- --untag < tagged.eml
//! ```

use std::io::{Read, Write};
use std::time::Duration;

use mailbag_spam_tag::spamd::{ScanOutcome, SpamdClient, SpamdOptions};
use mailbag_spam_tag::{
    BuiltinScorer, HeaderAction, HeaderRewriter, RewriteOptions, Scorer, UserSettings, decide,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spamd = args
        .iter()
        .position(|a| a == "--spamd")
        .and_then(|i| args.get(i + 1))
        .map(|a| a.parse::<std::net::SocketAddr>())
        .transpose()?;
    let untag = args.iter().any(|a| a == "--untag");

    let mut message = Vec::new();
    std::io::stdin().read_to_end(&mut message)?;

    let action = if untag {
        HeaderAction::Untag
    } else {
        let verdict = match spamd {
            Some(addr) => {
                let mut o = SpamdOptions::default();
                o.addr = addr;
                o.read_timeout = Duration::from_secs(30);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                match rt.block_on(SpamdClient::new(o).scan(&message))? {
                    ScanOutcome::Scored { verdict, .. } => Some(verdict),
                    ScanOutcome::Unscanned { reason } => {
                        eprintln!("not scanned: {reason}");
                        None
                    }
                    _ => None,
                }
            }
            None => Some(BuiltinScorer::default().score(&message)),
        };
        let decision = decide(&UserSettings::default(), verdict.as_ref());
        eprintln!(
            "folder: {:?}, spam: {:?}",
            decision.folder, decision.is_spam
        );
        decision.action
    };

    let mut rw = HeaderRewriter::new(action, RewriteOptions::default());
    let mut out = Vec::new();
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    for chunk in message.chunks(8192) {
        rw.feed(chunk, &mut out)?;
        stdout.write_all(&out)?;
        out.clear();
    }
    rw.finish(&mut out)?;
    stdout.write_all(&out)?;
    Ok(())
}
