//! compile_commands.json: every translation unit with the real command, proven by
//! re-running each command and getting the same object byte for byte.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const CORE: &str = "/usr/share/arduino/hardware/arduino/avr/cores/arduino";

/// Blink plus a second .ino, a .cpp and a header, using the Wire library.
fn multi_file_sketch(root: &Path) -> PathBuf {
    let dir = root.join("Multi");
    copy_dir(&example("01.Basics/Blink"), &dir);
    std::fs::rename(dir.join("Blink.ino"), dir.join("Multi.ino")).unwrap();
    std::fs::write(dir.join("second.ino"), "#include <Wire.h>\nvoid talk() { Wire.begin(); Wire.beginTransmission(8); Wire.endTransmission(); }\n").unwrap();
    std::fs::write(dir.join("util.h"), "int twice(int x);\n").unwrap();
    std::fs::write(dir.join("util.cpp"), "#include \"util.h\"\nint twice(int x) { return 2 * x; }\n").unwrap();
    dir
}

/// gcc preprocesses a `.S` file into a temporary `/tmp/ccXXXXXX.s` and `-g` records
/// that name in the object: the one byte run that differs between any two compiles
/// of the same `.S`. Same length, so everything else still compares byte for byte.
fn without_temp_names(object: &[u8]) -> Vec<u8> {
    let temp = regex::bytes::Regex::new(r"/cc[A-Za-z0-9]{6}\.s").unwrap();
    temp.replace_all(object, &b"/ccXXXXXX.s"[..]).into_owned()
}

fn entries(out: &Path) -> Vec<Value> {
    read_json(&out.join("compile_commands.json")).as_array().expect("an array of entries").clone()
}

