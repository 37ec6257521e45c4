//! The package of jilo's product examples (`cargo run --example studio` at the workspace root).
//!
//! Its library holds nothing but the README's Rust examples, compiled as doctests (`cargo test
//! -p jilo-examples --doc`): each is a whole function with its imports, so the README cannot
//! drift from the API.

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct Readme;
