//! The settings a mail client needs for this server, taken from the running
//! configuration: incoming (POP3) and outgoing (SMTP) server name, ports and
//! their security, how sending is authorized (POP-before-SMTP, no SMTP
//! authentication), the login name, and the Spam folder's rules.
//!
//! One model for everything that tells users or their clients how to
//! connect: the help page (`GET /help`) and the autoconfiguration documents
//! for Thunderbird, Outlook and Apple devices (the web page's `help` and
//! `autoconfig`, which use this module; it uses none above the configuration).

use std::time::Duration;

use mailbag_smtp_proto::address::Mailbox;
use mailbag_spam_tag::{Score, TagValues, Template};

use crate::config::Config;

/// The Subject tag of a message that scored 7.3, as `[spam] tag_template`
/// makes it (`**SPAM( 7.3)**` by default).
pub fn tag_example(config: &Config) -> String {
    match Template::new(&config.spam.tag_template) {
        Ok(t) => t.render(&TagValues::new(
            Score::from_tenths(73),
            Score::saturating(config.spam.threshold),
            &[],
        )),
        Err(_) => config.spam.tag_template.clone(),
    }
}

pub use crate::client_endpoint::{Endpoint, Security};

/// What a mail client needs to know, from the configuration.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ClientSettings {
    /// The server name for incoming and outgoing mail (`[client_settings]
    /// server`, else `hostname`).
    pub server: String,
    /// The domains whose addresses are served here (`local_domains`).
    pub domains: Vec<String>,
    /// POP3 ports, the most secure first (implicit TLS, then STLS), or as
    /// `[client_settings] pop3` lists them.
    pub pop3: Vec<Endpoint>,
    /// SMTP ports for sending, best first: submission with implicit TLS
    /// (465 role), submission (587 role); the port-25 role only when there
    /// is neither; or as `[client_settings] smtp` lists them.
    pub smtp: Vec<Endpoint>,
    /// How long a POP3 login authorizes sending from the same address
    /// (`[pop_before_smtp] window`).
    pub relay_window: Duration,
    /// How long spam stays in the Spam folder (`[spam] spam_retention`).
    pub spam_retention: Duration,
    /// The login suffix that opens the Spam folder over POP3 (`""`: off).
    pub spam_login_suffix: String,
    /// The subject tag of spam, as it appears (`**SPAM( 7.3)**`).
    pub tag_example: String,
}

impl ClientSettings {
    /// The settings of `config`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbagd::client_settings::{ClientSettings, Security};
    /// use mailbagd::config::Config;
    ///
    /// let config = Config::from_toml_str(
    ///     "hostname = \"mail.example.test\"\n[pop3]\nlisten = [\"0.0.0.0:110\", \"[::]:110\"]\n\
    ///      [smtp]\nsubmission_listen = [\"0.0.0.0:587\"]\n[[users]]\nname = \"joe\"\npassword = \"x\"\n",
    /// )
    /// .unwrap();
    /// let s = ClientSettings::from_config(&config);
    /// assert_eq!(s.server, "mail.example.test");
    /// assert_eq!(s.pop3.len(), 1, "one entry per port");
    /// assert_eq!((s.pop3[0].port, s.pop3[0].security), (110, Security::None));
    /// assert_eq!(s.smtp[0].port, 587);
    /// ```
    pub fn from_config(config: &Config) -> ClientSettings {
        let starttls = if config.tls.is_some() {
            Security::StartTls
        } else {
            Security::None
        };
        let endpoints = |lists: &[(&[std::net::SocketAddr], Security)]| {
            let mut out: Vec<Endpoint> = Vec::new();
            for (addrs, security) in lists {
                for a in addrs.iter() {
                    if !out.iter().any(|e| e.port == a.port()) {
                        out.push(Endpoint {
                            port: a.port(),
                            security: *security,
                        });
                    }
                }
            }
            out
        };
        let pop3 = endpoints(&[
            (&config.pop3.tls_listen, Security::ImplicitTls),
            (&config.pop3.listen, starttls),
        ]);
        // Mail programs submit on 465 or 587 (RFC 8314 3.3, RFC 6409); the
        // port-25 role is given only when there is neither (access networks
        // often block port 25).
        let mut smtp = endpoints(&[
            (&config.smtp.tls_listen, Security::ImplicitTls),
            (&config.smtp.submission_listen, starttls),
        ]);
        if smtp.is_empty() {
            smtp = endpoints(&[(&config.smtp.listen, starttls)]);
        }
        let overrides = &config.client_settings;
        let pop3 = overrides.pop3.clone().unwrap_or(pop3);
        let smtp = overrides.smtp.clone().unwrap_or(smtp);
        ClientSettings {
            server: overrides
                .server
                .as_ref()
                .unwrap_or(&config.hostname)
                .as_str()
                .to_owned(),
            domains: config
                .local_domains
                .iter()
                .map(|d| d.as_str().to_owned())
                .collect(),
            pop3,
            smtp,
            relay_window: config.pop_before_smtp.window,
            spam_retention: config.spam.spam_retention,
            spam_login_suffix: config.pop3.spam_login_suffix.clone(),
            tag_example: tag_example(config),
        }
    }

    /// The POP3 port a client should use (the first of [`Self::pop3`]).
    pub fn best_pop3(&self) -> Option<Endpoint> {
        self.pop3.first().copied()
    }

    /// The SMTP port a client should use (the first of [`Self::smtp`]).
    pub fn best_smtp(&self) -> Option<Endpoint> {
        self.smtp.first().copied()
    }

