//! How many preprocessor runs cold library discovery makes (src/discover/speculate.rs):
//! one run on a guessed include path replaces the reference's run per library, when
//! the run's trace proves the reference's answer; otherwise runs go one by one.
//! Whether the answers equal arduino-builder's is tests/reference.rs's job.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A 1.5 library NAME whose header holds `header` and whose one source includes it.
fn library(libs: &Path, name: &str, header: &str) {
    write(&libs.join(format!("{name}/library.properties")), &format!("name={name}\nversion=1.0.0\narchitectures=*\n"));
    write(&libs.join(format!("{name}/src/{name}.h")), header);
    write(&libs.join(format!("{name}/src/{name}.cpp")), &format!("#include \"{name}.h\"\nint {}() {{ return 1; }}\n", name.to_lowercase()));
}

fn discover(root: &Path, sketch: &Path) -> (Run, serde_json::Value) {
    discover_all(root, &[sketch.to_path_buf()])
}

/// One verbose compile-many over `sketches` with the libraries in `root/libs`.
fn discover_all(root: &Path, sketches: &[PathBuf]) -> (Run, serde_json::Value) {
    let (out, libs) = (root.join("out"), root.join("libs"));
    let mut args = vec!["compile-many", "-v", "--libraries", libs.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(sketches.iter().map(|s| s.to_str().unwrap()));
    let run = fbuild(&root.join("cache"), root, &args);
    (run, read_json(&out.join("results.json")))
}

/// The names of the libraries one sketch result uses, in order.
fn names(sketch: &serde_json::Value) -> Vec<String> {
    sketch["libraries"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_chain_of_libraries_is_found_in_one_run_of_the_sketch() {
    // The sketch reaches Chain1, whose header reaches Chain2, whose header reaches
    // Chain3: the reference preprocesses the sketch 4 times (3 stops), then each source once.
    let t = tempfile::tempdir().unwrap();
    let libs = t.path().join("libs");
    library(&libs, "Chain1", "#pragma once\n#include <Chain2.h>\nint chain1();\n");
    library(&libs, "Chain2", "#pragma once\n#include <Chain3.h>\nint chain2();\n");
    library(&libs, "Chain3", "#pragma once\nint chain3();\n");
    let sk: PathBuf = t.path().join("sk/UsesChain");
    write(&sk.join("UsesChain.ino"), "#include <Chain1.h>\nvoid setup() { Serial.begin(9600); }\nvoid loop() { Serial.println(chain1() + chain2() + chain3()); }\n");
    let (run, r) = discover(t.path(), &sk);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(names(&r["sketches"][0]), vec!["Chain1", "Chain2", "Chain3"]);
    assert_eq!(r["sketches"][0]["discover_runs"], 4, "one run of the sketch and one per library source, not 4 + 3");
    let preprocessed: Vec<&str> = run.stderr.lines().filter(|l| l.contains(" -E ") && l.contains(" -H ")).collect();
    assert_eq!(preprocessed.len(), 4, "{}", run.stderr);
    assert!(preprocessed.iter().all(|l| l.contains("-fdirectives-only")), "{preprocessed:?}");
}

#[test]
fn a_guess_the_trace_cannot_prove_falls_back_to_the_reference_runs() {
    // Both Early and Late offer Shared.h; the guess puts Late first (its include sits in
    // a dead branch ahead of Early's), the reference has Early first. Late's copy would
    // pull in Extra. The guess is dropped after one run: 1 + 3 runs of the sketch (it
    // stops at Early.h and Late.h), then one per source.
    let t = tempfile::tempdir().unwrap();
    let libs = t.path().join("libs");
    library(&libs, "Early", "#pragma once\nint early();\n");
    write(&libs.join("Early/src/Shared.h"), "#pragma once\n#define SHARED_FROM 1\n");
    library(&libs, "Late", "#pragma once\nint late();\n");
    write(&libs.join("Late/src/Shared.h"), "#pragma once\n#include <Extra.h>\n#define SHARED_FROM 2\n");
    library(&libs, "Extra", "#pragma once\nint extra();\n");
    let sk: PathBuf = t.path().join("sk/Shadowed");
    write(
        &sk.join("Shadowed.ino"),
        "#ifdef NEVER_DEFINED\n#include <Late.h>\n#endif\n#include <Early.h>\n#include <Late.h>\n#include <Shared.h>\nvoid setup() { Serial.begin(9600); }\nvoid loop() { Serial.println(SHARED_FROM + early() + late()); }\n",
    );
    let (run, r) = discover(t.path(), &sk);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(names(&r["sketches"][0]), vec!["Early", "Late"], "Shared.h comes from Early, so Extra is not used");
    assert_eq!(r["sketches"][0]["discover_runs"], 6);
}

#[test]
fn sources_behind_another_platforms_guard_need_no_run() {
    // Shelled has a plain source, two sources for other platforms and one for AVR that
    // pulls in Extra. The other platforms' sources are answered from GCC's predefined
    // names (one -dM run for the build); the AVR one is preprocessed.
    let t = tempfile::tempdir().unwrap();
    let libs = t.path().join("libs");
    library(&libs, "Shelled", "#pragma once\nint shelled();\n");
    write(&libs.join("Shelled/src/ShelledEsp32.cpp"), "#if defined(ARDUINO_ARCH_ESP32)\n#include <WiFi.h>\n#endif\n");
    write(&libs.join("Shelled/src/ShelledSamd.cpp"), "// SAMD timers\n#ifdef ARDUINO_ARCH_SAMD\n#include <Nowhere.h>\n#endif // ARDUINO_ARCH_SAMD\n");
    write(&libs.join("Shelled/src/ShelledAvr.cpp"), "#if defined(ARDUINO_ARCH_AVR)\n#include <Extra.h>\nint shelled_avr() { return extra(); }\n#endif\n");
    library(&libs, "Extra", "#pragma once\nint extra();\n");
    let sk: PathBuf = t.path().join("sk/UsesShelled");
    write(&sk.join("UsesShelled.ino"), "#include <Shelled.h>\nvoid setup() { Serial.begin(9600); }\nvoid loop() { Serial.println(shelled()); }\n");
    let (run, r) = discover(t.path(), &sk);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(names(&r["sketches"][0]), vec!["Shelled", "Extra"], "the AVR source is live and pulls in Extra");
    let preprocessed: Vec<&str> = run.stderr.lines().filter(|l| l.contains(" -E ") && l.contains(" -H ")).collect();
    assert!(!preprocessed.iter().any(|l| l.contains("ShelledEsp32.cpp") || l.contains("ShelledSamd.cpp")), "{preprocessed:?}");
    // Discovery's one listing; under -v the toolchain's own predefined-macros probe
    // (`-dM -E -x c++ -` on stdin) is printed too, and is not discovery's.
    let listings = run.stderr.lines().filter(|l| l.contains(" -dM") && !l.ends_with(" -x c++ -"));
    assert_eq!(listings.count(), 1, "{}", run.stderr);
    // The sketch, Shelled.cpp, ShelledAvr.cpp, Extra.cpp, and the one -dM listing.
    assert_eq!(r["sketches"][0]["discover_runs"], 5);
}

#[test]
fn examples_that_open_alike_share_one_run_through_a_stand_in() {
    // A, B and C include Lib.h first and differ in their code and in the defines
    // after it: one run of their shared stand-in (src/discover/stand_in.rs) answers
    // all three. D defines Lib's option before including it, which pulls in Extra:
    // its stand-in differs, and so does its answer. E's quoted header is beside the
    // sketch, where a stand-in would not find it: E is preprocessed itself.
    let t = tempfile::tempdir().unwrap();
    let libs = t.path().join("libs");
    library(&libs, "Lib", "#pragma once\n#ifdef LIB_WITH_EXTRA\n#include <Extra.h>\n#endif\nint lib();\n");
    library(&libs, "Extra", "#pragma once\nint extra();\n");
    let sk = t.path().join("sk");
    let body = "void setup() { Serial.begin(9600); }\nvoid loop() { Serial.println(lib()); }\n";
    write(&sk.join("A/A.ino"), &format!("#include <Lib.h>\n#define PIN 3\n{body}"));
    write(&sk.join("B/B.ino"), &format!("// B's own words\n#include <Lib.h> // the library\nint b = 2;\n#define PIN 5\n{body}"));
    write(&sk.join("C/C.ino"), &format!("#include <Lib.h>\n#ifdef PIN\n#error never\n#endif\n{body}"));
    write(&sk.join("D/D.ino"), &format!("#define LIB_WITH_EXTRA\n#include <Lib.h>\nint d() {{ return extra(); }}\n{body}"));
    write(&sk.join("E/E.ino"), &format!("#include \"local.h\"\n{body}"));
    write(&sk.join("E/local.h"), "#include <Lib.h>\n");
    let sketches: Vec<PathBuf> = ["A", "B", "C", "D", "E"].iter().map(|n| sk.join(n)).collect();
    let (run, r) = discover_all(t.path(), &sketches);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let libs_of = |name: &str| names(r["sketches"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap());
    for n in ["A", "B", "C", "E"] {
        assert_eq!(libs_of(n), vec!["Lib"], "{n}");
    }
    assert_eq!(libs_of("D"), vec!["Lib", "Extra"]);
    // The file each discovery run preprocessed: the word before `-o`.
    let sources: Vec<&str> = run.stderr.lines().filter(|l| l.contains(" -E ") && l.contains(" -H ")).filter_map(|l| l.split(" -o ").next()?.rsplit(' ').next()).collect();
    let sketch_runs: Vec<&str> = sources.iter().copied().filter(|s| !s.contains("/libs/")).collect();
    let stand_ins = sketch_runs.iter().filter(|l| l.contains("/discover/")).count();
    assert_eq!(stand_ins, 2, "one for A, B and C, one for D: {sketch_runs:#?}");
    assert!(sketch_runs.iter().any(|l| l.ends_with("/E.ino.cpp")), "{sketch_runs:#?}");
    assert_eq!(sketch_runs.len(), 3, "{sketch_runs:#?}");
}

#[test]
fn a_missing_header_is_reported_in_the_sketch_s_own_words() {
    // The stand-in stops at the header too; the error still names the sketch's file.
    let t = tempfile::tempdir().unwrap();
    let sk: PathBuf = t.path().join("sk/WantsNothing");
    write(&sk.join("WantsNothing.ino"), "int x;\n#include <NoSuchLibrary.h>\nvoid setup() {}\nvoid loop() {}\n");
    std::fs::create_dir_all(t.path().join("libs")).unwrap();
    let (run, r) = discover(t.path(), &sk);
    assert_eq!(run.code, 1, "{}", run.stderr);
    // What a user reads: the sketch's error in results.json and the failure line (the
    // -v command lines around it do name the stand-in it ran first).
    let failed: Vec<&str> = run.stderr.lines().filter(|l| l.contains("FAILED")).collect();
    let error = format!("{} {}", r["sketches"][0]["first_error"], failed.join("\n"));
    assert!(error.contains("WantsNothing.ino:2"), "{error}");
    assert!(error.contains("NoSuchLibrary.h"), "{error}");
    assert!(!error.contains("/discover/"), "{error}");
}
