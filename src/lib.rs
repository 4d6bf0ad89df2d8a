//! fbuild: byte-identical Arduino firmware, built fast. See docs/design.md.

pub mod cache;
pub mod cli;
pub mod compiledb;
pub mod console;
pub mod cpp_lex;
pub mod diagnostics;
pub mod discover;
pub mod emulator;
pub mod error;
pub mod exec;
pub mod filter;
pub mod hash;
pub mod includes;
pub mod launcher;
pub mod library;
pub mod link_failure;
pub mod macros;
pub mod matrix;
pub mod objcache;
pub mod pipeline;
pub mod plan;
pub mod platform;
pub mod properties;
pub mod project;
pub mod prototypes;
pub mod report;
pub mod runtime_tools;
pub mod shard;
pub mod sketch;
pub mod targets;
pub mod toolchain;
pub mod upload;

/// The local store keeps its old path for callers: `crate::store::Store`.
pub use cache::store;
