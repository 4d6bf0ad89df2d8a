//! One preprocessor run of library discovery, remembered like an object.
//!
//! The answer of a run (it went through, or it stopped at the first header it could
//! not find) depends on the compiler, the command (the include path is part of it),
//! the source's bytes and the bytes of every header the run read. The key covers the
//! first three; the record lists the headers (GCC's `-H` trace, which unlike `-MMD`
//! is printed even when the run stops on a missing header) with their hashes, and a
//! lookup only counts when every one of them is unchanged and a header that was
//! missing is still missing. Headers in the compiler's own folders belong to the
//! compiler's identity, as for objects.
//!
//! The header list is stored apart from the answer, as a set keyed by its paths and
//! hashes: the examples of a library read the same few thousand headers through its
//! umbrella header, and every answer that read them points at one set, which a run
//! checks once (`HeaderSets`), however many answers share it. The check itself is the
//! object cache's: each header hashed once per run.

use crate::cache::Namespace;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::exec::Runner;
use crate::cache::keys::{self, domain};
use crate::cache::hash::{hex, Hash, Hasher};
use crate::arduino::library::IncludeCache;
use super::shell;
use super::speculate::Queries;
use super::StoredGuess;
use crate::cpp::lex::{directive_parts, tokenize, Kind};
use crate::cache::paths;
use crate::cache::objects::{include_dirs, ObjectCache};
use crate::cache::store::Store;
use crate::arduino::toolchain::Compiler;

/// What one preprocessor run found.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// The header the preprocessor stopped at because no include folder has it.
    pub missing: Option<String>,
    /// What the preprocessor said besides its header trace (for error messages).
    pub message: String,
    /// Every header the run opened, in order (system headers included); answers
    /// that read the same headers share one list (`HeaderSets::intern`).
    pub headers: Arc<Vec<PathBuf>>,
    /// A file the run read (source or non-system header) uses `__has_include`, whose
    /// answer depends on the include path itself, not only on the headers found.
    pub has_include: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    /// The answer, its `headers` left empty: they are the set's.
    outcome: Outcome,
    /// The key (hex) of the header set the run read.
    set: String,
}

/// A stored header set: every header in the order the run opened it, with the hash
/// of each one outside the compiler's folders. Binary, since a warm run reads one per
/// distinct set and a heavy library's hold thousands of headers: after
/// `SET_MAGIC` and the number of headers (so a record cut between two headers is
/// not a smaller set), per header a little-endian u32 length, the path as keys write it (the
/// base folder as its mark, `paths::relative_text`), a flag byte (1: a hash follows)
/// and the 32-byte hash. Anything else (a cut record, the JSON of before) is a miss.
struct SetRecord;

const SET_MAGIC: &[u8] = b"fbuild-header-set-v2\n";

impl SetRecord {
    fn encode(headers: &[(&Path, Option<Hash>)]) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = SET_MAGIC.to_vec();
        out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
        for (path, hash) in headers {
            let text = path.to_string_lossy();
            let rel = paths::relative_text(&text);
            let bytes = if matches!(rel, std::borrow::Cow::Borrowed(_)) { path.as_os_str().as_bytes() } else { rel.as_bytes() };
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
            match hash {
                Some(h) => {
                    out.push(1);
                    out.extend_from_slice(h);
                }
                None => out.push(0),
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Vec<(PathBuf, Option<Hash>)>> {
        use std::os::unix::ffi::OsStrExt;
        let mut rest = bytes.strip_prefix(SET_MAGIC)?;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (field, after) = (rest.get(..n)?, rest.get(n..)?);
            rest = after;
            Some(field)
        };
        let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let mut headers = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let raw = take(len)?;
            let path = match std::str::from_utf8(raw) {
                Ok(text) if text.contains(paths::BASE_MARK) => PathBuf::from(paths::absolute_text(text).into_owned()),
                _ => PathBuf::from(std::ffi::OsStr::from_bytes(raw)),
            };
            let hash = match take(1)?[0] {
                0 => None,
                1 => Some(take(32)?.try_into().ok()?),
                _ => return None,
            };
            headers.push((path, hash));
        }
        rest.is_empty().then_some(headers)
    }
}