    /// The local domain of `address` (`local@domain`, domain in any letter
    /// case), if it is one of ours, in its configured spelling. Every local
    /// part is answered alike, so that the answer does not tell which users
    /// exist.
    ///
    /// ```
    /// # use mailbagd::{client_settings::ClientSettings, config::Config};
    /// # let config = Config::from_toml_str("local_domains = [\"example.test\"]\n[[users]]\nname = \"joe\"\npassword = \"x\"\n").unwrap();
    /// let s = ClientSettings::from_config(&config);
    /// assert_eq!(s.local_domain_of("anyone@Example.TEST"), Some(("anyone", "example.test")));
    /// assert_eq!(s.local_domain_of("joe@elsewhere.test"), None);
    /// assert_eq!(s.local_domain_of("joe"), None);
    /// // Not addresses, or not a user's (a user name is an ASCII dot-atom):
    /// for bad in ["a@b@example.test", "..@example.test", "a b@example.test",
    ///             "<script>@example.test", "\"joe\"@example.test", "@example.test"] {
    ///     assert_eq!(s.local_domain_of(bad), None, "{bad}");
    /// }
    /// ```
    pub fn local_domain_of<'a>(&'a self, address: &'a str) -> Option<(&'a str, &'a str)> {
        let (local, domain) = address.trim().rsplit_once('@')?;
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if local.is_empty() || local.len() > 64 {
            return None;
        }
        let mailbox = format!("{local}@{domain}");
        let mailbox = Mailbox::try_from(mailbox.as_str()).ok()?;
        if mailbox.local_part().is_quoted() || !mailbox.is_ascii() {
            return None;
        }
        self.domains
            .iter()
            .find(|d| d.eq_ignore_ascii_case(domain))
            .map(|d| (local, d.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str) -> ClientSettings {
        let config = Config::from_toml_str(&format!(
            "hostname = \"mail.example.test\"\nlocal_domains = [\"example.test\", \"example.org\"]\n{extra}\n\
             [[users]]\nname = \"joe\"\npassword = \"x\"\n"
        ))
        .unwrap();
        ClientSettings::from_config(&config)
    }

    #[test]
    fn ports_follow_the_listeners() {
        let s = settings("");
        assert_eq!(
            s.pop3,
            [Endpoint {
                port: 1110,
                security: Security::None
            }]
        );
        // The port-25 role (2525) is not given: there is a submission port.
        assert_eq!(s.smtp.iter().map(|e| e.port).collect::<Vec<_>>(), [5870]);
        assert_eq!(s.tag_example, "**SPAM( 7.3)**");
        assert_eq!(s.spam_login_suffix, "/Spam");
        let s = settings(
            "[pop3]\nlisten = [\"127.0.0.1:110\"]\n[spam]\nspam_retention = \"3d\"\n\
             [pop_before_smtp]\nwindow = \"10m\"\n",
        );
        assert_eq!(s.best_pop3().map(|e| e.port), Some(110));
        assert_eq!(s.spam_retention, Duration::from_secs(3 * 86400));
        assert_eq!(s.relay_window, Duration::from_secs(600));
        assert_eq!(s.domains, ["example.test", "example.org"]);
    }

    /// A probe: the demo's host name does not resolve, and a client set up
    /// from its autoconfiguration could reach nothing.
    #[test]
    fn the_demo_gives_clients_the_loopback_address_it_listens_on() {
        let demo = Config::from_toml_str(crate::config::DEMO_CONFIG).unwrap();
        let s = ClientSettings::from_config(&demo);
        assert_eq!(s.server, "127.0.0.1");
        assert!(demo.pop3.listen.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn tls_listeners_come_first_and_plain_ones_offer_starttls() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, "").unwrap();
        std::fs::write(&key, "").unwrap();
        let s = settings(&format!(
            "[tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n\
             [pop3]\nlisten = [\"0.0.0.0:110\"]\ntls_listen = [\"0.0.0.0:995\", \"[::]:995\"]\n\
             [smtp]\nlisten = [\"0.0.0.0:25\"]\nsubmission_listen = [\"0.0.0.0:587\"]\n\
             tls_listen = [\"0.0.0.0:465\"]\n"
        ));
        let ports = |v: &[Endpoint]| v.iter().map(|e| (e.port, e.security)).collect::<Vec<_>>();
        assert_eq!(
            ports(&s.pop3),
            [(995, Security::ImplicitTls), (110, Security::StartTls)]
        );
        assert_eq!(
            ports(&s.smtp),
            [(465, Security::ImplicitTls), (587, Security::StartTls)]
        );
        let only_25 = settings("[smtp]\nlisten = [\"0.0.0.0:25\"]\nsubmission_listen = []\n");
        assert_eq!(
            ports(&only_25.smtp),
            [(25, Security::None)],
            "the port-25 role when there is nothing else"
        );
    }

    #[test]
    fn client_settings_replace_the_name_and_the_ports() {
        let s = settings(
            "[client_settings]\nserver = \"mx.example.org\"\n\
             pop3 = [{ port = 995, security = \"tls\" }]\n",
        );
        assert_eq!(s.server, "mx.example.org");
        assert_eq!(
            s.pop3,
            [Endpoint {
                port: 995,
                security: Security::ImplicitTls
            }]
        );
        // Left out, a list follows the listeners.
        assert_eq!(s.best_smtp().map(|e| e.port), Some(5870));
        for (bad, key) in [
            ("server = \"not a name\"", "client_settings.server"),
            ("pop3 = []", "client_settings.pop3"),
            (
                "smtp = [{ port = 0, security = \"none\" }]",
                "client_settings.smtp",
            ),
            (
                "smtp = [{ port = 25, security = \"ssl\" }]",
                "client_settings.smtp",
            ),
            ("ports = 1", "ports"),
        ] {
            let e = Config::from_toml_str(&format!(
                "[client_settings]\n{bad}\n[[users]]\nname = \"joe\"\npassword = \"x\"\n"
            ))
            .unwrap_err();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
    }
}