fn args_of(e: &Value) -> Vec<String> {
    e["arguments"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

#[test]
fn every_command_reproduces_its_object() {
    let t = tempfile::tempdir().unwrap();
    let sketch = multi_file_sketch(t.path());
    let blink = example("01.Basics/Blink");
    // avr-gcc names LTO sections after a random seed unless given one, so without it
    // no two compiles of the same file are byte-identical; a fixed seed (in the real
    // recipes, through build.extra_flags) makes the comparison meaningful.
    let r = fbuild(
        &t.path().join("cache"),
        t.path(),
        &["compile-many", "--out", "out", "--build-property", "build.extra_flags=-frandom-seed=fbuild", sketch.to_str().unwrap(), blink.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out = t.path().join("out");
    let db = entries(&out);

    // Real translation units (the file is the command's source) versus entries for
    // the files the user edits (an .ino, the sketch's own sources), which borrow one.
    let (units, borrowed): (Vec<&Value>, Vec<&Value>) = db.iter().partition(|e| args_of(e).contains(&e["file"].as_str().unwrap().to_string()));
    let by_file: BTreeMap<String, &Value> = units.iter().map(|e| (e["file"].as_str().unwrap().to_string(), *e)).collect();

    // Every core source, the Wire library (with its utility/), both sketches.
    let core_sources = std::fs::read_dir(CORE).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("c" | "cpp" | "S"))).count();
    assert_eq!(units.iter().filter(|e| e["file"].as_str().unwrap().starts_with(CORE)).count(), core_sources);
    assert!(by_file.keys().any(|f| f.ends_with("Wire/src/Wire.cpp")) && by_file.keys().any(|f| f.ends_with("utility/twi.c")), "{:?}", by_file.keys());
    assert!(by_file.keys().any(|f| f.ends_with("/sketch/Blink.ino.cpp")));

    // Each .ino of the multi-file sketch points at the merged .cpp's command; util.cpp at its copy's.
    let merged = by_file.iter().find(|(f, _)| f.ends_with("/sketch/Multi.ino.cpp")).expect("merged sketch entry").1;
    for ino in ["Multi.ino", "second.ino"] {
        let e = borrowed.iter().find(|e| e["file"] == sketch.join(ino).to_str().unwrap()).unwrap_or_else(|| panic!("no entry for {ino}"));
        assert_eq!(e["arguments"], merged["arguments"]);
        assert_eq!(e["output"], merged["output"]);
    }
    let util = borrowed.iter().find(|e| e["file"] == sketch.join("util.cpp").to_str().unwrap()).expect("entry for util.cpp");
    assert!(args_of(util).iter().any(|a| a.ends_with("/sketch/util.cpp")));
    let blink_ino = blink.join("Blink.ino");
    assert!(borrowed.iter().any(|e| e["file"] == blink_ino.to_str().unwrap()));

    // Re-run every command where it says, and compare with what fbuild made.
    for e in &units {
        let dir = Path::new(e["directory"].as_str().unwrap());
        assert_eq!(dir, t.path(), "fbuild ran its tools in its working directory");
        let object = PathBuf::from(e["output"].as_str().unwrap());
        let built = std::fs::read(&object).unwrap_or_else(|err| panic!("{}: {err}", object.display()));
        std::fs::remove_file(&object).unwrap();
        let args = args_of(e);
        let o = Command::new(&args[0]).args(&args[1..]).current_dir(dir).output().unwrap();
        assert!(o.status.success(), "{args:?}\n{}", String::from_utf8_lossy(&o.stderr));
        let again = std::fs::read(&object).unwrap();
        assert!(without_temp_names(&again) == without_temp_names(&built), "re-running the command for {} made a different object", e["file"]);
    }
}

#[test]
fn only_compiledb_writes_the_database_and_builds_nothing() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let sketch = multi_file_sketch(t.path());
    let r = fbuild(&cache, t.path(), &["compile-many", "--only-compiledb", "--out", "out", sketch.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "out/compile_commands.json");
    let planned = std::fs::read_to_string(t.path().join("out/compile_commands.json")).unwrap();
    let db: Value = serde_json::from_str(&planned).unwrap();
    assert!(db.as_array().unwrap().iter().any(|e| e["file"] == sketch.join("second.ino").to_str().unwrap()));
    // Nothing compiled, linked or reported.
    let mut stack = vec![t.path().join("out")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            assert!(!matches!(p.extension().and_then(|x| x.to_str()), Some("o" | "a" | "elf" | "hex")), "built {}", p.display());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    assert!(!t.path().join("out/results.json").exists());

    // The plan is what a real build then runs: the same file, byte for byte.
    let b = fbuild(&cache, t.path(), &["compile-many", "-q", "--out", "out", sketch.to_str().unwrap()]);
    assert_eq!(b.code, 0, "{}", b.stderr);
    assert_eq!(std::fs::read_to_string(t.path().join("out/compile_commands.json")).unwrap(), planned);

    let one = fbuild(&cache, t.path(), &["build", "--only-compiledb", "--out", "one", sketch.to_str().unwrap()]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert_eq!(one.stdout.trim(), "one/compile_commands.json");
    assert!(!entries(&t.path().join("one")).is_empty());
    assert!(!t.path().join("one").join("results.json").exists());
}

/// `run`, `build PROJECT` and `ci` have no single graph to stop before: each says
/// which command writes the database instead (exit 2), never a panic.
#[test]
fn only_compiledb_elsewhere_is_a_usage_error_naming_the_command_that_does_it() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let blink = example("01.Basics/Blink");
    let project = t.path().join("proj");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("platformio.ini"), "[env:uno]\nplatform = atmelavr\nboard = uno\nframework = arduino\n").unwrap();
    std::fs::copy(blink.join("Blink.ino"), project.join("src/Blink.ino")).unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["run", "--only-compiledb", blink.to_str().unwrap()], "fbuild build --only-compiledb SKETCH"),
        (&["build", "--only-compiledb", project.to_str().unwrap()], "fbuild compile-many --only-compiledb PROJECT"),
        (&["ci", "--only-compiledb", blink.to_str().unwrap()], "fbuild compile-many --only-compiledb PROJECT"),
    ];
    for (args, instead) in cases {
        let r = fbuild(&cache, t.path(), args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("--only-compiledb") && r.stderr.contains(instead), "{args:?}: {}", r.stderr);
    }
}
