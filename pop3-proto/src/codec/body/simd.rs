//! Which instructions the body encoder runs with: AVX-512 (`pulp`'s `V4`
//! token) when the feature `avx512` is on and the CPU has it. The encoder
//! runs a whole chunk inside one function built for those instructions
//! ([`Simd::run`]), so that its block loops ([`super::lines`]) are inlined
//! into it with the caller's output (a `Vec`, a closure) held in registers
//! rather than reloaded through memory after every write.

/// The instructions found for one call of the encoder.
#[derive(Debug, Clone, Copy)]
pub(super) struct Simd {
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    v4: Option<pulp::x86::V4>,
}

impl Simd {
    /// No block paths: line ends found one at a time.
    pub(super) const NONE: Self = Self {
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        v4: None,
    };

    /// Runs `f` with the best instructions this CPU has: inside a function
    /// built for AVX-512 when it has them, otherwise as it is.
    #[inline(always)]
    pub(super) fn run<R>(f: impl FnOnce(Self) -> R) -> R {
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        if let Some(v4) = pulp::x86::V4::try_new() {
            return v4.vectorize(
                #[inline(always)]
                move || f(Self { v4: Some(v4) }),
            );
        }
        f(Self::NONE)
    }

    /// The AVX-512 token, when [`Simd::run`] found the instructions.
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    #[inline(always)]
    pub(super) fn v4(self) -> Option<pulp::x86::V4> {
        self.v4
    }

    /// Whether the block paths run on this CPU (for tests that must know).
    #[cfg(test)]
    pub(super) fn blocks_available() -> bool {
        #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
        if pulp::x86::V4::try_new().is_some() {
            return true;
        }
        false
    }
}
