//! A table of valid and invalid reverse- and forward-paths with the expected result.

use mailbag_smtp_proto::address::{
    AddressError, ForwardPath, ReversePath, parse_forward_path, parse_reverse_path,
};

#[derive(Debug, Clone, Copy)]
enum Ctx {
    /// `MAIL FROM` (reverse-path).
    R,
    /// `RCPT TO` (forward-path).
    F,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// Valid: normalised final domain, routing operator, postmaster, ASCII.
    V(&'static str, bool, bool, bool),
    /// The null path.
    Null,
    /// Bare `<postmaster>`.
    Pm,
    /// Parsed, but these octets follow the path.
    Rest(&'static [u8]),
    /// Refused.
    E(AddressError),
}

use AddressError::*;
use Ctx::*;
use Want::*;

/// Shorthand: valid ASCII, no routing operator, not postmaster.
const fn ok(d: &'static str) -> Want {
    V(d, false, false, true)
}

fn table() -> Vec<(Vec<u8>, Ctx, Want)> {
    let s = |x: &str| x.as_bytes().to_vec();
    let mut t: Vec<(Vec<u8>, Ctx, Want)> = vec![
        // Plain forms.
        (s("<user@example.com>"), F, ok("example.com")),
        (s("<User@Example.COM>"), F, ok("example.com")),
        (s("<user@example.com.>"), F, ok("example.com")),
        (s("<first.last@example.com>"), F, ok("example.com")),
        (s("<a@b>"), F, ok("b")),
        (s("<user+tag@example.com>"), F, ok("example.com")),
        (s("<a.b.c@d.e.f>"), F, ok("d.e.f")),
        (s("<user@localhost>"), F, ok("localhost")),
        (s("<a@1.2.3.4>"), F, ok("1.2.3.4")),
        (s("<a@a-b.c>"), F, ok("a-b.c")),
        (s("<a@a--b.c>"), F, ok("a--b.c")),
        (
            s("<user@xn--bcher-kva.example>"),
            F,
            ok("xn--bcher-kva.example"),
        ),
        (s("<#$&'*+-/=?^_`{|}~@example.com>"), F, ok("example.com")),
        (s("<user@example.com>"), R, ok("example.com")),
        // Routing operators (percent hack, bang path, quoted @).
        (
            s("<!#$&'*+-/=?^_`{|}~@example.com>"),
            F,
            V("example.com", true, false, true),
        ),
        (
            s("<user%other.example@example.com>"),
            F,
            V("example.com", true, false, true),
        ),
        (
            s("<other.example!user@example.com>"),
            F,
            V("example.com", true, false, true),
        ),
        (
            s("<\"user@other.example\"@example.com>"),
            F,
            V("example.com", true, false, true),
        ),
        (
            s("<\"user%other\"@Example.com.>"),
            F,
            V("example.com", true, false, true),
        ),
        (s("<a%b%c@d.e>"), F, V("d.e", true, false, true)),
        // Quoted local parts and quoted pairs.
        (s("<\"john doe\"@example.com>"), F, ok("example.com")),
        (s("<\"john\\\"doe\"@example.com>"), F, ok("example.com")),
        (s("<\"a\\\\b\"@example.com>"), F, ok("example.com")),
        (s("<\"\"@example.com>"), F, ok("example.com")),
        (s("<\" \"@example.com>"), F, ok("example.com")),
        (s("<\"quoted.dot.\"@x.y>"), F, ok("x.y")),
        (s("<\"\\\\\\\"\"@x.y>"), F, ok("x.y")),
        (s("<\"a b\"@[127.0.0.1]>"), F, ok("[127.0.0.1]")),
        (s("<\"a>b\"@c.d>"), F, ok("c.d")),
        // Source routes: parsed, ignored for the final domain.
        (s("<@relay.example:user@example.com>"), F, ok("example.com")),
        (
            s("<@a.example,@b.example:user@example.com>"),
            F,
            ok("example.com"),
        ),
        (s("<@a:b@c>"), F, ok("c")),
        (s("<@a:u@b>"), R, ok("b")),
        (
            s("<@Relay.Example.:u@Local.Example>"),
            F,
            ok("local.example"),
        ),
        // Address literals.
        (s("<user@[192.0.2.1]>"), F, ok("[192.0.2.1]")),
        (s("<user@[IPv6:2001:db8::1]>"), F, ok("[ipv6:2001:db8::1]")),
        (s("<user@[ipv6:::1]>"), F, ok("[ipv6:::1]")),
        (
            s("<user@[IPv6:2001:DB8:0:0:0:0:0:1]>"),
            F,
            ok("[ipv6:2001:db8::1]"),
        ),
        (
            s("<user@[IPv6:::ffff:192.0.2.1]>"),
            F,
            ok("[ipv6:::ffff:192.0.2.1]"),
        ),
        (s("<user@[x-tag:abc]>"), F, ok("[x-tag:abc]")),
        // Postmaster.
        (s("<postmaster>"), F, Pm),
        (s("<Postmaster>"), F, Pm),
        (s("<POSTMASTER>"), F, Pm),
        (
            s("<postmaster@example.com>"),
            F,
            V("example.com", false, true, true),
        ),
        (
            s("<Postmaster@Example.com>"),
            F,
            V("example.com", false, true, true),
        ),
        (
            s("<\"postmaster\"@example.com>"),
            F,
            V("example.com", false, true, true),
        ),
        (s("<postmaster>"), R, E(MissingDomain)),
        (s("<postmaster@>"), F, E(Domain)),
        (s("<Postmaster >"), F, E(LocalPart)),
        // Null path.
        (s("<>"), R, Null),
        (s("<>"), F, E(NullNotAllowed)),
        (s("<>>>>"), R, Rest(b">>>")),
        (s("<>>"), R, Rest(b">")),
        (s("<> SIZE=10"), R, Rest(b" SIZE=10")),
        // UTF-8 (SMTPUTF8): accepted by the parser, flagged non-ASCII.
        (
            s("<üser@exämple.com>"),
            F,
            V("exämple.com", false, false, false),
        ),
        (
            s("<user@EXÄMPLE.com>"),
            F,
            V("exämple.com", false, false, false),
        ),
        (s("<é@b.c>"), F, V("b.c", false, false, false)),
        (s("<a@é.fr>"), F, V("é.fr", false, false, false)),
        (s("<\"ü x\"@b.c>"), F, V("b.c", false, false, false)),
        (b"<a@b\xff>".to_vec(), F, E(InvalidUtf8)),
        (b"<\xc3@b.c>".to_vec(), F, E(InvalidUtf8)),
        (b"<a\xe2\x82@b.c>".to_vec(), R, E(InvalidUtf8)),
        // Brackets.
        (s("user@example.com"), F, E(MissingOpenBracket)),
        (s("user@example.com>"), F, E(MissingOpenBracket)),
        (s(" <user@example.com>"), F, E(MissingOpenBracket)),
        (s(""), R, E(MissingOpenBracket)),
        (s("<user@example.com"), F, E(Unbalanced)),
        (s("<"), R, E(Unbalanced)),
        (s("<<user@example.com>>"), F, E(Unbalanced)),
        (s("<user@example.com>>"), F, Rest(b">")),
        (s("<a@b.c>x"), F, Rest(b"x")),
        (s("<a@b.c> "), F, Rest(b" ")),
        // Quotes.
        (s("<\"user@example.com>"), F, E(UnbalancedQuote)),
        (s("<user\"@example.com>"), F, E(UnbalancedQuote)),
        (s("<\"a\\\"@b.c>"), F, E(UnbalancedQuote)),
        (s("<\"a\"b@c.d>"), F, E(LocalPart)),
        (s("<a\"b\"@c.d>"), F, E(LocalPart)),
        (s("<\"\\é\"@b.c>"), F, E(LocalPart)),
        // Bad local parts.
        (s("<us er@example.com>"), F, E(LocalPart)),
        (s("<user.@example.com>"), F, E(LocalPart)),
        (s("<.user@example.com>"), F, E(LocalPart)),
        (s("<us..er@example.com>"), F, E(LocalPart)),
        (s("<a\\b@c.d>"), F, E(LocalPart)),
        (s("<a(comment)@b.c>"), F, E(LocalPart)),
        (s("< a@b.c>"), F, E(LocalPart)),
        (s("<a,b@c.d>"), F, E(LocalPart)),
        (s("<user>"), F, E(MissingDomain)),
        (s("<\"\">"), F, E(MissingDomain)),
        // Bad domains.
        (s("<user@exa mple.com>"), F, E(Domain)),
        (s("<user@@example.com>"), F, E(Domain)),
        (s("<user@>"), F, E(Domain)),
        (s("<user@-example.com>"), F, E(Domain)),
        (s("<user@example-.com>"), F, E(Domain)),
        (s("<user@exa_mple.com>"), F, E(Domain)),
        (s("<user@example..com>"), F, E(Domain)),
        (s("<user@.example.com>"), F, E(Domain)),
        (s("<user@example.com..>"), F, E(Domain)),
        (s("<a@b:c>"), F, E(Domain)),
        (s("<a@b,c>"), F, E(Domain)),
        (s("<a@b.c(comment)>"), F, E(Domain)),
        (s("<a@ b.c>"), F, E(Domain)),
        (s("<a@b.c >"), F, E(Domain)),
        (b"<a@b\0c>".to_vec(), F, E(Domain)),
        // Bad address literals.
        (s("<user@[1.2.3]>"), F, E(AddressLiteral)),
        (s("<user@[256.1.1.1]>"), F, E(AddressLiteral)),
        (s("<user@[IPv6:zz::1]>"), F, E(AddressLiteral)),
        (s("<user@[IPv6:1.2.3.4]>"), F, E(AddressLiteral)),
        (s("<user@[]>"), F, E(AddressLiteral)),
        (s("<user@[1.2.3.4>"), F, E(AddressLiteral)),
        (s("<user@[tag:]>"), F, E(AddressLiteral)),
        (s("<user@[-tag:x]>"), F, E(AddressLiteral)),
        (s("<a@[IPv6:::1%eth0]>"), F, E(AddressLiteral)),
        (s("<a@[192.0.2.1].>"), F, E(AddressLiteral)),
        // Bad source routes.
        (s("<@example.com>"), F, E(SourceRoute)),
        (s("<@:user@example.com>"), F, E(SourceRoute)),
        (s("<@a,user@example.com>"), F, E(SourceRoute)),
        (s("<@a:@b:user@c>"), F, E(LocalPart)),
        (s("<@a_b:user@c>"), R, E(SourceRoute)),
    ];
    // Octet length limits: local part 64, label 63, path 256.
    let l64 = "a".repeat(64);
    let l65 = "a".repeat(65);
    t.push((format!("<{l64}@b.c>").into_bytes(), F, ok("b.c")));
    t.push((format!("<{l65}@b.c>").into_bytes(), F, E(LocalPartTooLong)));
    // 64 octets but 32 characters: counted in octets.
    let u64o = "é".repeat(32);
    t.push((
        format!("<{u64o}@b.c>").into_bytes(),
        F,
        V("b.c", false, false, false),
    ));
    let u66o = "é".repeat(33);
    t.push((format!("<{u66o}@b.c>").into_bytes(), F, E(LocalPartTooLong)));
    let label63 = "d".repeat(63);
    let label64 = "d".repeat(64);
    t.push((
        format!("<a@{label63}.com>").into_bytes(),
        F,
        V("", false, false, true),
    ));
    t.push((format!("<a@{label64}.com>").into_bytes(), F, E(Domain)));
    // Path of exactly 256 octets: "<" + "a@" + domain + ">" = 4 + domain.
    let dom252 = format!(
        "{}.{}.{}.{}",
        "d".repeat(63),
        "d".repeat(63),
        "d".repeat(63),
        "d".repeat(60)
    );
    assert_eq!(dom252.len(), 252);
    t.push((
        format!("<a@{dom252}>").into_bytes(),
        F,
        V("", false, false, true),
    ));
    let dom253 = format!("{dom252}d");
    t.push((format!("<a@{dom253}>").into_bytes(), F, E(PathTooLong)));
    t.push((format!("<ab@{dom252}>").into_bytes(), R, E(PathTooLong)));
    t
}

#[test]
fn address_table() {
    let table = table();
    assert!(table.len() >= 100, "only {} cases", table.len());
    for (input, ctx, want) in &table {
        let shown = String::from_utf8_lossy(input);
        let got: Want = match ctx {
            R => match parse_reverse_path(input) {
                Err(e) => E(e),
                Ok((_, rest)) if !rest.is_empty() => Rest(leak(rest)),
                Ok((ReversePath::Null, _)) => Null,
                Ok((ReversePath::Path(p), _)) => V(
                    leak_str(&p.final_domain()),
                    p.has_routing_operator(),
                    p.mailbox().is_postmaster(),
                    p.is_ascii(),
                ),
            },
            F => match parse_forward_path(input) {
                Err(e) => E(e),
                Ok((_, rest)) if !rest.is_empty() => Rest(leak(rest)),
                Ok((ForwardPath::Postmaster(_), _)) => Pm,
                Ok((fp @ ForwardPath::Path(_), _)) => V(
                    leak_str(&fp.final_domain().unwrap_or_default()),
                    fp.has_routing_operator(),
                    fp.is_postmaster(),
                    fp.is_ascii(),
                ),
            },
        };
        match (want, &got) {
            // Long generated domains: only check validity and flags.
            (V("", r, p, a), V(_, r2, p2, a2)) => {
                assert_eq!((r, p, a), (r2, p2, a2), "{shown}");
            }
            _ => assert_eq!(want, &got, "{shown} ({ctx:?})"),
        }
        // Every valid path re-encodes to the same octets.
        if let V(..) | Null | Pm = want {
            let mut wire = Vec::new();
            match ctx {
                R => parse_reverse_path(input).unwrap().0.encode(&mut wire),
                F => parse_forward_path(input).unwrap().0.encode(&mut wire),
            }
            assert_eq!(&wire, input, "{shown}");
        }
    }
}

fn leak(b: &[u8]) -> &'static [u8] {
    Box::leak(b.to_vec().into_boxed_slice())
}

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

#[test]
fn content_of_quoted_forms_compares_equal() {
    let (a, _) = parse_forward_path(b"<\"john\"@x.y>").unwrap();
    let (b, _) = parse_forward_path(b"<john@x.y>").unwrap();
    let (ForwardPath::Path(a), ForwardPath::Path(b)) = (a, b) else {
        panic!("paths expected")
    };
    assert_ne!(a, b, "wire forms differ");
    assert_eq!(
        a.mailbox().local_part().content(),
        b.mailbox().local_part().content()
    );
}
