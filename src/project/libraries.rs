//! A PlatformIO env's libraries, staged as one library folder for the pipeline.
//!
//! PlatformIO searches `lib_deps`, then `lib_dir`, then `lib_extra_dirs`, then the
//! framework's own libraries, and with `lib_archive = yes` (its default) links each
//! library through an archive, so members nothing references are dropped with their
//! constructors (the SD library's example is 32 bytes of flash and 73 of RAM smaller).
//! fbuild's pipeline archives a library when its library.properties says
//! `dot_a_linkage=true`; so each library is staged as a folder of symbolic links to its
//! files with a library.properties that says so, and the staged folder, searched before
//! every other, stands for all of PlatformIO's library storages.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use super::ldf::LibBuilder;
use crate::arduino::library::{Library, Location};

/// Stage `singles` (libraries, first wins) and the libraries inside `folders` (in order;
/// a name already staged is skipped, as PlatformIO takes the first storage that has it)
/// under `stage`, archived when `archive`, leaving out those `ignore` names (by folder or
/// library name: `lib_ignore`) and those `compat` finds incompatible. Returns each
/// staged library's folder and its staged copy, in staging order.
pub fn stage(singles: &[PathBuf], folders: &[PathBuf], archive: bool, ignore: &[String], compat: CompatMode, stage: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    // Named by its inputs (see `prepare_env`), so a folder staged once in this run is
    // the one every other env asking for it would stage.
    type Staged = Vec<(PathBuf, PathBuf)>;
    static STAGED: std::sync::Mutex<Vec<(PathBuf, String, Staged)>> = std::sync::Mutex::new(Vec::new());
    let inputs = format!("{singles:?}{folders:?}{archive}{ignore:?}{compat:?}");
    let mut staged = STAGED.lock().unwrap();
    if let Some((_, _, done)) = staged.iter().find(|(p, i, _)| p == stage && *i == inputs) {
        return Ok(done.clone());
    }
    staged.retain(|(p, _, _)| p != stage);
    let mut done = Vec::new();
    if stage.exists() {
        std::fs::remove_dir_all(stage).at(stage)?;
    }
    std::fs::create_dir_all(stage).at(stage)?;
    let mut candidates: Vec<PathBuf> = singles.to_vec();
    for folder in folders {
        let Ok(rd) = std::fs::read_dir(folder) else { continue };
        let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        candidates.extend(dirs);
    }
    for lib in candidates {
        let Some(name) = lib.file_name() else { continue };
        let dest = stage.join(name);
        if dest.exists() || name.to_string_lossy().starts_with('.') {
            continue;
        }
        // Every folder of a storage is a library to PlatformIO, whatever its layout.
        let Some(view) = LibBuilder::read(&lib) else { continue };
        if ignore.iter().any(|i| *i == view.name || *i == name.to_string_lossy()) || !compat.admits(&lib) {
            continue;
        }
        stage_one(&lib, &view, &dest, archive && !view.sources.is_empty())?;
        // A folder with no header where fbuild looks offers nothing to include.
        if Library::load(&dest, Location::Libraries)?.is_none() {
            std::fs::remove_dir_all(&dest).at(&dest)?;
            continue;
        }
        done.push((lib, dest));
    }
    staged.push((stage.to_path_buf(), inputs, done.clone()));
    Ok(done)
}

/// `lib_compat_mode`: which libraries of the storages PlatformIO considers at all, for
/// the one platform and framework fbuild builds (`atmelavr`, `arduino`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompatMode {
    /// Every library.
    Off,
    /// PlatformIO's default: not a library whose library.json names other frameworks.
    #[default]
    Soft,
    /// Also not one whose library.json `platforms`, or library.properties
    /// `architectures`, name other platforms.
    Strict,
}

const PLATFORM: &str = "atmelavr";
const FRAMEWORK: &str = "arduino";

impl CompatMode {
    /// The option's value as PlatformIO's ini accepts it: a name.
    pub fn parse(value: &str) -> Option<CompatMode> {
        match value.trim().to_ascii_lowercase().as_str() {
            "off" => Some(CompatMode::Off),
            "soft" => Some(CompatMode::Soft),
            "strict" => Some(CompatMode::Strict),
            _ => None,
        }
    }

