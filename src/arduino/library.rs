//! Arduino libraries (specification 1.5: flat 1.0 layout or `src/` layout), where
//! they are searched, and which one provides a header (arduino-cli's priority rules).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::arduino::properties::Properties;
use crate::arduino::sketch::{ext_of, HEADER_EXTENSIONS, SOURCE_EXTENSIONS};

/// Where a library was found; higher ranks win ties on name and architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// The referenced (core-providing) platform's `libraries/`.
    ReferencedPlatform,
    /// The board's platform `libraries/`.
    Platform,
    /// `~/Arduino/libraries`.
    User,
    /// `--libraries DIR` folders: arduino-builder's `-libraries`, the user's own.
    Libraries,
    /// `--library DIR`: named explicitly by the user, always preferred.
    Explicit,
}

impl Location {
    fn bonus(self) -> i32 {
        match self {
            Location::ReferencedPlatform => 1,
            Location::Platform => 2,
            Location::User => 3,
            // Above ~/Arduino/libraries on a tie, but not above a better architecture or
            // name fit, as arduino-builder ranks its `-libraries`: arduino-pico's own SD
            // (architectures=rp2040) wins over a generic SD given with --libraries.
            Location::Libraries => 4,
            Location::Explicit => 10_001,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// 1.5 layout: sources recursively under `src/`.
    Recursive,
    /// 1.0 layout: sources in the root folder and in `utility/`.
    Flat,
}

#[derive(Debug, Clone)]
pub struct Library {
    pub name: String,
    /// `version` from library.properties (empty for legacy libraries).
    pub version: String,
    pub dir_name: String,
    pub path: PathBuf,
    pub src_dir: PathBuf,
    pub layout: Layout,
    pub architectures: Vec<String>,
    /// `dot_a_linkage=true`: linked through an archive, as the spec asks.
    pub dot_a_linkage: bool,
    /// `precompiled=true` or `full`: the library ships archives for some MCUs in
    /// `src/<build.mcu>[/<fpu>-<float-abi>]/` (see `precompiled_folder`).
    pub precompiled: bool,
    /// `precompiled=full`: with an archive for this MCU, its sources are not compiled.
    pub precompiled_with_sources: bool,
    /// `ldflags=`: added to the link with the precompiled archives.
    pub ldflags: String,
    pub location: Location,
    /// Header files directly in `src_dir`: what `#include <X.h>` can find.
    pub headers: Vec<String>,
}

impl Library {
    pub fn load(path: &Path, location: Location) -> Result<Option<Library>> {
        if !path.is_dir() {
            return Ok(None);
        }
        let dir_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let props_path = path.join("library.properties");
        let props = if props_path.is_file() { Properties::load(&props_path)? } else { Properties::new() };
        let (src_dir, layout) = if props_path.is_file() && path.join("src").is_dir() {
            (path.join("src"), Layout::Recursive)
        } else {
            (path.to_path_buf(), Layout::Flat)
        };
        let headers: Vec<String> = list_files(&src_dir)
            .into_iter()
            .filter(|p| HEADER_EXTENSIONS.contains(&ext_of(p)))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if headers.is_empty() {
            return Ok(None); // not a library (e.g. a stray folder)
        }
        let architectures = props
            .get("architectures")
            .map(|a| a.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .filter(|v: &Vec<String>| !v.is_empty())
            .unwrap_or_else(|| vec!["*".to_string()]);
        Ok(Some(Library {
            name: props.get("name").map(str::to_string).unwrap_or_else(|| dir_name.clone()),
            version: props.get("version").unwrap_or("").to_string(),
            dir_name,
            path: path.to_path_buf(),
            src_dir,
            layout,
            architectures,
            dot_a_linkage: props.get("dot_a_linkage") == Some("true"),
            precompiled: matches!(props.get("precompiled"), Some("true" | "full")),
            precompiled_with_sources: props.get("precompiled") == Some("full"),
            ldflags: props.get("ldflags").unwrap_or("").trim().to_string(),
            location,
            headers,
        }))
    }

    /// The folder of archives a precompiled library ships for this build, as arduino-cli
    /// finds it: `src/<build.mcu>/<fpu>-<float-abi>` when the C++ recipe has `-mfpu=`
    /// and `-mfloat-abi=` and that folder holds a file, else `src/<build.mcu>`.
    pub fn precompiled_folder(&self, mcu: &str, cpp_args: &[String]) -> Option<PathBuf> {
        if !self.precompiled {
            return None;
        }
        let value_of = |needle: &str| cpp_args.iter().find(|a| a.contains(needle)).and_then(|a| a.split('=').nth(1)).map(str::trim);
        let specs: Vec<&str> = [value_of("fpu"), value_of("float-abi")].into_iter().flatten().collect();
        let holds_a_file = |d: &Path| std::fs::read_dir(d).map(|rd| rd.filter_map(|e| e.ok()).any(|e| e.path().is_file())).unwrap_or(false);
        if !specs.is_empty() {
            let full = self.src_dir.join(mcu).join(specs.join("-"));
            if holds_a_file(&full) {
                return Some(full);
            }
        }
        let plain = self.src_dir.join(mcu);
        holds_a_file(&plain).then_some(plain)
    }

    /// What a precompiled folder adds to the link, as arduino-cli adds it: to
    /// `compiler.libraries.ldflags`, ` "-L<folder>" <ldflags> -l<name> ... ` for every
    /// `lib<name>.a`/`.so` there; and the `.a` files not named `lib*`, linked as objects.
    pub fn precompiled_link(&self, folder: &Path) -> (String, Vec<PathBuf>) {
        let files = files_in(folder);
        let mut flags = format!(" \"-L{}\" {} ", folder.display(), self.ldflags);
        let mut objects = Vec::new();
        for f in &files {
            let (stem, ext) = (f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(), ext_of(f));
            if ext != "a" && ext != "so" {
                continue;
            }
            match stem.strip_prefix("lib") {
                Some(name) => flags.push_str(&format!("-l{name} ")),
                None if ext == "a" => objects.push(f.clone()),
                None => {}
            }
        }
        flags.push(' ');
        (flags, objects)
    }

    pub fn supports(&self, arch: &str) -> bool {
        self.architectures.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(arch))
    }

    /// Source files to compile, in the order the reference builder compiles and links them.
    pub fn sources(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        match self.layout {
            Layout::Recursive => collect_sources_recursive(&self.src_dir, &mut out),
            // The root folder and `utility/`, neither recursively (as the reference).
            Layout::Flat => {
                for dir in [self.src_dir.clone(), self.src_dir.join("utility")] {
                    out.extend(list_files(&dir).into_iter().filter(|p| is_source(p)));
                }
            }
        }
        out
    }

    /// Headers and sources whose `#include`s can pull in more libraries.
    pub fn scan_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.src_dir.clone()];
        while let Some(dir) = stack.pop() {
            for Entry { path: p, is_dir, .. } in list_entries(&dir) {
                if is_dir {
                    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    let descend = match self.layout {
                        Layout::Recursive => true,
                        Layout::Flat => dir == self.src_dir && name == "utility",
                    };
                    if descend && name != "examples" && name != "extras" {
                        stack.push(p);
                    }
                } else if is_source(&p) || HEADER_EXTENSIONS.contains(&ext_of(&p)) {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// Include folders the library's own sources need besides the sketch's.
    pub fn own_include_dirs(&self) -> Vec<PathBuf> {
        let mut v = vec![self.src_dir.clone()];
        if self.layout == Layout::Flat && self.src_dir.join("utility").is_dir() {
            v.push(self.src_dir.join("utility"));
        }
        v
    }

    fn priority(&self, header: &str, arch: &str) -> i32 {
        let header = simplify(header.rsplit_once('.').map(|(s, _)| s).unwrap_or(header));
        let name = simplify(&self.name);
        let dir = simplify(&self.dir_name);
        let mut p = if self.architectures.iter().any(|a| a.eq_ignore_ascii_case(arch)) {
            1010 // optimised for this architecture beats "works everywhere"
        } else if self.architectures.iter().any(|a| a == "*") {
            1000
        } else {
            0
        };
        let either = |f: &dyn Fn(&str) -> bool| f(&name) || f(&dir);
        p += if name == header && dir == header {
            700
        } else if either(&|s| s == header) {
            600
        } else if either(&|s| s == format!("{header}-main")) {
            500
        } else if either(&|s| s == format!("{header}-master")) {
            400
        } else if either(&|s| s.starts_with(&header)) {
            300
        } else if either(&|s| s.ends_with(&header)) {
            200
        } else if either(&|s| s.contains(&header)) {
            100
        } else {
            0
        };
        p + self.location.bonus()
    }
}

/// Library names compare loosely: case-insensitive, with spaces and symbols as `_`.
fn simplify(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c.to_ascii_lowercase() } else { '_' }).collect()
}


fn is_source(p: &Path) -> bool {
    SOURCE_EXTENSIONS.contains(&ext_of(p))
}

/// The files directly in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    list_files(dir)
}

/// A folder entry and what it is, symbolic links followed (as `Path::is_file`).
struct Entry {
    path: PathBuf,
    is_file: bool,
    is_dir: bool,
}

/// The entries of `dir` but hidden ones, sorted by name. The kind comes from the
/// folder listing itself; only a link (or a file system that does not say) costs a
/// stat: a heavy library's few thousand headers are listed without one each.
fn list_entries(dir: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<(std::ffi::OsString, Entry)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            let path = e.path();
            let (is_file, is_dir) = match e.file_type() {
                Ok(t) if !t.is_symlink() => (t.is_file(), t.is_dir()),
                _ => (path.is_file(), path.is_dir()),
            };
            (e.file_name(), Entry { path, is_file, is_dir })
        })
        .collect();
    // Entries of one folder: ordering by name is ordering by path.
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().map(|(_, e)| e).collect()
}

