//! The build cache, laid out as sccache's multi-level storage: `store` is the tiered
//! store every caller uses; behind it the local content-addressed store (`local`) and
//! optionally a shared remote tier (`remote`) that many machines read and write, over
//! Redis (`redis`) or plain HTTP GET/PUT (`http`). Both tiers implement `tier::Tier`;
//! `namespace` names what is cached and what is shared; `keys` holds every key rule.
//! Eviction and cleaning are local maintenance only.
//!
//! Dependencies point one way: tier <- local, remote <- redis/http (through the
//! `Backend` trait in `tier`), and store -> local, remote.

pub mod http;
pub mod keys;
pub mod local;
pub mod namespace;
pub mod paths;
pub mod redis;
pub mod remote;
pub mod store;
pub mod tier;
pub mod hash;
pub mod objects;

pub use namespace::Namespace;
