//! The per-folder `mailbag-uidlist` index: UID validity, next UID, and for
//! every known message its UID and CRLF size, keyed by the file's base name.
//!
//! ```text
//! mailbag-uidlist 1 V1764000000 N4
//! 1 2100 1764000000.M5P9Q1.mx,S=2048,W=2100
//! 3 517 1764000001.M1P77.other-mta
//! ```
//!
//! The file is read from disk, so its parser treats it as untrusted: bad lines
//! are skipped (those messages get new UIDs), a bad header discards the file
//! (the folder gets a new UID validity, so no UID string is ever reused).
//!
//! A Dovecot `dovecot-uidlist` (version 3) can seed a new index, so that UIDs
//! stay the same when a Maildir moves from Dovecot to us.

use std::collections::HashSet;

/// Name of our index file in a Maildir folder.
pub(crate) const FILE_NAME: &str = "mailbag-uidlist";
const MAGIC: &str = "mailbag-uidlist 1 ";

/// One indexed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) uid: u32,
    pub(crate) crlf_size: Option<u64>,
    pub(crate) base: String,
}

/// A parsed index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UidList {
    pub(crate) uidvalidity: u32,
    pub(crate) next_uid: u32,
    pub(crate) records: Vec<Record>,
}

fn valid_base(b: &str) -> bool {
    !b.is_empty()
        && !b.starts_with('.')
        && !b
            .bytes()
            .any(|c| c == b'/' || c == b':' || c < b' ' || c == 0x7f)
}

fn header_field(tok: &str, tag: char) -> Option<u32> {
    let v = tok.strip_prefix(tag)?;
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

impl UidList {
    /// An empty index.
    pub(crate) fn new(uidvalidity: u32) -> Self {
        UidList {
            uidvalidity: uidvalidity.max(1),
            next_uid: 1,
            records: Vec::new(),
        }
    }

    /// Parses our format; `None` when the header is unusable.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n');
        let header = lines.next()?.strip_prefix(MAGIC)?;
        let mut toks = header.split(' ');
        let uidvalidity = header_field(toks.next()?, 'V').filter(|v| *v != 0)?;
        let next_uid = header_field(toks.next()?, 'N').filter(|v| *v != 0)?;
        let mut list = UidList {
            uidvalidity,
            next_uid,
            records: Vec::new(),
        };
        for line in lines {
            let mut parts = line.splitn(3, ' ');
            let (Some(uid), Some(size), Some(base)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(uid) = header_field_plain(uid) else {
                continue;
            };
            let crlf_size = if size == "-" {
                None
            } else {
                match size.parse::<u64>() {
                    Ok(s) if size.bytes().all(|b| b.is_ascii_digit()) => Some(s),
                    _ => continue,
                }
            };
            if uid == 0 || !valid_base(base) {
                continue;
            }
            list.records.push(Record {
                uid,
                crlf_size,
                base: base.to_owned(),
            });
        }
        list.normalize();
        Some(list)
    }

    /// Seeds an index from Dovecot's `dovecot-uidlist` (version 3):
    /// `3 V<validity> N<next> ...` then `<uid> [fields] :<file name>`.
    pub(crate) fn from_dovecot(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n');
        let mut header = lines.next()?.split(' ');
        if header.next()? != "3" {
            return None;
        }
        let mut uidvalidity = None;
        let mut next_uid = None;
        for tok in header {
            if tok.starts_with('V') {
                uidvalidity = header_field(tok, 'V');
            } else if tok.starts_with('N') {
                next_uid = header_field(tok, 'N');
            }
        }
        let mut list = UidList {
            uidvalidity: uidvalidity.filter(|v| *v != 0)?,
            next_uid: next_uid.filter(|v| *v != 0)?,
            records: Vec::new(),
        };
        for line in lines {
            let Some((left, name)) = line.split_once(':') else {
                continue;
            };
            let mut fields = left.split(' ');
            let Some(uid) = fields.next().and_then(header_field_plain) else {
                continue;
            };
            let crlf_size = fields
                .filter_map(|f| f.strip_prefix('W'))
                .find_map(|v| v.parse::<u64>().ok());
            let base = name.split(':').next().unwrap_or("");
            if uid == 0 || !valid_base(base) {
                continue;
            }
            list.records.push(Record {
                uid,
                crlf_size,
                base: base.to_owned(),
            });
        }
        list.normalize();
        Some(list)
    }

    /// Drops duplicate UIDs and bases (first wins), sorts by UID and makes
    /// `next_uid` larger than every UID.
    fn normalize(&mut self) {
        let mut uids = HashSet::new();
        let mut bases = HashSet::new();
        self.records
            .retain(|r| uids.insert(r.uid) && bases.insert(r.base.clone()));
        self.records.sort_by_key(|r| r.uid);
        if let Some(max) = self.records.last().map(|r| r.uid)
            && self.next_uid <= max
        {
            self.next_uid = max.saturating_add(1);
        }
    }

    /// Our file format.
    pub(crate) fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.records.len() * 64);
        out.extend_from_slice(
            format!("{MAGIC}V{} N{}\n", self.uidvalidity, self.next_uid).as_bytes(),
        );
        for r in &self.records {
            let size = r
                .crlf_size
                .map_or_else(|| "-".to_owned(), |s| s.to_string());
            out.extend_from_slice(format!("{} {} {}\n", r.uid, size, r.base).as_bytes());
        }
        out
    }
}

