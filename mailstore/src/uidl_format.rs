//! The form of a Maildir message's POP3 unique id (Dovecot's `pop3_uidl_format`):
//! after a move from another POP3 server, clients that leave mail on the server see
//! the ids they know only if this server makes them the same way.

use std::fmt;

/// How a message's POP3 unique id is made from its UID, its folder's UID validity
/// and its file's base name (the name before `:`). The forms are those of the POP3
/// servers ISPs move from, as Dovecot's migration guide names them; the numbers
/// print as in Dovecot (`%X` as lower-case hex).
///
/// # Examples
///
/// ```
/// use mailbag_mailstore::UidlFormat;
///
/// assert_eq!(UidlFormat::default().template(), "%08Xu%08Xv");
/// let courier = UidlFormat::parse("%v-%u").unwrap();
/// assert_eq!(courier, UidlFormat::ValidityDashUid);
/// assert!(UidlFormat::parse("%Mf").is_none());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UidlFormat {
    /// `%08Xu%08Xv`: 8 hex digits of the UID, then 8 of the validity (Dovecot's
    /// default since 1.0).
    #[default]
    UidValidity,
    /// `%08Xv%08Xu`: the validity first (UW-IMAP).
    ValidityUid,
    /// `%v.%u`: decimal (Cyrus from 2.1.4, Dovecot 0.99).
    ValidityDotUid,
    /// `%v-%u`: decimal (Courier version 2).
    ValidityDashUid,
    /// `%u`: the decimal UID alone (Courier version 1, Cyrus before 2.1.4).
    Uid,
    /// `%f` or `%g`: the file's base name (Courier version 0; Dovecot's GUID on
    /// Maildir).
    BaseName,
}

impl UidlFormat {
    /// Every form, in the order of the list above.
    pub const ALL: [UidlFormat; 6] = [
        UidlFormat::UidValidity,
        UidlFormat::ValidityUid,
        UidlFormat::ValidityDotUid,
        UidlFormat::ValidityDashUid,
        UidlFormat::Uid,
        UidlFormat::BaseName,
    ];

    /// Reads a `pop3_uidl_format` value; `%g` is taken as `%f`. `None` for any
    /// other (such as tpop3d's `%Mf`).
    pub fn parse(template: &str) -> Option<UidlFormat> {
        if template == "%g" {
            return Some(UidlFormat::BaseName);
        }
        UidlFormat::ALL
            .into_iter()
            .find(|f| f.template() == template)
    }

    /// The `pop3_uidl_format` value of this form.
    pub fn template(self) -> &'static str {
        match self {
            UidlFormat::UidValidity => "%08Xu%08Xv",
            UidlFormat::ValidityUid => "%08Xv%08Xu",
            UidlFormat::ValidityDotUid => "%v.%u",
            UidlFormat::ValidityDashUid => "%v-%u",
            UidlFormat::Uid => "%u",
            UidlFormat::BaseName => "%f",
        }
    }

    /// Whether the id is made from the UID (then a UID this store gives in a
    /// folder Dovecot numbered too gets an `m`, as in the default form).
    pub(crate) fn uses_uid(self) -> bool {
        self != UidlFormat::BaseName
    }

    /// The id of a message.
    pub(crate) fn render(self, uid: u32, validity: u32, base: &str) -> String {
        match self {
            UidlFormat::UidValidity => format!("{uid:08x}{validity:08x}"),
            UidlFormat::ValidityUid => format!("{validity:08x}{uid:08x}"),
            UidlFormat::ValidityDotUid => format!("{validity}.{uid}"),
            UidlFormat::ValidityDashUid => format!("{validity}-{uid}"),
            UidlFormat::Uid => uid.to_string(),
            UidlFormat::BaseName => base.to_owned(),
        }
    }
}

impl fmt::Display for UidlFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.template())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_back_and_renders_as_its_server_does() {
        for f in UidlFormat::ALL {
            assert_eq!(UidlFormat::parse(f.template()), Some(f));
        }
        assert_eq!(UidlFormat::parse("%g"), Some(UidlFormat::BaseName));
        assert_eq!(UidlFormat::parse("%08xu%08xv"), None);
        let base = "1700000000.M1P2.host,S=10";
        let ids: Vec<String> = UidlFormat::ALL
            .iter()
            .map(|f| f.render(26, 1_700_000_000, base))
            .collect();
        assert_eq!(
            ids,
            [
                "0000001a6553f100",
                "6553f1000000001a",
                "1700000000.26",
                "1700000000-26",
                "26",
                base
            ]
        );
    }
}
