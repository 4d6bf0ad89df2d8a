//! Never compile or link the same thing twice: real-compiler tests that count the
//! processes fbuild starts (results.json `totals`) across rebuilds.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn many(cache: &Path, cwd: &Path, out: &Path, extra: &[&str], sketches: &[PathBuf]) -> Value {
    let mut args: Vec<String> = vec!["compile-many".into(), "--out".into(), out.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(cache, cwd, &argv);
    let r = read_json(&out.join("results.json"));
    // Exit 1 only when results.json says a sketch failed, 0 only when none did.
    let failed = r["totals"]["failed"].as_u64().unwrap();
    assert_eq!(run.code, if failed > 0 { 1 } else { 0 }, "exit {} with {failed} failed: {}", run.code, run.stderr);
    r
}

fn compiled(r: &Value) -> u64 {
    r["totals"]["objects_compiled"].as_u64().unwrap()
}

fn links(r: &Value) -> u64 {
    r["totals"]["links_run"].as_u64().unwrap()
}

fn processes(r: &Value) -> u64 {
    r["totals"]["tool_processes"].as_u64().unwrap()
}

fn ok(r: &Value) -> u64 {
    r["totals"]["ok"].as_u64().unwrap()
}

/// Every sketch's .hex, by sketch path; every sketch must have built.
fn hexes(r: &Value) -> std::collections::BTreeMap<String, Vec<u8>> {
    let all = r["sketches"].as_array().unwrap();
    assert!(!all.is_empty() && all.iter().all(|s| s["status"] == "ok"), "every sketch should have built: {r}");
    all.iter().map(|s| (s["path"].as_str().unwrap().to_string(), std::fs::read(s["firmware"]["hex"].as_str().unwrap()).unwrap())).collect()
}

/// Two runs of the same sketches: the same sketches, the same statuses, and
/// byte-identical .hex files for those that built. Returns how many were compared.
fn same_firmware(a: &Value, b: &Value) -> usize {
    let (a, b) = (sketches_by_path(a), sketches_by_path(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "different sketch sets");
    let mut compared = 0;
    for (path, ra) in &a {
        let rb = &b[path];
        assert_eq!(ra["status"], rb["status"], "{path}");
        if ra["status"] == "ok" {
            let read = |r: &Value| std::fs::read(r["firmware"]["hex"].as_str().unwrap()).unwrap();
            assert!(read(ra) == read(rb), "{path}: .hex differs");
            compared += 1;
        }
    }
    compared
}

#[test]
fn warm_runs_start_no_compiler_or_linker() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let sketches = sketch_dirs(&corpus());
    let cold = many(&cache, t.path(), &t.path().join("out"), &[], &sketches);
    assert_eq!(ok(&cold), 68, "68 of the 81 examples build on uno");
    assert!(compiled(&cold) > 80 && links(&cold) >= 68);
    // Same output folder, nothing changed: nothing runs at all.
    let warm = many(&cache, t.path(), &t.path().join("out"), &[], &sketches);
    assert_eq!(processes(&warm), 0, "no tool process on a no-change run");
    assert_eq!(warm["totals"]["ok"], cold["totals"]["ok"]);
    assert!(warm["sketches"].as_array().unwrap().iter().filter(|s| s["status"] == "ok").all(|s| s["link"] == "up_to_date"));
    // A second checkout: fresh output folder, warm cache. Still no process.
    let second = many(&cache, t.path(), &t.path().join("out2"), &[], &sketches);
    assert_eq!(compiled(&second), 0);
    assert_eq!(links(&second), 0);
    assert!(second["sketches"].as_array().unwrap().iter().filter(|s| s["status"] == "ok").all(|s| s["link"] == "cached"));
    assert_eq!(same_firmware(&second, &cold), 68);
    // The failing sketches fail the same way from the cache's point of view too.
    assert_eq!(second["totals"]["failed"], cold["totals"]["failed"]);
}

