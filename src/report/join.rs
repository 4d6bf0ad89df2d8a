//! Joining reports: a board matrix's boards into one report (`join_boards`), and
//! shards' results.json files into one (`merge`, for `merge-results`). Both add
//! totals and cache counts with the `AddAssign`s of `results.rs`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::{BoardRun, CacheSummary, Phase, Report, ResultsFile, Totals};
use crate::error::{Error, Result};

/// One report of the boards' reports (each with its output folder): sketches board by
/// board, each in argument order; totals and phases summed, the cache counts the
/// session's (its targets share one store); `seconds` is the matrix's wall time.
pub fn join_boards(reports: Vec<(PathBuf, Report)>, out: &Path, seconds: f64) -> Report {
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
        totals += &r.totals;
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

const RESULTS_FIX: &str = "pass a results.json written by compile-many";

/// A results.json as JSON, checked to hold a `sketches` list: for readers that take
/// only a few fields and so accept files of other fbuild versions (`--shard-weights`).
pub fn read_results_json(path: &Path, what: &str) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::usage(format!("{what} {}: {e}; {RESULTS_FIX}", path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::usage(format!("{what} {}: not JSON ({e}); {RESULTS_FIX}", path.display())))?;
    if !v["sketches"].is_array() {
        return Err(Error::usage(format!("{what} {}: has no \"sketches\" list; {RESULTS_FIX}", path.display())));
    }
    Ok(v)
}

/// A results.json written by compile-many, read back into the report types.
pub fn read_results(path: &Path, what: &str) -> Result<ResultsFile> {
    let v = read_results_json(path, what)?;
    serde_json::from_value(v).map_err(|e| Error::usage(format!("{what} {}: not a results.json of this fbuild ({e}); {RESULTS_FIX}", path.display())))
}

/// Units (by name) and archives of `b` that `a` does not have yet, appended.
fn add_units_and_archives(units: &mut Vec<super::UnitResult>, archives: &mut Vec<PathBuf>, b_units: Vec<super::UnitResult>, b_archives: Vec<PathBuf>) {
    for u in b_units {
        if !units.iter().any(|x| x.name == u.name) {
            units.push(u);
        }
    }
    for a in b_archives {
        if !archives.contains(&a) {
            archives.push(a);
        }
    }
}

/// One board of a matrix, as two shards saw it: totals added, units and archives once.
fn merge_board(m: &mut BoardRun, b: BoardRun) {
    m.totals += &b.totals;
    add_units_and_archives(&mut m.units, &mut m.archives, b.units, b.archives);
    if m.stage1_key != b.stage1_key {
        m.stage1_key = None;
    }
}

/// Join shard result files: every sketch once (sorted by path), units and archives
/// once each, totals and cache counts added up, `totals.seconds` the slowest shard.
/// The other fields come from the first shard that built something (an empty shard's
/// file names its board and nothing else).
pub fn merge(inputs: &[PathBuf]) -> Result<ResultsFile> {
    let mut files = Vec::new();
    for path in inputs {
        let f = read_results(path, "merge-results:")?;
        if let Some(first) = files.first().map(|f: &ResultsFile| &f.report) {
            if first.board != f.report.board {
                return Err(Error::usage(format!(
                    "merge-results: {} is for board {:?}, the first input for {:?}; merge results of one board",
                    path.display(),
                    f.report.board,
                    first.board
                )));
            }
        }
        files.push(f);
    }
    if files.is_empty() {
        return Err(Error::usage("merge-results: no inputs; pass the results.json of every shard"));
    }
    let base = files.iter().position(|f| !f.report.sketches.is_empty()).unwrap_or(0);
    // A board matrix has each sketch once per board: a sketch is its path and board.
    let mut sketches = BTreeMap::new();
    let mut boards: Vec<BoardRun> = Vec::new();
    let (mut units, mut archives) = (Vec::new(), Vec::new());
    let mut stage1_keys = HashSet::new();
    let mut seconds = 0.0f64;
    let mut totals = Totals::default();
    let mut cache = CacheSummary::default();
    let mut merged = None;
    for (i, (path, f)) in inputs.iter().zip(files).enumerate() {
        let mut r = f.report;
        for s in std::mem::take(&mut r.sketches) {
            let key = (s.path.to_string_lossy().into_owned(), s.board.clone().unwrap_or_default());
            if sketches.contains_key(&key) {
                let on = if key.1.is_empty() { String::new() } else { format!(" for {}", key.1) };
                return Err(Error::usage(format!(
                    "merge-results: sketch {}{on} is in more than one input (again in {}); merge the results of distinct shards",
                    key.0,
                    path.display()
                )));
            }
            sketches.insert(key, s);
        }
        for b in std::mem::take(&mut r.boards) {
            match boards.iter_mut().find(|m| m.board == b.board) {
                None => boards.push(b),
                Some(m) => merge_board(m, b),
            }
        }
        add_units_and_archives(&mut units, &mut archives, std::mem::take(&mut r.units), std::mem::take(&mut r.archives));
        if let Some(k) = &r.stage1_key {
            stage1_keys.insert(k.clone());
        }
        seconds = seconds.max(r.totals.seconds);
        totals += &r.totals;
        cache += std::mem::take(&mut r.cache);
        if i == base {
            merged = Some(r);
        }
    }
    let mut m = merged.unwrap_or_default();
    m.sketches = sketches.into_values().collect();
    m.boards = boards;
    m.units = units;
    m.archives = archives;
    m.totals = Totals { seconds, ..totals };
    m.cache = cache;
    if stage1_keys.len() > 1 {
        m.stage1_key = None; // shards needing different libraries differ here
    }
    Ok(ResultsFile { report: m, shard: None, merged_from: Some(inputs.iter().map(|p| p.display().to_string()).collect()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{SketchResult, Status, UnitResult};
    use serde_json::{json, Value};

    #[test]
    fn joined_report_sums_phases_and_adds_a_row_per_board() {
        let phase = |name, seconds, count| Phase { name, seconds, count };
        let mut uno = Report::planned_only("uno", "arduino:avr:uno", Path::new("/o/uno/fw"), vec![phase("stage2_sketches", 2.0, 3), phase("total", 3.0, 3)]);
        uno.totals = Totals { sketches: 3, ok: 2, failed: 1, seconds: 3.0, ..Default::default() };
        let mut mega = Report::planned_only("mega", "arduino:avr:mega", Path::new("/o/mega/fw"), vec![phase("stage2_sketches", 4.0, 3), phase("total", 5.0, 3)]);
        mega.totals = Totals { sketches: 3, ok: 3, seconds: 5.0, ..Default::default() };
        let r = join_boards(vec![("/o/uno".into(), uno), ("/o/mega".into(), mega)], Path::new("/o"), 8.5);
        assert_eq!((r.board.as_str(), r.fqbn.as_str()), ("uno,mega", "arduino:avr:uno,arduino:avr:mega"));
        assert_eq!((r.totals.sketches, r.totals.ok, r.totals.failed, r.totals.seconds), (6, 5, 1, 8.5));
        assert_eq!(
            r.phases_tsv(),
            "phase\tseconds\tcount\nstage2_sketches\t6.000\t6\ntotal\t8.500\t6\nboard:uno\t3.000\t3\nboard:mega\t5.000\t3\n"
        );
    }

    /// Real shard files (compile-many --shard K/2 of 7 sketches: built, failed and
    /// filtered out; one board and a uno+mega matrix) and the merge the untyped
    /// merge-results wrote for them: the typed merge writes the same bytes.
    #[test]
    fn typed_merge_writes_what_the_json_merge_wrote() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/merge-results");
        for set in ["uno", "matrix"] {
            // `merged_from` names the inputs as given; they were given as r1.json, r2.json.
            let inputs = [1, 2].map(|k| dir.join(format!("{set}-shard-{k}-of-2.json")));
            let expected = std::fs::read_to_string(dir.join(format!("{set}-merged.json"))).unwrap();
            let mut m = merge(&inputs).unwrap();
            assert_eq!(m.merged_from.as_ref().map(Vec::len), Some(2));
            let prefix = if set == "matrix" { "mr" } else { "r" };
            m.merged_from = Some(vec![format!("{prefix}1.json"), format!("{prefix}2.json")]);
            assert!(m.to_json() == expected, "{set}: typed merge differs from the stored merge");
        }
    }

    fn sketch(path: &str, status: Status) -> SketchResult {
        SketchResult { status, ..SketchResult::skipped("s", Path::new(path), Path::new("/o"), String::new()) }
    }

    fn unit(name: &str) -> UnitResult {
        UnitResult { name: name.into(), kind: "library".into(), status: Status::Ok, key: None, archive: None, objects: Vec::new(), log: PathBuf::new(), first_error: None, objects_compiled: 0, objects_cached: 0, up_to_date: false }
    }

    #[test]
    fn merge_joins_and_rejects_overlap() {
        let t = tempfile::tempdir().unwrap();
        let write = |name: &str, v: Value| {
            let p = t.path().join(name);
            std::fs::write(&p, v.to_string()).unwrap();
            p
        };
        let a = write("a.json", json!({"board": "uno", "stage1_key": "k1", "units": [unit("core")], "archives": ["/fw/core.a"],
            "sketches": [sketch("/x/B", Status::Ok)], "totals": {"sketches": 1, "ok": 1, "failed": 0, "seconds": 2.5}, "cache": {"hits": 3, "misses": 1}}));
        let b = write("b.json", json!({"board": "uno", "stage1_key": "k2", "units": [unit("core"), unit("SPI")], "archives": ["/fw/core.a"],
            "sketches": [sketch("/x/A", Status::Failed)], "totals": {"sketches": 1, "ok": 0, "failed": 1, "seconds": 4.0}, "cache": {"hits": 1, "misses": 2}}));
        let m = serde_json::to_value(merge(&[a.clone(), b.clone()]).unwrap()).unwrap();
        assert_eq!(m["sketches"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap()).collect::<Vec<_>>(), vec!["/x/A", "/x/B"]);
        assert_eq!(m["totals"]["sketches"], 2);
        assert_eq!(m["totals"]["failed"], 1);
        assert_eq!(m["totals"]["seconds"], 4.0);
        assert_eq!(m["cache"]["hits"], 4);
        assert_eq!(m["units"].as_array().unwrap().len(), 2);
        assert_eq!(m["archives"].as_array().unwrap().len(), 1);
        assert!(m["stage1_key"].is_null());
        let e = merge(&[a.clone(), a.clone()]).unwrap_err().to_string();
        assert!(e.contains("more than one input"), "{e}");
        let mega = write("m.json", json!({"board": "mega", "sketches": []}));
        assert!(merge(&[a, mega]).unwrap_err().to_string().contains("board"));
        let junk = write("j.json", json!({"x": 1}));
        assert!(merge(&[junk]).unwrap_err().to_string().contains("no \"sketches\""));
    }
}
