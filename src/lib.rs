//! fbuild: byte-identical Arduino firmware, built fast. See docs/design.md, whose
//! data-flow diagram these folders follow.

pub mod arduino;
pub mod cache;
pub mod cli;
pub mod cpp;
pub mod discover;
pub mod emulator;
pub mod error;
pub mod exec;
pub mod filter;
pub mod pipeline;
pub mod plan;
pub mod project;
pub mod report;
pub mod targets;
pub mod upload;
