//! A sketch: a folder with `<folder>.ino`, more `.ino` files, and C/C++/assembly
//! sources (in the folder and recursively under `src/`), merged the Arduino way.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const SOURCE_EXTENSIONS: &[&str] = &["cpp", "c", "S", "cc", "cxx"];
pub const HEADER_EXTENSIONS: &[&str] = &["h", "hpp", "hh", "hxx", "tpp", "ipp"];
const INO_EXTENSIONS: &[&str] = &["ino", "pde"];
/// A hidden file beside a main `.ino` that is really plain C++ (a PlatformIO project's
/// first `src/*.cpp`, staged by project/): it compiles as it is, with no merge and no
/// prototypes, so the link has no extra object PlatformIO's lacks.
pub const PLAIN_CPP_MAIN_MARKER: &str = ".fbuild-plain-cpp-main";
/// A file in a staged sketch folder naming the folder its `.ino` files were staged
/// from: the merged `.cpp`'s `#line` directives (and so `__FILE__`) name the originals,
/// as PlatformIO's converter names a project's `src/` files.
pub const ORIGIN_MARKER: &str = ".fbuild-origin";

#[derive(Debug, Clone)]
pub struct Sketch {
    /// The folder name, which is also the main file's stem.
    pub name: String,
    /// Absolute (not canonicalised, so symlinked sketches keep their own identity) folder.
    pub dir: PathBuf,
    pub main_ino: PathBuf,
    /// The other `.ino`/`.pde` files in the folder, sorted: they follow the main one.
    pub other_inos: Vec<PathBuf>,
    /// Files copied into the build folder: sources and headers, relative to `dir`.
    pub extra_files: Vec<PathBuf>,
}

pub(crate) fn ext_of(p: &Path) -> &str {
    p.extension().and_then(|e| e.to_str()).unwrap_or("")
}

pub fn is_ino(p: &Path) -> bool {
    INO_EXTENSIONS.contains(&ext_of(p))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(p, e))
}

impl Sketch {
    /// Load a sketch from its folder or from the path of its main `.ino`.
    pub fn load(path: &Path) -> Result<Sketch> {
        let meta = std::fs::metadata(path).map_err(|_| {
            Error::usage(format!("sketch {} does not exist; pass a sketch folder or its main .ino file", path.display()))
        })?;
        let path = absolute(path)?;
        let dir = if meta.is_dir() {
            path.clone()
        } else if is_ino(&path) {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            return Err(Error::usage(format!(
                "{} is not a sketch; pass a sketch folder or its main .ino file",
                path.display()
            )));
        };
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let entries = read_dir_sorted(&dir)?;
        let inos: Vec<PathBuf> = entries.iter().filter(|p| p.is_file() && is_ino(p)).cloned().collect();
        let main = inos.iter().find(|p| p.file_stem().map(|s| s.to_string_lossy() == name).unwrap_or(false)).cloned();
        let main_ino = match main {
            Some(m) => m,
            None if inos.is_empty() => {
                return Err(Error::usage(format!(
                    "{} has no .ino file; a sketch folder needs {name}/{name}.ino",
                    dir.display()
                )))
            }
            None => {
                let found: Vec<String> =
                    inos.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
                return Err(Error::usage(format!(
                    "sketch folder {} has no main file {name}.ino (found {}); rename the main .ino to match its folder",
                    dir.display(),
                    found.join(", ")
                )));
            }
        };
        if !meta.is_dir() && main_ino != path {
            return Err(Error::usage(format!(
                "{} is not the main file of its sketch; its folder needs {name}.ino, pass the folder instead",
                path.display()
            )));
        }
        let other_inos = inos.into_iter().filter(|p| p != &main_ino).collect();
        let mut extra_files = Vec::new();
        for p in &entries {
            if p.is_file() && is_source_or_header(p) {
                extra_files.push(PathBuf::from(p.file_name().unwrap_or_default()));
            }
        }
        let src = dir.join("src");
        if src.is_dir() {
            collect_recursive(&dir, &src, &mut extra_files)?;
        }
        Ok(Sketch { name, dir, main_ino, other_inos, extra_files })
    }

