//! Which instructions the body encoder runs with: AVX-512 (`pulp`'s `V4`
//! token, feature `avx512`) or AVX2 (`V3`, feature `simd`) when the CPU has
//! them. The encoder runs a whole chunk inside one function built for those
//! instructions ([`Simd::run`]), so that its block loops ([`super::lines`])
//! are inlined into it with the caller's output (a `Vec`, a closure) held in
//! registers rather than reloaded through memory after every write.

/// The instructions found for one call of the encoder.
#[derive(Debug, Clone, Copy)]
pub(super) struct Simd(Level);

#[derive(Debug, Clone, Copy)]
enum Level {
    /// No block paths: line ends found one at a time.
    Lines,
    #[cfg(all(target_arch = "x86_64", feature = "simd"))]
    V3(pulp::x86::V3),
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    V4(pulp::x86::V4),
}

impl Simd {
    /// No block paths: line ends found one at a time.
    pub(super) const NONE: Self = Self(Level::Lines);

    /// Runs `f` with the best instructions this CPU has: inside a function
    /// built for AVX-512 or AVX2 when it has them, otherwise as it is.
    #[inline(always)]
    pub(super) fn run<R>(f: impl FnOnce(Self) -> R) -> R {
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        if let Some(v4) = pulp::x86::V4::try_new().filter(|_| cap::allows(2)) {
            return v4.vectorize(
                #[inline(always)]
                move || f(Self(Level::V4(v4))),
            );
        }
        #[cfg(all(target_arch = "x86_64", feature = "simd"))]
        if let Some(v3) = pulp::x86::V3::try_new().filter(|_| cap::allows(1)) {
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
    /// line-by-line path, AVX2, AVX-512), with the level's name, so that
    /// tests cover every path the encoder can take here.
    #[cfg(test)]
    pub(super) fn each_level(mut f: impl FnMut(&'static str)) {
        for (name, level) in [("lines", 0), ("avx2", 1), ("avx512", 2)] {
            cap::set(level);
            let here = Self::run(|s| match s.0 {
                Level::Lines => 0,
                #[cfg(all(target_arch = "x86_64", feature = "simd"))]
                Level::V3(_) => 1,
                #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
                Level::V4(_) => 2,
            });
            if here == level {
                f(name);
            }
        }
        cap::set(u8::MAX);
    }
}

/// The highest level tests let [`Simd::run`] choose on this thread (no
/// limit outside tests).
mod cap {
    #[cfg(test)]
    std::thread_local! {
        static CAP: core::cell::Cell<u8> = const { core::cell::Cell::new(u8::MAX) };
    }

    /// Whether `level` (1 AVX2, 2 AVX-512) may be chosen.
    #[inline(always)]
    #[allow(dead_code)]
    pub(super) fn allows(level: u8) -> bool {
        #[cfg(test)]
        return CAP.with(|c| c.get() >= level);
        #[cfg(not(test))]
        {
            let _ = level;
            true
        }
    }

    /// Sets the highest level.
    #[cfg(test)]
    pub(super) fn set(level: u8) {
        CAP.with(|c| c.set(level));
    }
}
