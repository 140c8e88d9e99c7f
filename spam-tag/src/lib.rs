//! Spam scoring, SpamAssassin-style subject tagging and per-user routing.
//!
//! This crate is under construction: its API lands with the issue that builds it.
//! See the workspace README for the crate map.
