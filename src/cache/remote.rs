//! The remote tier behind the local store: a cache shared by many machines (CI
//! runners), over Redis or plain HTTP GET/PUT as WebDAV servers speak it.
//!
//! A backend only moves opaque blobs by name. This module turns a cache entry (named
//! files) into a blob that carries its own checksum, bound to its namespace and key,
//! so a corrupt, truncated or misplaced blob is a miss, never a wrong object. Server
//! trouble costs one warning and never a failed build: an unreachable or slow server
//! turns the tier off for the rest of the run; a server that refuses writes (full,
//! read-only) turns off writes only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::store::{key_hex, Key};

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

/// Namespaces worth sharing between machines: build results and their manifests.
/// Facts about this machine's own tools ("toolchain") stay local.
/// Discovery answers and remembered link failures are build results like objects: a
/// record is only used after its headers are hashed again on this machine.
const SHARED: &[&str] = &["object", "manifest", "archive", "link", "link-meta", "failure", "failed-source", "link-failure", "discover"];

pub fn is_shared(ns: &str) -> bool {
    SHARED.contains(&ns)
}

const MAGIC: &[u8; 8] = b"FBREMOT1";
const HEADER: usize = 8 + 8 + 32;

/// A cache entry as files in memory: (name, bytes).
pub type Files = Vec<(String, Vec<u8>)>;

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

/// What the remote tier did during a run (results.json `cache.remote`).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct RemoteStats {
    /// The server, without any password.
    pub url: String,
    pub read_only: bool,
    pub hits: u64,
    pub misses: u64,
    /// Entries found but failing verification (corrupt, truncated): counted as misses too.
    pub rejected: u64,
    pub stores: u64,
    pub errors: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Time spent waiting on the server, summed over threads.
    pub seconds: f64,
    /// Why the tier was turned off during the run, if it was.
    pub disabled: Option<String>,
}

impl RemoteStats {
    pub fn requests(&self) -> u64 {
        self.hits + self.misses + self.stores + self.errors
    }
}

pub struct Remote {
    backend: Box<dyn Backend>,
    url: String,
    read_only: bool,
    reads_off: AtomicBool,
    writes_off: AtomicBool,
    warned: AtomicBool,
    stats: Mutex<RemoteStats>,
}

/// `redis://[:PASSWORD@]HOST[:PORT][/DB]` or `http://HOST[:PORT][/PREFIX]`.
/// Nothing is contacted yet: the first lookup connects.
pub fn open(url: &str, read_only: bool) -> Result<Remote, String> {
    let fix = "use redis://HOST:PORT or http://HOST:PORT/PREFIX";
    let backend: Box<dyn Backend> = if let Some(rest) = url.strip_prefix("redis://") {
        Box::new(super::redis::Redis::new(rest).map_err(|e| format!("--remote-cache {url}: {e}; {fix}"))?)
    } else if let Some(rest) = url.strip_prefix("http://") {
        Box::new(super::http::Http::new(rest).map_err(|e| format!("--remote-cache {url}: {e}; {fix}"))?)
    } else {
        return Err(format!("--remote-cache {url}: unsupported scheme; {fix} (for https, put a TLS proxy on this machine)"));
    };
    Ok(Remote::with_backend(backend, &public_url(url), read_only))
}

/// The URL as logs may show it: any `user:password@` removed.
fn public_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
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

fn entry_name(ns: &str, key: &Key) -> String {
    format!("fbuild-v1/{ns}/{}", key_hex(key))
}

impl Remote {
    pub fn with_backend(backend: Box<dyn Backend>, url: &str, read_only: bool) -> Remote {
        Remote {
            backend,
            url: url.to_string(),
            read_only,
            reads_off: AtomicBool::new(false),
            writes_off: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            stats: Mutex::new(RemoteStats { url: url.to_string(), read_only, ..RemoteStats::default() }),
        }
    }

