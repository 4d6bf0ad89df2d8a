//! A precompiled `Arduino.h` for the compiles of sketches, and of core and library
//! sources, that start with `#include <Arduino.h>`, where the toolchain uses one
//! (docs/design.md, "Precompiled headers"). With `-I PCHDIR` first, GCC finds
//! `PCHDIR/Arduino.h.gch` before the header and loads it instead of parsing the core's
//! headers again.
//!
//! Only the executed command changes: cache keys and compile_commands.json keep the
//! reference's command, and the object's depfile gets the headers the `.gch` stands
//! for (GCC's `-MMD` names only the source when it loads one), so an edited core
//! header still rebuilds the `.gch` and every object that loaded it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::arduino::toolchain::Toolchain;
use crate::cache::hash::{hex, Hash};
use crate::cache::keys;
use crate::cache::objects::{depfile_of, parse_depfile, ObjectCache};
use crate::cache::store::Store;
use crate::exec::{display_command, Runner};
use crate::plan::CompileJob;

/// The `.gch`'s own source: it includes `Arduino.h` through the compile's search path,
/// so the header precompiled is the one the sketch's `#include <Arduino.h>` would find.
const STUB_NAME: &str = "fbuild-pch.h";
const STUB_TEXT: &str = "#include <Arduino.h>\n";
const GCH_NAME: &str = "Arduino.h.gch";
/// Beside the `.gch`: its key and what it read (`Stamp`).
const STAMP_NAME: &str = ".fbuild-pch";
/// Beside the `.gch`: GCC resolves every later `#include "Arduino.h"` (a library's
/// header) to the `.gch`'s folder too, and opens the header there; this one passes
/// on to the header the search would find next, whose guard then skips it. (Without
/// it: "PCHDIR/Arduino.h: No such file or directory".) A `.gch` GCC refuses lands
/// here too, so the compile still reads the real header.
const NEXT_NAME: &str = "Arduino.h";
const NEXT_TEXT: &str = "#include_next <Arduino.h>\n";
/// In the `.gch` command's shape (its key and folder name), for its own two files.
const STUB_MARK: &str = "\u{0}PCH-STUB";
const GCH_MARK: &str = "\u{0}PCH-GCH";

/// The precompiled headers of one board, one per flag set, built
/// lazily: by the first compile that misses the cache and may load one, so a warm run starts
/// nothing for them. They live in the board's framework folder (`FW/pch/<shape>/`),
/// not in the cache: about 33 MB each on arduino-pico, which the cache would share
/// with the remote tier and trade for hundreds of objects, while rebuilding one costs
/// a single compile per output folder.
pub(super) struct BoardPch {
    root: PathBuf,
    /// The core's include folders: a compile's other `-I` folders (a sketch's libraries,
    /// its build folder; a library's own) stay out of the `.gch` command so they share it.
    core_dirs: HashSet<PathBuf>,
    /// Per shape, once decided: the `.gch`, or `None` (it did not build, or the
    /// compiler refuses it). A shape left undecided ("not worth building yet") is
    /// asked again: the core may come first, with too few sources, and the sketches
    /// after it with enough. The lock is held while one builds.
    built: Mutex<HashMap<Hash, Arc<Mutex<Option<Option<Arc<Pch>>>>>>>,
    /// Sketches of this run that are not up to date: each may compile its merged sketch.
    expected: AtomicUsize,
    /// Sources of the core and library units to compile this run that start with
    /// `#include <Arduino.h>` (arduino-pico's core: 16 of 38).
    expected_units: AtomicUsize,
}

/// A new `.gch` is built only when at least this many sketches of the run are to be
/// built, so that as many compiles may load it: on the Pico it costs 1.1 CPU-s and saves each compile 0.24, so a single
/// `fbuild build` would pay more than it saves; one already built is used for any.
const FEWEST_SKETCHES_FOR_A_NEW_GCH: usize = 3;
/// The same for the core's and libraries' sources, at the break-even (1.1 / 0.24):
/// a core with a few such sources (ArduinoCore-samd has 3) does not pay for one.
const FEWEST_UNIT_SOURCES_FOR_A_NEW_GCH: usize = 5;

