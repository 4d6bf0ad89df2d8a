//! Cache key rules, all in one place (like ccache's direct mode):
//!
//! * object base key = compiler identity + arguments (with the source and object
//!   paths replaced by placeholders) + the source bytes;
//! * a manifest, stored under the base key, lists the headers the last compile of
//!   that base read (from its depfile); the full key adds each header's path and bytes;
//! * when the source or a header names `__DATE__`, `__TIME__` or `__TIMESTAMP__`
//!   (found in the bytes read to hash them), the object is keyed by the timed key:
//!   the full key and the clock as the compiler reads it (`keys::time_words`);
//! * archive and link keys combine the keys of their inputs with their own commands.
//!
//! Headers GCC calls "system" (avr-libc) are not in `-MMD` depfiles; the compiler
//! identity covers them (`toolchain::Compiler::identity`, see docs/design.md).

use crate::cache::Namespace;
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cache::keys::{self, TimeMacros};
use crate::cache::paths;
use crate::cache::hash::Hash;
use crate::plan::CompileJob;
use crate::cache::store::Store;
use crate::arduino::toolchain::Compiler;

pub struct ObjectCache<'a> {
    pub store: Option<&'a Store>,
    /// Content hashes of files read this run: each header is hashed once per run,
    /// and re-read later only when its stat says it may have changed. Keyed by the
    /// path's bytes with a fast hasher: `Path`'s own `Hash` and `Eq` walk components,
    /// and a warm run looks up every header of every distinct header list here.
    file_hashes: Mutex<FileTable>,
    /// SOURCE_DATE_EPOCH as this process (and so every compiler it starts) sees it.
    source_date_epoch: Option<String>,
    /// Hashes earlier runs kept (`FileHashes`), read at the first lookup: a file
    /// whose stat is as it was then costs a stat, not a read and a hash.
    kept: std::sync::OnceLock<FileTable>,
    /// Manifests looked up this run, by their stored bytes.
    manifests: Mutex<HashMap<Hash, Arc<ManifestRead>>>,
    /// Files read and hashed by this cache (for tests and the bench's questions).
    pub files_read: std::sync::atomic::AtomicUsize,
}

/// A file's content hash (of its bytes with the base folder written as a mark,
/// `keys::relative_bytes`), the time macros its bytes name, the stat it had when it
/// was read, and whether it may put a file's own path into the object.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Hashed {
    hash: Option<Hash>,
    macros: TimeMacros,
    stamp: Option<Stamp>,
    names_own_path: bool,
}

/// Files by the bytes of their path (a path written two ways is two entries, which
/// only costs a second stat).
type FileTable = FxHashMap<OsString, Hashed>;

/// A manifest's headers as this run first found them (`ObjectCache::file`), worked
/// out once for every object whose manifest lists them: their part of the full key,
/// framed, and what the time macros need.
struct ManifestRead {
    /// `None` when a header is gone or, naming `__TIMESTAMP__`, has no stat: a miss.
    headers: Option<ManifestHeaders>,
    own_path: bool,
}

struct ManifestHeaders {
    key: crate::cache::hash::Framed,
    time: TimeMacros,
    /// The mtimes of the headers that name `__TIMESTAMP__`, in manifest order.
    timestamp_mtimes: Vec<i64>,
}

/// An object's base key, with what its full key needs from the compiler and the
/// source besides the headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseKey {
    pub hash: Hash,
    /// The time macros the source names, and its mtime (for `__TIMESTAMP__`).
    source_macros: TimeMacros,
    source_mtime: Option<i64>,
    /// The compiler expands `__DATE__` and `__TIME__` from SOURCE_DATE_EPOCH: it is
    /// set and the compiler honours it.
    epoch: bool,
}

/// An object's key, and the time macros its files name (`any()`: a timed key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectKey {
    pub hash: Hash,
    pub time: TimeMacros,
}

/// The clock-free part of an object's key: the full key, the time macros of the
/// source and headers, and the mtimes of those that name `__TIMESTAMP__`.
struct Untimed {
    full: Hash,
    time: TimeMacros,
    timestamp_mtimes: Vec<i64>,
}

/// Text that may expand to the path of the file being compiled: the macros, and the
/// system header whose `assert` expands `__FILE__` (avr-libc's, with
/// `__ASSERT_USE_STDERR`). System headers are not in `-MMD` depfiles, so their
/// includers are caught by name; a superset, costing only relocation hits.
const OWN_PATH_TOKENS: [&[u8]; 4] = [b"__FILE__", b"__BASE_FILE__", b"assert.h", b"<cassert>"];

fn names_own_path(bytes: &[u8]) -> bool {
    OWN_PATH_TOKENS.iter().any(|t| bytes.windows(t.len()).any(|w| w == *t))
}

/// The manifest line that says the object holds its own path: its full key then
/// includes the absolute base folder, so a relocated tree compiles it again.
const OWN_PATH_LINE: &str = "\u{0}OWN-PATH";

/// What changes when a file is rewritten in place or replaced (as git's index
/// compares): device, inode, size, modification and change times in nanoseconds.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    /// The stamp was taken too close to the file's last change to trust: a write in
    /// the same clock tick may leave mtime and size as they were ("racy" in git).
    racy: bool,
}

/// Timestamps are coarser than the clock (the kernel's tick); a file changed less
/// than this before it was read is re-read instead of trusted by its stat.
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

fn stamp_of(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let changed = std::time::UNIX_EPOCH + std::time::Duration::new(m.ctime().max(0) as u64, m.ctime_nsec().clamp(0, 999_999_999) as u32);
    let modified = std::time::UNIX_EPOCH + std::time::Duration::new(m.mtime().max(0) as u64, m.mtime_nsec().clamp(0, 999_999_999) as u32);
    let newest = changed.max(modified);
    let racy = std::time::SystemTime::now().duration_since(newest).map_or(true, |age| age < RACY_WINDOW);
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        racy,
    })
}

