//! Sans-IO SMTP codec and server session.
//!
//! This crate is under construction: its API lands with the issue that builds it.
//! See the workspace README for the crate map.
