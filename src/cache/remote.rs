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
use std::time::Instant;

use serde::Serialize;

use super::namespace::Namespace;
use super::tier::{decode, encode, key_hex, Backend, Files, Key, RemoteError, Tier, RECORD_FILE};

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
        if !Namespace::named(ns).is_some_and(Namespace::is_shared) || self.reads_off.load(Ordering::SeqCst) {
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
        if self.read_only || !Namespace::named(ns).is_some_and(Namespace::is_shared) || self.writes_off.load(Ordering::SeqCst) {
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

/// The far tier: a lookup is a round trip; puts are best effort (server trouble
/// turns the tier off, never fails the build).
impl Tier for Remote {
    fn is_near(&self) -> bool {
        false
    }
    fn get_entry(&self, ns: Namespace, key: &Key) -> Option<Files> {
        self.get(ns.as_str(), key)
    }
    fn has_entry(&self, _: Namespace, _: &Key) -> bool {
        false // asking would cost the round trip a put saves
    }
    fn forget_entry(&self, _: Namespace, _: &Key) {}
    fn put_entry(&self, ns: Namespace, key: &Key, files: &[(&str, &[u8])]) -> anyhow::Result<()> {
        self.put(ns.as_str(), key, files);
        Ok(())
    }
    fn get_record(&self, ns: Namespace, key: &Key) -> Option<Vec<u8>> {
        let files = self.get(ns.as_str(), key)?;
        files.into_iter().find(|(n, _)| n == RECORD_FILE).map(|(_, data)| data)
    }
    fn put_record(&self, ns: Namespace, key: &Key, data: &[u8]) -> anyhow::Result<()> {
        self.put_entry(ns, key, &[(RECORD_FILE, data)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tier::host_port;
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
