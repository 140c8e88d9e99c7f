//! `relay-bench`: messages per second through mailbagd's relay queue to a sink SMTP
//! server, against the baseline of sending the same messages straight to the sink, in the
//! same run. Loopback only. See `benches/load/relay.sh` and `examples/mailbagd/README.md`.
//!
//! usage: `relay-bench [N] [SIZE] [CONCURRENCY]` (default 500 messages of 10240 octets,
//! 4 connections at a time; the engine's per-destination limit is the same).
//!
//! Both phases use the same client (`smtp-proto`'s sans-IO `ClientSession` driven by
//! mailbagd's outbound transport), one connection per message, CONCURRENCY at a time:
//! - baseline: client → sink.
//! - relay: client → mailbagd (250 after the queue fsync) → queue → engine → sink; the
//!   time runs until the sink has every message (end to end), the submission rate alone
//!   is printed too.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mailbag_smtp_proto::address::{parse_forward_path, parse_reverse_path};
use mailbag_smtp_proto::client::{Outcome, Status, Transaction};
use mailbag_smtp_proto::session::{Event, ServerConfig, ServerSession};
use mailbag_smtp_proto::types::HeloName;
use mailbagd::config::Config;
use mailbagd::listener::Role;
use mailbagd::outbound::transport::{self, Job, TransportOptions};
use mailbagd::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// The sink: accepts everything, counts complete messages.
async fn sink(listener: tokio::net::TcpListener, count: Arc<AtomicU64>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let count = Arc::clone(&count);
        tokio::spawn(async move {
            let mut cfg = ServerConfig::default();
            cfg.hostname = "sink.example".into();
            cfg.max_message_size = 0;
            let Ok(mut session) = ServerSession::new(cfg) else {
                return;
            };
            let mut buf = vec![0u8; 65536];
            loop {
                while let Some(ev) = session.next_event() {
                    match ev {
                        Event::MessageComplete { .. } => {
                            count.fetch_add(1, Ordering::Relaxed);
                            session.accept();
                        }
                        Event::BodyChunk(_) | Event::Quit | Event::Reset => {}
                        _ => session.accept(),
                    }
                }
                let out = session.take_output();
                if !out.is_empty() && s.write_all(&out).await.is_err() {
                    return;
                }
                if session.is_closed() {
                    return;
                }
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => session.feed(buf.get(..n).unwrap_or_default()),
                }
            }
        });
    }
}

/// One message from a file; counts accepted recipients.
struct FileJob {
    path: std::path::PathBuf,
    accepted: u64,
}

impl Job for FileJob {
    async fn body(&mut self, _eight_bit: bool) -> io::Result<tokio::fs::File> {
        tokio::fs::File::open(&self.path).await
    }

    async fn settle(&mut self, _txn: usize, _rcpt: usize, o: &Outcome) -> io::Result<()> {
        if o.status() == Status::Accepted {
            self.accepted += 1;
        }
        Ok(())
    }
}

/// Sends `n` messages to `addr`, `conc` connections at a time; returns accepted count.
async fn send_all(
    addr: SocketAddr,
    n: u64,
    conc: usize,
    body: &std::path::Path,
    opts: &TransportOptions,
) -> u64 {
    let sem = Arc::new(Semaphore::new(conc));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let Ok(permit) = Arc::clone(&sem).acquire_owned().await else {
            break;
        };
        let opts = opts.clone();
        let path = body.to_path_buf();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let (Ok((from, _)), Ok((to, _))) = (
                parse_reverse_path(b"<bench@example.test>"),
                parse_forward_path(b"<sink@elsewhere.example>"),
            ) else {
                return 0;
            };
            let txn = Transaction::new(from).recipient(to);
            let mut job = FileJob { path, accepted: 0 };
            match transport::deliver(addr, "127.0.0.1", &opts, false, &[txn], &mut job).await {
                Ok(_) => job.accepted,
                Err(e) => {
                    eprintln!("relay-bench: {e}");
                    0
                }
            }
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap_or(0);
    }
    ok
}

