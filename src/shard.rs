//! CI shards: N runners split one example set (`compile-many --shard K/N`), and
//! `merge-results` joins their result maps into one.
//!
//! Every runner computes the same split from the same sketch list, with no
//! coordination: by a stable hash of each sketch's path, or, given the seconds each
//! sketch took last time (`--shard-weights`), by greedy balancing (longest first onto
//! the lightest shard). A sketch's path counts relative to the working directory when
//! it lies below it, so runners with checkouts in different places agree.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::hash::Hasher;

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `K/N` with 1 <= K <= N.
pub fn parse(s: &str) -> std::result::Result<Shard, String> {
    let bad = || format!("expected K/N with 1 <= K <= N (e.g. 2/4), not {s:?}");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (index, count) = (k.trim().parse::<usize>().map_err(|_| bad())?, n.trim().parse::<usize>().map_err(|_| bad())?);
    if index == 0 || index > count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

/// The name a sketch is sharded and weighed by: its folder, relative to `cwd` when below it.
pub fn identity(sketch: &Path, cwd: &Path) -> String {
    let abs = std::path::absolute(sketch).unwrap_or_else(|_| sketch.to_path_buf());
    let dir = if abs.extension().is_some_and(|e| e == "ino") && abs.is_file() { abs.parent().map(Path::to_path_buf).unwrap_or(abs) } else { abs };
    dir.strip_prefix(cwd).map(Path::to_path_buf).unwrap_or(dir).to_string_lossy().into_owned()
}

/// The sketches (in their given order) that shard `shard` builds.
pub fn select(sketches: &[PathBuf], shard: Shard, weights: Option<&HashMap<String, f64>>, cwd: &Path) -> Vec<PathBuf> {
    let ids: Vec<String> = sketches.iter().map(|s| identity(s, cwd)).collect();
    let owner: Vec<usize> = match weights {
        None => ids
            .iter()
            .map(|id| {
                let h = Hasher::new(crate::cache::keys::domain::SHARD).str(id).finish();
                (u64::from_le_bytes(h[..8].try_into().unwrap()) % shard.count as u64) as usize
            })
            .collect(),
        Some(w) => balance(&ids, w, shard.count),
    };
    sketches.iter().zip(owner).filter(|(_, o)| *o == shard.index - 1).map(|(s, _)| s.clone()).collect()
}

/// Longest first onto the lightest shard; unknown sketches weigh the mean of the
/// known ones. Ties break by name and shard number, so every runner agrees.
fn balance(ids: &[String], weights: &HashMap<String, f64>, count: usize) -> Vec<usize> {
    let known: Vec<f64> = ids.iter().filter_map(|id| weights.get(id).copied()).collect();
    let mean = if known.is_empty() { 1.0 } else { known.iter().sum::<f64>() / known.len() as f64 };
    let mut order: Vec<(f64, &String, usize)> = ids.iter().enumerate().map(|(i, id)| (weights.get(id).copied().unwrap_or(mean), id, i)).collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)).then(a.2.cmp(&b.2)));
    let mut load = vec![0.0f64; count];
    let mut owner = vec![0; ids.len()];
    for (w, _, i) in order {
        let lightest = (0..count).min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b))).unwrap_or(0);
        load[lightest] += w;
        owner[i] = lightest;
    }
    owner
}

fn read_results(path: &Path, what: &str) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("{what} {}: {e}; pass a results.json written by compile-many", path.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::usage(format!("{what} {}: not JSON ({e}); pass a results.json written by compile-many", path.display())))?;
    if !v["sketches"].is_array() {
        return Err(Error::usage(format!("{what} {}: has no \"sketches\" list; pass a results.json written by compile-many", path.display())));
    }
    Ok(v)
}

