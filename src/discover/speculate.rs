//! Fewer discovery runs, same answers: one preprocessor run on a guessed include
//! path stands in for the chain of runs the reference makes on a translation unit
//! (stop at a missing header, add its library, run again), when its `-H` trace
//! proves that chain would have gone exactly so.
//!
//! The guess is the libraries a plain `#include` scan reaches from the file (a
//! superset: it cannot tell which `#if` branches are live). The run on the guessed
//! path reads headers in some order; the reference's runs would read the same
//! headers in the same order, and stop where the first header of a not yet added
//! library is named, as long as every header name on the trace is found in one
//! folder only among the guessed ones (so the order of folders on the path cannot
//! matter), and no file asks `__has_include` (whose answer depends on the path
//! itself). At each such stop the header must be absent from the compiler's own
//! folders and the library index must pick exactly the library whose folder holds
//! it; otherwise the guess is dropped and the runs are made one by one.

use rustc_hash::FxHashSet;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::preprocess::Outcome;
use super::{Discoverer, SameList};

/// At most this many files are scanned for one guess (a guess only has to be good
/// enough to save runs; its answer is checked, never trusted).
const SCAN_LIMIT: usize = 400;

impl Discoverer<'_> {
    /// Libraries not in `used` that a plain include scan reaches from `file`, in the
    /// order it meets them. `includes` is the path the file would be preprocessed with.
    pub(super) fn guess(&self, file: &Path, used: &[usize], includes: &[PathBuf]) -> Vec<usize> {
        let here = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let key = (here, self.preprocessor.scans.includes_of(file), used.to_vec(), includes.to_vec());
        let memo = &self.preprocessor.memos.guesses;
        if let Some(g) = memo.lock().unwrap().get(&key) {
            return g.clone();
        }
        let (libs, reenters) = self.walk(file, used, includes);
        // A walk that came back to the file itself depends on its name too: not shared.
        if !reenters {
            memo.lock().unwrap().insert(key, libs.clone());
        }
        libs
    }

    /// `guess`'s include walk, and whether it reached `file` again.
    fn walk(&self, file: &Path, used: &[usize], includes: &[PathBuf]) -> (Vec<usize>, bool) {
        let mut reenters = false;
        let mut dirs: Vec<PathBuf> = includes.to_vec();
        let mut libs: Vec<usize> = Vec::new();
        let mut seen: HashSet<PathBuf> = HashSet::new();
        let mut stack = vec![file.to_path_buf()];
        while let Some(f) = stack.pop() {
            if seen.len() >= SCAN_LIMIT || !seen.insert(f.clone()) {
                continue;
            }
            let here = f.parent().map(Path::to_path_buf).unwrap_or_default();
            // Depth first, in include order: push the includes in reverse.
            let mut next = Vec::new();
            for name in self.preprocessor.scans.includes_of(&f).iter() {
                let local = here.join(name);
                if self.preprocessor.exists(&local) {
                    next.push(local);
                } else if let Some(d) = dirs.iter().find(|d| self.preprocessor.exists(&d.join(name))) {
                    // Core and variant headers name no library: no need to read them.
                    if !self.framework_dirs.contains(d) {
                        next.push(d.join(name));
                    }
                } else if let Some(l) = self.index.resolve(name, &self.arch).filter(|l| !used.contains(l) && !libs.contains(l)) {
                    let src = self.index.libraries[l].src_dir.clone();
                    next.push(src.join(name));
                    dirs.push(src);
                    libs.push(l);
                }
            }
            reenters |= next.iter().any(|n| n == file);
            stack.extend(next.into_iter().rev());
        }
        (libs, reenters)
    }

    /// What the reference's runs on a file would have done, told from one run on a
    /// wider path: `base` is the path the next reference run has, `wide` is `base`
    /// plus the guessed libraries' folders, `outcome` the run on `wide`. Returns the
    /// libraries the reference would add, in order, after which its run on `base`
    /// plus their folders gives `outcome` itself; none when that cannot be proven.
    pub(super) fn replay(&self, file: &Path, outcome: &Outcome, base: &[PathBuf], wide: &[PathBuf], used: &[usize]) -> Option<Vec<usize>> {
        // Without `__has_include` the replay reads nothing of the file: answers that
        // read the same headers share it.
        if outcome.has_include {
            return self.replay_trace(file, outcome, base, wide, used);
        }
        let key = (SameList(outcome.headers.clone()), base.to_vec(), wide.to_vec(), used.to_vec());
        let memo = &self.preprocessor.memos.replays;
        if let Some(r) = memo.lock().unwrap().get(&key) {
            return r.clone();
        }
        let r = self.replay_trace(file, outcome, base, wide, used);
        memo.lock().unwrap().insert(key, r.clone());
        r
    }

    fn replay_trace(&self, file: &Path, outcome: &Outcome, base: &[PathBuf], wide: &[PathBuf], used: &[usize]) -> Option<Vec<usize>> {
        if outcome.has_include {
            // `__has_include` answers alike on both paths when no guessed folder
            // holds a header it asks about (every other folder is on both).
            let guessed: Vec<&PathBuf> = wide.iter().filter(|d| !base.contains(d)).collect();
            for f in self.preprocessor.read_files(file, outcome) {
                match &*self.preprocessor.queries(f) {
                    Queries::None => {}
                    Queries::Unknown => return None,
                    Queries::Names(names) => {
                        if names.iter().any(|n| guessed.iter().any(|d| self.preprocessor.exists(&d.join(n)))) {
                            return None;
                        }
                    }
                }
            }
        }
        // A folder inside another would give one header two names.
        if wide.iter().any(|a| wide.iter().any(|b| a != b && b.starts_with(a))) {
            return None;
        }
        let system = &self.preprocessor.system_dirs();
        let in_wide = Tops::of(wide);
        let mut path: Vec<&PathBuf> = base.iter().collect();
        let mut used = used.to_vec();
        let mut added = Vec::new();
        // A trace holds thousands of headers: seen by their bytes, and placed in their
        // folders by bytes where both are plainly written (`Plain`).
        let mut seen: FxHashSet<&std::ffi::OsStr> = FxHashSet::default();
        let (wide_plain, system_plain) = (Plain::all(wide), Plain::all(system));
        for h in outcome.headers.iter() {
            if !seen.insert(h.as_os_str()) {
                continue;
            }
            let h_plain = Plain::of(h);
            match wide.iter().zip(&wide_plain).find(|(d, p)| h_plain.under(h, p, d)).map(|(d, _)| d) {
                Some(d) => {
                    let name = name_in(h, d)?;
                    // Found in one folder only: every order of the folders finds it there.
                    if wide.iter().enumerate().any(|(i, e)| in_wide.may_have(i, name) && e != d && self.preprocessor.exists(&e.join(name))) {
                        return None;
                    }
                    if path.iter().any(|p| p.as_os_str() == d.as_os_str() || *p == d) {
                        continue;
                    }
                    // The reference's run stops here, at a header it cannot find...
                    if system.iter().any(|s| self.preprocessor.exists(&s.join(name))) {
                        return None;
                    }
                    // ...and adds the library the index picks for it: it must be this one.
                    let l = self.resolve(name, &used)?;
                    if self.index.libraries[l].src_dir != *d {
                        return None;
                    }
                    used.push(l);
                    added.push(l);
                    path.push(d);
                }
                None => {
                    // A compiler header: no guessed folder may hold one of that name
                    // (else it would have been found there, or `#include_next` is at work).
                    if let Some((s, _)) = system.iter().zip(&system_plain).find(|(s, p)| h_plain.under(h, p, s)) {
                        let name = name_in(h, s)?;
                        if wide.iter().enumerate().any(|(i, e)| in_wide.may_have(i, name) && self.preprocessor.exists(&e.join(name))) {
                            return None;
                        }
                    }
                    // Otherwise found beside the file that included it: the same on any path.
                }
            }
        }
        // A missing header the wide run stopped at is in no guessed folder: the
        // reference's run stops there too.
        Some(added)
    }
}

