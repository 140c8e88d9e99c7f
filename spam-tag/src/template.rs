//! SpamAssassin-style tag templates (`**SPAM( _SCORE_)**`): rendering, and recognising an
//! old tag made from the same template so that re-tagging replaces it instead of stacking.
//!
//! # Supported tags
//!
//! | tag | renders |
//! |---|---|
//! | `_SCORE_`, `_HITS_` | the score, `%2.1f` (`7.3`, `-0.5`, `1000.0`); a ham score that would show as the threshold shows as threshold − 0.1 (SpamAssassin's rule) |
//! | `_SCORE(PAD)_`, `_HITS(PAD)_` | PAD all `0`s or all spaces: the score left-padded with `len(PAD) + 3 − len(score)` pad characters (`_SCORE(0)_`: `2.4` → `02.4`, `12.3` → `12.3`); any other PAD is ignored |
//! | `_REQD_` | the threshold, `%2.1f` (`5.0`) |
//! | `_TESTS_`, `_TESTS(SEP)_` | the fired rules, sorted, joined by SEP (default `,`), or `none`; at most [`Template::MAX_TESTS_LEN`] bytes (names that do not fit are left out) |
//! | `_STARS_`, `_STARS(C)_` | C (default `*`) repeated once per whole point, at most 50, nothing for a score ≤ 0 |
//! | `_YESNO_`, `_YESNO(S,H)_` | `Yes`/`No` (or S/H) for spam/ham |
//! | `_YESNOCAPS_`, `_YESNOCAPS(S,H)_` | `YES`/`NO` (or S/H) |
//!
//! Any other `_NAME_` or `_NAME(ARG)_` is left verbatim, as SpamAssassin does.
//!
//! # Template rules
//!
//! A template is printable ASCII (CR, LF and TAB become spaces, as SpamAssassin turns
//! newlines into spaces), runs of spaces collapse to one, leading and trailing spaces are
//! removed; it is at most [`Template::MAX_LEN`] bytes with at most [`Template::MAX_TAGS`]
//! tags. Templates whose old tags could not be recognised unambiguously are refused: two
//! tags next to each other; `_TESTS(SEP)_` with a SEP holding letters, digits, `_` or
//! spaces, or followed by text starting with a letter, digit, `_` or SEP; `_STARS(C)_` with
//! a C that is not one non-space character, or followed by text starting with C.

use std::fmt;

use crate::score::{RuleName, Score};

/// A parsed subject-tag template.
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::{Score, TagValues, Template};
///
/// let t = Template::default();
/// assert_eq!(t.as_str(), "**SPAM( _SCORE_)**");
/// let v = TagValues::new(Score::from_tenths(73), Score::DEFAULT_THRESHOLD, &[]);
/// assert_eq!(t.render(&v), "**SPAM( 7.3)**");
///
/// // An old tag made from the same template, with any score, is recognised:
/// assert_eq!(t.strip_tags(b"**SPAM( 12.0)** hello"), b"hello");
/// ```
#[derive(Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Lit(Vec<u8>),
    Tag(Tag),
}

#[derive(Clone, Debug, PartialEq)]
enum Tag {
    /// `_SCORE_`/`_HITS_`, with an optional pad (char, length).
    Score(Option<(u8, usize)>),
    Reqd,
    Tests(Vec<u8>),
    Stars(Vec<u8>),
    YesNo(Vec<u8>, Vec<u8>),
}

/// The error for a template that breaks the [template rules](self#template-rules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// Nothing but whitespace.
    #[error("the template is empty")]
    Empty,
    /// Longer than [`Template::MAX_LEN`].
    #[error("the template is longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A byte outside printable ASCII.
    #[error("the template must be printable ASCII")]
    NotAscii,
    /// More than [`Template::MAX_TAGS`] tags.
    #[error("the template has more than {max} tags")]
    TooManyTags {
        /// The limit.
        max: usize,
    },
    /// An old tag made from this template could not be recognised unambiguously.
    #[error("ambiguous template: {0}")]
    Ambiguous(&'static str),
}

/// The values a template is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct TagValues<'a> {
    score: Score,
    required: Score,
    rules: &'a [RuleName],
}