#[test]
fn editing_one_sketch_rebuilds_only_that_sketch() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let copy = t.path().join("src");
    copy_dir(&example("01.Basics"), &copy);
    let sketches = sketch_dirs(&copy);
    let out = t.path().join("out");
    many(&cache, t.path(), &out, &[], &sketches);
    let blink = copy.join("Blink/Blink.ino");
    let text = std::fs::read_to_string(&blink).unwrap().replace("delay(1000);", "delay(500);");
    std::fs::write(&blink, text).unwrap();
    let r = many(&cache, t.path(), &out, &[], &sketches);
    assert_eq!(compiled(&r), 1, "only Blink's merged .ino.cpp");
    assert_eq!(links(&r), 1, "only Blink relinks");
    let b = &sketches_by_path(&r)[&copy.join("Blink").display().to_string()];
    assert_eq!(b["link"], "linked");
}

/// A platform copy we may edit: the real AVR core under a private --hardware folder.
fn private_platform(root: &Path) -> PathBuf {
    let hw = root.join("hw");
    let avr = hw.join("mine/avr");
    copy_dir(Path::new("/usr/share/arduino/hardware/arduino/avr"), &avr);
    hw
}

#[test]
fn header_changes_rebuild_exactly_their_dependents() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let hw = private_platform(t.path());
    let board = "mine:avr:uno";
    // A sketch with its own header and a library from the (private) platform.
    let sk = t.path().join("sk/HeaderUser");
    std::fs::create_dir_all(&sk).unwrap();
    std::fs::write(sk.join("config.h"), "#define WAIT 100\n").unwrap();
    std::fs::write(sk.join("HeaderUser.ino"), "#include \"config.h\"\n#include <EEPROM.h>\n#include <SPI.h>\nvoid setup() { SPI.begin(); EEPROM.write(0, 1); }\nvoid loop() { delay(WAIT); }\n").unwrap();
    let blink = t.path().join("sk/Blink");
    copy_dir(&example("01.Basics/Blink"), &blink);
    let sketches = vec![sk.clone(), blink.clone()];
    let out = t.path().join("out");
    let flags = ["--board", board, "--hardware", hw.to_str().unwrap()];
    let cold = many(&cache, t.path(), &out, &flags, &sketches);
    assert_eq!(ok(&cold), 2, "{cold}");
    let before = hexes(&cold);

    // 1. The sketch's own header: one compile, one link.
    std::fs::write(sk.join("config.h"), "#define WAIT 200\n").unwrap();
    let r = many(&cache, t.path(), &out, &flags, &sketches);
    assert_eq!((compiled(&r), links(&r)), (1, 1), "sketch header");
    assert_ne!(hexes(&r)[&sk.display().to_string()], before[&sk.display().to_string()]);

    // 2. A library header (SPI.h, comment only): SPI's objects and the sketch that includes it.
    let spi_h = hw.join("mine/avr/libraries/SPI/src/SPI.h");
    let mut text = std::fs::read_to_string(&spi_h).unwrap();
    text.push_str("\n// touched\n");
    std::fs::write(&spi_h, text).unwrap();
    let r = many(&cache, t.path(), &out, &flags, &sketches);
    assert_eq!(compiled(&r), 2, "SPI.cpp and HeaderUser.ino.cpp");
    assert_eq!(links(&r), 1);

    // 3. A core header read by everything: the whole core and both sketches.
    let arduino_h = hw.join("mine/avr/cores/arduino/Arduino.h");
    let mut text = std::fs::read_to_string(&arduino_h).unwrap();
    text.push_str("\n// touched\n");
    std::fs::write(&arduino_h, text).unwrap();
    let r = many(&cache, t.path(), &out, &flags, &sketches);
    let core_objects = r["units"][0]["objects_compiled"].as_u64().unwrap();
    assert!(core_objects >= 15, "core objects that include Arduino.h rebuilt: {core_objects}");
    assert_eq!(links(&r), 2);
    // Comments only: firmware unchanged, and no stale object was used.
    let after = hexes(&r);
    assert_eq!(after[&blink.display().to_string()], before[&blink.display().to_string()]);
}

