//! Precompiled `Arduino.h` on the ARM toolchain (SAMD kit, Debian's arm-none-eabi-gcc):
//! one `.gch` build for all sketches, each sketch compile loading it, the same
//! firmware as without it, a core header edited rebuilding it and the sketches, a
//! library that shadows one of its headers compiling without it, and avr-gcc not
//! using one at all.

mod common;

use common::*;
use std::path::{Path, PathBuf};

const ZERO: &str = "arduino:samd:arduino_zero_native";

fn sketches() -> Vec<PathBuf> {
    ["01.Basics/Blink", "01.Basics/Fade", "04.Communication/ASCIITable"].iter().map(|s| example(s)).collect()
}

/// compile-many with `-v` (every command printed) into `tmp/out`, the cache in `tmp/cache`.
fn verbose_run(tmp: &Path, fqbn: &str, extra: &[String], sketches: &[PathBuf]) -> (Run, serde_json::Value) {
    let mut args = extra.to_vec();
    args.push("-v".into());
    let (run, results) = compile_many(tmp, fqbn, &args, sketches);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    (run, results)
}

/// The printed commands (stdout and stderr) that match `pred`.
fn commands<'a>(run: &'a Run, pred: impl Fn(&str) -> bool + 'a) -> Vec<&'a str> {
    run.stdout.lines().chain(run.stderr.lines()).filter(|l| pred(l)).collect()
}

/// Whether `s` names a board's `.gch` folder (`OUT/framework/<board>/pch/<shape>`).
fn names_pch_dir(s: &str) -> bool {
    regex::Regex::new(r"/framework/[^/ ]+/pch/[0-9a-f]{16}").unwrap().is_match(s)
}

/// Builds of a sketch `.gch` (not the probe's).
fn gch_builds(run: &Run) -> usize {
    commands(run, |l| l.contains("c++-header") && names_pch_dir(l) && l.contains("fbuild-pch.h")).len()
}

/// Compiles of a sketch's merged `.ino.cpp` that were given the `.gch`'s folder first.
fn compiles_with_pch(run: &Run) -> usize {
    commands(run, |l| l.contains(".ino.cpp.o") && l.split_whitespace().nth(1).is_some_and(|a| a.starts_with("-I") && names_pch_dir(a))).len()
}

/// Each sketch's firmware files (.bin, .hex, .with_bootloader.hex), by sketch name.
fn firmware(results: &serde_json::Value) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for s in results["sketches"].as_array().unwrap() {
        assert_eq!(s["status"], "ok", "{s}");
        for ext in ["bin", "hex", "with_bootloader.hex"] {
            let f = s["firmware"][ext].as_str().unwrap_or_else(|| panic!("no .{ext}: {s}"));
            v.push((format!("{}.{ext}", s["name"].as_str().unwrap()), std::fs::read(f).unwrap()));
        }
    }
    v.sort();
    v
}

#[test]
fn sketches_share_one_gch_and_make_the_same_firmware_as_without_it() {
    let with = tempfile::tempdir().unwrap();
    let (run, results) = verbose_run(with.path(), ZERO, &samd_kit_args(), &sketches());
    assert_eq!(gch_builds(&run), 1, "one .gch for the board:\n{}", run.stderr);
    assert_eq!(compiles_with_pch(&run), 3, "every sketch compile loads it:\n{}", run.stderr);
    // compile_commands.json keeps the platform's command.
    let db = std::fs::read_to_string(with.path().join("out/compile_commands.json")).unwrap();
    let named = db.lines().find(|l| names_pch_dir(l));
    assert!(named.is_none(), "compile_commands.json names the .gch folder: {named:?}");

    let without = tempfile::tempdir().unwrap();
    let mut off = samd_kit_args();
    off.push("--no-pch".into());
    let (run_off, results_off) = verbose_run(without.path(), ZERO, &off, &sketches());
    assert_eq!((gch_builds(&run_off), compiles_with_pch(&run_off)), (0, 0), "--no-pch:\n{}", run_off.stderr);
    assert!(firmware(&results) == firmware(&results_off), "firmware differs with the precompiled header");
}

