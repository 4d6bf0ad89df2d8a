//! `lib_ldf_mode`: which libraries an env uses, as PlatformIO's Library Dependency
//! Finder picks them.
//!
//! The `+` modes evaluate the preprocessor's conditionals; for those fbuild's own
//! discovery (the compiler's preprocessor, as arduino-builder) decides. `off`, `chain`
//! (PlatformIO's default) and `deep` do not evaluate them: they follow every `#include`
//! line of a file, found as SCons's classic C scanner finds it, on a search path of the
//! project's folders and every library's. `chain` follows includes from the project's
//! sources into the headers they reach and the sources named like those headers, then
//! reads all sources of the libraries found so (not of those that adds); `deep` reads
//! every source of each library found; `off` takes the `lib_deps` only. This
//! module computes that set, dependencies first (the order PlatformIO links in), and
//! the pipeline builds exactly it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};


#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LdfMode {
    Off,
    #[default]
    Chain,
    Deep,
    ChainPlus,
    DeepPlus,
}

impl LdfMode {
    /// The option's value as PlatformIO's ini accepts it: a name.
    pub fn parse(value: &str) -> Option<LdfMode> {
        match value.trim().to_ascii_lowercase().as_str() {
            "off" => Some(LdfMode::Off),
            "chain" => Some(LdfMode::Chain),
            "deep" => Some(LdfMode::Deep),
            "chain+" => Some(LdfMode::ChainPlus),
            "deep+" => Some(LdfMode::DeepPlus),
            _ => None,
        }
    }

    /// The modes that evaluate conditionals, where fbuild's exact discovery decides.
    pub fn evaluates_conditionals(self) -> bool {
        matches!(self, LdfMode::ChainPlus | LdfMode::DeepPlus)
    }
}

/// One library as the finder sees it: PlatformIO's `LibBuilder` for the folder.
#[derive(Clone)]
pub struct LibBuilder {
    /// library.json's `name`, else library.properties', else the folder's.
    pub name: String,
    /// The library's own folder (its real path): files under it are its own.
    pub path: PathBuf,
    /// Its include folders in PlatformIO's order (`get_include_dirs`).
    pub include_dirs: Vec<PathBuf>,
    /// The folder its sources are compiled from (`src_dir`).
    pub src_dir: PathBuf,
    /// Its sources as its source filter selects them: what it compiles and `deep` reads.
    pub sources: Vec<PathBuf>,
    /// Its filter is Arduino's 1.0 one: the top folder and `utility/`, not below.
    pub flat: bool,
    /// library.json `dependencies`, by name.
    pub dependencies: Vec<String>,
}

/// Which of PlatformIO's builder classes reads a library folder (`LibBuilderFactory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `library.json`: PlatformIOLibBuilder.
    Json,
    /// library.properties, keywords.txt, or a file including `<Arduino.h>`: ArduinoLibBuilder.
    Arduino,
    /// Anything else: the base builder.
    Unknown,
}

/// PlatformIO's source extensions (`SRC_BUILD_EXT`) that fbuild compiles.
const BUILD_EXT: [&str; 5] = ["c", "cc", "cpp", "cxx", "S"];
/// The default library filter (`LibBuilderBase.src_filter`).
const LIB_FILTER: &str = "+<*> -<.git/> -<.svn/> -<example/> -<examples/> -<test/> -<tests/>";

