//! Library discovery, exactly as the reference builder does it: preprocess each
//! translation unit with the include path found so far; when the preprocessor stops
//! at a header no folder on the path has, add the library that provides it (the
//! library index's priority rules), queue that library's sources, and preprocess
//! again. Only the compiler's own preprocessor answers `#if`, `#define`s made in
//! headers, avr-libc's MCU macros, computed includes and `__has_include` (against
//! the path known at that moment) the way the reference does; every answer is
//! remembered (`preprocess.rs`), so a warm run starts no process for discovery.

pub mod preprocess;
mod shell;
mod speculate;
mod stand_in;

pub use stand_in::stand_in;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::Result;
use crate::exec::Runner;
use crate::arduino::library::{Layout, LibraryIndex};
use crate::plan::Context;
use preprocess::Preprocessor;

/// Why discovery could not finish for a sketch: a header nothing provides (with the
/// preprocessor's own words, which name the file and line that wants it).
#[derive(Debug, Clone)]
pub struct DiscoveryError {
    pub missing: String,
    pub message: String,
    /// The preprocessor command that stopped, for the build log.
    pub command: Vec<String>,
}

/// A build property: `dependencies-first` lists (and so links) each library after the
/// libraries its own files include, as PlatformIO's library finder does (project/ sets
/// it); otherwise libraries keep the order they were found in, the reference's.
pub const LIBRARY_ORDER_PROPERTY: &str = "fbuild.library_order";
pub const DEPENDENCIES_FIRST: &str = "dependencies-first";
/// A build property naming the libraries to use, one folder a line, in link order:
/// another finder decided them (PlatformIO's `lib_ldf_mode` without `+`), so discovery
/// takes them as they are and runs nothing.
pub const FIXED_LIBRARIES_PROPERTY: &str = "fbuild.libraries.fixed";

/// What discovery found for one sketch.
#[derive(Debug, Clone, Default)]
pub struct SketchDiscovery {
    /// Indexes into `LibraryIndex::libraries`, in the order they were found (the
    /// reference's `Using library` order, and the link order).
    pub libraries: Vec<usize>,
    /// Core, variant, then each library's source folder: the sketch's include path.
    pub include_dirs: Vec<PathBuf>,
    /// Per library used: the include path its own sources compile with (see
    /// `unit_include_dirs`).
    pub library_includes: BTreeMap<usize, Vec<PathBuf>>,
    pub error: Option<DiscoveryError>,
    pub seconds: f64,
    /// Preprocessor processes started for this sketch (0 on a warm run).
    pub runs: usize,
}

/// A header list compared by identity: `HeaderSets::intern` makes every answer that
/// read the same headers hold one list, so the work done on a list is keyed by it.
/// Holding the `Arc` keeps the list, and so its address, alive as long as the key.
#[derive(Clone)]
pub(crate) struct SameList(pub Arc<Vec<PathBuf>>);

impl PartialEq for SameList {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for SameList {}
impl std::hash::Hash for SameList {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state)
    }
}

/// What discovery works out per sketch from answers and paths that many sketches
/// share (a library's examples: the same umbrella header, the same library sources
/// under the same path). Worked out once per run, so a warm run's cost does not grow
/// with headers times sketches. Each value is a pure function of its key.
#[derive(Default)]
pub(crate) struct Memos {
    /// `Discoverer::guess`, by the file's folder and include list, the libraries
    /// used and the path (the walk reads nothing else of the file).
    guesses: Mutex<HashMap<(PathBuf, Arc<Vec<String>>, Vec<usize>, Vec<PathBuf>), Vec<usize>>>,
    /// `Discoverer::replay` of an answer without `__has_include`, by its headers,
    /// the two paths and the libraries used.
    replays: Mutex<HashMap<(SameList, Vec<PathBuf>, Vec<PathBuf>, Vec<usize>), Option<Vec<usize>>>>,
    /// The include folders that supplied an answer's headers, by headers and path.
    suppliers: Mutex<HashMap<(SameList, Vec<PathBuf>), Arc<BTreeSet<PathBuf>>>>,
    /// The distinct folders of an answer's headers: each sketch's include list
    /// differs, so `suppliers` checks these few folders, not thousands of headers.
    header_dirs: Mutex<HashMap<SameList, Arc<Vec<PathBuf>>>>,
    /// Each library's sources: listing a big library's folders is a walk of
    /// thousands of entries, the same for every sketch that uses it.
    sources: Mutex<HashMap<usize, Arc<Vec<PathBuf>>>>,
}

/// What a guess for a command came to, stored under the command.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum StoredGuess {
    /// These library folders; the run on the path plus them proved the chain (or
    /// the guess found no library, and the run was made on the path itself).
    Proven(Vec<PathBuf>),
    /// The run on the guessed path could not prove the chain: runs went one by one.
    Unprovable,
}