#[test]
fn build_property_and_board_changes_rebuild_and_switching_back_hits() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let sketches = vec![example("01.Basics/Blink"), example("01.Basics/Fade")];
    let out = t.path().join("out");
    let base = many(&cache, t.path(), &out, &[], &sketches);
    let r = many(&cache, t.path(), &out, &["--build-property", "build.extra_flags=-DFBUILD_TEST=1"], &sketches);
    assert!(compiled(&r) >= 27, "every object sees the new flag: {}", compiled(&r));
    assert_eq!(links(&r), 2);
    let mega = many(&cache, t.path(), &out, &["--board", "mega"], &sketches);
    assert!(compiled(&mega) >= 27);
    assert_ne!(mega["stage1_key"], base["stage1_key"]);
    // Back to plain uno: everything comes from the cache.
    let back = many(&cache, t.path(), &out, &[], &sketches);
    assert_eq!(processes(&back), 0);
    assert_eq!(back["stage1_key"], base["stage1_key"]);
    assert_eq!(hexes(&back), hexes(&base));
    assert_eq!(ok(&back), 2);
}

/// Fault injection: a real avr-gcc cannot change its version in place, so a wrapper
/// that reports a different `--version` stands in for an upgraded compiler.
#[test]
fn a_different_compiler_version_rebuilds_everything() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let sketches = vec![example("01.Basics/Blink")];
    let out = t.path().join("out");
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let write_wrappers = |tag: &str| {
        for tool in ["avr-gcc", "avr-g++"] {
            let script = format!("#!/bin/sh\nif [ \"$1\" = --version ]; then /usr/bin/{tool} --version | sed 's/5\\.4\\.0/5.4.0-{tag}/'; exit 0; fi\nexec /usr/bin/{tool} \"$@\"\n");
            let p = bin.join(tool);
            std::fs::write(&p, script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for tool in ["avr-gcc-ar", "avr-objcopy", "avr-size"] {
            let _ = std::os::unix::fs::symlink(format!("/usr/bin/{tool}"), bin.join(tool));
        }
    };
    let prop = format!("compiler.path={}/", bin.display());
    write_wrappers("a");
    let a = many(&cache, t.path(), &out, &["--build-property", &prop], &sketches);
    assert!(compiled(&a) >= 26);
    let again = many(&cache, t.path(), &out, &["--build-property", &prop], &sketches);
    assert_eq!(processes(&again), 0);
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_wrappers("b");
    let b = many(&cache, t.path(), &out, &["--build-property", &prop], &sketches);
    assert!(compiled(&b) >= 26, "a new compiler identity misses every object: {}", compiled(&b));
    assert_eq!(hexes(&a), hexes(&b));
    assert_eq!(ok(&b), 1);
}

#[test]
fn corrupt_cache_entries_are_detected_and_rebuilt() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let sketches = vec![example("01.Basics/Blink")];
    let clean = many(&cache, t.path(), &t.path().join("out0"), &[], &sketches);
    // Truncate every cached object and flip a bit in every cached link output.
    let files = files_under(&cache);
    let mut damaged = 0;
    for f in files.iter().filter(|f| f.file_name().unwrap() != "meta.json") {
        let s = f.to_string_lossy();
        if !(s.contains("/object/") || s.contains("/link/") || s.contains("/archive/")) || s.ends_with(".rec") {
            continue;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = std::fs::read(f).unwrap();
        if s.contains("/object/") {
            bytes.truncate(bytes.len() / 2);
        } else {
            let n = bytes.len() / 2;
            bytes[n] ^= 0x01;
        }
        std::fs::write(f, bytes).unwrap();
        damaged += 1;
    }
    assert!(damaged >= 27, "damaged {damaged}");
    let r = many(&cache, t.path(), &t.path().join("out1"), &[], &sketches);
    assert!(compiled(&r) >= 26, "damaged objects are rebuilt, not used");
    assert_eq!(links(&r), 1, "a damaged link entry is not used");
    assert_eq!(same_firmware(&r, &clean), 1);
}

#[test]
fn no_cache_flag_and_cache_commands() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let sketches = vec![example("01.Basics/Blink")];
    let r = many(&cache, t.path(), &t.path().join("o1"), &["--no-cache"], &sketches);
    assert_eq!(r["cache"]["enabled"], false);
    assert!(!cache.join("v1").exists(), "--no-cache writes nothing to the cache");
    many(&cache, t.path(), &t.path().join("o2"), &[], &sketches);
    let dir = fbuild(&cache, t.path(), &["cache", "dir"]);
    assert_eq!(dir.stdout.trim(), cache.display().to_string());
    let stats = fbuild(&cache, t.path(), &["cache", "stats", "--json"]);
    assert_eq!(stats.code, 0);
    let s: Value = serde_json::from_str(&stats.stdout).unwrap();
    assert!(s["entries"].as_u64().unwrap() >= 27, "{s}");
    // Every object compiled was a manifest miss, then stored.
    assert!(s["total"]["namespaces"]["manifest"]["misses"].as_u64().unwrap() >= 26, "{s}");
    assert!(s["total"]["namespaces"]["object"]["stores"].as_u64().unwrap() >= 26, "{s}");
    assert!(cache.join("file-hashes-v1").exists(), "the run kept its file hashes");
    let clean = fbuild(&cache, t.path(), &["cache", "clean"]);
    assert_eq!(clean.code, 0);
    assert!(!cache.join("file-hashes-v1").exists(), "cache clean removes the kept-hash table");
    let s: Value = serde_json::from_str(&fbuild(&cache, t.path(), &["cache", "stats", "--json"]).stdout).unwrap();
    assert_eq!(s["entries"], 0);
}

