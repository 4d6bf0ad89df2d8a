//! A relocatable cache: the same tree built at another path (moved, copied, with the
//! cache restored from a tarball, or shared through Redis by two local caches at two
//! paths) starts no compiler and no linker, and its firmware equals the first build's.
//! A sketch whose firmware holds its own path (`__FILE__`) compiles again and equals a
//! fresh build at the new path.

mod common;
mod servers;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// toneMelody has a header of its own (pitches.h), copied into its output folder.
const EXAMPLES: [&str; 6] = ["01.Basics/Blink", "01.Basics/Fade", "02.Digital/Button", "02.Digital/toneMelody", "03.Analog/AnalogInput", "04.Communication/ASCIITable"];

/// A project tree: five built-in examples, and a sketch using a library of the tree
/// (`libs/Here`), so sketch, library and generated-source paths all lie under it.
fn make_tree(root: &Path) {
    for e in EXAMPLES {
        copy_dir(&example(e), &root.join(e));
    }
    write(&root.join("Plain/Plain.ino"), "#include <Here.h>\nvoid setup() { Serial.begin(9600); Serial.println(here()); }\nvoid loop() {}\n");
    write(&root.join("libs/Here/library.properties"), "name=Here\nversion=1.0\n");
    write(&root.join("libs/Here/src/Here.h"), "int here();\n");
    write(&root.join("libs/Here/src/Here.cpp"), "#include \"Here.h\"\nint here() { return 42; }\n");
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn sketch_names() -> Vec<String> {
    EXAMPLES.iter().map(|s| s.to_string()).chain(["Plain".to_string()]).collect()
}

/// compile-many run from `root` with paths relative to it, as a CI job runs it.
fn build(root: &Path, cache: &Path, extra: &[&str], sketches: &[String]) -> Value {
    let mut args: Vec<&str> = vec!["compile-many", "--out", "out", "--libraries", "libs"];
    args.extend_from_slice(extra);
    args.extend(sketches.iter().map(String::as_str));
    let run = fbuild(cache, root, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    read_json(&root.join("out/results.json"))
}

fn total(r: &Value, field: &str) -> u64 {
    r["totals"][field].as_u64().unwrap()
}

/// Firmware by sketch name (.hex and .eep), every sketch built.
fn firmware(r: &Value) -> std::collections::BTreeMap<String, (Vec<u8>, Vec<u8>)> {
    let all = r["sketches"].as_array().unwrap();
    assert!(all.iter().all(|s| s["status"] == "ok"), "{r}");
    all.iter()
        .map(|s| {
            let hex = PathBuf::from(s["firmware"]["hex"].as_str().unwrap());
            let eep = hex.with_extension("eep");
            let name = Path::new(s["path"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
            (name, (std::fs::read(&hex).unwrap(), std::fs::read(&eep).unwrap()))
        })
        .collect()
}

/// Nothing compiled, linked or discovered: the relocated run was served by the cache.
fn served_by_cache(r: &Value, root: &Path) {
    assert_eq!(total(r, "objects_compiled"), 0, "no compiler: {}", r["totals"]);
    assert_eq!(total(r, "links_run"), 0, "no linker: {}", r["totals"]);
    for s in r["sketches"].as_array().unwrap() {
        assert_eq!(s["discover_runs"], 0, "discovery from the cache: {s}");
        // results.json names where the tree is now, not where it was built.
        let p = s["path"].as_str().unwrap();
        assert!(p.starts_with(&root.display().to_string()), "{p} is not under {}", root.display());
        assert!(s["firmware"]["hex"].as_str().unwrap().starts_with(&root.display().to_string()));
    }
}

#[test]
fn copied_and_moved_trees_start_no_compiler_or_linker() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let a = t.path().join("a");
    make_tree(&a);
    let names = sketch_names();
    let first = build(&a, &cache, &[], &names);
    assert!(total(&first, "objects_compiled") > 20 && total(&first, "links_run") == 7);
    let want = firmware(&first);

    let b = t.path().join("copy/b");
    make_tree(&b);
    let copied = build(&b, &cache, &[], &names);
    served_by_cache(&copied, &b);
    assert_eq!(total(&copied, "tool_processes"), 0, "no process at all: {}", copied["totals"]);
    assert_eq!(firmware(&copied), want);

    std::fs::remove_dir_all(b.join("out")).unwrap();
    let moved = t.path().join("elsewhere/moved");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&b, &moved).unwrap();
    let after_move = build(&moved, &cache, &[], &names);
    served_by_cache(&after_move, &moved);
    assert_eq!(firmware(&after_move), want);

    // `--base-dir /` keys absolute paths again: the copy compiles (the test can fail).
    std::fs::remove_dir_all(moved.join("out")).unwrap();
    let absolute = build(&moved, &cache, &["--base-dir", "/"], &names);
    assert!(total(&absolute, "objects_compiled") >= 7, "{}", absolute["totals"]);
}

#[test]
fn a_cache_restored_from_a_tarball_serves_a_tree_at_another_path() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("runner1/work");
    make_tree(&a);
    let names = sketch_names();
    let first = build(&a, &t.path().join("cache"), &[], &names);
    let tar = t.path().join("cache.tar");
    let ok = Command::new("tar").arg("-C").arg(t.path()).arg("-cf").arg(&tar).arg("cache").status().unwrap();
    assert!(ok.success());
    // Another runner: a fresh folder, new inodes, and (-m) every mtime set to now.
    let restored = t.path().join("runner2/cache-root");
    std::fs::create_dir_all(&restored).unwrap();
    let ok = Command::new("tar").arg("-C").arg(&restored).arg("-m").arg("-xf").arg(&tar).status().unwrap();
    assert!(ok.success());
    let b = t.path().join("runner2/checkout/work");
    make_tree(&b);
    let second = build(&b, &restored.join("cache"), &[], &names);
    served_by_cache(&second, &b);
    assert_eq!(total(&second, "tool_processes"), 0, "{}", second["totals"]);
    assert_eq!(firmware(&second), firmware(&first));
}

#[test]
fn two_local_caches_at_two_paths_share_through_redis() {
    let t = tempfile::tempdir().unwrap();
    let redis = servers::redis(&t.path().join("redis"), &[]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let names = sketch_names();
    let a = t.path().join("one/src");
    make_tree(&a);
    let first = build(&a, &t.path().join("one/cache"), &["--remote-cache", &url], &names);
    let b = t.path().join("two/elsewhere/src");
    make_tree(&b);
    let second = build(&b, &t.path().join("two/cache"), &["--remote-cache", &url], &names);
    served_by_cache(&second, &b);
    assert!(second["cache"]["remote"]["hits"].as_u64().unwrap() > 20, "{}", second["cache"]);
    assert_eq!(firmware(&second), firmware(&first));
}

#[test]
fn a_sketch_printing_its_own_path_compiles_again_and_equals_a_fresh_build() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let sketch = "#include <Here.h>\nvoid setup() { Serial.begin(9600); Serial.println(__FILE__); Serial.println(here()); }\nvoid loop() {}\n";
    let names = vec!["Where".to_string(), "Plain".to_string()];
    let a = t.path().join("a");
    make_tree(&a);
    write(&a.join("Where/Where.ino"), sketch);
    let first = build(&a, &cache, &[], &names);
    let b = t.path().join("bb");
    make_tree(&b);
    write(&b.join("Where/Where.ino"), sketch);
    let second = build(&b, &cache, &[], &names);
    // Only Where's own translation unit and its link run again.
    assert_eq!(total(&second, "objects_compiled"), 1, "{}", second["totals"]);
    assert_eq!(total(&second, "links_run"), 1, "{}", second["totals"]);
    let got = firmware(&second);
    std::fs::remove_dir_all(b.join("out")).unwrap();
    let fresh_fw = firmware(&build(&b, &t.path().join("fresh-cache"), &[], &names));
    let old = firmware(&first);
    assert_eq!(got, fresh_fw, "equal to a fresh build at the new path");
    assert_ne!(got["Where"], old["Where"], "the firmware holds the path: the old object would have been wrong");
    assert_eq!(got["Plain"], old["Plain"]);
}
