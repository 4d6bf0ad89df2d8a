//! compile-many end to end on real sketches with the real toolchain.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn args_with(out: &Path, extra: &[&str], sketches: &[PathBuf]) -> Vec<String> {
    let mut v: Vec<String> = vec!["compile-many".into(), "--out".into(), out.display().to_string()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v.extend(sketches.iter().map(|p| p.display().to_string()));
    v
}

fn run_many(cache: &Path, cwd: &Path, out: &Path, extra: &[&str], sketches: &[PathBuf]) -> (Run, serde_json::Value) {
    let args = args_with(out, extra, sketches);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(cache, cwd, &argv);
    let results = read_json(&out.join("results.json"));
    (run, results)
}

#[test]
fn results_and_phases_describe_what_happened() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let sketches = vec![example("01.Basics/Blink"), example("04.Communication/MultiSerial"), example("02.Digital/toneMelody")];
    let (run, results) = run_many(&t.path().join("cache"), t.path(), &out, &[], &sketches);
    assert_eq!(run.code, 1, "MultiSerial cannot build on uno (no Serial1): {}", run.stderr);
    assert_eq!(results["board"], "uno");
    assert_eq!(results["fqbn"], "arduino:avr:uno");
    assert_eq!(results["stage1_key"].as_str().unwrap().len(), 64);
    assert!(Path::new(results["archives"][0].as_str().unwrap()).is_file(), "core.a exists");
    let by = sketches_by_path(&results);
    let blink = &by[&sketches[0].display().to_string()];
    assert_eq!(blink["status"], "ok");
    assert_eq!(blink["flash_used"], 930);
    assert_eq!(blink["ram_used"], 9);
    assert_eq!(blink["flash_max"], 32256);
    assert_eq!(blink["ram_max"], 2048);
    for kind in ["hex", "eep", "elf"] {
        assert!(Path::new(blink["firmware"][kind].as_str().unwrap()).is_file(), "{kind}");
    }
    let multi = &by[&sketches[1].display().to_string()];
    assert_eq!(multi["status"], "failed");
    let first = multi["first_error"].as_str().unwrap();
    assert!(first.contains("MultiSerial.ino:") && first.contains("Serial1"), "{first}");
    let diag = &multi["diagnostics"][0];
    assert_eq!(diag["severity"], "error");
    assert!(diag["file"].as_str().unwrap().ends_with("MultiSerial/MultiSerial.ino"));
    assert!(diag["line"].as_u64().unwrap() > 0);
    assert!(Path::new(multi["log"].as_str().unwrap()).is_file());
    assert!(multi["firmware"].as_object().unwrap().is_empty(), "a failed sketch presents no firmware");
    assert_eq!(results["totals"]["ok"], 2);
    assert_eq!(results["totals"]["failed"], 1);

    let phases = std::fs::read_to_string(out.join("phases.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = phases.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows[0], vec!["phase", "seconds", "count"]);
    for name in ["load", "discover", "stage1_archives", "stage2_sketches", "total"] {
        let row = rows.iter().find(|r| r[0] == name).unwrap_or_else(|| panic!("row {name} in {phases}"));
        assert!(row[1].parse::<f64>().unwrap() >= 0.0);
    }
    assert_eq!(rows.iter().find(|r| r[0] == "stage2_sketches").unwrap()[2], "3");

    // The summary names the failed sketch, its first error and its log.
    assert!(run.stdout.contains("MultiSerial") && run.stdout.contains("log: "), "{}", run.stdout);

    // `fbuild build` is the same pipeline: the same firmware.
    let single = t.path().join("single");
    let b = fbuild(&t.path().join("cache2"), t.path(), &["build", "--out", single.to_str().unwrap(), sketches[0].to_str().unwrap()]);
    assert_eq!(b.code, 0, "{}", b.stderr);
    assert!(b.stdout.contains("Sketch uses 930 bytes"), "{}", b.stdout);
    let hex_line = b.stdout.lines().find(|l| l.starts_with("Firmware: ")).unwrap();
    let single_hex = std::fs::read(hex_line.trim_start_matches("Firmware: ")).unwrap();
    assert_eq!(single_hex, std::fs::read(blink["firmware"]["hex"].as_str().unwrap()).unwrap());
}

#[test]
fn exit_code_zero_when_all_build_and_results_can_move() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let results = t.path().join("elsewhere/r.json");
    let phases = t.path().join("elsewhere/p.tsv");
    let args = args_with(
        &out,
        &["--results", results.to_str().unwrap(), "--phases", phases.to_str().unwrap(), "--sketch-jobs", "1", "--framework-jobs", "1"],
        &[example("01.Basics/Blink"), example("01.Basics/Fade")],
    );
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(&t.path().join("cache"), t.path(), &argv);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(read_json(&results)["totals"]["ok"], 2);
    assert!(std::fs::read_to_string(&phases).unwrap().contains("stage1_archives"));
    assert!(!out.join("results.json").exists());
}