/// The header sets of this run: one list per distinct set of headers, and one check
/// per stored set.
#[derive(Default)]
pub(super) struct HeaderSets {
    /// By the hash of the paths alone: lists read by several answers are one `Arc`.
    lists: Mutex<HashMap<Hash, Arc<Vec<PathBuf>>>>,
    /// Stored sets checked this run, by key: the list when every header is unchanged.
    checked: Mutex<HashMap<Hash, Option<Arc<Vec<PathBuf>>>>>,
}

impl HeaderSets {
    /// The run's one copy of this list of headers.
    pub(super) fn intern(&self, headers: Vec<PathBuf>) -> Arc<Vec<PathBuf>> {
        let mut h = Hasher::new(domain::DISCOVER_HEADER_LIST);
        for p in &headers {
            h.path(p);
        }
        self.lists.lock().unwrap().entry(h.finish()).or_insert_with(|| Arc::new(headers)).clone()
    }
}

/// Runs (or remembers) discovery preprocessor runs; shared by every sketch of a build.
pub struct Preprocessor<'a> {
    store: Option<&'a Store>,
    files: &'a ObjectCache<'a>,
    compiler: Compiler,
    /// This process's answers, so sketches sharing a library file share its runs.
    memo: Mutex<HashMap<Hash, Arc<Outcome>>>,
    /// Clean answers (no header missing, no `__has_include`) by source and command
    /// shape (the command without its `-I` folders), with the include path they had:
    /// candidates for the same file under another sketch's include path.
    clean: Mutex<HashMap<Hash, Vec<(Vec<PathBuf>, Arc<Outcome>)>>>,
    /// Preprocessor processes started.
    pub runs: AtomicUsize,
    /// Plain `#include` lists of the files discovery guesses from (`speculate.rs`),
    /// scanned once per build however many sketches reach them.
    pub(super) scans: IncludeCache,
    queries: Mutex<HashMap<PathBuf, Arc<Queries>>>,
    /// Stored guesses read this run, by the command they widen.
    guesses: Mutex<HashMap<Hash, Option<Arc<StoredGuess>>>>,
    /// Header lists shared by answers, and the checks of stored ones.
    pub(super) sets: HeaderSets,
    /// Per-run memos of the work discovery repeats per sketch on the same answers
    /// (`speculate.rs`, `mod.rs`): warm, a sketch's discovery is these lookups.
    pub(super) memos: super::Memos,
    /// Whether a path exists, asked once per build: guesses and their checks
    /// (`speculate.rs`) ask about the same header names for every sketch.
    exists: Mutex<HashMap<PathBuf, bool>>,
    /// Names defined at the top of a source, per command shape (`shell.rs`).
    defined: Mutex<HashMap<Hash, Arc<HashSet<String>>>>,
    /// One lock per command: the second asker of a running command waits for its answer.
    in_flight: Mutex<HashMap<Hash, Arc<Mutex<()>>>>,
}

impl<'a> Preprocessor<'a> {
    pub fn new(store: Option<&'a Store>, files: &'a ObjectCache<'a>, compiler: Compiler) -> Preprocessor<'a> {
        Preprocessor { store, files, compiler, memo: Mutex::default(), clean: Mutex::default(), runs: AtomicUsize::new(0), scans: IncludeCache::default(), queries: Mutex::default(), sets: HeaderSets::default(), guesses: Mutex::default(), memos: Default::default(), in_flight: Mutex::default(), exists: Mutex::default(), defined: Mutex::default() }
    }

    /// The files a run read whose `__has_include` questions count: the source and
    /// every header outside the compiler's own folders.
    pub(super) fn read_files<'o>(&'o self, source: &'o Path, outcome: &'o Outcome) -> impl Iterator<Item = &'o Path> + 'o {
        std::iter::once(source).chain(outcome.headers.iter().map(PathBuf::as_path).filter(|h| !self.is_system(h)))
    }