impl Stamp {
    /// The file is certainly as it was when `self` was taken.
    fn unchanged(&self, now: &Stamp) -> bool {
        !self.racy && Stamp { racy: false, ..*now } == *self
    }
}

/// The content hashes of files as earlier runs found them, with the stat each had, in
/// one file at the cache's root: a warm run checks a header by its stat alone, as a
/// run already does for a file it hashed itself. Only stats taken outside the racy
/// window are kept. The table belongs to the base folder its hashes were taken with
/// (`paths::relative_bytes`); another base, a damaged or foreign file reads as empty,
/// which only costs hashing again. Writers replace it whole (atomic rename); two
/// runs at once may lose each other's additions, never give a wrong hash.
struct FileHashes {
    path: PathBuf,
}

/// The table's first line: bump it when what a `Hashed` holds changes meaning.
const FILE_HASHES_MAGIC: &[u8] = b"fbuild-file-hashes-v1\n";
/// Past this many entries, a save keeps only the files of its own run.
const FILE_HASHES_MAX: usize = 200_000;

impl FileHashes {
    fn at(root: &Path) -> FileHashes {
        FileHashes { path: root.join(crate::cache::local::FILE_HASHES_FILE) }
    }

    fn header() -> Vec<u8> {
        let mut out = FILE_HASHES_MAGIC.to_vec();
        out.extend_from_slice(paths::base_dir().unwrap_or("").as_bytes());
        out.push(b'\n');
        out
    }