impl<'a> TagValues<'a> {
    /// Values from a score, the threshold (`required_score`) and the fired rules (rendered in
    /// the given order: pass them sorted, as [`crate::Verdict::rules`] are).
    pub fn new(score: Score, required: Score, rules: &'a [RuleName]) -> TagValues<'a> {
        TagValues {
            score,
            required,
            rules,
        }
    }

    /// Whether the score reaches the threshold.
    pub fn is_spam(&self) -> bool {
        self.score >= self.required
    }
}

const DEFAULT_TEMPLATE: &str = "**SPAM( _SCORE_)**";

impl Default for Template {
    /// `**SPAM( _SCORE_)**`.
    fn default() -> Template {
        Template {
            source: DEFAULT_TEMPLATE.to_owned(),
            parts: vec![
                Part::Lit(b"**SPAM( ".to_vec()),
                Part::Tag(Tag::Score(None)),
                Part::Lit(b")**".to_vec()),
            ],
        }
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl TryFrom<&str> for Template {
    type Error = TemplateError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Template::new(value)
    }
}

impl std::str::FromStr for Template {
    type Err = TemplateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::new(s)
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl serde::Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> serde::Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Template::new(&s).map_err(serde::de::Error::custom)
    }
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Finds `)_` in `s` from `from`, returning the index of `)`.
fn find_close(s: &[u8], from: usize) -> Option<usize> {
    let rest = s.get(from..)?;
    memchr::memmem::find(rest, b")_").map(|i| i + from)
}

impl Template {
    /// The longest template accepted, in bytes.
    pub const MAX_LEN: usize = 256;
    /// The most tags a template may hold.
    pub const MAX_TAGS: usize = 8;
    /// The most stars `_STARS_` renders.
    pub const MAX_STARS: usize = 50;
    /// The most bytes one `_TESTS_` renders in a subject tag: rule names that would not fit
    /// are left out, so that a tag always fits on one header line.
    pub const MAX_TESTS_LEN: usize = 64;
    /// About the longest a rendered tag can be (768 bytes: every tag a full `_TESTS_`), so
    /// that `Subject: ` and a tag always fit on one 998-byte header line.
    pub const MAX_RENDERED_LEN: usize = Self::MAX_LEN + Self::MAX_TAGS * Self::MAX_TESTS_LEN;

    /// Parses and checks a template (see the [template rules](self#template-rules)).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::{Template, TemplateError};
    ///
    /// assert!(Template::new("[SPAM _SCORE(0)_/_REQD_]").is_ok());
    /// assert_eq!(Template::new("  "), Err(TemplateError::Empty));
    /// assert!(matches!(Template::new("_SCORE__REQD_"), Err(TemplateError::Ambiguous(_))));
    /// ```
    pub fn new(template: &str) -> Result<Template, TemplateError> {
        if template.len() > Self::MAX_LEN {
            return Err(TemplateError::TooLong { max: Self::MAX_LEN });
        }
        // Normalise: CR/LF/TAB to spaces, collapse runs, trim.
        let mut norm = String::with_capacity(template.len());
        for c in template.chars() {
            let c = if matches!(c, '\r' | '\n' | '\t') {
                ' '
            } else {
                c
            };
            if !(' '..='~').contains(&c) {
                return Err(TemplateError::NotAscii);
            }
            if c == ' ' && (norm.is_empty() || norm.ends_with(' ')) {
                continue;
            }
            norm.push(c);
        }
        while norm.ends_with(' ') {
            norm.pop();
        }
        if norm.is_empty() {
            return Err(TemplateError::Empty);
        }
        let parts = parse_parts(norm.as_bytes());
        let tags = parts.iter().filter(|p| matches!(p, Part::Tag(_))).count();
        if tags > Self::MAX_TAGS {
            return Err(TemplateError::TooManyTags {
                max: Self::MAX_TAGS,
            });
        }
        check_unambiguous(&parts)?;
        Ok(Template {
            source: norm,
            parts,
        })
    }

