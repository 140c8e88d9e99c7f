//! The streaming header rewriter: tags the Subject, adds the `X-Spam-*` headers, removes
//! forged ones, and passes the body through byte for byte.
//!
//! # What it does to a message
//!
//! With [`HeaderAction::Mark`] (a scanned message):
//! - every incoming header field whose name starts with `X-Spam-` (any case) is removed, so
//!   a sender cannot forge a verdict;
//! - for spam with subject tagging on, every `Subject:` field becomes
//!   `Subject: <TAG> <original>`, where an old tag made from the same template (any score,
//!   even several stacked) is removed first, so re-tagging never stacks; a message without
//!   Subject gets `Subject: <TAG>`; `X-Spam-Prev-Subject:` keeps the original (without old
//!   tags; `(nonexistent)` when there was none or it was empty);
//! - at the end of the header block: `X-Spam-Flag: YES` (spam only), `X-Spam-Level:` (one
//!   `*` per whole point, at most 50), `X-Spam-Status: Yes|No, score=7.3 required=5.0
//!   tests=A,B` (`tests=none` when no rule fired), and `X-Spam-Prev-Subject:` when the
//!   subject was tagged.
//!
//! [`HeaderAction::Unscanned`] removes incoming `X-Spam-*` fields and adds
//! `X-Spam-Status: Unknown, not scanned` (the scanner was down and the policy is
//! fail-open); [`HeaderAction::Strip`] only removes them; [`HeaderAction::Untag`] removes
//! old tags from the Subject and the verdict fields `X-Spam-Flag`, `X-Spam-Status` and
//! `X-Spam-Level`, and changes nothing else ("release to INBOX").
//!
//! # Format of the rewritten Subject
//!
//! The new Subject value is the tag, a space, and the original value unfolded, with control
//! characters turned into spaces, runs of blanks collapsed to one space, leading and
//! trailing blanks removed, and words longer than [`MAX_WORD`] bytes split (at a UTF-8
//! character boundary). 8-bit bytes (UTF-8) and RFC 2047 encoded words are kept as they
//! are: the tag is ASCII and is separated from an encoded word by a space (RFC 2047 §5).
//! The field is folded at blanks so that lines stay within [`RewriteOptions::fold_width`]
//! (76 when the value holds an encoded word, RFC 2047 §2) and never pass 998 bytes
//! (RFC 5322 §2.1.1). The rewrite is idempotent: rewriting the output again with the same
//! action gives the same bytes.
//!
//! # Header block rules
//!
//! The header block ends at the first empty line, at a line that is neither a header field
//! (`name:` with printable ASCII name) nor a continuation (starting with a blank), or at the
//! end of input; the body is everything after. When the block did not end with an empty
//! line, the rewriter inserts one, so the output always has a well-formed header block;
//! the body bytes themselves are never changed. Added lines use the message's line ending
//! (that of its first line: CRLF or LF). A header block over
//! [`RewriteOptions::max_header_bytes`] is an error ([`RewriteError::HeaderTooLarge`]):
//! the output so far must then be discarded and the message handled untagged or refused.
//!
//! Rewriting the Subject breaks a DKIM signature whose `h=` tag covers it, as it does with
//! SpamAssassin; verify DKIM before rewriting.

use std::fmt;

use crate::score::{RuleName, Score, Verdict};
use crate::template::{TagValues, Template, stars};

/// Words of a rewritten Subject longer than this are split, so every line fits in 998 bytes.
pub const MAX_WORD: usize = 900;

/// The hard line-length limit of RFC 5322 (without the line ending).
const HARD_LIMIT: usize = 998;

/// What the rewriter does with the header block (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HeaderAction {
    /// A scanned message: remove incoming `X-Spam-*`, add the verdict headers, and tag the
    /// Subject when the message is spam and `tag_subject` is set.
    Mark {
        /// The scorer's verdict.
        verdict: Verdict,
        /// The threshold (`required_score`): spam when `score >= required`.
        required: Score,
        /// Whether to tag the Subject of spam.
        tag_subject: bool,
    },
    /// Not scanned (scanner unavailable with the fail-open policy, or message too large):
    /// remove incoming `X-Spam-*` and add `X-Spam-Status: Unknown, not scanned`.
    Unscanned,
    /// Only remove incoming `X-Spam-*` fields (scanning switched off by the user).
    Strip,
    /// "Release to INBOX": remove old tags made from [`RewriteOptions::template`] from the
    /// Subject, and remove the verdict fields `X-Spam-Flag`, `X-Spam-Status` and
    /// `X-Spam-Level` (any case), so a mail client or Sieve script that trusts them does
    /// not file the message as junk again. Everything else stays as it is, other
    /// `X-Spam-*` fields (`X-Spam-Prev-Subject`, `X-Spam-Report`) included; a Subject
    /// without a tag stays byte-identical.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::{rewrite_message, HeaderAction, RewriteOptions};
    ///
    /// let msg = b"Subject: **SPAM( 9.1)** Hi\nX-Spam-Flag: YES\nX-Spam-Level: *********\n\
    ///             X-Spam-Status: Yes, score=9.1 required=5.0 tests=GTUBE\n\
    ///             X-Spam-Prev-Subject: Hi\n\nbody\n";
    /// let out = rewrite_message(msg, HeaderAction::Untag, RewriteOptions::default()).unwrap();
    /// assert_eq!(out, b"Subject: Hi\nX-Spam-Prev-Subject: Hi\n\nbody\n");
    /// ```
    Untag,
}

