//! A second architecture: Arduino's SAMD core (the shared kit) with Debian's
//! arm-none-eabi toolchain. Differential tests against arduino-builder on two boards,
//! and tools found the way arduino-cli finds them under ~/.arduino15.

mod common;

use common::*;
use std::path::{Path, PathBuf};

const ZERO: &str = "arduino:samd:arduino_zero_native";
const MKRZERO: &str = "arduino:samd:mkrzero";

struct Outcome {
    built: usize,
    failed: usize,
}

/// Build `sketches` with fbuild and with arduino-builder; the same ones must build, the
/// same ones fail with the same first error, and every .bin, .hex and
/// .with_bootloader.hex must be byte-identical, with the same flash and RAM use.
fn compare(fqbn: &str, sketches: &[PathBuf], libraries: Option<&Path>) -> Outcome {
    let tmp = tempfile::tempdir().unwrap();
    let mut extra = samd_kit_args();
    let mut spec = ReferenceSpec::samd(fqbn);
    if let Some(l) = libraries {
        extra.push("--libraries".into());
        extra.push(l.display().to_string());
        spec = spec.with_libraries(l);
    }
    let (_, results) = compile_many(tmp.path(), fqbn, &extra, sketches);
    let by_path = sketches_by_path(&results);
    let references = reference_builds_with(&spec, sketches);
    let mut mismatches = Vec::new();
    let (mut built, mut failed) = (0, 0);
    for (sketch, reference) in sketches.iter().zip(&references) {
        let name = sketch.file_name().unwrap().to_string_lossy().into_owned();
        let r = &by_path[&sketch.display().to_string()];
        let problems = sketch_problems(&name, r, reference);
        match r["status"].as_str() {
            Some("ok") => built += 1,
            _ => failed += 1,
        }
        if reference.ok {
            // The same libraries in the same order (the reference names folders).
            let ours: Vec<PathBuf> = r["libraries"].as_array().unwrap().iter().map(|l| PathBuf::from(l["folder"].as_str().unwrap())).collect();
            let theirs: Vec<PathBuf> = reference.libraries().into_iter().map(|(_, dir)| dir).collect();
            if ours != theirs {
                mismatches.push(format!("{name}: libraries {ours:?}, arduino-builder used {theirs:?}"));
            }
        }
        mismatches.extend(problems);
    }
    assert!(mismatches.is_empty(), "{fqbn}: {} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
    eprintln!("{fqbn}: {built} built, {failed} failed, as the reference");
    Outcome { built, failed }
}

/// What differs between fbuild's result for one sketch and the reference's.
fn sketch_problems(name: &str, r: &serde_json::Value, reference: &Reference) -> Vec<String> {
    if let Some(problems) = outcome_problems(name, r, reference) {
        return problems;
    }
    let mut problems = Vec::new();
    for ext in ["bin", "hex", "with_bootloader.hex"] {
        let theirs = reference.dir.join(format!("{name}.ino.{ext}"));
        let Some(ours) = r["firmware"][ext].as_str() else {
            problems.push(format!("{name}: fbuild made no .{ext}"));
            continue;
        };
        if std::fs::read(ours).unwrap() != std::fs::read(&theirs).unwrap_or_default() {
            problems.push(format!("{name}: .{ext} differs from arduino-builder's"));
        }
    }
    // Sizes from the platform's size recipe and limits from boards.txt, as the reference
    // prints them.
    let reported = |prefix: &str| -> Option<u64> {
        reference.log.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok())
    };
    let sizes = (r["flash_used"].as_u64(), r["ram_used"].as_u64(), r["flash_max"].as_u64(), r["ram_max"].as_u64());
    let expected = (reported("Sketch uses "), reported("Global variables use "), Some(262144), Some(32768));
    if sizes != expected {
        problems.push(format!("{name}: flash, RAM used and allowed {sizes:?}, arduino-builder {expected:?}"));
    }
    problems
}

// 70 of the 81 built-in examples build on both boards; the 11 others fail as in the
// reference (Keyboard, Mouse, Servo, LiquidCrystal, CapacitiveSensor not installed).
#[test]
fn all_81_examples_on_zero_match_arduino_builder() {
    let sketches = sketch_dirs(&corpus());
    assert_eq!(sketches.len(), 81);
    let o = compare(ZERO, &sketches, None);
    assert_eq!((o.built, o.failed), (70, 11));
}

