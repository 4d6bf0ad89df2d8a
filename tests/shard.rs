//! CI shards: `compile-many --shard K/N` splits one example set across runners, each
//! shard builds stage 1 only for its own sketches, and `merge-results` joins them.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn shard_run(t: &Path, k: usize, n: usize, extra: &[&str]) -> (Run, Value) {
    let out = t.join(format!("out-{k}-of-{n}"));
    let results = t.join(format!("results-{k}-of-{n}.json"));
    let spec = format!("{k}/{n}");
    let mut args = vec!["compile-many", "--shard", &spec, "--out"];
    let out_s = out.display().to_string();
    let results_s = results.display().to_string();
    args.extend([out_s.as_str(), "--results", results_s.as_str()]);
    args.extend(extra);
    let lib = library_examples().display().to_string();
    args.push(&lib);
    // One cache for every shard keeps this test quick; CI runners would each have their own.
    let run = fbuild(&t.join("cache"), t, &args);
    assert!(run.code <= 1, "shard {spec}: exit {}: {}", run.code, run.stderr);
    (run, read_json(&results))
}

fn paths(r: &Value) -> BTreeSet<String> {
    r["sketches"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap().to_string()).collect()
}

#[test]
fn shards_split_the_set_build_only_their_libraries_and_merge_back() {
    let t = tempfile::tempdir().unwrap();
    let all: BTreeSet<String> = sketch_dirs(&library_examples()).iter().map(|p| p.display().to_string()).collect();
    assert_eq!(all.len(), 19);
    let mut seen = BTreeSet::new();
    let mut files = Vec::new();
    for k in 1..=3 {
        let (_, r) = shard_run(t.path(), k, 3, &[]);
        assert_eq!(r["shard"], format!("{k}/3"));
        let mine = paths(&r);
        assert!(!mine.is_empty() && mine.len() < 19, "shard {k}: {mine:?}");
        assert!(seen.is_disjoint(&mine), "shard {k} overlaps another");
        seen.extend(mine);
        // Stage 1 holds exactly the libraries this shard's sketches use.
        let used: BTreeSet<String> = r["sketches"].as_array().unwrap().iter().flat_map(|s| s["libraries"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap().to_string())).collect();
        let units: BTreeSet<String> = r["units"].as_array().unwrap().iter().filter(|u| u["kind"] == "library").map(|u| u["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(units, used, "shard {k}");
        files.push(t.path().join(format!("results-{k}-of-3.json")));
    }
    assert_eq!(seen, all, "the shards cover every sketch exactly once");
    // The same split on a second run: a runner can be retried.
    let (_, again) = shard_run(t.path(), 2, 3, &[]);
    assert_eq!(paths(&again), paths(&read_json(&files[1])));

    let merged = t.path().join("all.json");
    let mut args: Vec<String> = vec!["merge-results".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.extend(["-o".into(), merged.display().to_string()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(&t.path().join("cache"), t.path(), &argv);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let m = read_json(&merged);
    assert_eq!(paths(&m), all);
    assert_eq!(m["totals"]["sketches"], 19);
    assert_eq!(m["totals"]["ok"], 19);
    assert!(m.get("shard").is_none());

    // Balanced by last time's seconds: still a partition, and each side non-empty.
    let mut weighted = BTreeSet::new();
    for k in 1..=2 {
        let (_, r) = shard_run(t.path(), k, 2, &["--shard-weights", merged.to_str().unwrap()]);
        let mine = paths(&r);
        assert!(!mine.is_empty());
        assert!(weighted.is_disjoint(&mine));
        weighted.extend(mine);
    }
    assert_eq!(weighted, all);

    // Merging a shard twice is refused.
    let dup = fbuild(&t.path().join("cache"), t.path(), &["merge-results", files[0].to_str().unwrap(), files[0].to_str().unwrap(), "-o", merged.to_str().unwrap()]);
    assert_eq!(dup.code, 2);
    assert!(dup.stderr.contains("more than one input"), "{}", dup.stderr);
}

#[test]
fn more_shards_than_sketches_leaves_empty_shards_that_succeed() {
    let t = tempfile::tempdir().unwrap();
    let blink = example("01.Basics/Blink").display().to_string();
    let mut empty = 0;
    for k in 1..=4 {
        let results = t.path().join(format!("r{k}.json"));
        let r = fbuild(&t.path().join("cache"), t.path(), &["compile-many", "--shard", &format!("{k}/4"), "--out", t.path().join("out").to_str().unwrap(), "--results", results.to_str().unwrap(), &blink]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        if read_json(&results)["totals"]["sketches"] == 0 {
            empty += 1;
            assert!(r.stdout.contains(&format!("shard {k}/4 holds no sketch")), "{}", r.stdout);
        }
    }
    assert_eq!(empty, 3, "one shard builds Blink, three have nothing");
}

#[test]
fn bad_shard_flags_are_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    let blink = example("01.Basics/Blink").display().to_string();
    for args in [vec!["compile-many", "--shard", "0/3", &blink], vec!["compile-many", "--shard", "4/3", &blink], vec!["compile-many", "--shard-weights", "x.json", &blink]] {
        let r = fbuild(&t.path().join("c"), t.path(), &args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    }
    let r = fbuild(&t.path().join("c"), t.path(), &["compile-many", "--shard", "1/2", "--shard-weights", "/nonexistent/old.json", &blink]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--shard-weights /nonexistent/old.json"), "{}", r.stderr);
}

/// Shards of a board matrix merge back: each sketch once per board, each board's
/// totals the sum of its shards', the same outcomes and sizes as the unsharded matrix.
#[test]
fn matrix_shards_merge_per_sketch_and_board() {
    let t = tempfile::tempdir().unwrap();
    let boards = ["--board", "uno", "--board", "mega"];
    let (_, a) = shard_run(t.path(), 1, 2, &boards);
    let (_, b) = shard_run(t.path(), 2, 2, &boards);
    let merged = t.path().join("merged.json");
    let run = fbuild(&t.path().join("cache"), t.path(), &["merge-results", "-o", merged.to_str().unwrap(), t.path().join("results-1-of-2.json").to_str().unwrap(), t.path().join("results-2-of-2.json").to_str().unwrap()]);
    assert!(run.code <= 1, "{}", run.stderr);
    let m = read_json(&merged);
    let whole = t.path().join("whole");
    let w = fbuild(&t.path().join("cache"), t.path(), &["compile-many", "--board", "uno", "--board", "mega", "--out", whole.to_str().unwrap(), library_examples().to_str().unwrap()]);
    assert!(w.code <= 1, "{}", w.stderr);
    let w = read_json(&whole.join("results.json"));
    let outcome = |r: &Value| -> BTreeSet<(String, String, String, u64)> {
        r["sketches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["path"].as_str().unwrap().to_string(), s["board"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string(), s["flash_used"].as_u64().unwrap_or(0)))
            .collect()
    };
    assert_eq!(m["sketches"].as_array().unwrap().len(), 2 * 19);
    assert_eq!(outcome(&m), outcome(&w));
    for board in ["uno", "mega"] {
        let of = |r: &Value| r["boards"].as_array().unwrap().iter().find(|b| b["board"] == board).unwrap()["totals"]["sketches"].as_u64().unwrap();
        assert_eq!(of(&m), of(&a) + of(&b), "{board}");
        assert_eq!(of(&m), 19, "{board}");
    }
}