/// Whether a path is written plainly: absolute, with no empty, `.` or `..` part and
/// no trailing `/`. For two plain paths, `Path::starts_with` (which compares parts)
/// is a byte prefix ending at a `/`, several times cheaper on a long trace.
#[derive(Clone, Copy)]
struct Plain(bool);

impl Plain {
    fn of(p: &Path) -> Plain {
        use std::os::unix::ffi::OsStrExt;
        let b = p.as_os_str().as_bytes();
        Plain(b.len() > 1 && b[0] == b'/' && b[1..].split(|&c| c == b'/').all(|part| !matches!(part, b"" | b"." | b"..")))
    }

    fn all(dirs: &[PathBuf]) -> Vec<Plain> {
        dirs.iter().map(|d| Plain::of(d)).collect()
    }

    /// `path.starts_with(dir)`, where `self` and `dir_plain` say how they are written.
    fn under(self, path: &Path, dir_plain: &Plain, dir: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        if !(self.0 && dir_plain.0) {
            return path.starts_with(dir);
        }
        let (p, d) = (path.as_os_str().as_bytes(), dir.as_os_str().as_bytes());
        p.starts_with(d) && p.get(d.len()).is_none_or(|&c| c == b'/')
    }
}

/// The names directly in each folder of a path, listed once per replay: a trace's
/// header names mostly start with a folder (or file) that only their own library
/// has, so the check that no other folder on the path has them needs no stat and no
/// shared memo (a trace of 2,000 headers on a path of four folders is 6,000 checks).
struct Tops(Vec<Option<HashSet<std::ffi::OsString>>>);

impl Tops {
    fn of(dirs: &[PathBuf]) -> Tops {
        // An unreadable folder (or one that is gone) gives no listing: ask the file system.
        Tops(dirs.iter().map(|d| std::fs::read_dir(d).ok().map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())).collect())
    }

    /// False when folder `i` certainly has no `name`: its first part is not listed there.
    fn may_have(&self, i: usize, name: &str) -> bool {
        match (Path::new(name).components().next(), &self.0[i]) {
            (Some(std::path::Component::Normal(first)), Some(listed)) => listed.contains(first),
            _ => true,
        }
    }
}