fn header_field_plain(tok: &str) -> Option<u32> {
    if tok.is_empty() || tok.len() > 10 || !tok.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tok.parse().ok()
}

/// Parses arbitrary bytes as both index formats, for fuzzing: never panics,
/// and whatever parses serializes to something that parses to the same value.
#[doc(hidden)]
pub fn fuzz_uidlist(bytes: &[u8]) {
    for parsed in [UidList::parse(bytes), UidList::from_dovecot(bytes)]
        .into_iter()
        .flatten()
    {
        let again = UidList::parse(&parsed.serialize());
        assert_eq!(again.as_ref(), Some(&parsed), "uidlist round trip");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_our_format() {
        let text =
            b"mailbag-uidlist 1 V17 N4\n1 2100 a,S=1\n3 - b\nbad line\n0 1 zero\n2 5 a,S=1\n";
        let l = UidList::parse(text).unwrap();
        assert_eq!((l.uidvalidity, l.next_uid), (17, 4));
        assert_eq!(
            l.records,
            vec![
                Record {
                    uid: 1,
                    crlf_size: Some(2100),
                    base: "a,S=1".into()
                },
                Record {
                    uid: 3,
                    crlf_size: None,
                    base: "b".into()
                },
            ]
        );
        assert_eq!(UidList::parse(&l.serialize()), Some(l));
    }

    #[test]
    fn bad_header_is_rejected_and_next_uid_is_repaired() {
        assert!(UidList::parse(b"mailbag-uidlist 1 V0 N4\n").is_none());
        assert!(UidList::parse(b"something else\n").is_none());
        assert!(UidList::parse(b"").is_none());
        let l = UidList::parse(b"mailbag-uidlist 1 V9 N2\n7 1 x\n").unwrap();
        assert_eq!(l.next_uid, 8);
    }

    #[test]
    fn seeds_from_dovecot_uidlist() {
        let text = b"3 V1764281234 N3 G3085f01b7f11094c501100008c4a11c1\n\
1 :1764281000.M1P2.vm,S=100,W=104:2,S\n\
2 W300 :1764281001.M2P2.vm\n";
        let l = UidList::from_dovecot(text).unwrap();
        assert_eq!((l.uidvalidity, l.next_uid), (1_764_281_234, 3));
        assert_eq!(l.records.len(), 2);
        assert_eq!(l.records[0].base, "1764281000.M1P2.vm,S=100,W=104");
        assert_eq!(l.records[1].crlf_size, Some(300));
        assert!(UidList::from_dovecot(b"1 2 3\n").is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            fuzz_uidlist(&bytes);
        }

        #[test]
        fn structured_input_round_trips(v in 1u32.., n in 1u32..1000,
            recs in proptest::collection::vec((1u32..2000, proptest::option::of(any::<u64>()), "[a-zA-Z0-9.,=]{1,20}"), 0..20)) {
            let mut l = UidList { uidvalidity: v, next_uid: n, records: recs.into_iter()
                .map(|(uid, crlf_size, base)| Record { uid, crlf_size, base }).collect() };
            l.normalize();
            if l.records.iter().all(|r| valid_base(&r.base)) {
                prop_assert_eq!(UidList::parse(&l.serialize()), Some(l));
            }
        }
    }
}
