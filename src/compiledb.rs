//! `compile_commands.json` (the Clang JSON compilation database) for editors: one
//! entry per translation unit fbuild compiles or would compile — core, libraries,
//! sketches — with the exact argument list it runs, so clangd sees what avr-gcc sees.
//!
//! A sketch's `.ino` files are compiled as one merged `.cpp` in the build folder;
//! each `.ino` (and each of the sketch's own sources, compiled from a copy beside
//! the merged file) also gets an entry with that command, so opening the file the
//! user edits finds how it is built.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::CompileJob;
use crate::sketch::Sketch;

pub const FILE_NAME: &str = "compile_commands.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The working directory the command runs in (fbuild runs its tools in its own).
    pub directory: PathBuf,
    pub file: PathBuf,
    /// The command, one argument per element: no shell quoting to get wrong.
    pub arguments: Vec<String>,
    pub output: PathBuf,
}

#[derive(Debug, Default)]
pub struct CompileDb {
    directory: PathBuf,
    pub entries: Vec<Entry>,
}

impl CompileDb {
    /// A database for commands run in fbuild's working directory.
    pub fn new() -> Result<CompileDb> {
        let directory = std::env::current_dir()
            .map_err(|e| Error::Environment(format!("cannot read the working directory: {e}; run fbuild from a folder that exists")))?;
        Ok(CompileDb { directory, entries: Vec::new() })
    }

    /// The database of a whole plan: stage-1 jobs (core, libraries), then each
    /// sketch with its build folder and jobs.
    pub fn for_plan<'a>(
        stage1: impl IntoIterator<Item = &'a CompileJob>,
        sketches: impl IntoIterator<Item = (&'a Sketch, PathBuf, &'a [CompileJob])>,
    ) -> Result<CompileDb> {
        let mut db = CompileDb::new()?;
        for job in stage1 {
            db.add(job);
        }
        for (sketch, build, jobs) in sketches {
            db.add_sketch(sketch, &build, jobs);
        }
        Ok(db)
    }

    /// One translation unit, as it is compiled.
    pub fn add(&mut self, job: &CompileJob) {
        self.add_as(&job.source, job);
    }

    /// `file` is built by `job` (an `.ino` by the merged `.cpp`'s command).
    fn add_as(&mut self, file: &Path, job: &CompileJob) {
        self.entries.push(Entry {
            directory: self.directory.clone(),
            file: file.to_path_buf(),
            arguments: job.args.clone(),
            output: job.object.clone(),
        });
    }

    /// A sketch's jobs (`build` is its build folder, where the merged `.cpp` and the
    /// copies of its sources live), plus an entry for each file the user edits.
    pub fn add_sketch(&mut self, sketch: &Sketch, build: &Path, jobs: &[CompileJob]) {
        let merged = build.join(format!("{}.ino.cpp", sketch.name));
        for job in jobs {
            self.add(job);
            if job.source == merged {
                for ino in std::iter::once(&sketch.main_ino).chain(&sketch.other_inos) {
                    self.add_as(ino, job);
                }
            } else if let Ok(rel) = job.source.strip_prefix(build) {
                self.add_as(&sketch.dir.join(rel), job);
            }
        }
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.entries).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Write `dir/compile_commands.json`, leaving it untouched when nothing changed
    /// (editors watch it and re-index on every write).
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(FILE_NAME);
        let text = self.to_json();
        if std::fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
            crate::report::write_atomic(&path, text.as_bytes())?;
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(src: &str, obj: &str) -> CompileJob {
        CompileJob { source: src.into(), object: obj.into(), args: vec!["avr-g++".into(), "-c".into(), src.into(), "-o".into(), obj.into()] }
    }

    #[test]
    fn every_ino_and_own_source_points_at_the_command_that_builds_it() {
        let sketch = Sketch {
            name: "Blink".into(),
            dir: "/s/Blink".into(),
            main_ino: "/s/Blink/Blink.ino".into(),
            other_inos: vec!["/s/Blink/more.ino".into()],
            extra_files: vec!["util.cpp".into(), "util.h".into()],
        };
        let build = Path::new("/o/Blink-1/sketch");
        let merged = job("/o/Blink-1/sketch/Blink.ino.cpp", "/o/Blink-1/sketch/Blink.ino.cpp.o");
        let util = job("/o/Blink-1/sketch/util.cpp", "/o/Blink-1/sketch/util.cpp.o");
        let mut db = CompileDb { directory: "/w".into(), entries: Vec::new() };
        db.add_sketch(&sketch, build, &[merged.clone(), util.clone()]);
        let files: Vec<&str> = db.entries.iter().map(|e| e.file.to_str().unwrap()).collect();
        assert_eq!(
            files,
            ["/o/Blink-1/sketch/Blink.ino.cpp", "/s/Blink/Blink.ino", "/s/Blink/more.ino", "/o/Blink-1/sketch/util.cpp", "/s/Blink/util.cpp"]
        );
        assert_eq!(db.entries[2].arguments, merged.args);
        assert_eq!(db.entries[4].arguments, util.args);
        assert!(db.entries.iter().all(|e| e.directory == Path::new("/w")));
        let parsed: Vec<Entry> = serde_json::from_str(&db.to_json()).unwrap();
        assert_eq!(parsed, db.entries);
    }
}
