//! The outbound delivery engine: sends the mail in the relay queue
//! (`mailbag_mailstore::queue`) on to its destination, with retries and bounces.
//!
//! - The engine holds the queue's delivery lock for as long as it runs (one deliverer per
//!   queue directory, also across processes). At start-up everything due is attempted.
//! - The queue is scanned every `relay.scan_interval`, and at once when the SMTP side
//!   queues a message (the [`Context::queued`](crate::context::Context::queued) signal the engine is handed at start-up).
//! - For each due message the pending recipients are grouped by destination (the
//!   smarthost, or the recipient domain); each group is routed ([`mx`]: MX hosts by
//!   preference, implicit MX, null MX, address literals) and delivered over one
//!   connection ([`transport`]), in transactions of at most 100 recipients; the groups of
//!   one message are tried at the same time. Connections are
//!   limited per destination (`relay.concurrency`) and in total (`relay.max_connections`).
//! - Each reply that settles a recipient is written to the queue (atomic envelope update)
//!   before anything else happens, so a crash never re-sends to a recipient the next hop
//!   accepted. An envelope that cannot be written (a full disk) is kept in memory with
//!   what the pass recorded, and the message's next pass writes it before it attempts
//!   anything.
//! - Temporary failures (4xx, refused or lost connections, timeouts, TLS failures, DNS
//!   failures) leave the recipient pending with its last error; the next attempt is
//!   scheduled by the `RetrySchedule`. Permanent failures (5xx, null MX, unknown domain)
//!   and expiry (`relay.max_queue_age`) fail the recipient; a bounce (RFC 3464 DSN, see
//!   [`bounce`]) goes to the sender unless NOTIFY says otherwise or the sender is `<>`.
//! - Bounces are at least once: a failure is written to the envelope together with
//!   `report owed` ([`ReportState::Owed`](mailbag_mailstore::queue::ReportState::Owed)); the DSN is made durable (fsynced into the
//!   local sender's INBOX, or committed to the queue from `<>`), and only then is
//!   `report done` written. Every pass over a message (the first one after a start-up
//!   included, for every message that owes a report, due or not) first makes the DSNs
//!   still owed. A message leaves the queue only when every recipient is settled and
//!   nothing is owed ([`Envelope::is_complete`](mailbag_mailstore::queue::Envelope::is_complete)); a DSN that cannot be made (full disk,
//!   unwritable INBOX, a local sender's full mailbox) is logged and tried again on the
//!   next pass, at the latest after [`REPORT_RETRY`], until `relay.max_queue_age` after
//!   the failure it reports; then it is given up (logged and counted). A crash between making a DSN and recording it sends it again.
//!   "Relayed" reports (`NOTIFY=SUCCESS` to a next hop without DSN) get the same care.
//! - A next hop that does not offer 8BITMIME gets an 8-bit body converted to 7-bit
//!   ([`seven_bit_body`], RFC 6152 section 3).
//! - Every attempt is logged with the queue id, recipient, host and reply.

pub mod bounce;
mod engine;
pub mod mx;
pub mod seven_bit_body;
pub mod transport;

pub use crate::clock::unix_now;
pub use engine::{
    MAX_RECIPIENTS_PER_TRANSACTION, Outbound, OutboundError, REPORT_RETRY, reply_text,
};