#[test]
fn all_81_examples_on_mkrzero_match_arduino_builder() {
    let sketches = sketch_dirs(&corpus());
    let o = compare(MKRZERO, &sketches, None);
    assert_eq!((o.built, o.failed), (70, 11));
}

// The 86 examples of the 14 shared third-party libraries: 77 build; 9 fail as in the
// reference, each for a library not installed (Ethernet, ArduinoBLE, BLEPeripheral,
// ESP8266WiFi, Adafruit_ILI9341).
#[test]
fn shared_library_examples_on_zero_match_arduino_builder() {
    let sketches = sketch_dirs(&shared_libraries());
    assert_eq!(sketches.len(), 86);
    let o = compare(ZERO, &sketches, Some(&shared_libraries()));
    assert_eq!((o.built, o.failed), (77, 9));
}

#[test]
fn shared_library_examples_on_mkrzero_match_arduino_builder() {
    let sketches = sketch_dirs(&shared_libraries());
    let o = compare(MKRZERO, &sketches, Some(&shared_libraries()));
    assert_eq!((o.built, o.failed), (77, 9));
}

/// The kit laid out as arduino-cli installs it, under `home/.arduino15/packages/arduino`:
/// the platform as `hardware/samd/1.8.14` (its entries linked to the kit's, plus
/// `platform_local` as platform.local.txt), the compiler as
/// `tools/arm-none-eabi-gcc/7-2017q4` whose `bin/` is Debian's, CMSIS as
/// `tools/CMSIS/4.5.0` and `tools/CMSIS-Atmel/1.2.0` unless left out.
fn install_like_arduino_cli(home: &Path, platform_local: &str, leave_out: &[&str]) -> PathBuf {
    use std::os::unix::fs::symlink;
    let kit = samd_kit();
    let pkg = home.join(".arduino15/packages/arduino");
    let platform = pkg.join("hardware/samd/1.8.14");
    std::fs::create_dir_all(&platform).unwrap();
    for e in std::fs::read_dir(kit.join("hardware/arduino/samd")).unwrap() {
        let e = e.unwrap();
        symlink(e.path(), platform.join(e.file_name())).unwrap();
    }
    if !platform_local.is_empty() {
        std::fs::write(platform.join("platform.local.txt"), platform_local).unwrap();
    }
    let tools: [(&str, PathBuf); 3] = [
        ("arm-none-eabi-gcc/7-2017q4", PathBuf::new()),
        ("CMSIS/4.5.0", kit.join("tools/CMSIS-4.5.0")),
        ("CMSIS-Atmel/1.2.0", kit.join("tools/CMSIS-Atmel-1.2.0")),
    ];
    for (rel, target) in tools {
        if leave_out.contains(&rel) {
            continue;
        }
        let dir = pkg.join("tools").join(rel);
        std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
        if target.as_os_str().is_empty() {
            std::fs::create_dir_all(&dir).unwrap();
            symlink("/usr/bin", dir.join("bin")).unwrap();
        } else {
            symlink(target, &dir).unwrap();
        }
    }
    platform
}

/// Run fbuild as a user whose home is `home` (nothing from the real ~/.arduino15).
fn fbuild_as(home: &Path, args: &[&str]) -> Run {
    let o = std::process::Command::new(fbuild_bin())
        .args(args)
        .current_dir(home)
        .env("HOME", home)
        .env("FBUILD_CACHE_DIR", home.join("cache"))
        .env("CI", "true")
        .output()
        .expect("run fbuild");
    Run { code: o.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&o.stdout).into_owned(), stderr: String::from_utf8_lossy(&o.stderr).into_owned() }
}

fn handful() -> Vec<PathBuf> {
    ["01.Basics/Blink", "08.Strings/StringConstructors", "04.Communication/ASCIITable", "04.Communication/MultiSerial"].iter().map(|s| example(s)).collect()
}

