//! The recipient decision of the SMTP listeners: local delivery, relay, or
//! refusal. This is where "no open relay" is decided.
//!
//! The decision works on the **final destination** as `smtp-proto` resolves
//! it: a source route (`@a,@b:user@c`) is ignored, the domain is normalised
//! (lower case, trailing dot stripped), address literals (`[1.2.3.4]`) are
//! recognised. Local parts are never interpreted as routes: a local part
//! holding `%`, `!` or a quoted `@` never matches a user (user names cannot
//! contain them), so at a local domain it is an unknown user (`550 5.1.1`),
//! and at any other domain it is relaying. Address literals are never local.
//! Relaying needs the client address to be authorized (POP-before-SMTP).
//!
//! # Examples
//!
//! ```
//! use mailbagd::config::Config;
//! use mailbagd::relay::{Destination, Verdict, decide};
//! use mailbag_smtp_proto::address::parse_forward_path;
//!
//! let config = Config::from_toml_str(
//!     "local_domains = [\"example.test\"]\n[[users]]\nname = \"joe\"\npassword = \"x\"\n",
//! ).unwrap();
//! fn rcpt(s: &str) -> mailbag_smtp_proto::address::ForwardPath<'_> {
//!     parse_forward_path(s.as_bytes()).unwrap().0
//! }
//!
//! let joe = mailbag_mailstore::UserName::new("joe").unwrap();
//! let v = decide(&config, &rcpt("<JOE@Example.TEST.>"), false);
//! assert_eq!(v, Verdict::Accept(Destination::Local(joe)));
//! // The percent hack does not make a local domain relay.
//! let Verdict::Reject(r) = decide(&config, &rcpt("<joe%evil.example@example.test>"), false)
//! else { panic!() };
//! assert_eq!(r.code().get(), 550);
//! // A remote address needs an authorized client.
//! let Verdict::Reject(r) = decide(&config, &rcpt("<x@elsewhere.example>"), false)
//! else { panic!() };
//! assert_eq!(r.code().get(), 554);
//! assert_eq!(decide(&config, &rcpt("<x@elsewhere.example>"), true),
//!     Verdict::Accept(Destination::Remote));
//! ```

use mailbag_mailstore::UserName;
use mailbag_smtp_proto::address::{ForwardPath, Host};
use mailbag_smtp_proto::types::Reply;

use crate::config::Config;
use crate::replies;

/// Where an accepted recipient goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Deliver to this configured user.
    Local(UserName),
    /// Relay: into the relay queue.
    Remote,
}

/// The answer to a `RCPT TO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Accept (`250`).
    Accept(Destination),
    /// Refuse with this reply.
    Reject(Reply<'static>),
}

