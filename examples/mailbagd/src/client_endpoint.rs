//! One port a mail client can use, and how it is secured: what the help page
//! and the autoconfiguration documents name, from the listeners or from
//! `[client_settings]` (a load balancer's ports).

/// How a port is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Security {
    /// TLS from the first octet (ports 995 and 465).
    ImplicitTls,
    /// Plain, upgraded with STLS / STARTTLS before the login.
    StartTls,
    /// No TLS offered.
    None,
}

impl Security {
    /// Words for the help page.
    pub fn describe(self) -> &'static str {
        match self {
            Security::ImplicitTls => "SSL/TLS",
            Security::StartTls => "STARTTLS",
            Security::None => "None",
        }
    }

    /// The word `[client_settings]` uses: `tls`, `starttls` or `none`.
    pub fn from_config_word(word: &str) -> Option<Security> {
        match word {
            "tls" => Some(Security::ImplicitTls),
            "starttls" => Some(Security::StartTls),
            "none" => Some(Security::None),
            _ => None,
        }
    }
}

/// One port a client can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The TCP port.
    pub port: u16,
    /// Its security.
    pub security: Security,
}