    /// What a file asks `__has_include` (read once per build).
    pub(super) fn queries(&self, path: &Path) -> Arc<Queries> {
        if let Some(q) = self.queries.lock().unwrap().get(path) {
            return q.clone();
        }
        let q = Arc::new(std::fs::read(path).map(|b| Queries::of(&b)).unwrap_or(Queries::None));
        self.queries.lock().unwrap().insert(path.to_path_buf(), q.clone());
        q
    }

    /// `path.exists()`, remembered for this build.
    pub(super) fn exists(&self, path: &Path) -> bool {
        if let Some(&e) = self.exists.lock().unwrap().get(path) {
            return e;
        }
        let e = path.exists();
        self.exists.lock().unwrap().insert(path.to_path_buf(), e);
        e
    }

    /// The compiler's own include folders, searched after every `-I` folder.
    pub fn system_dirs(&self) -> &[PathBuf] {
        &self.compiler.system_dirs
    }

    fn is_system(&self, p: &Path) -> bool {
        self.compiler.system_dirs.iter().any(|d| p.starts_with(d))
    }

    fn key(&self, args: &[String], source: &Path) -> Option<Hash> {
        self.key_of(domain::DISCOVER_PREPROCESS, args.iter(), source)
    }

    /// The key of the command without its include folders: runs that differ only in
    /// their include path share it.
    fn shape(&self, args: &[String], source: &Path) -> Option<Hash> {
        self.key_of(domain::DISCOVER_SHAPE, args.iter().filter(|a| !a.starts_with("-I")), source)
    }