/// Options of the rewriter.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RewriteOptions {
    /// The subject tag template. Default: `**SPAM( _SCORE_)**`.
    pub template: Template,
    /// The largest header block accepted, in bytes (empty line included). Default: 256 KiB
    /// (Postfix's `header_size_limit` is 100 KiB, so real mail is far below).
    pub max_header_bytes: usize,
    /// Where rewritten fields are folded (RFC 5322 §2.1.1 SHOULD: 78), clamped to
    /// `40..=998`. Default: 78.
    pub fold_width: usize,
}

impl Default for RewriteOptions {
    fn default() -> Self {
        RewriteOptions {
            template: Template::default(),
            max_header_bytes: 256 * 1024,
            fold_width: 78,
        }
    }
}

/// Errors of the rewriter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// The header block is larger than [`RewriteOptions::max_header_bytes`].
    #[error("header block larger than {limit} bytes")]
    HeaderTooLarge {
        /// The limit.
        limit: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Headers,
    Body,
}

#[derive(Debug)]
enum Field {
    None,
    Pass,
    Drop,
    Subject(Vec<u8>),
}

/// The streaming rewriter: feed the message in chunks of any size, get the output in
/// chunks. Memory is bounded by [`RewriteOptions::max_header_bytes`] (partial line and
/// Subject fields); the body is copied through as it arrives.
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::{HeaderAction, HeaderRewriter, RewriteOptions, RuleName, Score, Verdict};
///
/// let verdict = Verdict::new(Score::from_tenths(73), vec![RuleName::new("A").unwrap()]);
/// let action = HeaderAction::Mark { verdict, required: Score::DEFAULT_THRESHOLD, tag_subject: true };
/// let mut rw = HeaderRewriter::new(action, RewriteOptions::default());
/// let mut out = Vec::new();
/// for chunk in [&b"Subject: hello\r\nX-Spam-Flag: YES\r\n"[..], b"\r\nbody\r\n"] {
///     rw.feed(chunk, &mut out).unwrap();
/// }
/// rw.finish(&mut out).unwrap();
/// assert_eq!(
///     String::from_utf8(out).unwrap(),
///     "Subject: **SPAM( 7.3)** hello\r\n\
///      X-Spam-Flag: YES\r\n\
///      X-Spam-Level: *******\r\n\
///      X-Spam-Status: Yes, score=7.3 required=5.0 tests=A\r\n\
///      X-Spam-Prev-Subject: hello\r\n\
///      \r\n\
///      body\r\n"
/// );
/// ```
pub struct HeaderRewriter {
    action: HeaderAction,
    options: RewriteOptions,
    tag: Option<String>,
    phase: Phase,
    failed: Option<RewriteError>,
    line: Vec<u8>,
    crlf: Option<bool>,
    header_bytes: usize,
    field: Field,
    saw_subject: bool,
    prev_subject: Option<Vec<u8>>,
}

impl fmt::Debug for HeaderRewriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderRewriter")
            .field("action", &self.action)
            .field("phase", &self.phase)
            .field("header_bytes", &self.header_bytes)
            .finish_non_exhaustive()
    }
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The field name of a header line (`name WSP* :`), if it is one.
fn field_name(content: &[u8]) -> Option<&[u8]> {
    let colon = memchr::memchr(b':', content)?;
    let mut name = content.get(..colon)?;
    while let [rest @ .., last] = name {
        if is_wsp(*last) {
            name = rest;
        } else {
            break;
        }
    }
    (!name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))).then_some(name)
}

/// The fields that carry a verdict a mail client or a Sieve `spamtest` reads:
/// `X-Spam-Flag` (`YES`), `X-Spam-Status` (`Yes,`/`score=`), `X-Spam-Level` (stars).
/// [`HeaderAction::Untag`] removes them rather than rewriting them to "No": a kept
/// `score=7.3` or `*******` would still match a score rule, and the verdict they record
/// was overridden by the user. The other `X-Spam-*` fields (`X-Spam-Prev-Subject`,
/// `X-Spam-Report`, `X-Spam-Checker-Version`) are informational and no client files
/// mail by them, so they stay.
const VERDICT_FIELDS: [&[u8]; 3] = [b"x-spam-flag", b"x-spam-status", b"x-spam-level"];

