//! fbuild: byte-identical Arduino firmware, built fast. See docs/design.md.

pub mod cpp_lex;
pub mod error;
pub mod hash;
pub mod includes;
pub mod objcache;
pub mod plan;
pub mod platform;
pub mod properties;
pub mod prototypes;
pub mod store;
pub mod toolchain;