fn list_files(dir: &Path) -> Vec<PathBuf> {
    list_entries(dir).into_iter().filter(|e| e.is_file).map(|e| e.path).collect()
}

/// Files of a folder first (sorted), then each subfolder in turn: the order the
/// reference builder walks a library's `src/`.
fn collect_sources_recursive(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = list_entries(dir);
    out.extend(entries.iter().filter(|e| e.is_file && is_source(&e.path)).map(|e| e.path.clone()));
    for d in entries.iter().filter(|e| e.is_dir) {
        collect_sources_recursive(&d.path, out);
    }
}

/// Every installed library, indexed by the headers it offers.
#[derive(Debug, Default)]
pub struct LibraryIndex {
    pub libraries: Vec<Library>,
    by_header: HashMap<String, Vec<usize>>,
    /// The folders searched, for "no library provides X.h" messages.
    pub searched: Vec<PathBuf>,
}

pub struct LibrarySources<'a> {
    pub explicit: &'a [PathBuf],
    pub folders: &'a [PathBuf],
    pub platform_dir: &'a Path,
}

impl LibraryIndex {
    pub fn build(src: &LibrarySources) -> Result<LibraryIndex> {
        let mut idx = LibraryIndex::default();
        for lib in src.explicit {
            match Library::load(lib, Location::Explicit)? {
                Some(l) => idx.add(l),
                None => {
                    return Err(Error::usage(format!(
                        "--library {} is not a library folder (no headers in it or its src/); pass the library's root folder",
                        lib.display()
                    )))
                }
            }
            idx.searched.push(lib.clone());
        }
        for folder in src.folders {
            if !folder.is_dir() {
                return Err(Error::usage(format!(
                    "--libraries {} does not exist; pass a folder that holds library folders",
                    folder.display()
                )));
            }
            idx.add_folder(folder, Location::Libraries)?;
        }
        if let Some(home) = std::env::var_os("HOME") {
            idx.add_folder(&Path::new(&home).join("Arduino/libraries"), Location::User)?;
        }
        idx.add_folder(&src.platform_dir.join("libraries"), Location::Platform)?;
        Ok(idx)
    }