/// One built `.gch`.
struct Pch {
    dir: PathBuf,
    /// The non-system headers its depfile names (the object's depfile gets them).
    deps: Vec<PathBuf>,
    /// Every header it read, as the names an `#include` could give it (`x.h`,
    /// `sys/x.h`, ...), for the shadowing guard.
    names: Vec<PathBuf>,
}

/// What a compile that uses a `.gch` runs, and what its depfile must add.
pub(super) struct PchUse {
    pub args: Vec<String>,
    pub dir: PathBuf,
    pub deps: Vec<PathBuf>,
}

/// What building a `.gch` reads.
pub(super) struct PchEnv<'a> {
    pub toolchain: &'a Toolchain,
    pub store: Option<&'a Store>,
    pub cache: &'a ObjectCache<'a>,
    pub runner: &'a Runner,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stamp {
    key: String,
    deps: Vec<PathBuf>,
    names: Vec<PathBuf>,
}

/// `-I X` and `-IX`: the folder, and how many words it took.
fn include_at(args: &[String], i: usize) -> Option<(PathBuf, usize)> {
    let a = args.get(i)?;
    if a == "-I" {
        return args.get(i + 1).map(|d| (PathBuf::from(d), 2));
    }
    a.strip_prefix("-I").filter(|d| !d.is_empty()).map(|d| (PathBuf::from(d), 1))
}

/// Every `-I` folder of a command, in order.
pub(super) fn include_folders(args: &[String]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match include_at(args, i) {
            Some((d, n)) => {
                dirs.push(d);
                i += n;
            }
            None => i += 1,
        }
    }
    dirs
}

/// The names a header at `path` may be included by: its last one, two and three
/// path components.
fn include_names(path: &Path) -> Vec<PathBuf> {
    let parts: Vec<_> = path.components().collect();
    (1..=3.min(parts.len())).map(|n| parts[parts.len() - n..].iter().collect()).collect()
}

/// The headers `gcc -H` lists (`. path`, `.. path`, ...).
fn headers_listed(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim_start_matches('.');
            (rest.len() < l.len()).then(|| rest.strip_prefix(' ')).flatten().map(PathBuf::from)
        })
        .collect()
}

impl BoardPch {
    pub fn new(fw_dir: &Path, core_dirs: impl IntoIterator<Item = PathBuf>) -> BoardPch {
        BoardPch { root: fw_dir.join("pch"), core_dirs: core_dirs.into_iter().collect(), built: Mutex::default(), expected: AtomicUsize::new(0), expected_units: AtomicUsize::new(0) }
    }

    /// At planning: `n` more sketches are to be built.
    pub fn expect(&self, n: usize) {
        self.expected.fetch_add(n, Ordering::SeqCst);
    }

    /// At planning: a core or library unit's compiles will run; count its sources
    /// that may load the `.gch`.
    pub fn expect_unit(&self, jobs: &[CompileJob]) {
        let n = jobs.iter().filter(|j| std::fs::read(&j.source).is_ok_and(|t| starts_with_arduino_h(&t))).count();
        self.expected_units.fetch_add(n, Ordering::SeqCst);
    }

