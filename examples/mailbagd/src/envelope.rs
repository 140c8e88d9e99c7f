//! The envelope of a message accepted over SMTP, in smtp-proto's own types
//! (paths, `MAIL FROM` and `RCPT TO` parameters), and [`Envelope::to_queue`]:
//! the one place where it is mapped into the relay queue's types.

use std::net::IpAddr;

use mailbag_mailstore::UserName;
use mailbag_mailstore::queue::{
    BodyType, NewEnvelope, Notify as QueueNotify, Recipient as QueueRecipient, Ret as QueueRet,
};
use mailbag_smtp_proto::address::{ForwardPath, Mailbox, ReversePath};
use mailbag_smtp_proto::types::{Body, HeloName, MailParams, RcptParams, Ret};

/// The number of a message in the `Received:` id and the `Message-ID:` this
/// server makes: the connection's id, and for its second message on
/// `-<number>` (a probe found every message of a session under one id).
pub fn message_number(connection: u64, message: u32) -> String {
    if message > 1 {
        format!("{connection}-{message}")
    } else {
        connection.to_string()
    }
}

/// The envelope of a message to deliver.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// Connection id (for `Received:` and logs).
    pub id: u64,
    /// The message's number in its connection, from 1 (`Received:` ids of later
    /// ones carry it: RFC 5321 section 4.4 traces each message).
    pub message: u32,
    /// Header fields this server adds below its `Received:` (`Date:` and
    /// `Message-ID:` that a customer's message lacks, RFC 6409 section 8), each
    /// with its CRLF; usually empty.
    pub added_fields: String,
    /// Client address.
    pub client: IpAddr,
    /// EHLO/HELO argument (`None` if the client sent neither).
    pub helo: Option<HeloName<'static>>,
    /// `SMTP`, `ESMTP`, `ESMTPS`, ... (RFC 3848).
    pub with: &'static str,
    /// The reverse path (`<>` for bounces).
    pub from: ReversePath<'static>,
    /// The `MAIL FROM` parameters (DSN, body type, SMTPUTF8).
    pub mail: MailParams<'static>,
    /// Local users, each once (with the first `RCPT TO` that named them).
    pub local: Vec<LocalRecipient>,
    /// Remote recipients (relayed through the queue) with their `RCPT TO` parameters.
    pub remote: Vec<Recipient>,
    /// The single recipient for `Received: ... for <...>`, if there is exactly one.
    pub for_rcpt: Option<ForwardPath<'static>>,
}

/// A recipient as `RCPT TO` gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The forward path.
    pub path: ForwardPath<'static>,
    /// Its parameters (`NOTIFY=`, `ORCPT=`).
    pub params: RcptParams<'static>,
}

impl Recipient {
    /// The relay queue's recipient for it, pending: the one mapping of the
    /// RFC 3461 `NOTIFY` and `ORCPT` parameters into the queue's types.
    pub fn to_queue(&self) -> QueueRecipient {
        let mut rcpt = QueueRecipient::new(forward_address(&self.path));
        rcpt.orcpt = self.params.orcpt.as_ref().map(|o| {
            let mut v = o.addr_type().as_bytes().to_vec();
            v.push(b';');
            o.address().encode(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        });
        rcpt.notify = self.params.notify.map(|n| QueueNotify {
            success: n.success(),
            failure: n.failure(),
            delay: n.delay(),
        });
        rcpt
    }
}

/// A local user and the `RCPT TO`s that named them (one copy is stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRecipient {
    /// The user (the mailbox name).
    pub user: UserName,
    /// The first recipient that named the user, as given (a bounce names it,
    /// with its parameters).
    pub rcpt: Recipient,
    /// Later recipients with other addresses for the same user (`postmaster`
    /// and the user's own address): each gets its own DSN, as its `NOTIFY`
    /// asks (a probe's `NOTIFY=SUCCESS` of a second address went unanswered).
    pub more: Vec<Recipient>,
}

impl LocalRecipient {
    /// The first recipient: [`LocalRecipient::more`] is empty.
    pub fn new(user: UserName, rcpt: Recipient) -> LocalRecipient {
        LocalRecipient {
            user,
            rcpt,
            more: Vec::new(),
        }
    }

    /// Takes `rcpt`, another `RCPT TO` for this user: kept unless it names an
    /// address already given (letter case aside).
    pub fn add(&mut self, rcpt: Recipient) {
        let address = forward_address(&rcpt.path);
        let known = self
            .rcpts()
            .any(|r| forward_address(&r.path).eq_ignore_ascii_case(&address));
        if !known {
            self.more.push(rcpt);
        }
    }

