//! A board matrix: `compile-many --board uno --board mega ...` builds every sketch
//! for every board in one call.
//!
//! Each board is a full two-stage build into its own folder, `OUT/<board>/`, and
//! every board's steps go into one build graph (`pipeline::build`, targets from
//! `targets.rs`): the boards
//! share one platform load, one sketch load and `.ino` merge, the cache and the
//! scheduler's two pools, so one board's links run while another's core compiles. The reports are then joined into one: every
//! sketch result names its `board` and `fqbn`, each board's stage 1 and totals go
//! in `boards`, and OUT/compile_commands.json holds every board's commands.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::compiledb;
use crate::error::{Error, Result};
use crate::report::summary::{display_path, status_label};
use crate::report::{table, CacheSummary, Phase, Report, Status, Totals, UnitResult};

/// One board of a matrix, in results.json's `boards`.
#[derive(Debug, Clone, Serialize)]
pub struct BoardRun {
    pub board: String,
    pub fqbn: String,
    /// This board's output folder (its sketches' folders are below it).
    pub out_dir: PathBuf,
    pub stage1_key: Option<String>,
    pub framework_dir: PathBuf,
    pub archives: Vec<PathBuf>,
    pub units: Vec<UnitResult>,
    pub totals: Totals,
}

/// `OUT/<board>`: the board as given (`uno`, `arduino:avr:nano:cpu=atmega328old`),
/// made a safe folder name.
pub fn board_out_dir(out: &Path, board: &str) -> PathBuf {
    let name: String = board.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    out.join(name)
}

