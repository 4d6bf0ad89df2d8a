//! `compile_commands.json` (the Clang JSON compilation database) for editors: one
//! entry per translation unit fbuild compiles or would compile — core, libraries,
//! sketches — with the exact argument list it runs, so clangd sees what avr-gcc sees.
//!
//! A sketch's `.ino` files are compiled as one merged `.cpp` in the build folder;
//! each `.ino` (and each of the sketch's own sources, compiled from a copy beside
//! the merged file) also gets an entry with that command, so opening the file the
//! user edits finds how it is built.
//!
//! Entries are streamed to a temporary file as they are made, never held together
//! in memory, so a run of a thousand sketches costs no more memory than one.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::CompileJob;
use crate::arduino::sketch::Sketch;

pub const FILE_NAME: &str = "compile_commands.json";

/// One entry, as written (borrowed from the plan) and as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<P = PathBuf, A = Vec<String>> {
    /// The working directory the command runs in (fbuild runs its tools in its own).
    pub directory: P,
    pub file: P,
    /// The command, one argument per element: no shell quoting to get wrong.
    pub arguments: A,
    pub output: P,
}

/// Bytes go to the file and into a hash, so an unchanged database is not replaced.
struct HashingWriter<W: Write> {
    inner: W,
    hash: blake3::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A database being written to `dir/compile_commands.json`.
pub struct CompileDb {
    directory: PathBuf,
    path: PathBuf,
    out: HashingWriter<BufWriter<tempfile::NamedTempFile>>,
    entries: usize,
}

impl CompileDb {
    /// Start the database of `dir`, for commands run in fbuild's working directory.
    pub fn create(dir: &Path) -> Result<CompileDb> {
        let directory = std::env::current_dir()
            .map_err(|e| Error::Environment(format!("cannot read the working directory: {e}; run fbuild from a folder that exists")))?;
        let path = dir.join(FILE_NAME);
        let tmp = crate::report::output_tempfile(dir).map_err(|e| unwritable(&path, e))?;
        Ok(CompileDb { directory, path, out: HashingWriter { inner: BufWriter::new(tmp), hash: blake3::Hasher::new() }, entries: 0 })
    }

    /// The database of a whole plan: stage-1 jobs (core, libraries), then each
    /// sketch with its build folder and jobs. Returns the file's path.
    pub fn write_plan<'a>(
        dir: &Path,
        stage1: impl IntoIterator<Item = &'a CompileJob>,
        sketches: impl IntoIterator<Item = (&'a Sketch, PathBuf, &'a [CompileJob])>,
    ) -> Result<PathBuf> {
        let mut db = CompileDb::create(dir)?;
        for job in stage1 {
            db.add(job)?;
        }
        for (sketch, build, jobs) in sketches {
            db.add_sketch(sketch, &build, jobs)?;
        }
        db.finish()
    }

    /// One translation unit, as it is compiled.
    pub fn add(&mut self, job: &CompileJob) -> Result<()> {
        self.add_as(&job.source, job)
    }

    /// `file` is built by `job` (an `.ino` by the merged `.cpp`'s command).
    fn add_as(&mut self, file: &Path, job: &CompileJob) -> Result<()> {
        let entry = Entry { directory: self.directory.as_path(), file, arguments: &job.args[..], output: job.object.as_path() };
        let sep: &[u8] = if self.entries == 0 { b"[\n" } else { b",\n" };
        self.entries += 1;
        self.out
            .write_all(sep)
            .map_err(serde_json::Error::io)
            .and_then(|_| serde_json::to_writer_pretty(&mut self.out, &entry))
            .map_err(|e| unwritable(&self.path, std::io::Error::other(e)))
    }

    /// A sketch's jobs (`build` is its build folder, where the merged `.cpp` and the
    /// copies of its sources live), plus an entry for each file the user edits.
    pub fn add_sketch(&mut self, sketch: &Sketch, build: &Path, jobs: &[CompileJob]) -> Result<()> {
        let merged = build.join(format!("{}.ino.cpp", sketch.name));
        for job in jobs {
            self.add(job)?;
            if job.source == merged {
                for ino in std::iter::once(&sketch.main_ino).chain(&sketch.other_inos) {
                    self.add_as(ino, job)?;
                }
            } else if let Ok(rel) = job.source.strip_prefix(build) {
                self.add_as(&sketch.dir.join(rel), job)?;
            }
        }
        Ok(())
    }