    /// Does PlatformIO, in this mode, consider the library in `dir` at all? A library.json
    /// may set its own mode (`build.libCompatMode`); a library.properties library is
    /// always for the arduino framework, and its architectures stand for platforms
    /// (architectures PlatformIO has no platform for count as none given).
    pub fn admits(self, dir: &Path) -> bool {
        let json: Option<serde_json::Value> = std::fs::read(dir.join("library.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let (mode, platforms, frameworks) = match &json {
            Some(j) => {
                let own = j.pointer("/build/libCompatMode").and_then(|m| match m {
                    // A manifest may give the index in PlatformIO's list of choices.
                    serde_json::Value::Number(n) => [CompatMode::Off, CompatMode::Soft, CompatMode::Strict].get(n.as_u64()? as usize).copied(),
                    serde_json::Value::String(s) => CompatMode::parse(s),
                    _ => None,
                });
                (own.unwrap_or(self), words(j.get("platforms")), words(j.get("frameworks")))
            }
            None => {
                let text = std::fs::read_to_string(dir.join("library.properties")).unwrap_or_default();
                let archs = text.lines().find_map(|l| l.strip_prefix("architectures=")).unwrap_or_default();
                (self, platforms_of_architectures(archs), Vec::new())
            }
        };
        let fits = |given: &[String], ours: &str| given.is_empty() || given.iter().any(|g| g == "*" || g == ours);
        match mode {
            CompatMode::Off => true,
            CompatMode::Soft => fits(&frameworks, FRAMEWORK),
            CompatMode::Strict => fits(&frameworks, FRAMEWORK) && fits(&platforms, PLATFORM),
        }
    }
}

/// A manifest field given as a list or a comma-separated string, lowercased.
fn words(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::String(s)) => s.split(',').map(|w| w.trim().to_ascii_lowercase()).filter(|w| !w.is_empty()).collect(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|w| w.as_str()).map(|w| w.trim().to_ascii_lowercase()).collect(),
        _ => Vec::new(),
    }
}

/// PlatformIO's platforms for library.properties `architectures` (its manifest parser's table).
fn platforms_of_architectures(archs: &str) -> Vec<String> {
    let mut out = Vec::new();
    for a in archs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        if a == "*" {
            return vec!["*".to_string()];
        }
        let p = match a {
            "avr" => "atmelavr",
            "sam" | "samd" => "atmelsam",
            "esp8266" => "espressif8266",
            "esp32" => "espressif32",
            "arc32" => "intel_arc32",
            "stm32" => "ststm32",
            "nrf52" => "nordicnrf52",
            "rp2040" => "raspberrypi",
            _ => continue,
        };
        if !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    }
    out
}

/// The error for a `lib_compat_mode` value PlatformIO does not know.
pub fn bad_compat_mode(ini: &str, env: &str, value: &str) -> Error {
    Error::usage(format!("{ini}: [env:{env}] lib_compat_mode = `{value}`; use off, soft or strict"))
}

/// Stage `lib` at `dest` so that fbuild reads it as PlatformIO does (`view`): links to
/// its entries, and a library.properties (`dot_a_linkage=true` appended when archiving;
/// the manifest's name when it has none, so a `src/` folder is read as its source
/// folder). When PlatformIO's view differs from what fbuild would read there (an
/// `include/` folder, a library.json `srcDir`/`includeDir`/`srcFilter`, sources a filter
/// leaves out), `src` becomes a folder merging the include folder's headers and the
/// source folder's headers and selected sources, which is then the one folder fbuild
/// puts on the path and compiles.
fn stage_one(lib: &Path, view: &LibBuilder, dest: &Path, archive: bool) -> Result<()> {
    std::fs::create_dir_all(dest).at(dest)?;
    let lib = std::path::absolute(lib).map_err(|e| crate::error::Error::io(lib, e))?;
    for entry in std::fs::read_dir(&lib).at(&lib)?.flatten() {
        let name = entry.file_name();
        if name == "library.properties" {
            continue;
        }
        std::os::unix::fs::symlink(entry.path(), dest.join(&name)).at(&dest.join(&name))?;
    }
    let props = lib.join("library.properties");
    let mut text = if props.is_file() { std::fs::read_to_string(&props).at(&props)? } else { format!("name={}\n", view.name) };
    if archive {
        text = text.lines().filter(|l| !l.trim_start().starts_with("dot_a_linkage")).collect::<Vec<_>>().join("\n");
        text.push_str("\ndot_a_linkage=true\n");
    }
    std::fs::write(dest.join("library.properties"), text).at(dest)?;
    if !reads_as(dest, view)? {
        let src = dest.join("src");
        match std::fs::symlink_metadata(&src) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&src).at(&src)?,
            Ok(_) => std::fs::remove_file(&src).at(&src)?,
            Err(_) => {}
        }
        let keep = |file: &Path, from_src: bool| !is_source(file) || (from_src && view.sources.iter().any(|s| s == file));
        for dir in view.include_dirs.iter().filter(|d| **d != view.src_dir && !d.starts_with(&view.src_dir)) {
            merge_into(&src, dir, &|f| keep(f, false), 0)?;
        }
        merge_into(&src, &view.src_dir, &|f| keep(f, true), 0)?;
    }
    Ok(())
}