#[test]
fn installed_under_arduino15_builds_with_no_build_property() {
    let home = tempfile::tempdir().unwrap();
    // A hook shows the runtime.* values the recipes see.
    let hook = "recipe.hooks.sketch.prebuild.1.pattern=sh -c \"echo '{runtime.platform.path}|{runtime.hardware.path}|{runtime.tools.arm-none-eabi-gcc.path}|{runtime.tools.CMSIS-4.5.0.path}' > '{build.path}/runtime.txt'\"\n";
    let platform = install_like_arduino_cli(home.path(), hook, &[]);
    let sketches = handful();
    let out = home.path().join("out");
    let mut args = vec!["compile-many".to_string(), "--board".into(), ZERO.into(), "--out".into(), out.display().to_string()];
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild_as(home.path(), &argv);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let results = read_json(&out.join("results.json"));
    let by_path = sketches_by_path(&results);
    let references = reference_builds_with(&ReferenceSpec::samd(ZERO), &sketches);
    let tools = home.path().join(".arduino15/packages/arduino/tools");
    for (sketch, reference) in sketches.iter().zip(&references) {
        let name = sketch.file_name().unwrap().to_string_lossy().into_owned();
        let r = &by_path[&sketch.display().to_string()];
        assert!(reference.ok, "{name}");
        for ext in ["bin", "hex", "with_bootloader.hex"] {
            let ours = std::fs::read(r["firmware"][ext].as_str().unwrap()).unwrap();
            assert!(ours == std::fs::read(reference.dir.join(format!("{name}.ino.{ext}"))).unwrap(), "{name}.{ext} differs from arduino-builder's");
        }
        // As arduino-cli sets them: the platform folder, its parent, each tool's folder.
        let seen = std::fs::read_to_string(Path::new(r["output_dir"].as_str().unwrap()).join("runtime.txt")).unwrap();
        let expected = format!(
            "{}|{}|{}|{}\n",
            platform.display(),
            platform.parent().unwrap().display(),
            tools.join("arm-none-eabi-gcc/7-2017q4").display(),
            tools.join("CMSIS/4.5.0").display()
        );
        assert_eq!(seen, expected, "{name}");
    }

    // `fbuild boards` lists the installed SAMD boards with their limits, from the
    // newest installed version (1.8.14 sorts before 1.8.9 as text).
    let older = platform.with_file_name("1.8.9");
    std::fs::create_dir_all(&older).unwrap();
    std::fs::write(older.join("boards.txt"), "old_board.name=Old\nold_board.build.core=arduino\n").unwrap();
    let boards = fbuild_as(home.path(), &["boards"]);
    assert_eq!(boards.code, 0, "{}", boards.stderr);
    assert!(!boards.stdout.contains("old_board"), "{}", boards.stdout);
    for id in ["arduino_zero_native", "mkrzero", "nano_33_iot"] {
        let line = boards.stdout.lines().find(|l| l.contains(&format!("arduino:samd:{id} "))).unwrap_or_else(|| panic!("{id} missing:\n{}", boards.stdout));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[2..5], ["cortex-m0plus", "262144", "32768"], "{line}");
    }

    // --build-property still wins over what is installed.
    let bad = fbuild_as(home.path(), &["build", "--board", ZERO, "--build-property", "runtime.tools.arm-none-eabi-gcc-7-2017q4.path=/nonexistent", &sketches[0].display().to_string()]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("/nonexistent/bin/arm-none-eabi-g"), "{}", bad.stderr);
}

