//! Sketches that declare their boards (`// @filter`), and failed links remembered
//! like successful ones — end to end with the real toolchain.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Write `NAME/NAME.ino` (and extra files) under `root`.
fn sketch(root: &Path, name: &str, ino: &str, extra: &[(&str, &str)]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.ino")), ino).unwrap();
    for (file, text) in extra {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

fn many(cache: &Path, cwd: &Path, out: &Path, flags: &[&str], sketches: &[PathBuf]) -> (Run, serde_json::Value) {
    let mut args: Vec<String> = vec!["compile-many".into(), "--out".into(), out.display().to_string()];
    args.extend(flags.iter().map(|s| s.to_string()));
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(cache, cwd, &argv);
    let results = read_json(&out.join("results.json"));
    (run, results)
}

fn status_of(results: &serde_json::Value) -> BTreeMap<String, String> {
    results["sketches"].as_array().unwrap().iter().map(|s| (s["name"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string())).collect()
}

fn unit_names(results: &serde_json::Value) -> Vec<String> {
    results["units"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap().to_string()).collect()
}

/// A sketch of `2 * half + 486` bytes of flash.
fn flash_sketch(half: usize) -> String {
    format!("#include <avr/pgmspace.h>\nconst char a[{half}] PROGMEM = {{1}};\nconst char b[{half}] PROGMEM = {{2}};\nvolatile int i;\nvoid setup() {{}}\nvoid loop() {{ i = pgm_read_byte(&a[i]) + pgm_read_byte(&b[i]); }}\n")
}

const BODY: &str = "void setup() { pinMode(13, OUTPUT); }\nvoid loop() { digitalWrite(13, HIGH); }\n";

#[test]
fn sketches_filter_themselves_out_on_uno_and_build_on_mega() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("examples");
    let cache = t.path().join("cache");
    let big_only = sketch(&root, "BigOnly", &format!("// Needs a lot of RAM.\n// @filter: (memory is large)\n{BODY}"), &[]);
    let not_uno = sketch(&root, "NotUno", "// @filter (board is not uno)\n#include <SPI.h>\nvoid setup() { SPI.begin(); }\nvoid loop() {}\n", &[]);
    let mega_target = sketch(&root, "MegaTarget", &format!("// @filter\n// require:\n//   - target: -D__AVR_ATmega2560__\n// @end-filter\n{BODY}"), &[]);
    let avr_only = sketch(&root, "AvrOnly", &format!("// @filter: (platform is atmelavr) and not (mem is tiny)\n{BODY}"), &[]);
    let broken = sketch(&root, "Broken", &format!("//\n// @filter (memory is large\n{BODY}"), &[]);
    let plain = sketch(&root, "Plain", BODY, &[]);
    let all = vec![big_only.clone(), not_uno.clone(), mega_target.clone(), avr_only.clone(), broken.clone(), plain.clone()];

    // uno: three sketches say they are not for it.
    let out = t.path().join("uno");
    let (run, r) = many(&cache, t.path(), &out, &[], &all);
    assert_eq!(run.code, 0, "every sketch not skipped built: {}{}", run.stdout, run.stderr);
    let want: BTreeMap<String, String> = [("AvrOnly", "ok"), ("BigOnly", "skipped"), ("Broken", "ok"), ("MegaTarget", "skipped"), ("NotUno", "skipped"), ("Plain", "ok")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(status_of(&r), want);
    let by = sketches_by_path(&r);
    let big = &by[&big_only.display().to_string()];
    let reason = big["skip_reason"].as_str().unwrap();
    assert!(reason.contains("(memory is large)") && reason.contains("line 2") && reason.contains("uno") && reason.contains("memory low"), "{reason}");
    assert!(big["firmware"].as_object().unwrap().is_empty());
    assert!(!Path::new(big["output_dir"].as_str().unwrap()).exists(), "nothing is written for a skipped sketch");
    assert!(by[&plain.display().to_string()]["skip_reason"].is_null());
    assert_eq!((r["totals"]["sketches"].as_u64(), r["totals"]["ok"].as_u64(), r["totals"]["skipped"].as_u64()), (Some(6), Some(3), Some(3)));
    assert!(!unit_names(&r).contains(&"SPI".to_string()), "a skipped sketch's library is not built: {:?}", unit_names(&r));
    assert!(run.stdout.contains("6 sketches: 3 ok, 0 failed, 3 skipped"), "{}", run.stdout);
    let warning = format!("warning: {}:2: malformed @filter", broken.join("Broken.ino").display());
    assert!(run.stderr.contains(&warning), "one warning naming file and line: {}", run.stderr);
    assert_eq!(run.stderr.matches("malformed @filter").count(), 1);
    // Results stay in argument order, skipped sketches included.
    let names: Vec<&str> = r["sketches"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["BigOnly", "NotUno", "MegaTarget", "AvrOnly", "Broken", "Plain"]);

    // mega: the board and target filters admit it; it is still a low-memory board.
    let (run, r) = many(&cache, t.path(), &t.path().join("mega"), &["--board", "mega"], &all);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let st = status_of(&r);
    assert_eq!(st["BigOnly"], "skipped");
    for name in ["NotUno", "MegaTarget", "AvrOnly", "Broken", "Plain"] {
        assert_eq!(st[name], "ok", "{name}");
    }
    assert!(unit_names(&r).contains(&"SPI".to_string()), "NotUno's library is built on mega");

    // --memory-class large: the big sketch builds on mega too.
    let (run, r) = many(&cache, t.path(), &t.path().join("mega-large"), &["--board", "mega", "--memory-class", "large"], &all);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(r["totals"]["skipped"], 0);
    assert_eq!(r["totals"]["ok"], 6);

    // --no-filter: everything builds on uno.
    let (run, r) = many(&cache, t.path(), &t.path().join("uno-all"), &["--no-filter"], &all);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!((r["totals"]["ok"].as_u64(), r["totals"]["skipped"].as_u64()), (Some(6), Some(0)));
    assert!(!run.stderr.contains("malformed"), "filters are not read with --no-filter");

    // A bad --memory-class is a usage error.
    let bad = fbuild(&cache, t.path(), &["compile-many", "--memory-class", "giant", plain.to_str().unwrap()]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("tiny, low, large or huge") && bad.stderr.lines().count() == 1, "{}", bad.stderr);
}

#[test]
fn every_sketch_skipped_builds_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("examples");
    let a = sketch(&root, "A", &format!("// @filter (board is mega)\n{BODY}"), &[]);
    let b = sketch(&root, "B", &format!("// @filter\n// exclude:\n//   - platform: avr\n// @end-filter\n{BODY}"), &[]);
    let out = t.path().join("out");
    let (run, r) = many(&t.path().join("cache"), t.path(), &out, &[], &[a, b]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(r["totals"]["skipped"], 2);
    assert_eq!(r["totals"]["tool_processes"], 0, "not even the core is compiled");
    assert!(r["units"].as_array().unwrap().is_empty());
    assert!(run.stdout.contains("2 sketches: 0 ok, 0 failed, 2 skipped"), "{}", run.stdout);
}

/// A folder of wrappers for the AVR tools that log each start, then run the real
/// tool: an independent count of the processes fbuild starts.
fn logging_tools(dir: &Path, log: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    for tool in ["avr-gcc", "avr-g++", "avr-gcc-ar", "avr-objcopy", "avr-size"] {
        let path = dir.join(tool);
        std::fs::write(&path, format!("#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexec /usr/bin/{tool} \"$@\"\n", log.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!("compiler.path={}/", dir.display())
}

fn tool_starts(log: &Path) -> usize {
    std::fs::read_to_string(log).map(|s| s.lines().count()).unwrap_or(0)
}

/// What a user reads about each sketch: status, first error, sizes, diagnostics.
fn outcome(results: &serde_json::Value, out: &Path) -> BTreeMap<String, String> {
    results["sketches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let text = format!("{} | {} | {} | {} | {}", s["status"], s["first_error"], s["flash_used"], s["ram_used"], s["diagnostics"]);
            // Errors may name files in the output folder: compare runs into other folders fairly.
            (s["name"].as_str().unwrap().to_string(), text.replace(&out.display().to_string(), "OUT"))
        })
        .collect()
}

#[test]
fn warm_run_over_failing_links_starts_no_process_and_reports_the_same() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("sk");
    let cache = t.path().join("cache");
    let log = t.path().join("tools.log");
    let prop = logging_tools(&t.path().join("bin"), &log);
    // Overflows the linker refuses (it knows the chip's RAM and flash; fbuild then
    // measures them), and one it accepts but the size check refuses: 32486 bytes
    // fit the atmega328p's 32 KiB but not the 32256 the uno's bootloader leaves.
    let ram = sketch(&root, "RamOverflow", "volatile char buf[2100];\nvoid setup() { buf[0] = 1; }\nvoid loop() { buf[buf[0]]++; }\n", &[]);
    let ram_far = sketch(&root, "RamFarOver", "volatile char a[30000];\nvolatile char b[30000];\nvolatile char c[30000];\nvoid setup() {}\nvoid loop() { a[1]++; b[1]++; c[1]++; }\n", &[]);
    let flash = sketch(&root, "FlashOverflow", &flash_sketch(20000), &[]);
    let flash_size = sketch(&root, "FlashOverSizeCheck", &flash_sketch(16000), &[]);
    let undefined = sketch(&root, "Undefined", "void missing_function();\nvoid setup() {}\nvoid loop() { missing_function(); }\n", &[]);
    let twice = sketch(&root, "Twice", "int twice();\nvoid setup() {}\nvoid loop() { twice(); }\n", &[("a.cpp", "int twice() { return 1; }\n"), ("b.cpp", "int twice() { return 2; }\n")]);
    let fine = sketch(&root, "Fine", BODY, &[]);
    let all = vec![ram.clone(), ram_far.clone(), flash.clone(), flash_size.clone(), undefined.clone(), twice.clone(), fine.clone()];
    let flags = ["--build-property", prop.as_str(), "--framework-jobs", "1", "--sketch-jobs", "2"];

    let out = t.path().join("out");
    let (run, cold) = many(&cache, t.path(), &out, &flags, &all);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(tool_starts(&log) > 0, "the wrappers see the cold run's tools");
    let st = status_of(&cold);
    assert_eq!(st.values().filter(|s| *s == "failed").count(), 6, "{st:?}");
    assert_eq!(st["Fine"], "ok");
    let by = sketches_by_path(&cold);
    let first = |p: &PathBuf| by[&p.display().to_string()]["first_error"].as_str().unwrap_or("").to_string();
    assert!(first(&ram).contains("2109 bytes of RAM"), "the linker's overflow is measured: {}", first(&ram));
    assert!(first(&ram_far).contains("90009 bytes of RAM"), "{}", first(&ram_far));
    assert!(first(&flash).contains("40486 bytes of program storage"), "{}", first(&flash));
    assert!(first(&flash_size).contains("32486 bytes of program storage"), "{}", first(&flash_size));
    assert!(first(&undefined).contains("undefined reference to `missing_function()'"), "{}", first(&undefined));
    assert!(first(&twice).contains("multiple definition of `twice()'"), "{}", first(&twice));
    let cold_outcome = outcome(&cold, &out);

    // Warm, same output folder: nothing starts, the same errors and sizes.
    std::fs::remove_file(&log).unwrap();
    let (run, warm) = many(&cache, t.path(), &out, &flags, &all);
    assert_eq!(run.code, 1);
    assert_eq!(warm["totals"]["tool_processes"], 0, "{}", run.stderr);
    assert_eq!(tool_starts(&log), 0, "no compiler, linker or size tool started: {}", std::fs::read_to_string(&log).unwrap_or_default());
    assert_eq!(warm["totals"]["links_run"], 0);
    assert_eq!(outcome(&warm, &out), cold_outcome);
    let warm_by = sketches_by_path(&warm);
    assert_eq!(warm_by[&undefined.display().to_string()]["link"], "cached");
    let undefined_log = std::fs::read_to_string(warm_by[&undefined.display().to_string()]["log"].as_str().unwrap()).unwrap();
    assert!(undefined_log.contains("failed before with the same inputs") && undefined_log.contains("undefined reference"), "{undefined_log}");

    // Warm cache, fresh output folder: still nothing starts.
    let out2 = t.path().join("out2");
    let (run, warm2) = many(&cache, t.path(), &out2, &flags, &all);
    assert_eq!(run.code, 1);
    assert_eq!(warm2["totals"]["tool_processes"], 0);
    assert_eq!(tool_starts(&log), 0, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    assert_eq!(outcome(&warm2, &out2), cold_outcome);
}

#[test]
fn changing_a_link_input_links_again() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("sk");
    let cache = t.path().join("cache");
    let ram = sketch(&root, "RamOverflow", "volatile char buf[2100];\nvoid setup() { buf[0] = 1; }\nvoid loop() { buf[buf[0]]++; }\n", &[]);
    let undefined = sketch(&root, "Undefined", "void missing_function();\nvoid setup() {}\nvoid loop() { missing_function(); }\n", &[]);
    let helper = sketch(&root, "Helper", "void helper();\nvoid setup() {}\nvoid loop() { helper(); }\n", &[]);
    let flash = sketch(&root, "FlashOverSizeCheck", &flash_sketch(16000), &[]);
    let all = vec![ram.clone(), undefined.clone(), helper.clone(), flash.clone()];
    let out = t.path().join("out");
    let (run, _) = many(&cache, t.path(), &out, &[], &all);
    assert_eq!(run.code, 1);
    let (_, warm) = many(&cache, t.path(), &out, &[], &all);
    assert_eq!(warm["totals"]["links_run"], 0);

    // Define the missing function; grow the RAM sketch by a byte; give Helper its
    // function in a new file of its own.
    std::fs::write(undefined.join("Undefined.ino"), "void missing_function() {}\nvoid setup() {}\nvoid loop() { missing_function(); }\n").unwrap();
    std::fs::write(ram.join("RamOverflow.ino"), "volatile char buf[2101];\nvoid setup() { buf[0] = 1; }\nvoid loop() { buf[buf[0]]++; }\n").unwrap();
    std::fs::write(helper.join("helper.cpp"), "void helper() {}\n").unwrap();
    let (run, r) = many(&cache, t.path(), &out, &[], &all);
    assert_eq!(run.code, 1, "the RAM sketch still does not fit");
    assert_eq!(r["totals"]["links_run"], 3, "every changed link ran again");
    let by = sketches_by_path(&r);
    assert_eq!(by[&undefined.display().to_string()]["status"], "ok");
    assert_eq!(by[&helper.display().to_string()]["status"], "ok");
    let ram_r = &by[&ram.display().to_string()];
    assert_eq!(ram_r["status"], "failed");
    assert_eq!(ram_r["ram_used"], 2110, "measured again");

    // Raising the board's flash limit lets the remembered too-big sketch through,
    // from the cache: the limit is checked again, the link is not rerun. (The RAM
    // sketch stays refused: its linker failed, whatever the limit says.)
    let (run, r) = many(&cache, t.path(), &out, &["--build-property", "upload.maximum_size=32768"], &all);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let by = sketches_by_path(&r);
    let flash_r = &by[&flash.display().to_string()];
    assert_eq!(flash_r["status"], "ok");
    assert_eq!(flash_r["flash_used"], 32486);
    assert!(Path::new(flash_r["firmware"]["hex"].as_str().unwrap()).is_file());
    assert_eq!(by[&ram.display().to_string()]["status"], "failed");
    assert_eq!(r["totals"]["links_run"], 0);
}