/// Seconds per sketch from an earlier results.json, by sketch identity.
pub fn read_weights(path: &Path, cwd: &Path) -> Result<HashMap<String, f64>> {
    let v = read_results(path, "--shard-weights")?;
    Ok(v["sketches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((identity(Path::new(s["path"].as_str()?), cwd), s["seconds"].as_f64()?)))
        .collect())
}

/// The result map of a shard that holds no sketch (more runners than sketches).
pub fn empty_results(board: &str, shard: Shard) -> Value {
    json!({
        "board": board,
        "shard": shard.to_string(),
        "units": [],
        "sketches": [],
        "totals": {"sketches": 0, "ok": 0, "failed": 0, "seconds": 0.0, "objects_compiled": 0, "objects_cached": 0, "links_run": 0, "tool_processes": 0},
    })
}

/// Add numbers field by field (recursively), keeping `a`'s other values.
fn add_numbers(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, bv) in b {
                match a.get_mut(k) {
                    Some(av) => add_numbers(av, bv),
                    None => {
                        a.insert(k.clone(), bv.clone());
                    }
                }
            }
        }
        (a @ Value::Number(_), Value::Number(b)) => {
            *a = match (a.as_u64(), b.as_u64()) {
                (Some(x), Some(y)) => json!(x + y),
                _ => json!(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0)),
            };
        }
        _ => {}
    }
}

/// One board of a matrix, as two shards saw it: totals added, units and archives once.
fn merge_board(m: &mut Value, b: &Value) {
    add_numbers(&mut m["totals"], &b["totals"]);
    for key in ["units", "archives"] {
        let mut list = m[key].as_array().cloned().unwrap_or_default();
        for item in b[key].as_array().into_iter().flatten() {
            let same = |x: &Value| if key == "units" { x["name"] == item["name"] } else { x == item };
            if !list.iter().any(same) {
                list.push(item.clone());
            }
        }
        m[key] = Value::Array(list);
    }
    if m["stage1_key"] != b["stage1_key"] {
        m["stage1_key"] = Value::Null;
    }
}

