//! The build cache: a local content-addressed store (`store`), optionally backed by a
//! shared remote tier (`remote`) that many machines read and write, over Redis
//! (`redis`) or plain HTTP GET/PUT (`http`). Lookups go local, then remote; a remote
//! hit is kept locally. Eviction and cleaning are local maintenance only.

pub mod http;
pub mod keys;
pub mod redis;
pub mod remote;
pub mod store;
