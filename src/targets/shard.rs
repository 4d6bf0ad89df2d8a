//! CI shards: N runners split one example set (`compile-many --shard K/N`), and
//! `merge-results` joins their result maps into one (`report::join::merge`).
//!
//! Every runner computes the same split from the same sketch list, with no
//! coordination: by a stable hash of each sketch's path, or, given the seconds each
//! sketch took last time (`--shard-weights`), by greedy balancing (longest first onto
//! the lightest shard). A sketch's path counts relative to the working directory when
//! it lies below it, so runners with checkouts in different places agree.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::Result;
use crate::cache::hash::Hasher;

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

/// Seconds per sketch from an earlier results.json, by sketch identity.
pub fn read_weights(path: &Path, cwd: &Path) -> Result<HashMap<String, f64>> {
    // Loosely, path and seconds only: last run's file may be of another fbuild version.
    let v = crate::report::join::read_results_json(path, "--shard-weights")?;
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
}
