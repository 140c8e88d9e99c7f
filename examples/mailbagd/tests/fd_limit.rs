//! The open-file limit: started (through util-linux's `prlimit`) with a soft
//! limit of 1,024 under a hard limit of 16,384, mailbagd raises its soft
//! limit to the hard one and says so; under a hard limit of 1,024, which the
//! default connection limits exceed, it warns with both figures and still
//! serves. Under `CI=true` a missing `prlimit` fails the test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::require;

/// Kills and reaps the server however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts mailbagd under `prlimit --nofile=SOFT:HARD`; returns it once it
/// listens, with its log file.
fn start(dir: &Path, soft: u64, hard: u64) -> (Running, std::path::PathBuf) {
    let data = dir.join("data");
    let cfg = dir.join("mailbag.toml");
    std::fs::write(
        &cfg,
        format!(
            "hostname = \"mail.example.test\"\nlocal_domains = [\"example.test\"]\n\
             data_dir = {data:?}\n[pop3]\nlisten = [\"127.0.0.1:0\"]\n[smtp]\n\
             listen = [\"127.0.0.1:0\"]\nsubmission_listen = []\n[web]\nlisten = []\n\
             [relay]\nqueue_dir = {queue:?}\n[[users]]\nname = \"joe\"\npassword = \"secret\"\n",
            queue = data.join("queue"),
        ),
    )
    .unwrap();
    let log = dir.join(format!("mailbagd-{soft}-{hard}.log"));
    let child = Command::new("prlimit")
        .arg(format!("--nofile={soft}:{hard}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_mailbagd"))
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("prlimit");
    let mut child = Running(child);
    let out = BufReader::new(child.0.stdout.take().unwrap());
    for line in out.lines() {
        let line = line.unwrap();
        if line.starts_with("mailbagd: listening pop3") {
            return (child, log);
        }
    }
    panic!(
        "mailbagd did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// The soft open-file limit of a running process.
fn soft_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

fn log_has(log: &Path, what: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains(what)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn the_soft_limit_is_raised_to_the_hard_one_and_a_low_hard_limit_is_reported() {
    if !require("prlimit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = start(dir.path(), 1024, 16384);
    assert_eq!(soft_limit(server.0.id()), 16384);
    assert!(log_has(&log, "open-file limit raised"), "{log:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("from=1024") && text.contains("to=16384"),
        "{text}"
    );
    drop(server);

    // The default limits (500 per role, two descriptors each; 20 outbound; 128)
    // need 4,148 descriptors.
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = start(dir.path(), 1024, 1024);
    assert_eq!(soft_limit(server.0.id()), 1024);
    assert!(log_has(&log, "open-file limit below what"), "{log:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("limit=1024") && text.contains("needed=4148"),
        "{text}"
    );
    // Still serving.
    assert!(!text.contains("ERROR"), "{text}");
}
