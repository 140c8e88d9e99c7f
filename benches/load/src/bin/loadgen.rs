//! `loadgen`: a POP3 and SMTP load generator for any server on loopback
//! (mailbagd, Dovecot, Postfix, …), so that side-by-side figures come from
//! one client that is cheaper than the servers it measures (the Python
//! clients of `shared/peers` used a core of their own on this machine).
//!
//! ```text
//! loadgen pop3 PORT USER[,USER…] PASSWORD [--sessions-per-user N] [--pipeline N] [--host H] [--source S]
//! loadgen smtp PORT [--sessions N] [--messages N] [--size OCTETS] [--rcpts N] [--to ADDR]
//!              [--new-connection] [--host H] [--source S]
//! ```
//!
//! POP3: one task per user (one session per user at a time, as an exclusive
//! maildrop lock requires), each running `--sessions-per-user` sessions of
//! USER, PASS, STAT, RETR of every message, QUIT; with `--pipeline N` the
//! RETRs go out N at a time (RFC 2449 PIPELINING). SMTP: `--sessions`
//! concurrent sessions share `--messages` messages of about `--size` octets
//! to `--rcpts` recipients each (`--to`, with `+n` added to the local part
//! for the 2nd recipient on), one connection per session unless
//! `--new-connection`.
//!
//! It prints one line: `messages=… errors=… elapsed_s=… msgs_per_s=…
//! p50_ms=… p99_ms=…` (latency of each RETR, from its command to the end of
//! its body, or of each SMTP message, from MAIL to the reply after the
//! data). Every reply is awaited at most 30 s (then the session counts an
//! error and ends). It refuses targets and source addresses that are not loopback,
//! and stops after `--max-seconds` (default 300).

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// How long any one reply may take before the session counts an error.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What one worker measured.
#[derive(Default)]
struct Tally {
    messages: u64,
    errors: u64,
    latencies: Vec<Duration>,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    fn merge(&mut self, other: Tally) {
        self.messages += other.messages;
        self.errors += other.errors;
        self.latencies.extend(other.latencies);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

type Res<T> = Result<T, String>;

/// A line-oriented connection.
struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    line: Vec<u8>,
}

impl Conn {
    async fn open(target: SocketAddr, source: Option<IpAddr>) -> Res<Conn> {
        let sock = match target {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(|e| format!("socket: {e}"))?;
        if let Some(src) = source {
            sock.bind(SocketAddr::new(src, 0))
                .map_err(|e| format!("bind {src}: {e}"))?;
        }
        let s: TcpStream = tokio::time::timeout(READ_TIMEOUT, sock.connect(target))
            .await
            .map_err(|_| format!("connect {target}: no answer within {READ_TIMEOUT:?}"))?
            .map_err(|e| format!("connect {target}: {e}"))?;
        let _ = s.set_nodelay(true);
        let (r, w) = s.into_split();
        Ok(Conn {
            r: BufReader::with_capacity(64 * 1024, r),
            w,
            line: Vec::with_capacity(512),
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> Res<()> {
        self.w
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// The next line, CRLF included.
    async fn line(&mut self) -> Res<&[u8]> {
        self.line.clear();
        let n = tokio::time::timeout(READ_TIMEOUT, self.r.read_until(b'\n', &mut self.line))
            .await
            .map_err(|_| format!("no answer within {READ_TIMEOUT:?}"))?
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed".into());
        }
        Ok(&self.line)
    }

    /// A POP3 status line: Ok when `+OK`.
    async fn pop_ok(&mut self, what: &str) -> Res<()> {
        let l = self.line().await?;
        if l.starts_with(b"+OK") {
            Ok(())
        } else {
            Err(format!("{what}: {}", String::from_utf8_lossy(l).trim_end()))
        }
    }

    /// Skips a multi-line body up to and including its `.CRLF`.
    async fn skip_body(&mut self) -> Res<()> {
        loop {
            let l = self.line().await?;
            if l == b".\r\n" {
                return Ok(());
            }
        }
    }

    /// An SMTP reply (all its lines); Ok with the code when it is `want`'s class.
    async fn smtp_reply(&mut self, what: &str, want: u8) -> Res<()> {
        loop {
            let l = self.line().await?;
            if l.len() < 4 {
                return Err(format!("{what}: short reply"));
            }
            if l[3] == b'-' {
                continue;
            }
            return if l[0] == want {
                Ok(())
            } else {
                Err(format!("{what}: {}", String::from_utf8_lossy(l).trim_end()))
            };
        }
    }

    async fn drain(&mut self) {
        let mut sink = [0u8; 512];
        let _ = tokio::time::timeout(Duration::from_millis(200), self.r.read(&mut sink)).await;
    }
}

/// Every worker's tally, merged.
async fn join(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut all = Tally::default();
    for task in tasks {
        match task.await {
            Ok(t) => all.merge(t),
            Err(e) => all.error(e),
        }
    }
    all
}

/// Runs a load within `max` (and a few seconds of grace): never longer.
fn bounded(
    rt: &tokio::runtime::Runtime,
    max: Duration,
    load: impl std::future::Future<Output = Tally>,
) -> Tally {
    rt.block_on(async {
        tokio::time::timeout(max + Duration::from_secs(5), load)
            .await
            .unwrap_or_else(|_| {
                let mut t = Tally::default();
                t.error("time limit");
                t
            })
    })
}

struct Pop3Args {
    target: SocketAddr,
    source: Option<IpAddr>,
    users: Vec<String>,
    password: String,
    sessions_per_user: u32,
    pipeline: usize,
}

async fn pop3_session(a: &Pop3Args, user: &str, t: &mut Tally) -> Res<()> {
    let mut c = Conn::open(a.target, a.source).await?;
    c.pop_ok("greeting").await?;
    c.send(format!("USER {user}\r\n").as_bytes()).await?;
    c.pop_ok("USER").await?;
    c.send(format!("PASS {}\r\n", a.password).as_bytes())
        .await?;
    c.pop_ok("PASS").await?;
    c.send(b"STAT\r\n").await?;
    let stat = c.line().await?;
    let count: usize = std::str::from_utf8(stat)
        .ok()
        .and_then(|s| s.strip_prefix("+OK "))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("STAT: {}", String::from_utf8_lossy(stat).trim_end()))?;
    let window = a.pipeline.max(1);
    let mut next = 1;
    let mut batch = Vec::with_capacity(window * 12);
    while next <= count {
        let last = (next + window - 1).min(count);
        batch.clear();
        for n in next..=last {
            batch.extend_from_slice(format!("RETR {n}\r\n").as_bytes());
        }
        let sent = Instant::now();
        c.send(&batch).await?;
        for _ in next..=last {
            c.pop_ok("RETR").await?;
            c.skip_body().await?;
            t.messages += 1;
            t.latencies.push(sent.elapsed());
        }
        next = last + 1;
    }
    c.send(b"QUIT\r\n").await?;
    c.pop_ok("QUIT").await?;
    Ok(())
}

async fn pop3(a: Arc<Pop3Args>, deadline: Instant) -> Tally {
    let mut tasks = Vec::new();
    for user in a.users.clone() {
        let a = Arc::clone(&a);
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            for _ in 0..a.sessions_per_user {
                if Instant::now() >= deadline {
                    break;
                }
                if let Err(e) = pop3_session(&a, &user, &mut t).await {
                    t.error(e);
                }
            }
            t
        }));
    }
    join(tasks).await
}

struct SmtpArgs {
    target: SocketAddr,
    source: Option<IpAddr>,
    sessions: usize,
    messages: u64,
    rcpts: Vec<String>,
    body: Vec<u8>,
    new_connection: bool,
}

/// A message of about `size` octets, CRLF lines of 72 octets, dot-stuffed,
/// ending with `.CRLF`.
fn make_body(size: usize, to: &str) -> Vec<u8> {
    let mut m = format!(
        "From: load <load@example.org>\r\nTo: <{to}>\r\nSubject: loadgen\r\n\
         Message-ID: <loadgen@example.org>\r\n\r\n"
    )
    .into_bytes();
    let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\r\n";
    while m.len() + line.len() <= size {
        m.extend_from_slice(line);
    }
    m.extend_from_slice(b".\r\n");
    m
}

async fn smtp_connect(a: &SmtpArgs) -> Res<Conn> {
    let mut c = Conn::open(a.target, a.source).await?;
    c.smtp_reply("greeting", b'2').await?;
    c.send(b"EHLO loadgen.example.org\r\n").await?;
    c.smtp_reply("EHLO", b'2').await?;
    Ok(c)
}

async fn smtp_message(a: &SmtpArgs, c: &mut Conn) -> Res<()> {
    c.send(b"MAIL FROM:<load@example.org>\r\n").await?;
    c.smtp_reply("MAIL", b'2').await?;
    for r in &a.rcpts {
        c.send(format!("RCPT TO:<{r}>\r\n").as_bytes()).await?;
        c.smtp_reply("RCPT", b'2').await?;
    }
    c.send(b"DATA\r\n").await?;
    c.smtp_reply("DATA", b'3').await?;
    c.send(&a.body).await?;
    c.smtp_reply("end of data", b'2').await
}

async fn smtp(a: Arc<SmtpArgs>, deadline: Instant) -> Tally {
    let mut tasks = Vec::new();
    let sessions = a.sessions.max(1) as u64;
    for i in 0..sessions {
        let a = Arc::clone(&a);
        // Messages split as evenly as possible.
        let share = a.messages / sessions + u64::from(i < a.messages % sessions);
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let mut conn: Option<Conn> = None;
            for _ in 0..share {
                if Instant::now() >= deadline {
                    break;
                }
                let c = match conn.take() {
                    Some(c) => c,
                    None => match smtp_connect(&a).await {
                        Ok(c) => c,
                        Err(e) => {
                            t.error(e);
                            continue;
                        }
                    },
                };
                let mut c = c;
                let start = Instant::now();
                match smtp_message(&a, &mut c).await {
                    Ok(()) => {
                        t.messages += 1;
                        t.latencies.push(start.elapsed());
                        if a.new_connection {
                            let _ = c.send(b"QUIT\r\n").await;
                            c.drain().await;
                        } else {
                            conn = Some(c);
                        }
                    }
                    Err(e) => t.error(e),
                }
            }
            if let Some(mut c) = conn {
                let _ = c.send(b"QUIT\r\n").await;
                c.drain().await;
            }
            t
        }));
    }
    join(tasks).await
}

