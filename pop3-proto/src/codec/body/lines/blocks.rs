//! What the block line mode reads the same way with AVX2 and AVX-512: a
//! block's classification into masks ([`Classify`], one implementation per
//! instruction set) and the windows of the input it reads.

/// Octets classified at once.
pub(super) const BLOCK: usize = 64;

/// Whether the octet before the next block is CR, and whether it is LF
/// (whose following `.` is then still to be stuffed), as bit 0.
#[derive(Clone, Copy)]
pub(super) struct Carry {
    /// The octet before the next block is CR.
    pub(super) cr: u64,
    /// The octet before the next block is LF, so a `.` starting the next
    /// block is stuffed.
    pub(super) lf: u64,
}

impl Carry {
    /// At `pos`: the octet before is known, and a `.` after it, if it
    /// is a LF, was handled by the caller.
    pub(super) fn at(chunk: &[u8], pos: usize) -> Self {
        let cr = pos
            .checked_sub(1)
            .and_then(|p| chunk.get(p))
            .is_some_and(|&b| b == b'\r');
        Self {
            cr: u64::from(cr),
            lf: 0,
        }
    }
}

/// One block's masks, bit `k` for octet `k`.
pub(super) struct Masks {
    /// LFs not preceded by CR: a CR goes before each.
    pub(super) bare: u64,
    /// Every octet that gets an insert before it: `bare`, and `.`s that
    /// start a line (a second `.` goes before each).
    pub(super) ins: u64,
}

impl Masks {
    /// The masks of a block whose LFs, CRs and `.`s are `lf`, `cr` and
    /// `dot`, carrying what the next block needs into `carry`.
    #[inline(always)]
    pub(super) fn new(lf: u64, cr: u64, dot: u64, carry: &mut Carry) -> Self {
        let bare = lf & !((cr << 1) | carry.cr);
        let ins = bare | (dot & ((lf << 1) | carry.lf));
        carry.cr = cr >> 63;
        carry.lf = lf >> 63;
        Self { bare, ins }
    }
}

/// A block's classification with one instruction set.
pub(super) trait Classify: Copy {
    /// The masks of `block`, carrying what the next block needs.
    fn classify(self, block: &[u8; BLOCK], carry: &mut Carry) -> Masks;
}

/// `N` octets of `chunk` from `back` octets before `at`, by reference
/// (returning them by value would make the compiler copy them through
/// the stack).
#[inline(always)]
pub(super) fn window<const N: usize>(chunk: &[u8], at: usize, back: usize) -> Option<&[u8; N]> {
    let from = at.checked_sub(back)?;
    chunk.get(from..from.checked_add(N)?)?.try_into().ok()
}

/// The block at `at`.
#[inline(always)]
pub(super) fn load(chunk: &[u8], at: usize) -> Option<&[u8; BLOCK]> {
    window(chunk, at, 0)
}