fn is_verdict_field(name: &[u8]) -> bool {
    VERDICT_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f))
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

impl HeaderRewriter {
    /// A rewriter for one message.
    pub fn new(action: HeaderAction, options: RewriteOptions) -> HeaderRewriter {
        let tag = match &action {
            HeaderAction::Mark {
                verdict,
                required,
                tag_subject: true,
            } if verdict.is_spam(*required) => {
                let values = TagValues::new(verdict.score(), *required, verdict.rules());
                Some(options.template.render(&values)).filter(|t| !t.is_empty())
            }
            _ => None,
        };
        HeaderRewriter {
            action,
            options,
            tag,
            phase: Phase::Headers,
            failed: None,
            line: Vec::new(),
            crlf: None,
            header_bytes: 0,
            field: Field::None,
            saw_subject: false,
            prev_subject: None,
        }
    }

    /// Whether the header block is done (what follows is body, copied through unchanged).
    pub fn in_body(&self) -> bool {
        self.phase == Phase::Body
    }

    /// Feeds the next chunk of the message; output is appended to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while !chunk.is_empty() {
            if self.phase == Phase::Body {
                out.extend_from_slice(chunk);
                return Ok(());
            }
            let (piece, rest, complete) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (&chunk[..=i], &chunk[i + 1..], true),
                None => (chunk, &[][..], false),
            };
            chunk = rest;
            if self.header_bytes + self.line.len() + piece.len() > self.options.max_header_bytes {
                let e = RewriteError::HeaderTooLarge {
                    limit: self.options.max_header_bytes,
                };
                self.failed = Some(e.clone());
                return Err(e);
            }
            if !complete {
                self.line.extend_from_slice(piece);
            } else if self.line.is_empty() {
                self.on_line(piece, out);
            } else {
                self.line.extend_from_slice(piece);
                let line = std::mem::take(&mut self.line);
                self.on_line(&line, out);
                self.line = line;
                self.line.clear();
            }
        }
        Ok(())
    }

    /// Ends the message: completes a header block that was not terminated.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.phase == Phase::Headers {
            if !self.line.is_empty() {
                let line = std::mem::take(&mut self.line);
                self.on_line(&line, out);
            }
            if self.phase == Phase::Headers {
                self.end_headers(None, out);
            }
        }
        Ok(())
    }

    fn eol(&self) -> &'static [u8] {
        if self.crlf.unwrap_or(true) {
            b"\r\n"
        } else {
            b"\n"
        }
    }

    fn on_line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        self.header_bytes += line.len();
        let terminated = line.ends_with(b"\n");
        if self.crlf.is_none() {
            self.crlf = Some(!terminated || line.ends_with(b"\r\n"));
        }
        let mut content = line.strip_suffix(b"\n").unwrap_or(line);
        content = content.strip_suffix(b"\r").unwrap_or(content);
        let Some(&first) = content.first() else {
            self.end_headers(Some(line), out);
            return;
        };
        if is_wsp(first) {
            match &mut self.field {
                Field::None => {
                    self.end_headers(None, out);
                    out.extend_from_slice(line);
                }
                Field::Pass => {
                    out.extend_from_slice(line);
                    if !terminated {
                        out.extend_from_slice(self.eol());
                    }
                }
                Field::Drop => {}
                Field::Subject(buf) => buf.extend_from_slice(line),
            }
            return;
        }
        let Some(name) = field_name(content) else {
            self.end_headers(None, out);
            out.extend_from_slice(line);
            return;
        };
        self.finish_field(out);
        let untag = matches!(self.action, HeaderAction::Untag);
        let rewrite_subject = self.tag.is_some() || untag;
        let drop = if untag {
            is_verdict_field(name)
        } else {
            starts_with_ignore_case(name, b"x-spam-")
        };
        self.field = if drop {
            Field::Drop
        } else if rewrite_subject && name.eq_ignore_ascii_case(b"subject") {
            Field::Subject(line.to_vec())
        } else {
            out.extend_from_slice(line);
            if !terminated {
                out.extend_from_slice(self.eol());
            }
            Field::Pass
        };
    }

    fn finish_field(&mut self, out: &mut Vec<u8>) {
        let Field::Subject(raw) = std::mem::replace(&mut self.field, Field::None) else {
            return;
        };
        self.saw_subject = true;
        let value = normalize(raw.get(memchr::memchr(b':', &raw).map_or(0, |c| c + 1)..));
        let stripped = self.options.template.strip_tags(&value);
        let eol = self.eol();
        let width = self.options.fold_width;
        match &self.tag {
            Some(tag) => {
                if self.prev_subject.is_none() {
                    self.prev_subject = Some(stripped.to_vec());
                }
                let mut new = tag.clone().into_bytes();
                if !stripped.is_empty() {
                    new.push(b' ');
                    new.extend_from_slice(stripped);
                }
                fold_words(b"Subject", &new, eol, width, out);
            }
            None => {
                // Untag: only a Subject that carries a tag is rewritten.
                if self
                    .options
                    .template
                    .match_len(trim_blanks(&value))
                    .is_some()
                {
                    fold_words(b"Subject", stripped, eol, width, out);
                } else {
                    out.extend_from_slice(&raw);
                    if !raw.ends_with(b"\n") {
                        out.extend_from_slice(eol);
                    }
                }
            }
        }
    }

    fn end_headers(&mut self, separator: Option<&[u8]>, out: &mut Vec<u8>) {
        self.finish_field(out);
        self.phase = Phase::Body;
        let eol = self.eol();
        let width = self.options.fold_width;
        if let Some(tag) = &self.tag {
            if !self.saw_subject {
                fold_words(b"Subject", tag.as_bytes(), eol, width, out);
            }
        }
        match &self.action {
            HeaderAction::Mark {
                verdict, required, ..
            } => {
                let spam = verdict.is_spam(*required);
                if spam {
                    header_line(b"X-Spam-Flag", b"YES", eol, out);
                }
                let level = "*".repeat(stars(verdict.score()));
                header_line(b"X-Spam-Level", level.as_bytes(), eol, out);
                status_header(verdict, *required, eol, width, out);
                if self.tag.is_some() {
                    let prev = match &self.prev_subject {
                        Some(p) if !p.is_empty() => p.as_slice(),
                        _ => b"(nonexistent)",
                    };
                    fold_words(b"X-Spam-Prev-Subject", prev, eol, width, out);
                }
            }
            HeaderAction::Unscanned => {
                header_line(b"X-Spam-Status", b"Unknown, not scanned", eol, out);
            }
            HeaderAction::Strip | HeaderAction::Untag => {}
        }
        // The empty line that ended the block, as it came, or a fresh one (also for a
        // lone CR at the very end of the input).
        match separator {
            Some(sep) if sep.ends_with(b"\n") => out.extend_from_slice(sep),
            _ => out.extend_from_slice(eol),
        }
    }
}

