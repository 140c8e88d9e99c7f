//! Which instructions the body encoder runs with: AVX-512 (`pulp`'s `V4`
//! token, feature `avx512`) or AVX2 (`V3`, feature `simd`) when the CPU has
//! them. The encoder runs a whole chunk inside one function built for those
//! instructions ([`Simd::run`]), so that its block loops ([`super::lines`])
//! are inlined into it with the caller's output (a `Vec`, a closure) held in
//! registers rather than reloaded through memory after every write.

/// The instructions found for one call of the encoder.
#[derive(Debug, Clone, Copy)]
pub(super) struct Simd(Level);

/// The instruction level, with the token that proves the CPU has it.
#[derive(Debug, Clone, Copy)]
enum Level {
    /// No block paths: line ends found one at a time.
    Lines,
    /// AVX2 (feature `simd`).
    #[cfg(all(target_arch = "x86_64", feature = "simd"))]
    V3(pulp::x86::V3),
    /// AVX-512 (feature `avx512`).
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    V4(pulp::x86::V4),
}

// Outside tests only the ranks of the levels built are read.
#[cfg_attr(not(test), allow(dead_code))]
impl Level {
    /// [`Level::Lines`]'s rank: tests cap [`Simd::run`]'s choice by rank.
    const RANK_LINES: u8 = 0;
    /// The AVX2 level's rank.
    const RANK_V3: u8 = 1;
    /// The AVX-512 level's rank.
    const RANK_V4: u8 = 2;

    /// The level's rank, higher for more instructions.
    #[cfg(test)]
    fn rank(self) -> u8 {
        match self {
            Level::Lines => Self::RANK_LINES,
            #[cfg(all(target_arch = "x86_64", feature = "simd"))]
            Level::V3(_) => Self::RANK_V3,
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            Level::V4(_) => Self::RANK_V4,
        }
    }
}

impl Simd {
    /// No block paths: line ends found one at a time.
    pub(super) const NONE: Self = Self(Level::Lines);

    /// Runs `f` with the best instructions this CPU has: inside a function
    /// built for AVX-512 or AVX2 when it has them, otherwise as it is.
    #[inline(always)]
    pub(super) fn run<R>(f: impl FnOnce(Self) -> R) -> R {
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        if let Some(v4) = pulp::x86::V4::try_new().filter(|_| cap::allows(Level::RANK_V4)) {
            return v4.vectorize(
                #[inline(always)]
                move || f(Self(Level::V4(v4))),
            );
        }
        #[cfg(all(target_arch = "x86_64", feature = "simd"))]
        if let Some(v3) = pulp::x86::V3::try_new().filter(|_| cap::allows(Level::RANK_V3)) {
            return v3.vectorize(
                #[inline(always)]
                move || f(Self(Level::V3(v3))),
            );
        }
        f(Self::NONE)
    }

    /// The AVX2 token, when [`Simd::run`] chose AVX2.
    #[cfg(all(target_arch = "x86_64", feature = "simd"))]
    #[inline(always)]
    pub(super) fn v3(self) -> Option<pulp::x86::V3> {
        match self.0 {
            Level::V3(v3) => Some(v3),
            _ => None,
        }
    }

    /// The AVX-512 token, when [`Simd::run`] chose AVX-512.
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    #[inline(always)]
    pub(super) fn v4(self) -> Option<pulp::x86::V4> {
        match self.0 {
            Level::V4(v4) => Some(v4),
            _ => None,
        }
    }

    /// Whether the block paths run on this CPU (for tests that must know).
    #[cfg(test)]
    pub(super) fn blocks_available() -> bool {
        Self::run(|s| !matches!(s.0, Level::Lines))
    }

    /// Runs `f` once under each instruction level this CPU has (the
    /// line-by-line path, AVX2, AVX-512, as far as the features build them),
    /// with the level's name, so that tests cover every path the encoder can
    /// take here; asserts that each level the CPU has was run.
    #[cfg(test)]
    pub(super) fn each_level(mut f: impl FnMut(&'static str)) {
        let mut ran = std::vec::Vec::new();
        for (name, rank) in [
            ("lines", Level::RANK_LINES),
            ("avx2", Level::RANK_V3),
            ("avx512", Level::RANK_V4),
        ] {
            let _cap = cap::Cap::new(rank);
            if Self::run(|s| s.0.rank()) == rank {
                f(name);
                ran.push(name);
            }
        }
        #[cfg(all(target_arch = "x86_64", feature = "simd"))]
        let avx2 = pulp::x86::V3::try_new().is_some();
        #[cfg(not(all(target_arch = "x86_64", feature = "simd")))]
        let avx2 = false;
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        let avx512 = pulp::x86::V4::try_new().is_some();
        #[cfg(not(all(target_arch = "x86_64", feature = "avx512")))]
        let avx512 = false;
        let want = [("lines", true), ("avx2", avx2), ("avx512", avx512)]
            .into_iter()
            .filter_map(|(name, here)| here.then_some(name))
            .collect::<std::vec::Vec<_>>();
        assert_eq!(ran, want, "instruction levels run");
    }
}

/// The highest level tests let [`Simd::run`] choose on this thread (no
/// limit outside tests).
mod cap {
    #[cfg(test)]
    std::thread_local! {
        /// The highest rank [`Simd::run`] may choose on this thread.
        static CAP: core::cell::Cell<u8> = const { core::cell::Cell::new(u8::MAX) };
    }

    /// Whether the level of rank `rank` may be chosen.
    #[inline(always)]
    #[cfg_attr(not(all(target_arch = "x86_64", feature = "simd")), allow(dead_code))]
    pub(super) fn allows(rank: u8) -> bool {
        #[cfg(test)]
        return CAP.with(|c| c.get() >= rank);
        #[cfg(not(test))]
        {
            let _ = rank;
            true
        }
    }

    /// Caps the level while it lives, then restores the previous cap (also
    /// when a test panics).
    #[cfg(test)]
    pub(super) struct Cap(u8);

    #[cfg(test)]
    impl Cap {
        /// Caps at rank `rank`.
        pub(super) fn new(rank: u8) -> Self {
            Self(CAP.with(|c| c.replace(rank)))
        }
    }

    #[cfg(test)]
    impl Drop for Cap {
        fn drop(&mut self) {
            CAP.with(|c| c.set(self.0));
        }
    }
}
