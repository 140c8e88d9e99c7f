//! Client autoconfiguration: the documents mail programs fetch to set up an
//! account by themselves, made from [`ClientSettings`] (the running
//! configuration).
//!
//! | route | client | format |
//! |---|---|---|
//! | `GET /.well-known/autoconfig/mail/config-v1.1.xml`, `GET /mail/config-v1.1.xml` | Thunderbird (and K-9, FairEmail, Evolution) | `clientConfig` 1.1: `pop3` incoming servers, `smtp` outgoing servers with `<authentication>smtp-after-pop</authentication>` |
//! | `POST /autodiscover/autodiscover.xml` (also `Autodiscover/Autodiscover.xml`, `AutoDiscover/AutoDiscover.xml`) | Outlook | Autodiscover "POX" (`outlook/responseschema/2006a`): `POP3` and `SMTP` protocols, SPA off, SMTP `AuthRequired` off and `SMTPLast` on (log on to the incoming server before sending) |
//! | `GET /mobileconfig?emailaddress=` | iOS, macOS | configuration profile with one `com.apple.mail.managed` payload, `EmailTypePOP`, outgoing authentication `EmailAuthNone` |
//!
//! The login name offered is the address's local part (the mailbox name).
//! An address whose domain is not a local domain gets `404`; every local
//! part of a local domain gets the same document, so the answers do not
//! tell which users exist. No document carries a password.

use std::borrow::Cow;
use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::info;

use super::app::App;
use super::responses::not_found_page;
use crate::client_settings::{ClientSettings, Endpoint, Security};

/// The Outlook response schema we answer with.
const OUTLOOK_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";

/// The query of the GET documents.
#[derive(Deserialize, Debug, Default)]
pub(super) struct AddressQuery {
    emailaddress: Option<String>,
}