fn trim_blanks(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| !is_wsp(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|&b| !is_wsp(b)).map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or_default()
}

/// Unfolds a field value and normalises it (see the module docs): controls to spaces,
/// blank runs collapsed, trimmed, long words split.
fn normalize(value: Option<&[u8]>) -> Vec<u8> {
    let value = value.unwrap_or_default();
    let mut out = Vec::with_capacity(value.len());
    let mut word = 0usize;
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if b == b'\r' && value.get(i + 1) == Some(&b'\n') {
            // Unfolding: CRLF removed; the blank after it stays.
            i += 2;
            continue;
        }
        if b == b'\n' {
            i += 1;
            continue;
        }
        let b = if b < 0x20 || b == 0x7f { b' ' } else { b };
        if b == b' ' {
            if !out.is_empty() && out.last() != Some(&b' ') {
                out.push(b' ');
            }
            word = 0;
        } else {
            // Split an over-long word, not inside a UTF-8 sequence when avoidable.
            if word >= MAX_WORD && !(word < MAX_WORD + 3 && (0x80..0xC0).contains(&b)) {
                out.push(b' ');
                word = 0;
            }
            out.push(b);
            word += 1;
        }
        i += 1;
    }
    if out.last() == Some(&b' ') {
        out.pop();
    }
    out
}

fn header_line(name: &[u8], value: &[u8], eol: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(name);
    out.push(b':');
    if !value.is_empty() {
        out.push(b' ');
        out.extend_from_slice(value);
    }
    out.extend_from_slice(eol);
}

/// Folds `name: value` at blanks (each continuation line starts with the blank it was cut
/// at, so unfolding gives the value back exactly).
fn fold_words(name: &[u8], value: &[u8], eol: &[u8], width: usize, out: &mut Vec<u8>) {
    let mut segs: Vec<(&[u8], bool)> = Vec::new();
    let mut i = 0;
    while i < value.len() {
        // A segment is a run of blanks plus the word after it.
        let seg_start = i;
        while i < value.len() && is_wsp(value[i]) {
            i += 1;
        }
        while i < value.len() && !is_wsp(value[i]) {
            i += 1;
        }
        segs.push((&value[seg_start..i], false));
    }
    fold_segments(name, &segs, value, eol, width, out);
}