    fn load(&self) -> FileTable {
        std::fs::read(&self.path).ok().and_then(|b| Self::decode(&b)).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<FileTable> {
        use std::os::unix::ffi::OsStrExt;
        let rest = bytes.strip_prefix(Self::header().as_slice())?;
        let at = std::cell::Cell::new(0);
        let take = |n: usize| -> Option<&[u8]> {
            let field = rest.get(at.get()..at.get() + n)?;
            at.set(at.get() + n);
            Some(field)
        };
        let mut map = FileTable::default();
        // Every entry whole, up to the end: a cut table is not read.
        while at.get() < rest.len() {
            let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let path = OsStr::from_bytes(take(len)?).to_os_string();
            let mut n = [0u64; 7];
            for v in n.iter_mut() {
                *v = u64::from_le_bytes(take(8)?.try_into().ok()?);
            }
            let hash: Hash = take(32)?.try_into().ok()?;
            let flags = take(1)?[0];
            let stamp = Stamp { dev: n[0], ino: n[1], size: n[2], mtime: (n[3] as i64, n[4] as i64), ctime: (n[5] as i64, n[6] as i64), racy: false };
            let macros = TimeMacros { date: flags & 1 != 0, time: flags & 2 != 0, timestamp: flags & 4 != 0 };
            map.insert(path, Hashed { hash: Some(hash), macros, stamp: Some(stamp), names_own_path: flags & 8 != 0 });
        }
        Some(map)
    }

    fn encode(map: &FileTable) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = Self::header();
        for (path, h) in map {
            let (Some(hash), Some(s)) = (h.hash, h.stamp) else { continue };
            let p = path.as_bytes();
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(p);
            for v in [s.dev, s.ino, s.size, s.mtime.0 as u64, s.mtime.1 as u64, s.ctime.0 as u64, s.ctime.1 as u64] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&hash);
            let m = h.macros;
            out.push(m.date as u8 | (m.time as u8) << 1 | (m.timestamp as u8) << 2 | (h.names_own_path as u8) << 3);
        }
        out
    }

    /// Merge this run's findings into the table as it is now on disk (another run
    /// may have written it since it was read): files hashed with a trusted stat are
    /// added, files gone or changed too recently to trust are dropped. Written only
    /// when that changes something. `read` is the table as this run read it: when
    /// the run found nothing new there, the file is not read again.
    fn save(&self, run: &FileTable, read: Option<&FileTable>) {
        let keep = |h: &Hashed| h.hash.is_some() && h.stamp.is_some_and(|s| !s.racy);
        let news = |table: &FileTable| run.iter().any(|(p, h)| if keep(h) { table.get(p) != Some(h) } else { table.contains_key(p) });
        if read.is_some_and(|t| !news(t)) {
            return;
        }
        let mut table = self.load();
        if !news(&table) {
            return;
        }
        for (path, h) in run {
            if keep(h) {
                table.insert(path.clone(), *h);
            } else {
                table.remove(path);
            }
        }
        if table.len() > FILE_HASHES_MAX {
            table.retain(|p, _| run.contains_key(p));
        }
        let tmp = self.path.with_extension(format!("tmp-{}", std::process::id()));
        if std::fs::write(&tmp, Self::encode(&table)).is_err() || std::fs::rename(&tmp, &self.path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

impl Drop for ObjectCache<'_> {
    fn drop(&mut self) {
        if let Some(store) = self.store {
            FileHashes::at(store.root()).save(&self.file_hashes.lock().unwrap_or_else(|e| e.into_inner()), self.kept.get());
        }
    }
}


/// Dependencies from a Make-style depfile (`obj: src hdr1 hdr2 \`), escaped spaces kept.
pub fn parse_depfile(text: &str) -> Vec<PathBuf> {
    let joined = text.replace("\\\n", " ").replace("\\\r\n", " ");
    let mut deps = Vec::new();
    for line in joined.lines() {
        // The target ends at the first ": " (a Windows-free world: no drive letters).
        let Some(pos) = line.find(": ").or_else(|| line.strip_suffix(':').map(|s| s.len())) else { continue };
        let rest = &line[(pos + 1).min(line.len())..];
        let mut cur = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&' ') => {
                    cur.push(' ');
                    chars.next();
                }
                c if c.is_whitespace() => {
                    if !cur.is_empty() {
                        deps.push(PathBuf::from(std::mem::take(&mut cur)));
                    }
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() {
            deps.push(PathBuf::from(cur));
        }
    }
    deps
}

/// GCC names the depfile after the object: `x.cpp.o` -> `x.cpp.d`.
pub fn depfile_of(object: &Path) -> PathBuf {
    object.with_extension("d")
}

impl<'a> ObjectCache<'a> {
    pub fn new(store: Option<&'a Store>) -> ObjectCache<'a> {
        Self::with_source_date_epoch(store, std::env::var("SOURCE_DATE_EPOCH").ok())
    }

    /// `new`, with SOURCE_DATE_EPOCH given instead of read from the environment.
    pub fn with_source_date_epoch(store: Option<&'a Store>, source_date_epoch: Option<String>) -> ObjectCache<'a> {
        ObjectCache { store, file_hashes: Mutex::default(), source_date_epoch, kept: Default::default(), manifests: Mutex::default(), files_read: Default::default() }
    }

    fn kept(&self) -> &FileTable {
        self.kept.get_or_init(|| self.store.map(|s| FileHashes::at(s.root()).load()).unwrap_or_default())
    }

    /// A file's content hash, read once per run.
    pub fn file_hash(&self, path: &Path) -> Option<Hash> {
        self.file(path).hash
    }

    /// Whether every file's `file_hash` is the one given, checked in order up to the
    /// first that differs. The table is locked once for the files this run already
    /// looked up (most of a stored header set's thousands), not once per file.
    pub fn all_hash_to(&self, files: &[(&Path, Hash)]) -> bool {
        let known = self.known(files.iter().map(|(p, _)| *p));
        files.iter().zip(known).all(|((p, then), k)| k.unwrap_or_else(|| self.file(p)).hash == Some(*then))
    }

    /// Each file as this run already found it, if it did: one lock for them all.
    fn known<'p>(&self, paths: impl Iterator<Item = &'p Path>) -> Vec<Option<Hashed>> {
        let table = self.file_hashes.lock().unwrap();
        paths.map(|p| table.get(p.as_os_str()).copied()).collect()
    }

    /// A file's content hash as it is now: for keys recorded after a tool read the
    /// file, which may have been edited since our lookup hashed it.
    pub fn current_hash(&self, path: &Path) -> Option<Hash> {
        self.current_file(path).hash
    }

    fn file(&self, path: &Path) -> Hashed {
        if let Some(h) = self.file_hashes.lock().unwrap().get(path.as_os_str()) {
            return *h;
        }
        if let Some(h @ Hashed { stamp: Some(old), .. }) = self.kept().get(path.as_os_str()).copied() {
            if stamp_of(path).is_some_and(|now| old.unchanged(&now)) {
                self.file_hashes.lock().unwrap().insert(path.as_os_str().to_os_string(), h);
                return h;
            }
        }
        self.read_file(path)
    }

    /// The file as it is now. A stat shows whether the memo still holds; only a
    /// changed (or racy) file is read again.
    fn current_file(&self, path: &Path) -> Hashed {
        let memo = self.file_hashes.lock().unwrap().get(path.as_os_str()).copied();
        if let Some(h @ Hashed { stamp: Some(old), .. }) = memo {
            if stamp_of(path).is_some_and(|now| old.unchanged(&now)) {
                return h;
            }
        }
        self.read_file(path)
    }

    fn read_file(&self, path: &Path) -> Hashed {
        // Stat before reading: a change after the stat gives a newer stamp later.
        let stamp = stamp_of(path);
        self.files_read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bytes = std::fs::read(path).ok();
        // The time macros are looked for in the bytes read for the hash: no second read.
        let macros = bytes.as_deref().map(TimeMacros::scan).unwrap_or_default();
        let names_own_path = bytes.as_deref().is_some_and(names_own_path);
        let hash = bytes.map(|b| *blake3::hash(&paths::relative_bytes(&b)).as_bytes());
        let stamp = stamp.filter(|_| hash.is_some());
        let hashed = Hashed { hash, macros, stamp, names_own_path };
        self.file_hashes.lock().unwrap().insert(path.as_os_str().to_os_string(), hashed);
        hashed
    }

    /// Whether a file names `__DATE__`, `__TIME__` or `__TIMESTAMP__` (hashed once per run).
    pub fn names_time_macros(&self, path: &Path) -> bool {
        self.file(path).macros.any()
    }

    /// Whether a file read this run may put its own path into an object.
    fn may_name_own_path(&self, path: &Path) -> bool {
        self.file_hashes.lock().unwrap().get(path.as_os_str()).is_some_and(|h| h.names_own_path)
    }

    /// Forget a file's hash (we just rewrote it).
    pub fn invalidate(&self, path: &Path) {
        self.file_hashes.lock().unwrap().remove(path.as_os_str());
    }

    pub fn base_key(&self, compiler: &Compiler, job: &CompileJob) -> Option<BaseKey> {
        let source = self.file(&job.source);
        let args = paths::object_args(&job.args, &job.object, &job.source);
        Some(BaseKey {
            hash: keys::object_base(&compiler.identity, &source.hash?, &args),
            source_macros: source.macros,
            source_mtime: source.stamp.map(|s| s.mtime.0),
            epoch: self.source_date_epoch.is_some() && compiler.honours_source_date_epoch(),
        })
    }

    /// The full key and what the time macros need, from each header as `read` finds it.
    fn untimed<'p>(&self, base: &BaseKey, headers: impl Iterator<Item = (&'p Path, Hashed)>, own_path: bool) -> Option<Untimed> {
        let mut time = base.source_macros;
        let mut timestamp_mtimes = Vec::new();
        if time.timestamp {
            timestamp_mtimes.push(base.source_mtime?);
        }
        let mut hashed = Vec::with_capacity(headers.size_hint().0);
        for (header, f) in headers {
            hashed.push((header, f.hash?));
            time |= f.macros;
            if f.macros.timestamp {
                timestamp_mtimes.push(f.stamp?.mtime.0);
            }
        }
        Some(Untimed { full: keys::object_full(&base.hash, hashed, own_path), time, timestamp_mtimes })
    }

    /// The object's key with its clock read at `at` (whole seconds since the epoch).
    fn timed(&self, base: &BaseKey, u: &Untimed, at: i64) -> Option<ObjectKey> {
        if !u.time.any() {
            return Some(ObjectKey { hash: u.full, time: u.time });
        }
        let epoch = self.source_date_epoch.as_deref().filter(|_| base.epoch);
        let words = keys::time_words(u.time, epoch, at, &u.timestamp_mtimes)?;
        Some(ObjectKey { hash: keys::object_timed(&u.full, &words), time: u.time })
    }

    #[cfg(test)]
    fn key_from(&self, base: &BaseKey, headers: &[PathBuf], own_path: bool) -> Option<ObjectKey> {
        self.timed(base, &self.untimed(base, headers.iter().map(|p| (p.as_path(), self.file(p))), own_path)?, unix_now())
    }

    /// The full key when the manifest of a previous compile is known (locally or in
    /// the remote tier) and every header it lists still exists; `None` means "compile
    /// to find out".
    pub fn full_key(&self, base: &BaseKey) -> Option<ObjectKey> {
        self.full_key_from_manifest(base, self.store?.get_record(Namespace::Manifest, &base.hash)?)
    }

    /// `full_key` from the local store only: what a warm run needs, without a remote
    /// round trip for sources that have no manifest (their compile failed before).
    pub fn local_full_key(&self, base: &BaseKey) -> Option<ObjectKey> {
        self.full_key_from_manifest(base, self.store?.get_near_record(Namespace::Manifest, &base.hash)?)
    }

    fn full_key_from_manifest(&self, base: &BaseKey, manifest: Vec<u8>) -> Option<ObjectKey> {
        let read = self.manifest(manifest)?;
        let headers = read.headers.as_ref()?;
        let mut timestamp_mtimes = Vec::new();
        if base.source_macros.timestamp {
            timestamp_mtimes.push(base.source_mtime?);
        }
        timestamp_mtimes.extend_from_slice(&headers.timestamp_mtimes);
        let full = keys::object_full_from(&base.hash, &headers.key, read.own_path);
        self.timed(base, &Untimed { full, time: base.source_macros | headers.time, timestamp_mtimes }, unix_now())
    }

    /// A stored manifest's headers, each as this run found it: looked up once per
    /// run and manifest, however many objects list the same headers (the examples
    /// of a library all read its umbrella header's thousands).
    fn manifest(&self, stored: Vec<u8>) -> Option<Arc<ManifestRead>> {
        let id = *blake3::hash(&stored).as_bytes();
        if let Some(m) = self.manifests.lock().unwrap().get(&id) {
            return Some(m.clone());
        }
        let text = String::from_utf8(paths::absolute_record(stored)).ok()?;
        let own_path = text.lines().any(|l| l == OWN_PATH_LINE);
        let headers = self.manifest_headers(text.lines().filter(|l| !l.is_empty() && *l != OWN_PATH_LINE).map(Path::new));
        let read = Arc::new(ManifestRead { headers, own_path });
        self.manifests.lock().unwrap().insert(id, read.clone());
        Some(read)
    }

    /// What every object listing these headers needs of them for its full key (as
    /// `untimed` reads them), each header looked up once.
    fn manifest_headers<'p>(&self, headers: impl Iterator<Item = &'p Path>) -> Option<ManifestHeaders> {
        let mut time = TimeMacros::default();
        let mut timestamp_mtimes = Vec::new();
        let mut hashed = Vec::new();
        let headers: Vec<&Path> = headers.collect();
        for (path, k) in headers.iter().zip(self.known(headers.iter().copied())) {
            let f = k.unwrap_or_else(|| self.file(path));
            hashed.push((*path, f.hash?));
            time |= f.macros;
            if f.macros.timestamp {
                timestamp_mtimes.push(f.stamp?.mtime.0);
            }
        }
        Some(ManifestHeaders { key: keys::object_full_headers(hashed), time, timestamp_mtimes })
    }

    /// Place a cached object for `key` at the job's object path.
    pub fn fetch(&self, key: &Hash, object: &Path) -> bool {
        match self.store {
            Some(s) => s.get_files(Namespace::Object, key, &[("o", object)]),
            None => false,
        }
    }

    /// After a successful compile that started at `started` (whole seconds since the
    /// epoch): record the manifest from the depfile and store the object. Returns its
    /// key, or `None` when the result cannot be keyed, in which case the object is not
    /// stored: no depfile, or a time macro whose clock moved on during the compile (a
    /// `__TIME__` compile that crossed a second, a `__DATE__` one that crossed
    /// midnight), so which reading the compiler took is unknown. The time macros the
    /// files name are returned either way.
    ///
    /// A compile whose recipe asks for no depfile (ATTinyCore's `compiler.S.flags` has
    /// no `-MMD`) takes its headers from `scanned` instead: our include scan, a superset
    /// of what the compiler read (conditionals ignored), so any edit still changes the
    /// key; it gives `None`, and nothing is stored, when a named header was found
    /// nowhere, since one appearing later could change the compile.
    pub fn record(&self, base: &BaseKey, job: &CompileJob, started: i64, scanned: impl FnOnce() -> Option<Vec<PathBuf>>) -> (Option<Hash>, TimeMacros) {
        let headers: Vec<PathBuf> = match std::fs::read_to_string(depfile_of(&job.object)) {
            Ok(text) => parse_depfile(&text).into_iter().filter(|p| p != &job.source).collect(),
            Err(_) => match scanned() {
                Some(h) => h,
                None => return (None, base.source_macros),
            },
        };
        // Each header as the compiler read it, not as our lookup hashed it before.
        let own_path = std::iter::once(&job.source).chain(&headers).any(|p| self.may_name_own_path(p));
        let Some(untimed) = self.untimed(base, headers.iter().map(|p| (p.as_path(), self.current_file(p))), own_path) else { return (None, base.source_macros) };
        let key = self.timed(base, &untimed, started).filter(|k| self.timed(base, &untimed, unix_now()) == Some(*k));
        if let Some(store) = self.store {
            let mut manifest: String = headers.iter().map(|p| format!("{}\n", p.display())).collect();
            if own_path {
                manifest.push_str(OWN_PATH_LINE);
                manifest.push('\n');
            }
            let _ = store.put_record(Namespace::Manifest, &base.hash, &paths::relative_record(manifest.as_bytes()));
            if let Some(k) = key {
                let _ = store.put_files(Namespace::Object, &k.hash, &[("o", &job.object)]);
            }
        }
        (key.map(|k| k.hash), untimed.time)
    }
}