fn xml(body: String, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET …/config-v1.1.xml[?emailaddress=]`.
pub(super) async fn thunderbird(State(web): State<App>, Query(q): Query<AddressQuery>) -> Response {
    let s = ClientSettings::from_config(&web.ctx.config());
    let doc = match q.emailaddress.as_deref() {
        // Without an address: the document for every local domain.
        None => Some(thunderbird_config(&s, None)),
        Some(a) => s
            .local_domain_of(a)
            .map(|(_, domain)| thunderbird_config(&s, Some(domain))),
    };
    match doc {
        Some(d) => xml(d, "application/xml; charset=utf-8"),
        None => not_found_page(None),
    }
}

/// `POST /autodiscover/autodiscover.xml`.
pub(super) async fn outlook(State(web): State<App>, body: Bytes) -> Response {
    let s = ClientSettings::from_config(&web.ctx.config());
    let Some(request) = AutodiscoverRequest::parse(&body) else {
        info!("web: autodiscover request without an e-mail address");
        return (StatusCode::BAD_REQUEST, "Bad Autodiscover request").into_response();
    };
    if request
        .schema
        .as_deref()
        .is_some_and(|x| x != OUTLOOK_SCHEMA)
    {
        // Exchange ActiveSync and other schemas: not served here.
        return not_found_page(None);
    }
    match s.local_domain_of(&request.address) {
        Some((local, _)) => xml(
            outlook_response(&s, local),
            "application/xml; charset=utf-8",
        ),
        None => not_found_page(None),
    }
}

/// `GET /mobileconfig?emailaddress=`.
pub(super) async fn apple(State(web): State<App>, Query(q): Query<AddressQuery>) -> Response {
    let config = web.ctx.config();
    let s = ClientSettings::from_config(&config);
    let Some(address) = q.emailaddress.as_deref().map(str::trim) else {
        return not_found_page(None);
    };
    match s.local_domain_of(address) {
        Some((local, domain)) => {
            let fold_case = config.userdb.case_insensitive;
            let mut r = xml(
                apple_profile(&s, local, domain, fold_case),
                "application/x-apple-aspen-config",
            );
            r.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                header::HeaderValue::from_static("attachment; filename=\"mail.mobileconfig\""),
            );
            r
        }
        None => not_found_page(None),
    }
}

/// Thunderbird's `socketType`.
fn socket_type(s: Security) -> &'static str {
    match s {
        Security::ImplicitTls => "SSL",
        Security::StartTls => "STARTTLS",
        Security::None => "plain",
    }
}

/// The `clientConfig` document for `domain` (all local domains when `None`).
pub(crate) fn thunderbird_config(s: &ClientSettings, domain: Option<&str>) -> String {
    let id = domain
        .or(s.domains.first().map(String::as_str))
        .unwrap_or("");
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n");
    let _ = writeln!(out, "  <emailProvider id=\"{}\">", escape(id));
    let domains: Vec<&str> = match domain {
        Some(d) => vec![d],
        None => s.domains.iter().map(String::as_str).collect(),
    };
    for d in domains {
        let _ = writeln!(out, "    <domain>{}</domain>", escape(d));
    }
    let _ = writeln!(
        out,
        "    <displayName>{}</displayName>\n    <displayShortName>{}</displayShortName>",
        escape(&s.server),
        escape(id)
    );
    let server = |out: &mut String, tag: &str, kind: &str, e: &Endpoint, auth: &str, user: bool| {
        let _ = writeln!(out, "    <{tag} type=\"{kind}\">");
        let _ = writeln!(out, "      <hostname>{}</hostname>", escape(&s.server));
        let _ = writeln!(out, "      <port>{}</port>", e.port);
        let _ = writeln!(
            out,
            "      <socketType>{}</socketType>",
            socket_type(e.security)
        );
        if user {
            out.push_str("      <username>%EMAILLOCALPART%</username>\n");
        }
        let _ = writeln!(out, "      <authentication>{auth}</authentication>");
        let _ = writeln!(out, "    </{tag}>");
    };
    for e in &s.pop3 {
        server(
            &mut out,
            "incomingServer",
            "pop3",
            e,
            "password-cleartext",
            true,
        );
    }
    for e in &s.smtp {
        server(
            &mut out,
            "outgoingServer",
            "smtp",
            e,
            "smtp-after-pop",
            false,
        );
    }
    out.push_str("  </emailProvider>\n</clientConfig>\n");
    out
}

/// What an Autodiscover request asks for.
#[derive(Debug, PartialEq)]
pub(crate) struct AutodiscoverRequest {
    /// `Request/EMailAddress`.
    pub(crate) address: String,
    /// `Request/AcceptableResponseSchema`, if given.
    pub(crate) schema: Option<String>,
}

impl AutodiscoverRequest {
    /// Reads `EMailAddress` and `AcceptableResponseSchema` (any namespace
    /// prefix; entity and character references and CDATA resolved); `None`
    /// without an address, for a document that is not well-formed XML, or
    /// past 16 levels of nesting or 1 KiB of text in one element.
    pub(crate) fn parse(body: &[u8]) -> Option<AutodiscoverRequest> {
        let mut reader = quick_xml::Reader::from_reader(body);
        let mut depth = 0usize;
        // The text of the element being read: text, entity and character
        // references and CDATA come as separate events.
        let mut text = String::new();
        let mut address = None;
        let mut schema = None;
        loop {
            match reader.read_event().ok()? {
                Event::Start(_) => {
                    depth += 1;
                    if depth > 16 || text.len() > 1024 {
                        return None;
                    }
                    text.clear();
                }
                Event::End(e) => {
                    depth = depth.checked_sub(1)?;
                    let value = std::mem::take(&mut text).trim().to_owned();
                    match e.local_name().as_ref() {
                        b"EMailAddress" => address = Some(value),
                        b"AcceptableResponseSchema" => schema = Some(value),
                        _ => {}
                    }
                }
                Event::Text(t) => text.push_str(&t.xml10_content().ok()?),
                Event::CData(t) => text.push_str(std::str::from_utf8(&t).ok()?),
                Event::GeneralRef(r) => match r.resolve_char_ref().ok()? {
                    Some(c) => text.push(c),
                    None => text.push_str(resolve_predefined_entity(&r.decode().ok()?)?),
                },
                Event::Eof => break,
                _ => {}
            }
            if text.len() > 1024 {
                return None;
            }
        }
        Some(AutodiscoverRequest {
            address: address.filter(|a| !a.is_empty())?,
            schema,
        })
    }
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// Outlook's `Encryption`.
fn encryption(s: Security) -> &'static str {
    match s {
        Security::ImplicitTls => "SSL",
        Security::StartTls => "TLS",
        Security::None => "None",
    }
}

/// The Autodiscover response for the mailbox `local`.
pub(crate) fn outlook_response(s: &ClientSettings, local: &str) -> String {
    let mut out = String::new();
    out.push_str(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n",
    );
    let _ = writeln!(out, "  <Response xmlns=\"{OUTLOOK_SCHEMA}\">");
    out.push_str(
        "    <Account>\n      <AccountType>email</AccountType>\n      <Action>settings</Action>\n",
    );
    let protocol = |out: &mut String, kind: &str, e: Endpoint, rest: &str| {
        let _ = write!(
            out,
            "      <Protocol>\n        <Type>{kind}</Type>\n        <Server>{}</Server>\n        <Port>{}</Port>\n\
             {rest}        <SPA>off</SPA>\n        <SSL>{}</SSL>\n        <Encryption>{}</Encryption>\n      </Protocol>\n",
            escape(&s.server),
            e.port,
            on_off(e.security != Security::None),
            encryption(e.security),
        );
    };
    if let Some(e) = s.best_pop3() {
        let login = format!(
            "        <LoginName>{}</LoginName>\n        <DomainRequired>off</DomainRequired>\n        <AuthRequired>on</AuthRequired>\n",
            escape(local)
        );
        protocol(&mut out, "POP3", e, &login);
    }
    if let Some(e) = s.best_smtp() {
        // No SMTP AUTH; sending is allowed after a POP3 login (SMTPLast).
        protocol(
            &mut out,
            "SMTP",
            e,
            "        <AuthRequired>off</AuthRequired>\n        <UsePOPAuth>off</UsePOPAuth>\n        <SMTPLast>on</SMTPLast>\n",
        );
    }
    out.push_str("    </Account>\n  </Response>\n</Autodiscover>\n");
    out
}

/// A stable UUID for a payload: the same address gets the same profile
/// (installing it again replaces it instead of adding a second account).
fn payload_uuid(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    // RFC 9562 layout: version 8 (custom), variant 10.
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The reverse-DNS identifier prefix of our profiles.
fn reverse_dns(host: &str) -> String {
    host.split('.').rev().collect::<Vec<_>>().join(".")
}

/// The configuration profile for `local@domain`. Its UUIDs are made from the
/// address in lower case (only the domain's with `fold_case` false:
/// `[userdb] case_insensitive = false`), so that `Joe@Example.test` and
/// `joe@example.test`, one mailbox, get one profile: installing the other
/// replaces it rather than adding a second account.
pub(crate) fn apple_profile(
    s: &ClientSettings,
    local: &str,
    domain: &str,
    fold_case: bool,
) -> String {
    let address = format!("{local}@{domain}");
    let identity = if fold_case {
        address.to_lowercase()
    } else {
        format!("{local}@{}", domain.to_lowercase())
    };
    let id = format!("{}.mailbag", reverse_dns(&s.server));
    let key = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "      <key>{k}</key>\n      {v}");
    };
    let string = |v: &str| format!("<string>{}</string>", escape(v));
    let boolean = |b: bool| if b { "<true/>" } else { "<false/>" }.to_owned();
    let mut account = String::new();
    let a = &mut account;
    key(a, "EmailAccountDescription", &string(&address));
    key(a, "EmailAccountType", &string("EmailTypePOP"));
    key(a, "EmailAddress", &string(&address));
    // `Incoming…` and `Outgoing…`: the same four keys each.
    let server = |a: &mut String, side: &str, e: Endpoint, auth: &str| {
        key(a, &format!("{side}MailServerAuthentication"), &string(auth));
        key(a, &format!("{side}MailServerHostName"), &string(&s.server));
        let port = format!("<integer>{}</integer>", e.port);
        key(a, &format!("{side}MailServerPortNumber"), &port);
        let ssl = boolean(e.security != Security::None);
        key(a, &format!("{side}MailServerUseSSL"), &ssl);
    };
    if let Some(e) = s.best_pop3() {
        server(a, "Incoming", e, "EmailAuthPassword");
        key(a, "IncomingMailServerUsername", &string(local));
    }
    if let Some(e) = s.best_smtp() {
        server(a, "Outgoing", e, "EmailAuthNone");
    }
    key(
        a,
        "PayloadDisplayName",
        &string(&format!("Mail: {address}")),
    );
    key(
        a,
        "PayloadIdentifier",
        &string(&format!("{id}.email.{}", payload_uuid(&[&identity]))),
    );
    key(a, "PayloadType", &string("com.apple.mail.managed"));
    key(
        a,
        "PayloadUUID",
        &string(&payload_uuid(&["email", &identity])),
    );
    key(a, "PayloadVersion", "<integer>1</integer>");
    let top_uuid = payload_uuid(&["profile", &identity]);
    let display: Cow<'_, str> = escape(&s.server);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n<dict>\n  <key>PayloadContent</key>\n  <array>\n    <dict>\n{account}    </dict>\n  </array>\n\
         \x20 <key>PayloadDisplayName</key>\n  <string>Mail ({display})</string>\n\
         \x20 <key>PayloadIdentifier</key>\n  <string>{id}.{top_uuid}</string>\n\
         \x20 <key>PayloadRemovalDisallowed</key>\n  <false/>\n\
         \x20 <key>PayloadType</key>\n  <string>Configuration</string>\n\
         \x20 <key>PayloadUUID</key>\n  <string>{top_uuid}</string>\n\
         \x20 <key>PayloadVersion</key>\n  <integer>1</integer>\n</dict>\n</plist>\n",
        id = escape(&id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autodiscover_requests_with_prefixes_entities_and_cdata() {
        let plain = br#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>joe@example.test</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"#;
        let r = AutodiscoverRequest::parse(plain).unwrap();
        assert_eq!(r.address, "joe@example.test");
        assert_eq!(r.schema.as_deref(), Some(OUTLOOK_SCHEMA));
        let prefixed = br#"<a:Autodiscover xmlns:a="x"><a:Request><a:EMailAddress> j&amp;o@example.test </a:EMailAddress></a:Request></a:Autodiscover>"#;
        let r = AutodiscoverRequest::parse(prefixed).unwrap();
        assert_eq!(r.address, "j&o@example.test");
        assert_eq!(r.schema, None);
        let cdata = b"<Autodiscover><Request><EMailAddress><![CDATA[joe@example.test]]></EMailAddress></Request></Autodiscover>";
        assert_eq!(
            AutodiscoverRequest::parse(cdata).unwrap().address,
            "joe@example.test"
        );
        for bad in [
            &b""[..],
            b"<Autodiscover><Request></Request></Autodiscover>",
            b"<Autodiscover><Request><EMailAddress>joe@example.test</Wrong></Request>",
            b"\xff\xfe<",
        ] {
            assert_eq!(AutodiscoverRequest::parse(bad), None, "{bad:?}");
        }
        // Deep nesting is refused, not followed.
        let deep = "<a>".repeat(100);
        assert_eq!(AutodiscoverRequest::parse(deep.as_bytes()), None);
    }

    #[test]
    fn payload_uuids_are_stable_and_well_formed() {
        let a = payload_uuid(&["email", "joe@example.test"]);
        assert_eq!(a, payload_uuid(&["email", "joe@example.test"]));
        assert_ne!(a, payload_uuid(&["email", "ann@example.test"]));
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert_eq!(&a[14..15], "8");
    }
}
