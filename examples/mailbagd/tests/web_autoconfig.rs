//! The help page and the autoconfiguration documents, through the web
//! router: each document is parsed by Python's XML and plist readers (the
//! parsers of the formats, not ours) and checked field by field against the
//! running configuration; a change of the configuration changes them.
//! Under `CI=true` a missing python3 fails the test.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mailbagd::config::Config;
use mailbagd::server::Server;
use mailbagd::web::{Web, router};
use serde_json::Value;
use tower::ServiceExt;

mod common;
use common::{python, require};

/// A server bound on loopback (POP3 on a fixed free port and on port 0,
/// submission on a fixed one), as the router sees it.
struct Site {
    app: axum::Router,
    pop3: Vec<u16>,
    submission: u16,
    _dir: tempfile::TempDir,
}

async fn start_site(pop3_extra: &str, extra: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let pop3 = common::free_port();
    let submission = common::free_port();
    let config = Config::from_toml_str(&format!(
        "hostname = \"mail.example.test\"\nlocal_domains = [\"example.test\", \"example.org\"]\n\
         data_dir = {:?}\n[pop3]\nlisten = [\"127.0.0.1:{pop3}\", \"127.0.0.1:0\"]\n{pop3_extra}\n\
         [smtp]\nlisten = []\nsubmission_listen = [\"127.0.0.1:{submission}\"]\n[web]\nlisten = []\n\
         {extra}\n[[users]]\nname = \"joe\"\npassword = \"secret\"\n",
        dir.path().join("data")
    ))
    .unwrap();
    let server = Server::bind(config).await.unwrap();
    let mut pop3_ports: Vec<u16> = server
        .local_addrs()
        .iter()
        .filter(|(r, _)| r.name() == "pop3")
        .map(|(_, a)| a.port())
        .collect();
    pop3_ports.dedup();
    let app = router(Arc::new(Web::new(Arc::clone(server.context()))));
    Site {
        app,
        pop3: pop3_ports,
        submission,
        _dir: dir,
    }
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String, String) {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, String, String) {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

/// Parses `doc` with Python (`xml.etree` for `kind` "thunderbird" and
/// "outlook", `plistlib` for "apple") and returns the fields as JSON.
fn parse(kind: &str, doc: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc");
    std::fs::write(&path, doc).unwrap();
    let script = r#"
import json, plistlib, sys
import xml.etree.ElementTree as ET
kind, path = sys.argv[1:3]
data = open(path, 'rb').read()
if kind == 'apple':
    print(json.dumps(plistlib.loads(data), default=str))
    sys.exit(0)
root = ET.fromstring(data)
def strip(tag): return tag.split('}', 1)[-1]
def tree(e):
    kids = list(e)
    if not kids:
        return (e.text or '').strip()
    out = {}
    for k in kids:
        out.setdefault(strip(k.tag), []).append(tree(k))
    for a, v in e.attrib.items():
        out['@' + a] = v
    return out
print(json.dumps({strip(root.tag): tree(root), '@root': dict(root.attrib)}))
"#;
    let out = python(script, &[kind, path.to_str().unwrap()]);
    assert!(out.ok(), "{kind}: {out:?}\n{doc}");
    serde_json::from_str(&out.stdout).unwrap()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[tokio::test]
async fn thunderbird_config_v1_1() {
    if !require("python3") {
        return;
    }
    let site = start_site("", "").await;
    for uri in [
        "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=anyone%40EXAMPLE.ORG",
        "/mail/config-v1.1.xml?emailaddress=joe%40example.org",
    ] {
        let (status, ct, doc) = get(&site.app, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(ct.starts_with("application/xml"), "{ct}");
        let v = parse("thunderbird", &doc);
        assert_eq!(v["@root"]["version"], "1.1");
        let p = &v["clientConfig"]["emailProvider"][0];
        assert_eq!(p["@id"], "example.org");
        assert_eq!(p["domain"], serde_json::json!(["example.org"]));
        let incoming = p["incomingServer"].as_array().unwrap();
        let ports: Vec<u16> = incoming
            .iter()
            .map(|i| s(&i["port"][0]).parse().unwrap())
            .collect();
        assert_eq!(ports, site.pop3, "every POP3 port, as bound");
        for i in incoming {
            assert_eq!(i["@type"], "pop3");
            assert_eq!(s(&i["hostname"][0]), "mail.example.test");
            assert_eq!(s(&i["socketType"][0]), "plain");
            assert_eq!(s(&i["username"][0]), "%EMAILLOCALPART%");
            assert_eq!(s(&i["authentication"][0]), "password-cleartext");
        }
        let out = &p["outgoingServer"][0];
        assert_eq!(out["@type"], "smtp");
        assert_eq!(s(&out["port"][0]), site.submission.to_string());
        assert_eq!(s(&out["authentication"][0]), "smtp-after-pop");
        assert!(out.get("username").is_none());
        assert!(!doc.contains("secret"));
    }
    // Without an address: every local domain.
    let (status, _, doc) = get(&site.app, "/mail/config-v1.1.xml").await;
    assert_eq!(status, StatusCode::OK);
    let v = parse("thunderbird", &doc);
    assert_eq!(
        v["clientConfig"]["emailProvider"][0]["domain"],
        serde_json::json!(["example.test", "example.org"])
    );
    // Foreign or malformed addresses: 404, as for any unknown page.
    for q in ["joe%40elsewhere.test", "joe", "%40example.test"] {
        let (status, _, _) = get(
            &site.app,
            &format!("/mail/config-v1.1.xml?emailaddress={q}"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{q}");
    }
}

fn autodiscover_request(address: &str, schema: &str) -> Request<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\">\
         <Request><EMailAddress>{address}</EMailAddress>\
         <AcceptableResponseSchema>{schema}</AcceptableResponseSchema></Request></Autodiscover>"
    );
    Request::post("/autodiscover/autodiscover.xml")
        .header("content-type", "text/xml")
        .body(Body::from(body))
        .unwrap()
}

const OUTLOOK: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";

#[tokio::test]
async fn outlook_autodiscover_pox() {
    if !require("python3") {
        return;
    }
    let site = start_site("", "").await;
    let (status, ct, doc) =
        send(&site.app, autodiscover_request("Joe@Example.Test", OUTLOOK)).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert!(ct.starts_with("application/xml"), "{ct}");
    assert!(doc.contains(&format!("<Response xmlns=\"{OUTLOOK}\">")));
    let v = parse("outlook", &doc);
    let account = &v["Autodiscover"]["Response"][0]["Account"][0];
    assert_eq!(s(&account["AccountType"][0]), "email");
    assert_eq!(s(&account["Action"][0]), "settings");
    let protocols = account["Protocol"].as_array().unwrap();
    assert_eq!(protocols.len(), 2);
    let (pop, smtp) = (&protocols[0], &protocols[1]);
    assert_eq!(s(&pop["Type"][0]), "POP3");
    assert_eq!(s(&pop["Server"][0]), "mail.example.test");
    assert_eq!(s(&pop["Port"][0]), site.pop3[0].to_string());
    assert_eq!(s(&pop["LoginName"][0]), "Joe");
    assert_eq!(s(&pop["SPA"][0]), "off");
    assert_eq!(s(&pop["SSL"][0]), "off");
    assert_eq!(s(&pop["AuthRequired"][0]), "on");
    assert_eq!(s(&smtp["Type"][0]), "SMTP");
    assert_eq!(s(&smtp["Port"][0]), site.submission.to_string());
    assert_eq!(s(&smtp["SPA"][0]), "off");
    assert_eq!(s(&smtp["AuthRequired"][0]), "off");
    assert_eq!(
        s(&smtp["SMTPLast"][0]),
        "on",
        "log on to POP3 before sending"
    );
    // The login name is escaped, not interpreted (`&` and `'` are atext).
    let (status, _, doc) = send(
        &site.app,
        autodiscover_request("a&amp;b'c@example.test", OUTLOOK),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s(
            &parse("outlook", &doc)["Autodiscover"]["Response"][0]["Account"][0]["Protocol"][0]["LoginName"]
                [0]
        ),
        "a&b'c"
    );
    // Foreign or malformed address, ActiveSync schema, or no address at all.
    for address in [
        "joe@elsewhere.test",
        "a&lt;b&gt;@example.test",
        "a@b@example.test",
    ] {
        let refused = send(&site.app, autodiscover_request(address, OUTLOOK)).await;
        assert_eq!(refused.0, StatusCode::NOT_FOUND, "{address}");
    }
    let eas = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006";
    let mobile = send(&site.app, autodiscover_request("joe@example.test", eas)).await;
    assert_eq!(mobile.0, StatusCode::NOT_FOUND);
    let bad = send(
        &site.app,
        Request::post("/Autodiscover/Autodiscover.xml")
            .body(Body::from("<Autodiscover/>"))
            .unwrap(),
    )
    .await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn apple_configuration_profile() {
    if !require("python3") {
        return;
    }
    let site = start_site("", "").await;
    let (status, ct, doc) = get(&site.app, "/mobileconfig?emailaddress=joe%40example.test").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "application/x-apple-aspen-config");
    let v = parse("apple", &doc);
    assert_eq!(v["PayloadType"], "Configuration");
    assert_eq!(v["PayloadVersion"], 1);
    let p = &v["PayloadContent"][0];
    assert_eq!(p["PayloadType"], "com.apple.mail.managed");
    assert_eq!(p["EmailAccountType"], "EmailTypePOP");
    assert_eq!(p["EmailAddress"], "joe@example.test");
    assert_eq!(p["IncomingMailServerHostName"], "mail.example.test");
    assert_eq!(p["IncomingMailServerPortNumber"], site.pop3[0]);
    assert_eq!(p["IncomingMailServerUseSSL"], false);
    assert_eq!(p["IncomingMailServerUsername"], "joe");
    assert_eq!(p["IncomingMailServerAuthentication"], "EmailAuthPassword");
    assert_eq!(p["OutgoingMailServerPortNumber"], site.submission);
    assert_eq!(p["OutgoingMailServerAuthentication"], "EmailAuthNone");
    assert!(p.get("IncomingPassword").is_none() && p.get("OutgoingPassword").is_none());
    assert_ne!(v["PayloadUUID"], p["PayloadUUID"]);
    // The same address: the same profile (installing again replaces it).
    let (_, _, again) = get(&site.app, "/mobileconfig?emailaddress=joe%40example.test").await;
    assert_eq!(again, doc);
    // The same mailbox in other letters: the same UUIDs (a probe found a
    // second account possible), the local part shown as typed.
    let (_, _, upper) = get(&site.app, "/mobileconfig?emailaddress=JOE%40Example.TEST").await;
    let u = parse("apple", &upper);
    assert_eq!(u["PayloadUUID"], v["PayloadUUID"]);
    let up = &u["PayloadContent"][0];
    assert_eq!(up["PayloadUUID"], p["PayloadUUID"]);
    assert_eq!(up["PayloadIdentifier"], p["PayloadIdentifier"]);
    assert_eq!(up["EmailAddress"], "JOE@example.test");
    let (_, _, ann) = get(&site.app, "/mobileconfig?emailaddress=ann%40example.test").await;
    assert_ne!(parse("apple", &ann)["PayloadUUID"], v["PayloadUUID"]);
    for q in [
        "",
        "?emailaddress=joe%40elsewhere.test",
        "?emailaddress=joe",
    ] {
        let (status, _, _) = get(&site.app, &format!("/mobileconfig{q}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{q}");
    }
}

#[tokio::test]
async fn the_help_page_follows_the_configuration() {
    let site = start_site("", "").await;
    let (status, ct, page) = get(&site.app, "/help").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/html"));
    for p in &site.pop3 {
        assert!(page.contains(&format!("Port {p}</th>")), "{page}");
    }
    assert!(page.contains(&format!("Port {}</th>", site.submission)));
    assert!(page.contains("deleted 7 days after they arrived"));
    assert!(page.contains("yourname/Spam"));
    assert!(page.contains("**SPAM( 7.3)** Cheap pills"));
    assert!(page.contains("for 30 minutes"));

    let other = start_site(
        "",
        "[spam]\nspam_retention = \"3d\"\ntag_template = \"[SPAM _SCORE_]\"\n\
         [pop_before_smtp]\nwindow = \"10m\"\n",
    )
    .await;
    let (_, _, changed) = get(&other.app, "/help").await;
    assert!(
        changed.contains("deleted 3 days after they arrived"),
        "{changed}"
    );
    assert!(changed.contains("[SPAM 7.3] Cheap pills"), "{changed}");
    assert!(changed.contains("for 10 minutes"));
    let off = start_site("spam_login_suffix = \"\"", "").await;
    let (_, _, page) = get(&off.app, "/help").await;
    assert!(!page.contains("spam-login"), "no Spam login to tell of");
}

/// Behind a load balancer clients must use its name and ports, not a backend's:
/// `[client_settings]` says them, and every document and the help page follow it.
#[tokio::test]
async fn client_settings_name_the_balancer_for_every_document() {
    if !require("python3") {
        return;
    }
    let site = start_site(
        "",
        "[client_settings]\nserver = \"Mail.Example.ORG\"\n\
         pop3 = [{ port = 995, security = \"tls\" }, { port = 110, security = \"starttls\" }]\n\
         smtp = [{ port = 587, security = \"starttls\" }]\n",
    )
    .await;
    let (_, _, doc) = get(
        &site.app,
        "/mail/config-v1.1.xml?emailaddress=joe%40example.org",
    )
    .await;
    let v = parse("thunderbird", &doc);
    let p = &v["clientConfig"]["emailProvider"][0];
    let incoming: Vec<(String, String, String)> = p["incomingServer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                s(&i["hostname"][0]).to_owned(),
                s(&i["port"][0]).to_owned(),
                s(&i["socketType"][0]).to_owned(),
            )
        })
        .collect();
    assert_eq!(
        incoming,
        [
            ("mail.example.org".into(), "995".into(), "SSL".into()),
            ("mail.example.org".into(), "110".into(), "STARTTLS".into())
        ]
    );
    let out = &p["outgoingServer"][0];
    assert_eq!(s(&out["hostname"][0]), "mail.example.org");
    assert_eq!(s(&out["port"][0]), "587");
    assert_eq!(s(&out["socketType"][0]), "STARTTLS");

    let (_, _, doc) = send(&site.app, autodiscover_request("joe@example.test", OUTLOOK)).await;
    let v = parse("outlook", &doc);
    let protocols = v["Autodiscover"]["Response"][0]["Account"][0]["Protocol"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(s(&protocols[0]["Server"][0]), "mail.example.org");
    assert_eq!(s(&protocols[0]["Port"][0]), "995");
    assert_eq!(s(&protocols[0]["SSL"][0]), "on");
    assert_eq!(s(&protocols[1]["Port"][0]), "587");

    let (_, _, doc) = get(&site.app, "/mobileconfig?emailaddress=joe%40example.test").await;
    let p = &parse("apple", &doc)["PayloadContent"][0];
    assert_eq!(p["IncomingMailServerHostName"], "mail.example.org");
    assert_eq!(p["IncomingMailServerPortNumber"], 995);
    assert_eq!(p["OutgoingMailServerPortNumber"], 587);

    let (_, _, page) = get(&site.app, "/help").await;
    assert!(
        page.contains("mail.example.org") && page.contains("Port 995</th>"),
        "{page}"
    );
    assert!(
        !page.contains(&format!("Port {}</th>", site.pop3[0])),
        "{page}"
    );
}
