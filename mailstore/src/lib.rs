//! Durable Maildir++ storage with a POP3 maildrop view, a Spam folder and retention.
//!
//! This crate is under construction: its API lands with the issue that builds it.
//! See the workspace README for the crate map.