impl LibBuilder {
    /// PlatformIO's view of the library in `dir`: its builder class decides the source
    /// folder, the include folders and the source filter. None when no filter can be read.
    pub fn read(dir: &Path) -> Option<LibBuilder> {
        let path = std::fs::canonicalize(dir).ok()?;
        let json: Option<serde_json::Value> = std::fs::read(path.join("library.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let has = |name: &str| path.join(name).is_dir();
        let first_dir = |names: [&str; 2]| names.iter().map(|n| path.join(n)).find(|d| d.is_dir());
        let props = path.join("library.properties").is_file();
        let kind = if path.join("library.json").is_file() {
            Kind::Json
        } else if props || path.join("keywords.txt").is_file() || includes_arduino_h(&path) {
            Kind::Arduino
        } else {
            Kind::Unknown
        };
        let build = json.as_ref().and_then(|j| j.get("build"));
        let manifest_dir = |key: &str| build.and_then(|b| b.get(key)).and_then(|v| v.as_str()).map(|d| normalize(&path.join(d)));
        let src_dir = manifest_dir("srcDir").or_else(|| first_dir(["src", "Src"])).unwrap_or_else(|| path.clone());
        let include_dir = match kind {
            Kind::Json => manifest_dir("includeDir").or_else(|| first_dir(["include", "Include"])),
            Kind::Arduino => (has("include") && has("src")).then(|| path.join("include")),
            Kind::Unknown => first_dir(["include", "Include"]),
        };
        let mut include_dirs: Vec<PathBuf> = include_dir.into_iter().collect();
        include_dirs.push(src_dir.clone());
        let utility = !has("src") && has("utility");
        let old_json = kind == Kind::Json && build.is_none() && props;
        if utility && (kind == Kind::Arduino || old_json) {
            include_dirs.push(path.join("utility"));
        }
        let arduino_filter = || -> (String, bool) {
            if has("src") {
                (LIB_FILTER.to_string(), false)
            } else {
                let with_utility = src_dir.join("utility").is_dir();
                let items: Vec<String> = BUILD_EXT.iter().flat_map(|e| [Some(format!("+<*.{e}>")), with_utility.then(|| format!("+<utility/*.{e}>"))]).flatten().collect();
                (items.join(" "), true)
            }
        };
        let (filter, flat) = match (kind, build.and_then(|b| b.get("srcFilter"))) {
            (Kind::Json, Some(serde_json::Value::String(f))) => (f.clone(), false),
            (Kind::Json, Some(serde_json::Value::Array(a))) => (a.iter().filter_map(|f| f.as_str()).collect::<Vec<_>>().join(" "), false),
            (Kind::Json, _) if props => arduino_filter(),
            (Kind::Arduino, _) => arduino_filter(),
            _ => (LIB_FILTER.to_string(), false),
        };
        let selected = super::src_filter::select(&src_dir, &filter, "library source filter").ok()?;
        let sources = selected.into_iter().filter(|rel| BUILD_EXT.iter().any(|e| rel.extension().is_some_and(|x| x == *e))).map(|rel| src_dir.join(rel)).collect();
        let dependencies = match json.as_ref().and_then(|j| j.get("dependencies")) {
            Some(serde_json::Value::Object(m)) => m.keys().map(|k| k.rsplit('/').next().unwrap_or(k).to_string()).collect(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|d| d.get("name").and_then(|n| n.as_str())).map(|n| n.rsplit('/').next().unwrap_or(n).to_string()).collect(),
            _ => Vec::new(),
        };
        let folder = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let properties_name = || {
            let text = std::fs::read_to_string(path.join("library.properties")).ok()?;
            text.lines().find_map(|l| l.strip_prefix("name=")).map(|n| n.trim().to_string()).filter(|n| !n.is_empty())
        };
        let name = match kind {
            Kind::Json => json.as_ref().and_then(|j| j.get("name")).and_then(|n| n.as_str()).map(String::from),
            Kind::Arduino => properties_name(),
            Kind::Unknown => None,
        };
        Some(LibBuilder { name: name.unwrap_or(folder), path, include_dirs, src_dir, sources, flat, dependencies })
    }
}

/// `a/./b/../c` as `a/c`, without asking the file system (Python's `abspath`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Does a source or header anywhere in `dir` include `"Arduino.h"` at the start of a line
/// (PlatformIO's test for an Arduino library without a manifest; its pattern wants `<` or
/// `"` after the name, so `<Arduino.h>` does not count)?
fn includes_arduino_h(dir: &Path) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    let mut depth = 0;
    while let Some(d) = stack.pop() {
        depth += 1;
        if depth > 10_000 {
            return false;
        }
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let ext = p.extension().map(|x| x.to_string_lossy().into_owned()).unwrap_or_default();
            if !["c", "cc", "cpp", "cxx", "c++", "S", "spp", "SPP", "sx", "s", "asm", "ASM", "h", "hpp"].contains(&ext.as_str()) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&p) else { continue };
            let text = String::from_utf8_lossy(&bytes);
            if text.contains("Arduino.h") && text.lines().any(|l| includes_arduino_line(l)) {
                return true;
            }
        }
    }
    false
}