    fn key_of<'s>(&self, domain: &str, args: impl Iterator<Item = &'s String>, source: &Path) -> Option<Hash> {
        let bytes = self.files.file_hash(source)?;
        Some(keys::discovery(domain, &self.compiler.identity, &bytes, paths::discovery_args(args, source)))
    }

    /// A clean answer for the same source and command under another include path
    /// holds for this one when every header it read is found in the same place:
    /// its folder is on this path too, and no folder ahead of it here (that was not
    /// ahead of it there) has a file of the same name. Then GCC reads the same files
    /// in the same order, and with no `__has_include` nothing else depends on the path.
    fn transfer(&self, shape: &Hash, includes: &[PathBuf]) -> Option<Arc<Outcome>> {
        let clean = self.clean.lock().unwrap();
        let candidates = clean.get(shape)?;
        candidates.iter().find(|(theirs, o)| self.same_headers(o, theirs, includes)).map(|(_, o)| o.clone())
    }

    fn same_headers(&self, o: &Outcome, theirs: &[PathBuf], ours: &[PathBuf]) -> bool {
        let system = &self.compiler.system_dirs;
        o.headers.iter().all(|h| {
            let from = |dirs: &[PathBuf]| dirs.iter().filter(|d| h.starts_with(d)).max_by_key(|d| d.as_os_str().len()).cloned();
            // Found through the include path, or in the compiler's own folders (after
            // every -I folder); otherwise beside the file that included it.
            let (dir, ahead_here, ahead_there): (PathBuf, &[PathBuf], &[PathBuf]) = match from(theirs) {
                Some(d) => match (ours.iter().position(|x| *x == d), theirs.iter().position(|x| *x == d)) {
                    (Some(i), Some(j)) => (d, &ours[..i], &theirs[..j]),
                    _ => return false,
                },
                None => match from(system) {
                    Some(d) => (d, ours, theirs),
                    None => return true,
                },
            };
            let Ok(rel) = h.strip_prefix(&dir) else { return false };
            ahead_here.iter().all(|e| ahead_there.contains(e) || !e.join(rel).exists())
        })
    }

    /// Preprocess `source` with `args` (a full command line from
    /// `plan::Context::preprocess`), or take the remembered answer. The count says
    /// how many processes it started.
    pub fn run(&self, runner: &Runner, args: &[String], source: &Path) -> (Arc<Outcome>, usize) {
        let key = self.key(args, source);
        // Sketches that reach the same library file at once wait for one run of it.
        let gate = key.map(|k| self.in_flight.lock().unwrap().entry(k).or_default().clone());
        let _turn = gate.as_ref().map(|g| g.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(o) = key.and_then(|k| self.known(&k, args, source)) {
            return (o, 0);
        }
        let includes = include_dirs(args);
        let shape = self.shape(args, source);
        if let (Some(k), Some(o)) = (key, shape.and_then(|s| self.transfer(&s, &includes))) {
            self.memo.lock().unwrap().insert(k, o.clone());
            self.remember(&k, &o);
            return (o, 0);
        }
        let (settled, listed) = self.settled(runner, args, source);
        if let Some(o) = settled {
            if let Some(k) = key {
                self.memo.lock().unwrap().insert(k, o.clone());
                self.remember(&k, &o);
            }
            return (o, listed);
        }
        let cmd = self.command(args);
        self.runs.fetch_add(1, Ordering::Relaxed);
        let out = runner.run(&cmd, None);
        let mut outcome = parse_output(&out.text);
        outcome.headers = self.sets.intern(std::mem::take(Arc::make_mut(&mut outcome.headers)));
        if out.success {
            outcome.missing = None;
        }
        let asks = self.read_files(source, &outcome).any(|p| *self.queries(p) != Queries::None);
        outcome.has_include = asks;
        let outcome = Arc::new(outcome);
        // Only an answer the preprocessor actually gave is worth keeping: not an
        // interruption or a crash.
        let answered = out.success || outcome.missing.is_some();
        if let (Some(k), true) = (key, answered && out.signal.is_none() && !runner.interrupted()) {
            self.memo.lock().unwrap().insert(k, outcome.clone());
            self.remember(&k, &outcome);
            if let (Some(sh), None, false) = (shape, &outcome.missing, outcome.has_include) {
                if out.success {
                    self.clean.lock().unwrap().entry(sh).or_default().push((includes, outcome.clone()));
                }
            }
        }
        (outcome, 1 + listed)
    }

    /// The answer this run or the store has for the command, if any: no process.
    fn known(&self, key: &Hash, args: &[String], source: &Path) -> Option<Arc<Outcome>> {
        if let Some(o) = self.memo.lock().unwrap().get(key) {
            return Some(o.clone());
        }
        let o = Arc::new(self.lookup(key, args, source)?);
        self.memo.lock().unwrap().insert(*key, o.clone());
        Some(o)
    }

    /// Whether `run` would answer the command without starting a process.
    pub(super) fn remembered(&self, args: &[String], source: &Path) -> bool {
        self.key(args, source).is_some_and(|k| self.known(&k, args, source).is_some())
    }

    /// The folders a guess (`speculate.rs`) added to this command's include path
    /// the last time its run proved the reference's chain: a warm run looks that
    /// wider command up instead of walking the includes again.
    pub(super) fn stored_guess(&self, args: &[String], source: &Path) -> Option<Arc<StoredGuess>> {
        let key = self.key_of(domain::DISCOVER_GUESS, args.iter(), source)?;
        if let Some(g) = self.guesses.lock().unwrap().get(&key) {
            return g.clone();
        }
        let g = self
            .store
            .and_then(|s| s.get_record(Namespace::Discover, &key))
            .and_then(|b| serde_json::from_slice::<StoredGuess>(&paths::absolute_record(b)).ok())
            .map(Arc::new);
        self.guesses.lock().unwrap().insert(key, g.clone());
        g
    }

    pub(super) fn remember_guess(&self, args: &[String], source: &Path, guess: StoredGuess) {
        let Some(key) = self.key_of(domain::DISCOVER_GUESS, args.iter(), source) else { return };
        let guess = Arc::new(guess);
        let old = self.guesses.lock().unwrap().insert(key, Some(guess.clone()));
        if old.flatten() == Some(guess.clone()) {
            return;
        }
        if let (Some(store), Ok(bytes)) = (self.store, serde_json::to_vec(&*guess)) {
            let _ = store.put_record(Namespace::Discover, &key, &paths::relative_record(&bytes));
        }
    }

    /// The answer for a source that includes nothing with this command (`shell.rs`),
    /// without preprocessing it; the flag says whether the compiler ran to list its
    /// predefined names (once per command shape and cache).
    fn settled(&self, runner: &Runner, args: &[String], source: &Path) -> (Option<Arc<Outcome>>, usize) {
        match self.shell_outcome(runner, args, source) {
            Some((o, ran)) => (o, ran as usize),
            None => (None, 0),
        }
    }

    fn shell_outcome(&self, runner: &Runner, args: &[String], source: &Path) -> Option<(Option<Arc<Outcome>>, bool)> {
        // A forced include is read before the source's first line.
        if args.iter().any(|a| a.starts_with("-include") || a.starts_with("-imacros")) || !args.iter().any(|a| a == "-x") {
            return None;
        }
        let bytes = std::fs::read(source).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        // Only a file that opens with a conditional can be a shell: the sketches and
        // most sources never make the compiler list its names.
        let first = tokenize(text).into_iter().next()?;
        if first.kind != Kind::Directive || !matches!(directive_parts(&first.text).0, "if" | "ifdef" | "ifndef") {
            return None;
        }
        let (defined, ran) = self.defined_names(runner, args, source)?;
        if !shell::includes_nothing(text, &defined) {
            return Some((None, ran));
        }
        let outcome = Outcome { has_include: Queries::of(&bytes) != Queries::None, ..Default::default() };
        Some((Some(Arc::new(outcome)), ran))
    }

    /// The names defined at the top of any source this command preprocesses: GCC's
    /// own listing (`-dM`) for the command on an empty input, remembered per command
    /// shape in memory and in the store.
    fn defined_names(&self, runner: &Runner, args: &[String], source: &Path) -> Option<(Arc<HashSet<String>>, bool)> {
        let src = source.display().to_string();
        let key = keys::discover_defined(&self.compiler.identity, args.iter().filter(|a| !a.starts_with("-I") && **a != src));
        let mut memo = self.defined.lock().unwrap();
        if let Some(d) = memo.get(&key) {
            return Some((d.clone(), false));
        }
        let made = crate::cache::store::record_or_run(self.store, Namespace::Discover, &key, || {
            let mut cmd = Vec::new();
            let mut it = args.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "-o" => {
                        it.next();
                    }
                    _ if *a == src => cmd.push("/dev/null".to_string()),
                    _ => cmd.push(a.clone()),
                }
            }
            cmd.push("-dM".to_string());
            self.runs.fetch_add(1, Ordering::Relaxed);
            let out = runner.run(&cmd, None);
            if !out.success || !out.stdout.contains("#define __GNUC__") {
                return Err(());
            }
            Ok(out.stdout.into_bytes())
        });
        // A failed listing (`Err`) is not stored: discovery goes on without it.
        let (listing, ran) = made.ok()?;
        let listing = String::from_utf8_lossy(&listing);
        let d = Arc::new(shell::defined_names(&listing));
        memo.insert(key, d.clone());
        Some((d, ran))
    }

    /// The command actually run. `-H` lists every header opened, on stderr, even when
    /// the run stops early. GCC's `-fdirectives-only` (with `-E`) still evaluates every
    /// directive (`#if` with macros expanded, `#define`, `#include` computed or
    /// `_next`, `__has_include`, `#pragma once`, `#error`) but leaves the text
    /// between them unexpanded: the same headers in the same order and the same
    /// missing header, for about half the time (docs/design.md). Only GCC has it.
    fn command(&self, args: &[String]) -> Vec<String> {
        let mut cmd = args.to_vec();
        let mut flags = vec!["-H".to_string()];
        if self.compiler.gcc_major().is_some() && args.iter().any(|a| a == "-E") {
            flags.push("-fdirectives-only".to_string());
        }
        cmd.splice(1..1, flags);
        cmd
    }

    fn lookup(&self, key: &Hash, args: &[String], source: &Path) -> Option<Outcome> {
        let bytes = paths::absolute_record(self.store?.get_record(Namespace::Discover, key)?);
        let mut rec: Record = serde_json::from_slice(&bytes).ok()?;
        rec.outcome.headers = self.checked_set(&rec.set)?;
        if let Some(missing) = &rec.outcome.missing {
            // A header that was missing and has appeared since changes the answer.
            let here = source.parent().map(Path::to_path_buf).unwrap_or_default();
            let dirs = args.iter().filter_map(|a| a.strip_prefix("-I")).map(PathBuf::from);
            if std::iter::once(here).chain(dirs).any(|d| d.join(missing).exists()) {
                return None;
            }
        }
        Some(rec.outcome)
    }

    /// The headers of a stored set when every one is unchanged; checked once per run.
    fn checked_set(&self, set: &str) -> Option<Arc<Vec<PathBuf>>> {
        let key = key_from_hex(set)?;
        if let Some(c) = self.sets.checked.lock().unwrap().get(&key) {
            return c.clone();
        }
        let check = || -> Option<Arc<Vec<PathBuf>>> {
            let headers = SetRecord::decode(&self.store?.get_record(Namespace::Discover, &key)?)?;
            let stored: Vec<(&Path, Hash)> = headers.iter().filter_map(|(p, h)| Some((p.as_path(), (*h)?))).collect();
            if !self.files.all_hash_to(&stored) {
                return None;
            }
            Some(self.sets.intern(headers.into_iter().map(|(p, _)| p).collect()))
        };
        let c = check();
        self.sets.checked.lock().unwrap().insert(key, c.clone());
        c
    }

    fn remember(&self, key: &Hash, outcome: &Outcome) {
        let Some(store) = self.store else { return };
        let mut headers = Vec::with_capacity(outcome.headers.len());
        let mut h = Hasher::new(domain::DISCOVER_HEADER_SET);
        for p in outcome.headers.iter() {
            // As the preprocessor read it: it may have changed since a lookup hashed it.
            let hash = if self.is_system(p) {
                None
            } else {
                match self.files.current_hash(p) {
                    Some(x) => Some(x),
                    None => return,
                }
            };
            h.str(&paths::relative_text(&p.to_string_lossy())).bytes(hash.as_ref().map_or(&[][..], |x| &x[..]));
            headers.push((p.as_path(), hash));
        }
        let set = h.finish();
        // Another answer of this run may have stored the same set already.
        let known = self.sets.checked.lock().unwrap().get(&set).is_some_and(Option::is_some);
        if !known {
            if store.put_record(Namespace::Discover, &set, &SetRecord::encode(&headers)).is_err() {
                return;
            }
            self.sets.checked.lock().unwrap().insert(set, Some(outcome.headers.clone()));
        }
        let rec = Record { outcome: Outcome { headers: Arc::default(), ..outcome.clone() }, set: hex(&set) };
        if let Ok(bytes) = serde_json::to_vec(&rec) {
            let _ = store.put_record(Namespace::Discover, key, &paths::relative_record(&bytes));
        }
    }
}

