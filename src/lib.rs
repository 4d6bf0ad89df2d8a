//! fbuild: byte-identical Arduino firmware, built fast. See docs/design.md.

pub mod cache;
pub mod cli;
pub mod cpp_lex;
pub mod diagnostics;
pub mod error;
pub mod exec;
pub mod hash;
pub mod includes;
pub mod launcher;
pub mod library;
pub mod macros;
pub mod objcache;
pub mod pipeline;
pub mod plan;
pub mod platform;
pub mod properties;
pub mod prototypes;
pub mod report;
pub mod shard;
pub mod sketch;
pub mod toolchain;

/// The local store keeps its old path for callers: `crate::store::Store`.
pub use cache::store;