    /// The (normalised) template text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Renders the template: printable ASCII without leading or trailing spaces (empty only
    /// for a template made of nothing but `_STARS_` and a score under 1).
    pub fn render(&self, values: &TagValues<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                Part::Lit(l) => out.push_str(&String::from_utf8_lossy(l)),
                Part::Tag(tag) => render_tag(tag, values, &mut out),
            }
        }
        let trimmed = out.trim_matches(' ');
        if trimmed.len() == out.len() {
            out
        } else {
            trimmed.to_owned()
        }
    }

    /// The length of an old tag made from this template at the start of `input`, if there is
    /// one followed by whitespace or the end. Letters match case-insensitively and any run of
    /// spaces/tabs matches a space of the template (as after refolding).
    pub fn match_len(&self, input: &[u8]) -> Option<usize> {
        match_parts(&self.parts, input, 0).filter(|&n| n > 0)
    }

    /// Removes every old tag made from this template from the start of an (unfolded)
    /// Subject value, with the whitespace around them: what "release to INBOX" shows.
    /// Returns the input unchanged (minus leading whitespace) when it carries no tag.
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::Template;
    ///
    /// let t = Template::default();
    /// assert_eq!(t.strip_tags(b"**SPAM( 5.3)** **SPAM( 5.2)** Hi"), b"Hi");
    /// assert_eq!(t.strip_tags(b"Re: **SPAM( 5.3)** Hi"), b"Re: **SPAM( 5.3)** Hi");
    /// ```
    pub fn strip_tags<'a>(&self, value: &'a [u8]) -> &'a [u8] {
        let mut v = trim_start(value);
        while let Some(n) = self.match_len(v) {
            v = trim_start(v.get(n..).unwrap_or_default());
        }
        v
    }
}

fn trim_start(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if is_wsp(*first) {
            v = rest;
        } else {
            break;
        }
    }
    v
}

fn parse_parts(s: &[u8]) -> Vec<Part> {
    let mut parts: Vec<Part> = Vec::new();
    let mut lit: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'_' {
            if let Some((tag, end)) = parse_tag_at(s, i) {
                match tag {
                    Some(t) => {
                        if !lit.is_empty() {
                            parts.push(Part::Lit(std::mem::take(&mut lit)));
                        }
                        parts.push(Part::Tag(t));
                    }
                    // Unknown tag: verbatim, scanning resumes after it (as SA's s///g does).
                    None => lit.extend_from_slice(&s[i..end]),
                }
                i = end;
                continue;
            }
        }
        lit.push(s[i]);
        i += 1;
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    parts
}

/// SpamAssassin's `_(\w+?)(?:\((.*?)\))?_` at `start` (which holds `_`): returns the tag
/// (None when unknown) and the end of the match.
fn parse_tag_at(s: &[u8], start: usize) -> Option<(Option<Tag>, usize)> {
    let name_start = start + 1;
    let mut j = name_start;
    while j < s.len() && s[j].is_ascii_alphanumeric() {
        j += 1;
    }
    if j == name_start {
        return None;
    }
    let name = &s[name_start..j];
    let (arg, end) = match s.get(j) {
        Some(b'_') => (None, j + 1),
        Some(b'(') => {
            let close = find_close(s, j + 1)?;
            (Some(&s[j + 1..close]), close + 2)
        }
        _ => return None,
    };
    Some((make_tag(name, arg), end))
}

fn make_tag(name: &[u8], arg: Option<&[u8]>) -> Option<Tag> {
    let non_empty = |d: &[u8]| match arg {
        Some(a) if !a.is_empty() => a.to_vec(),
        _ => d.to_vec(),
    };
    let yes_no = |y: &[u8], n: &[u8]| match arg {
        Some(a) => match memchr::memchr(b',', a) {
            Some(c) => (a[..c].to_vec(), a[c + 1..].to_vec()),
            None => (a.to_vec(), n.to_vec()),
        },
        None => (y.to_vec(), n.to_vec()),
    };
    Some(match name {
        b"SCORE" | b"HITS" => {
            let pad = arg.and_then(|a| {
                let c = *a.first()?;
                ((c == b'0' || c == b' ') && a.iter().all(|&b| b == c)).then_some((c, a.len()))
            });
            Tag::Score(pad)
        }
        b"REQD" => Tag::Reqd,
        b"TESTS" => Tag::Tests(non_empty(b",")),
        b"STARS" => Tag::Stars(non_empty(b"*")),
        b"YESNO" => {
            let (y, n) = yes_no(b"Yes", b"No");
            Tag::YesNo(y, n)
        }
        b"YESNOCAPS" => {
            let (y, n) = yes_no(b"YES", b"NO");
            Tag::YesNo(y, n)
        }
        _ => return None,
    })
}