    fn add_folder(&mut self, folder: &Path, location: Location) -> Result<()> {
        if !folder.is_dir() {
            return Ok(());
        }
        self.searched.push(folder.to_path_buf());
        for dir in list_entries(folder).into_iter().filter(|e| e.is_dir).map(|e| e.path) {
            if let Some(l) = Library::load(&dir, location)? {
                self.add(l);
            }
        }
        Ok(())
    }

    fn add(&mut self, lib: Library) {
        let i = self.libraries.len();
        for h in &lib.headers {
            self.by_header.entry(h.clone()).or_default().push(i);
        }
        self.libraries.push(lib);
    }

    /// The library that provides `header` for `arch`, by arduino-cli's priority:
    /// architecture fit, then name fit, then location; ties go to the closest name.
    pub fn resolve(&self, header: &str, arch: &str) -> Option<usize> {
        let candidates = self.by_header.get(header)?;
        let best = candidates.iter().map(|&i| self.libraries[i].priority(header, arch)).max()?;
        let mut tied: Vec<usize> =
            candidates.iter().copied().filter(|&i| self.libraries[i].priority(header, arch) == best).collect();
        let stem = simplify(header.rsplit_once('.').map(|(s, _)| s).unwrap_or(header));
        tied.sort_by_key(|&i| (strsim::levenshtein(&simplify(&self.libraries[i].name), &stem), self.libraries[i].name.clone()));
        tied.first().copied()
    }
}