    /// The `.gch` command's shape (files as marks) and the job's `-I` folders it
    /// leaves out; `None` when the command does not name its source and `-o` object.
    fn shape(&self, job: &CompileJob) -> Option<(Vec<String>, Vec<PathBuf>)> {
        let source = job.source.display().to_string();
        let object = job.object.display().to_string();
        let mut shape = Vec::with_capacity(job.args.len() + 2);
        let mut extra = Vec::new();
        let (mut saw_source, mut saw_object) = (false, false);
        let mut i = 0;
        while i < job.args.len() {
            if let Some((dir, n)) = include_at(&job.args, i).filter(|_| i > 0) {
                if self.core_dirs.contains(&dir) {
                    shape.extend_from_slice(&job.args[i..i + n]);
                } else {
                    extra.push(dir);
                }
                i += n;
                continue;
            }
            let a = &job.args[i];
            if *a == source && !saw_source {
                saw_source = true;
                shape.extend(["-x".to_string(), "c++-header".to_string(), STUB_MARK.to_string()]);
            } else if a == "-o" && job.args.get(i + 1) == Some(&object) {
                saw_object = true;
                shape.extend(["-o".to_string(), GCH_MARK.to_string()]);
                i += 1;
            } else {
                shape.push(a.clone());
            }
            i += 1;
        }
        (saw_source && saw_object).then_some((shape, extra))
    }

    /// The `.gch` a compile may use (a merged sketch, or a unit's source that starts
    /// with `#include <Arduino.h>`), built when first wanted; `None` (compile
    /// the ordinary way) when the source does not start so, too few compiles of its
    /// kind would load a new one, the compiler does not use a PCH with these flags, the
    /// `.gch` did not build, or one of the job's own `-I` folders holds a file
    /// named like a header the `.gch` read (a normal compile could find that one).
    pub fn use_for(&self, env: &PchEnv, job: &CompileJob, log: &mut String) -> Option<PchUse> {
        if !matches!(job.source.extension().and_then(|e| e.to_str()), Some("cpp" | "cc" | "cxx")) {
            return None;
        }
        if !starts_with_arduino_h(&std::fs::read(&job.source).ok()?) {
            return None;
        }
        let (shape, extra) = self.shape(job)?;
        let compiler = env.toolchain.probe(Path::new(job.args.first()?), env.store).ok()?;
        let id = keys::pch(&compiler.identity, &shape, std::iter::empty());
        let cell = self.built.lock().unwrap().entry(id).or_default().clone();
        let mut decided = cell.lock().unwrap();
        let sketch = job.source.to_string_lossy().ends_with(".ino.cpp");
        if decided.is_none() {
            let name = &hex(&id)[..16];
            if let Some(p) = self.current(env, &compiler, &shape, name) {
                *decided = Some(Some(p));
            } else if self.worth_building(sketch) {
                *decided = Some(self.build(env, &compiler, &shape, name, log));
            } else {
                return None; // undecided: a later compile of this shape asks again
            }
        }
        let pch = decided.clone().flatten()?;
        drop(decided);
        if let Some(shadow) = shadowing(&extra, &pch.names) {
            log.push_str(&format!("fbuild: no precompiled header for this sketch: {} is named like a header Arduino.h includes\n", shadow.display()));
            return None;
        }
        let mut args = job.args.clone();
        args.insert(1, format!("-I{}", pch.dir.display()));
        Some(PchUse { args, dir: pch.dir.clone(), deps: pch.deps.clone() })
    }

    /// Whether a new `.gch` would pay for itself now: enough compiles of this kind
    /// (merged sketches, or the units' sources) are to run.
    fn worth_building(&self, sketch: bool) -> bool {
        if sketch {
            self.expected.load(Ordering::SeqCst) >= FEWEST_SKETCHES_FOR_A_NEW_GCH
        } else {
            self.expected_units.load(Ordering::SeqCst) >= FEWEST_UNIT_SOURCES_FOR_A_NEW_GCH
        }
    }

