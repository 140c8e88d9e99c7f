//! Shared helpers for the Mailbag benchmarks (the benchmarks themselves are in `benches/`).