    /// Sources to compile besides the merged `.ino.cpp`, relative to `dir`.
    pub fn sources(&self) -> impl Iterator<Item = &PathBuf> {
        self.extra_files.iter().filter(|p| SOURCE_EXTENSIONS.contains(&ext_of(p)))
    }

    /// All `.ino` files, main first.
    pub fn inos(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.main_ino).chain(self.other_inos.iter())
    }

    /// The merged C++ of all `.ino` files with `#include <Arduino.h>`, `#line`
    /// directives and generated prototypes, as bytes (non-UTF-8 sources keep their bytes).
    pub fn merged_cpp(&self) -> Result<Vec<u8>> {
        self.merged_cpp_for(None)
    }

    /// As `merged_cpp`, for a board whose macros decide which `#if` branches are
    /// live: prototypes go where arduino-builder puts them for that board.
    pub fn merged_cpp_for(&self, macros: Option<&crate::cpp::macros::Macros>) -> Result<Vec<u8>> {
        if self.dir.join(PLAIN_CPP_MAIN_MARKER).is_file() {
            return std::fs::read(&self.main_ino).map_err(|e| Error::io(&self.main_ino, e));
        }
        let origin = std::fs::read(self.dir.join(ORIGIN_MARKER)).ok().map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned()));
        let mut parts: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        for ino in self.inos() {
            let bytes = std::fs::read(ino).map_err(|e| Error::io(ino, e))?;
            let named = match (&origin, ino.strip_prefix(&self.dir)) {
                (Some(o), Ok(rel)) => o.join(rel),
                _ => ino.clone(),
            };
            parts.push((named, bytes));
        }
        Ok(merge_inos_for(&parts, macros))
    }
}

/// Merge `.ino` contents. Prototype generation works on text; when any input is not
/// UTF-8 we run it over a Latin-1 view (one char per byte) and map back, so string
/// literals keep their exact bytes and the firmware stays identical.
///
/// The layout is arduino-builder's, byte for byte (tests/reference.rs compares the
/// two): `#include <Arduino.h>` only when the main .ino does not include it itself,
/// a `#line 1` for the main .ino, then each .ino as `#line 1 "PATH"`, its text and a
/// newline.
pub fn merge_inos(parts: &[(PathBuf, Vec<u8>)]) -> Vec<u8> {
    merge_inos_for(parts, None)
}

/// `merge_inos` for a board whose macros decide the sketch's `#if` branches.
pub fn merge_inos_for(parts: &[(PathBuf, Vec<u8>)], macros: Option<&crate::cpp::macros::Macros>) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let line_1 = |merged: &mut Vec<u8>, path: &Path| {
        merged.extend_from_slice(b"#line 1 \"");
        merged.extend_from_slice(path.as_os_str().as_bytes());
        merged.extend_from_slice(b"\"\n");
    };
    let mut merged: Vec<u8> = Vec::new();
    if let Some((main, bytes)) = parts.first() {
        if !includes_arduino_h(bytes) {
            merged.extend_from_slice(b"#include <Arduino.h>\n");
        }
        line_1(&mut merged, main);
    }
    for (path, bytes) in parts {
        line_1(&mut merged, path);
        merged.extend_from_slice(bytes);
        merged.push(b'\n');
    }
    match String::from_utf8(merged) {
        Ok(text) => crate::arduino::prototypes::add_prototypes_for(&text, macros).into_bytes(),
        Err(e) => {
            let latin1: String = e.into_bytes().iter().map(|&b| b as char).collect();
            let out = crate::arduino::prototypes::add_prototypes_for(&latin1, macros);
            out.chars().map(|c| c as u32 as u8).collect()
        }
    }
}

