//! The tiered store (sccache's multi-level storage): the local store, and the remote
//! tier behind it when `--remote-cache` names one. It alone owns the lookup order
//! (near tier first), the backfill (a far hit is kept near) and the hit/miss counts,
//! so no caller picks a tier; what is shared is the namespace's decision
//! (`Namespace::is_shared`).

use std::path::Path;

use anyhow::Result;

use super::local::{check_name, file_refs, place_all, read_files, LocalStore};
use super::namespace::Namespace;
use super::remote::{Remote, RemoteStats};
use super::tier::{pick, Tier};

pub use super::local::{default_cache_dir, parse_size, DiskStats, NsStats, Stats};
pub use super::tier::{key_hex, Key};

pub struct Store {
    local: LocalStore,
    /// The shared tier behind the local one (`--remote-cache`).
    remote: Option<Remote>,
}

impl Store {
    /// Open (create if needed) a store at `root`. Fails if the directory cannot be
    /// created or written, so the caller can warn once and build without a cache.
    pub fn open(root: &Path, max_bytes: u64) -> Result<Store> {
        #[cfg(test)]
        crate::exec::opened::STORES.with(|n| n.set(n.get() + 1));
        Ok(Store { local: LocalStore::open(root, max_bytes)?, remote: None })
    }

    /// Put a shared tier behind this store: lookups go local, then remote.
    pub fn set_remote(&mut self, remote: Remote) {
        self.remote = Some(remote);
    }

    /// What the remote tier did this run, when there is one.
    pub fn remote_stats(&self) -> Option<RemoteStats> {
        self.remote.as_ref().map(Remote::stats)
    }

    pub fn local(&self) -> &LocalStore {
        &self.local
    }

    /// The tiers in lookup order: near first. A tier past the near ones is asked
    /// only for namespaces worth sharing.
    fn tiers(&self, ns: Namespace) -> impl Iterator<Item = &dyn Tier> {
        let far = self.remote.as_ref().filter(|_| ns.is_shared()).map(|r| r as &dyn Tier);
        std::iter::once(&self.local as &dyn Tier).chain(far)
    }

    /// Look up an entry and place each requested file at its destination. True on a
    /// verified hit in any tier; a far hit is kept in the nearer tiers too.
    pub fn get_files(&self, ns: Namespace, key: &Key, dests: &[(&str, &Path)]) -> bool {
        let hit = !dests.is_empty() && dests.iter().all(|(n, _)| check_name(n).is_ok()) && self.fetch_files(ns, key, dests);
        self.local.count(ns.as_str(), hit);
        hit
    }

    fn fetch_files(&self, ns: Namespace, key: &Key, dests: &[(&str, &Path)]) -> bool {
        let tiers: Vec<&dyn Tier> = self.tiers(ns).collect();
        for (i, tier) in tiers.iter().enumerate() {
            let Some(files) = tier.get_entry(ns, key) else { continue };
            let Some(picked) = pick(&files, dests) else {
                // Written with another file set: it would block a fresh put here.
                tier.forget_entry(ns, key);
                continue;
            };
            let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
            for nearer in &tiers[..i] {
                // A failed copy only costs another far hit next time.
                let _ = nearer.put_entry(ns, key, &refs);
            }
            return place_all(picked);
        }
        false
    }

    /// Store copies of `files` under `key` in every tier (far first, so the near
    /// one's error, if any, is the answer). An entry the near tier has already is
    /// kept as it is, and nothing is read or sent.
    pub fn put_files(&self, ns: Namespace, key: &Key, files: &[(&str, &Path)]) -> Result<()> {
        let blobs = read_files(files)?;
        if self.local.has_entry(ns, key) {
            return Ok(());
        }
        let refs = file_refs(&blobs);
        let mut near = Ok(());
        for tier in self.tiers(ns).collect::<Vec<_>>().into_iter().rev() {
            near = tier.put_entry(ns, key, &refs);
        }
        near
    }

    /// A small record from the first tier that has it (kept in the nearer ones).
    pub fn get_record(&self, ns: Namespace, key: &Key) -> Option<Vec<u8>> {
        let tiers: Vec<&dyn Tier> = self.tiers(ns).collect();
        let mut found = None;
        for (i, tier) in tiers.iter().enumerate() {
            if let Some(data) = tier.get_record(ns, key) {
                for nearer in &tiers[..i] {
                    let _ = nearer.put_record(ns, key, &data);
                }
                found = Some(data);
                break;
            }
        }
        self.local.count(ns.as_str(), found.is_some());
        found
    }

