//! Warm runs over a heavy-header library (bench/heavy_corpus.py: an umbrella header
//! reaching hundreds of headers): a warm run starts no process and reports every
//! sketch as the cold one did; a header touched without a change costs no
//! rediscovery (one hash: src/objcache.rs's tests count the reads); a header
//! changed in content reruns discovery only for the sources that read it; a
//! damaged table of kept hashes changes nothing but the time. The corpus is small
//! here (500 headers, 8 examples) to keep the test short; the bench
//! (`bench/bench.sh --heavy`) runs the 2,000+ header one.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Generate the heavy library under `root/libs`; returns its example sketch folders.
fn generate(root: &Path, headers: usize, examples: usize) -> Vec<PathBuf> {
    let libs = root.join("libs");
    let st = Command::new("python3")
        .arg(repo().join("bench/heavy_corpus.py"))
        .arg(&libs)
        .args(["--headers", &headers.to_string(), "--examples", &examples.to_string(), "--seed", "1"])
        .status()
        .expect("python3 runs");
    assert!(st.success(), "the generator failed");
    sketch_dirs(&libs.join("HeavyLED/examples"))
}

fn many(root: &Path, sketches: &[PathBuf]) -> (Run, Value) {
    let out = root.join("out");
    let libs = root.join("libs");
    let shared = shared_libraries();
    let mut args = vec!["compile-many", "-v", "--framework-jobs", "1", "--sketch-jobs", "2", "--libraries", libs.to_str().unwrap(), "--libraries", shared.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(sketches.iter().map(|s| s.to_str().unwrap()));
    let run = fbuild(&root.join("cache"), root, &args);
    assert!(run.code == 0, "exit {}\n{}", run.code, run.stderr);
    (run, read_json(&out.join("results.json")))
}

/// Per sketch: status, flash, ram and libraries, as a report states them.
fn outcomes(r: &Value) -> BTreeMap<String, (String, Value, Value, Value)> {
    sketches_by_path(r)
        .into_iter()
        .map(|(p, s)| (p, (s["status"].as_str().unwrap().to_string(), s["flash"].clone(), s["ram"].clone(), s["libraries"].clone())))
        .collect()
}

fn runs_of(r: &Value) -> BTreeMap<String, u64> {
    sketches_by_path(r).into_iter().map(|(p, s)| (p, s["discover_runs"].as_u64().unwrap_or(0))).collect()
}

/// Sources the verbose log shows preprocessed for discovery (`-E ... -H`).
fn preprocessed(log: &str) -> Vec<PathBuf> {
    log.lines()
        .filter(|l| l.contains(" -E ") && l.contains(" -H "))
        .filter_map(|l| l.split_whitespace().map(|w| w.trim_matches('"')).find(|w| [".cpp", ".c", ".ino.cpp"].iter().any(|e| w.ends_with(e)) && w.starts_with('/')))
        .map(PathBuf::from)
        .collect()
}

/// Files of the generated library that include `header` (by its path under src/),
/// directly or through other headers: every `#include "..."` counted, live or not
/// (a superset of what the preprocessor reads).
fn readers(src: &Path, header: &str) -> BTreeSet<PathBuf> {
    let mut includes: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let names = text.lines().filter_map(|l| l.strip_prefix("#include \"")).map(|n| src.join(n.trim_end_matches('"')));
            includes.insert(p, names.collect());
        }
    }
    let mut found: BTreeSet<PathBuf> = BTreeSet::from([src.join(header)]);
    loop {
        let more: Vec<PathBuf> = includes.iter().filter(|(f, inc)| !found.contains(*f) && inc.iter().any(|i| found.contains(i))).map(|(f, _)| f.clone()).collect();
        if more.is_empty() {
            return found;
        }
        found.extend(more);
    }
}

#[test]
fn warm_runs_over_a_heavy_library_start_nothing_and_rediscover_only_what_a_change_reaches() {
    let t = tempfile::tempdir().unwrap();
    let mut sketches = generate(t.path(), 500, 8);
    // A sketch that reads none of the heavy library's headers.
    let sweep = shared_libraries().join("Servo/examples/Sweep");
    sketches.push(sweep.clone());

    let (_, cold) = many(t.path(), &sketches);
    let want = outcomes(&cold);
    let built = want.values().filter(|o| o.0 == "ok").count();
    assert!(built >= 4, "the generated examples must build on uno: {want:?}");
    assert!(want.values().any(|o| o.0 == "skipped"), "an @filter example is skipped: {want:?}");

    // Warm, nothing changed: no process, every sketch as before.
    let (_, warm) = many(t.path(), &sketches);
    assert_eq!(warm["totals"]["tool_processes"], 0, "a warm run starts no process");
    assert_eq!(outcomes(&warm), want);

    // The hashes kept between runs (trusted by stat) are a cache of the file system:
    // a damaged table costs hashing again, not a failure or another answer.
    let kept = t.path().join("cache/file-hashes-v1");
    assert!(kept.is_file(), "a run keeps its file hashes for the next");
    std::fs::write(&kept, b"fbuild-file-hashes-v1\ncut short").unwrap();
    let (_, damaged) = many(t.path(), &sketches);
    assert_eq!(damaged["totals"]["tool_processes"], 0, "a damaged hash table starts no process");
    assert_eq!(outcomes(&damaged), want);

    // Touched, same bytes, new mtime: hashed again, found unchanged, nothing rerun.
    let src = t.path().join("libs/HeavyLED/src");
    let touched = src.join("hl/core/core_0000.h");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options().write(true).open(&touched).unwrap().set_modified(later).unwrap();
    let (_, after_touch) = many(t.path(), &sketches);
    assert_eq!(after_touch["totals"]["tool_processes"], 0, "a touched header costs a hash, not a rediscovery or a compile");
    assert!(runs_of(&after_touch).values().all(|&n| n == 0), "{:?}", runs_of(&after_touch));
    assert_eq!(outcomes(&after_touch), want);

    // Changed in content: discovery reruns for the sources that read it, only.
    let header = "hl/math/math_0000.h";
    let path = src.join(header);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("namespace hl {", "// edited\nnamespace hl {", 1)).unwrap();
    let (run, changed) = many(t.path(), &sketches);
    let runs = runs_of(&changed);
    assert_eq!(runs[sweep.to_str().unwrap()], 0, "Sweep reads no HeavyLED header: {runs:?}");
    let again = preprocessed(&run.stderr);
    assert!(!again.is_empty(), "a changed header must be preprocessed again:\n{}", run.stderr);
    let reading = readers(&src, header);
    for p in &again {
        // The sketches' own units (merged sketch or its stand-in in the build folder)
        // all reach the umbrella header; a library source must read the header.
        let library_source = p.starts_with(&src);
        assert!(!library_source || reading.contains(p), "{} does not read {header} and was preprocessed again", p.display());
    }
    // Distinct sources: after an edit a source may run twice (its guessed wide path,
    // then its own), which is a cost, not a wrong answer.
    let library_reruns = again.iter().filter(|p| p.starts_with(&src)).collect::<std::collections::BTreeSet<_>>().len();
    let library_sources = std::fs::read_dir(&src).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "cpp")).count();
    assert!(library_reruns < library_sources, "not every library source reruns: {library_reruns} of {library_sources}");
    assert_eq!(outcomes(&changed), want, "a comment changes no outcome");
}