/// Does fbuild read the staged `dest` as PlatformIO reads the library: the same folder
/// on the path and the same sources?
fn reads_as(dest: &Path, view: &LibBuilder) -> Result<bool> {
    let Some(lib) = Library::load(dest, Location::Libraries)? else { return Ok(false) };
    let real = |p: &Path| p.strip_prefix(dest).map(|rel| view.path.join(rel)).unwrap_or_else(|_| p.to_path_buf());
    // A flat library's `utility/` is on its own path in fbuild too.
    let own: Vec<&PathBuf> = view.include_dirs.iter().filter(|d| !(view.flat && **d == view.path.join("utility"))).collect();
    let mut sources: Vec<PathBuf> = lib.sources().iter().map(|s| real(s)).collect();
    let mut want = view.sources.clone();
    sources.sort();
    want.sort();
    Ok(own == [&real(&lib.src_dir)] && sources == want)
}

/// Link every file under `from` that `keep` accepts into the same place under `into`
/// (real folders, created as needed; a path already there wins).
fn merge_into(into: &Path, from: &Path, keep: &dyn Fn(&Path) -> bool, depth: usize) -> Result<()> {
    std::fs::create_dir_all(into).at(into)?;
    // Folder links can loop; no library nests deeper than this.
    if depth > 32 {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(from).at(from)?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let Some(name) = p.file_name() else { continue };
        let to = into.join(name);
        if p.is_dir() {
            merge_into(&to, &p, keep, depth + 1)?;
        } else if keep(&p) && std::fs::symlink_metadata(&to).is_err() {
            std::os::unix::fs::symlink(&p, &to).at(&to)?;
        }
    }
    Ok(())
}

