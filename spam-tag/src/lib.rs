//! Spam scoring, SpamAssassin-style subject tagging and per-user routing for a mail
//! server's delivery path.
//!
//! # The pipeline
//!
//! 1. **Score** the message: with the built-in [`BuiltinScorer`] (GTUBE and a few cheap
//!    header rules, any [`Scorer`]) or with SpamAssassin's spamd through the tokio client
//!    in the `spamd` module (feature `spamd`, over the sans-IO [`spamc`] codec). Either gives a
//!    [`Verdict`]: a [`Score`] and the [`RuleName`]s that fired.
//! 2. **Decide** with the user's [`UserSettings`] (serde, feature `serde`): [`decide`] returns the
//!    [`Folder`] (INBOX or Spam) and the [`HeaderAction`].
//! 3. **Rewrite** while delivering: [`HeaderRewriter`] streams the message, removes
//!    forged `X-Spam-*` headers, tags the Subject of spam with a SpamAssassin [`Template`]
//!    (default `**SPAM( _SCORE_)**`), adds `X-Spam-Flag`, `X-Spam-Level`,
//!    `X-Spam-Status` and `X-Spam-Prev-Subject`, and copies the body through unchanged.
//!    Re-tagging replaces an old tag instead of stacking; [`HeaderAction::Untag`] (or
//!    [`remove_tag`]) takes it off again when a message is released to the INBOX
//!    (`Untag` also removes `X-Spam-Flag`, `X-Spam-Status` and `X-Spam-Level`).
//!
//! To **show** a stored message (a Spam folder listing), [`Summary`] reads its From,
//! Subject and score from the header block, within bounds; underneath, [`header`] reads
//! unfolded fields ([`HeaderBlock`]) and [`rfc2047`] decodes encoded words in any charset
//! `encoding_rs` knows, in linear time and into bounded output.
//!
//! Everything but the `spamd` module is sans-IO: no sockets, clocks or threads.
//!
//! # Example
//!
//! ```
//! use mailbag_spam_tag::{
//!     decide, BuiltinScorer, Folder, HeaderRewriter, RewriteOptions, Scorer, UserSettings, GTUBE,
//! };
//!
//! let mut message = b"From: a@example.org\r\nSubject: Hello\r\nX-Spam-Flag: NO\r\n\r\n".to_vec();
//! message.extend_from_slice(GTUBE);
//! message.extend_from_slice(b"\r\n");
//!
//! let verdict = BuiltinScorer::default().score(&message);
//! let decision = decide(&UserSettings::default(), Some(&verdict));
//! assert_eq!(decision.folder, Folder::Spam);
//!
//! // Stream the message through the rewriter, here in 7-byte chunks.
//! let mut rewriter = HeaderRewriter::new(decision.action, RewriteOptions::default());
//! let mut out = Vec::new();
//! for chunk in message.chunks(7) {
//!     rewriter.feed(chunk, &mut out).unwrap();
//! }
//! rewriter.finish(&mut out).unwrap();
//!
//! let text = String::from_utf8(out).unwrap();
//! assert!(text.contains("Subject: **SPAM( 1002.9)** Hello\r\n"));
//! assert!(text.contains("X-Spam-Flag: YES\r\n"));
//! assert!(!text.contains("X-Spam-Flag: NO"));
//! assert!(text.contains("X-Spam-Status: Yes, score=1002.9 required=5.0 tests=GTUBE,"));
//! assert!(text.ends_with("\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n"));
//! ```
//!
//! # Feature flags
//!
//! - `spamd` (off by default): the tokio spamd client in the `spamd` module.
//! - `serde` (off by default): `Serialize` and `Deserialize` for [`UserSettings`],
//!   [`Folder`], [`Score`] and [`Template`].

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod header;
pub mod rfc2047;
pub mod scorer;
pub mod settings;
pub mod spamc;
#[cfg(feature = "spamd")]
#[cfg_attr(docsrs, doc(cfg(feature = "spamd")))]
pub mod spamd;
pub mod summary;
pub mod tagger;
pub mod template;

mod score;

pub use header::{HeaderBlock, HeaderLimits};
pub use score::{InvalidRuleName, InvalidScore, RuleName, Score, Verdict};
pub use scorer::{BuiltinOptions, BuiltinScan, BuiltinScorer, GTUBE, Scorer};
pub use settings::{Decision, Folder, UserSettings, decide};
pub use summary::{Summary, SummaryOptions, status_score};
pub use tagger::{
    HeaderAction, HeaderRewriter, RewriteError, RewriteOptions, remove_tag, rewrite_message,
};
pub use template::{TagValues, Template, TemplateError};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