#[test]
fn a_missing_tool_names_its_property_and_where_fbuild_looked() {
    let home = tempfile::tempdir().unwrap();
    install_like_arduino_cli(home.path(), "", &["CMSIS-Atmel/1.2.0"]);
    let blink = example("01.Basics/Blink").display().to_string();
    let run = fbuild_as(home.path(), &["build", "--board", ZERO, &blink]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let looked = home.path().join(".arduino15/packages/*/tools/CMSIS-Atmel/1.2.0");
    let line = run.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("{runtime.tools.CMSIS-Atmel-1.2.0.path}, which is not set"), "{line}");
    assert!(line.contains(&format!("(no {})", looked.display())), "{line}");
    assert!(line.contains("--build-property runtime.tools.CMSIS-Atmel-1.2.0.path=DIR"), "{line}");
    // Given by hand, the build goes through.
    let prop = format!("runtime.tools.CMSIS-Atmel-1.2.0.path={}", samd_kit().join("tools/CMSIS-Atmel-1.2.0").display());
    let run = fbuild_as(home.path(), &["build", "--board", ZERO, "--build-property", &prop, &blink]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn nested_library_and_sketch_folders_link_in_the_reference_order() {
    // Functions land in .text in link order, and a global object's constructor is
    // kept by --gc-sections: both show in the .bin when an object is out of place,
    // added or missing. A flat library compiles its root and utility/ (not deeper);
    // a src/ library and a sketch's src/ compile each folder's .S, .c, .cpp, then
    // its subfolders.
    // A fixed folder, so the reference build is remembered across runs (its key
    // covers the folders' paths and contents).
    let root = repo().join("target/test-fixtures/samd-nested");
    let _ = std::fs::remove_dir_all(&root);
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let counted = |name: &str| format!("#include <Arduino.h>\nstruct C_{name} {{ C_{name}() {{ Serial.print(\"{name}\"); }} }};\nstatic C_{name} c_{name};\nextern \"C\" int {name}(int x) {{ return x * 3 + {}; }}\n", name.len());
    let plain_c = |name: &str| format!("int {name}(int x) {{ return x * 5 + {}; }}\n", name.len());
    let asm = |name: &str| format!(".syntax unified\n.thumb\n.global {name}\n.type {name}, %function\n{name}:\n  adds r0, r0, #{}\n  bx lr\n", name.len());
    w("libs/Flat/Flat.h", "extern \"C\" { int flat_a(int); int flat_u(int); int flat_uc(int); }\n");
    w("libs/Flat/Flat.cpp", &counted("flat_a"));
    w("libs/Flat/utility/u.cpp", &counted("flat_u"));
    w("libs/Flat/utility/uc.c", &plain_c("flat_uc"));
    w("libs/Flat/utility/deeper/not_compiled.cpp", &counted("flat_deep"));
    w("libs/Nested/library.properties", "name=Nested\nversion=1.0.0\nauthor=t\nmaintainer=t\nsentence=t\nparagraph=t\ncategory=Other\nurl=http://example.com\narchitectures=*\n");
    w("libs/Nested/src/Nested.h", "extern \"C\" { int n_top(int); int n_c(int); int n_s(int); int n_a(int); int n_ac(int); int n_z(int); }\n");
    w("libs/Nested/src/Nested.cpp", &counted("n_top"));
    w("libs/Nested/src/zc.c", &plain_c("n_c"));
    w("libs/Nested/src/s.S", &asm("n_s"));
    w("libs/Nested/src/a/a.cpp", &counted("n_a"));
    w("libs/Nested/src/a/ac.c", &plain_c("n_ac"));
    w("libs/Nested/src/Z/z.cpp", &counted("n_z"));
    w(
        "Nest/Nest.ino",
        "#include <Flat.h>\n#include <Nested.h>\n#include \"src/inner/inner.h\"\nvoid setup() { Serial.begin(9600); }\n\
         void loop() { Serial.println(flat_a(1) + flat_u(2) + flat_uc(3) + n_top(4) + n_c(5) + n_s(6) + n_a(7) + n_ac(8) + n_z(9) + inner(10) + inner_c(11)); }\n",
    );
    w("Nest/src/inner/inner.h", "extern \"C\" { int inner(int); int inner_c(int); }\n");
    w("Nest/src/inner/inner.cpp", &counted("inner"));
    w("Nest/src/inner/c/inner_c.c", &plain_c("inner_c"));
    let o = compare(ZERO, &[root.join("Nest")], Some(&root.join("libs")));
    assert_eq!((o.built, o.failed), (1, 0));
}

#[test]
fn a_warm_run_starts_no_process() {
    let tmp = tempfile::tempdir().unwrap();
    let (cold, results) = compile_many(tmp.path(), MKRZERO, &samd_kit_args(), &handful());
    assert_eq!(cold.code, 0, "{}", cold.stderr);
    assert!(results["totals"]["tool_processes"].as_u64().unwrap() > 0);
    let (warm, results) = compile_many(tmp.path(), MKRZERO, &samd_kit_args(), &handful());
    assert_eq!(warm.code, 0, "{}", warm.stderr);
    let t = &results["totals"];
    assert_eq!((t["tool_processes"].as_u64(), t["links_run"].as_u64(), t["ok"].as_u64()), (Some(0), Some(0), Some(4)), "{t}");
}