/// Decides a recipient. `authorized`: the client address may relay
/// (a recent POP3 login from it).
pub fn decide(config: &Config, rcpt: &ForwardPath<'_>, authorized: bool) -> Verdict {
    let path = match rcpt {
        // Bare <postmaster>: this host's postmaster (RFC 5321 4.1.1.3).
        ForwardPath::Postmaster(_) => {
            return Verdict::Accept(Destination::Local(config.postmaster.clone()));
        }
        ForwardPath::Path(p) => p,
    };
    let mailbox = path.mailbox();
    let (local_domain, own_name) = match mailbox.host() {
        Host::Domain(d) => (
            config.is_local_domain(d),
            d.normalized() == config.hostname.normalized(),
        ),
        // Address literals are never treated as local.
        Host::Literal(_) => (false, false),
    };
    // `postmaster` at one of ours, and at this host's own name (the name it
    // greets with, and signs its digests and bounces with) even when that
    // name is not one of `local_domains` (RFC 5321 4.5.1; other addresses
    // there stay remote).
    let lp = mailbox.local_part();
    let content = lp.content();
    let postmaster = !lp.has_routing_operator() && content.eq_ignore_ascii_case("postmaster");
    if postmaster && (local_domain || own_name) {
        return Verdict::Accept(Destination::Local(config.postmaster.clone()));
    }
    if local_domain {
        if lp.has_routing_operator() {
            return Verdict::Reject(replies::unknown_user(rcpt));
        }
        return match config.user(&content) {
            Some(u) => Verdict::Accept(Destination::Local(u.name.clone())),
            // A user whose passwd-file line cannot be used now: a local fault.
            None if config.is_unusable_user(&content) => {
                Verdict::Reject(replies::account_unusable())
            }
            None => Verdict::Reject(replies::unknown_user(rcpt)),
        };
    }
    if authorized {
        Verdict::Accept(Destination::Remote)
    } else {
        Verdict::Reject(replies::relay_denied(rcpt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailbag_smtp_proto::address::parse_forward_path;

    fn config() -> Config {
        Config::from_toml_str(
            "local_domains = [\"example.test\", \"mail.example.test\"]\n\
             [[users]]\nname = \"joe\"\npassword = \"x\"\n\
             [[users]]\nname = \"ann\"\npassword = \"y\"\n",
        )
        .unwrap()
    }

    fn verdict(addr: &str, authorized: bool) -> Option<Verdict> {
        let (fp, _) = parse_forward_path(addr.as_bytes()).ok()?;
        Some(decide(&config(), &fp, authorized))
    }

    fn local(user: &str) -> Option<Verdict> {
        Some(Verdict::Accept(Destination::Local(
            UserName::new(user).ok()?,
        )))
    }

    /// The reply code and enhanced status of a refusal.
    fn refusal(v: &Option<Verdict>) -> Option<(u16, String)> {
        match v {
            Some(Verdict::Reject(r)) => Some((
                r.code().get(),
                r.enhanced()
                    .map(|e| format!("{}.{}.{}", e.class(), e.subject(), e.detail()))?,
            )),
            _ => None,
        }
    }

    #[test]
    fn local_users_from_anyone() {
        assert_eq!(verdict("<joe@example.test>", false), local("joe"));
        assert_eq!(verdict("<Ann@MAIL.example.test>", false), local("ann"));
        assert_eq!(verdict("<joe@example.test.>", false), local("joe"));
        assert_eq!(verdict("<\"joe\"@example.test>", false), local("joe"));
        assert_eq!(
            verdict("<@relay.example:joe@example.test>", false),
            local("joe")
        );
    }

    #[test]
    fn postmaster_is_always_accepted_locally() {
        assert_eq!(verdict("<postmaster>", false), local("joe"));
        assert_eq!(verdict("<Postmaster@example.test>", false), local("joe"));
        // ...but not the postmaster of another domain.
        assert_eq!(
            refusal(&verdict("<postmaster@elsewhere.example>", false)),
            Some((554, "5.7.1".into()))
        );
    }

    /// A probe: the demo configuration greets as `mail.example.test`, signs
    /// its digests `postmaster@mail.example.test`, and refused mail to it
    /// as relaying because the name was not one of `local_domains`.
    #[test]
    fn the_postmaster_of_the_host_name_is_local_though_the_name_is_not() {
        let c = Config::from_toml_str(
            "hostname = \"mx.example.net\"\nlocal_domains = [\"example.test\"]\n\
             [[users]]\nname = \"joe\"\npassword = \"x\"\n",
        )
        .unwrap();
        let v = |a: &str| decide(&c, &parse_forward_path(a.as_bytes()).unwrap().0, false);
        assert_eq!(
            Some(v("<PostMaster@MX.example.net.>")),
            local("joe"),
            "case and a trailing dot"
        );
        for other in [
            "<joe@mx.example.net>",
            "<postmaster%elsewhere.example@mx.example.net>",
            "<postmaster@sub.mx.example.net>",
        ] {
            assert_eq!(
                refusal(&Some(v(other))),
                Some((554, "5.7.1".into())),
                "{other}"
            );
        }
    }

    #[test]
    fn unknown_local_users_get_550() {
        for a in [
            "<nobody@example.test>",
            "<joe%elsewhere.example@example.test>",
            "<elsewhere.example!joe@example.test>",
            "<\"joe@elsewhere.example\"@example.test>",
            "<joe!x@example.test>",
        ] {
            let v = verdict(a, false);
            // The parser may refuse some forms outright: also not a relay.
            if v.is_some() {
                assert_eq!(refusal(&v), Some((550, "5.1.1".into())), "{a}: {v:?}");
            }
        }
    }

    /// Relay-tester tricks from an unauthorized client: none may be accepted
    /// for a remote destination.
    #[test]
    fn no_address_trick_makes_an_open_relay() {
        let tricks = [
            "<victim@elsewhere.example>",
            "<victim@ELSEWHERE.example.>",
            "<victim%elsewhere.example@[127.0.0.1]>",
            "<victim@[127.0.0.1]>",
            "<victim@[IPv6:::1]>",
            "<@example.test:victim@elsewhere.example>",
            "<@example.test,@mail.example.test:victim@elsewhere.example>",
            "<\"victim@elsewhere.example\"@[127.0.0.1]>",
            "<elsewhere.example!victim@[127.0.0.1]>",
            "<victim@elsewhere.example@example.test>",
            "<victim@example.test@elsewhere.example>",
            "<victim%elsewhere.example%example.test@elsewhere.example>",
            "<\"victim%elsewhere.example\"@elsewhere.example>",
            "<victim@example.test.elsewhere.example>",
            "<victim@sub.example.test>",
            "<victim@example.test..>",
            "<victim@example.test:25>",
        ];
        for t in tricks {
            match verdict(t, false) {
                None => {}
                Some(Verdict::Accept(Destination::Remote)) => panic!("{t}: open relay"),
                Some(Verdict::Accept(Destination::Local(u))) => {
                    panic!("{t}: delivered locally to {u}")
                }
                Some(Verdict::Reject(r)) => {
                    let code = r.code().get();
                    assert!(code == 554 || code == 550, "{t}: {code}")
                }
            }
        }
    }

    #[test]
    fn remote_allowed_when_authorized() {
        assert_eq!(
            verdict("<x@elsewhere.example>", true),
            Some(Verdict::Accept(Destination::Remote))
        );
        assert_eq!(
            verdict("<x@[192.0.2.1]>", true),
            Some(Verdict::Accept(Destination::Remote))
        );
        // Local recipients stay local for authorized clients too.
        assert_eq!(verdict("<joe@example.test>", true), local("joe"));
        assert_eq!(
            refusal(&verdict("<nobody@example.test>", true)),
            Some((550, "5.1.1".into()))
        );
    }

    #[test]
    fn relay_refusal_text_names_the_recipient() {
        let Some(Verdict::Reject(r)) = verdict("<x@elsewhere.example>", false) else {
            panic!()
        };
        assert_eq!(r.lines(), ["<x@elsewhere.example>: Relay access denied"]);
        assert_eq!(
            refusal(&Some(Verdict::Reject(r))),
            Some((554, "5.7.1".into()))
        );
    }
}