/// One report and one OUT/compile_commands.json of several targets' (each built in
/// its own folder): for a matrix, and for projects beside sketches (`targets.rs`).
pub(crate) fn join_all(reports: Vec<(PathBuf, Report)>, out: &Path, seconds: f64) -> Result<Report> {
    join_compiledb(out, reports.iter().map(|(dir, _)| dir.as_path()))?;
    Ok(join(reports, out, seconds))
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

/// One report of the boards' reports: sketches board by board, each in argument
/// order; totals and phases summed, the cache counts the session's; `seconds` is the
/// matrix's wall time.
fn join(reports: Vec<(PathBuf, Report)>, out: &Path, seconds: f64) -> Report {
    let mut sketches = Vec::new();
    let mut boards = Vec::new();
    let mut totals = Totals::default();
    let mut cache = CacheSummary::default();
    let mut phases: Vec<Phase> = Vec::new();
    for (out_dir, r) in reports {
        for mut s in r.sketches {
            s.board = Some(r.board.clone());
            s.fqbn = Some(r.fqbn.clone());
            sketches.push(s);
        }
        let t = &r.totals;
        totals.sketches += t.sketches;
        totals.ok += t.ok;
        totals.failed += t.failed;
        totals.skipped += t.skipped;
        totals.objects_compiled += t.objects_compiled;
        totals.objects_cached += t.objects_cached;
        totals.links_run += t.links_run;
        totals.tool_processes += t.tool_processes;
        // The targets of one session share one store: each report gives the same counts.
        if boards.is_empty() {
            cache = r.cache;
        }
        for p in r.phases {
            match phases.iter_mut().find(|q| q.name == p.name) {
                // The session's one remote tier: every report gives the same row.
                Some(_) if p.name == "remote_cache" => {}
                Some(q) => {
                    q.seconds += p.seconds;
                    q.count += p.count;
                }
                None => phases.push(p),
            }
        }
        boards.push(BoardRun {
            board: r.board,
            fqbn: r.fqbn,
            out_dir,
            stage1_key: r.stage1_key,
            framework_dir: r.framework_dir,
            archives: r.archives,
            units: r.units,
            totals: r.totals,
        });
    }
    totals.seconds = seconds;
    // The summed `total` row would count overlapping time twice: the wall time it is.
    if let Some(p) = phases.iter_mut().find(|p| p.name == "total") {
        p.seconds = seconds;
    }
    let join_names = |f: fn(&BoardRun) -> &str| boards.iter().map(f).collect::<Vec<&str>>().join(",");
    Report {
        board: join_names(|b| &b.board),
        fqbn: join_names(|b| &b.fqbn),
        stage1_key: None,
        framework_dir: out.to_path_buf(),
        archives: boards.iter().flat_map(|b| b.archives.iter().cloned()).collect(),
        units: Vec::new(),
        sketches,
        totals,
        cache,
        size_report: None,
        boards,
        phases,
    }
}

/// The summary of a matrix: one row per sketch, one column per board (`ok 3%` of
/// flash, `FAILED`, `skipped`), then each failure with its board, then totals.
pub fn summary(report: &Report, cwd: &Path) -> String {
    // Rows in the order sketches were first given; a sketch is its path.
    // One column per FQBN: project envs of a board share the sketches' column.
    let mut columns: Vec<&BoardRun> = Vec::new();
    for b in &report.boards {
        if !columns.iter().any(|c| c.fqbn == b.fqbn) {
            columns.push(b);
        }
    }
    let mut rows: BTreeMap<PathBuf, (usize, Vec<String>)> = BTreeMap::new();
    for s in &report.sketches {
        let col = columns.iter().position(|b| Some(&b.fqbn) == s.fqbn.as_ref()).unwrap_or(0);
        let next = rows.len();
        let row = rows.entry(s.path.clone()).or_insert_with(|| (next, vec!["-".to_string(); columns.len()]));
        row.1[col] = match s.status {
            Status::Ok => match (s.flash_used, s.flash_max.filter(|&m| m > 0)) {
                (Some(u), Some(m)) => format!("ok {}%", u * 100 / m),
                _ => "ok".into(),
            },
            Status::Failed => "FAILED".into(),
            Status::Skipped => status_label(Status::Skipped),
        };
    }
    let mut ordered: Vec<(usize, PathBuf, Vec<String>)> = rows.into_iter().map(|(p, (i, cells))| (i, p, cells)).collect();
    ordered.sort_by_key(|r| r.0);
    let mut header = vec!["sketch"];
    // A column is headed by the board's id, or its FQBN when two columns share an id
    // (nano with two `cpu` options).
    let shared_id = |b: &BoardRun| columns.iter().filter(|o| o.board == b.board).count() > 1;
    header.extend(columns.iter().map(|b| if shared_id(b) { b.fqbn.as_str() } else { b.board.as_str() }));
    let table_rows: Vec<Vec<String>> = ordered
        .into_iter()
        .map(|(_, p, cells)| std::iter::once(row_label(report, &p, cwd)).chain(cells).collect())
        .collect();
    let mut s = table::render(&header, &table_rows, &[]);

    let mut failures = String::new();
    for b in &columns {
        if let Some(core) = b.units.iter().find(|u| u.kind == "core" && u.status == Status::Failed) {
            failures.push_str(&format!(
                "  the core of {} (no sketch could build for it)\n    {}\n    log: {}\n",
                b.board,
                core.first_error.as_deref().unwrap_or("(no error text)"),
                display_path(&core.log, cwd)
            ));
            continue;
        }
        for r in report.sketches.iter().filter(|r| r.status == Status::Failed && r.fqbn.as_ref() == Some(&b.fqbn)) {
            failures.push_str(&format!(
                "  {} for {}\n    {}\n    log: {}\n",
                row_label(report, &r.path, cwd),
                b.board,
                r.first_error.as_deref().unwrap_or("(no error text)"),
                display_path(&r.log, cwd)
            ));
        }
    }
    if !failures.is_empty() {
        s.push_str("\nFailed:\n");
        s.push_str(&failures);
    }
    let t = &report.totals;
    let skipped = if t.skipped > 0 { format!(", {} skipped", t.skipped) } else { String::new() };
    s.push_str(&format!(
        "\n{} boards x {} sketches: {} ok, {} failed{skipped} | total {:.2}s | compiled {}, cached {}, links {}\n",
        columns.len(),
        table_rows.len(),
        t.ok,
        t.failed,
        t.seconds,
        t.objects_compiled,
        t.objects_cached,
        t.links_run
    ));
    s
}

/// A row's first cell: a project env by its `project:env` name, a sketch by its path.
fn row_label(report: &Report, path: &Path, cwd: &Path) -> String {
    match report.sketches.iter().find(|s| s.path == path && crate::project::is_env_label(&s.name)) {
        Some(s) => s.name.clone(),
        None => display_path(path, cwd),
    }
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

    #[test]
    fn joined_report_sums_phases_and_adds_a_row_per_board() {
        let phase = |name, seconds, count| Phase { name, seconds, count };
        let mut uno = Report::planned_only("uno", "arduino:avr:uno", Path::new("/o/uno/fw"), vec![phase("stage2_sketches", 2.0, 3), phase("total", 3.0, 3)]);
        uno.totals = Totals { sketches: 3, ok: 2, failed: 1, seconds: 3.0, ..Default::default() };
        let mut mega = Report::planned_only("mega", "arduino:avr:mega", Path::new("/o/mega/fw"), vec![phase("stage2_sketches", 4.0, 3), phase("total", 5.0, 3)]);
        mega.totals = Totals { sketches: 3, ok: 3, seconds: 5.0, ..Default::default() };
        let r = join(vec![("/o/uno".into(), uno), ("/o/mega".into(), mega)], Path::new("/o"), 8.5);
        assert_eq!((r.board.as_str(), r.fqbn.as_str()), ("uno,mega", "arduino:avr:uno,arduino:avr:mega"));
        assert_eq!((r.totals.sketches, r.totals.ok, r.totals.failed, r.totals.seconds), (6, 5, 1, 8.5));
        assert_eq!(
            r.phases_tsv(),
            "phase\tseconds\tcount\nstage2_sketches\t6.000\t6\ntotal\t8.500\t6\nboard:uno\t3.000\t3\nboard:mega\t5.000\t3\n"
        );
    }
}