/// Where a queued source file comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Sketch,
    Library(usize),
}

pub struct Discoverer<'a> {
    pub index: &'a LibraryIndex,
    pub arch: String,
    /// Core and variant folders: every include path starts with them.
    pub framework_dirs: Vec<PathBuf>,
    pub preprocessor: Preprocessor<'a>,
}

/// Per library: which include folders supplied headers to its sources, and whether
/// any file they read asks `__has_include`.
#[derive(Default)]
struct Reads {
    dirs: BTreeSet<PathBuf>,
    has_include: bool,
}

impl Discoverer<'_> {
    /// Discover the libraries of one sketch. `sources` are its translation units in
    /// the build folder: the merged `.ino.cpp` first, then its other sources; `ctx`
    /// holds the properties its preprocessor runs use (the sketch's own, see
    /// `Target::sketch_properties`).
    pub fn sketch(&self, runner: &Runner, sources: &[PathBuf], ctx: &Context) -> Result<SketchDiscovery> {
        let t = Instant::now();
        let mut found = SketchDiscovery { include_dirs: self.framework_dirs.clone(), ..Default::default() };
        if let Some(fixed) = ctx.props.get(FIXED_LIBRARIES_PROPERTY) {
            for dir in fixed.lines().filter(|l| !l.is_empty()) {
                if let Some(l) = self.index.libraries.iter().position(|lib| lib.path == Path::new(dir)) {
                    found.libraries.push(l);
                    found.include_dirs.push(self.index.libraries[l].src_dir.clone());
                }
            }
            // Each library's sources see every library's folder, as PlatformIO's do.
            for &l in &found.libraries {
                let mut dirs = found.include_dirs.clone();
                dirs.extend(self.utility_dir(l));
                found.library_includes.insert(l, dirs);
            }
            found.seconds = t.elapsed().as_secs_f64();
            return Ok(found);
        }
        let mut queue: VecDeque<(PathBuf, Origin)> = sources.iter().map(|p| (p.clone(), Origin::Sketch)).collect();
        let mut queued: HashSet<PathBuf> = sources.iter().cloned().collect();
        let mut reads: BTreeMap<usize, Reads> = BTreeMap::new();
        'files: while let Some((file, origin)) = queue.pop_front() {
            // The guessed path last tried on this file: each guess is tried once, and
            // after a guess fails its check the file goes run by run.
            let mut tried: Option<Vec<PathBuf>> = None;
            let mut guessing = true;
            loop {
                if runner.interrupted() {
                    break 'files;
                }
                let mut includes = found.include_dirs.clone();
                if let Origin::Library(l) = origin {
                    includes.extend(self.utility_dir(l));
                }
                // One run on a guessed wider path, when its trace proves which runs
                // the reference would make (speculate.rs); else one run on this path.
                let mut outcome = None;
                let (guess, fresh) = match guessing {
                    true => match self.guess_for(&file, &found.libraries, &includes, ctx)? {
                        Some(g) => g,
                        // Last time the guess failed its check: run by run at once.
                        None => {
                            guessing = false;
                            (Vec::new(), false)
                        }
                    },
                    false => (Vec::new(), false),
                };
                if !guess.is_empty() {
                    let mut wide = includes.clone();
                    wide.extend(guess.iter().map(|&l| self.index.libraries[l].src_dir.clone()));
                    if tried.as_ref() != Some(&wide) {
                        let args = ctx.preprocess(&file, &wide)?;
                        let (o, ran) = self.preprocessor.run(runner, &args, &file);
                        found.runs += ran;
                        if let Some(added) = self.replay(&file, &o, &includes, &wide, &found.libraries) {
                            if fresh {
                                let dirs: Vec<PathBuf> = guess.iter().map(|&l| self.index.libraries[l].src_dir.clone()).collect();
                                self.preprocessor.remember_guess(&ctx.preprocess(&file, &includes)?, &file, StoredGuess::Proven(dirs));
                            }
                            for l in added {
                                self.add_library(l, &mut found, &mut queue, &mut queued);
                            }
                            includes = found.include_dirs.clone();
                            if let Origin::Library(l) = origin {
                                includes.extend(self.utility_dir(l));
                            }
                            outcome = Some(o);
                        } else {
                            if fresh {
                                self.preprocessor.remember_guess(&ctx.preprocess(&file, &includes)?, &file, StoredGuess::Unprovable);
                            }
                            guessing = false;
                        }
                        tried = Some(wide);
                    }
                }
                let (outcome, args) = match outcome {
                    Some(o) => (o, ctx.preprocess(&file, &includes)?),
                    None => {
                        let args = ctx.preprocess(&file, &includes)?;
                        let (o, ran) = self.preprocessor.run(runner, &args, &file);
                        found.runs += ran;
                        (o, args)
                    }
                };
                let Some(header) = &outcome.missing else {
                    if let Origin::Library(l) = origin {
                        let r = reads.entry(l).or_default();
                        r.has_include |= outcome.has_include;
                        r.dirs.extend(self.suppliers(&outcome.headers, &includes).iter().cloned());
                    }
                    break;
                };
                match self.resolve(header, &found.libraries) {
                    Some(l) => self.add_library(l, &mut found, &mut queue, &mut queued),
                    None => {
                        found.error = Some(DiscoveryError { missing: header.clone(), message: outcome.message.clone(), command: args });
                        break 'files;
                    }
                }
            }
        }
        if ctx.props.get_or_empty(LIBRARY_ORDER_PROPERTY) == DEPENDENCIES_FIRST {
            let uses = |l: usize| -> Vec<usize> {
                let dirs = reads.get(&l).map(|r| &r.dirs);
                let found_order = found.libraries.iter().copied();
                found_order.filter(|&m| m != l && dirs.is_some_and(|d| d.contains(&self.index.libraries[m].src_dir))).collect()
            };
            found.libraries = dependencies_first(&found.libraries, uses);
        }
        for &l in &found.libraries {
            let r = reads.remove(&l).unwrap_or_default();
            let dirs = self.unit_include_dirs(l, &found.include_dirs, &r);
            found.library_includes.insert(l, dirs);
        }
        found.seconds = t.elapsed().as_secs_f64();
        Ok(found)
    }

    /// The libraries to guess for `file` on `includes`, and whether they were worked
    /// out now; None when the guess made last time failed its check. What a guess
    /// came to is stored under the command it widens (`StoredGuess`) and taken again
    /// while the store still answers the command it leads to (every header read
    /// unchanged), so a warm run walks no includes. Otherwise (or when the stored
    /// folders are no library's now) the includes are walked.
    fn guess_for(&self, file: &Path, used: &[usize], includes: &[PathBuf], ctx: &Context) -> Result<Option<(Vec<usize>, bool)>> {
        let narrow = ctx.preprocess(file, includes)?;
        match self.preprocessor.stored_guess(&narrow, file).as_deref() {
            Some(StoredGuess::Proven(dirs)) => {
                let libs: Option<Vec<usize>> = dirs.iter().map(|d| self.index.libraries.iter().position(|l| l.src_dir == *d)).collect();
                if let Some(libs) = libs.filter(|ls| ls.iter().all(|l| !used.contains(l))) {
                    let mut wide = includes.to_vec();
                    wide.extend(dirs.iter().cloned());
                    if self.preprocessor.remembered(&ctx.preprocess(file, &wide)?, file) {
                        return Ok(Some((libs, false)));
                    }
                }
            }
            Some(StoredGuess::Unprovable) if self.preprocessor.remembered(&narrow, file) => return Ok(None),
            _ => {}
        }
        let guess = self.guess(file, used, includes);
        // Most library sources reach no new library: that is remembered too.
        if guess.is_empty() {
            self.preprocessor.remember_guess(&narrow, file, StoredGuess::Proven(Vec::new()));
        }
        Ok(Some((guess, true)))
    }

    /// The include folders among `includes` that supplied `headers`, worked out once
    /// per run for each list and path.
    fn suppliers(&self, headers: &Arc<Vec<PathBuf>>, includes: &[PathBuf]) -> Arc<BTreeSet<PathBuf>> {
        let memo = &self.preprocessor.memos.suppliers;
        let key = (SameList(headers.clone()), includes.to_vec());
        if let Some(d) = memo.lock().unwrap().get(&key) {
            return d.clone();
        }
        // A header lies under an include folder exactly when its own folder does (a
        // folder is never the header itself), so the distinct folders decide.
        let dirs: Arc<BTreeSet<PathBuf>> = Arc::new(self.header_dirs(headers).iter().filter_map(|d| supplier(includes, d)).collect());
        memo.lock().unwrap().insert(key, dirs.clone());
        dirs
    }

    /// The distinct folders holding `headers` (a header without one stands for
    /// itself), once per run and list.
    fn header_dirs(&self, headers: &Arc<Vec<PathBuf>>) -> Arc<Vec<PathBuf>> {
        let memo = &self.preprocessor.memos.header_dirs;
        let key = SameList(headers.clone());
        if let Some(d) = memo.lock().unwrap().get(&key) {
            return d.clone();
        }
        let mut seen = HashSet::new();
        let dirs: Vec<PathBuf> = headers
            .iter()
            .map(|h| h.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(h))
            .filter(|d| seen.insert(*d))
            .map(Path::to_path_buf)
            .collect();
        let dirs = Arc::new(dirs);
        memo.lock().unwrap().insert(key, dirs.clone());
        dirs
    }

    /// Put a found library on the sketch's path and queue its sources.
    fn add_library(&self, l: usize, found: &mut SketchDiscovery, queue: &mut VecDeque<(PathBuf, Origin)>, queued: &mut HashSet<PathBuf>) {
        found.libraries.push(l);
        let lib = &self.index.libraries[l];
        found.include_dirs.push(lib.src_dir.clone());
        let memo = &self.preprocessor.memos.sources;
        let sources = memo.lock().unwrap().get(&l).cloned();
        let sources = sources.unwrap_or_else(|| {
            let s = Arc::new(lib.sources());
            memo.lock().unwrap().insert(l, s.clone());
            s
        });
        for s in sources.iter() {
            if queued.insert(s.clone()) {
                queue.push_back((s.clone(), Origin::Library(l)));
            }
        }
    }

    /// The library for a header no folder on the path has, as the reference picks
    /// it; none when a library offering it is already on the path (the header must
    /// then be somewhere the preprocessor does not look).
    fn resolve(&self, header: &str, used: &[usize]) -> Option<usize> {
        let l = self.index.resolve(header, &self.arch)?;
        if used.contains(&l) {
            return None;
        }
        Some(l)
    }

    /// A 1.0-layout library's `utility/` folder: on the path for its own files only.
    fn utility_dir(&self, l: usize) -> Option<PathBuf> {
        let lib = &self.index.libraries[l];
        let u = lib.src_dir.join("utility");
        (lib.layout == Layout::Flat && u.is_dir()).then_some(u)
    }

    /// The include path a library's unit compiles with. The reference compiles it
    /// with the sketch's whole path; that path differs between sketches, and stage 1
    /// builds each library once. Folders that supplied no header to the library's
    /// sources cannot change what they compile to (a header is found in the first
    /// folder that has it, and dropping folders that have none keeps that order),
    /// unless a file asks `__has_include`: then the unit takes the whole path.
    fn unit_include_dirs(&self, l: usize, sketch_path: &[PathBuf], reads: &Reads) -> Vec<PathBuf> {
        let own = &self.index.libraries[l].src_dir;
        let mut dirs: Vec<PathBuf> = if reads.has_include {
            sketch_path.to_vec()
        } else {
            sketch_path
                .iter()
                .filter(|d| self.framework_dirs.contains(d) || *d == own || reads.dirs.contains(*d))
                .cloned()
                .collect()
        };
        dirs.extend(self.utility_dir(l));
        dirs
    }
}