    /// The `.gch` of this shape if its stamp matches its headers as they are now.
    fn current(&self, env: &PchEnv, compiler: &crate::arduino::toolchain::Compiler, shape: &[String], name: &str) -> Option<Arc<Pch>> {
        let dir = self.root.join(name);
        let s = serde_json::from_slice::<Stamp>(&std::fs::read(dir.join(STAMP_NAME)).ok()?).ok()?;
        let key = pch_key(compiler, shape, &s.deps, &|p| env.cache.file_hash(p))?;
        let fresh = dir.join(GCH_NAME).is_file() && dir.join(NEXT_NAME).is_file() && hex(&key) == s.key && timeless(env, &s.deps);
        fresh.then(|| Arc::new(Pch { dir, deps: s.deps, names: s.names }))
    }

    /// Build the `.gch` of this shape (once per run); `None` when the compiler does
    /// not use one with these flags or it did not build.
    fn build(&self, env: &PchEnv, compiler: &crate::arduino::toolchain::Compiler, shape: &[String], name: &str, log: &mut String) -> Option<Arc<Pch>> {
        let dir = self.root.join(name);
        let (stub, gch, stamp_path, next) = (dir.join(STUB_NAME), dir.join(GCH_NAME), dir.join(STAMP_NAME), dir.join(NEXT_NAME));
        // Whether the compiler uses a `.gch` at all with these flags: without folders, files and outputs.
        let flags: Vec<String> = shape.iter().skip(1).filter(|a| ![STUB_MARK, GCH_MARK, "-o", "-x", "c++-header", "-c", "-MMD", "-MD"].contains(&a.as_str())).cloned().collect();
        if !env.toolchain.uses_pch(compiler, &flags, env.store) {
            return None;
        }
        let _ = std::fs::remove_file(&stamp_path);
        let _ = std::fs::remove_file(&gch);
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::write(&stub, STUB_TEXT).ok()?;
        std::fs::write(&next, NEXT_TEXT).ok()?;
        let (stub_s, gch_s) = (stub.display().to_string(), gch.display().to_string());
        let mut args: Vec<String> = shape.iter().map(|a| if a == STUB_MARK { stub_s.clone() } else if a == GCH_MARK { gch_s.clone() } else { a.clone() }).collect();
        args.push("-H".into());
        // The command only: `-H` lists hundreds of headers.
        log.push_str(&display_command(&args));
        log.push('\n');
        let out = env.runner.run(&args, None);
        if !out.success || !gch.is_file() {
            // Its output stays beside it: in the sketch's log its diagnostics would read as the sketch's.
            let why = dir.join("build.log");
            let _ = crate::report::write_atomic(&why, out.text.as_bytes());
            log.push_str(&format!("fbuild: the precompiled header did not build (see {}); the sketch compiles without it\n", why.display()));
            let _ = std::fs::remove_file(&gch);
            return None;
        }
        let depfile = depfile_of(&gch);
        let deps: Vec<PathBuf> = std::fs::read_to_string(&depfile).map(|t| parse_depfile(&t)).ok()?.into_iter().filter(|p| !p.starts_with(&dir)).collect();
        let mut names: Vec<PathBuf> = headers_listed(&out.text).iter().flat_map(|p| include_names(p)).collect();
        names.sort();
        names.dedup();
        let k = pch_key(compiler, shape, &deps, &|p| env.cache.current_hash(p))?;
        if !timeless(env, &deps) {
            return None;
        }
        let stamp = Stamp { key: hex(&k), deps: deps.clone(), names: names.clone() };
        crate::report::write_atomic(&stamp_path, &serde_json::to_vec(&stamp).ok()?).ok()?;
        Some(Arc::new(Pch { dir, deps, names }))
    }
}

/// A `.gch`'s key: the compiler, its command's shape, each header it read with its hash.
fn pch_key(compiler: &crate::arduino::toolchain::Compiler, shape: &[String], deps: &[PathBuf], hash: &dyn Fn(&Path) -> Option<Hash>) -> Option<Hash> {
    let hashed: Vec<(&Path, Hash)> = deps.iter().map(|p| Some((p.as_path(), hash(p)?))).collect::<Option<_>>()?;
    Some(keys::pch(&compiler.identity, shape, hashed))
}