fn check_unambiguous(parts: &[Part]) -> Result<(), TemplateError> {
    for (i, part) in parts.iter().enumerate() {
        let Part::Tag(tag) = part else { continue };
        let next = parts.get(i + 1);
        if matches!(next, Some(Part::Tag(_))) {
            return Err(TemplateError::Ambiguous("two tags next to each other"));
        }
        // What follows the tag: the next literal, or the space before the subject.
        let follow: &[u8] = match next {
            Some(Part::Lit(l)) => l,
            _ => b" ",
        };
        match tag {
            Tag::Tests(sep) => {
                if sep.iter().any(|&b| is_word(b) || is_wsp(b)) {
                    return Err(TemplateError::Ambiguous(
                        "a _TESTS_ separator must not hold letters, digits, _ or spaces",
                    ));
                }
                if follow.first().is_some_and(|&b| is_word(b)) || follow.starts_with(sep) {
                    return Err(TemplateError::Ambiguous(
                        "text after _TESTS_ must not start with a letter, digit, _ or the separator",
                    ));
                }
            }
            Tag::Stars(unit) => {
                if unit.len() != 1 || unit.iter().any(|&b| is_wsp(b)) {
                    return Err(TemplateError::Ambiguous(
                        "_STARS(C)_ takes one character, not a space",
                    ));
                }
                if follow.starts_with(unit) {
                    return Err(TemplateError::Ambiguous(
                        "text after _STARS(C)_ must not start with C",
                    ));
                }
            }
            Tag::Score(_) | Tag::Reqd | Tag::YesNo(..) => {}
        }
    }
    Ok(())
}

fn render_tag(tag: &Tag, v: &TagValues<'_>, out: &mut String) {
    match tag {
        Tag::Score(pad) => {
            let s = v.score.tag_value(v.required);
            if let Some((c, len)) = pad {
                let count = (len + 3).saturating_sub(s.len());
                out.extend(std::iter::repeat_n(char::from(*c), count));
            }
            out.push_str(&s);
        }
        Tag::Reqd => out.push_str(&v.required.to_string()),
        Tag::Tests(sep) => {
            let sep = String::from_utf8_lossy(sep);
            let mut len = 0;
            for r in v.rules {
                let add = if len == 0 { 0 } else { sep.len() } + r.as_str().len();
                if len + add > Template::MAX_TESTS_LEN {
                    break;
                }
                if len > 0 {
                    out.push_str(&sep);
                }
                out.push_str(r.as_str());
                len += add;
            }
            if len == 0 {
                out.push_str("none");
            }
        }
        Tag::Stars(unit) => {
            let n = stars(v.score);
            let unit = String::from_utf8_lossy(unit);
            for _ in 0..n {
                out.push_str(&unit);
            }
        }
        Tag::YesNo(y, n) => {
            let s = if v.is_spam() { y } else { n };
            out.push_str(&String::from_utf8_lossy(s));
        }
    }
}

/// SpamAssassin's star count: `int(score)`, at most 50, none for scores ≤ 0.
pub(crate) fn stars(score: Score) -> usize {
    let v = score.value().trunc();
    if v <= 0.0 {
        0
    } else if v >= Template::MAX_STARS as f64 {
        Template::MAX_STARS
    } else {
        // In 1..50 here, so the conversion is exact.
        v as usize
    }
}

fn match_lit(lit: &[u8], input: &[u8], mut p: usize) -> Option<usize> {
    let mut i = 0;
    while i < lit.len() {
        if lit[i] == b' ' {
            while i < lit.len() && lit[i] == b' ' {
                i += 1;
            }
            // A space matches a run of blanks; none only where the value was trimmed
            // (its start and end).
            if p != 0 && p != input.len() && !input.get(p).is_some_and(|&b| is_wsp(b)) {
                return None;
            }
            while input.get(p).is_some_and(|&b| is_wsp(b)) {
                p += 1;
            }
        } else {
            if !input.get(p)?.eq_ignore_ascii_case(&lit[i]) {
                return None;
            }
            i += 1;
            p += 1;
        }
    }
    Some(p)
}