/// What a file asks `__has_include`.
#[derive(Debug, PartialEq, Eq)]
pub enum Queries {
    /// It never names `__has_include`.
    None,
    /// Only literal questions, `__has_include(<name>)` or `("name")`: these names.
    Names(Vec<String>),
    /// A question whose header cannot be read off the text (through a macro,
    /// `__has_include_next`, or the word in a comment).
    Unknown,
}

impl Queries {
    pub fn of(text: &[u8]) -> Queries {
        const WORD: &[u8] = b"__has_include";
        let mut names = Vec::new();
        let mut at = 0;
        while let Some(i) = text[at..].windows(WORD.len()).position(|w| w == WORD).map(|i| i + at) {
            at = i + WORD.len();
            let before = String::from_utf8_lossy(&text[i.saturating_sub(32)..i]);
            let before = before.trim_end_matches(|c: char| c.is_whitespace() || c == '(');
            // `#ifdef __has_include`, `defined(__has_include)`: asks whether GCC has it.
            if ["defined", "ifdef", "ifndef"].iter().any(|w| before.ends_with(w)) {
                continue;
            }
            match literal_call(&text[at..]) {
                Some((name, len)) => {
                    names.push(name);
                    at += len;
                }
                None => return Queries::Unknown,
            }
        }
        if names.is_empty() && at == 0 {
            Queries::None
        } else {
            Queries::Names(names)
        }
    }
}

/// `(<name>)` or `("name")`, blanks allowed around each part: the name and the
/// bytes it took.
fn literal_call(text: &[u8]) -> Option<(String, usize)> {
    let blank = |i: &mut usize| {
        while text.get(*i).is_some_and(|c| *c == b' ' || *c == b'\t') {
            *i += 1;
        }
    };
    let mut i = 0;
    blank(&mut i);
    if text.get(i) != Some(&b'(') {
        return None;
    }
    i += 1;
    blank(&mut i);
    let close = match text.get(i)? {
        b'<' => b'>',
        b'"' => b'"',
        _ => return None,
    };
    let start = i + 1;
    let len = text[start..].iter().position(|c| *c == close || *c == b'\n')?;
    if text[start + len] != close || len == 0 {
        return None;
    }
    let name = std::str::from_utf8(&text[start..start + len]).ok()?.to_string();
    i = start + len + 1;
    blank(&mut i);
    (text.get(i) == Some(&b')')).then_some((name, i + 1))
}

/// The header's name as the `#include` wrote it: its path after the folder it was
/// found in, byte for byte (GCC's `-H` prints folder, `/`, name).
fn name_in<'a>(header: &'a Path, dir: &Path) -> Option<&'a str> {
    let h = header.to_str()?;
    let d = dir.to_str()?;
    h.strip_prefix(d)?.strip_prefix('/').filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_placed_in_folders_as_path_starts_with_places_them() {
        let paths = ["/a/b/c.h", "/a/b", "/a/bc/d.h", "/a/b/", "/a//b/c.h", "/a/./b/c.h", "/a/../a/b/c.h", "a/b/c.h", "/", "/a/b.h"];
        for p in paths {
            for d in paths {
                let (p, d) = (Path::new(p), Path::new(d));
                assert_eq!(Plain::of(p).under(p, &Plain::of(d), d), p.starts_with(d), "{p:?} under {d:?}");
            }
        }
        assert!(Plain::of(Path::new("/a/b")).0 && !Plain::of(Path::new("/a/b/")).0 && !Plain::of(Path::new("/a/./b")).0);
    }

    #[test]
    fn has_include_questions_are_read_off_literal_calls_only() {
        assert_eq!(Queries::of(b"#include <x.h>\n"), Queries::None);
        let arduino_json = b"#  ifdef __has_include\n#    if __has_include(<istream>) && \\\n    __has_include (\"ostream\" )\n";
        assert_eq!(Queries::of(arduino_json), Queries::Names(vec!["istream".into(), "ostream".into()]));
        assert_eq!(Queries::of(b"#if defined(__has_include)\n#endif\n"), Queries::Names(vec![]));
        assert_eq!(Queries::of(b"#define HAS(x) __has_include(x)\n#if HAS(<SD.h>)\n"), Queries::Unknown, "through a macro");
        assert_eq!(Queries::of(b"#if __has_include_next(<a.h>)\n"), Queries::Unknown);
        assert_eq!(Queries::of(b"// we use __has_include here\n"), Queries::Unknown, "a comment is not read as a question");
        assert_eq!(Queries::of(b"#if __has_include(<a.h\n"), Queries::Unknown);
    }

    #[test]
    fn names_keep_the_include_spelling() {
        assert_eq!(name_in(Path::new("/l/A/src/./x.h"), Path::new("/l/A/src")), Some("./x.h"));
        assert_eq!(name_in(Path::new("/l/A/src/utility/x.h"), Path::new("/l/A/src")), Some("utility/x.h"));
        assert_eq!(name_in(Path::new("/l/A/srcx/x.h"), Path::new("/l/A/src")), None);
    }
}