/// A header naming a time macro would be expanded when the `.gch` is built, not when
/// the source that loads it is.
fn timeless(env: &PchEnv, deps: &[PathBuf]) -> bool {
    !deps.iter().any(|p| env.cache.names_time_macros(p))
}

/// Whether a C++ source's first directive, after nothing but blank space and comments,
/// is `#include <Arduino.h>`: the merged sketch (which starts with it) and the core's
/// or a library's sources that begin so. Anything else before it could change what
/// the header means; `"Arduino.h"` is found beside the source first, never in PCHDIR.
fn starts_with_arduino_h(text: &[u8]) -> bool {
    let mut i = 0;
    loop {
        while text.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        if text[i..].starts_with(b"//") {
            i += text[i..].iter().position(|&b| b == b'\n').unwrap_or(text.len() - i);
        } else if text[i..].starts_with(b"/*") {
            match text[i + 2..].windows(2).position(|w| w == b"*/") {
                Some(end) => i += 2 + end + 2,
                None => return false,
            }
        } else {
            break;
        }
    }
    let rest = &text[i..];
    let Some(rest) = rest.strip_prefix(b"#") else { return false };
    let rest = rest.trim_ascii_start();
    let Some(rest) = rest.strip_prefix(b"include") else { return false };
    let rest = rest.trim_ascii_start();
    let Some(rest) = rest.strip_prefix(b"<Arduino.h>") else { return false };
    // Only blank space or a comment may follow on its line.
    let line = &rest[..rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())];
    let line = line.trim_ascii();
    line.is_empty() || line.starts_with(b"//") || line.starts_with(b"/*")
}

/// The first file in one of `dirs` named like one of `names`.
fn shadowing(dirs: &[PathBuf], names: &[PathBuf]) -> Option<PathBuf> {
    for d in dirs {
        // One read of the folder, then a stat only for names whose first part is there.
        let Ok(rd) = std::fs::read_dir(d) else { continue };
        let top: HashSet<std::ffi::OsString> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        for n in names {
            let starts_here = n.components().next().is_some_and(|c| top.contains(c.as_os_str()));
            if starts_here && d.join(n).is_file() {
                return Some(d.join(n));
            }
        }
    }
    None
}

