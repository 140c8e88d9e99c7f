//! POP-before-SMTP relay authorization (sans-IO) and Postfix policy delegation.
//!
//! This crate is under construction: its API lands with the issue that builds it.
//! See the workspace README for the crate map.