fn is_source(p: &Path) -> bool {
    crate::arduino::sketch::SOURCE_EXTENSIONS.contains(&crate::arduino::sketch::ext_of(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compat_modes_follow_platformio() {
        let t = tempfile::tempdir().unwrap();
        let lib = |name: &str, file: &str, text: &str| -> PathBuf {
            let d = t.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(file), text).unwrap();
            d
        };
        let esp = lib("esp", "library.json", r#"{"frameworks": "espidf, zephyr"}"#);
        let any_fw = lib("anyfw", "library.json", r#"{"frameworks": "*", "platforms": ["espressif32"]}"#);
        let own = lib("own", "library.json", r#"{"frameworks": ["espidf"], "build": {"libCompatMode": 0}}"#);
        let sam = lib("sam", "library.properties", "name=S\narchitectures=sam, samd\n");
        let both = lib("both", "library.properties", "name=B\narchitectures=sam,avr\n");
        let unknown_arch = lib("megaavr", "library.properties", "name=M\narchitectures=megaavr\n");
        let bare = lib("bare", "x.h", "");
        use CompatMode::*;
        for (dir, off, soft, strict) in [
            (&esp, true, false, false),
            (&any_fw, true, true, false),
            (&own, true, true, true),
            (&sam, true, true, false),
            (&both, true, true, true),
            (&unknown_arch, true, true, true),
            (&bare, true, true, true),
        ] {
            assert_eq!([Off.admits(dir), Soft.admits(dir), Strict.admits(dir)], [off, soft, strict], "{}", dir.display());
        }
        assert_eq!(CompatMode::parse(" Strict "), Some(Strict));
        assert_eq!(CompatMode::parse("1"), None, "the ini takes names only");
        assert_eq!(CompatMode::parse("loose"), None);
    }

    #[test]
    fn staged_folders_compile_and_include_what_platformio_does() {
        let t = tempfile::tempdir().unwrap();
        let write = |rel: &str| {
            let p = t.path().join("lib").join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        };
        // src/ without a manifest: read as its source folder.
        write("Plain/src/Plain.h");
        write("Plain/src/Plain.cpp");
        // include/ beside src/: one staged folder with both; include/'s source and
        // src/examples/ are not compiled.
        write("Split/include/Split.h");
        write("Split/include/stray.cpp");
        write("Split/src/Split.cpp");
        write("Split/src/examples/e.cpp");
        // library.json srcDir/includeDir.
        std::fs::create_dir_all(t.path().join("lib/Json")).unwrap();
        std::fs::write(t.path().join("lib/Json/library.json"), r#"{"name": "Js", "build": {"srcDir": "code", "includeDir": "api"}}"#).unwrap();
        write("Json/api/Js.h");
        write("Json/code/Js.cpp");
        let stage_dir = t.path().join("stage");
        stage(&[], &[t.path().join("lib")], true, &[], CompatMode::Soft, &stage_dir).unwrap();
        let staged = |name: &str| Library::load(&stage_dir.join(name), Location::Libraries).unwrap().unwrap();
        let names = |l: &Library, v: Vec<PathBuf>| v.iter().map(|p| p.strip_prefix(&l.src_dir).unwrap().display().to_string()).collect::<Vec<_>>();
        let plain = staged("Plain");
        assert_eq!((plain.name.as_str(), plain.headers.clone(), names(&plain, plain.sources())), ("Plain", vec!["Plain.h".to_string()], vec!["Plain.cpp".to_string()]));
        assert!(std::fs::symlink_metadata(&plain.src_dir).unwrap().is_symlink(), "a folder fbuild reads as PlatformIO does stays one link");
        let split = staged("Split");
        assert_eq!((split.headers.clone(), names(&split, split.sources())), (vec!["Split.h".to_string()], vec!["Split.cpp".to_string()]));
        let json = staged("Json");
        assert_eq!((json.name.as_str(), json.headers.clone(), names(&json, json.sources())), ("Js", vec!["Js.h".to_string()], vec!["Js.cpp".to_string()]));
        assert!(json.dot_a_linkage);
    }

    #[test]
    fn stages_first_of_each_name_archived_with_links() {
        let t = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = t.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("dep/Led/library.properties", "name=Led\ndot_a_linkage=false\n");
        write("dep/Led/src/Led.h", "");
        write("extra/Led/Led.h", "// shadowed by lib_deps\n");
        write("extra/Flat/Flat.h", "");
        write("extra/NotALib/readme.txt", "");
        write("dep/Led/src/Led.cpp", "");
        write("extra/Flat/Flat.c", "");
        write("extra/HeaderOnly/HeaderOnly.h", "");
        write("extra/PerArch/library.properties", "name=PerArch\n");
        write("extra/PerArch/src/PerArch.h", "");
        write("extra/PerArch/src/avr/PerArch.cpp", "");
        write("extra/PerArch/src/sam/PerArch.cpp", "");
        let stage_dir = t.path().join("stage");
        stage(&[t.path().join("dep/Led")], &[t.path().join("extra")], true, &["PerArch".to_string()], CompatMode::Soft, &stage_dir).unwrap();
        let props = std::fs::read_to_string(stage_dir.join("Led/library.properties")).unwrap();
        assert!(props.ends_with("dot_a_linkage=true\n") && !props.contains("=false"), "{props}");
        assert!(std::fs::read_link(stage_dir.join("Led/src")).unwrap().ends_with("dep/Led/src"));
        let lib = Library::load(&stage_dir.join("Led"), Location::Libraries).unwrap().unwrap();
        assert!(lib.dot_a_linkage);
        assert!(stage_dir.join("Flat/Flat.h").is_file());
        assert!(Library::load(&stage_dir.join("Flat"), Location::Libraries).unwrap().unwrap().dot_a_linkage);
        assert!(!stage_dir.join("NotALib").exists());
        assert!(!Library::load(&stage_dir.join("HeaderOnly"), Location::Libraries).unwrap().unwrap().dot_a_linkage);
        assert!(!stage_dir.join("PerArch").exists(), "lib_ignore");
        stage(&[], &[t.path().join("extra")], true, &[], CompatMode::Soft, &stage_dir).unwrap();
        assert!(Library::load(&stage_dir.join("PerArch"), Location::Libraries).unwrap().unwrap().dot_a_linkage);

        stage(&[t.path().join("dep/Led")], &[], false, &[], CompatMode::Soft, &stage_dir).unwrap();
        assert!(!Library::load(&stage_dir.join("Led"), Location::Libraries).unwrap().unwrap().dot_a_linkage);
        assert!(!stage_dir.join("Flat").exists(), "staging starts afresh");
    }
}