/// Memoised `#include` lists per file: each library file is scanned once per run,
/// however many sketches use it.
#[derive(Default)]
pub struct IncludeCache {
    map: std::sync::Mutex<BTreeMap<PathBuf, std::sync::Arc<Vec<String>>>>,
    /// The build's known macros, to skip `#if` branches certainly not taken.
    macros: Option<crate::cpp::macros::Macros>,
}

impl IncludeCache {
    pub fn with_macros(macros: crate::cpp::macros::Macros) -> IncludeCache {
        IncludeCache { map: Default::default(), macros: Some(macros) }
    }

    /// The macros the scan evaluates `#if` lines with.
    pub fn macros(&self) -> Option<&crate::cpp::macros::Macros> {
        self.macros.as_ref()
    }

    pub fn includes_of(&self, path: &Path) -> std::sync::Arc<Vec<String>> {
        if let Some(v) = self.map.lock().unwrap().get(path) {
            return v.clone();
        }
        let v = std::sync::Arc::new(match std::fs::read(path) {
            Ok(bytes) => crate::cpp::includes::scan_includes_bytes_with(&bytes, self.macros.as_ref()),
            Err(_) => Vec::new(),
        });
        self.map.lock().unwrap().insert(path.to_path_buf(), v.clone());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precompiled_folder_and_link_flags_as_arduino_cli() {
        let t = tempfile::tempdir().unwrap();
        let root = lib(t.path(), "Fast", Some("name=Fast\nprecompiled=full\nldflags=-lm\n"), "Fast.h");
        for f in ["cortex-m4/libfast.a", "cortex-m4/fpv4-sp-d16-hard/libfast.a", "cortex-m4/fpv4-sp-d16-hard/odd.a", "cortex-m4/fpv4-sp-d16-hard/notes.txt"] {
            let p = root.join("src").join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "!<arch>\n").unwrap();
        }
        let l = Library::load(&root, Location::Libraries).unwrap().unwrap();
        assert!(l.precompiled && l.precompiled_with_sources);
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The C++ recipe's -mfpu and -mfloat-abi pick the FPU-specific folder...
        let hard = l.precompiled_folder("cortex-m4", &args(&["g++", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"])).unwrap();
        assert_eq!(hard, root.join("src/cortex-m4/fpv4-sp-d16-hard"));
        // ...which falls back to the MCU's folder, and no folder means none.
        assert_eq!(l.precompiled_folder("cortex-m4", &args(&["g++", "-mfloat-abi=soft"])).unwrap(), root.join("src/cortex-m4"));
        assert_eq!(l.precompiled_folder("cortex-m0plus", &args(&["g++"])), None);
        let (flags, objects) = l.precompiled_link(&hard);
        assert_eq!(flags, format!(" \"-L{}\" -lm -lfast  ", hard.display()));
        assert_eq!(objects, vec![hard.join("odd.a")]);
        // Through the recipe splitter, the folder stays one argument.
        let words = crate::arduino::properties::split_command_line(&format!("gcc{flags}-o x"));
        assert_eq!(words, vec!["gcc".to_string(), format!("-L{}", hard.display()), "-lm".into(), "-lfast".into(), "-o".into(), "x".into()]);
        let plain = lib(t.path(), "Plain", Some("name=Plain\n"), "Plain.h");
        assert_eq!(Library::load(&plain, Location::Libraries).unwrap().unwrap().precompiled_folder("cortex-m4", &[]), None);
    }

    fn lib(root: &Path, dir: &str, props: Option<&str>, header: &str) -> PathBuf {
        let p = root.join(dir);
        let src = if props.is_some() { p.join("src") } else { p.clone() };
        std::fs::create_dir_all(&src).unwrap();
        if let Some(pr) = props {
            std::fs::write(p.join("library.properties"), pr).unwrap();
        }
        std::fs::write(src.join(header), "").unwrap();
        p
    }

    fn index_of(libs: Vec<Library>) -> LibraryIndex {
        let mut idx = LibraryIndex::default();
        for l in libs {
            idx.add(l);
        }
        idx
    }

    #[test]
    fn name_match_beats_location() {
        let t = tempfile::tempdir().unwrap();
        let a = Library::load(&lib(t.path(), "Servo", Some("name=Servo\n"), "Servo.h"), Location::Platform).unwrap().unwrap();
        let b = Library::load(&lib(t.path(), "MyStuff", Some("name=MyStuff\n"), "Servo.h"), Location::User).unwrap().unwrap();
        let idx = index_of(vec![b, a]);
        assert_eq!(idx.libraries[idx.resolve("Servo.h", "avr").unwrap()].dir_name, "Servo");
    }

    #[test]
    fn architecture_specific_beats_generic_and_incompatible_loses() {
        let t = tempfile::tempdir().unwrap();
        let generic = Library::load(&lib(t.path(), "a/Foo", Some("name=Foo\narchitectures=*\n"), "Foo.h"), Location::User).unwrap().unwrap();
        let avr = Library::load(&lib(t.path(), "b/Foo", Some("name=Foo\narchitectures=avr\n"), "Foo.h"), Location::Platform).unwrap().unwrap();
        let sam = Library::load(&lib(t.path(), "c/Foo", Some("name=Foo\narchitectures=sam\n"), "Foo.h"), Location::User).unwrap().unwrap();
        let idx = index_of(vec![generic, avr, sam]);
        let i = idx.resolve("Foo.h", "avr").unwrap();
        assert_eq!(idx.libraries[i].architectures, vec!["avr"]);
        assert!(!idx.libraries[2].supports("avr"));
    }

    #[test]
    fn a_platform_library_for_the_architecture_beats_a_generic_one_from_libraries() {
        let t = tempfile::tempdir().unwrap();
        let platform = Library::load(&lib(t.path(), "p/SD", Some("name=SD\narchitectures=rp2040\n"), "SD.h"), Location::Platform).unwrap().unwrap();
        let given = Library::load(&lib(t.path(), "l/SD", Some("name=SD\narchitectures=*\n"), "SD.h"), Location::Libraries).unwrap().unwrap();
        let idx = index_of(vec![given, platform]);
        assert_eq!(idx.libraries[idx.resolve("SD.h", "rp2040").unwrap()].location, Location::Platform);
        // Where the platform's does not fit the architecture, the folder given wins.
        assert_eq!(idx.libraries[idx.resolve("SD.h", "avr").unwrap()].location, Location::Libraries);
    }

    #[test]
    fn user_folder_beats_platform_on_equal_names() {
        let t = tempfile::tempdir().unwrap();
        let p = Library::load(&lib(t.path(), "p/Wire", Some("name=Wire\n"), "Wire.h"), Location::Platform).unwrap().unwrap();
        let u = Library::load(&lib(t.path(), "u/Wire", Some("name=Wire\n"), "Wire.h"), Location::User).unwrap().unwrap();
        let idx = index_of(vec![p, u]);
        assert_eq!(idx.libraries[idx.resolve("Wire.h", "avr").unwrap()].location, Location::User);
    }

    #[test]
    fn layouts_and_sources() {
        let t = tempfile::tempdir().unwrap();
        let flat = lib(t.path(), "Flat", None, "Flat.h");
        std::fs::write(flat.join("Flat.cpp"), "").unwrap();
        std::fs::create_dir_all(flat.join("utility")).unwrap();
        std::fs::write(flat.join("utility/u.c"), "").unwrap();
        std::fs::create_dir_all(flat.join("utility/deeper")).unwrap();
        std::fs::write(flat.join("utility/deeper/not_compiled.c"), "").unwrap();
        std::fs::create_dir_all(flat.join("examples/E")).unwrap();
        std::fs::write(flat.join("examples/E/E.cpp"), "").unwrap();
        let l = Library::load(&flat, Location::User).unwrap().unwrap();
        assert_eq!(l.layout, Layout::Flat);
        let names: Vec<String> = l.sources().iter().map(|p| p.strip_prefix(&flat).unwrap().display().to_string()).collect();
        assert_eq!(names, vec!["Flat.cpp", "utility/u.c"]);

        let rec = lib(t.path(), "Rec", Some("name=Rec\n"), "Rec.h");
        std::fs::create_dir_all(rec.join("src/a")).unwrap();
        std::fs::write(rec.join("src/a/x.cpp"), "").unwrap();
        std::fs::write(rec.join("src/z.cpp"), "").unwrap();
        let l = Library::load(&rec, Location::User).unwrap().unwrap();
        let names: Vec<String> = l.sources().iter().map(|p| p.strip_prefix(&rec).unwrap().display().to_string()).collect();
        assert_eq!(names, vec!["src/z.cpp", "src/a/x.cpp"]);
    }
}
