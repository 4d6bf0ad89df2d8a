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
    compare_with(board, &ReferenceSpec::avr(fqbn), &[], sketches, expect_ok)
}

/// Build `sketches` with fbuild (`extra` flags added) and with arduino-builder as
/// `spec` says; the same sketches must build, with the same libraries in the same
/// order (the reference's `Using library` lines) and byte-identical firmware.
/// Returns how many firmware files were compared.
fn compare_with(board: &str, spec: &ReferenceSpec, extra: &[String], sketches: &[PathBuf], expect_ok: usize) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut args: Vec<String> = vec!["compile-many".into(), "--board".into(), board.into(), "--out".into(), out.display().to_string()];
    args.extend(extra.iter().cloned());
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(&tmp.path().join("cache"), tmp.path(), &argv);
    let results = read_json(&out.join("results.json"));
    let failed = results["totals"]["failed"].as_u64().unwrap();
    assert_eq!(run.code, if failed > 0 { 1 } else { 0 }, "fbuild exit {} with {failed} failed: {}", run.code, run.stderr);
    let by_path = sketches_by_path(&results);
    let references = reference_builds_with(spec, sketches);
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
        // Libraries compare by folder: arduino-builder 1.3 names a library by its
        // folder, results.json by its library.properties name.
        let ours: Vec<PathBuf> = r["libraries"].as_array().unwrap().iter().map(|l| PathBuf::from(l["folder"].as_str().unwrap())).collect();
        let theirs: Vec<PathBuf> = reference.libraries().into_iter().map(|(_, dir)| dir).collect();
        if ours != theirs {
            mismatches.push(format!("{}: libraries {:?}, arduino-builder used {:?}", sketch.display(), ours, theirs));
        }
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
    assert_eq!(ok, references.iter().filter(|r| r.ok).count(), "every sketch the reference built was compared");
    assert_eq!(ok, expect_ok, "sketches that build on {board}");
    assert_eq!(results["totals"]["ok"].as_u64(), Some(expect_ok as u64));
    // A .hex and an .eep per built sketch, plus the merged image where there is a bootloader.
    assert_eq!(compared, 2 * ok + bootloader_images, "firmware files compared on {board}");
    assert_eq!(merged_compared, sketches.len(), "merged sketches compared on {board}");
    eprintln!("{board}: {ok} sketches built, {compared} firmware files and {merged_compared} merged sketches identical to arduino-builder's");
    compared
}

/// The examples of the 14 real third-party libraries, built with them as the
/// `--libraries` folder (arduino-builder: `-libraries`).
fn third_party(board: &str, fqbn: &str, expect_ok: usize) {
    let libs = shared_libraries();
    let sketches = sketch_dirs(&libs);
    assert_eq!(sketches.len(), 86);
    let spec = ReferenceSpec::avr(fqbn).with_libraries(&libs);
    compare_with(board, &spec, &["--libraries".into(), libs.display().to_string()], &sketches, expect_ok);
}

#[test]
fn third_party_library_examples_on_uno_match_arduino_builder() {
    third_party("uno", "arduino:avr:uno", 74);
}

#[test]
fn third_party_library_examples_on_leonardo_match_arduino_builder() {
    third_party("leonardo", "arduino:avr:leonardo", 77);
}

