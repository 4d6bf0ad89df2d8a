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

use crate::error::{IoContext, Result};
use crate::library::{Library, Location};

/// Stage `singles` (libraries, first wins) and the libraries inside `folders` (in order;
/// a name already staged is skipped, as PlatformIO takes the first storage that has it)
/// under `stage`, archived when `archive`, leaving out those `ignore` names (by folder or
/// library name: `lib_ignore`). Returns `stage`.
pub fn stage(singles: &[PathBuf], folders: &[PathBuf], archive: bool, ignore: &[String], stage: &Path) -> Result<PathBuf> {
    // Named by its inputs (see `prepare_env`), so a folder staged once in this run is
    // the one every other env asking for it would stage.
    static STAGED: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    let inputs = format!("{singles:?}{folders:?}{archive}{ignore:?}");
    let mut staged = STAGED.lock().unwrap();
    match staged.iter_mut().find(|(p, _)| p == stage) {
        Some((_, i)) if *i == inputs => return Ok(stage.to_path_buf()),
        Some((_, i)) => *i = inputs,
        None => staged.push((stage.to_path_buf(), inputs)),
    }
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
        let Some(loaded) = Library::load(&lib, Location::Libraries)? else { continue };
        if ignore.iter().any(|i| *i == loaded.name || *i == loaded.dir_name) {
            continue;
        }
        stage_one(&lib, &dest, archive && archivable(&loaded))?;
    }
    Ok(stage.to_path_buf())
}

/// PlatformIO archives only a library with sources: a header-only one has nothing to link.
fn archivable(lib: &Library) -> bool {
    !lib.sources().is_empty()
}

/// Links to every entry of `lib` but its library.properties, which is copied with
/// `dot_a_linkage=true` appended when archiving. A library without one gets one: its
/// sources are then read from `src/` when it has that folder, as PlatformIO reads them.
fn stage_one(lib: &Path, dest: &Path, archive: bool) -> Result<()> {
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
    let mut text = if props.is_file() { std::fs::read_to_string(&props).at(&props)? } else { String::new() };
    if archive {
        text = text.lines().filter(|l| !l.trim_start().starts_with("dot_a_linkage")).collect::<Vec<_>>().join("\n");
        text.push_str("\ndot_a_linkage=true\n");
    }
    std::fs::write(dest.join("library.properties"), text).at(dest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        stage(&[t.path().join("dep/Led")], &[t.path().join("extra")], true, &["PerArch".to_string()], &stage_dir).unwrap();
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
        stage(&[], &[t.path().join("extra")], true, &[], &stage_dir).unwrap();
        assert!(Library::load(&stage_dir.join("PerArch"), Location::Libraries).unwrap().unwrap().dot_a_linkage);

        stage(&[t.path().join("dep/Led")], &[], false, &[], &stage_dir).unwrap();
        assert!(!Library::load(&stage_dir.join("Led"), Location::Libraries).unwrap().unwrap().dot_a_linkage);
        assert!(!stage_dir.join("Flat").exists(), "staging starts afresh");
    }
}