/// Folds pre-cut segments; a segment flagged `true` does not start with a blank and gets a
/// TAB when a line break is put before it.
fn fold_segments(
    name: &[u8],
    segs: &[(&[u8], bool)],
    value: &[u8],
    eol: &[u8],
    width: usize,
    out: &mut Vec<u8>,
) {
    let mut width = width.clamp(40, HARD_LIMIT);
    if memchr::memmem::find(value, b"=?").is_some() {
        width = width.min(76);
    }
    out.extend_from_slice(name);
    out.push(b':');
    if value.is_empty() {
        out.extend_from_slice(eol);
        return;
    }
    out.push(b' ');
    let mut line_len = name.len() + 2;
    for (i, &(seg, tab)) in segs.iter().enumerate() {
        if i > 0 && line_len + seg.len() + usize::from(tab) > width {
            out.extend_from_slice(eol);
            line_len = 0;
            if tab {
                out.push(b'\t');
                line_len = 1;
            }
        }
        // Defensive hard split; values are built so that it never triggers.
        let mut rest = seg;
        while line_len + rest.len() > HARD_LIMIT {
            let mut n = HARD_LIMIT.saturating_sub(line_len).max(1).min(rest.len());
            while n > 1 && rest.get(n).is_some_and(|b| (0x80..0xC0).contains(b)) {
                n -= 1;
            }
            let (head, tail) = rest.split_at(n);
            out.extend_from_slice(head);
            out.extend_from_slice(eol);
            out.push(b' ');
            line_len = 1;
            rest = tail;
        }
        out.extend_from_slice(rest);
        line_len += rest.len();
    }
    out.extend_from_slice(eol);
}

/// `X-Spam-Status: Yes, score=7.3 required=5.0 tests=A,B`, folded after commas with a TAB
/// as SpamAssassin's `fold_headers` does.
fn status_header(verdict: &Verdict, required: Score, eol: &[u8], width: usize, out: &mut Vec<u8>) {
    let yes = if verdict.is_spam(required) {
        "Yes,"
    } else {
        "No,"
    };
    let score = format!(" score={}", verdict.score().tag_value(required));
    let reqd = format!(" required={required}");
    let rules: &[RuleName] = verdict.rules();
    let mut tests: Vec<String> = Vec::with_capacity(rules.len() + 1);
    if rules.is_empty() {
        tests.push(" tests=none".to_owned());
    }
    for (i, r) in rules.iter().enumerate() {
        let comma = if i + 1 < rules.len() { "," } else { "" };
        if i == 0 {
            tests.push(format!(" tests={r}{comma}"));
        } else {
            tests.push(format!("{r}{comma}"));
        }
    }
    let mut segs: Vec<(&[u8], bool)> = vec![
        (yes.as_bytes(), false),
        (score.as_bytes(), false),
        (reqd.as_bytes(), false),
    ];
    for (i, t) in tests.iter().enumerate() {
        segs.push((t.as_bytes(), i > 0));
    }
    fold_segments(b"X-Spam-Status", &segs, b"x", eol, width, out);
}

/// Rewrites a whole message held in memory (see [`HeaderRewriter`] for streaming).
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::{rewrite_message, HeaderAction, RewriteOptions};
///
/// // Release to INBOX: the tag and the verdict fields go, everything else stays.
/// let msg = b"Subject: **SPAM( 9.1)** Hi\nX-Spam-Flag: YES\nX-Mailer: m\n\nbody\n";
/// let out = rewrite_message(msg, HeaderAction::Untag, RewriteOptions::default()).unwrap();
/// assert_eq!(out, b"Subject: Hi\nX-Mailer: m\n\nbody\n");
/// ```
pub fn rewrite_message(
    message: &[u8],
    action: HeaderAction,
    options: RewriteOptions,
) -> Result<Vec<u8>, RewriteError> {
    let mut out = Vec::with_capacity(message.len() + 256);
    let mut rw = HeaderRewriter::new(action, options);
    rw.feed(message, &mut out)?;
    rw.finish(&mut out)?;
    Ok(out)
}