    /// A record from the tiers that answer without a round trip, for a caller that
    /// asks the rest later and only if still needed. Counts a hit; a miss is counted
    /// by the later lookup.
    pub fn get_near_record(&self, ns: Namespace, key: &Key) -> Option<Vec<u8>> {
        let r = self.tiers(ns).filter(|t| t.is_near()).find_map(|t| t.get_record(ns, key));
        if r.is_some() {
            self.local.count(ns.as_str(), true);
        }
        r
    }

    /// Store a small record in every tier (far first). Replaces any existing record
    /// atomically (last writer wins).
    pub fn put_record(&self, ns: Namespace, key: &Key, data: &[u8]) -> Result<()> {
        let mut near = Ok(());
        for tier in self.tiers(ns).collect::<Vec<_>>().into_iter().rev() {
            near = tier.put_record(ns, key, data);
        }
        near
    }

    // Local maintenance: the remote tier has no part in these.

    pub fn root(&self) -> &Path {
        self.local.root()
    }

    pub fn max_bytes(&self) -> u64 {
        self.local.max_bytes()
    }

    pub fn run_stats(&self) -> Stats {
        self.local.run_stats()
    }

    pub fn flush_stats(&self) -> Result<()> {
        self.local.flush_stats()
    }

    pub fn disk_stats(&self) -> Result<DiskStats> {
        self.local.disk_stats()
    }

    pub fn clean(&self) -> Result<()> {
        self.local.clean()
    }

    pub fn evict(&self) -> Result<u64> {
        self.local.evict()
    }
}

/// Look up a record, else `run` to make it and store what it made: the one
/// "look up, else run and store" for records. `Ok((bytes, ran))`; an `Err` of `run`
/// stores nothing.
pub fn record_or_run<E>(store: Option<&Store>, ns: Namespace, key: &Key, run: impl FnOnce() -> Result<Vec<u8>, E>) -> Result<(Vec<u8>, bool), E> {
    if let Some(found) = store.and_then(|s| s.get_record(ns, key)) {
        return Ok((found, false));
    }
    let made = run()?;
    if let Some(s) = store {
        // A failed store only costs running again next time.
        let _ = s.put_record(ns, key, &made);
    }
    Ok((made, true))
}

