//! What the standard prelude gives every test: the crate is `#![no_std]`
//! (its core needs only `alloc`), its unit tests are not. Each test module
//! takes these with `use crate::test_prelude::*;`; not every crate uses
//! all of them.
#![allow(unused_imports)]

pub(crate) use std::borrow::ToOwned;
pub(crate) use std::boxed::Box;
pub(crate) use std::format;
pub(crate) use std::string::{String, ToString};
pub(crate) use std::vec;
pub(crate) use std::vec::Vec;
