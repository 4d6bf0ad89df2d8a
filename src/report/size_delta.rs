//! Size changes against an earlier results.json (`--compare-to`): each sketch gains
//! its flash and RAM deltas against the same sketch and board in the old file;
//! sketches only in the new run are `new`, those only in the old one `vanished`.
//!
//! A sketch matches on board (FQBN) and path; when its path is not in the old file
//! (a CI run in another checkout), on board and name, if that name is unique on
//! both sides. The percentage is of the board's maximum, as arduino/compile-sketches
//! reports it, so a change reads the same on every sketch of a board.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

use super::{Report, Status};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SizeChange {
    /// Built in both runs: `flash` and `ram` hold the deltas.
    Compared,
    /// Not in the old file.
    New,
    /// In the old file, but one of the two runs has no size for it (failed, skipped).
    NoSize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct MemoryDelta {
    pub old: u64,
    pub new: u64,
    /// `new - old`.
    pub bytes: i64,
    /// `bytes` as a percentage of the board's maximum (of `old` when the board has none).
    pub percent: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SizeDelta {
    pub change: SizeChange,
    pub flash: Option<MemoryDelta>,
    pub ram: Option<MemoryDelta>,
}

/// A sketch of the old file that this run did not build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VanishedSketch {
    pub name: String,
    pub path: PathBuf,
    pub fqbn: String,
    pub flash_used: Option<u64>,
    pub ram_used: Option<u64>,
}

/// The run-level side of a comparison, in results.json as `size_report`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SizeReport {
    pub compared_to: PathBuf,
    pub vanished: Vec<VanishedSketch>,
}

#[derive(Debug, Clone)]
struct OldSketch {
    name: String,
    path: PathBuf,
    fqbn: String,
    built: bool,
    flash_used: Option<u64>,
    ram_used: Option<u64>,
}

/// The sketches of an earlier results.json.
#[derive(Debug, Clone)]
pub struct OldResults {
    path: PathBuf,
    sketches: Vec<OldSketch>,
}

