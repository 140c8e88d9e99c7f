//! Example programs built from the Mailbag crates. The binaries live in `src/bin/`.