    pub fn stats(&self) -> RemoteStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, f: impl FnOnce(&mut RemoteStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Server trouble: turn off what no longer works and warn once per run.
    fn trouble(&self, e: RemoteError) {
        let (what, all) = match e {
            RemoteError::Unavailable(m) => (format!("unreachable ({m}); building with the local cache only"), true),
            RemoteError::Refused(m) => (format!("refused a write ({m}); not writing to it for the rest of this run"), false),
        };
        self.writes_off.store(true, Ordering::SeqCst);
        if all {
            self.reads_off.store(true, Ordering::SeqCst);
        }
        self.record(|s| {
            s.errors += 1;
            if all || s.disabled.is_none() {
                s.disabled = Some(what.clone());
            }
        });
        if !self.warned.swap(true, Ordering::SeqCst) {
            eprintln!("warning: remote cache {} {what}", self.url);
        }
    }

    /// The verified files of an entry, or `None` (absent, corrupt, or server trouble).
    pub fn get(&self, ns: &str, key: &Key) -> Option<Files> {
        if !is_shared(ns) || self.reads_off.load(Ordering::SeqCst) {
            return None;
        }
        let t = Instant::now();
        let r = self.backend.get(&entry_name(ns, key));
        let secs = t.elapsed().as_secs_f64();
        self.record(|s| s.seconds += secs);
        match r {
            Ok(Some(blob)) => {
                let files = decode(ns, key, &blob);
                self.record(|s| match &files {
                    Some(_) => {
                        s.hits += 1;
                        s.bytes_read += blob.len() as u64;
                    }
                    None => {
                        s.misses += 1;
                        s.rejected += 1;
                    }
                });
                files
            }
            Ok(None) => {
                self.record(|s| s.misses += 1);
                None
            }
            Err(e) => {
                self.trouble(e);
                None
            }
        }
    }

    /// Share an entry (whole, or not at all), unless writes are off.
    pub fn put(&self, ns: &str, key: &Key, files: &[(&str, &[u8])]) {
        if self.read_only || !is_shared(ns) || self.writes_off.load(Ordering::SeqCst) {
            return;
        }
        let blob = encode(ns, key, files);
        let t = Instant::now();
        let r = self.backend.put(&entry_name(ns, key), &blob);
        let secs = t.elapsed().as_secs_f64();
        self.record(|s| s.seconds += secs);
        match r {
            Ok(()) => self.record(|s| {
                s.stores += 1;
                s.bytes_written += blob.len() as u64;
            }),
            Err(e) => self.trouble(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn key(n: u8) -> Key {
        [n; 32]
    }

    #[test]
    fn blob_round_trips_and_rejects_damage() {
        let blob = encode("object", &key(1), &[("o", b"object bytes"), ("d", b"")]);
        let files = decode("object", &key(1), &blob).unwrap();
        assert_eq!(files, vec![("o".to_string(), b"object bytes".to_vec()), ("d".to_string(), Vec::new())]);
        // Any flipped byte, truncation, or the blob under another key or namespace: a miss.
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 1;
            assert_eq!(decode("object", &key(1), &bad), None, "flip at {i}");
        }
        assert_eq!(decode("object", &key(1), &blob[..blob.len() - 1]), None);
        assert_eq!(decode("object", &key(1), &blob[..10]), None);
        assert_eq!(decode("object", &key(2), &blob), None);
        assert_eq!(decode("archive", &key(1), &blob), None);
    }

    #[test]
    fn urls_parse_and_hide_passwords() {
        assert!(open("ftp://x", false).err().unwrap().contains("unsupported scheme"));
        assert!(open("redis://", false).is_err());
        assert!(open("http://h:notaport/x", false).is_err());
        assert_eq!(open("redis://:secret@127.0.0.1:7000/2", false).unwrap().stats().url, "redis://127.0.0.1:7000/2");
        assert_eq!(host_port("[::1]:80", 1).unwrap(), ("::1".to_string(), 80));
        assert_eq!(host_port("h", 6379).unwrap(), ("h".to_string(), 6379));
    }

    /// A backend in memory whose faults the test sets (the real servers are in tests/remote_cache.rs).
    #[derive(Default)]
    struct Memory {
        blobs: Mutex<HashMap<String, Vec<u8>>>,
        fail: Mutex<Option<RemoteError>>,
    }

    impl Backend for std::sync::Arc<Memory> {
        fn get(&self, name: &str) -> Result<Option<Vec<u8>>, RemoteError> {
            if let Some(e) = self.fail.lock().unwrap().clone() {
                if matches!(e, RemoteError::Unavailable(_)) {
                    return Err(e);
                }
            }
            Ok(self.blobs.lock().unwrap().get(name).cloned())
        }
        fn put(&self, name: &str, blob: &[u8]) -> Result<(), RemoteError> {
            if let Some(e) = self.fail.lock().unwrap().clone() {
                return Err(e);
            }
            self.blobs.lock().unwrap().insert(name.to_string(), blob.to_vec());
            Ok(())
        }
    }

    #[test]
    fn refused_writes_keep_reads_and_unavailable_turns_all_off() {
        let mem = std::sync::Arc::new(Memory::default());
        let r = Remote::with_backend(Box::new(mem.clone()), "mem://", false);
        r.put("object", &key(1), &[("o", b"one")]);
        r.put("toolchain", &key(1), &[("record", b"local only")]);
        assert_eq!(mem.blobs.lock().unwrap().len(), 1, "toolchain facts are not shared");
        *mem.fail.lock().unwrap() = Some(RemoteError::Refused("OOM".into()));
        r.put("object", &key(2), &[("o", b"two")]);
        *mem.fail.lock().unwrap() = None;
        r.put("object", &key(3), &[("o", b"three")]);
        assert_eq!(mem.blobs.lock().unwrap().len(), 1, "writes stay off after a refusal");
        assert!(r.get("object", &key(1)).is_some(), "reads go on");
        *mem.fail.lock().unwrap() = Some(RemoteError::Unavailable("down".into()));
        assert!(r.get("object", &key(1)).is_none());
        *mem.fail.lock().unwrap() = None;
        assert!(r.get("object", &key(1)).is_none(), "reads stay off once the server failed");
        let s = r.stats();
        assert_eq!((s.hits, s.stores, s.errors), (1, 1, 2));
        assert!(s.disabled.unwrap().contains("unreachable"));
    }

    #[test]
    fn read_only_never_writes() {
        let mem = std::sync::Arc::new(Memory::default());
        let r = Remote::with_backend(Box::new(mem.clone()), "mem://", true);
        r.put("object", &key(1), &[("o", b"one")]);
        assert!(mem.blobs.lock().unwrap().is_empty());
    }
}