/// Whether a line of the text is `#include <Arduino.h>` (or `"Arduino.h"`), spaces
/// allowed around `#`. A plain line test, not a preprocessor: the reference builder
/// decides the same way, so a commented-out include counts too.
fn includes_arduino_h(text: &[u8]) -> bool {
    text.split(|&b| b == b'\n').any(|line| {
        let line = String::from_utf8_lossy(line);
        let Some(rest) = line.trim_start().strip_prefix('#') else { return false };
        let Some(rest) = rest.trim_start().strip_prefix("include") else { return false };
        let rest = rest.trim_start();
        rest.starts_with("<Arduino.h>") || rest.starts_with("\"Arduino.h\"")
    })
}

fn is_source_or_header(p: &Path) -> bool {
    let e = ext_of(p);
    SOURCE_EXTENSIONS.contains(&e) || HEADER_EXTENSIONS.contains(&e)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| !p.file_name().map(|n| n.to_string_lossy().starts_with('.')).unwrap_or(true))
        .collect();
    v.sort();
    Ok(v)
}

fn collect_recursive(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for p in read_dir_sorted(dir)? {
        if p.is_dir() {
            collect_recursive(base, &p, out)?;
        } else if is_source_or_header(&p) {
            out.push(p.strip_prefix(base).unwrap_or(&p).to_path_buf());
        }
    }
    Ok(())
}

/// Expand command-line arguments into sketches: a sketch folder or main `.ino` is
/// one sketch; any other folder stands for every sketch folder below it.
pub fn expand_arguments(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for arg in args {
        let meta = std::fs::metadata(arg).map_err(|_| {
            Error::usage(format!("sketch {} does not exist; pass a sketch folder or its main .ino file", arg.display()))
        })?;
        if !meta.is_dir() || looks_like_sketch(arg) {
            out.push(arg.clone());
            continue;
        }
        let before = out.len();
        find_sketches(arg, &mut out, 0)?;
        if out.len() == before {
            let has_ino = std::fs::read_dir(arg)
                .map(|rd| rd.filter_map(|e| e.ok()).any(|e| is_ino(&e.path())))
                .unwrap_or(false);
            if has_ino {
                // Let Sketch::load explain the misnamed main file.
                out.push(arg.clone());
            } else {
                return Err(Error::usage(format!(
                    "no sketches found in {}; pass a sketch folder (holding NAME/NAME.ino) or a folder with sketches below it",
                    arg.display()
                )));
            }
        }
    }
    // The same sketch named twice (a folder and its .ino, overlapping folders) is built once.
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| {
        let abs = absolute(p).unwrap_or_else(|_| p.clone());
        let dir = if abs.is_dir() { abs } else { abs.parent().map(Path::to_path_buf).unwrap_or(abs) };
        seen.insert(dir)
    });
    Ok(out)
}

fn looks_like_sketch(dir: &Path) -> bool {
    let Some(name) = dir.file_name() else { return false };
    let name = name.to_string_lossy();
    INO_EXTENSIONS.iter().any(|e| dir.join(format!("{name}.{e}")).is_file())
}

const MAX_SKETCH_DEPTH: usize = 32;