impl OldResults {
    /// Read and check the file up front, so a bad `--compare-to` fails before building.
    pub fn load(path: &Path) -> Result<OldResults> {
        let bad = |why: String| Error::usage(format!("--compare-to {}: {why}; pass a results.json written by fbuild compile-many", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON ({e})")))?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        OldResults::from_json(&path, &json).map_err(bad)
    }

    fn from_json(path: &Path, json: &Value) -> std::result::Result<OldResults, String> {
        let list = json.get("sketches").and_then(Value::as_array).ok_or("it has no \"sketches\" list")?;
        // A sketch names its board itself, or the file has one board for all.
        let file_fqbn = json.get("fqbn").and_then(Value::as_str);
        let mut sketches = Vec::new();
        for s in list {
            let text = |k: &str| s.get(k).and_then(Value::as_str);
            let (Some(name), Some(path)) = (text("name"), text("path")) else {
                return Err("a sketch lacks its \"name\" or \"path\"".into());
            };
            let fqbn = text("fqbn").or(file_fqbn).ok_or_else(|| format!("sketch {name} has no \"fqbn\""))?;
            sketches.push(OldSketch {
                name: name.to_string(),
                path: PathBuf::from(path),
                fqbn: fqbn.to_string(),
                built: text("status") == Some("ok"),
                flash_used: s.get("flash_used").and_then(Value::as_u64),
                ram_used: s.get("ram_used").and_then(Value::as_u64),
            });
        }
        Ok(OldResults { path: path.to_path_buf(), sketches })
    }
}

fn delta(old: Option<u64>, new: Option<u64>, max: Option<u64>) -> Option<MemoryDelta> {
    let (old, new) = (old?, new?);
    let bytes = new as i64 - old as i64;
    let base = max.filter(|&m| m > 0).unwrap_or(old.max(1));
    let percent = (bytes as f64 * 100.0 / base as f64 * 100.0).round() / 100.0;
    Some(MemoryDelta { old, new, bytes, percent })
}

/// Give every sketch of `report` its `size_delta`, and the report its `size_report`.
pub fn compare(report: &mut Report, old: &OldResults) {
    // A matrix names each sketch's board; one board names it once for the run.
    let run_fqbn = report.fqbn.clone();
    let board_of = |s: &super::SketchResult| s.fqbn.clone().unwrap_or_else(|| run_fqbn.clone());
    let fqbns: BTreeSet<String> = match report.boards.is_empty() {
        true => BTreeSet::from([run_fqbn.clone()]),
        false => report.boards.iter().map(|b| b.fqbn.clone()).collect(),
    };
    let unique = |names: Vec<&str>, name: &str| names.iter().filter(|n| **n == name).count() == 1;
    let new_names: Vec<(String, String)> = report.sketches.iter().map(|s| (board_of(s), s.name.clone())).collect();
    let mut used: BTreeSet<usize> = BTreeSet::new();
    for s in &mut report.sketches {
        let fqbn = board_of(s);
        let new_names: Vec<&str> = new_names.iter().filter(|(f, _)| *f == fqbn).map(|(_, n)| n.as_str()).collect();
        let same_board = |o: &&OldSketch| o.fqbn == fqbn;
        let by_path = old.sketches.iter().enumerate().find(|(_, o)| same_board(o) && o.path == s.path);
        let by_name = || {
            let old_names: Vec<&str> = old.sketches.iter().filter(same_board).map(|o| o.name.as_str()).collect();
            (unique(old_names, &s.name) && unique(new_names.clone(), &s.name))
                .then(|| old.sketches.iter().enumerate().find(|(_, o)| same_board(o) && o.name == s.name))
                .flatten()
        };
        let Some((i, o)) = by_path.or_else(by_name) else {
            s.size_delta = Some(SizeDelta { change: SizeChange::New, flash: None, ram: None });
            continue;
        };
        used.insert(i);
        s.size_delta = Some(if o.built && s.status == Status::Ok {
            SizeDelta {
                change: SizeChange::Compared,
                flash: delta(o.flash_used, s.flash_used, s.flash_max),
                ram: delta(o.ram_used, s.ram_used, s.ram_max),
            }
        } else {
            SizeDelta { change: SizeChange::NoSize, flash: None, ram: None }
        });
    }
    let vanished = old
        .sketches
        .iter()
        .enumerate()
        .filter(|(i, o)| !used.contains(i) && fqbns.contains(&o.fqbn))
        .map(|(_, o)| VanishedSketch { name: o.name.clone(), path: o.path.clone(), fqbn: o.fqbn.clone(), flash_used: o.flash_used, ram_used: o.ram_used })
        .collect();
    report.size_report = Some(SizeReport { compared_to: old.path.clone(), vanished });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deltas_are_bytes_and_percent_of_the_maximum() {
        let d = delta(Some(1000), Some(1322), Some(32256)).unwrap();
        assert_eq!((d.old, d.new, d.bytes), (1000, 1322, 322));
        assert_eq!(d.percent, 1.0);
        let d = delta(Some(200), Some(100), None).unwrap();
        assert_eq!((d.bytes, d.percent), (-100, -50.0));
        assert!(delta(None, Some(1), None).is_none());
    }

    #[test]
    fn old_file_needs_sketches_with_a_board() {
        let p = Path::new("old.json");
        assert!(OldResults::from_json(p, &json!({"fqbn": "a:b:c"})).unwrap_err().contains("sketches"));
        let no_board = json!({"sketches": [{"name": "A", "path": "/A", "status": "ok"}]});
        assert!(OldResults::from_json(p, &no_board).unwrap_err().contains("fqbn"));
        let per_sketch = json!({"sketches": [{"name": "A", "path": "/A", "fqbn": "x:y:z", "status": "ok", "flash_used": 5}]});
        let old = OldResults::from_json(p, &per_sketch).unwrap();
        assert_eq!(old.sketches[0].fqbn, "x:y:z");
        assert_eq!(old.sketches[0].flash_used, Some(5));
    }
}