/// Options of both modes.
#[derive(clap::Args)]
struct Common {
    /// The server's address (loopback only).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// The clients' source address (loopback only).
    #[arg(long)]
    source: Option<IpAddr>,
    /// Stop after this long (1 to 3600).
    #[arg(long, default_value_t = 300.0)]
    max_seconds: f64,
}

/// POP3 and SMTP load against a server on loopback.
#[derive(clap::Parser)]
enum Cli {
    /// USER, PASS, STAT, RETR of every message, QUIT; one task per user.
    Pop3 {
        port: u16,
        /// One user or several, separated by commas.
        users: String,
        password: String,
        #[arg(long, default_value_t = 1)]
        sessions_per_user: u32,
        /// RETRs in flight at once.
        #[arg(long, default_value_t = 1)]
        pipeline: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Messages over concurrent sessions.
    Smtp {
        port: u16,
        #[arg(long, default_value_t = 4)]
        sessions: usize,
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        /// Octets per message (about).
        #[arg(long, default_value_t = 10240)]
        size: usize,
        /// Recipients per message: ADDR, then ADDR with +1, +2… in the local part.
        #[arg(long, default_value_t = 1)]
        rcpts: usize,
        #[arg(long, default_value = "joe@example.test")]
        to: String,
        /// A new connection for every message.
        #[arg(long)]
        new_connection: bool,
        #[command(flatten)]
        common: Common,
    },
}

fn loopback(what: &str, ip: IpAddr) -> Res<IpAddr> {
    if ip.is_loopback() {
        Ok(ip)
    } else {
        Err(format!("refusing non-loopback {what} {ip}"))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn run(cli: Cli) -> Res<Tally> {
    let (Cli::Pop3 { port, common, .. } | Cli::Smtp { port, common, .. }) = &cli;
    let target = SocketAddr::new(loopback("target", common.host)?, *port);
    let source = common.source.map(|s| loopback("source", s)).transpose()?;
    let max = Duration::from_secs_f64(common.max_seconds.clamp(1.0, 3600.0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + max;
    match cli {
        Cli::Pop3 {
            users,
            password,
            sessions_per_user,
            pipeline,
            ..
        } => {
            let a = Arc::new(Pop3Args {
                target,
                source,
                users: users.split(',').map(str::to_owned).collect(),
                password,
                sessions_per_user,
                pipeline,
            });
            Ok(bounded(&rt, max, pop3(a, deadline)))
        }
        Cli::Smtp {
            sessions,
            messages,
            size,
            rcpts,
            to,
            new_connection,
            ..
        } => {
            let rcpts = (0..rcpts.max(1))
                .map(|i| match (i, to.split_once('@')) {
                    (0, _) | (_, None) => to.clone(),
                    (i, Some((local, domain))) => format!("{local}+{i}@{domain}"),
                })
                .collect();
            let a = Arc::new(SmtpArgs {
                target,
                source,
                sessions,
                messages,
                rcpts,
                body: make_body(size, &to),
                new_connection,
            });
            Ok(bounded(&rt, max, smtp(a, deadline)))
        }
    }
}

fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    let start = Instant::now();
    let mut t = match run(cli) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let elapsed = start.elapsed().as_secs_f64();
    t.latencies.sort_unstable();
    if let Some(e) = &t.first_error {
        eprintln!("loadgen: first error: {e}");
    }
    println!(
        "messages={} errors={} elapsed_s={:.3} msgs_per_s={:.0} p50_ms={:.3} p99_ms={:.3}",
        t.messages,
        t.errors,
        elapsed,
        t.messages as f64 / elapsed.max(1e-9),
        percentile(&t.latencies, 0.50),
        percentile(&t.latencies, 0.99),
    );
    if t.errors > 0 && t.messages == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