    /// Every recipient that named this user, in order.
    pub fn rcpts(&self) -> impl Iterator<Item = &Recipient> {
        std::iter::once(&self.rcpt).chain(&self.more)
    }
}

/// `local@domain` of a mailbox, without angle brackets.
fn mailbox_address(mb: &Mailbox<'_>) -> String {
    format!("{}@{}", mb.local_part().as_str(), mb.host().as_str())
}

/// A forward path as `local@domain` (the bare `Postmaster` as received).
pub fn forward_address(path: &ForwardPath<'_>) -> String {
    match path {
        ForwardPath::Postmaster(s) => s.as_str().to_owned(),
        ForwardPath::Path(p) => mailbox_address(p.mailbox()),
    }
}

impl Envelope {
    /// The reverse path as `local@domain`, empty for `<>`.
    pub fn sender(&self) -> String {
        match &self.from {
            ReversePath::Null => String::new(),
            ReversePath::Path(p) => mailbox_address(p.mailbox()),
        }
    }

    /// The relay queue's envelope for the remote recipients, received at
    /// `now` (unix seconds): the one mapping from smtp-proto's parameter types
    /// into the queue's (RFC 3461 `RET`, `ENVID`, `NOTIFY`, `ORCPT`; RFC 6152
    /// `BODY`; RFC 6531 `SMTPUTF8`).
    pub fn to_queue(&self, now: u64) -> NewEnvelope {
        let mut q = NewEnvelope::new(self.sender(), now);
        q.client_ip = Some(self.client);
        q.envid = self.mail.envid.as_ref().map(|e| e.as_str().to_owned());
        q.ret = self.mail.ret.map(|r| match r {
            Ret::Headers => QueueRet::Hdrs,
            _ => QueueRet::Full,
        });
        q.body = match self.mail.body {
            Some(Body::EightBitMime) => BodyType::EightBitMime,
            _ => BodyType::SevenBit,
        };
        q.smtputf8 = self.mail.smtputf8;
        q.recipients = self.remote.iter().map(Recipient::to_queue).collect();
        q
    }

    /// The local users, in the order they were named.
    pub fn local_users(&self) -> impl Iterator<Item = &UserName> {
        self.local.iter().map(|l| &l.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailbag_smtp_proto::address::{parse_forward_path, parse_reverse_path};
    use mailbag_smtp_proto::codec::parse_command;
    use mailbag_smtp_proto::types::Command;

    fn rcpt(line: &str) -> Recipient {
        match parse_command(line.as_bytes()) {
            Ok(Command::Rcpt { to, params }) => Recipient {
                path: to.into_owned(),
                params: params.into_owned(),
            },
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn maps_every_dsn_parameter_into_the_queue() {
        let Ok(Command::Mail { params, .. }) = parse_command(
            b"MAIL FROM:<a@b.example> RET=HDRS ENVID=x+2By BODY=8BITMIME SMTPUTF8\r\n",
        ) else {
            panic!()
        };
        let env = Envelope {
            id: 1,
            message: 1,
            added_fields: String::new(),
            client: "127.0.0.2".parse().unwrap(),
            helo: Some(HeloName::try_from("client.example").unwrap().into_owned()),
            with: "ESMTP",
            from: parse_reverse_path(b"<a@b.example>").unwrap().0.into_owned(),
            mail: params.into_owned(),
            local: Vec::new(),
            remote: vec![
                rcpt("RCPT TO:<x@y.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;x+40y.example\r\n"),
                rcpt("RCPT TO:<z@y.example>\r\n"),
            ],
            for_rcpt: Some(parse_forward_path(b"<x@y.example>").unwrap().0.into_owned()),
        };
        let q = env.to_queue(1_700_000_000);
        assert_eq!(q.reverse_path, "a@b.example");
        assert_eq!(q.envid.as_deref(), Some("x+y"));
        assert_eq!(q.ret, Some(QueueRet::Hdrs));
        assert_eq!(q.body, BodyType::EightBitMime);
        assert!(q.smtputf8);
        assert_eq!(q.recipients.len(), 2);
        assert_eq!(q.recipients[0].address, "x@y.example");
        // Stored in xtext form: `@` needs no escape.
        assert_eq!(q.recipients[0].orcpt.as_deref(), Some("rfc822;x@y.example"));
        let n = q.recipients[0].notify.unwrap();
        assert!(n.success && !n.failure && n.delay);
        assert!(q.recipients[1].notify.is_none() && q.recipients[1].orcpt.is_none());
    }
}