/// After a compile that used the `.gch`: its depfile names the source (and maybe the
/// `.gch`); put back the headers the `.gch` read, before the sketch's own, as a
/// compile without it lists them.
pub(super) fn merge_depfile(job: &CompileJob, pch: &PchUse) {
    let depfile = depfile_of(&job.object);
    let Ok(text) = std::fs::read_to_string(&depfile) else { return };
    // The `.gch`'s list as GCC wrote it (a header reached by two spellings twice, as
    // in a compile without it, so both compiles record the same manifest), then the
    // sketch's own headers it did not list.
    let mut seen: HashSet<PathBuf> = pch.deps.iter().cloned().collect();
    seen.insert(job.source.clone());
    let rest = parse_depfile(&text).into_iter().filter(|p| !p.starts_with(&pch.dir) && seen.insert(p.clone()));
    let all: Vec<PathBuf> = std::iter::once(job.source.clone()).chain(pch.deps.iter().cloned()).chain(rest).collect();
    let escape = |p: &Path| p.display().to_string().replace(' ', "\\ ");
    let mut out = format!("{}:", escape(&job.object));
    for p in &all {
        out.push_str(" \\\n ");
        out.push_str(&escape(p));
    }
    out.push('\n');
    let _ = crate::report::write_atomic(&depfile, out.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(args: &[&str]) -> CompileJob {
        CompileJob { source: "/b/s/S.ino.cpp".into(), object: "/b/s/S.ino.cpp.o".into(), args: args.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn a_source_may_load_the_gch_only_when_it_starts_with_arduino_h() {
        for yes in [
            "#include <Arduino.h>\n#line 1 \"S.ino\"\n",
            "/*\n  Print.cpp - licence\n*/\n\n// more\n#include <Arduino.h>\n#include <x.h>\n",
            "  #  include   <Arduino.h>   // why\nint x;\n",
        ] {
            assert!(starts_with_arduino_h(yes.as_bytes()), "{yes:?}");
        }
        for no in [
            "#include \"Arduino.h\"\n",
            "#define X 1\n#include <Arduino.h>\n",
            "#include <stdint.h>\n#include <Arduino.h>\n",
            "/* never closed #include <Arduino.h>\n",
            "#include <Arduino.h> int x;\n",
            "#include <Arduino.hpp>\n",
            "",
        ] {
            assert!(!starts_with_arduino_h(no.as_bytes()), "{no:?}");
        }
    }

    #[test]
    fn the_gch_command_keeps_the_core_folders_and_names_its_own_files() {
        let pch = BoardPch::new(Path::new("/fw"), [PathBuf::from("/core"), PathBuf::from("/variant")]);
        let (shape, extra) = pch.shape(&job(&["g++", "-I", "/b/core", "-c", "-g", "-MMD", "-I/core", "-I/variant", "-I/lib/src", "/b/s/S.ino.cpp", "-o", "/b/s/S.ino.cpp.o"])).unwrap();
        assert_eq!(shape, ["g++", "-c", "-g", "-MMD", "-I/core", "-I/variant", "-x", "c++-header", STUB_MARK, "-o", GCH_MARK]);
        assert_eq!(extra, [PathBuf::from("/b/core"), PathBuf::from("/lib/src")]);
        assert!(pch.shape(&job(&["g++", "-c", "/other.cpp", "-o", "/b/s/S.ino.cpp.o"])).is_none(), "no source: no shape");
    }

    #[test]
    fn include_names_and_the_h_listing() {
        assert_eq!(include_names(Path::new("/usr/include/sys/types.h")), [PathBuf::from("types.h"), "sys/types.h".into(), "include/sys/types.h".into()]);
        let listed = headers_listed(". /c/Arduino.h\n.. /c/api/Common.h\n! /p/Arduino.h.gch\nMultiple include guards may be useful for:\n/c/x.h\n");
        assert_eq!(listed, [PathBuf::from("/c/Arduino.h"), "/c/api/Common.h".into()]);
    }

    #[test]
    fn a_library_file_named_like_a_gch_header_shadows_it() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("sys")).unwrap();
        std::fs::write(t.path().join("sys/types.h"), "").unwrap();
        std::fs::write(t.path().join("Mine.h"), "").unwrap();
        let names = include_names(Path::new("/usr/include/sys/types.h"));
        assert_eq!(shadowing(&[t.path().to_path_buf()], &names), Some(t.path().join("sys/types.h")));
        assert_eq!(shadowing(&[t.path().to_path_buf()], &include_names(Path::new("/c/Arduino.h"))), None);
    }

    #[test]
    fn the_merged_depfile_lists_the_gch_headers_after_the_source() {
        let t = tempfile::tempdir().unwrap();
        let j = CompileJob { source: t.path().join("S.ino.cpp"), object: t.path().join("S.ino.cpp.o"), args: Vec::new() };
        let pdir = t.path().join("pch");
        std::fs::write(depfile_of(&j.object), format!("{}: {} {}/Arduino.h.gch /lib/My\\ Lib.h\n", j.object.display(), j.source.display(), pdir.display())).unwrap();
        merge_depfile(&j, &PchUse { args: Vec::new(), dir: pdir, deps: vec!["/c/Arduino.h".into(), "/c/api/Common.h".into()] });
        let deps = parse_depfile(&std::fs::read_to_string(depfile_of(&j.object)).unwrap());
        assert_eq!(deps, [j.source.clone(), "/c/Arduino.h".into(), "/c/api/Common.h".into(), "/lib/My Lib.h".into()]);
    }
}