#[test]
fn folder_argument_expands_to_every_sketch_below_it() {
    let t = tempfile::tempdir().unwrap();
    let folder = example("01.Basics");
    let expected = sketch_dirs(&folder);
    assert!(expected.len() >= 5);
    let (run, results) = run_many(&t.path().join("cache"), t.path(), &t.path().join("out"), &[], &[folder]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got: Vec<String> = results["sketches"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap().to_string()).collect();
    let want: Vec<String> = expected.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(got, want);
}

#[test]
fn sketches_from_file() {
    let t = tempfile::tempdir().unwrap();
    let list = t.path().join("list.txt");
    std::fs::write(&list, format!("# two sketches\n{}\n\n{}\n", example("01.Basics/Blink").display(), example("01.Basics/Fade").display())).unwrap();
    let (run, results) = run_many(&t.path().join("cache"), t.path(), &t.path().join("out"), &["--sketches-from", list.to_str().unwrap()], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(results["sketches"].as_array().unwrap().len(), 2);
}

#[test]
fn same_folder_name_in_two_places_does_not_collide() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a/Blink");
    let b = t.path().join("b/Blink");
    copy_dir(&example("01.Basics/Blink"), &a);
    copy_dir(&example("01.Basics/Blink"), &b);
    let ino = b.join("Blink.ino");
    let text = std::fs::read_to_string(&ino).unwrap().replace("delay(1000);", "delay(250);");
    std::fs::write(&ino, text).unwrap();
    let (run, results) = run_many(&t.path().join("cache"), t.path(), &t.path().join("out"), &[], &[a.clone(), b.clone()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = results["sketches"].as_array().unwrap();
    assert_ne!(s[0]["output_dir"], s[1]["output_dir"]);
    let ha = std::fs::read(s[0]["firmware"]["hex"].as_str().unwrap()).unwrap();
    let hb = std::fs::read(s[1]["firmware"]["hex"].as_str().unwrap()).unwrap();
    assert_ne!(ha, hb, "each output folder holds its own sketch's firmware");
}

#[test]
fn two_processes_at_once_share_a_cache_and_agree() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let all = sketch_dirs(&example("02.Digital"));
    let first: Vec<PathBuf> = all[..all.len() - 2].to_vec();
    let second: Vec<PathBuf> = all[2..].to_vec();
    let spawn = |out: &Path, sketches: &[PathBuf]| {
        std::process::Command::new(fbuild_bin())
            .args(args_with(out, &[], sketches))
            .env("FBUILD_CACHE_DIR", &cache)
            .env("CI", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out1 = t.path().join("o1");
    let out2 = t.path().join("o2");
    let p1 = spawn(&out1, &first);
    let p2 = spawn(&out2, &second);
    let r1 = p1.wait_with_output().unwrap();
    let r2 = p2.wait_with_output().unwrap();
    assert_eq!(r1.status.code(), Some(0), "{}", String::from_utf8_lossy(&r1.stderr));
    assert_eq!(r2.status.code(), Some(0), "{}", String::from_utf8_lossy(&r2.stderr));
    let a = sketches_by_path(&read_json(&out1.join("results.json")));
    let b = sketches_by_path(&read_json(&out2.join("results.json")));
    let mut shared = 0;
    for (path, ra) in &a {
        if let Some(rb) = b.get(path) {
            shared += 1;
            let ha = std::fs::read(ra["firmware"]["hex"].as_str().unwrap()).unwrap();
            let hb = std::fs::read(rb["firmware"]["hex"].as_str().unwrap()).unwrap();
            assert_eq!(ha, hb, "{path}");
        }
    }
    assert!(shared >= 2);
    // And both agree with a build from an empty cache.
    let fresh = tempfile::tempdir().unwrap();
    let (run, clean) = run_many(&fresh.path().join("cache"), fresh.path(), &fresh.path().join("out"), &[], &all);
    assert_eq!(run.code, 0);
    for (path, rc) in sketches_by_path(&clean) {
        let r = a.get(&path).or_else(|| b.get(&path)).unwrap();
        assert_eq!(
            std::fs::read(rc["firmware"]["hex"].as_str().unwrap()).unwrap(),
            std::fs::read(r["firmware"]["hex"].as_str().unwrap()).unwrap(),
            "{path}"
        );
    }
}

#[test]
fn boards_lists_every_installed_board() {
    let t = tempfile::tempdir().unwrap();
    let run = fbuild(&t.path().join("cache"), t.path(), &["boards"]);
    assert_eq!(run.code, 0);
    let uno = run.stdout.lines().find(|l| l.starts_with("uno ")).expect("uno listed");
    assert!(uno.contains("arduino:avr:uno") && uno.contains("atmega328p") && uno.contains("32256") && uno.contains("2048"), "{uno}");
    let mega = run.stdout.lines().find(|l| l.starts_with("mega ")).expect("mega listed");
    assert!(mega.contains("atmega2560") && mega.contains("253952"), "{mega}");
}

#[test]
fn verbose_says_which_menu_option_and_quirk_apply() {
    let t = tempfile::tempdir().unwrap();
    let run = fbuild(&t.path().join("cache"), t.path(), &["build", "--board", "nano", "-v", example("01.Basics/Blink").to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("menu 'cpu' not given, using its first option 'atmega328'"), "{}", run.stderr);
    assert!(run.stderr.contains("-DDECIMAL_DIG=__DECIMAL_DIG__"), "{}", run.stderr);
    assert!(run.stderr.contains("avr-g++") && run.stderr.contains("-mmcu=atmega328p"), "every command is printed");
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

#[test]
fn a_broken_library_fails_only_the_sketches_that_use_it() {
    let t = tempfile::tempdir().unwrap();
    let libs = t.path().join("libs");
    write(&libs.join("Broken/library.properties"), "name=Broken\nversion=1.0\narchitectures=*\n");
    write(&libs.join("Broken/src/Broken.h"), "int broken();\n");
    write(&libs.join("Broken/src/Broken.cpp"), "#include \"Broken.h\"\nint broken() { return not_declared_anywhere; }\n");
    let user = t.path().join("sk/UsesBroken");
    write(&user.join("UsesBroken.ino"), "#include <Broken.h>\nvoid setup() { broken(); }\nvoid loop() {}\n");
    let sketches = vec![user.clone(), example("01.Basics/Blink")];
    let (run, results) = run_many(&t.path().join("cache"), t.path(), &t.path().join("out"), &["--libraries", libs.to_str().unwrap()], &sketches);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let by = sketches_by_path(&results);
    let failed = &by[&user.display().to_string()];
    assert_eq!(failed["status"], "failed");
    let first = failed["first_error"].as_str().unwrap();
    assert!(first.starts_with("library Broken failed to compile: "), "{first}");
    assert!(first.contains("Broken.cpp:2") && first.contains("not_declared_anywhere"), "{first}");
    assert!(first.contains("build.log"), "names the unit's log: {first}");
    assert_eq!(by[&example("01.Basics/Blink").display().to_string()]["status"], "ok");
    let unit = results["units"].as_array().unwrap().iter().find(|u| u["name"] == "Broken").unwrap();
    assert_eq!(unit["status"], "failed");
    assert!(Path::new(unit["log"].as_str().unwrap()).is_file());
}

#[test]
fn dot_a_linkage_library_is_archived_and_linked() {
    let t = tempfile::tempdir().unwrap();
    let libs = t.path().join("libs");
    write(&libs.join("Blinker/library.properties"), "name=Blinker\nversion=1.0\narchitectures=avr\ndot_a_linkage=true\n");
    write(&libs.join("Blinker/src/Blinker.h"), "#include <Arduino.h>\nvoid blinkOnce(uint8_t pin);\n");
    write(&libs.join("Blinker/src/Blinker.cpp"), "#include \"Blinker.h\"\nvoid blinkOnce(uint8_t pin) { digitalWrite(pin, HIGH); delay(100); digitalWrite(pin, LOW); }\n");
    let sk = t.path().join("sk/UsesBlinker");
    write(&sk.join("UsesBlinker.ino"), "#include <Blinker.h>\nvoid setup() { pinMode(13, OUTPUT); }\nvoid loop() { blinkOnce(13); }\n");
    let idle = t.path().join("sk/IncludesOnly");
    write(&idle.join("IncludesOnly.ino"), "#include <Blinker.h>\nvoid setup() { pinMode(13, OUTPUT); }\nvoid loop() {}\n");
    let (run, results) = run_many(&t.path().join("cache"), t.path(), &t.path().join("out"), &["--libraries", libs.to_str().unwrap()], &[sk.clone(), idle]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let unit = results["units"].as_array().unwrap().iter().find(|u| u["name"] == "Blinker").unwrap();
    let archive = unit["archive"].as_str().expect("an archive for dot_a_linkage");
    assert!(archive.ends_with("Blinker.a") && Path::new(archive).is_file());
    let core = results["archives"][0].as_str().unwrap();
    assert!(core.ends_with("core/core.a") && Path::new(core).is_file(), "the library went to its own archive, not core.a");
    let s = &results["sketches"];
    assert_eq!(s[0]["libraries"][0]["name"], "Blinker");
    assert_eq!(s[0]["libraries"][0]["version"], "1.0");
    assert_eq!(s[0]["libraries"][0]["folder"], libs.join("Blinker").display().to_string());
    assert_eq!(s[0]["libraries"].as_array().unwrap().len(), 1);
    // The call pulls blinkOnce out of Blinker.a; the sketch that never calls it leaves it out.
    assert!(s[0]["flash_used"].as_u64().unwrap() > s[1]["flash_used"].as_u64().unwrap());
}

#[test]
fn platform_hooks_run_at_their_stage() {
    let t = tempfile::tempdir().unwrap();
    let hw = t.path().join("hw");
    let avr = hw.join("mine/avr");
    copy_dir(Path::new("/usr/share/arduino/hardware/arduino/avr"), &avr);
    write(
        &avr.join("platform.local.txt"),
        "recipe.hooks.sketch.prebuild.1.pattern=touch \"{build.path}/prebuild-ran\"\nrecipe.hooks.objcopy.postobjcopy.1.pattern=cp \"{build.path}/{build.project_name}.hex\" \"{build.path}/copy-of.hex\"\n",
    );
    let (run, results) = run_many(&t.path().join("cache"), t.path(), &t.path().join("out"), &["--board", "mine:avr:uno", "--hardware", hw.to_str().unwrap()], &[example("01.Basics/Blink")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dir = PathBuf::from(results["sketches"][0]["output_dir"].as_str().unwrap());
    assert!(dir.join("prebuild-ran").is_file());
    assert_eq!(std::fs::read(dir.join("copy-of.hex")).unwrap(), std::fs::read(dir.join("Blink.ino.hex")).unwrap());
}

#[test]
fn another_platforms_branch_does_not_pull_in_its_library() {
    // MultiArch includes SamdDma only under ARDUINO_ARCH_SAMD; SamdDma does not even
    // compile on AVR. On uno it must be neither compiled nor linked.
    let t = tempfile::tempdir().unwrap();
    let libs = t.path().join("libs");
    write(&libs.join("MultiArch/library.properties"), "name=MultiArch\nversion=1.0\narchitectures=*\n");
    write(
        &libs.join("MultiArch/src/MultiArch.h"),
        "#pragma once\n#if defined(ARDUINO_ARCH_SAMD)\n#include <SamdDma.h>\n#elif defined(__AVR__) && ARDUINO >= 100\n#include <Arduino.h>\n#endif\nint multi();\n",
    );
    write(&libs.join("MultiArch/src/MultiArch.cpp"), "#include \"MultiArch.h\"\nint multi() { return 7; }\n");
    write(&libs.join("SamdDma/library.properties"), "name=SamdDma\nversion=1.0\narchitectures=samd\n");
    write(&libs.join("SamdDma/src/SamdDma.h"), "#pragma once\n#error SamdDma needs a SAMD board\n");
    write(&libs.join("SamdDma/src/SamdDma.cpp"), "#include \"SamdDma.h\"\n");
    let sk = t.path().join("sk/UsesMulti");
    write(&sk.join("UsesMulti.ino"), "#include <MultiArch.h>\nvoid setup() { Serial.begin(9600); }\nvoid loop() { Serial.println(multi()); }\n");
    let (run, results) = run_many(&t.path().join("cache"), t.path(), &t.path().join("out"), &["--libraries", libs.to_str().unwrap()], &[sk]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let used: Vec<&str> = results["sketches"][0]["libraries"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(used, vec!["MultiArch"]);
    assert!(results["units"].as_array().unwrap().iter().all(|u| u["name"] != "SamdDma"));
}

#[test]
fn library_flag_overrides_the_platform_library_and_missing_header_names_folders() {
    let t = tempfile::tempdir().unwrap();
    let mine = t.path().join("mylibs/SPI");
    copy_dir(Path::new("/usr/share/arduino/hardware/arduino/avr/libraries/SPI"), &mine);
    let sk = t.path().join("sk/UsesSpi");
    write(&sk.join("UsesSpi.ino"), "#include <SPI.h>\nvoid setup() { SPI.begin(); }\nvoid loop() {}\n");
    let (run, results) = run_many(&t.path().join("cache"), t.path(), &t.path().join("out"), &["--library", mine.to_str().unwrap()], &[sk.clone()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let unit = results["units"].as_array().unwrap().iter().find(|u| u["name"] == "SPI").unwrap();
    // The unit's objects come from our copy: its log names the copy's sources.
    let log = std::fs::read_to_string(unit["log"].as_str().unwrap()).unwrap();
    assert!(log.contains(mine.join("src/SPI.cpp").to_str().unwrap()), "{log}");

    let missing = t.path().join("sk/NeedsNothingThere");
    write(&missing.join("NeedsNothingThere.ino"), "#include <NoSuchLib.h>\nvoid setup() {}\nvoid loop() {}\n");
    let (run, results) = run_many(&t.path().join("cache"), t.path(), &t.path().join("out2"), &["--libraries", t.path().join("mylibs").to_str().unwrap()], &[missing]);
    assert_eq!(run.code, 1);
    let first = results["sketches"][0]["first_error"].as_str().unwrap();
    assert!(first.contains("NeedsNothingThere.ino:1") && first.contains("NoSuchLib.h: No such file or directory"), "{first}");
    assert!(first.contains("no installed library provides NoSuchLib.h; searched") && first.contains("mylibs") && first.contains("/usr/share/arduino/hardware/arduino/avr/libraries"), "{first}");
}

#[test]
fn discovery_is_remembered_and_follows_a_header_edit() {
    // A library's configuration header decides whether it pulls in SPI. The first
    // run preprocesses; a warm run (fresh output folder, same cache) starts no
    // process for discovery; editing the configuration header is seen.
    let t = tempfile::tempdir().unwrap();
    let libs = t.path().join("libs");
    write(&libs.join("Configured/library.properties"), "name=Configured\nversion=2.1.0\narchitectures=*\n");
    write(&libs.join("Configured/src/Options.h"), "#pragma once\n#define CFG_USE_SPI 0\n");
    write(&libs.join("Configured/src/Configured.h"), "#pragma once\n#include \"Options.h\"\n#if CFG_USE_SPI\n#include <SPI.h>\n#endif\nint configured();\n");
    write(&libs.join("Configured/src/Configured.cpp"), "#include \"Configured.h\"\nint configured() { return CFG_USE_SPI; }\n");
    let sk = t.path().join("sk/UsesConfigured");
    write(&sk.join("UsesConfigured.ino"), "#include <Configured.h>\nvoid setup() { Serial.begin(9600); }\nvoid loop() { Serial.println(configured()); }\n");
    let cache = t.path().join("cache");
    let names = |r: &serde_json::Value| -> Vec<String> {
        r["sketches"][0]["libraries"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap().to_string()).collect()
    };
    let (run, cold) = run_many(&cache, t.path(), &t.path().join("out1"), &["--libraries", libs.to_str().unwrap()], &[sk.clone()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(names(&cold), vec!["Configured"]);
    assert!(cold["sketches"][0]["discover_runs"].as_u64().unwrap() >= 2, "the sketch and the library source were preprocessed");

    let (run, warm) = run_many(&cache, t.path(), &t.path().join("out2"), &["--libraries", libs.to_str().unwrap()], &[sk.clone()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(names(&warm), vec!["Configured"]);
    assert_eq!(warm["sketches"][0]["discover_runs"], 0);
    assert_eq!(warm["totals"]["tool_processes"], 0);

    write(&libs.join("Configured/src/Options.h"), "#pragma once\n#define CFG_USE_SPI 1\n");
    let (run, edited) = run_many(&cache, t.path(), &t.path().join("out2"), &["--libraries", libs.to_str().unwrap()], &[sk]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(names(&edited), vec!["Configured", "SPI"]);
    assert!(edited["sketches"][0]["discover_runs"].as_u64().unwrap() >= 1);
}