/// A scratch directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let p = std::env::temp_dir().join(format!("mailbag-relay-bench.{}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(TempDir(p))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

async fn bench() -> Result<(), String> {
    let n = arg(1, 500).max(1);
    let size = usize::try_from(arg(2, 10240)).unwrap_or(10240);
    let conc = usize::try_from(arg(3, 4)).unwrap_or(4).max(1);
    let dir = TempDir::new()?;
    let mut body = String::from(
        "From: bench@example.test\r\nTo: sink@elsewhere.example\r\nSubject: relay bench\r\n\r\n",
    );
    while body.len() < size {
        body.push_str("The quick brown fox jumps over the lazy dog, 0123456789.\r\n");
    }
    let body_path = dir.path().join("message.eml");
    std::fs::write(&body_path, &body).map_err(|e| e.to_string())?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let sink_addr = listener.local_addr().map_err(|e| e.to_string())?;
    let count = Arc::new(AtomicU64::new(0));
    tokio::spawn(sink(listener, Arc::clone(&count)));

    let helo = HeloName::try_from("bench.example")
        .map_err(|e| e.to_string())?
        .into_owned();
    let opts = TransportOptions::new(helo);

    // Baseline: straight to the sink.
    let t0 = Instant::now();
    let ok = send_all(sink_addr, n, conc, &body_path, &opts).await;
    let base = t0.elapsed();
    if ok != n {
        return Err(format!("baseline: only {ok} of {n} accepted"));
    }

    // Through mailbagd.
    let config = Config::from_toml_str(&format!(
        r#"
hostname = "mail.example.test"
local_domains = ["example.test"]
data_dir = {data:?}
[pop3]
listen = []
[smtp]
listen = ["127.0.0.1:0"]
submission_listen = []
max_message_size = 52428800
[relay]
smarthost = "{sink_addr}"
concurrency = {conc}
max_connections = {conc}
scan_interval = "1s"
[[users]]
name = "joe"
password = "secret"
"#,
        data = dir.path().join("data"),
    ))
    .map_err(|e| e.to_string())?;
    let server = Server::bind(config).await.map_err(|e| e.to_string())?;
    let smtp = server
        .local_addrs()
        .into_iter()
        .find(|(r, _)| *r == Role::Smtp)
        .map(|(_, a)| a)
        .ok_or("no SMTP listener")?;
    server.context().relay.record_login(
        "127.0.0.1".parse().map_err(|_| "ip")?,
        "joe",
        Instant::now(),
    );
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopper = Arc::clone(&stop);
    let running = tokio::spawn(server.run(async move { stopper.notified().await }));
    count.store(0, Ordering::Relaxed);

    let t1 = Instant::now();
    let ok = send_all(smtp, n, conc, &body_path, &opts).await;
    let submitted = t1.elapsed();
    if ok != n {
        return Err(format!("relay: only {ok} of {n} accepted by mailbagd"));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while count.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return Err(format!(
                "relay: only {} of {n} reached the sink",
                count.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let relayed = t1.elapsed();
    stop.notify_one();
    let _ = running.await;

    let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    println!("messages={n} size={size} concurrency={conc}");
    println!(
        "baseline_direct_msgs_per_s={:.0}  ({:.2} s)",
        rate(base),
        base.as_secs_f64()
    );
    println!(
        "mailbagd_submit_msgs_per_s={:.0}  ({:.2} s, 250 after queue fsync)",
        rate(submitted),
        submitted.as_secs_f64()
    );
    println!(
        "relay_end_to_end_msgs_per_s={:.0}  ({:.2} s, until the sink has all)",
        rate(relayed),
        relayed.as_secs_f64()
    );
    println!(
        "relay_vs_baseline={:.2}",
        base.as_secs_f64() / relayed.as_secs_f64().max(1e-9)
    );
    Ok(())
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("relay-bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