fn digits(input: &[u8], mut p: usize) -> (usize, usize) {
    let start = p;
    while input.get(p).is_some_and(u8::is_ascii_digit) {
        p += 1;
    }
    (p, p - start)
}

/// A `%2.1f` number, optionally left-padded.
fn match_number(input: &[u8], mut p: usize, pad: Option<u8>) -> Option<usize> {
    let at = |q: usize| input.get(q).copied();
    match pad {
        Some(b' ') => {
            while at(p) == Some(b' ') {
                p += 1;
            }
        }
        Some(_) => {
            // Zero padding: zeros, then either `-digits` or more digits.
            let (q, zeros) = digits(input, p);
            if at(q) == Some(b'-') {
                let (r, n) = digits(input, q + 1);
                if n == 0 {
                    return None;
                }
                p = r;
            } else {
                if zeros == 0 {
                    return None;
                }
                p = q;
            }
            return match_fraction(input, p);
        }
        None => {}
    }
    if at(p) == Some(b'-') {
        p += 1;
    }
    let (q, n) = digits(input, p);
    if n == 0 {
        return None;
    }
    match_fraction(input, q)
}

fn match_fraction(input: &[u8], p: usize) -> Option<usize> {
    (input.get(p) == Some(&b'.') && input.get(p + 1).is_some_and(u8::is_ascii_digit))
        .then_some(p + 2)
}

fn match_tests(input: &[u8], p: usize, sep: &[u8]) -> Option<usize> {
    let word_run = |mut q: usize| {
        let s = q;
        while input.get(q).is_some_and(|&b| is_word(b)) {
            q += 1;
        }
        (q > s).then_some(q)
    };
    let mut q = word_run(p)?;
    while input.get(q..).is_some_and(|r| r.starts_with(sep)) {
        match word_run(q + sep.len()) {
            Some(r) => q = r,
            None => break,
        }
    }
    Some(q)
}