/// `^#include\s+(<|")Arduino\.h(<|")`: the line as PlatformIO's pattern reads it.
fn includes_arduino_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("#include") else { return false };
    let trimmed = rest.trim_start();
    if trimmed.len() == rest.len() {
        return false;
    }
    let mut chars = trimmed.chars();
    matches!(chars.next(), Some('<' | '"')) && chars.as_str().strip_prefix("Arduino.h").is_some_and(|r| r.starts_with(['<', '"']))
}

/// The project as the finder sees it: its folder, `include/` and `src/` on the path,
/// its sources, and its `lib_deps` (indexes into the libraries).
pub struct ProjectScan {
    pub path: PathBuf,
    pub include_dirs: Vec<PathBuf>,
    pub sources: Vec<PathBuf>,
    pub lib_deps: Vec<usize>,
}

/// `SRC_HEADER_EXT`, and the C and C++ sources a header of the same name brings.
const HEADER_EXT: [&str; 2] = ["h", "hpp"];
const SOURCE_EXT: [&str; 5] = ["c", "cc", "cpp", "cxx", "c++"];

/// The finder's state: node 0 is the project, node i+1 the library `libs[i]`.
struct Finder<'a> {
    mode: LdfMode,
    libs: &'a [LibBuilder],
    paths: Vec<PathBuf>,
    own_dirs: Vec<Vec<PathBuf>>,
    depends: Vec<Vec<usize>>,
    processed: Vec<BTreeSet<PathBuf>>,
    deps_done: Vec<bool>,
    dependent: Vec<bool>,
    /// The project's folders then every library's: where any include is looked for.
    search: Vec<PathBuf>,
}

/// The libraries `mode` uses (indexes into `libs`), dependencies before their users.
pub fn find(mode: LdfMode, project: &ProjectScan, libs: &[LibBuilder]) -> Vec<usize> {
    let mut search = project.include_dirs.clone();
    search.extend(libs.iter().flat_map(|l| l.include_dirs.iter().cloned()));
    let n = libs.len() + 1;
    let mut paths = vec![project.path.clone()];
    paths.extend(libs.iter().map(|l| l.path.clone()));
    let mut own_dirs = vec![project.include_dirs.clone()];
    own_dirs.extend(libs.iter().map(|l| l.include_dirs.clone()));
    let mut f = Finder {
        mode,
        libs,
        paths,
        own_dirs,
        depends: vec![Vec::new(); n],
        processed: vec![BTreeSet::new(); n],
        deps_done: vec![false; n],
        dependent: vec![false; n],
        search,
    };
    // The project: its lib_deps first (not followed further in `chain`), then its own
    // sources, all of them (a project is always read `deep`).
    for &d in &project.lib_deps {
        f.depend_on(0, d + 1, Vec::new(), false);
    }
    for &d in &project.lib_deps {
        f.search_deps(d + 1, None);
    }
    if mode != LdfMode::Off {
        f.follow(0, project.sources.clone());
    }
    // `chain` then reads all the sources of each library it found (once; what that
    // finds is followed as `chain` follows it, and kept).
    if mode == LdfMode::Chain {
        let found: Vec<usize> = (1..n).filter(|&i| f.dependent[i]).collect();
        for &i in &found {
            let all = f.libs[i - 1].sources.clone();
            f.search_deps(i, Some(all));
        }
    }
    // Dependencies first, as PlatformIO builds (and links) the tree.
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    f.post_order(0, &mut seen, &mut order);
    order.into_iter().filter(|&i| i != 0).map(|i| i - 1).collect()
}

