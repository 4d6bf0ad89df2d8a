//! The cores people build for, ARM half: arduino-pico (Raspberry Pi Pico, Pico 2) and
//! STM32duino (Blue Pill, Black Pill) from the shared kits with Debian's arm-none-eabi
//! toolchain. Differential tests against arduino-builder (the same sketches build and
//! fail, every firmware file byte-identical), and the platform specification these
//! cores lean on: quotes inside arguments, the build profile, hooks, objcopy outputs
//! named by the recipes, precompiled libraries, tools that are missing.

mod common;

use common::arm_kits::{self, ArmBoard, Kit};
use common::*;
use std::path::{Path, PathBuf};

/// Build `sketches` for `board` with fbuild (one compile-many) and with arduino-builder;
/// the same ones must build, the same ones fail at the same first error, every firmware
/// file either makes must be byte-identical, with the same flash and RAM use and limits.
/// Returns (built, failed).
fn compare(board: &ArmBoard, sketches: &[PathBuf], libraries: Option<&Path>) -> (usize, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let mut extra = arm_kits::fbuild_args(board.kit);
    let mut spec = arm_kits::reference_spec(board);
    if let Some(l) = libraries {
        extra.push("--libraries".into());
        extra.push(l.display().to_string());
        spec = spec.with_libraries(l);
    }
    let started = std::time::Instant::now();
    let (_, results) = compile_many(tmp.path(), board.fqbn, &extra, sketches);
    let fbuild_seconds = started.elapsed().as_secs_f64();
    let by_path = sketches_by_path(&results);
    let started = std::time::Instant::now();
    let references = reference_builds_with(&spec, sketches);
    let reference_seconds = started.elapsed().as_secs_f64();
    let mut mismatches = Vec::new();
    let (mut built, mut failed) = (0, 0);
    for (sketch, reference) in sketches.iter().zip(&references) {
        let name = sketch.file_name().unwrap().to_string_lossy().into_owned();
        let r = &by_path[&sketch.display().to_string()];
        match r["status"].as_str() {
            Some("ok") => built += 1,
            _ => failed += 1,
        }
        mismatches.extend(sketch_problems(&name, r, reference));
        if reference.ok && r["status"] == "ok" {
            let ours: Vec<PathBuf> = r["libraries"].as_array().unwrap().iter().map(|l| PathBuf::from(l["folder"].as_str().unwrap())).collect();
            let theirs = used_libraries(&reference.log);
            if ours != theirs {
                mismatches.push(format!("{name}: libraries {ours:?}, arduino-builder used {theirs:?}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}: {} mismatches:\n{}", board.fqbn, mismatches.len(), mismatches.join("\n"));
    // The times say what a test costs with cold caches (the reference's are remembered).
    eprintln!("{}: {built} built, {failed} failed, as the reference; fbuild {fbuild_seconds:.1}s, reference {reference_seconds:.1}s", board.fqbn);
    (built, failed)
}

/// The folders of the reference's `Using library NAME at version V in folder: DIR`
/// lines. STM32duino's postbuild hook prints without a newline, so such a line can
/// start after that text: searched within lines, not at their start.
fn used_libraries(log: &str) -> Vec<PathBuf> {
    log.lines()
        .filter_map(|l| l.split_once("Using library ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(" in folder: ").map(|(_, d)| PathBuf::from(d.trim().trim_end_matches(" (legacy)"))))
        .collect()
}

fn sketch_problems(name: &str, r: &serde_json::Value, reference: &Reference) -> Vec<String> {
    if let Some(problems) = outcome_problems(name, r, reference) {
        return problems;
    }
    let mut problems = Vec::new();
    // Every firmware file either side made: the same set, byte for byte.
    let theirs = arm_kits::firmware_in(&reference.dir, name);
    let mut ours: Vec<String> = r["firmware"].as_object().unwrap().keys().filter(|e| arm_kits::is_firmware(e)).cloned().collect();
    ours.sort();
    if ours != theirs {
        problems.push(format!("{name}: fbuild made {ours:?}, arduino-builder {theirs:?}"));
    }
    if theirs.is_empty() {
        problems.push(format!("{name}: arduino-builder made no firmware file"));
    }
    for ext in theirs.iter().filter(|e| ours.contains(e)) {
        let a = std::fs::read(r["firmware"][ext].as_str().unwrap()).unwrap();
        let b = std::fs::read(reference.dir.join(format!("{name}.ino.{ext}"))).unwrap();
        if a != b {
            problems.push(format!("{name}: .{ext} differs from arduino-builder's"));
        }
    }
    let number_after = |prefix: &str, marker: &str| -> Option<u64> {
        let line = reference.log.lines().find(|l| l.starts_with(prefix))?;
        let rest = if marker.is_empty() { line.strip_prefix(prefix)? } else { line.split(marker).nth(1)? };
        rest.trim().split(' ').next()?.parse().ok()
    };
    let sizes = (r["flash_used"].as_u64(), r["ram_used"].as_u64(), r["flash_max"].as_u64(), r["ram_max"].as_u64());
    let expected = (
        number_after("Sketch uses ", ""),
        number_after("Global variables use ", ""),
        number_after("Sketch uses ", "Maximum is "),
        number_after("Global variables use ", "Maximum is "),
    );
    if sizes != expected {
        problems.push(format!("{name}: flash, RAM used and allowed {sizes:?}, arduino-builder {expected:?}"));
    }
    problems
}

// 01.Basics to 05.Control: the 39 built-in examples of the classic API. arduino-pico
// runs them all by default. STM32duino's reference is costly cold: every sketch
// recompiles its SrcWrapper library (171 sources, and as many discovery runs), about
// 80 s of CPU a sketch, so by default its boards run 01.Basics (6 sketches) and the
// 39 are `--ignored` tests (run by hand; their references are then cached).

fn basics() -> Vec<PathBuf> {
    sketch_dirs(&corpus().join("01.Basics"))
}

#[test]
fn basics_to_control_on_rpipico_match_arduino_builder() {
    let sketches = arm_kits::basics_to_control();
    assert_eq!(sketches.len(), 39);
    assert_eq!(compare(&arm_kits::rpipico(), &sketches, None), (39, 0));
}

#[test]
fn basics_to_control_on_rpipico2_match_arduino_builder() {
    assert_eq!(compare(&arm_kits::rpipico2(), &arm_kits::basics_to_control(), None), (39, 0));
}

#[test]
fn basics_on_bluepill_match_arduino_builder() {
    assert_eq!(compare(&arm_kits::bluepill(), &basics(), None), (6, 0));
}

#[test]
fn basics_on_blackpill_match_arduino_builder() {
    assert_eq!(compare(&arm_kits::blackpill(), &basics(), None), (6, 0));
}

#[test]
#[ignore = "cold reference about 30 min on 2 cores: run with --ignored"]
fn basics_to_control_on_bluepill_match_arduino_builder() {
    assert_eq!(compare(&arm_kits::bluepill(), &arm_kits::basics_to_control(), None), (39, 0));
}

#[test]
#[ignore = "cold reference about 30 min on 2 cores: run with --ignored"]
fn basics_to_control_on_blackpill_match_arduino_builder() {
    assert_eq!(compare(&arm_kits::blackpill(), &arm_kits::basics_to_control(), None), (39, 0));
}

// The examples of ../shared/libraries whose library runs on the architecture, with
// those libraries given as the reference is given them. CI budget (docs/testing.md):
// arduino-builder recompiles a sketch's libraries for every sketch, about 7 s of CPU a
// library example on the Pico (its core is cached), so all of them run by default on
// the Pico only; the Pico 2 runs one example of each library by default and all of
// them as an `--ignored` test. STM32duino's reference also recompiles SrcWrapper for
// every sketch (about 80 s of CPU each): its library examples are `--ignored` tests.

#[test]
fn library_examples_on_rpipico_match_arduino_builder() {
    let sketches = arm_kits::library_examples_for("rp2040");
    assert_eq!(sketches.len(), 83);
    // 18 fail as the reference: 8 use arduino-pico's own SD (architectures=rp2040 wins
    // over the shared generic one), whose SdFat is not in the kit; 8 need a library not
    // installed (Ethernet, ArduinoBLE, BLEPeripheral, Adafruit_ILI9341, http-parser's
    // header); CapacitiveSensor has no IO_REG_TYPE for this core.
    assert_eq!(compare(&arm_kits::rpipico(), &sketches, Some(&shared_libraries())), (65, 18));
}

#[test]
fn one_example_per_library_on_rpipico2_matches_arduino_builder() {
    let sketches = arm_kits::one_example_per_library("rp2040");
    assert_eq!(sketches.len(), 11);
    assert_eq!(compare(&arm_kits::rpipico2(), &sketches, Some(&shared_libraries())), (8, 3));
}

#[test]
#[ignore = "cold reference about 5 min on 2 cores (83 sketches): run with --ignored"]
fn library_examples_on_rpipico2_match_arduino_builder() {
    assert_eq!(compare(&arm_kits::rpipico2(), &arm_kits::library_examples_for("rp2040"), Some(&shared_libraries())), (65, 18));
}

#[test]
#[ignore = "cold reference about 60 min on 2 cores (83 sketches): run with --ignored"]
fn library_examples_on_bluepill_match_arduino_builder() {
    let (built, failed) = compare(&arm_kits::bluepill(), &arm_kits::library_examples_for("stm32"), Some(&shared_libraries()));
    assert_eq!(built + failed, 83);
}

#[test]
#[ignore = "cold reference about 60 min on 2 cores (83 sketches): run with --ignored"]
fn library_examples_on_blackpill_match_arduino_builder() {
    let (built, failed) = compare(&arm_kits::blackpill(), &arm_kits::library_examples_for("stm32"), Some(&shared_libraries()));
    assert_eq!(built + failed, 83);
}

/// fbuild with HOME at `home` (so ~/.arduino15 is the test's), in `cwd`.
fn fbuild_home(home: &Path, args: &[String]) -> Run {
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

/// The compile commands of one sketch's build on `board`, from `--only-compiledb`.
fn compile_commands(tmp: &Path, board: &ArmBoard, extra: &[&str]) -> Vec<Vec<String>> {
    let out = tmp.join("out");
    let mut args: Vec<String> = vec!["compile-many".into(), "--board".into(), board.fqbn.into(), "--out".into(), out.display().to_string(), "--only-compiledb".into()];
    args.extend(arm_kits::fbuild_args(board.kit));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(example("01.Basics/Blink").display().to_string());
    let run = fbuild_home(tmp, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let db = read_json(&out.join("compile_commands.json"));
    db.as_array().unwrap().iter().map(|e| e["arguments"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()).collect()
}

// STM32duino's build.info.flags quote inside a word (`-DVARIANT_H="variant_PILL_F103Cx.h"`,
// for `#include VARIANT_H`), and its platform.txt leaves compiler.optimization_flags to
// the build profile. Before this work the quotes were stripped and the literal
// `{compiler.optimization_flags}` reached gcc: the core failed to compile.
#[test]
fn quotes_inside_a_word_and_the_build_profile_reach_the_compiler() {
    let tmp = tempfile::tempdir().unwrap();
    let release = compile_commands(tmp.path(), &arm_kits::bluepill(), &[]);
    assert!(!release.is_empty());
    for args in &release {
        assert!(args.iter().any(|a| a == "-DVARIANT_H=\"variant_PILL_F103Cx.h\""), "{args:?}");
        assert!(args.iter().any(|a| a == "-DBOARD_NAME=\"BLUEPILL_F103C8\""), "{args:?}");
        assert!(!args.iter().any(|a| a.contains('{')), "an unresolved property: {args:?}");
    }
    let sketch = |cmds: &[Vec<String>]| cmds.iter().find(|a| a.iter().any(|x| x.ends_with("Blink.ino.cpp"))).cloned().unwrap();
    let r = sketch(&release);
    assert!(r.contains(&"-Os".to_string()) && !r.contains(&"-Og".to_string()), "{r:?}");
    let tmp = tempfile::tempdir().unwrap();
    let d = sketch(&compile_commands(tmp.path(), &arm_kits::bluepill(), &["--optimize-for-debug"]));
    assert!(d.contains(&"-Og".to_string()) && d.contains(&"-g".to_string()) && !d.contains(&"-Os".to_string()), "{d:?}");
}

// arduino-pico's platform.txt places picotool at {runtime.platform.path}/system/picotool
// by default; this kit has none there. One line names the recipe, the property, where
// fbuild looked and what to pass, before anything is built.
#[test]
fn a_missing_picotool_names_its_property_and_where_fbuild_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let kit = arm_kits::kit_dir(Kit::Rp2040);
    let args: Vec<String> = [
        "build", "--board", "rp2040:rp2040:rpipico", "--hardware", &kit.join("hardware").display().to_string(),
        "--build-property", "runtime.tools.pqt-gcc.path=/usr", "--build-property", "runtime.tools.pqt-python3.path=/usr/bin",
        &example("01.Basics/Blink").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = fbuild_home(tmp.path(), &args);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let platform = kit.join("hardware/rp2040/rp2040");
    let expected = format!(
        "platform rp2040:rp2040: recipe.objcopy.uf2.pattern runs {p}/system/picotool/picotool, which does not exist \
         ({{runtime.tools.pqt-picotool.path}} is {p}/system/picotool; no pqt-picotool there nor {h}/.arduino15/packages/*/tools/pqt-picotool/<version>); \
         install the tool or pass --build-property runtime.tools.pqt-picotool.path=DIR",
        p = platform.display(),
        h = tmp.path().display()
    );
    assert!(run.stderr.lines().any(|l| l.ends_with(&expected)), "{}", run.stderr);
}

// STM32duino names its compiler only by an installed tool's property: unset, fbuild says
// which and where it looked (as for SAMD).
#[test]
fn a_missing_stm32_compiler_names_its_property() {
    let tmp = tempfile::tempdir().unwrap();
    let kit = arm_kits::kit_dir(Kit::Stm32);
    let args: Vec<String> = ["build", "--board", arm_kits::bluepill().fqbn, "--hardware", &kit.join("hardware").display().to_string(), &example("01.Basics/Blink").display().to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let run = fbuild_home(tmp.path(), &args);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let line = run.stderr.lines().find(|l| l.contains("runtime.tools.xpack-arm-none-eabi-gcc-12.2.1-1.2.path")).unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(line.contains(&format!("no {}/.arduino15/packages/*/tools/xpack-arm-none-eabi-gcc/12.2.1-1.2", tmp.path().display())), "{line}");
    assert!(line.contains("pass --build-property runtime.tools.xpack-arm-none-eabi-gcc-12.2.1-1.2.path=DIR"), "{line}");
}

/// A library shipping `src/cortex-m4/fpv4-sp-d16-hard/libadder.a` (made here by the real
/// compiler for the Black Pill's FPU) and a source that must not compile when it is used.
fn precompiled_library(root: &Path, precompiled: &str) -> PathBuf {
    let lib = root.join("Adder");
    let arch = lib.join("src/cortex-m4/fpv4-sp-d16-hard");
    std::fs::create_dir_all(&arch).unwrap();
    std::fs::write(lib.join("library.properties"), format!("name=Adder\nversion=1.0.0\narchitectures=*\nprecompiled={precompiled}\nldflags=-lm\n")).unwrap();
    std::fs::write(lib.join("src/Adder.h"), "#pragma once\n#ifdef __cplusplus\nextern \"C\"\n#endif\nint adder_add(int a, int b);\n").unwrap();
    // Preprocesses (discovery reads it, as arduino-cli's does) but does not compile.
    std::fs::write(lib.join("src/Adder.c"), "int adder_add(int a, int b) { return sources_of_a_precompiled_library_compiled; }\n").unwrap();
    let c = root.join("adder.c");
    std::fs::write(&c, "int adder_add(int a, int b) { return a + b + 40; }\n").unwrap();
    let o = root.join("adder.o");
    let ok = std::process::Command::new("arm-none-eabi-gcc")
        .args(["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-Os", "-c"])
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = std::process::Command::new("arm-none-eabi-ar").arg("rcs").arg(arch.join("libadder.a")).arg(&o).status().unwrap();
    assert!(ok.success());
    lib
}

// precompiled=full: the archive for the board's MCU and FPU (the C++ recipe's -mfpu and
// -mfloat-abi pick `cortex-m4/fpv4-sp-d16-hard`) is linked through
// compiler.libraries.ldflags (`"-L<folder>" -lm -ladder`) and the sources are not
// compiled; precompiled=true compiles them too (here they fail, as they would in
// arduino-cli). arduino-builder 1.3 predates precompiled libraries, so the check is the
// symbol in the firmware. Before this work the sources always compiled (and failed).
// (arduino-pico sets no build.mcu, so its precompiled folder would be src/ itself.)
#[test]
fn a_precompiled_library_links_its_archive_for_the_mcu() {
    let tmp = tempfile::tempdir().unwrap();
    let sketch = tmp.path().join("UsesAdder");
    std::fs::create_dir_all(&sketch).unwrap();
    std::fs::write(sketch.join("UsesAdder.ino"), "#include <Adder.h>\nvolatile int r;\nvoid setup() { r = adder_add(1, 2); }\nvoid loop() {}\n").unwrap();
    for (mode, ok) in [("full", true), ("true", false)] {
        let work = tmp.path().join(mode);
        std::fs::create_dir_all(&work).unwrap();
        let lib = precompiled_library(&work, mode);
        let mut extra = arm_kits::fbuild_args(Kit::Stm32);
        extra.extend(["--library".to_string(), lib.display().to_string()]);
        // One cache for both modes: the core compiles once.
        let (_, results) = compile_many(tmp.path(), arm_kits::blackpill().fqbn, &extra, &[sketch.clone()]);
        let r = &results["sketches"][0];
        assert_eq!(r["status"] == "ok", ok, "precompiled={mode}: {r}");
        if ok {
            let nm = std::process::Command::new("arm-none-eabi-nm").arg(r["firmware"]["elf"].as_str().unwrap()).output().unwrap();
            assert!(String::from_utf8_lossy(&nm.stdout).lines().any(|l| l.ends_with(" T adder_add")), "adder_add not linked");
            let log = std::fs::read_to_string(r["log"].as_str().unwrap()).unwrap();
            assert!(log.contains(&format!("-L{}", lib.join("src/cortex-m4/fpv4-sp-d16-hard").display())) && log.contains("-ladder"), "{log}");
        } else {
            assert!(r["first_error"].as_str().unwrap_or("").contains("sources_of_a_precompiled_library_compiled"), "{r}");
        }
    }
}

// The hooks (arduino-pico's sketch.prebuild and prelink scripts) ran once; a second run
// of the same sketches starts no process at all.
#[test]
fn a_warm_run_on_rpipico_starts_no_process() {
    let tmp = tempfile::tempdir().unwrap();
    let sketches = vec![example("01.Basics/Blink"), example("02.Digital/Button")];
    let extra = arm_kits::fbuild_args(Kit::Rp2040);
    let (_, cold) = compile_many(tmp.path(), arm_kits::rpipico().fqbn, &extra, &sketches);
    assert_eq!(cold["totals"]["ok"], 2, "{cold}");
    let (_, warm) = compile_many(tmp.path(), arm_kits::rpipico().fqbn, &extra, &sketches);
    assert_eq!(warm["totals"]["ok"], 2);
    assert_eq!(warm["totals"]["tool_processes"], 0, "{}", warm["totals"]);
    assert_eq!(ok_firmware(&cold), ok_firmware(&warm));
}

fn ok_firmware(results: &serde_json::Value) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for s in results["sketches"].as_array().unwrap() {
        for ext in ["bin", "uf2"] {
            out.push(std::fs::read(s["firmware"][ext].as_str().unwrap()).unwrap());
        }
    }
    out
}