/// Removes old tags made from `template` from the start of a Subject value (the "release
/// to INBOX" helper for a subject already parsed out of a message); see
/// [`Template::strip_tags`].
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::{remove_tag, Template};
///
/// assert_eq!(remove_tag(&Template::default(), b"**SPAM( 7.3)** Hello"), b"Hello");
/// ```
pub fn remove_tag<'a>(template: &Template, subject: &'a [u8]) -> &'a [u8] {
    template.strip_tags(subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(tenths: i32, rules: &[&str]) -> Verdict {
        Verdict::new(
            Score::from_tenths(tenths),
            rules.iter().map(|r| RuleName::new(r).unwrap()).collect(),
        )
    }

    fn mark(tenths: i32, rules: &[&str]) -> HeaderAction {
        HeaderAction::Mark {
            verdict: verdict(tenths, rules),
            required: Score::DEFAULT_THRESHOLD,
            tag_subject: true,
        }
    }

    fn rw(msg: &[u8], action: HeaderAction) -> String {
        String::from_utf8_lossy(&rewrite_message(msg, action, RewriteOptions::default()).unwrap())
            .into_owned()
    }

    #[test]
    fn tags_spam_subject_crlf() {
        let out = rw(
            b"From: a@b\r\nSubject: original subject\r\nX-Spam-Status: No, forged\r\n\tcont\r\n\r\nbody",
            mark(73, &["A", "B"]),
        );
        assert_eq!(
            out,
            "From: a@b\r\nSubject: **SPAM( 7.3)** original subject\r\n\
             X-Spam-Flag: YES\r\nX-Spam-Level: *******\r\n\
             X-Spam-Status: Yes, score=7.3 required=5.0 tests=A,B\r\n\
             X-Spam-Prev-Subject: original subject\r\n\r\nbody"
        );
    }

    #[test]
    fn lf_message_stays_lf() {
        let out = rw(b"Subject: hi\n\nbody\n", mark(50, &[]));
        assert_eq!(
            out,
            "Subject: **SPAM( 5.0)** hi\nX-Spam-Flag: YES\nX-Spam-Level: *****\n\
             X-Spam-Status: Yes, score=5.0 required=5.0 tests=none\n\
             X-Spam-Prev-Subject: hi\n\nbody\n"
        );
    }

    #[test]
    fn ham_gets_status_only_and_forged_headers_go() {
        let out = rw(
            b"Subject: hi\r\nX-SPAM-FLAG: YES\r\nx-spam-level: ****\r\n\r\nb",
            mark(27, &["MISSING_DATE"]),
        );
        assert_eq!(
            out,
            "Subject: hi\r\nX-Spam-Level: **\r\n\
             X-Spam-Status: No, score=2.7 required=5.0 tests=MISSING_DATE\r\n\r\nb"
        );
        let out = rw(b"Subject: hi\r\n\r\n", mark(-10, &[]));
        assert_eq!(
            out,
            "Subject: hi\r\nX-Spam-Level:\r\n\
             X-Spam-Status: No, score=-1.0 required=5.0 tests=none\r\n\r\n"
        );
    }

    #[test]
    fn missing_subject_is_created() {
        let out = rw(b"From: a@b\r\n\r\nbody", mark(10_000, &["GTUBE"]));
        assert!(
            out.starts_with("From: a@b\r\nSubject: **SPAM( 1000.0)**\r\nX-Spam-Flag: YES\r\n"),
            "{out}"
        );
        assert!(out.contains("X-Spam-Prev-Subject: (nonexistent)\r\n\r\nbody"));
        assert!(out.contains(&format!("X-Spam-Level: {}\r\n", "*".repeat(50))));
    }

    #[test]
    fn retag_replaces_old_tag_any_score() {
        let once = rw(b"Subject: **SPAM( 5.2)** hello\r\n\r\n", mark(93, &[]));
        assert!(
            once.starts_with("Subject: **SPAM( 9.3)** hello\r\n"),
            "{once}"
        );
        assert!(once.contains("X-Spam-Prev-Subject: hello\r\n"));
        let twice = rw(once.as_bytes(), mark(93, &[]));
        assert_eq!(once, twice);
        let other = rw(once.as_bytes(), mark(61, &[]));
        assert!(other.starts_with("Subject: **SPAM( 6.1)** hello\r\n"));
    }

    #[test]
    fn folded_subject_is_unfolded_and_refolded() {
        let long = "word ".repeat(30);
        let msg = format!("Subject: first line\r\n\tsecond  line {long}\r\n\r\nB");
        let out = rw(msg.as_bytes(), mark(73, &[]));
        let head = out.split("\r\n\r\n").next().unwrap();
        for l in head.split("\r\n") {
            assert!(l.len() <= 78, "{l:?}");
        }
        let subject: String = head
            .split("\r\nX-Spam-Flag")
            .next()
            .unwrap()
            .replace("\r\n", "");
        assert_eq!(
            subject,
            format!(
                "Subject: **SPAM( 7.3)** first line second line {}",
                long.trim_end()
            )
        );
        assert!(out.ends_with("\r\n\r\nB"));
    }

    #[test]
    fn encoded_words_survive_and_fold_at_76() {
        let ew = "=?UTF-8?B?w6TDtsO8w6TDtsO8w6TDtsO8w6TDtsO8w6TDtsO8w6TDtsO8?=";
        let msg = format!("Subject: {ew}\r\n {ew}\r\n\r\n");
        let out = rw(msg.as_bytes(), mark(73, &[]));
        let head = out.split("\r\n\r\n").next().unwrap();
        assert!(head.starts_with(&format!("Subject: **SPAM( 7.3)**\r\n {ew}\r\n {ew}\r\n")));
        // Lines holding an encoded word stay within 76 unless they are one word long.
        for l in head.lines() {
            let words = l.split_whitespace().count();
            assert!(l.len() <= 76 || !l.contains("=?") || words <= 2, "{l:?}");
        }
    }

    #[test]
    fn eight_bit_and_controls() {
        let msg = b"Subject: gr\xc3\xbc\xc3\x9fe \x00 \xff bye\r\n\r\n";
        let out = rewrite_message(msg, mark(73, &[]), RewriteOptions::default()).unwrap();
        assert!(
            out.starts_with(b"Subject: **SPAM( 7.3)** gr\xc3\xbc\xc3\x9fe \xff bye\r\n"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn long_words_never_pass_998() {
        let word = "x".repeat(3000);
        let msg = format!("Subject: {word}\r\n\r\n");
        let out = rw(msg.as_bytes(), mark(73, &[]));
        for l in out.split("\r\n") {
            assert!(l.len() <= 998, "{}", l.len());
        }
        assert_eq!(rw(out.as_bytes(), mark(73, &[])), out);
    }

    #[test]
    fn status_folds_with_tab_after_commas() {
        let rules: Vec<String> = (0..20).map(|i| format!("RULE_NUMBER_{i:02}")).collect();
        let refs: Vec<&str> = rules.iter().map(String::as_str).collect();
        let out = rw(b"\r\n", mark(73, &refs));
        let status: Vec<&str> = out
            .split("\r\n")
            .skip_while(|l| !l.starts_with("X-Spam-Status"))
            .take_while(|l| l.starts_with("X-Spam-Status") || l.starts_with('\t'))
            .collect();
        assert!(status.len() > 3, "{status:?}");
        assert!(status[1].starts_with("\tRULE_NUMBER_"));
        for l in &status {
            assert!(l.len() <= 78, "{l}");
        }
        assert_eq!(status.concat().replace('\t', ""), {
            format!(
                "X-Spam-Status: Yes, score=7.3 required=5.0 tests={}",
                refs.join(",")
            )
        });
    }

    #[test]
    fn header_block_ending_without_empty_line() {
        // A non-header line ends the block: an empty line is inserted, body unchanged.
        let out = rw(b"Subject: a\r\nnot a header\r\nmore", mark(10, &[]));
        assert!(
            out.ends_with("tests=none\r\n\r\nnot a header\r\nmore"),
            "{out}"
        );
        // End of input inside the headers, last line unterminated.
        let out = rw(b"Subject: a", mark(73, &[]));
        assert!(out.starts_with("Subject: **SPAM( 7.3)** a\r\n"));
        assert!(out.ends_with("X-Spam-Prev-Subject: a\r\n\r\n"));
        // A continuation line with nothing to continue is body.
        let out = rw(b" leading\r\n", HeaderAction::Strip);
        assert_eq!(out, "\r\n leading\r\n");
        // Empty input.
        assert_eq!(rw(b"", HeaderAction::Strip), "\r\n");
    }

    #[test]
    fn unscanned_strip_untag() {
        let msg = b"Subject: **SPAM( 7.3)** x\nX-Spam-Flag: YES\n\nb";
        assert_eq!(
            rw(msg, HeaderAction::Unscanned),
            "Subject: **SPAM( 7.3)** x\nX-Spam-Status: Unknown, not scanned\n\nb"
        );
        assert_eq!(
            rw(msg, HeaderAction::Strip),
            "Subject: **SPAM( 7.3)** x\n\nb"
        );
        assert_eq!(rw(msg, HeaderAction::Untag), "Subject: x\n\nb");
        // Untag removes the verdict fields (any case, folded continuations too) and keeps
        // the informational X-Spam-* fields and everything else, in order.
        let released = b"X-SPAM-FLAG: YES\r\nSubject: **SPAM( 7.3)** x\r\n\
            x-spam-status: Yes, score=7.3 required=5.0\r\n\ttests=GTUBE\r\n\
            X-Spam-Level: *******\r\nX-Spam-Prev-Subject: x\r\n\
            X-Spam-Report: details\r\nX-Spam-Flagged: kept\r\nTo: a\r\n\r\nX-Spam-Flag: YES\r\n";
        let out = rw(released, HeaderAction::Untag);
        assert_eq!(
            out,
            "Subject: x\r\nX-Spam-Prev-Subject: x\r\nX-Spam-Report: details\r\n\
             X-Spam-Flagged: kept\r\nTo: a\r\n\r\nX-Spam-Flag: YES\r\n"
        );
        // Idempotent: releasing twice gives the same bytes.
        assert_eq!(rw(out.as_bytes(), HeaderAction::Untag), out);
        // Untag leaves an untagged subject byte-identical (folding included).
        let plain = b"Subject:  a\r\n  b\r\n\r\n";
        assert_eq!(rw(plain, HeaderAction::Untag).as_bytes(), plain);
        assert_eq!(
            rw(b"Subject: **SPAM( 7.3)**\r\n\r\n", HeaderAction::Untag),
            "Subject:\r\n\r\n"
        );
    }

    #[test]
    fn spam_without_subject_tagging() {
        let action = HeaderAction::Mark {
            verdict: verdict(73, &[]),
            required: Score::DEFAULT_THRESHOLD,
            tag_subject: false,
        };
        let out = rw(b"Subject: **SPAM( 1.0)** hi\r\n\r\n", action);
        assert!(out.starts_with("Subject: **SPAM( 1.0)** hi\r\nX-Spam-Flag: YES\r\n"));
        assert!(!out.contains("Prev-Subject"));
    }

    #[test]
    fn every_subject_field_is_tagged() {
        let out = rw(b"Subject: one\r\nSubject: two\r\n\r\n", mark(73, &[]));
        assert!(out.starts_with("Subject: **SPAM( 7.3)** one\r\nSubject: **SPAM( 7.3)** two\r\n"));
        assert!(out.contains("X-Spam-Prev-Subject: one\r\n"));
    }

    #[test]
    fn forged_prev_subject_and_blank_subject() {
        let out = rw(
            b"X-Spam-Prev-Subject: forged\nSubject:   \t \nX-Spam-Checker-Version: x\n\n",
            mark(73, &[]),
        );
        assert_eq!(
            out,
            "Subject: **SPAM( 7.3)**\nX-Spam-Flag: YES\nX-Spam-Level: *******\n\
             X-Spam-Status: Yes, score=7.3 required=5.0 tests=none\n\
             X-Spam-Prev-Subject: (nonexistent)\n\n"
        );
    }

    #[test]
    fn lf_folded_subject_with_encoded_word() {
        let msg = b"Subject: =?ISO-8859-1?Q?Gr=FC=DFe?=\n\tand more\nTo: x@y\n\nbody\n";
        let out = rw(msg, mark(51, &["Z"]));
        assert!(
            out.starts_with(
                "Subject: **SPAM( 5.1)** =?ISO-8859-1?Q?Gr=FC=DFe?= and more\nTo: x@y\n"
            ),
            "{out}"
        );
        assert!(out.contains("X-Spam-Prev-Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= and more\n"));
        assert!(!out.contains('\r'));
        assert_eq!(rw(out.as_bytes(), mark(51, &["Z"])), out);
    }

    #[test]
    fn header_limit() {
        let opts = RewriteOptions {
            max_header_bytes: 64,
            ..RewriteOptions::default()
        };
        let mut rw = HeaderRewriter::new(HeaderAction::Strip, opts);
        let mut out = Vec::new();
        rw.feed(b"Subject: short\r\n", &mut out).unwrap();
        let err = rw.feed(&[b'a'; 100], &mut out).unwrap_err();
        assert_eq!(err, RewriteError::HeaderTooLarge { limit: 64 });
        assert!(rw.feed(b"\r\n", &mut out).is_err());
        assert!(rw.finish(&mut out).is_err());
        // A big body is fine.
        let mut rw = HeaderRewriter::new(
            HeaderAction::Strip,
            RewriteOptions {
                max_header_bytes: 64,
                ..RewriteOptions::default()
            },
        );
        let mut out = Vec::new();
        rw.feed(b"A: b\r\n\r\n", &mut out).unwrap();
        assert!(rw.in_body());
        rw.feed(&[b'x'; 10_000], &mut out).unwrap();
        rw.finish(&mut out).unwrap();
        assert_eq!(out.len(), 8 + 10_000);
    }

    #[test]
    fn normalize_rules() {
        assert_eq!(normalize(Some(b" a\r\n\t b \x01c  ")), b"a b c");
        assert_eq!(normalize(None), b"");
        let long = vec![b'y'; 2000];
        let n = normalize(Some(&long));
        assert_eq!(n.len(), 2002);
        assert_eq!(normalize(Some(&n)), n);
        // Split does not cut a UTF-8 sequence when avoidable.
        let mut s = vec![b'a'; MAX_WORD - 1];
        s.extend_from_slice("ü".as_bytes());
        s.extend_from_slice(b"zz");
        let n = normalize(Some(&s));
        assert!(std::str::from_utf8(&n).is_ok());
    }
}
