//! The tier seam: what the local store and the remote tier both are (`Tier`), the
//! entry format they share (a checksummed blob of named files), and the small
//! `Backend` trait a remote server speaks through. Backends and tiers depend on this
//! module; the tiered store (`store.rs`) depends on them; nothing points back.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::namespace::Namespace;

/// blake3 hash of everything that determines an entry, computed by the caller.
pub type Key = [u8; 32];

/// Lower-case hex of a key (64 chars).
pub fn key_hex(k: &Key) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in k {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// A cache entry as files in memory: (name, bytes).
pub type Files = Vec<(String, Vec<u8>)>;

/// A record is shared with a tier that only keeps entries as an entry of one file.
pub const RECORD_FILE: &str = "record";

/// Each requested file of an entry, with its destination; `None` when the entry lacks
/// one (it was written with another file set).
pub fn pick<'f, 'd>(files: &'f Files, dests: &[(&str, &'d Path)]) -> Option<Vec<(&'f [u8], &'d Path)>> {
    dests.iter().map(|(name, dest)| files.iter().find(|(n, _)| n == name).map(|(_, data)| (data.as_slice(), *dest))).collect()
}

/// One level of the cache (sccache's multi-level storage): the local store or the
/// remote. The tiered store asks them in order and fills nearer ones from farther ones.
pub trait Tier: Send + Sync {
    /// Whether a lookup here costs no network round trip.
    fn is_near(&self) -> bool;
    /// The verified files of an entry, or `None` (absent, damaged, or unreachable).
    fn get_entry(&self, ns: Namespace, key: &Key) -> Option<Files>;
    /// Whether an entry is there already, so a put may skip reading its files.
    fn has_entry(&self, ns: Namespace, key: &Key) -> bool;
    /// Drop an entry found with another file set: it would block a fresh put.
    fn forget_entry(&self, ns: Namespace, key: &Key);
    /// Keep an entry, whole or not at all.
    fn put_entry(&self, ns: Namespace, key: &Key, files: &[(&str, &[u8])]) -> Result<()>;
    /// A small record, or `None`.
    fn get_record(&self, ns: Namespace, key: &Key) -> Option<Vec<u8>>;
    /// Keep a small record (last writer wins).
    fn put_record(&self, ns: Namespace, key: &Key, data: &[u8]) -> Result<()>;
}

/// How long to wait for a connection to the server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for each read or write on a connection: a server slower than
/// this is treated as down.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a backend call failed. A missing entry is not a failure (`Ok(None)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    /// Cannot talk to the server: refused, reset, timed out, garbled reply.
    Unavailable(String),
    /// The server answered but will not store this (full, read-only, forbidden).
    Refused(String),
}

/// A shared store of blobs by name. Implementations must make a put all-or-nothing:
/// a reader sees the old blob, no blob, or the whole new one.
pub trait Backend: Send + Sync {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, RemoteError>;
    fn put(&self, name: &str, blob: &[u8]) -> Result<(), RemoteError>;
}

/// Split `HOST[:PORT]` (IPv6 in brackets) with a default port.
pub fn host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed [ in host")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?,
    };
    Ok((host.to_string(), port))
}

const MAGIC: &[u8; 8] = b"FBREMOT1";
const HEADER: usize = 8 + 8 + 32;

fn checksum(ns: &str, key: &Key, payload: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"fbuild-remote-entry-v1\0");
    h.update(ns.as_bytes());
    h.update(&[0]);
    h.update(key);
    h.update(payload);
    *h.finalize().as_bytes()
}

/// Blob layout: magic, payload length, checksum of (namespace, key, payload), then
/// the payload: file count, and per file its name and bytes, each length-prefixed.
pub fn encode(ns: &str, key: &Key, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&(files.len() as u32).to_le_bytes());
    for (name, data) in files {
        payload.extend_from_slice(&(name.len() as u32).to_le_bytes());
        payload.extend_from_slice(name.as_bytes());
        payload.extend_from_slice(&(data.len() as u64).to_le_bytes());
        payload.extend_from_slice(data);
    }
    let mut blob = Vec::with_capacity(HEADER + payload.len());
    blob.extend_from_slice(MAGIC);
    blob.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    blob.extend_from_slice(&checksum(ns, key, &payload));
    blob.extend_from_slice(&payload);
    blob
}

/// The files of a blob stored under `ns`/`key`, or `None` if it fails verification.
pub fn decode(ns: &str, key: &Key, blob: &[u8]) -> Option<Files> {
    if blob.len() < HEADER || &blob[..8] != MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(blob[8..16].try_into().ok()?);
    let payload = &blob[HEADER..];
    if len != payload.len() as u64 || blob[16..48] != checksum(ns, key, payload) {
        return None;
    }
    let mut rest = payload;
    let mut take = |n: usize| -> Option<&[u8]> {
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().ok()?);
    let mut files = Vec::new();
    for _ in 0..count {
        let name_len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let name = String::from_utf8(take(name_len)?.to_vec()).ok()?;
        let data_len = usize::try_from(u64::from_le_bytes(take(8)?.try_into().ok()?)).ok()?;
        files.push((name, take(data_len)?.to_vec()));
    }
    Some(files)
}