/// The SAMD kit's platform under `tmp/hardware`, its core copied (so a header can be
/// edited) and everything else linked to the kit; fbuild's arguments for it.
fn platform_with_own_core(tmp: &Path) -> (PathBuf, Vec<String>) {
    let kit = samd_kit().join("hardware/arduino/samd");
    let platform = tmp.join("hardware/arduino/samd");
    std::fs::create_dir_all(&platform).unwrap();
    for e in std::fs::read_dir(&kit).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "cores" {
            std::os::unix::fs::symlink(e.path(), platform.join(e.file_name())).unwrap();
        }
    }
    copy_dir(&kit.join("cores"), &platform.join("cores"));
    let mut args = vec!["--hardware".to_string(), tmp.join("hardware").display().to_string()];
    for p in samd_tool_properties() {
        args.push("--build-property".into());
        args.push(p);
    }
    (platform.join("cores/arduino"), args)
}

#[test]
fn editing_a_header_the_gch_read_rebuilds_it_and_every_sketch() {
    let tmp = tempfile::tempdir().unwrap();
    let (core, args) = platform_with_own_core(tmp.path());
    let sketches = sketches();
    let (cold, _) = verbose_run(tmp.path(), ZERO, &args, &sketches);
    assert_eq!((gch_builds(&cold), compiles_with_pch(&cold)), (1, 3), "{}", cold.stderr);

    // Same bytes, new mtime: nothing to build, no process.
    let header = core.join("WVariant.h");
    let bytes = std::fs::read(&header).unwrap();
    // The kit's files are read-only, and so is the copy.
    std::fs::set_permissions(&header, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&header, &bytes).unwrap();
    let (same, results) = verbose_run(tmp.path(), ZERO, &args, &sketches);
    assert_eq!(results["totals"]["tool_processes"].as_u64(), Some(0), "{}", same.stderr);

    // A real edit of a header Arduino.h includes: the .gch is built again, and each
    // sketch is compiled again (and loads the new one).
    std::fs::write(&header, [bytes.as_slice(), b"\n#define FBUILD_PCH_TEST_EDIT 1\n"].concat()).unwrap();
    let (edited, results) = verbose_run(tmp.path(), ZERO, &args, &sketches);
    assert_eq!((gch_builds(&edited), compiles_with_pch(&edited)), (1, 3), "{}", edited.stderr);
    for s in results["sketches"].as_array().unwrap() {
        assert_eq!(s["status"], "ok", "{s}");
        assert_eq!(s["objects_compiled"].as_u64(), Some(1), "{s}");
    }
}

