//! Differential tests: fbuild and arduino-builder build the same sketches from the
//! same sources and flags; the same ones must succeed, every .hex, .eep and
//! .with_bootloader.hex must be byte-identical, and so must the merged sketch
//! (`sketch/NAME.ino.cpp`: prototypes and `#line`s) up to the differences
//! `merged_cpp_difference` names.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// The `#line N "PATH"` directives with PATH cut to its file name. Each builder
/// names the .ino by the path it was given, and reference builds are shared by
/// content between checkouts (tests/common), so the same file may be spelled from
/// another folder. The path reaches only debug information in the .elf, never the
/// .hex or .eep.
fn without_line_paths(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| match l.strip_prefix("#line ").and_then(|r| r.split_once(' ')) {
            Some((n, path)) => {
                let name = path.trim_matches('"').rsplit('/').next().unwrap_or("");
                format!("#line {n} \"{name}\"")
            }
            None => l.to_string(),
        })
        .collect()
}

/// How fbuild's merged sketch differs from arduino-builder's, beyond `#line` paths;
/// None when they agree. When the reference failed before generating prototypes
/// (a library it could not find), its file has none: then ours must equal it once
/// our one block of prototypes (`#line` and declaration lines) is taken out. That
/// sketch has no firmware on either side.
fn merged_cpp_difference(ours: &str, theirs: &str, reference_ok: bool) -> Option<String> {
    let (a, b) = (without_line_paths(ours), without_line_paths(theirs));
    if a == b {
        return None;
    }
    let first = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let shown = format!("first difference at line {}: fbuild {:?}, arduino-builder {:?}", first + 1, a.get(first), b.get(first));
    if reference_ok || a.len() <= b.len() {
        return Some(shown);
    }
    let block = &a[first..first + a.len() - b.len()];
    let is_prototype = |l: &String| l.starts_with("#line ") || l.trim_end().ends_with(");");
    if a[first + block.len()..] == b[first..] && block.iter().all(is_prototype) {
        None
    } else {
        Some(shown)
    }
}

