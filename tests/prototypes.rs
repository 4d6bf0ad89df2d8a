//! Generated prototypes against arduino-builder's: sketches whose first function sits
//! inside `#if` blocks (with includes before it, in `#else` branches, nested), and
//! `inline`/`static`/template functions. The merged `sketch/NAME.ino.cpp` must equal
//! the reference's line for line (prototype position, text, `#line`s), the same
//! sketches must build, and their firmware must be byte-identical.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// The fixture sketches, tests/fixtures/prototypes/NAME/NAME.ino, sorted.
fn fixtures() -> Vec<PathBuf> {
    sketch_dirs(&repo().join("tests/fixtures/prototypes"))
}

/// The sketch's merged `.ino.cpp` in a build folder, each `#line N "PATH"` cut to
/// the file name: reference builds are shared by content between checkouts, so the
/// same file may be named from another folder.
fn merged_lines(build: &Path, name: &str) -> Vec<String> {
    let path = build.join("sketch").join(format!("{name}.ino.cpp"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| match l.strip_prefix("#line ").and_then(|r| r.split_once(' ')) {
            Some((n, file)) => format!("#line {n} {}", file.trim_matches('"').rsplit('/').next().unwrap_or("")),
            None => l.to_string(),
        })
        .collect()
}

#[test]
fn prototype_fixtures_on_uno_match_arduino_builder() {
    let sketches = fixtures();
    assert_eq!(sketches.len(), 9, "fixtures: {sketches:?}");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut args = vec!["compile-many".to_string(), "--board".into(), "uno".into(), "--out".into(), out.display().to_string()];
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(&tmp.path().join("cache"), tmp.path(), &argv);
    assert_eq!(run.code, 1, "two fixtures fail with either builder: {}", run.stderr);
    let results = read_json(&out.join("results.json"));
    let by_path = sketches_by_path(&results);
    let references = reference_builds("arduino:avr:uno", &sketches);
    let mut mismatches = Vec::new();
    let mut built = Vec::new();
    for (sketch, reference) in sketches.iter().zip(&references) {
        let name = sketch.file_name().unwrap().to_string_lossy().into_owned();
        let r = &by_path[&sketch.display().to_string()];
        let (ours, theirs) = (merged_lines(Path::new(r["output_dir"].as_str().unwrap()), &name), merged_lines(&reference.dir, &name));
        if ours != theirs {
            let at = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
            mismatches.push(format!("{name}: merged .ino.cpp line {}: fbuild {:?}, arduino-builder {:?}", at + 1, ours.get(at), theirs.get(at)));
        }
        let ok = r["status"] == "ok";
        if ok != reference.ok {
            mismatches.push(format!("{name}: fbuild {} / arduino-builder ok={}: {}", r["status"], reference.ok, r["first_error"]));
            continue;
        }
        if !ok {
            // Both fail on the sketch's own code, at a line of the sketch.
            let first = r["first_error"].as_str().unwrap_or("");
            assert!(first.contains(&format!("{name}.ino:")) && first.contains("error"), "{name}: {first}");
            continue;
        }
        built.push(name.clone());
        for ext in ["hex", "eep"] {
            let ours = std::fs::read(r["firmware"][ext].as_str().unwrap_or_else(|| panic!("{name}: no .{ext}"))).unwrap();
            if ours != std::fs::read(reference.dir.join(format!("{name}.ino.{ext}"))).unwrap() {
                mismatches.push(format!("{name}: .{ext} differs from arduino-builder's"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
    // ReturnTypeAbove and TemplateTwoLines fail with arduino-builder too (its
    // prototypes split a definition / name a template parameter out of scope).
    assert_eq!(built, ["ClosedBefore", "ElseBranch", "IfDefinedAnd", "IfdefAvr", "Modifiers", "Nested", "Quirks"]);
}
