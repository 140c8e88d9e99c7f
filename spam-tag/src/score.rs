//! Scores, rule names and verdicts: the values every scorer produces.

use std::fmt;

/// A spam score in SpamAssassin points: always finite and within
/// `-`[`Score::MAX_ABS`]`..=`[`Score::MAX_ABS`].
///
/// Displayed like SpamAssassin's `sprintf("%2.1f")`: one decimal, the exact binary
/// value rounded (so `7.25` shows as `7.2`, `-0.04` as `-0.0`, `1000` as `1000.0`).
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::Score;
///
/// let s = Score::new(7.25).unwrap();
/// assert_eq!(s.to_string(), "7.2");
/// assert_eq!(Score::from_tenths(-3).to_string(), "-0.3");
/// assert!(Score::new(f64::NAN).is_err());
/// assert_eq!("1000.0".parse::<Score>().unwrap(), Score::from_tenths(10_000));
/// ```
#[derive(Clone, Copy, PartialEq, PartialOrd, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "f64", into = "f64"))]
pub struct Score(f64);

/// The error for a score that is not finite, out of range or not a decimal number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid spam score: {reason}")]
pub struct InvalidScore {
    reason: &'static str,
}

impl Score {
    /// The largest magnitude a score may have (one million points).
    pub const MAX_ABS: f64 = 1_000_000.0;
    /// Zero points.
    pub const ZERO: Score = Score(0.0);
    /// SpamAssassin's default `required_score`, 5.0.
    pub const DEFAULT_THRESHOLD: Score = Score(5.0);

    /// A score from a float; fails for NaN, infinities and magnitudes over [`Score::MAX_ABS`].
    pub fn new(value: f64) -> Result<Score, InvalidScore> {
        if !value.is_finite() {
            return Err(InvalidScore {
                reason: "not a finite number",
            });
        }
        if value.abs() > Self::MAX_ABS {
            return Err(InvalidScore {
                reason: "magnitude over one million",
            });
        }
        Ok(Score(value))
    }

    /// A score of `tenths / 10` points, clamped to the valid range.
    pub fn from_tenths(tenths: i32) -> Score {
        Score::saturating(f64::from(tenths) / 10.0)
    }

    /// A score from a float, clamped to the valid range (NaN becomes zero).
    pub fn saturating(value: f64) -> Score {
        if value.is_nan() {
            Score(0.0)
        } else {
            Score(value.clamp(-Self::MAX_ABS, Self::MAX_ABS))
        }
    }

    /// The score as a float.
    pub fn value(self) -> f64 {
        self.0
    }

    /// The sum of two scores, clamped to the valid range.
    #[must_use]
    pub fn saturating_add(self, other: Score) -> Score {
        Score::saturating(self.0 + other.0)
    }

    /// The value SpamAssassin shows for this score in `_SCORE_`/`_HITS_` and in
    /// `X-Spam-Status` (`Util::get_tag_value_for_score`): `%2.1f`, except that a ham
    /// score that would *display* as the threshold or above shows as `threshold - 0.1`
    /// (a 4.96 ham with threshold 5.0 shows `4.9`, never `5.0`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mailbag_spam_tag::Score;
    ///
    /// let reqd = Score::DEFAULT_THRESHOLD;
    /// assert_eq!(Score::new(4.96).unwrap().tag_value(reqd), "4.9");
    /// assert_eq!(Score::new(7.3).unwrap().tag_value(reqd), "7.3");
    /// ```
    pub fn tag_value(self, required: Score) -> String {
        let shown = self.to_string();
        let reqd = required.to_string();
        let is_spam = self >= required;
        let shown_num: f64 = shown.parse().unwrap_or(self.0);
        let reqd_num: f64 = reqd.parse().unwrap_or(required.0);
        if is_spam || shown_num < reqd_num {
            shown
        } else {
            format!("{:.1}", reqd_num - 0.1)
        }
    }
}

/// A score is never NaN, so `==` is an equivalence relation (`0.0 == -0.0`).
impl Eq for Score {}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}", self.0)
    }
}

impl fmt::Debug for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Score({})", self.0)
    }
}

impl TryFrom<f64> for Score {
    type Error = InvalidScore;
    fn try_from(value: f64) -> Result<Self, Self::Error> {
        Score::new(value)
    }
}

impl From<Score> for f64 {
    fn from(s: Score) -> f64 {
        s.0
    }
}

impl std::str::FromStr for Score {
    type Err = InvalidScore;

    /// Parses a plain decimal (`-?[0-9]+(\.[0-9]+)?`, at most 20 bytes), as spamd sends it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = InvalidScore {
            reason: "not a plain decimal number",
        };
        if s.is_empty() || s.len() > 20 {
            return Err(bad);
        }
        let digits = s.strip_prefix('-').unwrap_or(s);
        let (int, frac) = match digits.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (digits, None),
        };
        let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
            return Err(bad);
        }
        let v: f64 = s.parse().map_err(|_| bad.clone())?;
        Score::new(v)
    }
}

/// The name of a spam rule (`GTUBE`, `MISSING_DATE`, ...): 1 to [`RuleName::MAX_LEN`]
/// bytes of `[A-Za-z0-9_]`, as SpamAssassin rule names are. The restriction also makes
/// rule names safe to put into header fields.
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::RuleName;
///
/// let r = RuleName::new("MISSING_DATE").unwrap();
/// assert_eq!(r.as_str(), "MISSING_DATE");
/// assert!(RuleName::new("BAD NAME").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleName(String);

