//! Differential tests: fbuild and arduino-builder build the same sketches from the
//! same sources and flags; the same ones must succeed, and every .hex, .eep and
//! .with_bootloader.hex must be byte-identical.

mod common;

use common::*;
use std::path::PathBuf;

fn compare(board: &str, fqbn: &str, sketches: &[PathBuf], expect_ok: Option<usize>) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut args: Vec<String> = vec!["compile-many".into(), "--board".into(), board.into(), "--out".into(), out.display().to_string()];
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(&tmp.path().join("cache"), tmp.path(), &argv);
    assert!(run.code == 0 || run.code == 1, "fbuild exit {}: {}", run.code, run.stderr);
    let results = read_json(&out.join("results.json"));
    let by_path = sketches_by_path(&results);
    let references = reference_builds(fqbn, sketches);
    let mut mismatches = Vec::new();
    let mut ok = 0;
    for (sketch, reference) in sketches.iter().zip(&references) {
        let r = &by_path[&sketch.display().to_string()];
        let ours_ok = r["status"] == "ok";
        if ours_ok != reference.ok {
            mismatches.push(format!(
                "{}: fbuild {} / arduino-builder {}\n  fbuild: {}\n  reference: {}",
                sketch.display(),
                r["status"],
                if reference.ok { "ok" } else { "failed" },
                r["first_error"],
                reference.log.lines().find(|l| l.contains("error")).unwrap_or("")
            ));
            continue;
        }
        if !ours_ok {
            // The failure must name the real cause: the missing header, or the
            // .ino file and line of the compile error, as the reference does.
            let first = r["first_error"].as_str().unwrap_or("");
            let name = sketch.file_name().unwrap().to_string_lossy().into_owned();
            let header_missing = reference.log.lines().find(|l| l.contains("No such file or directory"));
            match header_missing {
                Some(l) => {
                    let header = l.split(": fatal error: ").nth(1).and_then(|s| s.split(':').next()).unwrap();
                    assert!(first.contains(&format!("{header}: No such file or directory")), "{name}: {first}");
                    assert!(first.contains("no installed library provides"), "{name}: {first}");
                }
                None => assert!(first.contains(&format!("{name}.ino:")) && first.contains("error"), "{name}: {first}"),
            }
            continue;
        }
        ok += 1;
        let name = sketch.file_name().unwrap().to_string_lossy().into_owned();
        for ext in ["hex", "eep", "with_bootloader.hex"] {
            let theirs = reference.dir.join(format!("{name}.ino.{ext}"));
            if ext.starts_with("with_") && !theirs.is_file() {
                assert!(r["firmware"][ext].is_null(), "{name}: no bootloader image, no merged hex");
                continue;
            }
            let ours = std::fs::read(r["firmware"][ext].as_str().unwrap_or_else(|| panic!("{name}: no {ext}"))).unwrap();
            if ours != std::fs::read(&theirs).unwrap() {
                mismatches.push(format!("{}: .{ext} differs from arduino-builder's", sketch.display()));
            }
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
    if let Some(n) = expect_ok {
        assert_eq!(ok, n, "sketches that build on {board}");
    }
}

#[test]
fn all_81_examples_on_uno_match_arduino_builder() {
    let sketches = sketch_dirs(&corpus());
    assert_eq!(sketches.len(), 81);
    compare("uno", "arduino:avr:uno", &sketches, Some(68));
}

#[test]
fn library_examples_on_uno_match_arduino_builder() {
    let sketches = sketch_dirs(&library_examples());
    assert_eq!(sketches.len(), 19);
    compare("uno", "arduino:avr:uno", &sketches, Some(19));
}

fn handful() -> Vec<PathBuf> {
    ["01.Basics/Blink", "04.Communication/MultiSerial", "02.Digital/toneMelody", "11.ArduinoISP/ArduinoISP", "08.Strings/StringAdditionOperator", "09.USB/Keyboard/KeyboardMessage"]
        .iter()
        .map(|s| example(s))
        .collect()
}

#[test]
fn handful_on_mega_matches_arduino_builder() {
    compare("mega", "arduino:avr:mega:cpu=atmega2560", &handful(), None);
}

#[test]
fn handful_on_leonardo_matches_arduino_builder() {
    compare("leonardo", "arduino:avr:leonardo", &handful(), None);
}

#[test]
fn multi_file_sketch_matches_arduino_builder() {
    // Two .ino tabs, a .cpp and a .c beside them, a header, and src/ sources: the
    // object order on the link line must match the reference builder's.
    let t = tempfile::tempdir().unwrap();
    let sk = t.path().join("Multi");
    let w = |rel: &str, s: &str| {
        let p = sk.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    w("Multi.ino", "#include \"util.h\"\n#include <Wire.h>\nvoid setup() { Serial.begin(9600); Wire.begin(); }\nvoid loop() { Serial.println(twice(tabHelper(3)) + cfunc(2) + deep()); }\n");
    w("tab.ino", "int tabHelper(int x) { return x + 1; }\n");
    w("util.h", "#pragma once\nint twice(int);\nextern \"C\" int cfunc(int);\nint deep();\n");
    w("util.cpp", "#include \"util.h\"\nstatic int counter;\nint twice(int x) { counter++; return 2 * x + counter; }\n");
    w("cpart.c", "int cfunc(int x) { return x * 3; }\n");
    w("src/nested/deep.cpp", "int deep() { return 42; }\n");
    compare("uno", "arduino:avr:uno", &[sk], Some(1));
}