/// The include folder a header was found in: the longest one containing it.
/// `order` rearranged so each item follows the items `uses` names for it (depth first,
/// in `order`'s order; a cycle is broken where it is met).
fn dependencies_first(order: &[usize], uses: impl Fn(usize) -> Vec<usize>) -> Vec<usize> {
    fn visit(l: usize, uses: &dyn Fn(usize) -> Vec<usize>, seen: &mut HashSet<usize>, out: &mut Vec<usize>) {
        if !seen.insert(l) {
            return;
        }
        for m in uses(l) {
            visit(m, uses, seen, out);
        }
        out.push(l);
    }
    let (mut seen, mut out) = (HashSet::new(), Vec::new());
    for &l in order {
        visit(l, &uses, &mut seen, &mut out);
    }
    out
}

fn supplier(includes: &[PathBuf], header: &Path) -> Option<PathBuf> {
    includes.iter().filter(|d| header.starts_with(d)).max_by_key(|d| d.as_os_str().len()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_first_in_found_order() {
        // 0 uses 1 and 2; 3 uses 0; 4 and 5 use each other.
        let uses = |l: usize| match l {
            0 => vec![1, 2],
            3 => vec![0],
            4 => vec![5],
            5 => vec![4],
            _ => vec![],
        };
        assert_eq!(dependencies_first(&[0, 1, 2], uses), vec![1, 2, 0]);
        assert_eq!(dependencies_first(&[3, 2, 0, 1], uses), vec![1, 2, 0, 3]);
        assert_eq!(dependencies_first(&[4, 5], uses), vec![5, 4]);
    }

    #[test]
    fn supplier_is_the_deepest_folder() {
        let inc = vec![PathBuf::from("/a"), PathBuf::from("/a/b"), PathBuf::from("/c")];
        assert_eq!(supplier(&inc, Path::new("/a/b/x.h")), Some(PathBuf::from("/a/b")));
        assert_eq!(supplier(&inc, Path::new("/a/x.h")), Some(PathBuf::from("/a")));
        assert_eq!(supplier(&inc, Path::new("/usr/include/x.h")), None);
        assert_eq!(supplier(&inc, Path::new("/cc/x.h")), None, "prefixes compare by component");
    }
}