fn match_parts(parts: &[Part], input: &[u8], p: usize) -> Option<usize> {
    let Some((first, rest)) = parts.split_first() else {
        // The tag must be followed by whitespace or the end of the value (or have ended
        // with whitespace, when a trailing tag rendered empty).
        let blank = |q: Option<usize>| q.and_then(|q| input.get(q)).is_some_and(|&b| is_wsp(b));
        return (p == input.len() || blank(Some(p)) || blank(p.checked_sub(1))).then_some(p);
    };
    match first {
        Part::Lit(l) => match_parts(rest, input, match_lit(l, input, p)?),
        Part::Tag(Tag::Score(pad)) => {
            match_parts(rest, input, match_number(input, p, pad.map(|(c, _)| c))?)
        }
        Part::Tag(Tag::Reqd) => match_parts(rest, input, match_number(input, p, None)?),
        Part::Tag(Tag::Tests(sep)) => match_parts(rest, input, match_tests(input, p, sep)?),
        Part::Tag(Tag::Stars(unit)) => {
            let mut q = p;
            let mut n = 0;
            while n < Template::MAX_STARS && input.get(q..).is_some_and(|r| r.starts_with(unit)) {
                q += unit.len();
                n += 1;
            }
            match_parts(rest, input, q)
        }
        Part::Tag(Tag::YesNo(y, n)) => [y, n].into_iter().find_map(|alt| {
            let end = p + alt.len();
            let got = input.get(p..end)?;
            got.eq_ignore_ascii_case(alt)
                .then(|| match_parts(rest, input, end))
                .flatten()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(names: &[&str]) -> Vec<RuleName> {
        names.iter().map(|n| RuleName::new(n).unwrap()).collect()
    }

    fn render(t: &str, score: f64, rules: &[RuleName]) -> String {
        let v = TagValues::new(Score::new(score).unwrap(), Score::DEFAULT_THRESHOLD, rules);
        Template::new(t).unwrap().render(&v)
    }

    #[test]
    fn default_template() {
        assert_eq!(render("**SPAM( _SCORE_)**", 7.3, &[]), "**SPAM( 7.3)**");
        assert_eq!(
            Template::default(),
            Template::new(DEFAULT_TEMPLATE).unwrap()
        );
    }

    #[test]
    fn score_and_hits() {
        assert_eq!(render("_SCORE_", 12.0, &[]), "12.0");
        assert_eq!(render("_HITS_", 5.25, &[]), "5.2");
        assert_eq!(render("_SCORE_", -0.3, &[]), "-0.3");
        assert_eq!(render("_SCORE_", -12.75, &[]), "-12.8");
        assert_eq!(render("_SCORE_", 1000.0, &[]), "1000.0");
        assert_eq!(render("_SCORE_", 999_999.0, &[]), "999999.0");
        // Ham clamp: 4.96 would display as 5.0.
        assert_eq!(render("_SCORE_", 4.96, &[]), "4.9");
    }

    #[test]
    fn score_padding() {
        assert_eq!(render("_SCORE(0)_", 2.4, &[]), "02.4");
        assert_eq!(render("_SCORE(0)_", 12.3, &[]), "12.3");
        assert_eq!(render("_SCORE(00)_", 2.4, &[]), "002.4");
        assert_eq!(render("_SCORE(00)_", 12.3, &[]), "012.3");
        assert_eq!(render("_SCORE(00)_", 1000.0, &[]), "1000.0");
        assert_eq!(render("[_SCORE( )_]", 2.4, &[]), "[ 2.4]");
        assert_eq!(render("_HITS(0)_", 5.0, &[]), "05.0");
        assert_eq!(render("_SCORE(00)_", -0.3, &[]), "0-0.3");
        // Mixed or other pads are ignored.
        assert_eq!(render("_SCORE(0 )_", 2.4, &[]), "2.4");
        assert_eq!(render("_SCORE(x)_", 2.4, &[]), "2.4");
    }

    #[test]
    fn reqd_tests_stars_yesno() {
        let r = rules(&["GTUBE", "MISSING_DATE"]);
        assert_eq!(render("_REQD_", 0.0, &[]), "5.0");
        assert_eq!(render("_TESTS_", 7.0, &r), "GTUBE,MISSING_DATE");
        assert_eq!(render("_TESTS(;)_", 7.0, &r), "GTUBE;MISSING_DATE");
        assert_eq!(render("_TESTS_", 7.0, &[]), "none");
        assert_eq!(render("_STARS_", 7.9, &[]), "*******");
        assert_eq!(render("_STARS(+)_", 3.0, &[]), "+++");
        assert_eq!(render("_STARS_", 1000.0, &[]).len(), 50);
        assert_eq!(render("_STARS_", 0.9, &[]), "");
        assert_eq!(render("x_STARS_", -4.0, &[]), "x");
        assert_eq!(render("_YESNO_", 7.0, &[]), "Yes");
        assert_eq!(render("_YESNO_", 1.0, &[]), "No");
        assert_eq!(render("_YESNOCAPS_", 7.0, &[]), "YES");
        assert_eq!(render("_YESNOCAPS_", 1.0, &[]), "NO");
        assert_eq!(render("_YESNO(spam,ham)_", 1.0, &[]), "ham");
        assert_eq!(render("_YESNO(spam,ham)_", 9.0, &[]), "spam");
    }

    #[test]
    fn unknown_tags_and_plain_text_verbatim() {
        assert_eq!(render("_FOO_ _SCORE_", 7.3, &[]), "_FOO_ 7.3");
        assert_eq!(render("_BAYES(x)_", 7.3, &[]), "_BAYES(x)_");
        assert_eq!(render("_score_", 7.3, &[]), "_score_");
        assert_eq!(render("*** SPAM ***", 7.3, &[]), "*** SPAM ***");
        assert_eq!(render("a_b", 7.3, &[]), "a_b");
        assert_eq!(render("_SCORE(0_", 7.3, &[]), "_SCORE(0_");
    }

    #[test]
    fn template_validation() {
        assert_eq!(Template::new(""), Err(TemplateError::Empty));
        assert_eq!(Template::new("é"), Err(TemplateError::NotAscii));
        assert!(matches!(
            Template::new(&"x".repeat(300)),
            Err(TemplateError::TooLong { .. })
        ));
        assert!(matches!(
            Template::new(&"_SCORE_ ".repeat(9)),
            Err(TemplateError::TooManyTags { .. })
        ));
        for bad in [
            "_SCORE__REQD_",
            "_TESTS(x)_",
            "_TESTS( )_",
            "_TESTS_x",
            "_TESTS_,",
            "_STARS( )_",
            "_STARS_*",
            "_STARS(ab)_",
        ] {
            assert!(
                matches!(Template::new(bad), Err(TemplateError::Ambiguous(_))),
                "{bad}"
            );
        }
        let t = Template::new(" \t**SPAM**\r\n  _SCORE_  ").unwrap();
        assert_eq!(t.as_str(), "**SPAM** _SCORE_");
    }

    #[test]
    fn strip_any_score_and_stacked_tags() {
        let t = Template::default();
        assert_eq!(t.strip_tags(b"**SPAM( 7.3)** hi"), b"hi");
        assert_eq!(t.strip_tags(b"**SPAM( -0.5)** hi"), b"hi");
        assert_eq!(t.strip_tags(b"**SPAM( 1000.0)**"), b"");
        assert_eq!(t.strip_tags(b"  **spam(\t 5.0)**   hi"), b"hi");
        assert_eq!(t.strip_tags(b"**SPAM( 5.3)** **SPAM( 5.2)** hi"), b"hi");
        // Not a tag of this template: untouched.
        assert_eq!(t.strip_tags(b"**SPAM** hi"), b"**SPAM** hi");
        assert_eq!(t.strip_tags(b"**SPAM( 7.3)**hi"), b"**SPAM( 7.3)**hi");
        assert_eq!(t.strip_tags(b"**SPAM( x)** hi"), b"**SPAM( x)** hi");
        assert_eq!(t.strip_tags(b"**SPAM( 7.)** hi"), b"**SPAM( 7.)** hi");
        assert_eq!(t.strip_tags(b""), b"");
    }

    #[test]
    fn strip_every_tag_kind() {
        let r = rules(&["A_1", "B"]);
        for (tpl, score) in [
            ("[SPAM _SCORE(00)_/_REQD_]", 2.4),
            ("[SPAM _SCORE(00)_/_REQD_]", 1234.5),
            ("[SPAM _SCORE(00)_/_REQD_]", -0.3),
            ("[SPAM _SCORE(0)_/_REQD_]", 0.4),
            ("[_SCORE( )_]", 2.4),
            ("SPAM _TESTS_", 9.0),
            ("SPAM _TESTS(;)_:", 9.0),
            ("(_STARS_)", 9.0),
            ("(_STARS(+)_)", 3.0),
            ("_STARS_ SPAM", 0.2),
            ("SPAM _STARS_", 0.2),
            ("SPAM _STARS_", 3.0),
            ("_YESNO(N,No)_", 9.0),
            ("_YESNO(N,No)_", 1.0),
            ("_YESNOCAPS_ _HITS_", 9.0),
            ("_FOO_ _SCORE_", 9.0),
        ] {
            let t = Template::new(tpl).unwrap();
            let v = TagValues::new(Score::new(score).unwrap(), Score::DEFAULT_THRESHOLD, &r);
            let tag = t.render(&v);
            let subject = format!("{tag} original words");
            assert_eq!(
                t.strip_tags(subject.as_bytes()),
                b"original words",
                "{tpl} {tag}"
            );
            // The tag alone (a message that had no subject).
            assert_eq!(t.strip_tags(tag.as_bytes()), b"", "{tpl} {tag}");
        }
    }

    #[test]
    fn stars_count() {
        assert_eq!(stars(Score::new(0.99).unwrap()), 0);
        assert_eq!(stars(Score::new(1.0).unwrap()), 1);
        assert_eq!(stars(Score::new(49.9).unwrap()), 49);
        assert_eq!(stars(Score::new(-10.0).unwrap()), 0);
        assert_eq!(stars(Score::new(1e6).unwrap()), 50);
    }
}