    /// Close the array and put the file in place, unless the one there is the same
    /// (editors watch it and re-index on every write).
    pub fn finish(mut self) -> Result<PathBuf> {
        let end: &[u8] = if self.entries == 0 { b"[]\n" } else { b"\n]\n" };
        let path = self.path.clone();
        self.out.write_all(end).and_then(|_| self.out.flush()).map_err(|e| unwritable(&path, e))?;
        let new_hash = self.out.hash.finalize();
        let same = std::fs::File::open(&path).ok().and_then(|f| blake3::Hasher::new().update_reader(f).ok().map(|h| h.finalize())) == Some(new_hash);
        if !same {
            let tmp = self.out.inner.into_inner().map_err(|e| unwritable(&path, e.into_error()))?;
            tmp.persist(&path).map_err(|e| unwritable(&path, e.error))?;
        }
        Ok(path)
    }
}

fn unwritable(path: &Path, e: std::io::Error) -> Error {
    Error::Environment(format!("cannot write {}: {e}; choose a writable --out", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(src: &str, obj: &str) -> CompileJob {
        CompileJob { source: src.into(), object: obj.into(), args: vec!["avr-g++".into(), "-c".into(), src.into(), "-o".into(), obj.into()] }
    }

    fn read(path: &Path) -> Vec<Entry> {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn every_ino_and_own_source_points_at_the_command_that_builds_it() {
        let t = tempfile::tempdir().unwrap();
        let sketch = Sketch {
            name: "Blink".into(),
            dir: "/s/Blink".into(),
            main_ino: "/s/Blink/Blink.ino".into(),
            other_inos: vec!["/s/Blink/more.ino".into()],
            extra_files: vec!["util.cpp".into(), "util.h".into()],
        };
        let build = PathBuf::from("/o/Blink-1/sketch");
        let core = job("/core/wiring.c", "/o/fw/core/wiring.c.o");
        let merged = job("/o/Blink-1/sketch/Blink.ino.cpp", "/o/Blink-1/sketch/Blink.ino.cpp.o");
        let util = job("/o/Blink-1/sketch/util.cpp", "/o/Blink-1/sketch/util.cpp.o");
        let jobs = [merged.clone(), util.clone()];
        let path = CompileDb::write_plan(t.path(), [&core], [(&sketch, build, &jobs[..])]).unwrap();
        let entries = read(&path);
        let files: Vec<&str> = entries.iter().map(|e| e.file.to_str().unwrap()).collect();
        assert_eq!(
            files,
            ["/core/wiring.c", "/o/Blink-1/sketch/Blink.ino.cpp", "/s/Blink/Blink.ino", "/s/Blink/more.ino", "/o/Blink-1/sketch/util.cpp", "/s/Blink/util.cpp"]
        );
        assert_eq!(entries[3].arguments, merged.args);
        assert_eq!(entries[3].output, merged.object);
        assert_eq!(entries[5].arguments, util.args);
        let cwd = std::env::current_dir().unwrap();
        assert!(entries.iter().all(|e| e.directory == cwd));
    }

    #[test]
    fn an_unchanged_database_is_left_alone_and_an_empty_one_is_valid() {
        let t = tempfile::tempdir().unwrap();
        let core = job("/core/wiring.c", "/o/wiring.c.o");
        let path = CompileDb::write_plan(t.path(), [&core], []).unwrap();
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let before = inode(&path);
        CompileDb::write_plan(t.path(), [&core], []).unwrap();
        assert_eq!(inode(&path), before, "same content: not replaced");
        CompileDb::write_plan(t.path(), [], []).unwrap();
        assert!(read(&path).is_empty());
        assert_ne!(inode(&path), before);
        // No temporary file is left behind either way.
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