impl Finder<'_> {
    fn already_depends(&self, on: usize, who: usize, seen: &mut BTreeSet<usize>) -> bool {
        if !seen.insert(on) {
            return false;
        }
        self.depends[on].contains(&who) || self.depends[on].clone().into_iter().any(|d| self.already_depends(d, who, seen))
    }

    fn depend_on(&mut self, who: usize, lib: usize, files: Vec<PathBuf>, recursive: bool) {
        if who != lib && !self.already_depends(lib, who, &mut BTreeSet::new()) && !self.depends[who].contains(&lib) {
            self.depends[who].push(lib);
            self.dependent[lib] = true;
        }
        if recursive {
            self.search_deps(lib, Some(files));
        }
    }

    /// A library's library.json dependencies, then (unless `off`) what its files include.
    fn search_deps(&mut self, lib: usize, files: Option<Vec<PathBuf>>) {
        if !self.deps_done[lib] {
            self.deps_done[lib] = true;
            for name in self.libs[lib - 1].dependencies.clone() {
                if let Some(d) = self.libs.iter().position(|l| l.name == name) {
                    self.depend_on(lib, d + 1, Vec::new(), true);
                }
            }
        }
        if self.mode == LdfMode::Off {
            return;
        }
        let files = if self.mode == LdfMode::Deep { self.libs[lib - 1].sources.clone() } else { files.unwrap_or_default() };
        self.follow(lib, files);
    }

    /// Read `files` of node `who` and its own files they reach; depend on each library
    /// that holds a file they include, to be read from those files on.
    fn follow(&mut self, who: usize, files: Vec<PathBuf>) {
        let mut dirs = self.own_dirs[who].clone();
        dirs.extend(self.search.iter().cloned());
        let mut queue: std::collections::VecDeque<PathBuf> = files.into();
        let mut result: Vec<PathBuf> = Vec::new();
        while let Some(file) = queue.pop_front() {
            if !self.processed[who].insert(file.clone()) {
                continue;
            }
            for item in scan(&file, &dirs) {
                if !self.processed[who].contains(&item) && !queue.contains(&item) && item.starts_with(&self.paths[who]) {
                    queue.push_back(item.clone());
                }
                if !result.contains(&item) {
                    result.push(item.clone());
                }
                // A header brings the source named like it.
                if item.extension().is_some_and(|e| HEADER_EXT.iter().any(|h| e == *h)) {
                    for ext in SOURCE_EXT {
                        let src = item.with_extension(ext);
                        if src.is_file() && !result.contains(&src) {
                            result.push(src);
                        }
                    }
                }
            }
        }
        let mut by_lib: Vec<(usize, Vec<PathBuf>)> = Vec::new();
        for item in result {
            let Some(l) = self.libs.iter().position(|l| item.starts_with(&l.path)) else { continue };
            match by_lib.iter_mut().find(|(i, _)| *i == l + 1) {
                Some((_, v)) => v.push(item),
                None => by_lib.push((l + 1, vec![item])),
            }
        }
        for (lib, files) in by_lib {
            self.depend_on(who, lib, files, true);
        }
    }

    fn post_order(&self, node: usize, seen: &mut BTreeSet<usize>, out: &mut Vec<usize>) {
        if !seen.insert(node) {
            return;
        }
        for &d in &self.depends[node] {
            self.post_order(d, seen, out);
        }
        out.push(node);
    }
}