/// Place an entry's files, else `run` to make them and store them when it says they
/// are good (`Ok(true)`): the one "look up, else run and store" for entries. Without a
/// key or a store it just runs. `Ok(true)` when the files came from the cache.
pub fn files_or_run<E>(store: Option<&Store>, ns: Namespace, key: Option<&Key>, files: &[(&str, &Path)], run: impl FnOnce() -> Result<bool, E>) -> Result<bool, E> {
    let cached = |k: &Key| store.is_some_and(|s| s.get_files(ns, k, files));
    if key.is_some_and(cached) {
        return Ok(true);
    }
    if run()? {
        if let (Some(k), Some(s)) = (key, store) {
            // A failed store only costs running again next time.
            let _ = s.put_files(ns, k, files);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use tempfile::TempDir;

    fn key(n: u8) -> Key {
        *blake3::hash(&[n]).as_bytes()
    }

    fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, data).unwrap();
        p
    }

    /// Blobs in memory, shared by two stores as a remote would be by two machines.
    #[derive(Default, Clone)]
    struct SharedBlobs(Arc<Mutex<std::collections::HashMap<String, Vec<u8>>>>);

    impl crate::cache::tier::Backend for SharedBlobs {
        fn get(&self, name: &str) -> Result<Option<Vec<u8>>, crate::cache::tier::RemoteError> {
            Ok(self.0.lock().unwrap().get(name).cloned())
        }
        fn put(&self, name: &str, blob: &[u8]) -> Result<(), crate::cache::tier::RemoteError> {
            self.0.lock().unwrap().insert(name.to_string(), blob.to_vec());
            Ok(())
        }
    }

    fn with_remote(root: &Path, blobs: &SharedBlobs, read_only: bool) -> Store {
        let mut s = Store::open(root, 1 << 30).unwrap();
        s.set_remote(Remote::with_backend(Box::new(blobs.clone()), "mem://", read_only));
        s
    }

    #[test]
    fn remote_tier_serves_a_second_machine_and_fills_its_local_store() {
        let td = TempDir::new().unwrap();
        let src = write(td.path(), "x.o", b"object");
        let dest = td.path().join("placed.o");
        let get = |s: &Store, k: u8| -> Option<Vec<u8>> {
            let _ = fs::remove_file(&dest);
            s.get_files(Namespace::Object, &key(k), &[("o", &dest)]).then(|| fs::read(&dest).unwrap())
        };
        let blobs = SharedBlobs::default();
        let a = with_remote(&td.path().join("a"), &blobs, false);
        a.put_files(Namespace::Object, &key(1), &[("o", &src)]).unwrap();
        a.put_record(Namespace::Manifest, &key(3), b"headers").unwrap();
        a.put_record(Namespace::Toolchain, &key(4), b"this machine only").unwrap();
        let b = with_remote(&td.path().join("b"), &blobs, false);
        assert_eq!(get(&b, 1).as_deref(), Some(&b"object"[..]));
        assert_eq!(b.get_record(Namespace::Manifest, &key(3)).as_deref(), Some(&b"headers"[..]));
        assert_eq!(b.get_record(Namespace::Toolchain, &key(4)), None, "toolchain facts stay local");
        let rs = b.remote_stats().unwrap();
        assert_eq!((rs.hits, rs.misses), (2, 0));
        // Kept locally: the next lookups never reach the remote.
        blobs.0.lock().unwrap().clear();
        assert!(get(&b, 1).is_some());
        assert!(b.get_record(Namespace::Manifest, &key(3)).is_some());
        assert_eq!(b.remote_stats().unwrap().hits, 2);
        // A read-only machine takes but never gives.
        let c = with_remote(&td.path().join("c"), &blobs, true);
        c.put_files(Namespace::Object, &key(5), &[("o", &src)]).unwrap();
        c.put_record(Namespace::Manifest, &key(6), b"pr").unwrap();
        assert!(blobs.0.lock().unwrap().is_empty());
        // A damaged remote blob is a miss, not an object.
        let d = with_remote(&td.path().join("d"), &blobs, false);
        d.put_files(Namespace::Object, &key(7), &[("o", &src)]).unwrap();
        for v in blobs.0.lock().unwrap().values_mut() {
            let n = v.len() - 1;
            v[n] ^= 1;
        }
        let e = with_remote(&td.path().join("e"), &blobs, false);
        assert_eq!(get(&e, 7), None);
        assert_eq!(e.remote_stats().unwrap().rejected, 1);
    }

    /// A near-only lookup never asks the remote tier; a miss there is left for the
    /// full lookup to count.
    #[test]
    fn near_lookups_never_reach_the_remote() {
        let td = TempDir::new().unwrap();
        let blobs = SharedBlobs::default();
        let a = with_remote(&td.path().join("a"), &blobs, false);
        a.put_record(Namespace::LinkMeta, &key(1), b"meta").unwrap();
        let b = with_remote(&td.path().join("b"), &blobs, false);
        assert_eq!(b.get_near_record(Namespace::LinkMeta, &key(1)), None);
        assert_eq!(b.remote_stats().unwrap().requests(), 0);
        assert_eq!(b.run_stats().ns("link-meta"), NsStats::default());
        assert!(b.get_record(Namespace::LinkMeta, &key(1)).is_some());
        assert_eq!(b.get_near_record(Namespace::LinkMeta, &key(1)).as_deref(), Some(&b"meta"[..]), "kept near after the far hit");
        assert_eq!(b.remote_stats().unwrap().requests(), 1);
    }

    /// The helper runs only on a miss, stores only what a good run made, and without
    /// a store just runs.
    #[test]
    fn look_up_else_run_and_store() {
        let td = TempDir::new().unwrap();
        let s = Store::open(&td.path().join("c"), 1 << 30).unwrap();
        let made = |v: &'static [u8]| move || Ok::<_, ()>(v.to_vec());
        assert_eq!(record_or_run(Some(&s), Namespace::Discover, &key(1), made(b"one")), Ok((b"one".to_vec(), true)));
        assert_eq!(record_or_run(Some(&s), Namespace::Discover, &key(1), made(b"two")), Ok((b"one".to_vec(), false)));
        assert_eq!(record_or_run(Some(&s), Namespace::Discover, &key(2), || Err::<Vec<u8>, _>("failed")), Err("failed"));
        assert_eq!(s.get_record(Namespace::Discover, &key(2)), None, "a failed run stores nothing");
        assert_eq!(record_or_run(None, Namespace::Discover, &key(1), made(b"three")), Ok((b"three".to_vec(), true)));

        let out = td.path().join("a");
        let files = [("a", out.as_path())];
        let build = |ok: bool, text: &'static str| {
            let out = out.clone();
            move || {
                fs::write(&out, text).unwrap();
                Ok::<_, ()>(ok)
            }
        };
        assert_eq!(files_or_run(Some(&s), Namespace::Archive, Some(&key(3)), &files, build(false, "bad")), Ok(false));
        assert_eq!(files_or_run(Some(&s), Namespace::Archive, Some(&key(3)), &files, build(true, "good")), Ok(false), "a failed run was not stored");
        fs::remove_file(&out).unwrap();
        assert_eq!(files_or_run(Some(&s), Namespace::Archive, Some(&key(3)), &files, build(true, "other")), Ok(true));
        assert_eq!(fs::read(&out).unwrap(), b"good");
        assert_eq!(files_or_run(Some(&s), Namespace::Archive, None, &files, build(true, "keyless")), Ok(false));
    }
}