fn find_sketches(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    if depth > MAX_SKETCH_DEPTH {
        return Ok(());
    }
    if looks_like_sketch(dir) {
        out.push(dir.to_path_buf());
        return Ok(()); // a sketch's subfolders (src/, data/) are not sketches
    }
    for p in read_dir_sorted(dir)? {
        if p.is_dir() {
            find_sketches(&p, out, depth + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    #[test]
    fn loads_folder_and_orders_inos() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("Demo");
        write(&d.join("Demo.ino"), "void setup(){}\nvoid loop(){}\n");
        write(&d.join("b.ino"), "void b(){}\n");
        write(&d.join("a.ino"), "void a(){}\n");
        write(&d.join("util.cpp"), "");
        write(&d.join("util.h"), "");
        write(&d.join("src/x/deep.c"), "");
        let s = Sketch::load(&d).unwrap();
        assert_eq!(s.name, "Demo");
        let names: Vec<_> = s.inos().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["Demo.ino", "a.ino", "b.ino"]);
        let srcs: Vec<_> = s.sources().map(|p| p.display().to_string()).collect();
        assert_eq!(srcs, vec!["util.cpp", "src/x/deep.c"]);
        let s2 = Sketch::load(&d.join("Demo.ino")).unwrap();
        assert_eq!(s2.dir, s.dir);
    }

    #[test]
    fn misnamed_main_file_is_a_usage_error() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("Demo");
        write(&d.join("Other.ino"), "");
        let e = Sketch::load(&d).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("has no main file Demo.ino (found Other.ino)"), "{e}");
    }

    #[test]
    fn empty_folder_and_non_sketch_file() {
        let t = tempfile::tempdir().unwrap();
        let e = expand_arguments(&[t.path().to_path_buf()]).unwrap_err();
        assert!(e.to_string().starts_with("no sketches found in"), "{e}");
        let f = t.path().join("notes.txt");
        write(&f, "x");
        let e = Sketch::load(&f).unwrap_err();
        assert!(e.to_string().contains("is not a sketch"), "{e}");
    }

    #[test]
    fn folder_expands_to_sketches_below() {
        let t = tempfile::tempdir().unwrap();
        write(&t.path().join("a/One/One.ino"), "");
        write(&t.path().join("b/c/Two/Two.ino"), "");
        write(&t.path().join("b/c/Two/src/Nested/Nested.ino"), "");
        let v = expand_arguments(&[t.path().to_path_buf()]).unwrap();
        assert_eq!(v.len(), 2, "{v:?}");
    }

    #[test]
    fn the_same_sketch_twice_is_built_once() {
        let t = tempfile::tempdir().unwrap();
        write(&t.path().join("a/One/One.ino"), "");
        let one = t.path().join("a/One");
        let v = expand_arguments(&[one.clone(), one.join("One.ino"), t.path().join("a")]).unwrap();
        assert_eq!(v, vec![one]);
    }

    #[test]
    fn merge_layout_is_the_reference_builders() {
        let parts = vec![(PathBuf::from("/s/M/M.ino"), b"void setup() {}\nvoid loop() {}".to_vec()), (PathBuf::from("/s/M/b.ino"), b"int b;\n".to_vec())];
        let out = String::from_utf8(merge_inos(&parts)).unwrap();
        assert!(
            out.starts_with("#include <Arduino.h>\n#line 1 \"/s/M/M.ino\"\n#line 1 \"/s/M/M.ino\"\n"),
            "{out}"
        );
        assert!(out.ends_with("void loop() {}\n#line 1 \"/s/M/b.ino\"\nint b;\n\n"), "{out}");
        // A sketch that includes Arduino.h itself gets no second include.
        for own in ["#include <Arduino.h>", "  #  include \"Arduino.h\""] {
            let parts = vec![(PathBuf::from("/s/A/A.ino"), format!("{own}\nvoid setup() {{}}\nvoid loop() {{}}\n").into_bytes())];
            let out = String::from_utf8(merge_inos(&parts)).unwrap();
            assert!(out.starts_with("#line 1 \"/s/A/A.ino\"\n#line 1 \"/s/A/A.ino\"\n"), "{out}");
        }
        assert!(!includes_arduino_h(b"#include <Arduino.hpp>\n// include Arduino.h\n"));
    }

    #[test]
    fn non_utf8_bytes_survive_merge() {
        let parts = vec![(PathBuf::from("/s/S.ino"), b"const char *s = \"\xe9\";\nvoid setup() {}\nvoid loop() {}\n".to_vec())];
        let out = merge_inos(&parts);
        assert!(out.windows(3).any(|w| w == b"\"\xe9\""), "{}", String::from_utf8_lossy(&out));
        assert!(String::from_utf8_lossy(&out).contains("void setup();"));
    }
}