#[test]
fn a_library_with_a_header_named_like_one_of_the_gch_compiles_without_it_one_including_arduino_h_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    // A library whose folder holds `WVariant.h`, which the core's Arduino.h includes: a
    // compile without the .gch could find it, one with the .gch never would.
    let libs = tmp.path().join("libs");
    let lib = libs.join("Shadowing");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("library.properties"), "name=Shadowing\nversion=1.0.0\narchitectures=*\n").unwrap();
    std::fs::write(lib.join("Shadowing.h"), "#pragma once\ninline int shadowing() { return 7; }\n").unwrap();
    std::fs::write(lib.join("WVariant.h"), "#error this shadows the core's WVariant.h\n").unwrap();
    let sketch = tmp.path().join("sketches/UsesShadowing");
    std::fs::create_dir_all(&sketch).unwrap();
    std::fs::write(sketch.join("UsesShadowing.ino"), "#include <Shadowing.h>\nvoid setup() { pinMode(shadowing(), OUTPUT); }\nvoid loop() {}\n").unwrap();
    // A library header including Arduino.h again (as most do): with the .gch loaded,
    // GCC looks for that one in the .gch's folder too.
    let again = libs.join("Reincludes");
    std::fs::create_dir_all(&again).unwrap();
    std::fs::write(again.join("library.properties"), "name=Reincludes\nversion=1.0.0\narchitectures=*\n").unwrap();
    std::fs::write(again.join("Reincludes.h"), "#pragma once\n#include \"Arduino.h\"\n#include <Arduino.h>\ninline int reincludes() { return LED_BUILTIN; }\n").unwrap();
    let reincluding = tmp.path().join("sketches/UsesReincludes");
    std::fs::create_dir_all(&reincluding).unwrap();
    std::fs::write(reincluding.join("UsesReincludes.ino"), "#include <Reincludes.h>\nvoid setup() { pinMode(reincludes(), OUTPUT); }\nvoid loop() {}\n").unwrap();
    let all = vec![sketch.clone(), reincluding, example("01.Basics/Blink")];
    let mut args = samd_kit_args();
    args.extend(["--libraries".to_string(), libs.display().to_string()]);

    let (with, without) = (tmp.path().join("with"), tmp.path().join("without"));
    std::fs::create_dir_all(&with).unwrap();
    std::fs::create_dir_all(&without).unwrap();
    let (run, results) = verbose_run(&with, ZERO, &args, &all);
    assert_eq!(gch_builds(&run), 1, "{}", run.stderr);
    assert_eq!(compiles_with_pch(&run), 2, "Blink and UsesReincludes:\n{}", run.stderr);
    let shadowed = commands(&run, |l| l.contains("UsesShadowing.ino.cpp.o"));
    assert!(!shadowed.is_empty() && shadowed.iter().all(|l| !names_pch_dir(l)), "{shadowed:?}");
    let ours = sketches_by_path(&results);
    let log = std::fs::read_to_string(ours[&sketch.display().to_string()]["log"].as_str().unwrap()).unwrap_or_default();
    assert!(log.contains(&format!("no precompiled header for this sketch: {} is named like a header Arduino.h includes", lib.join("WVariant.h").display())), "{log}");

    args.push("--no-pch".into());
    let (_, results_off) = verbose_run(&without, ZERO, &args, &all);
    assert!(firmware(&results) == firmware(&results_off), "firmware differs with the precompiled header");
}

#[test]
fn avr_gcc_uses_no_gch() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, results) = verbose_run(tmp.path(), "uno", &[], &sketches());
    assert_eq!(results["totals"]["ok"].as_u64(), Some(3));
    // The probe ran (its header build is printed), said no: no .gch, no sketch loads one.
    assert!(!commands(&run, |l| l.contains("fbuild_pch_probe.h.gch")).is_empty(), "no probe:\n{}", run.stderr);
    assert_eq!((gch_builds(&run), compiles_with_pch(&run)), (0, 0), "{}", run.stderr);
    assert!(!files_under(&tmp.path().join("out")).iter().any(|p| names_pch_dir(&p.to_string_lossy())));
}

#[test]
fn a_new_gch_waits_for_enough_sketches_and_a_built_one_serves_any() {
    let tmp = tempfile::tempdir().unwrap();
    let one = |s: &str| vec![example(s)];
    // One sketch to compile: a new .gch would cost more than it saves.
    let (alone, _) = verbose_run(tmp.path(), ZERO, &samd_kit_args(), &one("01.Basics/Blink"));
    assert_eq!((gch_builds(&alone), compiles_with_pch(&alone)), (0, 0), "{}", alone.stderr);
    let mut four = sketches();
    four.push(example("03.Analog/AnalogInput"));
    let (three, _) = verbose_run(tmp.path(), ZERO, &samd_kit_args(), &four);
    assert_eq!((gch_builds(&three), compiles_with_pch(&three)), (1, 3), "Blink is cached, three compile:\n{}", three.stderr);
    // Built: one more sketch loads it.
    let (later, _) = verbose_run(tmp.path(), ZERO, &samd_kit_args(), &one("02.Digital/Button"));
    assert_eq!((gch_builds(&later), compiles_with_pch(&later)), (0, 1), "{}", later.stderr);
}
