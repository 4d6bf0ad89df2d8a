//! `fbuild ci`: a drop-in for `pio ci`. The sources and libraries named on the command
//! line are laid out as a throwaway PlatformIO project (one env per `--board`, each
//! `-O "key = value"` in every env), which is then built like any project.
//!
//! Layout as `pio ci` makes it: a single source folder becomes `src/` itself, several
//! go under `src/` by name, files are copied into `src/`; a library folder goes under
//! `lib/` by name, loose library files together into one folder of `lib/`.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// What `fbuild ci` was asked to build.
pub struct CiRequest<'a> {
    pub sources: &'a [PathBuf],
    pub libs: &'a [PathBuf],
    pub boards: &'a [String],
    pub options: &'a [String],
    /// `--project-conf`: an ini whose envs are used (its `[platformio]` is dropped).
    pub project_conf: Option<&'a Path>,
}

/// Write the project into `dir` (emptied first).
pub fn stage(req: &CiRequest, dir: &Path) -> Result<()> {
    if req.sources.is_empty() {
        return Err(Error::usage("fbuild ci needs at least one source: a sketch or source file or folder"));
    }
    if req.boards.is_empty() && req.project_conf.is_none() {
        return Err(Error::usage("fbuild ci needs --board ID (or --project-conf FILE) to know what to build for"));
    }
    for p in req.sources.iter().chain(req.libs) {
        if !p.exists() {
            return Err(Error::usage(format!("{} does not exist; pass existing source and library paths", p.display())));
        }
    }
    for b in req.boards {
        super::boards::find(b)?;
    }
    let mut options = Vec::new();
    for o in req.options {
        let (k, v) = o.split_once('=').ok_or_else(|| Error::usage(format!("-O `{o}`: write it as \"key = value\"")))?;
        options.push((k.trim().to_string(), v.trim().to_string()));
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).at(dir)?;
    }
    std::fs::create_dir_all(dir).at(dir)?;

    let src = dir.join("src");
    let dirs: Vec<&PathBuf> = req.sources.iter().filter(|p| p.is_dir()).collect();
    if let [only] = dirs.as_slice() {
        copy_tree(only, &src)?;
    } else {
        for d in &dirs {
            copy_tree(d, &src.join(file_name(d)))?;
        }
    }
    std::fs::create_dir_all(&src).at(&src)?;
    for f in req.sources.iter().filter(|p| p.is_file()) {
        std::fs::copy(f, src.join(file_name(f))).at(f)?;
    }
    let lib = dir.join("lib");
    for d in req.libs.iter().filter(|p| p.is_dir()) {
        copy_tree(d, &lib.join(file_name(d)))?;
    }
    let loose: Vec<&PathBuf> = req.libs.iter().filter(|p| p.is_file()).collect();
    if !loose.is_empty() {
        let into = lib.join("ci-files");
        std::fs::create_dir_all(&into).at(&into)?;
        for f in loose {
            std::fs::copy(f, into.join(file_name(f))).at(f)?;
        }
    }

    let mut ini = String::new();
    if let Some(conf) = req.project_conf {
        let text = std::fs::read_to_string(conf).map_err(|e| Error::usage(format!("--project-conf {}: {e}", conf.display())))?;
        ini.push_str(&drop_section(&text, "platformio"));
        ini.push('\n');
    }
    for b in req.boards {
        ini.push_str(&format!("[env:{b}]\nplatform = atmelavr\nframework = arduino\nboard = {b}\n"));
        for (k, v) in &options {
            ini.push_str(&format!("{k} = {v}\n"));
        }
        ini.push('\n');
    }
    let path = dir.join(super::INI);
    std::fs::write(&path, ini).at(&path)?;
    Ok(())
}

fn file_name(p: &Path) -> std::ffi::OsString {
    std::path::absolute(p).ok().and_then(|a| a.file_name().map(|n| n.to_os_string())).unwrap_or_else(|| "src".into())
}

/// The ini without one section (its header up to the next header).
fn drop_section(text: &str, name: &str) -> String {
    let mut keep = true;
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            keep = t[1..t.len() - 1].trim() != name;
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A folder's files, `.pio` build folders left out.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    super::copy_tree(from, to, &|p: &Path| !p.components().any(|c| c.as_os_str() == ".pio"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_sources_libraries_and_one_env_per_board() {
        let d = tempfile::tempdir().unwrap();
        let sketch = d.path().join("Demo");
        std::fs::create_dir_all(&sketch).unwrap();
        std::fs::write(sketch.join("Demo.ino"), "void setup(){}\nvoid loop(){}\n").unwrap();
        let lib = d.path().join("MyLib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("MyLib.h"), "#pragma once\n").unwrap();
        let boards = ["uno".to_string(), "megaatmega2560".to_string()];
        let req = CiRequest { sources: &[sketch], libs: &[lib], boards: &boards, options: &["build_flags = -DX=1".into()], project_conf: None };
        let p = d.path().join("p");
        stage(&req, &p).unwrap();
        assert!(p.join("src/Demo.ino").is_file(), "one source folder is src/ itself");
        assert!(p.join("lib/MyLib/MyLib.h").is_file());
        let ini = std::fs::read_to_string(p.join("platformio.ini")).unwrap();
        assert!(ini.contains("[env:uno]\nplatform = atmelavr\nframework = arduino\nboard = uno\nbuild_flags = -DX=1\n"), "{ini}");
        assert!(ini.contains("[env:megaatmega2560]"));

        let bad = CiRequest { sources: &[d.path().join("nowhere")], libs: &[], boards: &boards, options: &[], project_conf: None };
        assert_eq!(stage(&bad, &p).unwrap_err().exit_code(), 2);
        let no_board = CiRequest { sources: &[d.path().join("Demo")], libs: &[], boards: &[], options: &[], project_conf: None };
        assert!(stage(&no_board, &p).unwrap_err().to_string().contains("--board"));
        let bad_board = CiRequest { sources: &[d.path().join("Demo")], libs: &[], boards: &["nosuchboard".into()], options: &[], project_conf: None };
        assert_eq!(stage(&bad_board, &p).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn project_conf_loses_its_platformio_section() {
        let t = "[platformio]\nsrc_dir = x\n[env:a]\nboard = uno\n";
        assert_eq!(drop_section(t, "platformio"), "[env:a]\nboard = uno\n");
    }
}
