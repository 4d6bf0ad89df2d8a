//! A board matrix: `compile-many --board uno --board mega ...` builds every sketch
//! for every board in one call.
//!
//! Each board is a full two-stage build into its own folder, `OUT/<board>/`, and
//! every board's steps go into one build graph (`pipeline::build`, targets from
//! `targets/`): the boards
//! share one platform load, one sketch load and `.ino` merge, the cache and the
//! scheduler's two pools, so one board's links run while another's core compiles. The reports are then joined into one: every
//! sketch result names its `board` and `fqbn`, each board's stage 1 and totals go
//! in `boards`, and OUT/compile_commands.json holds every board's commands.

use std::path::{Path, PathBuf};

use crate::plan::compiledb;
use crate::error::{Error, Result};
use crate::report::Report;

/// `OUT/<board>`: the board as given (`uno`, `arduino:avr:nano:cpu=atmega328old`),
/// made a safe folder name.
pub fn board_out_dir(out: &Path, board: &str) -> PathBuf {
    let name: String = board.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    out.join(name)
}

/// One report and one OUT/compile_commands.json of several targets' (each built in
/// its own folder): for a matrix, and for projects beside sketches (`targets/`).
pub(crate) fn join_all(reports: Vec<(PathBuf, Report)>, out: &Path, seconds: f64) -> Result<Report> {
    join_compiledb(out, reports.iter().map(|(dir, _)| dir.as_path()))?;
    Ok(crate::report::join::join_boards(reports, out, seconds))
}

/// OUT/compile_commands.json: every board's database, one after the other. Written
/// once for the whole matrix (each board's own stays in its folder). Streamed: one
/// board's entries in memory at a time, so the matrix costs no more than one board.
fn join_compiledb<'a>(out: &Path, board_dirs: impl Iterator<Item = &'a Path>) -> Result<()> {
    use std::io::Write;
    let path = out.join(compiledb::FILE_NAME);
    let unwritable = |e: std::io::Error| Error::Environment(format!("cannot write {}: {e}; choose a writable --out", path.display()));
    let tmp = crate::report::output_tempfile(out).map_err(unwritable)?;
    let mut w = std::io::BufWriter::new(tmp);
    let mut written = 0usize;
    for dir in board_dirs {
        let own = dir.join(compiledb::FILE_NAME);
        let file = std::fs::File::open(&own).map_err(|e| Error::io(&own, e))?;
        let entries: Vec<compiledb::Entry> = serde_json::from_reader(std::io::BufReader::new(file))
            .map_err(|e| Error::Environment(format!("{} is not a compilation database ({e}); delete it and build again", own.display())))?;
        for e in &entries {
            w.write_all(if written == 0 { b"[\n" } else { b",\n" }).map_err(unwritable)?;
            serde_json::to_writer_pretty(&mut w, e).map_err(|e| unwritable(std::io::Error::other(e)))?;
            written += 1;
        }
    }
    w.write_all(if written == 0 { b"[]\n" } else { b"\n]\n" }).map_err(unwritable)?;
    let tmp = w.into_inner().map_err(|e| unwritable(e.into_error()))?;
    // Editors re-index on every write: leave an unchanged database alone.
    let hash = |p: &Path| std::fs::File::open(p).ok().and_then(|f| blake3::Hasher::new().update_reader(f).ok().map(|h| h.finalize()));
    if hash(&path).is_none() || hash(&path) != hash(tmp.path()) {
        tmp.persist(&path).map_err(|e| unwritable(e.error))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_folders_are_safe_names() {
        let out = Path::new("/o");
        assert_eq!(board_out_dir(out, "uno"), Path::new("/o/uno"));
        assert_eq!(board_out_dir(out, "arduino:avr:nano:cpu=atmega328old"), Path::new("/o/arduino_avr_nano_cpu_atmega328old"));
    }
}