/// Join shard result maps: every sketch once (sorted by path), units and archives
/// once each, totals and cache counts added up, `totals.seconds` the slowest shard.
pub fn merge(inputs: &[PathBuf]) -> Result<Value> {
    let mut merged: Option<Value> = None;
    // A board matrix has each sketch once per board: a sketch is its path and board.
    let mut sketches: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut boards: Vec<Value> = Vec::new();
    let mut units: Vec<Value> = Vec::new();
    let mut unit_names = HashSet::new();
    let mut archives: Vec<Value> = Vec::new();
    let mut stage1_keys = HashSet::new();
    let mut seconds = 0.0f64;
    for path in inputs {
        let v = read_results(path, "merge-results:")?;
        for s in v["sketches"].as_array().into_iter().flatten() {
            let p = s["path"].as_str().unwrap_or_default().to_string();
            let board = s["board"].as_str().unwrap_or_default().to_string();
            if sketches.insert((p.clone(), board.clone()), s.clone()).is_some() {
                let on = if board.is_empty() { String::new() } else { format!(" for {board}") };
                return Err(Error::usage(format!("merge-results: sketch {p}{on} is in more than one input (again in {}); merge the results of distinct shards", path.display())));
            }
        }
        for b in v["boards"].as_array().into_iter().flatten() {
            match boards.iter_mut().find(|m| m["board"] == b["board"]) {
                None => boards.push(b.clone()),
                Some(m) => merge_board(m, b),
            }
        }
        for u in v["units"].as_array().into_iter().flatten() {
            if unit_names.insert(u["name"].as_str().unwrap_or_default().to_string()) {
                units.push(u.clone());
            }
        }
        for a in v["archives"].as_array().into_iter().flatten() {
            if !archives.contains(a) {
                archives.push(a.clone());
            }
        }
        if !v["stage1_key"].is_null() {
            stage1_keys.insert(v["stage1_key"].to_string());
        }
        seconds = seconds.max(v["totals"]["seconds"].as_f64().unwrap_or(0.0));
        match &mut merged {
            None => merged = Some(v),
            Some(m) => {
                if m["board"] != v["board"] {
                    return Err(Error::usage(format!(
                        "merge-results: {} is for board {}, the first input for {}; merge results of one board",
                        path.display(),
                        v["board"],
                        m["board"]
                    )));
                }
                add_numbers(&mut m["totals"], &v["totals"]);
                add_numbers(&mut m["cache"], &v["cache"]);
            }
        }
    }
    let Some(mut m) = merged else {
        return Err(Error::usage("merge-results: no inputs; pass the results.json of every shard"));
    };
    m["sketches"] = Value::Array(sketches.into_values().collect());
    if !boards.is_empty() {
        m["boards"] = Value::Array(boards);
    }
    m["units"] = Value::Array(units);
    m["archives"] = Value::Array(archives);
    m["totals"]["seconds"] = json!(seconds);
    if stage1_keys.len() > 1 {
        m["stage1_key"] = Value::Null; // shards needing different libraries differ here
    }
    if let Some(o) = m.as_object_mut() {
        o.remove("shard");
        o.insert("merged_from".into(), json!(inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<PathBuf> {
        (0..n).map(|i| PathBuf::from(format!("/ex/s{i:02}"))).collect()
    }

    #[test]
    fn parse_shards() {
        assert_eq!(parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1", "a/b", "1/0", ""] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hash_shards_partition_and_are_stable() {
        let all = names(40);
        let cwd = Path::new("/");
        let mut seen = Vec::new();
        for k in 1..=3 {
            let part = select(&all, Shard { index: k, count: 3 }, None, cwd);
            assert!(!part.is_empty() && part.len() < 40, "shard {k}: {}", part.len());
            seen.extend(part);
        }
        seen.sort();
        assert_eq!(seen, all, "every sketch in exactly one shard");
        // The split depends on each path alone, not on the list around it.
        let one = select(&all[..10], Shard { index: 2, count: 3 }, None, cwd);
        let full = select(&all, Shard { index: 2, count: 3 }, None, cwd);
        assert!(one.iter().all(|p| full.contains(p)));
        // Relative to the working directory: another checkout place, the same split.
        let moved: Vec<PathBuf> = all.iter().map(|p| Path::new("/other").join(p.strip_prefix("/").unwrap())).collect();
        let a = select(&all, Shard { index: 1, count: 3 }, None, Path::new("/"));
        let b = select(&moved, Shard { index: 1, count: 3 }, None, Path::new("/other"));
        assert_eq!(a.len(), b.len());
    }

    #[test]
    fn weights_balance_the_shards() {
        let all = names(6);
        let w: HashMap<String, f64> = [("ex/s00", 10.0), ("ex/s01", 1.0), ("ex/s02", 1.0), ("ex/s03", 1.0), ("ex/s04", 1.0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let cwd = Path::new("/");
        let one = select(&all, Shard { index: 1, count: 2 }, Some(&w), cwd);
        let two = select(&all, Shard { index: 2, count: 2 }, Some(&w), cwd);
        assert_eq!(one, vec![PathBuf::from("/ex/s00")], "the heavy sketch alone");
        assert_eq!(two.len(), 5, "s05 is unknown and weighs the mean (2.8)");
    }

    #[test]
    fn merge_joins_and_rejects_overlap() {
        let t = tempfile::tempdir().unwrap();
        let write = |name: &str, v: Value| {
            let p = t.path().join(name);
            std::fs::write(&p, v.to_string()).unwrap();
            p
        };
        let a = write("a.json", json!({"board": "uno", "stage1_key": "k1", "units": [{"name": "core"}], "archives": ["/fw/core.a"],
            "sketches": [{"path": "/x/B", "status": "ok"}], "totals": {"sketches": 1, "ok": 1, "failed": 0, "seconds": 2.5}, "cache": {"hits": 3, "misses": 1}}));
        let b = write("b.json", json!({"board": "uno", "stage1_key": "k2", "units": [{"name": "core"}, {"name": "SPI"}], "archives": ["/fw/core.a"],
            "sketches": [{"path": "/x/A", "status": "failed"}], "totals": {"sketches": 1, "ok": 0, "failed": 1, "seconds": 4.0}, "cache": {"hits": 1, "misses": 2}}));
        let m = merge(&[a.clone(), b.clone()]).unwrap();
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