fn cache_stats(cache: &Path) -> Value {
    let r = fbuild(cache, cache.parent().unwrap(), &["cache", "stats", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// The bound holds, and it holds by dropping the least recently used entries: a
/// cache that stored nothing, or dropped the newest, fails here.
#[test]
fn cache_size_bound_evicts_least_recently_used_first() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let sketches = vec![example("01.Basics/Blink")];
    let flags_a = ["--build-property", "build.extra_flags=-DEVICT_CONFIG=1"];
    let flags_b = ["--build-property", "build.extra_flags=-DEVICT_CONFIG=2"];
    // Configuration A, unbounded: every object, archive and link result is stored.
    let a = many(&cache, t.path(), &t.path().join("a"), &flags_a, &sketches);
    assert_eq!(a["totals"]["ok"], 1);
    let s = cache_stats(&cache);
    let (entries_a, bytes_a) = (s["entries"].as_u64().unwrap(), s["bytes"].as_u64().unwrap());
    assert!(entries_a >= 27 && bytes_a > 0, "the cache stored what configuration A built: {s}");
    assert!(s["total"]["namespaces"]["object"]["stores"].as_u64().unwrap() >= 26, "{s}");

    // Configuration B (every object differs) under a bound that holds B but not A and B:
    // A's entries, used least recently, must go, and B's stay.
    let bound = bytes_a * 3 / 2;
    let bound_arg = bound.to_string();
    let mut bounded_b: Vec<&str> = flags_b.to_vec();
    bounded_b.extend(["--cache-max-size", bound_arg.as_str()]);
    let b = many(&cache, t.path(), &t.path().join("b"), &bounded_b, &sketches);
    assert_eq!(b["totals"]["ok"], 1);
    assert!(compiled(&b) >= 26, "B shares no object with A: {}", compiled(&b));
    let s = cache_stats(&cache);
    let (entries, bytes) = (s["entries"].as_u64().unwrap(), s["bytes"].as_u64().unwrap());
    assert!(bytes <= bound, "{bytes} bytes kept, bound {bound}: {s}");
    assert!(entries >= 27 && bytes >= bytes_a / 2, "eviction kept B's entries, not an empty cache: {s}");
    assert!(entries < 2 * entries_a, "some of A's {entries_a} entries were evicted: {entries} left");

    // B, the most recently used, is whole: nothing compiles or links, same firmware.
    let b2 = many(&cache, t.path(), &t.path().join("b2"), &flags_b, &sketches);
    assert_eq!((compiled(&b2), links(&b2)), (0, 0), "B lost entries to eviction while A's were older");
    assert_eq!(same_firmware(&b2, &b), 1);
    // A lost entries: it compiles again, and still builds the same firmware.
    let a2 = many(&cache, t.path(), &t.path().join("a2"), &flags_a, &sketches);
    assert!(compiled(&a2) >= 1, "A's entries were the least recently used, so they went first");
    assert_eq!(same_firmware(&a2, &a), 1);
}

#[test]
fn a_remembered_compile_failure_never_outlives_its_cause() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let sk = t.path().join("Broken");
    std::fs::create_dir_all(&sk).unwrap();
    std::fs::write(sk.join("Broken.ino"), "#include \"helper.h\"\nvoid setup() { helper(); }\nvoid loop() {}\n").unwrap();
    let out = t.path().join("out");
    let first = many(&cache, t.path(), &out, &[], &[sk.clone()]);
    let err = first["sketches"][0]["first_error"].as_str().unwrap().to_string();
    assert!(err.contains("helper.h: No such file or directory"), "{err}");
    // Same inputs: the failure is reported again without running the compiler.
    let again = many(&cache, t.path(), &out, &[], &[sk.clone()]);
    assert_eq!(again["sketches"][0]["status"], "failed");
    assert_eq!(again["sketches"][0]["first_error"].as_str().unwrap(), err);
    assert_eq!(processes(&again), 0);
    // The missing header appears, but declares nothing useful: compile again, new error.
    std::fs::write(sk.join("helper.h"), "#pragma once\n").unwrap();
    let r = many(&cache, t.path(), &out, &[], &[sk.clone()]);
    assert!(processes(&r) >= 1);
    let err2 = r["sketches"][0]["first_error"].as_str().unwrap();
    assert!(err2.contains("Broken.ino:2") && err2.contains("helper"), "{err2}");
    // Fixing the header (a file the sketch reaches only through its include) fixes the build.
    std::fs::write(sk.join("helper.h"), "#pragma once\ninline void helper() {}\n").unwrap();
    let fixed = many(&cache, t.path(), &out, &[], &[sk.clone()]);
    assert_eq!(fixed["sketches"][0]["status"], "ok", "{fixed}");
}

/// A header in the compiler's own include folders (like avr-libc's) is not listed in
/// `-MMD` depfiles, so only the compiler identity can notice it changed. A wrapper
/// adds a private folder to the compiler's system search list (standing in for an
/// avr-libc upgrade, which a test cannot perform on the real one).
#[test]
fn a_changed_system_header_is_never_served_stale() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let sys = t.path().join("sysinc");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("board_tune.h"), "#define TUNE 100\n").unwrap();
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["avr-gcc", "avr-g++"] {
        let p = bin.join(tool);
        std::fs::write(&p, format!("#!/bin/sh\nexec /usr/bin/{tool} -isystem {} \"$@\"\n", sys.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for tool in ["avr-gcc-ar", "avr-objcopy", "avr-size"] {
        std::os::unix::fs::symlink(format!("/usr/bin/{tool}"), bin.join(tool)).unwrap();
    }
    let sk = t.path().join("Tuned");
    std::fs::create_dir_all(&sk).unwrap();
    std::fs::write(sk.join("Tuned.ino"), "#include <board_tune.h>\nvoid setup() {}\nvoid loop() { delay(TUNE); }\n").unwrap();
    let prop = format!("compiler.path={}/", bin.display());
    let flags = ["--build-property", prop.as_str()];
    let first = many(&cache, t.path(), &t.path().join("out"), &flags, &[sk.clone()]);
    assert_eq!(first["totals"]["ok"], 1, "{first}");
    let warm = many(&cache, t.path(), &t.path().join("out"), &flags, &[sk.clone()]);
    assert_eq!(processes(&warm), 0);
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(sys.join("board_tune.h"), "#define TUNE 250\n").unwrap();
    let changed = many(&cache, t.path(), &t.path().join("out2"), &flags, &[sk.clone()]);
    assert!(compiled(&changed) >= 1, "the sketch must be recompiled");
    assert_ne!(hexes(&changed).into_values().next(), hexes(&first).into_values().next(), "new delay, new firmware");
    assert_eq!(ok(&changed), 1);
}
