//! The self-service page in a real browser: headless Chromium driven through
//! WebDriver (`/usr/bin/chromedriver`, the `fantoccini` crate), against
//! `mailbagd` running in this process, with SMTP and POP3 from raw sockets.
//!
//! Skipped when chromium or chromedriver is missing, except under `CI=true`,
//! where that fails. Screenshots of the login, settings and Spam pages go to
//! `docs/screenshots/` at the repository root when `MAILBAG_SCREENSHOTS=1`,
//! else to the target directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

mod webutil;
use webutil::{GTUBE, WebServer, pop3_fetch_all, smtp_send, subject};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The whole browser dialogue must finish within this.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Stops chromedriver (and so its Chromium) however the test ends.
struct Driver {
    child: Option<Child>,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM first: chromedriver then closes its browser.
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start_driver() -> (Driver, u16) {
    let port = free_port();
    let profile = tempfile::tempdir().expect("profile dir");
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromedriver");
    let driver = Driver {
        child: Some(child),
        _profile: profile,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (driver, port)
}

fn screenshot_dir() -> PathBuf {
    if std::env::var("MAILBAG_SCREENSHOTS").is_ok_and(|v| v == "1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    }
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// Clicks an element that submits a form or follows a link, and waits
/// until the next page has loaded (bounded).
async fn click_through(c: &Client, e: fantoccini::elements::Element) {
    c.execute("window.__mailbag_old_page = true;", vec![])
        .await
        .expect("mark page");
    e.click().await.expect("click");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fresh = c
            .execute(
                "return typeof window.__mailbag_old_page === 'undefined' && document.readyState === 'complete';",
                vec![],
            )
            .await
            .map(|v| v == json!(true))
            .unwrap_or(false);
        if fresh {
            return;
        }
        assert!(Instant::now() < deadline, "the next page did not load");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn find(c: &Client, l: Locator<'_>) -> fantoccini::elements::Element {
    c.find(l).await.unwrap_or_else(|e| panic!("{l:?}: {e}"))
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

async fn path(c: &Client) -> String {
    c.current_url().await.expect("url").path().to_owned()
}

async fn login(c: &Client, base: &str, user: &str, password: &str) {
    c.goto(&format!("{base}/login")).await.expect("goto login");
    let u = c.find(Locator::Id("user")).await.expect("user field");
    u.clear().await.expect("clear");
    u.send_keys(user).await.expect("type user");
    c.find(Locator::Id("password"))
        .await
        .expect("password field")
        .send_keys(password)
        .await
        .expect("type password");
    click_through(c, find(c, Locator::Id("login")).await).await;
}

async fn choose_and_save(c: &Client, radio: &str) {
    c.find(Locator::Id(radio))
        .await
        .expect("radio")
        .click()
        .await
        .expect("click radio");
    click_through(c, find(c, Locator::Id("save")).await).await;
    assert!(text(c, "#saved").await.contains("saved"), "no saved notice");
    let selected = c
        .find(Locator::Id(radio))
        .await
        .expect("radio")
        .is_selected()
        .await
        .expect("selected");
    assert!(selected, "{radio} not selected after saving");
}

async fn send(server_smtp: SocketAddr, to: &'static str, subj: &'static str) {
    let r = tokio::task::spawn_blocking(move || smtp_send(server_smtp, to, subj, GTUBE))
        .await
        .expect("smtp task");
    assert!(r.starts_with("250"), "{r}");
}

/// `text` with quoted-printable soft line breaks removed and `=XX` decoded (the
/// digest's parts); any other `=` (in its header) is kept.
fn decode_quoted_printable(text: &str) -> String {
    let b = text.replace("=\r\n", "");
    let b = b.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'=', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn fetch(pop3: SocketAddr, user: &'static str) -> Vec<String> {
    tokio::task::spawn_blocking(move || pop3_fetch_all(pop3, user, "secret"))
        .await
        .expect("pop3 task")
}

/// The uids of the release forms on the current Spam page.
async fn page_uids(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for e in c
        .find_all(Locator::Css(
            "form[action='/spam/release'] input[name='uid']",
        ))
        .await
        .expect("uids")
    {
        if let Some(v) = e.attr("value").await.expect("value") {
            out.push(v);
        }
    }
    out
}

async fn dialogue(c: &Client, server: &WebServer) {
    let base = format!("http://{}", server.web());
    c.set_window_size(1100, 1000).await.expect("window size");

    // Wrong password: refused, still on the login page.
    login(c, &base, "joe", "not-the-password").await;
    assert_eq!(path(c).await, "/login");
    assert_eq!(text(c, "#error").await, "Wrong mailbox name or password.");
    c.goto(&format!("{base}/login")).await.expect("goto login");
    screenshot(c, "login").await;

    // The client settings page, linked from the login page, without a login.
    click_through(c, find(c, Locator::Id("help-link")).await).await;
    assert_eq!(path(c).await, "/help");
    let incoming = text(c, "#incoming").await;
    assert!(incoming.contains("mail.example.test"), "{incoming}");
    assert!(text(c, "#smtp-auth").await.starts_with("OFF"));
    assert!(text(c, "#pop-before-smtp").await.starts_with("ON"));
    assert_eq!(text(c, "#spam-login").await, "yourname/Spam");
    assert!(text(c, "#spam-folder").await.contains("7 days"));
    screenshot(c, "help").await;
    c.goto(&format!("{base}/login")).await.expect("goto login");

    // Log in.
    login(c, &base, "joe", "secret").await;
    assert_eq!(path(c).await, "/settings");
    let spam_selected = c
        .find(Locator::Id("folder-spam"))
        .await
        .expect("folder-spam")
        .is_selected()
        .await
        .expect("selected");
    assert!(spam_selected, "the config default (Spam) is not shown");

    // Deliver spam to INBOX: GTUBE arrives tagged over POP3.
    choose_and_save(c, "folder-inbox").await;
    screenshot(c, "settings").await;
    send(server.smtp(), "joe@example.test", "browser one").await;
    let inbox = fetch(server.pop3(), "joe").await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let s = subject(&inbox[0]);
    assert!(
        s.starts_with("**SPAM(") && s.ends_with(")** browser one"),
        "{s}"
    );

    // Back to the Spam folder: the next GTUBE is listed on the Spam page.
    choose_and_save(c, "folder-spam").await;
    send(server.smtp(), "joe@example.test", "You have won a prize").await;
    send(server.smtp(), "joe@example.test", "browser two").await;
    assert_eq!(fetch(server.pop3(), "joe").await.len(), 1);
    click_through(c, find(c, Locator::LinkText("Spam folder")).await).await;
    assert_eq!(path(c).await, "/spam");
    let table = text(c, "#messages").await;
    assert!(table.contains("browser two"), "{table}");
    assert!(table.contains("You have won a prize"), "{table}");
    assert!(table.contains("sender@example.org"), "{table}");
    screenshot(c, "spam").await;
    // The same page on a phone-sized screen (one card per message).
    c.set_window_size(400, 860).await.expect("window size");
    screenshot(c, "spam-phone").await;
    c.set_window_size(1100, 1000).await.expect("window size");
    let joe_uids = page_uids(c).await;
    assert_eq!(joe_uids.len(), 2);

    // Another user's id (ann's Spam) edited into the form: 404, nothing moves.
    for subj in ["ann 1", "ann 2", "ann 3"] {
        send(server.smtp(), "ann@example.test", subj).await;
    }
    let mut ann = webutil::Client::new(server.web());
    let ann_uids = tokio::task::spawn_blocking(move || {
        let r = ann.login("ann", "secret");
        assert_eq!(r.status, 303);
        let page = ann.get("/spam");
        let marker = "name=\"uid\" value=\"";
        page.body
            .match_indices(marker)
            .map(|(i, _)| page.body[i + marker.len()..i + marker.len() + 16].to_owned())
            .collect::<Vec<_>>()
    })
    .await
    .expect("ann task");
    let foreign = ann_uids
        .iter()
        .find(|u| !joe_uids.contains(u))
        .expect("an id of ann's that joe does not have")
        .clone();
    c.execute(
        "document.querySelector(\"form[action='/spam/release'] input[name='uid']\").value = arguments[0];",
        vec![json!(foreign)],
    )
    .await
    .expect("edit uid");
    click_through(c, find(c, Locator::Css("button.release")).await).await;
    assert_eq!(text(c, "h1").await, "Not found");
    assert_eq!(server.files("ann", ".Spam").len(), 3);
    assert!(fetch(server.pop3(), "ann").await.is_empty());

    // A form without its CSRF token: refused.
    c.goto(&format!("{base}/spam")).await.expect("goto spam");
    c.execute(
        "document.querySelectorAll(\"input[name='csrf']\").forEach(e => e.remove());",
        vec![],
    )
    .await
    .expect("remove csrf");
    click_through(c, find(c, Locator::Css("button.release")).await).await;
    assert_eq!(text(c, "h1").await, "Form not accepted");
    assert_eq!(server.files("joe", ".Spam").len(), 2);

    // Release "browser two": retrieved untagged over POP3.
    c.goto(&format!("{base}/spam")).await.expect("goto spam");
    let rows = c
        .find_all(Locator::Css("#messages tbody tr"))
        .await
        .expect("rows");
    let mut released = false;
    for row in rows {
        if row.text().await.expect("row text").contains("browser two") {
            let button = row
                .find(Locator::Css("button.release"))
                .await
                .expect("release");
            click_through(c, button).await;
            released = true;
            break;
        }
    }
    assert!(released, "no row for 'browser two'");
    assert!(text(c, "#notice").await.contains("released to your INBOX"));
    let inbox = fetch(server.pop3(), "joe").await;
    assert!(
        inbox.iter().any(|m| subject(m) == "browser two"),
        "{:?}",
        inbox.iter().map(|m| subject(m)).collect::<Vec<_>>()
    );
    assert_eq!(server.files("joe", ".Spam").len(), 1);

    // Log out: the pages lead back to the login.
    click_through(c, find(c, Locator::Id("logout")).await).await;
    assert_eq!(path(c).await, "/login");
    c.goto(&format!("{base}/spam")).await.expect("goto spam");
    assert_eq!(path(c).await, "/login");

    digest_release(c, server).await;
}

/// The Spam digest: fetched over POP3, its HTML part shown, its release
/// link opened (a confirmation page), confirmed; the message is back in the
/// INBOX untagged.
async fn digest_release(c: &Client, server: &WebServer) {
    send(server.smtp(), "joe@example.test", "digest me").await;
    let ctx = std::sync::Arc::clone(&server.ctx);
    let sent = tokio::task::spawn_blocking(move || {
        let joe = ctx.config().user("joe").expect("joe").clone();
        mailbagd::digest::send_digest(&ctx, &joe, std::time::SystemTime::now(), true)
    })
    .await
    .expect("digest task")
    .expect("digest");
    assert!(
        matches!(sent, mailbagd::digest::Outcome::Sent(_)),
        "{sent:?}"
    );
    let inbox = fetch(server.pop3(), "joe").await;
    let digest = inbox
        .iter()
        .find(|m| subject(m).starts_with("Spam digest:"))
        .expect("the digest in the INBOX");
    // Its parts are quoted-printable: decoded as a mail program does.
    let digest = &decode_quoted_printable(digest);
    // The HTML part as a mail program shows it.
    let html = &digest[digest.find("<!DOCTYPE html>").expect("HTML part")..];
    let html = &html[..html.find("</html>").expect("end of HTML") + 7];
    let file = std::env::temp_dir().join(format!("mailbag-digest-{}.html", std::process::id()));
    std::fs::write(&file, html).expect("write digest");
    c.goto(&format!("file://{}", file.display()))
        .await
        .expect("goto digest");
    screenshot(c, "digest").await;
    let _ = std::fs::remove_file(&file);
    // The text part's link for "digest me", opened on the bound port.
    let block = &digest[digest.find("* digest me").expect("digest me listed")..];
    let link = block
        .lines()
        .find_map(|l| l.split_once("Release it to your INBOX: "))
        .map(|(_, l)| l.trim())
        .expect("release link");
    let path_and_query = &link[link.find("/release?").expect("release path")..];
    c.goto(&format!("http://{}{path_and_query}", server.web()))
        .await
        .expect("goto release");
    assert_eq!(text(c, "#subject").await, "digest me");
    screenshot(c, "release").await;
    assert!(
        fetch(server.pop3(), "joe")
            .await
            .iter()
            .all(|m| subject(m) != "digest me"),
        "opening the link released nothing"
    );
    click_through(c, find(c, Locator::Id("confirm-release")).await).await;
    assert_eq!(text(c, "h1").await, "Released");
    let inbox = fetch(server.pop3(), "joe").await;
    let back = inbox
        .iter()
        .find(|m| subject(m) == "digest me")
        .expect("released into the INBOX, untagged");
    assert!(
        back.contains("GTUBE") && !back.contains("X-Spam-Flag"),
        "{back}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_settings_spam_release_and_isolation() {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(tool).is_file() {
            assert!(
                !in_ci(),
                "{tool} is not installed (CI=true): install chromium and chromium-driver (see .ci/run)"
            );
            eprintln!(
                "SKIP: {tool} is not installed; skipping the browser test (it fails under CI=true)"
            );
            return;
        }
    }
    let server = WebServer::start("login_failure_delay = \"0s\"");
    let (driver, port) = start_driver();
    let caps = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!("an object literal")
    };
    let client = tokio::time::timeout(
        Duration::from_secs(60),
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}")),
    )
    .await
    .expect("WebDriver session timed out")
    .expect("WebDriver session");
    let outcome = tokio::time::timeout(TEST_TIMEOUT, dialogue(&client, &server)).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
    drop(driver);
    outcome.expect("browser test timed out");
}