/// The error for a string that is not a valid [`RuleName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rule name (1 to 128 bytes of A-Z a-z 0-9 _ expected)")]
pub struct InvalidRuleName;

impl RuleName {
    /// The longest rule name accepted, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates a rule name.
    pub fn new(name: &str) -> Result<RuleName, InvalidRuleName> {
        if Self::is_valid(name.as_bytes()) {
            Ok(RuleName(name.to_owned()))
        } else {
            Err(InvalidRuleName)
        }
    }

    /// Whether `name` is a valid rule name.
    pub fn is_valid(name: &[u8]) -> bool {
        !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RuleName({})", self.0)
    }
}

impl TryFrom<&str> for RuleName {
    type Error = InvalidRuleName;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        RuleName::new(value)
    }
}

/// What a scorer found: the total score and the names of the rules that fired
/// (sorted, without duplicates, as SpamAssassin lists them in `tests=`).
///
/// The verdict carries no threshold: whether a message is spam is decided against the
/// user's threshold ([`crate::UserSettings::threshold`]) by [`crate::decide`].
///
/// # Examples
///
/// ```
/// use mailbag_spam_tag::{RuleName, Score, Verdict};
///
/// let v = Verdict::new(
///     Score::from_tenths(73),
///     vec![RuleName::new("B").unwrap(), RuleName::new("A").unwrap()],
/// );
/// assert_eq!(v.rules()[0].as_str(), "A");
/// assert!(v.is_spam(Score::DEFAULT_THRESHOLD));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    score: Score,
    rules: Vec<RuleName>,
}

impl Verdict {
    /// A verdict; the rule names are sorted and deduplicated.
    pub fn new(score: Score, mut rules: Vec<RuleName>) -> Verdict {
        rules.sort();
        rules.dedup();
        Verdict { score, rules }
    }

    /// The total score.
    pub fn score(&self) -> Score {
        self.score
    }

    /// The rules that fired, sorted.
    pub fn rules(&self) -> &[RuleName] {
        &self.rules
    }

    /// SpamAssassin's rule: spam when `score >= threshold`.
    pub fn is_spam(&self, threshold: Score) -> bool {
        self.score >= threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_perl_sprintf() {
        // Values checked against `perl -e 'printf("%2.1f", ...)'`.
        for (v, s) in [
            (0.25, "0.2"),
            (0.35, "0.3"),
            (0.05, "0.1"),
            (12.25, "12.2"),
            (-0.25, "-0.2"),
            (-0.04, "-0.0"),
            (1000.0, "1000.0"),
            (7.3, "7.3"),
        ] {
            assert_eq!(Score::new(v).unwrap().to_string(), s, "{v}");
        }
    }

    #[test]
    fn rejects_non_finite_and_huge() {
        assert!(Score::new(f64::INFINITY).is_err());
        assert!(Score::new(f64::NAN).is_err());
        assert!(Score::new(2e6).is_err());
        assert_eq!(Score::saturating(f64::NAN), Score::ZERO);
        assert_eq!(Score::saturating(1e300).value(), Score::MAX_ABS);
        assert_eq!(Score::from_tenths(i32::MAX).value(), Score::MAX_ABS);
    }

    #[test]
    fn parse_plain_decimals_only() {
        assert_eq!("2.7".parse::<Score>().unwrap(), Score::from_tenths(27));
        assert_eq!("-0.0".parse::<Score>().unwrap().to_string(), "-0.0");
        assert_eq!("5".parse::<Score>().unwrap(), Score::from_tenths(50));
        for bad in [
            "", "1e3", "NaN", "inf", "+1.0", ".5", "5.", "1.2.3", "--1", " 1",
        ] {
            assert!(bad.parse::<Score>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ham_clamp_of_tag_value() {
        let reqd = Score::DEFAULT_THRESHOLD;
        assert_eq!(Score::new(4.95).unwrap().tag_value(reqd), "4.9");
        assert_eq!(Score::new(4.94).unwrap().tag_value(reqd), "4.9");
        assert_eq!(Score::new(4.2).unwrap().tag_value(reqd), "4.2");
        assert_eq!(Score::new(5.0).unwrap().tag_value(reqd), "5.0");
        assert_eq!(Score::new(-3.0).unwrap().tag_value(reqd), "-3.0");
        assert_eq!(
            Score::new(-0.04).unwrap().tag_value(Score::ZERO),
            "-0.1",
            "ham shown as 0.0 against threshold 0.0 is clamped"
        );
    }

    #[test]
    fn rule_names() {
        assert!(RuleName::new("GTUBE").is_ok());
        assert!(RuleName::new("__LOCAL_1").is_ok());
        assert!(RuleName::new("").is_err());
        assert!(RuleName::new("A,B").is_err());
        assert!(RuleName::new(&"A".repeat(129)).is_err());
        assert!(RuleName::new(&"A".repeat(128)).is_ok());
    }

    #[test]
    fn verdict_sorts_and_dedups() {
        let r = |s| RuleName::new(s).unwrap();
        let v = Verdict::new(Score::ZERO, vec![r("Z"), r("A"), r("Z")]);
        assert_eq!(v.rules(), &[r("A"), r("Z")]);
        assert!(!v.is_spam(Score::DEFAULT_THRESHOLD));
        assert!(v.is_spam(Score::ZERO));
    }
}