/// The files `file` includes, as SCons's classic scanner finds them: every `#include`
/// or `#import` line whether or not a conditional hides it, sorted by how it is
/// written; a quoted one looked for beside the file first, an angled one last.
fn scan(file: &Path, dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    let here = file.parent().map(Path::to_path_buf).unwrap_or_default();
    for (open, name, close) in include_lines(file).iter() {
        let (open, name, close) = (*open, name.as_str(), *close);
        let mut paths: Vec<&Path> = Vec::new();
        if open == '"' {
            paths.push(&here);
        }
        paths.extend(dirs.iter().map(PathBuf::as_path));
        if open == '<' {
            paths.push(&here);
        }
        if let Some(p) = paths.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            found.push((format!("{open} {name} {close}"), p));
        }
    }
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// The include lines of a file, read once a run (envs of many projects share libraries).
fn include_lines(file: &Path) -> std::sync::Arc<Vec<(char, String, char)>> {
    type Lines = std::sync::Arc<Vec<(char, String, char)>>;
    static READ: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<PathBuf, Lines>>> = std::sync::LazyLock::new(Default::default);
    if let Some(l) = READ.lock().unwrap().get(file) {
        return l.clone();
    }
    let bytes = std::fs::read(file).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Lines = std::sync::Arc::new(text.lines().filter_map(include_of).map(|(o, n, c)| (o, n.to_string(), c)).collect());
    READ.lock().unwrap().insert(file.to_path_buf(), lines.clone());
    lines
}