/// Now, in whole seconds since the epoch: the resolution of `__TIME__`.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// What the include scan reaches from a compile's source, in the order it finds it.
enum Reached {
    /// A header found on the search path; `system` when it lies in the compiler's own
    /// folders (avr-libc), which count by path only, as in a `-MMD` depfile.
    Header { path: PathBuf, system: bool },
    /// An included name no folder has.
    Missing(String),
}

/// Every header reachable from the job's source through its search path (the source's
/// folder, each `-I`, then the compiler's own folders), ignoring conditionals, so a
/// superset of what the compiler reads; the compiler's own headers are not followed.
fn reachable_headers(job: &CompileJob, scanner: &crate::arduino::library::IncludeCache, system_dirs: &[PathBuf]) -> Vec<Reached> {
    let mut search = include_dirs(&job.args);
    search.extend(system_dirs.iter().cloned());
    let mut reached = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut queue = std::collections::VecDeque::from([job.source.clone()]);
    while let Some(file) = queue.pop_front() {
        let here = file.parent().map(Path::to_path_buf).unwrap_or_default();
        for name in scanner.includes_of(&file).iter() {
            match std::iter::once(&here).chain(search.iter()).map(|d| d.join(name)).find(|p| p.is_file()) {
                Some(p) => {
                    if !seen.insert(p.clone()) {
                        continue;
                    }
                    let system = system_dirs.iter().any(|d| p.starts_with(d));
                    if !system {
                        queue.push_back(p.clone());
                    }
                    reached.push(Reached::Header { path: p, system });
                }
                None => reached.push(Reached::Missing(name.to_string())),
            }
        }
    }
    reached
}

