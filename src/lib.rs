//! fbuild: byte-identical Arduino firmware, built fast. See docs/design.md.

pub mod error;
pub mod hash;
pub mod platform;
pub mod properties;