/// A key written by `hex`.
fn key_from_hex(text: &str) -> Option<Hash> {
    let mut key = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

/// Split the preprocessor's stderr into its `-H` trace (". /path/header.h", one dot
/// per nesting level), the header it could not find, and everything else.
pub fn parse_output(text: &str) -> Outcome {
    let mut o = Outcome::default();
    let mut headers = Vec::new();
    let mut in_guard_list = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('.') {
            let path = rest.trim_start_matches('.');
            if let Some(path) = path.strip_prefix(' ') {
                headers.push(PathBuf::from(path));
                continue;
            }
        }
        // After the trace, -H lists headers that could use include guards: not an error.
        if line.starts_with("Multiple include guards may be useful for:") {
            in_guard_list = true;
            continue;
        }
        if in_guard_list && !line.contains(": ") {
            continue;
        }
        in_guard_list = false;
        if o.missing.is_none() {
            if let Some(pos) = line.find(" fatal error: ") {
                let rest = &line[pos + " fatal error: ".len()..];
                if let Some(name) = rest.strip_suffix(": No such file or directory") {
                    o.missing = Some(name.trim().to_string());
                }
            }
        }
        o.message.push_str(line);
        o.message.push('\n');
    }
    o.headers = Arc::new(headers);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_missing_header_and_message_are_told_apart() {
        let text = ". /core/Arduino.h\n.. /usr/lib/avr/include/stdlib.h\n... /usr/lib/gcc/avr/5.4.0/include/stddef.h\n\
/s/S.ino.cpp:3:21: fatal error: OneWire.h: No such file or directory\n #include <OneWire.h>\n                     ^\ncompilation terminated.\n\
Multiple include guards may be useful for:\n/usr/lib/avr/include/avr/portpins.h\n";
        let o = parse_output(text);
        assert_eq!(*o.headers, vec![PathBuf::from("/core/Arduino.h"), PathBuf::from("/usr/lib/avr/include/stdlib.h"), PathBuf::from("/usr/lib/gcc/avr/5.4.0/include/stddef.h")]);
        assert_eq!(o.missing.as_deref(), Some("OneWire.h"));
        assert!(o.message.starts_with("/s/S.ino.cpp:3:21: fatal error: OneWire.h"));
        assert!(!o.message.contains("portpins"));
    }

    #[test]
    fn an_answer_moves_to_another_path_only_where_the_headers_are_found_alike() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
        for d in [&a, &b, &c] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(a.join("x.h"), "").unwrap();
        let files = ObjectCache::new(None);
        let compiler = Compiler { path: PathBuf::from("/usr/bin/avr-g++"), version: String::new(), identity: [0; 32], system_dirs: Vec::new() };
        let p = Preprocessor::new(None, &files, compiler);
        let o = Outcome { headers: Arc::new(vec![a.join("x.h")]), ..Default::default() };
        let theirs = vec![a.clone()];
        assert!(p.same_headers(&o, &theirs, &[b.clone(), a.clone()]), "a folder ahead without x.h changes nothing");
        assert!(p.same_headers(&o, &theirs, &[a.clone(), c.clone()]), "folders after it change nothing");
        assert!(!p.same_headers(&o, &theirs, &[c.clone()]), "its folder must be on the path");
        std::fs::write(b.join("x.h"), "").unwrap();
        assert!(!p.same_headers(&o, &theirs, &[b.clone(), a.clone()]), "a new folder ahead with x.h would shadow it");
        assert!(p.same_headers(&o, &theirs, &[a.clone(), b.clone()]), "behind it, it cannot");
    }

    /// A stored header set reads back as written; a cut, foreign or old (JSON)
    /// record reads as nothing, so its answer is a miss, never a panic.
    #[test]
    fn a_header_set_record_round_trips_and_a_damaged_one_is_a_miss() {
        let (a, b) = (PathBuf::from("/lib/a.h"), PathBuf::from("/usr/lib/avr/include/b.h"));
        let bytes = SetRecord::encode(&[(a.as_path(), Some([3; 32])), (b.as_path(), None)]);
        assert_eq!(SetRecord::decode(&bytes), Some(vec![(a.clone(), Some([3; 32])), (b.clone(), None)]));
        assert_eq!(SetRecord::decode(&SetRecord::encode(&[])), Some(Vec::new()), "an empty set");
        for cut in 1..=bytes.len() {
            assert_eq!(SetRecord::decode(&bytes[..bytes.len() - cut]), None, "cut by {cut}");
        }
        let mut bad_flag = bytes.clone();
        bad_flag[SET_MAGIC.len() + 8 + a.as_os_str().len()] = 9;
        assert_eq!(SetRecord::decode(&bad_flag), None);
        assert_eq!(SetRecord::decode(br#"{"headers":[["/lib/a.h","0303"]]}"#), None, "the JSON of before");
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(SetRecord::decode(&longer), None, "bytes after the last header");
    }

    #[test]
    fn other_errors_are_not_a_missing_header() {
        let o = parse_output("/s/x.cpp:1:2: error: #error \"nope\"\n");
        assert_eq!(o.missing, None);
        assert!(o.message.contains("#error"));
    }
}
