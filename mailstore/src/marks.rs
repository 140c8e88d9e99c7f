//! The POP3 session's marks on a maildrop, shared by both backends.

use crate::error::Error;

/// Marks on a maildrop whose message list was fixed at open: message numbers
/// `1..=len` (RFC 1939 section 4), deletion marks that RSET undoes, and which
/// messages were retrieved (moved new -> cur at commit by the Maildir backend).
#[derive(Debug, Clone)]
pub(crate) struct Marks {
    deleted: Vec<bool>,
    retrieved: Vec<bool>,
}

impl Marks {
    /// No marks on `len` messages.
    pub(crate) fn new(len: usize) -> Self {
        Marks {
            deleted: vec![false; len],
            retrieved: vec![false; len],
        }
    }

    /// The 0-based index of message number `n`, which must exist and not be
    /// marked deleted.
    pub(crate) fn index(&self, n: usize) -> Result<usize, Error> {
        let i = n
            .checked_sub(1)
            .filter(|i| *i < self.deleted.len())
            .ok_or(Error::NoSuchMessage)?;
        if self.deleted_at(i) {
            return Err(Error::MessageDeleted);
        }
        Ok(i)
    }

    /// Whether message number `n` is marked deleted (false for a number out of range).
    pub(crate) fn is_deleted(&self, n: usize) -> bool {
        n.checked_sub(1).is_some_and(|i| self.deleted_at(i))
    }

    /// Marks message number `n` deleted.
    pub(crate) fn mark_deleted(&mut self, n: usize) -> Result<(), Error> {
        let i = self.index(n)?;
        if let Some(d) = self.deleted.get_mut(i) {
            *d = true;
        }
        Ok(())
    }

    /// Removes every deletion mark (RSET).
    pub(crate) fn unmark_all(&mut self) {
        self.deleted.iter_mut().for_each(|d| *d = false);
    }

    /// Records that the message at index `i` was retrieved.
    pub(crate) fn set_retrieved(&mut self, i: usize) {
        if let Some(r) = self.retrieved.get_mut(i) {
            *r = true;
        }
    }

    /// Whether the message at index `i` is marked deleted.
    pub(crate) fn deleted_at(&self, i: usize) -> bool {
        self.deleted.get(i).copied().unwrap_or(false)
    }

    /// Whether the message at index `i` was retrieved.
    pub(crate) fn retrieved_at(&self, i: usize) -> bool {
        self.retrieved.get(i).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_marks_and_reset() {
        let mut m = Marks::new(3);
        assert!(matches!(m.index(0), Err(Error::NoSuchMessage)));
        assert!(matches!(m.index(4), Err(Error::NoSuchMessage)));
        assert_eq!(m.index(3).ok(), Some(2));
        m.mark_deleted(2).unwrap();
        assert!(m.is_deleted(2) && m.deleted_at(1));
        assert!(!m.is_deleted(0) && !m.is_deleted(9));
        assert!(matches!(m.index(2), Err(Error::MessageDeleted)));
        assert!(matches!(m.mark_deleted(2), Err(Error::MessageDeleted)));
        m.unmark_all();
        assert!(!m.is_deleted(2));
        m.set_retrieved(0);
        m.set_retrieved(99);
        assert!(m.retrieved_at(0) && !m.retrieved_at(1) && !m.retrieved_at(99));
    }
}