/// The headers a compile without a depfile is keyed by: the scan's non-system
/// headers, or `None` when it names a header found nowhere.
pub fn scanned_headers(job: &CompileJob, scanner: &crate::arduino::library::IncludeCache, system_dirs: &[PathBuf]) -> Option<Vec<PathBuf>> {
    let mut headers = Vec::new();
    for r in reachable_headers(job, scanner, system_dirs) {
        match r {
            Reached::Header { path, system: false } => headers.push(path),
            Reached::Header { system: true, .. } => {}
            Reached::Missing(_) => return None,
        }
    }
    Some(headers)
}

/// `-I` folders of a compile command, in order.
pub fn include_dirs(args: &[String]) -> Vec<PathBuf> {
    args.iter().filter_map(|a| a.strip_prefix("-I")).filter(|d| !d.is_empty()).map(PathBuf::from).collect()
}

impl ObjectCache<'_> {
    /// Key for remembering that a compile failed. A failed compile writes no depfile,
    /// so the headers come from our own include scan instead: every header reachable
    /// from the source through the compile's search path (ignoring conditionals, so a
    /// superset), with its bytes, and every header that was not found anywhere. Any
    /// edit to one of them, or a missing header appearing, changes the key.
    /// Headers in the compiler's own folders (avr-libc) count by path only: like the
    /// object manifest, they belong to the toolchain's identity.
    pub fn failure_key(&self, base: &Hash, job: &CompileJob, scanner: &crate::arduino::library::IncludeCache, system_dirs: &[PathBuf]) -> Hash {
        let reached = reachable_headers(job, scanner, system_dirs);
        keys::compile_failure(
            base,
            reached.iter().map(|r| match r {
                Reached::Header { path, system } => keys::FailureInput::Header(path, (!system).then(|| self.file_hash(path).unwrap_or([0; 32]))),
                Reached::Missing(name) => keys::FailureInput::Missing(name),
            }),
        )
    }

    /// Whether a compile with this base key (compiler, flags, source bytes) ever
    /// failed: only then is the failure key worth computing.
    pub fn failed_before(&self, base: &Hash) -> bool {
        self.store.is_some_and(|s| s.get_record(Namespace::FailedSource, base).is_some())
    }

    /// The output of a compile that failed before with exactly these inputs.
    pub fn cached_failure(&self, key: &Hash) -> Option<String> {
        self.store?.get_record(Namespace::Failure, key).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Remember a failed compile: its output under the failure key, and the marker
    /// under the base key that sends later lookups to it. The record goes first, so
    /// a marker never points at nothing for long.
    pub fn record_failure(&self, base: &Hash, key: &Hash, output: &str) {
        if let Some(s) = self.store {
            if s.put_record(Namespace::Failure, key, output.as_bytes()).is_ok() {
                let _ = s.put_record(Namespace::FailedSource, base, b"");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(src: &Path, obj: &str, extra: &str) -> CompileJob {
        CompileJob {
            source: src.to_path_buf(),
            object: PathBuf::from(obj),
            args: vec!["gcc".into(), extra.into(), src.display().to_string(), "-o".into(), obj.into()],
        }
    }

    fn compiler(id: u8) -> Compiler {
        Compiler { path: PathBuf::from("/usr/bin/avr-gcc"), version: "5.4".into(), identity: [id; 32], system_dirs: Vec::new() }
    }

    /// Debian's arm-none-eabi-gcc 12: it honours SOURCE_DATE_EPOCH.
    fn gcc12() -> Compiler {
        Compiler { path: PathBuf::from("/usr/bin/arm-none-eabi-g++"), version: "arm-none-eabi-g++ (15:12.2.rel1-1) 12.2.1 20221205\n".into(), identity: [9; 32], system_dirs: Vec::new() }
    }

    fn untimed_base(hash: Hash) -> BaseKey {
        BaseKey { hash, source_macros: TimeMacros::default(), source_mtime: None, epoch: false }
    }

    /// A source (with `text`) and a header (`a.h`, with `header`) compiled once through
    /// a real store: the depfile the compiler would write, then `record`.
    struct Compiled {
        dir: tempfile::TempDir,
        store: Store,
        job: CompileJob,
        header: PathBuf,
    }

    fn compiled(text: &str, header: &str) -> Compiled {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("s.cpp");
        let header_path = dir.path().join("a.h");
        std::fs::write(&src, text).unwrap();
        std::fs::write(&header_path, header).unwrap();
        let obj = dir.path().join("s.cpp.o");
        std::fs::write(&obj, "object").unwrap();
        std::fs::write(depfile_of(&obj), format!("{}: {} {}\n", obj.display(), src.display(), header_path.display())).unwrap();
        let store = Store::open(&dir.path().join("cache"), 1 << 30).unwrap();
        Compiled { job: job(&src, &obj.display().to_string(), "-Os"), store, header: header_path, dir }
    }

    impl Compiled {
        fn dir(&self) -> &Path {
            self.dir.path()
        }
    }

    /// A compile that writes no depfile (an assembler recipe without `-MMD`) is keyed
    /// by the headers the include scan reaches: stored, found again by a later run, and
    /// missed once one of those headers changes; with no scan result, nothing is stored.
    #[test]
    fn a_compile_without_a_depfile_is_keyed_by_the_scanned_headers() {
        let c = compiled("#include \"a.h\"\nint x;\n", "#define A 1\n");
        std::fs::remove_file(depfile_of(&c.job.object)).unwrap();
        let cache = ObjectCache::new(Some(&c.store));
        let base = cache.base_key(&compiler(1), &c.job).unwrap();
        assert_eq!(cache.record(&base, &c.job, unix_now(), || None).0, None);
        assert!(cache.full_key(&base).is_none(), "nothing was stored without headers");
        let (key, _) = cache.record(&base, &c.job, unix_now(), || Some(vec![c.header.clone()]));
        let key = key.expect("keyed by the scanned headers");
        let later = ObjectCache::new(Some(&c.store));
        let base = later.base_key(&compiler(1), &c.job).unwrap();
        assert_eq!(later.full_key(&base).map(|k| k.hash), Some(key));
        std::fs::write(&c.header, "#define A 2\n").unwrap();
        let after_edit = ObjectCache::new(Some(&c.store));
        let base = after_edit.base_key(&compiler(1), &c.job).unwrap();
        assert_ne!(after_edit.full_key(&base).map(|k| k.hash), Some(key), "an edited header must miss");
    }

    /// The object keys of a job that uses no time macro are those of before timed keys
    /// existed (`object-base-v1`, `object-full-v1`): their cache entries stay valid.
    #[test]
    fn objects_without_time_macros_keep_their_keys() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("a.cpp");
        std::fs::write(&src, "int x;\n").unwrap();
        let obj = t.path().join("a.cpp.o");
        let job = CompileJob { source: src.clone(), object: obj.clone(), args: vec!["avr-g++".into(), "-c".into(), "-Os".into(), src.display().to_string(), "-o".into(), obj.display().to_string()] };
        // The compiler honours SOURCE_DATE_EPOCH and it is set: still no effect.
        let cache = ObjectCache::with_source_date_epoch(None, Some("1700000000".into()));
        let mut c = compiler(1);
        c.version = gcc12().version;
        let base = cache.base_key(&c, &job).unwrap();
        // Values computed by the code before this change.
        assert_eq!(crate::cache::hash::hex(&base.hash), "2ff44bc218ad85fe20950b48f77df6154465c245427203771d1bbc1205d39100");
        let header = Hashed { hash: Some(*blake3::hash(b"A").as_bytes()), macros: TimeMacros::default(), stamp: None, names_own_path: false };
        let untimed = cache.untimed(&base, std::iter::once((Path::new("/fixed/a.h"), header)), false).unwrap();
        let old_full = "1ef4387c74aa155c392dac28192ea1f786001d648c5d628f6d9cc4ed3100fbcf";
        for at in [0, unix_now(), unix_now() + 86_400 * 3] {
            let key = cache.timed(&base, &untimed, at).unwrap();
            assert_eq!((crate::cache::hash::hex(&key.hash).as_str(), key.time.any()), (old_full, false));
        }
        // Through a real store: record, then the lookup of a later run.
        let c = compiled("int x;\n", "#define A 1\n");
        let cache = ObjectCache::new(Some(&c.store));
        let base = cache.base_key(&compiler(1), &c.job).unwrap();
        let (recorded, time) = cache.record(&base, &c.job, unix_now() - 100_000, || None);
        assert!(!time.any());
        let expected = keys::object_full(&base.hash, [(c.header.as_path(), *blake3::hash(b"#define A 1\n").as_bytes())], false);
        assert_eq!(recorded, Some(expected));
        assert_eq!(ObjectCache::new(Some(&c.store)).local_full_key(&base).map(|k| k.hash), Some(expected));
    }

    #[test]
    fn date_keys_by_the_day_and_time_by_the_second() {
        let c = compiled("#include \"a.h\"\nconst char d[] = __DATE__;\n", "");
        let cache = ObjectCache::with_source_date_epoch(Some(&c.store), None);
        let base = cache.base_key(&compiler(1), &c.job).unwrap();
        let (key, time) = cache.record(&base, &c.job, unix_now(), || None);
        assert!(time.date && !time.time && !time.timestamp);
        let untimed = keys::object_full(&base.hash, [(c.header.as_path(), *blake3::hash(b"").as_bytes())], false);
        assert!(key.is_some_and(|k| k != untimed), "a __DATE__ object has a timed key");
        // Later today: the same key (unless midnight passed in between); another day: not.
        let lookup = cache.local_full_key(&base).unwrap();
        let today = |at: i64| keys::local_time(at).unwrap()[..10].to_string();
        if today(unix_now()) == today(unix_now() - 1) {
            assert_eq!(Some(lookup.hash), key);
        }
        let u = cache.untimed(&base, std::iter::once((c.header.as_path(), cache.file(&c.header))), false).unwrap();
        assert_ne!(cache.timed(&base, &u, unix_now() + 86_400), cache.timed(&base, &u, unix_now()));

        // __TIME__ in the header: keyed by the second; a compile whose clock moved on
        // during it is not stored.
        let c = compiled("#include \"a.h\"\n", "const char t[] = __TIME__;\n");
        let cache = ObjectCache::with_source_date_epoch(Some(&c.store), None);
        let base = cache.base_key(&compiler(1), &c.job).unwrap();
        let (key, time) = cache.record(&base, &c.job, unix_now() - 5, || None);
        assert!(time.time && key.is_none(), "started 5 s ago: which second the compiler read is unknown");
        let u = cache.untimed(&base, std::iter::once((c.header.as_path(), cache.file(&c.header))), false).unwrap();
        let now = unix_now();
        assert_ne!(cache.timed(&base, &u, now), cache.timed(&base, &u, now + 1));
        let lookup = cache.local_full_key(&base).expect("the manifest was stored");
        assert!(!c.store.get_files(Namespace::Object, &lookup.hash, &[("o", &c.dir().join("fetched.o"))]), "nothing stored under a timed key");
    }

    #[test]
    fn source_date_epoch_replaces_the_clock_only_for_a_compiler_that_honours_it() {
        let c = compiled("const char t[] = __TIME__ __DATE__;\n", "");
        for (compiler, honours) in [(gcc12(), true), (compiler(1), false)] {
            let cache = ObjectCache::with_source_date_epoch(Some(&c.store), Some("1700000000".into()));
            let base = cache.base_key(&compiler, &c.job).unwrap();
            let u = cache.untimed(&base, std::iter::once((c.header.as_path(), cache.file(&c.header))), false).unwrap();
            let (now, later) = (cache.timed(&base, &u, unix_now()).unwrap(), cache.timed(&base, &u, unix_now() + 86_400 * 30).unwrap());
            assert_eq!(now == later, honours, "{}", compiler.version);
            let other = ObjectCache::with_source_date_epoch(None, Some("1600000000".into()));
            let other_key = other.timed(&base, &u, unix_now()).unwrap();
            assert_eq!(other_key != now, honours, "another SOURCE_DATE_EPOCH is another key");
        }
    }

    #[test]
    fn timestamp_keys_by_the_files_mtime_not_the_clock() {
        let c = compiled("#include \"a.h\"\n", "const char s[] = __TIMESTAMP__;\n");
        age(&c.header, 3600);
        let cache = ObjectCache::with_source_date_epoch(Some(&c.store), Some("1".into()));
        let base = cache.base_key(&gcc12(), &c.job).unwrap();
        let u = cache.untimed(&base, std::iter::once((c.header.as_path(), cache.current_file(&c.header))), false).unwrap();
        assert!(u.time.timestamp && !u.time.read_clock());
        let k = cache.timed(&base, &u, unix_now()).unwrap();
        assert_eq!(Some(k), cache.timed(&base, &u, unix_now() + 86_400), "the clock does not matter");
        // Touched, same bytes: another key.
        age(&c.header, 60);
        let u2 = cache.untimed(&base, std::iter::once((c.header.as_path(), cache.current_file(&c.header))), false).unwrap();
        assert_ne!(Some(k), cache.timed(&base, &u2, unix_now()));
        assert_eq!(u.full, u2.full, "the bytes did not change");
    }

    #[test]
    fn key_ignores_paths_but_not_content_flags_or_compiler() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a.c");
        let b = t.path().join("sub_b.c");
        std::fs::write(&a, "int x;").unwrap();
        std::fs::write(&b, "int x;").unwrap();
        let c = ObjectCache::new(None);
        let ka = c.base_key(&compiler(1), &job(&a, "/out1/a.c.o", "-Os")).unwrap().hash;
        let kb = c.base_key(&compiler(1), &job(&b, "/out2/b.c.o", "-Os")).unwrap().hash;
        assert_eq!(ka, kb, "same bytes and flags at other paths share a key");
        assert_ne!(ka, c.base_key(&compiler(1), &job(&a, "/out1/a.c.o", "-O2")).unwrap().hash, "flags matter");
        assert_ne!(ka, c.base_key(&compiler(2), &job(&a, "/out1/a.c.o", "-Os")).unwrap().hash, "compiler matters");
        std::fs::write(&a, "int y;").unwrap();
        let c2 = ObjectCache::new(None);
        assert_ne!(ka, c2.base_key(&compiler(1), &job(&a, "/out1/a.c.o", "-Os")).unwrap().hash, "content matters");
    }

    #[test]
    fn header_content_changes_full_key() {
        let t = tempfile::tempdir().unwrap();
        let h = t.path().join("h.h");
        std::fs::write(&h, "1").unwrap();
        let base = untimed_base([7u8; 32]);
        let k1 = ObjectCache::new(None).key_from(&base, std::slice::from_ref(&h), false).unwrap();
        std::fs::write(&h, "2").unwrap();
        let k2 = ObjectCache::new(None).key_from(&base, std::slice::from_ref(&h), false).unwrap();
        assert_ne!(k1, k2);
        std::fs::remove_file(&h).unwrap();
        assert!(ObjectCache::new(None).key_from(&base, &[h], false).is_none(), "a vanished header is a miss");
    }

    /// Set a file's modification time `secs_ago` seconds in the past.
    fn age(path: &Path, secs_ago: i64) {
        use std::os::unix::ffi::OsStrExt;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let t = libc::timespec { tv_sec: now - secs_ago, tv_nsec: 0 };
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) }, 0);
    }

    #[test]
    fn current_hash_trusts_an_unchanged_stat_and_rereads_a_changed_file() {
        let t = tempfile::tempdir().unwrap();
        let h = t.path().join("h.h");
        std::fs::write(&h, "one").unwrap();
        age(&h, 60);
        // ctime is set by utimensat itself; let it fall out of the racy window.
        std::thread::sleep(RACY_WINDOW + std::time::Duration::from_millis(100));
        let c = ObjectCache::new(None);
        let first = c.file_hash(&h).unwrap();
        assert_eq!(c.current_hash(&h), Some(first), "unchanged file: the memo holds");
        // Same size, mtime put back: only ctime tells, and it must.
        std::fs::write(&h, "two").unwrap();
        age(&h, 60);
        let second = c.current_hash(&h).unwrap();
        assert_ne!(second, first, "a rewrite with equal size and mtime is seen through ctime");
        assert_eq!(second, *blake3::hash(b"two").as_bytes());
        // file_hash stays the run's first answer for that memo, current_hash follows the file.
        assert_eq!(c.file_hash(&h), Some(second));
        std::fs::remove_file(&h).unwrap();
        assert_eq!(c.current_hash(&h), None, "a vanished file has no hash");
    }

    #[test]
    fn current_hash_rereads_a_file_changed_within_the_racy_window() {
        let t = tempfile::tempdir().unwrap();
        let h = t.path().join("fresh.h");
        std::fs::write(&h, "aaaa").unwrap();
        let c = ObjectCache::new(None);
        let first = c.file_hash(&h).unwrap();
        // Rewritten at once: equal size, and mtime may not have moved at the clock's tick.
        std::fs::write(&h, "bbbb").unwrap();
        assert_eq!(c.current_hash(&h), Some(*blake3::hash(b"bbbb").as_bytes()));
        assert_ne!(c.current_hash(&h), Some(first));
    }

    /// A later run trusts the hashes an earlier one kept, by stat: an unchanged file
    /// is not read, a touched one (same bytes, new mtime) is read once and keeps its
    /// hash, an edited one gets its new hash; a file hashed inside the racy window is
    /// not kept.
    #[test]
    fn hashes_are_kept_between_runs_and_trusted_by_stat() {
        let reads = |c: &ObjectCache| c.files_read.load(std::sync::atomic::Ordering::Relaxed);
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("cache"), 1 << 30).unwrap();
        let (old, fresh) = (t.path().join("old.h"), t.path().join("fresh.h"));
        std::fs::write(&old, "one").unwrap();
        age(&old, 60);
        std::thread::sleep(RACY_WINDOW + std::time::Duration::from_millis(100));
        std::fs::write(&fresh, "new").unwrap();
        let first = ObjectCache::new(Some(&store));
        let (h_old, h_fresh) = (first.file_hash(&old).unwrap(), first.file_hash(&fresh).unwrap());
        assert_eq!(reads(&first), 2);
        drop(first);

        let second = ObjectCache::new(Some(&store));
        assert_eq!((second.file_hash(&old), second.file_hash(&fresh)), (Some(h_old), Some(h_fresh)));
        assert_eq!(reads(&second), 1, "the kept file costs a stat; the racy one was not kept");
        drop(second);

        // Touched: new mtime, same bytes.
        age(&old, 30);
        let third = ObjectCache::new(Some(&store));
        assert_eq!(third.file_hash(&old), Some(h_old));
        assert_eq!(reads(&third), 1, "a touched file is hashed once");
        drop(third);
        std::thread::sleep(RACY_WINDOW + std::time::Duration::from_millis(100));
        let fourth = ObjectCache::new(Some(&store));
        assert_eq!(fourth.file_hash(&old), Some(h_old));
        assert_eq!(reads(&fourth), 1, "hashed inside the racy window (ctime), so hashed again");
        drop(fourth);
        let fifth = ObjectCache::new(Some(&store));
        assert_eq!(fifth.file_hash(&old), Some(h_old));
        assert_eq!(reads(&fifth), 0, "then kept");
        drop(fifth);

        // Edited, same size, mtime put back: ctime tells.
        std::fs::write(&old, "two").unwrap();
        age(&old, 60);
        let sixth = ObjectCache::new(Some(&store));
        assert_eq!(sixth.file_hash(&old), Some(*blake3::hash(b"two").as_bytes()));
        assert_eq!(reads(&sixth), 1);
    }

    #[test]
    fn kept_hashes_belong_to_their_base_folder_and_a_damaged_table_reads_empty() {
        let mut kept = FileTable::default();
        let stamp = Stamp { dev: 1, ino: 2, size: 3, mtime: (4, 5), ctime: (6, 7), racy: false };
        let h = Hashed { hash: Some([9; 32]), macros: TimeMacros { date: true, time: false, timestamp: true }, stamp: Some(stamp), names_own_path: true };
        kept.insert(OsString::from("/a/b.h"), h);
        let bytes = FileHashes::encode(&kept);
        let back = FileHashes::decode(&bytes).unwrap();
        assert!(back.get(OsStr::new("/a/b.h")) == Some(&h), "a round trip keeps every field");
        assert!(FileHashes::decode(&bytes[..bytes.len() - 1]).is_none(), "a cut table is not read");
        let mut other_base = bytes.clone();
        other_base.splice(FILE_HASHES_MAGIC.len()..FILE_HASHES_MAGIC.len(), b"/elsewhere".iter().copied());
        assert!(FileHashes::decode(&other_base).is_none(), "hashes taken with another base folder are not used");
    }

    #[test]
    fn depfile_parsing() {
        let d = "/o/x.cpp.o: /s/x.cpp /core/Arduino.h \\\n /lib/My\\ Lib/a.h\n\n/core/Arduino.h:\n";
        assert_eq!(
            parse_depfile(d),
            vec![PathBuf::from("/s/x.cpp"), PathBuf::from("/core/Arduino.h"), PathBuf::from("/lib/My Lib/a.h")]
        );
        assert_eq!(depfile_of(Path::new("/o/x.cpp.o")), PathBuf::from("/o/x.cpp.d"));
    }

    #[test]
    fn normalize_replaces_embedded_paths() {
        let v = crate::cache::paths::normalize_args(&["-MF/o/x.d".into(), "/o/x.o".into()], &[(Path::new("/o/x.o"), "OBJ")]);
        assert_eq!(v, vec!["-MF/o/x.d", "OBJ"]);
    }
}