/// `^[ \t]*#[ \t]*(include|import)[ \t]*(<|")([^>"]+)(>|")`: SCons's pattern.
fn include_of(line: &str) -> Option<(char, &str, char)> {
    let rest = line.trim_start_matches([' ', '\t']).strip_prefix('#')?.trim_start_matches([' ', '\t']);
    let rest = rest.strip_prefix("include").or_else(|| rest.strip_prefix("import"))?.trim_start_matches([' ', '\t']);
    let open = rest.chars().next().filter(|c| *c == '<' || *c == '"')?;
    let body = &rest[1..];
    let end = body.find(['>', '"'])?;
    if end == 0 {
        return None;
    }
    let close = body[end..].chars().next()?;
    Some((open, &body[..end], close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_lines_as_scons_reads_them() {
        assert_eq!(include_of("#include <A.h>"), Some(('<', "A.h", '>')));
        assert_eq!(include_of("  #  include\t\"sub/B.h\" // x"), Some(('"', "sub/B.h", '"')));
        assert_eq!(include_of("#import <C.h>"), Some(('<', "C.h", '>')));
        assert_eq!(include_of("#include MACRO_HEADER"), None);
        assert_eq!(include_of("// #include <D.h>"), None);
        assert_eq!(include_of("#define X <E.h>"), None);
    }

    fn lib(root: &Path, name: &str, files: &[(&str, &str)]) -> LibBuilder {
        let dir = root.join(name);
        for (rel, text) in files {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        LibBuilder::read(&dir).unwrap()
    }

    #[test]
    fn library_folders_read_as_platformio_builders_read_them() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let rel = |l: &LibBuilder, v: &[PathBuf]| v.iter().map(|p| p.strip_prefix(&l.path).unwrap().display().to_string()).collect::<Vec<_>>();
        // No manifest, flat: the base builder, recursive but for examples/.
        let flat = lib(&root, "Flat", &[("Flat.h", ""), ("Flat.cpp", ""), ("deep/more.c", ""), ("examples/x/x.cpp", "")]);
        assert_eq!((rel(&flat, &flat.include_dirs), rel(&flat, &flat.sources), flat.flat), (vec![String::new()], vec!["Flat.cpp".into(), "deep/more.c".into()], false));
        // An Arduino library (quoted "Arduino.h") without src/: the top folder and utility/.
        let ard = lib(&root, "Ard", &[("Ard.h", "#include \"Arduino.h\"\n"), ("Ard.cpp", ""), ("utility/u.cpp", ""), ("deep/no.cpp", "")]);
        assert_eq!((rel(&ard, &ard.include_dirs), rel(&ard, &ard.sources), ard.flat), (vec!["".into(), "utility".into()], vec!["Ard.cpp".into(), "utility/u.cpp".into()], true));
        // <Arduino.h> does not make one (PlatformIO's pattern wants a quote or `<` after it).
        assert!(!lib(&root, "Angle", &[("Angle.h", "#include <Arduino.h>\n"), ("Angle.cpp", "")]).flat);
        // include/ beside src/ without a manifest: both on the path.
        let inc = lib(&root, "Inc", &[("include/Inc.h", ""), ("src/Inc.cpp", ""), ("src/test/t.cpp", "")]);
        assert_eq!((rel(&inc, &inc.include_dirs), rel(&inc, &inc.sources)), (vec!["include".into(), "src".into()], vec!["src/Inc.cpp".into()]));
        // library.properties with include/ but no src/: Arduino's builder has no include dir.
        let props = lib(&root, "Props", &[("library.properties", "name=Proper\n"), ("include/P.h", ""), ("P.h", "")]);
        assert_eq!((props.name.as_str(), rel(&props, &props.include_dirs)), ("Proper", vec![String::new()]));
        // library.json: its name, srcDir, includeDir, srcFilter and dependencies.
        let json = lib(
            &root,
            "Json",
            &[
                ("library.json", r#"{"name": "JsonLib", "dependencies": {"owner/Dep": "*"}, "build": {"srcDir": "code", "includeDir": "api", "srcFilter": ["+<*>", "-<skip/>"]}}"#),
                ("api/J.h", ""),
                ("code/J.cpp", ""),
                ("code/skip/s.cpp", ""),
            ],
        );
        assert_eq!(json.name, "JsonLib");
        assert_eq!((rel(&json, &json.include_dirs), rel(&json, &json.sources)), (vec!["api".into(), "code".into()], vec!["code/J.cpp".into()]));
        assert_eq!(json.dependencies, ["Dep"]);
    }

    #[test]
    fn modes_follow_includes_as_platformio_does() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        // A includes B under a false #if; A's other source includes C, C's other source
        // E; D only via lib_deps.
        let libs = vec![
            lib(&root, "A", &[("A.h", "#pragma once\n#if 0\n#include <B.h>\n#endif\n"), ("A.cpp", "#include \"A.h\"\n"), ("extra.cpp", "#include <C.h>\n")]),
            lib(&root, "B", &[("B.h", ""), ("B.cpp", "")]),
            lib(&root, "C", &[("C.h", ""), ("C.cpp", ""), ("more.cpp", "#include <E.h>\n")]),
            lib(&root, "D", &[("D.h", ""), ("D.cpp", "#include <B.h>\n")]),
            lib(&root, "E", &[("E.h", "")]),
        ];
        std::fs::create_dir_all(root.join("proj/src")).unwrap();
        std::fs::write(root.join("proj/src/main.cpp"), "#include <Arduino.h>\n#include <A.h>\n").unwrap();
        let project = ProjectScan {
            path: root.join("proj"),
            include_dirs: vec![root.join("proj/include"), root.join("proj/src")],
            sources: vec![root.join("proj/src/main.cpp")],
            lib_deps: vec![3],
        };
        let names = |mode| find(mode, &project, &libs).into_iter().map(|i| libs[i].name.clone()).collect::<Vec<_>>();
        assert_eq!(names(LdfMode::Off), ["D"], "off: lib_deps only");
        // chain: D (lib_deps), A from main.cpp, B from A.h's dead branch, C when all of A
        // is read; not E (C's other source, never read).
        assert_eq!(names(LdfMode::Chain), ["B", "D", "C", "A"]);
        assert_eq!(names(LdfMode::Deep), ["B", "D", "E", "C", "A"]);
        assert_eq!(LdfMode::parse("deep+"), Some(LdfMode::DeepPlus));
        assert_eq!(LdfMode::parse("1"), None);
        assert_eq!(LdfMode::parse("deeper"), None);
    }
}