/// Build `sketches` with both builders; returns how many firmware files were compared.
fn compare(board: &str, fqbn: &str, sketches: &[PathBuf], expect_ok: usize) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut args: Vec<String> = vec!["compile-many".into(), "--board".into(), board.into(), "--out".into(), out.display().to_string()];
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(&tmp.path().join("cache"), tmp.path(), &argv);
    let results = read_json(&out.join("results.json"));
    let failed = results["totals"]["failed"].as_u64().unwrap();
    assert_eq!(run.code, if failed > 0 { 1 } else { 0 }, "fbuild exit {} with {failed} failed: {}", run.code, run.stderr);
    let by_path = sketches_by_path(&results);
    let references = reference_builds(fqbn, sketches);
    let mut mismatches = Vec::new();
    let mut merged_compared = 0;
    let mut ok = 0;
    let mut compared = 0;
    let mut bootloader_images = 0;
    for (sketch, reference) in sketches.iter().zip(&references) {
        let r = &by_path[&sketch.display().to_string()];
        let name = sketch.file_name().unwrap().to_string_lossy().into_owned();
        let merged = |dir: &Path| std::fs::read(dir.join("sketch").join(format!("{name}.ino.cpp"))).map(|b| String::from_utf8_lossy(&b).into_owned());
        let ours_merged = merged(Path::new(r["output_dir"].as_str().unwrap())).unwrap_or_else(|e| panic!("{name}: fbuild's merged sketch: {e}"));
        let theirs_merged = merged(&reference.dir).unwrap_or_else(|e| panic!("{name}: arduino-builder's merged sketch: {e}"));
        if let Some(d) = merged_cpp_difference(&ours_merged, &theirs_merged, reference.ok) {
            mismatches.push(format!("{}: merged .ino.cpp differs from arduino-builder's: {d}", sketch.display()));
        }
        merged_compared += 1;
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
        for ext in ["hex", "eep", "with_bootloader.hex"] {
            let theirs = reference.dir.join(format!("{name}.ino.{ext}"));
            if ext.starts_with("with_") && !theirs.is_file() {
                assert!(r["firmware"][ext].is_null(), "{name}: no bootloader image, no merged hex");
                continue;
            }
            bootloader_images += usize::from(ext.starts_with("with_"));
            compared += 1;
            let ours = std::fs::read(r["firmware"][ext].as_str().unwrap_or_else(|| panic!("{name}: no {ext}"))).unwrap();
            if ours != std::fs::read(&theirs).unwrap() {
                mismatches.push(format!("{}: .{ext} differs from arduino-builder's", sketch.display()));
            }
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
    assert_eq!(ok, expect_ok, "sketches that build on {board}");
    assert_eq!(results["totals"]["ok"].as_u64(), Some(expect_ok as u64));
    // A .hex and an .eep per built sketch, plus the merged image where there is a bootloader.
    assert_eq!(compared, 2 * ok + bootloader_images, "firmware files compared on {board}");
    assert_eq!(merged_compared, sketches.len(), "merged sketches compared on {board}");
    eprintln!("{board}: {ok} sketches built, {compared} firmware files and {merged_compared} merged sketches identical to arduino-builder's");
    compared
}

#[test]
fn all_81_examples_on_uno_match_arduino_builder() {
    let sketches = sketch_dirs(&corpus());
    assert_eq!(sketches.len(), 81);
    assert!(compare("uno", "arduino:avr:uno", &sketches, 68) >= 2 * 68);
}

#[test]
fn library_examples_on_uno_match_arduino_builder() {
    let sketches = sketch_dirs(&library_examples());
    assert_eq!(sketches.len(), 19);
    assert!(compare("uno", "arduino:avr:uno", &sketches, 19) >= 2 * 19);
}

fn handful() -> Vec<PathBuf> {
    ["01.Basics/Blink", "04.Communication/MultiSerial", "02.Digital/toneMelody", "11.ArduinoISP/ArduinoISP", "08.Strings/StringAdditionOperator", "09.USB/Keyboard/KeyboardMessage"]
        .iter()
        .map(|s| example(s))
        .collect()
}

#[test]
fn handful_on_mega_matches_arduino_builder() {
    // KeyboardMessage needs the Keyboard library, which Debian's core does not ship.
    assert!(compare("mega", "arduino:avr:mega:cpu=atmega2560", &handful(), 5) >= 10);
}

#[test]
fn handful_on_leonardo_matches_arduino_builder() {
    assert!(compare("leonardo", "arduino:avr:leonardo", &handful(), 5) >= 10);
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
    // No newline at the end: the merged sketch must still match the reference.
    w("tab.ino", "int tabHelper(int x) { return x + 1; }");
    w("util.h", "#pragma once\nint twice(int);\nextern \"C\" int cfunc(int);\nint deep();\n");
    w("util.cpp", "#include \"util.h\"\nstatic int counter;\nint twice(int x) { counter++; return 2 * x + counter; }\n");
    w("cpart.c", "int cfunc(int x) { return x * 3; }\n");
    w("src/nested/deep.cpp", "int deep() { return 42; }\n");
    assert!(compare("uno", "arduino:avr:uno", &[sk], 1) >= 2);
}

/// The reference cache is keyed by everything that shapes arduino-builder's output:
/// editing any file of a sketch (not only its main .ino) makes a new reference, and
/// so do other `-prefs`, `-libraries` (and their content) and compilers.
#[test]
fn reference_cache_follows_what_shapes_the_reference() {
    let t = tempfile::tempdir().unwrap();
    let sk = t.path().join("KeyProbe");
    std::fs::create_dir_all(&sk).unwrap();
    std::fs::write(sk.join("KeyProbe.ino"), "#include \"wait.h\"\nvoid setup() { pinMode(13, OUTPUT); }\nvoid loop() { digitalWrite(13, !digitalRead(13)); delay(WAIT_MS); }\n").unwrap();
    std::fs::write(sk.join("wait.h"), "#define WAIT_MS 1000\n").unwrap();
    let first = reference_builds("arduino:avr:uno", &[sk.clone()]).remove(0);
    assert!(first.ok, "{}", first.log);
    // Same path, one header edited: a new entry holding a new build, not the old one.
    std::fs::write(sk.join("wait.h"), "#define WAIT_MS 250\n").unwrap();
    let second = reference_builds("arduino:avr:uno", &[sk.clone()]).remove(0);
    assert!(second.ok, "{}", second.log);
    assert_ne!(first.dir, second.dir, "an edited header must not reuse the cached reference");
    let hex = |r: &Reference| std::fs::read(r.dir.join("KeyProbe.ino.hex")).unwrap();
    assert_ne!(hex(&first), hex(&second), "the new reference was really built from the edited sketch");

    let base = ReferenceSpec::avr("arduino:avr:uno").key();
    assert_eq!(base, ReferenceSpec::avr("arduino:avr:uno").key(), "stable");
    assert_ne!(base, ReferenceSpec::avr("arduino:avr:leonardo").key(), "board");
    let mut prefs = ReferenceSpec::avr("arduino:avr:uno");
    prefs.prefs.push("build.extra_flags=-DX".into());
    assert_ne!(base, prefs.key(), "-prefs");
    let mut compilers = ReferenceSpec::avr("arduino:avr:uno");
    compilers.compilers.push("/usr/bin/avr-gcc-ar".into());
    assert_ne!(base, compilers.key(), "compilers");
    let libs = t.path().join("libs");
    std::fs::create_dir_all(libs.join("Lib/src")).unwrap();
    std::fs::write(libs.join("Lib/src/Lib.h"), "int lib();\n").unwrap();
    let with_libs = ReferenceSpec::avr("arduino:avr:uno").with_libraries(&libs).key();
    assert_ne!(base, with_libs, "-libraries");
    std::fs::write(libs.join("Lib/src/Lib.h"), "int lib(int);\n").unwrap();
    assert_ne!(with_libs, ReferenceSpec::avr("arduino:avr:uno").with_libraries(&libs).key(), "a library's content");
}