#[test]
fn third_party_library_examples_on_mega_match_arduino_builder() {
    third_party("mega", "arduino:avr:mega:cpu=atmega2560", 76);
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

/// Fixture libraries, one per pattern library discovery must resolve exactly as the
/// preprocessor does, and sketches that exercise each. Written under `root`.
fn discovery_fixtures(root: &std::path::Path) -> (PathBuf, Vec<PathBuf>) {
    let w = |rel: &str, s: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    let lib = |name: &str, header: &str, source: &str| {
        // Every field the reference builder requires of a 1.5 library.
        w(
            &format!("libs/{name}/library.properties"),
            &format!("name={name}\nversion=1.0.0\nauthor=fbuild\nmaintainer=fbuild\nsentence=Fixture.\nparagraph=Fixture.\ncategory=Other\nurl=http://localhost/\narchitectures=*\n"),
        );
        w(&format!("libs/{name}/src/{name}.h"), header);
        w(&format!("libs/{name}/src/{name}.cpp"), source);
    };
    // Libraries that are installed but that only a condition pulls in.
    lib("Gadget", "#pragma once\nint gadget();\n", "#include \"Gadget.h\"\nint gadget() { return 7; }\nstruct GadgetInit { GadgetInit() { gadget(); } } gadget_init;\n");
    lib("Gizmo", "#ifndef GIZMO_H\n#define GIZMO_H\nint gizmo();\n#endif\n", "#include \"Gizmo.h\"\nint gizmo() { return 9; }\n");
    // 1. A guard macro defined by an earlier include in the same translation unit.
    lib("Guarded", "#pragma once\n#if defined(SoftwareSerial_h)\n#include <SoftwareSerial.h>\n#endif\nint guarded();\n", "#include \"Guarded.h\"\nint guarded() { return 1; }\n");
    // 2. __has_include, directly and through a function-like macro, of a library
    //    that is installed but not (yet) on the include path.
    lib("Probe", "#pragma once\n#define PROBE_HAS_INCLUDE(x) __has_include(x)\n#if PROBE_HAS_INCLUDE(<Gadget.h>)\n#include <Gadget.h>\n#define PROBE_GADGET 1\n#endif\n#if defined(__has_include) && __has_include(<Gizmo.h>)\n#include <Gizmo.h>\n#endif\nint probe();\n",
        "#include \"Probe.h\"\nint probe() {\n#ifdef PROBE_GADGET\n  return gadget();\n#else\n  return 0;\n#endif\n}\n");
    // 3. Configuration macros in the library's headers, #undef and redefinition, and a
    //    macro the sketch defines before including it.
    lib("Configured", "#pragma once\n#include \"ConfiguredOptions.h\"\n#if CFG_USE_SPI\n#include <SPI.h>\n#endif\n#undef CFG_USE_WIRE\n#define CFG_USE_WIRE (CFG_USE_SPI + 1 > 0 ? 1 : 0)\n#if CFG_USE_WIRE\n#include <Wire.h>\n#endif\n#ifdef CFG_WANT_EEPROM\n#include <EEPROM.h>\n#endif\nint configured();\n",
        "#include \"Configured.h\"\nint configured() { return CFG_USE_WIRE; }\n");
    w("libs/Configured/src/ConfiguredOptions.h", "#pragma once\n#define CFG_USE_SPI 0\n#define CFG_USE_WIRE 0\n");
    // 4. MCU features from avr-libc through -mmcu.
    lib("McuAware", "#pragma once\n#include <avr/io.h>\n#ifdef UBRR1H\n#include <SoftwareSerial.h>\n#endif\n#if FLASHEND > 0x7FFF\n#include <Gizmo.h>\n#endif\n#if defined(SPDR)\n#include <SPI.h>\n#endif\nint mcu_aware();\n",
        "#include \"McuAware.h\"\nint mcu_aware() { return 3; }\n");
    // 5. A computed include, #include_next, #pragma once and include guards.
    lib("Computed", "#ifndef COMPUTED_H\n#define COMPUTED_H\n#define COMPUTED_PLATFORM_HEADER <ComputedPlatform.h>\n#include COMPUTED_PLATFORM_HEADER\n#include \"Computed.h\"\nint computed();\n#endif\n",
        "#include \"Computed.h\"\nint computed() { return COMPUTED_VALUE; }\n");
    w("libs/Computed/src/ComputedPlatform.h", "#pragma once\n#pragma once\n#define COMPUTED_VALUE 5\n");
    // Gizmo (on the path first) shadows that header and reaches it with #include_next.
    w("libs/Gizmo/src/ComputedPlatform.h", "#pragma once\n#include_next <ComputedPlatform.h>\n#define COMPUTED_NEXT 1\n");
    // 6. A source that is only a shell around another platform's code.
    lib("ShellOnly", "#pragma once\nint shell_only();\n", "#if defined(ARDUINO_ARCH_ESP32)\n#include <WiFi.h>\n#include <Gadget.h>\nint shell_only() { return gadget(); }\n#endif\n");
    // 7. One run on a guessed path standing in for several (src/discover/speculate.rs)
    //    must give the reference's answer: a header two libraries offer, where the
    //    guess puts the later library's folder first (its include sits in a dead
    //    branch ahead of the other's)...
    lib("ShadowEarly", "#pragma once\nint shadow_early();\n", "#include \"ShadowEarly.h\"\nint shadow_early() { return 1; }\n");
    w("libs/ShadowEarly/src/ShadowShared.h", "#pragma once\n#define SHADOW_FROM 1\n");
    lib("ShadowLate", "#pragma once\nint shadow_late();\n", "#include \"ShadowLate.h\"\nint shadow_late() { return 2; }\n");
    w("libs/ShadowLate/src/ShadowShared.h", "#pragma once\n#include <Gizmo.h>\n#define SHADOW_FROM 2\n");
    //    ...and a literal `__has_include` of a library the guess puts on the path early
    //    (the sketch reaches it through another of its headers: GCC 5 silently skips
    //    an `#include` of a name its `__has_include` did not find).
    w("libs/Gadget/src/GadgetExtra.h", "#pragma once\n#include \"Gadget.h\"\n");
    lib("AsksGadget", "#pragma once\n#if __has_include(<Gadget.h>)\n#include <Gizmo.h>\n#endif\nint asks_gadget();\n", "#include \"AsksGadget.h\"\nint asks_gadget() { return 4; }\n");
    // 8. A source that is only a shell around the MCU's own guard: live on the mega
    //    (it then pulls in Gizmo), dead on the uno, where fbuild answers it without a
    //    run (src/discover/shell.rs) from the names GCC predefines for that board.
    lib("McuShell", "#pragma once\nint mcu_shell();\n", "#if defined(__AVR_ATmega2560__)\n#include <Gizmo.h>\nint mega_only() { return gizmo(); }\n#endif\n");
    w("libs/McuShell/src/McuShellImpl.cpp", "#include \"McuShell.h\"\nint mcu_shell() { return 6; }\n");

    let sketch = |name: &str, body: &str| -> PathBuf {
        w(&format!("sketches/{name}/{name}.ino"), body);
        root.join("sketches").join(name)
    };
    let loop_ = "void setup() { Serial.begin(9600); }\n";
    let sketches = vec![
        sketch("GuardOff", &format!("#include <Guarded.h>\n{loop_}void loop() {{ Serial.println(guarded()); }}\n")),
        sketch("GuardOn", &format!("#include <SoftwareSerial.h>\n#include <Guarded.h>\nSoftwareSerial s(2, 3);\n{loop_}void loop() {{ s.println(guarded()); }}\n")),
        sketch("ProbeOff", &format!("#include <Probe.h>\n{loop_}void loop() {{ Serial.println(probe()); }}\n")),
        sketch("ProbeOn", &format!("#include <Gadget.h>\n#include <Probe.h>\n{loop_}void loop() {{ Serial.println(probe() + gadget()); }}\n")),
        sketch("ConfigDefault", &format!("#include <Configured.h>\n{loop_}void loop() {{ Serial.println(configured()); }}\n")),
        sketch("ConfigSketchMacro", &format!("#define CFG_WANT_EEPROM\n#include <Configured.h>\n{loop_}void loop() {{ Serial.println(configured() + EEPROM.read(0)); }}\n")),
        sketch("Mcu", &format!("#include <McuAware.h>\n{loop_}void loop() {{ Serial.println(mcu_aware()); }}\n")),
        sketch("ComputedInclude", &format!("#include <Gizmo.h>\n#include <Computed.h>\n#include \"src/helper/helper.h\"\n{loop_}void loop() {{ Serial.println(computed() + helper() + COMPUTED_NEXT + gizmo()); }}\n")),
        sketch("Shell", &format!("#include <ShellOnly.h>\n{loop_}void loop() {{ Serial.println(42); }}\n")),
        sketch("ShadowOrder", &format!("#ifdef NEVER_DEFINED\n#include <ShadowLate.h>\n#endif\n#include <ShadowEarly.h>\n#include <ShadowLate.h>\n#include <ShadowShared.h>\n{loop_}void loop() {{ Serial.println(SHADOW_FROM + shadow_early() + shadow_late()); }}\n")),
        sketch("McuShellSketch", &format!("#include <McuShell.h>\n{loop_}void loop() {{ Serial.println(mcu_shell()); }}\n")),
        sketch("AsksFirst", &format!("#include <AsksGadget.h>\n#include <GadgetExtra.h>\n{loop_}void loop() {{ Serial.println(asks_gadget() + gadget()); }}\n")),
    ];
    w("sketches/ComputedInclude/src/helper/helper.h", "#pragma once\n#include <EEPROM.h>\nint helper();\n");
    w("sketches/ComputedInclude/src/helper/helper.cpp", "#include \"helper.h\"\nint helper() { return EEPROM.read(1); }\n");
    (root.join("libs"), sketches)
}

fn fixtures_match(board: &str, fqbn: &str) {
    let t = tempfile::tempdir().unwrap();
    let (libs, sketches) = discovery_fixtures(t.path());
    let spec = ReferenceSpec::avr(fqbn).with_libraries(&libs);
    let n = sketches.len();
    compare_with(board, &spec, &["--libraries".into(), libs.display().to_string()], &sketches, n);
}

#[test]
fn discovery_fixtures_on_uno_match_arduino_builder() {
    fixtures_match("uno", "arduino:avr:uno");
}

#[test]
fn discovery_fixtures_on_mega_match_arduino_builder() {
    fixtures_match("mega", "arduino:avr:mega:cpu=atmega2560");
}
