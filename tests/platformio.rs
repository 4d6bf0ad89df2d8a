//! PlatformIO projects: `fbuild build PROJECT` against the real PlatformIO Core 6.2
//! (offline, on the same avr-gcc and Arduino core; see ../shared/platformio), byte
//! for byte, and its bad-input errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;

/// The offline PlatformIO kit (setup.sh + atmelavr platform). `FBUILD_PLATFORMIO_KIT` points elsewhere.
fn kit() -> PathBuf {
    std::env::var_os("FBUILD_PLATFORMIO_KIT").map(PathBuf::from).unwrap_or_else(|| shared("platformio"))
}

/// Install (once, idempotently, outside the clone) and return the offline PlatformIO's folder.
fn offline_pio() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = reference_cache_root().parent().unwrap().join("fbuild-platformio");
        let setup = kit().join("setup.sh");
        assert!(setup.is_file(), "offline PlatformIO kit missing at {}", kit().display());
        let o = Command::new("bash").arg(&setup).arg(&dir).output().expect("run the PlatformIO kit's setup.sh");
        assert!(o.status.success(), "setup.sh failed: {}", String::from_utf8_lossy(&o.stderr));
        dir
    })
}

/// A project folder whose ini takes the platform and packages from the offline kit.
fn write_project(dir: &Path, envs: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let ini = format!("[platformio]\nextra_configs = {}\n{envs}", offline_pio().join("offline.ini").display());
    std::fs::write(dir.join("platformio.ini"), ini).unwrap();
}

/// `pio run -e ENV` on a copy of the project, remembered outside the clone under a key
/// of the project's files and the PlatformIO kit: returns (firmware.hex bytes, flash, ram).
fn pio_reference(project: &Path, env: &str) -> (Vec<u8>, u64, u64) {
    pio_outcome(project, env, &[]).unwrap_or_else(|| panic!("pio run failed for {}", project.display()))
}

/// Like `pio_reference`, but a failing `pio run` is an outcome too (None). `inputs` are
/// folders outside the project that shape the firmware (libraries), hashed into the key.
fn pio_outcome(project: &Path, env: &str, inputs: &[&Path]) -> Option<(Vec<u8>, u64, u64)> {
    pio_outcome_at(project, env, inputs, false)
}

/// `pio_outcome` with `pio run` in the project folder itself (its `.pio` left there),
/// for firmware that holds the project's path (`__FILE__`): the path is in the key.
fn pio_outcome_in_place(project: &Path, env: &str, inputs: &[&Path]) -> Option<(Vec<u8>, u64, u64)> {
    pio_outcome_at(project, env, inputs, true)
}

fn pio_outcome_at(project: &Path, env: &str, inputs: &[&Path], in_place: bool) -> Option<(Vec<u8>, u64, u64)> {
    let mut h = blake3::Hasher::new();
    if in_place {
        h.update(project.as_os_str().as_encoded_bytes());
    }
    h.update(env.as_bytes());
    h.update(&std::fs::read(kit().join("setup.sh")).unwrap());
    hash_files(&mut h, project, project);
    for input in inputs {
        hash_files(&mut h, input, input);
    }
    let name = project.file_name().unwrap().to_string_lossy().into_owned();
    let entry = reference_cache_root().join("platformio").join(format!("{name}-{env}-{}", &h.finalize().to_hex()[..16]));
    if !entry.join("sizes").is_file() {
        let tmp = tempfile::tempdir().unwrap();
        let copy = if in_place { project.to_path_buf() } else { tmp.path().join(&name) };
        if !in_place {
            copy_dir(project, &copy);
        }
        let pio = offline_pio();
        let o = Command::new(pio.join("venv/bin/pio"))
            .args(["run", "-e", env])
            .current_dir(&copy)
            .env("PLATFORMIO_CORE_DIR", pio.join("core"))
            .output()
            .expect("run pio");
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let staging = entry.with_extension("tmp");
        std::fs::create_dir_all(&staging).unwrap();
        if o.status.success() {
            let used = |what: &str| -> u64 {
                let line = text.lines().find(|l| l.starts_with(what)).unwrap_or_else(|| panic!("no {what} line in pio output: {text}"));
                line.split("used ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap()
            };
            std::fs::copy(copy.join(format!(".pio/build/{env}/firmware.hex")), staging.join("firmware.hex")).unwrap();
            std::fs::write(staging.join("sizes"), format!("{} {}", used("Flash:"), used("RAM:"))).unwrap();
        } else {
            let all = format!("{text}{}", String::from_utf8_lossy(&o.stderr));
            assert!(all.contains("[FAILED]") || all.contains("Error 1"), "pio run did not build and did not fail a build either: {all}");
            std::fs::write(staging.join("sizes"), "failed").unwrap();
        }
        let _ = std::fs::remove_dir_all(&entry);
        std::fs::rename(&staging, &entry).unwrap();
    }
    let sizes = std::fs::read_to_string(entry.join("sizes")).unwrap();
    if sizes == "failed" {
        return None;
    }
    let mut it = sizes.split(' ').map(|n| n.trim().parse::<u64>().unwrap());
    Some((std::fs::read(entry.join("firmware.hex")).unwrap(), it.next().unwrap(), it.next().unwrap()))
}

fn hash_files(h: &mut blake3::Hasher, root: &Path, dir: &Path) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.file_name().is_some_and(|n| n == ".pio") {
            continue;
        }
        if p.is_dir() {
            hash_files(h, root, &p);
        } else {
            h.update(p.strip_prefix(root).unwrap().to_string_lossy().as_bytes());
            h.update(&std::fs::read(&p).unwrap());
        }
    }
}

/// `fbuild build PROJECT -e ENV`: (firmware.hex bytes, flash, ram) from its output line.
fn fbuild_project(cache: &Path, project: &Path, env: &str, out: &Path) -> (Vec<u8>, u64, u64) {
    fbuild_outcome(cache, project, env, out).unwrap_or_else(|e| panic!("fbuild build {} -e {env}: {e}", project.display()))
}

/// Like `fbuild_project`, but a failed build (exit 1, one `error:` line) is an outcome:
/// Err with its output.
fn fbuild_outcome(cache: &Path, project: &Path, env: &str, out: &Path) -> Result<(Vec<u8>, u64, u64), String> {
    let r = fbuild(cache, project, &["build", ".", "-e", env, "--out", out.to_str().unwrap()]);
    if r.code == 1 && r.stderr.contains(&format!(":{env}: ")) {
        return Err(format!("{}{}", r.stdout, r.stderr));
    }
    assert_eq!(r.code, 0, "fbuild build {} -e {env}: {}{}", project.display(), r.stdout, r.stderr);
    let line = r.stdout.lines().find(|l| l.contains(&format!(":{env}: flash "))).unwrap_or_else(|| panic!("no result line: {}", r.stdout));
    let number_after = |word: &str| -> u64 { line.split(word).nth(1).unwrap().split(' ').next().unwrap().parse().unwrap() };
    let hex = PathBuf::from(line.rsplit("firmware ").next().unwrap().trim());
    Ok((std::fs::read(&hex).unwrap(), number_after("flash "), number_after("ram ")))
}

#[test]
fn builtin_examples_as_projects_match_pio_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    // No library, Serial, tone with a sketch-local header, floating point, String.
    for rel in ["01.Basics/Blink", "01.Basics/AnalogReadSerial", "02.Digital/toneMelody", "03.Analog/Smoothing", "08.Strings/StringAdditionOperator", "04.Communication/ASCIITable"] {
        let sketch = example(rel);
        let name = sketch.file_name().unwrap().to_string_lossy().into_owned();
        let project = tmp.path().join(&name);
        write_project(&project, "[env:uno]\nboard = uno\nframework = arduino\n");
        copy_dir(&sketch, &project.join("src"));
        let (want_hex, want_flash, want_ram) = pio_reference(&project, "uno");
        let (hex, flash, ram) = fbuild_project(&cache, &project, "uno", &tmp.path().join("out").join(&name));
        assert!(hex == want_hex, "{rel}: fbuild's firmware differs from pio run's");
        assert_eq!((flash, ram), (want_flash, want_ram), "{rel}: sizes");
    }
}

/// The options project: [env] defaults, an `extends` chain, ${section.key}
/// interpolation, multi-line build_flags with -D and -U, include/ on the path, sources
/// in a src/ subfolder; envs uno, nano, leo, mega, then `more_envs`.
fn write_options_project(project: &Path, more_envs: &str) {
    write_project(
        project,
        &(String::from("[common]\nblink_ms = 250\nflags =\n  -DBLINK_MS=${common.blink_ms} ; inline comment\n  -DUNWANTED=1\n  -UUNWANTED\n\n\
         [env]\nframework = arduino\nbuild_flags = ${common.flags}\n\n\
         [env:base]\nboard = uno\n\n[env:uno]\nextends = env:base\n\n\
         [env:nano]\nextends = env:base\nboard = nanoatmega328\nbuild_flags = ${common.flags} -DEXTRA_PIN=13\n\n\
         [env:leo]\nextends = env:base\nboard = leonardo\n\n\
         [env:mega]\nextends = env:base\nboard = megaatmega2560\n") + more_envs),
    );
    std::fs::create_dir_all(project.join("include")).unwrap();
    std::fs::create_dir_all(project.join("src/parts")).unwrap();
    std::fs::write(project.join("include/config.h"), "#pragma once\n#ifndef EXTRA_PIN\n#define EXTRA_PIN 7\n#endif\n").unwrap();
    std::fs::write(project.join("src/parts/blinker.h"), "#pragma once\nvoid blink_once(int pin);\n").unwrap();
    std::fs::write(
        project.join("src/parts/blinker.cpp"),
        "#include <Arduino.h>\n#include \"blinker.h\"\n#ifdef UNWANTED\n#error -U did not undefine it\n#endif\nvoid blink_once(int pin) { digitalWrite(pin, HIGH); delay(BLINK_MS); digitalWrite(pin, LOW); delay(BLINK_MS); }\n",
    )
    .unwrap();
    std::fs::write(
        project.join("src/main.cpp"),
        "#include <Arduino.h>\n#include \"config.h\"\n#include \"parts/blinker.h\"\nvoid setup() { pinMode(EXTRA_PIN, OUTPUT); Serial.begin(9600); }\nvoid loop() { blink_once(EXTRA_PIN); Serial.println(BLINK_MS); }\n",
    )
    .unwrap();
}

#[test]
fn project_options_match_pio_run_on_four_boards() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("options");
    write_options_project(&project, "");
    let cache = tmp.path().join("cache");
    let mut firmwares = Vec::new();
    // The mega's firmware has linker trampolines, whose order the link's inputs decide.
    for env in ["uno", "nano", "leo", "mega"] {
        let (want_hex, want_flash, want_ram) = pio_reference(&project, env);
        let (hex, flash, ram) = fbuild_project(&cache, &project, env, &tmp.path().join("out"));
        assert!(hex == want_hex, "env {env}: fbuild's firmware differs from pio run's");
        assert_eq!((flash, ram), (want_flash, want_ram), "env {env}: sizes");
        firmwares.push(hex);
    }
    assert_ne!(firmwares[0], firmwares[1], "EXTRA_PIN from the nano env's build_flags must change its firmware");
    assert_ne!(firmwares[0], firmwares[2], "the leonardo's firmware must differ from the uno's");
    assert_ne!(firmwares[0], firmwares[3], "the mega's firmware must differ from the uno's");
}

/// `compile-many` takes project folders beside sketches: one result per env named
/// `project:env`, each env's firmware byte-identical to `pio run`'s, and envs with the
/// same board and build settings (here `uno` and `uno_monitor`, which differs only in
/// monitor_speed) share one stage 1; a warm run starts no tool.
#[test]
fn compile_many_builds_project_envs_beside_sketches() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("options");
    write_options_project(&project, "");
    // The references come from the project as the four-board test has it (one cache entry).
    let want: Vec<(Vec<u8>, u64, u64)> = ["uno", "mega"].iter().map(|e| pio_reference(&project, e)).collect();
    let ini = std::fs::read_to_string(project.join("platformio.ini")).unwrap();
    let ini = ini.replacen("[platformio]\n", "[platformio]\ndefault_envs = uno, uno_monitor, mega\n", 1);
    std::fs::write(project.join("platformio.ini"), format!("{ini}\n[env:uno_monitor]\nextends = env:uno\nmonitor_speed = 115200\n")).unwrap();
    let cache = tmp.path().join("cache");
    let blink = example("01.Basics/Blink");
    let args = ["compile-many", "--out", "out", project.to_str().unwrap(), blink.to_str().unwrap()];
    let r = fbuild(&cache, tmp.path(), &args);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("options:uno_monitor"), "the summary names envs as project:env: {}", r.stdout);
    let results = read_json(&tmp.path().join("out/results.json"));
    let sketches = results["sketches"].as_array().unwrap();
    let by_name = |n: &str| sketches.iter().find(|s| s["name"] == n).unwrap_or_else(|| panic!("no result {n}: {results}"));
    assert_eq!(sketches.len(), 4, "Blink and three envs");
    assert_eq!(by_name("Blink")["status"], "ok");
    for (env, (want_hex, want_flash, want_ram)) in [("uno", &want[0]), ("uno_monitor", &want[0]), ("mega", &want[1])] {
        let s = by_name(&format!("options:{env}"));
        assert_eq!(s["status"], "ok", "{env}");
        let hex = std::fs::read(s["firmware"]["hex"].as_str().unwrap()).unwrap();
        assert!(hex == *want_hex, "env {env}: compile-many's firmware differs from pio run's");
        assert_eq!((s["flash_used"].as_u64().unwrap(), s["ram_used"].as_u64().unwrap()), (*want_flash, *want_ram), "env {env}: sizes");
    }
    // Stage 1 per target: the sketches' uno, the project's uno (both envs), its mega.
    let boards = results["boards"].as_array().unwrap();
    assert_eq!(boards.len(), 3, "uno and uno_monitor must share one stage 1: {boards:?}");
    let warm = fbuild(&cache, tmp.path(), &args);
    assert_eq!(warm.code, 0, "{}{}", warm.stdout, warm.stderr);
    let warm = read_json(&tmp.path().join("out/results.json"));
    assert_eq!(warm["totals"]["tool_processes"], 0, "a warm run over projects starts no tool");
}

/// Projects on one board share one set of core objects: PlatformIO compiles the core with
/// each project's `-I src -I include`, which cannot change an object unless a header
/// there shadows one the core reads; so fbuild leaves them out of core compiles, and a
/// second project compiles only its sketch. A project that does shadow a core header
/// (`include/binary.h`) keeps them and gets its own core, still byte for byte pio's.
#[test]
fn projects_share_the_core_unless_they_shadow_its_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let new_project = |name: &str, example_path: &str| -> PathBuf {
        let p = tmp.path().join(name);
        write_project(&p, "[env:uno]\nboard = uno\nframework = arduino\n");
        copy_dir(&example(example_path), &p.join("src"));
        p
    };
    let blink = new_project("blink", "01.Basics/Blink");
    let fade = new_project("fade", "01.Basics/Fade");
    let shadow = new_project("shadow", "01.Basics/Blink");
    let core = Path::new("/usr/share/arduino/hardware/arduino/avr/cores/arduino");
    let binary_h = std::fs::read_to_string(core.join("binary.h")).unwrap();
    std::fs::create_dir_all(shadow.join("include")).unwrap();
    std::fs::write(shadow.join("include/binary.h"), format!("// the project's own copy\n{binary_h}")).unwrap();
    let cache = tmp.path().join("cache");
    let run = |projects: &[&Path]| -> serde_json::Value {
        let mut args = vec!["compile-many".to_string(), "--out".into(), "out".into()];
        args.extend(projects.iter().map(|p| p.display().to_string()));
        let r = fbuild(&cache, tmp.path(), &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        read_json(&tmp.path().join("out/results.json"))
    };
    let compiled = |results: &serde_json::Value, project: &str| -> u64 {
        let boards = results["boards"].as_array().unwrap();
        let b = boards.iter().find(|b| b["out_dir"].as_str().unwrap().contains(&format!("/projects/{project}/"))).unwrap();
        b["totals"]["objects_compiled"].as_u64().unwrap()
    };
    let first = run(&[&blink]);
    let core_units = compiled(&first, "blink") - 1;
    assert!(core_units >= 20, "the first project compiles the core: {core_units}");
    let second = run(&[&fade, &shadow]);
    assert_eq!(compiled(&second, "fade"), 1, "fade compiles its sketch only, the core comes from blink's objects");
    assert_eq!(compiled(&second, "shadow"), core_units + 1, "a project that shadows a core header gets its own core");
    let commands: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(tmp.path().join("out/compile_commands.json")).unwrap()).unwrap();
    let core_args = |project: &str| -> Vec<String> {
        let e = commands.iter().find(|e| e["file"].as_str().unwrap().ends_with("cores/arduino/WString.cpp") && e["output"].as_str().unwrap().contains(&format!("/projects/{project}/"))).unwrap();
        e["arguments"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
    };
    assert!(!core_args("fade").iter().any(|a| a.starts_with(&format!("-I{}", fade.display()))), "{:?}", core_args("fade"));
    assert!(core_args("shadow").contains(&format!("-I{}", shadow.join("include").display())), "{:?}", core_args("shadow"));
    for (project, results) in [("blink", &first), ("fade", &second), ("shadow", &second)] {
        let (want_hex, want_flash, want_ram) = pio_reference(&tmp.path().join(project), "uno");
        let s = results["sketches"].as_array().unwrap().iter().find(|s| s["name"] == format!("{project}:uno")).unwrap();
        assert!(std::fs::read(s["firmware"]["hex"].as_str().unwrap()).unwrap() == want_hex, "{project}: firmware differs from pio run's");
        assert_eq!((s["flash_used"].as_u64().unwrap(), s["ram_used"].as_u64().unwrap()), (want_flash, want_ram), "{project}: sizes");
    }
}

/// `fbuild ci SRC --board ID --lib DIR -O "key = value"` lays the sources out as `pio ci`
/// does (one source folder is src/, each --lib folder under lib/, the options in every
/// env) and builds what `pio run` builds from that layout, byte for byte.
#[test]
fn ci_matches_pio_run_on_the_same_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let sketch = tmp.path().join("Blinky");
    std::fs::create_dir_all(&sketch).unwrap();
    std::fs::write(sketch.join("Blinky.ino"), "#include <Blinker.h>\nvoid setup() { pinMode(13, OUTPUT); }\nvoid loop() { blink_once(13); }\n").unwrap();
    let lib = tmp.path().join("Blinker");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("Blinker.h"), "#pragma once\nvoid blink_once(int pin);\n").unwrap();
    std::fs::write(lib.join("Blinker.cpp"), "#include <Arduino.h>\n#include \"Blinker.h\"\nvoid blink_once(int pin) { digitalWrite(pin, HIGH); delay(BLINK_MS); digitalWrite(pin, LOW); delay(BLINK_MS); }\n").unwrap();
    // The project pio ci would make, with the offline kit's packages.
    let project = tmp.path().join("ci-ref");
    write_project(&project, "[env:megaatmega2560]\nplatform = atmelavr\nframework = arduino\nboard = megaatmega2560\nbuild_flags = -DBLINK_MS=300\n");
    copy_dir(&sketch, &project.join("src"));
    copy_dir(&lib, &project.join("lib/Blinker"));
    let (want_hex, want_flash, want_ram) = pio_reference(&project, "megaatmega2560");

    let cache = tmp.path().join("cache");
    let args = ["ci", sketch.to_str().unwrap(), "-b", "megaatmega2560", "-l", lib.to_str().unwrap(), "-O", "build_flags = -DBLINK_MS=300", "--out", "out"];
    let r = fbuild(&cache, tmp.path(), &args);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let line = r.stdout.lines().find(|l| l.contains(":megaatmega2560: flash ")).unwrap_or_else(|| panic!("no result line: {}", r.stdout));
    let hex = std::fs::read(line.rsplit("firmware ").next().unwrap().trim()).unwrap();
    assert!(hex == want_hex, "fbuild ci's firmware differs from pio run's on the same layout");
    assert!(line.contains(&format!("flash {want_flash} bytes, ram {want_ram} bytes")), "{line}");

    let r = fbuild(&cache, tmp.path(), &["ci", sketch.to_str().unwrap(), "-b", "unoo", "--out", "out"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("unknown PlatformIO board `unoo`") && r.stderr.trim().lines().count() == 1, "{}", r.stderr);
}

/// `build_src_flags` reach the project's own sources and nothing else: the private
/// library's source picks another body when the define reaches it, and the sketch does
/// not compile without it. `fbuild build` and `compile-many` both, against `pio run`.
#[test]
fn build_src_flags_reach_the_project_sources_only() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("srcflags");
    write_project(&project, "[env:uno]\nboard = uno\nframework = arduino\nbuild_flags = -DBOTH=5\nbuild_src_flags = -DSRC_ONLY=40 -Isrc_inc\n");
    std::fs::create_dir_all(project.join("lib/Tag")).unwrap();
    std::fs::create_dir_all(project.join("src_inc")).unwrap();
    std::fs::write(project.join("src_inc/extra.h"), "#define EXTRA 7\n").unwrap();
    std::fs::write(project.join("lib/Tag/Tag.h"), "#pragma once\nint tag();\n").unwrap();
    std::fs::write(project.join("lib/Tag/Tag.cpp"), "#include \"Tag.h\"\n#ifdef SRC_ONLY\nint tag() { return 1000 + BOTH; }\n#else\nint tag() { return 2000 + BOTH; }\n#endif\n").unwrap();
    std::fs::write(
        project.join("src/main.cpp"),
        "#include <Arduino.h>\n#include <Tag.h>\n#include <extra.h>\nvoid setup() { Serial.begin(9600); Serial.println(tag() + SRC_ONLY + EXTRA); }\nvoid loop() {}\n",
    )
    .unwrap();
    let (want_hex, want_flash, want_ram) = pio_reference(&project, "uno");
    let cache = tmp.path().join("cache");
    let (hex, flash, ram) = fbuild_project(&cache, &project, "uno", &tmp.path().join("out"));
    assert!(hex == want_hex, "fbuild build's firmware differs from pio run's");
    assert_eq!((flash, ram), (want_flash, want_ram));
    let blink = example("01.Basics/Blink");
    let r = fbuild(&cache, tmp.path(), &["compile-many", "--out", "many", project.to_str().unwrap(), blink.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let results = read_json(&tmp.path().join("many/results.json"));
    let s = results["sketches"].as_array().unwrap().iter().find(|s| s["name"] == "srcflags:uno").unwrap();
    assert!(std::fs::read(s["firmware"]["hex"].as_str().unwrap()).unwrap() == want_hex, "compile-many's firmware differs from pio run's");
}

/// `lib_compat_mode` decides which libraries exist for the env, as PlatformIO decides
/// it: `soft` (the default) leaves out a library.json library for another framework,
/// `strict` also one whose library.properties architectures are other platforms', `off`
/// keeps every one, and a library.json `build.libCompatMode` overrides the env's. Each
/// env builds where `pio run` builds (byte for byte) and fails where it fails.
#[test]
fn lib_compat_mode_matches_pio_run() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("compat");
    let envs = [
        ("off_esp", "lib_compat_mode = off\nbuild_flags = -DUSE_ESP", true),
        ("soft_esp", "build_flags = -DUSE_ESP", false),
        ("soft_sam", "lib_compat_mode = soft\nbuild_flags = -DUSE_SAM", true),
        ("strict_sam", "lib_compat_mode = strict\nbuild_flags = -DUSE_SAM", false),
        ("strict_own", "lib_compat_mode = strict\nbuild_flags = -DUSE_OWN -DUSE_AVR", true),
    ];
    let ini: String = envs.iter().map(|(e, opts, _)| format!("[env:{e}]\nboard = uno\nframework = arduino\n{opts}\n")).collect();
    write_project(&project, &ini);
    let lib = |name: &str, manifest: (&str, &str), value: u32| {
        let d = project.join("lib").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(manifest.0), manifest.1).unwrap();
        std::fs::write(d.join(format!("{name}.h")), format!("#pragma once\nint {}();\n", name.to_lowercase())).unwrap();
        std::fs::write(d.join(format!("{name}.cpp")), format!("#include \"{name}.h\"\nint {}() {{ return {value}; }}\n", name.to_lowercase())).unwrap();
    };
    lib("EspOnly", ("library.json", r#"{"name": "EspOnly", "version": "1.0.0", "frameworks": "espidf", "platforms": "*"}"#), 11);
    lib("SamOnly", ("library.properties", "name=SamOnly\nversion=1.0.0\narchitectures=sam\n"), 22);
    lib("OwnMode", ("library.json", r#"{"name": "OwnMode", "version": "1.0.0", "frameworks": ["espidf"], "platforms": ["espressif32"], "build": {"libCompatMode": "off"}}"#), 33);
    lib("AvrToo", ("library.properties", "name=AvrToo\nversion=1.0.0\narchitectures=sam,avr\n"), 44);
    std::fs::write(
        project.join("src/main.cpp"),
        "#include <Arduino.h>\n#ifdef USE_ESP\n#include <EspOnly.h>\n#define V esponly()\n#endif\n\
         #ifdef USE_SAM\n#include <SamOnly.h>\n#define V samonly()\n#endif\n\
         #ifdef USE_OWN\n#include <OwnMode.h>\n#include <AvrToo.h>\n#define V (ownmode() + avrtoo())\n#endif\n\
         void setup() { Serial.begin(9600); Serial.println(V); }\nvoid loop() {}\n",
    )
    .unwrap();
    let cache = tmp.path().join("cache");
    for (env, _, builds) in envs {
        let want = pio_outcome(&project, env, &[]);
        assert_eq!(want.is_some(), builds, "{env}: pio run's outcome is not the one this test expects");
        let got = fbuild_outcome(&cache, &project, env, &tmp.path().join("out"));
        match (want, got) {
            (Some((want_hex, want_flash, want_ram)), Ok((hex, flash, ram))) => {
                assert!(hex == want_hex, "{env}: fbuild's firmware differs from pio run's");
                assert_eq!((flash, ram), (want_flash, want_ram), "{env}: sizes");
            }
            (None, Err(e)) => assert!(e.contains(".h"), "{env}: fails on the missing header: {e}"),
            (Some(_), Err(e)) => panic!("{env}: pio run builds it, fbuild fails: {e}"),
            (None, Ok(_)) => panic!("{env}: pio run fails, fbuild builds it"),
        }
    }
    let bad = tmp.path().join("badcompat");
    write_project(&bad, "[env:uno]\nboard = uno\nframework = arduino\nlib_compat_mode = loose\n");
    std::fs::write(bad.join("src/main.cpp"), "void setup() {}\nvoid loop() {}\n").unwrap();
    let r = fbuild(&cache, &bad, &["build", "."]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("lib_compat_mode = `loose`; use off, soft or strict") && r.stderr.trim().lines().count() == 1, "{}", r.stderr);
}

/// `lib_ldf_mode`, each mode on a library whose include sits under `#if`: Alpha.h
/// includes Beta only `#if defined(ALPHA_USES_BETA)` (never), Alpha's second source
/// includes Gamma the same way, and Gamma's second source Delta. `chain` (the default)
/// follows the include lines without evaluating them and reads all sources of the
/// libraries that finds (Beta, Gamma; not Delta), `deep` reads all sources of every
/// library (Delta too), the `+` modes evaluate (none of them), `off` takes lib_deps only. The sketch sees which libraries are on its path through
/// `__has_include`, so each mode makes other firmware; fbuild's must be pio run's.
#[test]
fn lib_ldf_modes_match_pio_run() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("ldf");
    let modes = ["off", "chain", "deep", "chain+", "deep+"];
    let ini: String = modes
        .iter()
        .enumerate()
        .map(|(i, m)| format!("[env:m{i}]\nboard = uno\nframework = arduino\nlib_ldf_mode = {m}\n{}\n", if *m == "off" { "lib_deps = Alpha" } else { "" }))
        .collect();
    write_project(&project, &ini);
    let write = |rel: &str, text: &str| {
        let p = project.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("lib/Alpha/Alpha.h", "#pragma once\n#if defined(ALPHA_USES_BETA)\n#include <Beta.h>\n#endif\nint alpha();\n");
    write("lib/Alpha/Alpha.cpp", "#include \"Alpha.h\"\nint alpha() { return 1; }\n");
    write("lib/Alpha/extra.cpp", "#if defined(ALPHA_USES_GAMMA)\n#include <Gamma.h>\n#endif\nint alpha_extra() { return 4; }\n");
    write("lib/Beta/Beta.h", "#pragma once\nint beta();\n");
    write("lib/Beta/Beta.cpp", "#include \"Beta.h\"\nint beta() { return 2; }\n");
    write("lib/Gamma/Gamma.h", "#pragma once\nint gamma_value();\n");
    write("lib/Gamma/Gamma.cpp", "#include \"Gamma.h\"\nint gamma_value() { return 3; }\n");
    write("lib/Gamma/more.cpp", "#if defined(GAMMA_USES_DELTA)\n#include <Delta.h>\n#endif\nint gamma_more() { return 5; }\n");
    write("lib/Delta/Delta.h", "#pragma once\nint delta();\n");
    write("lib/Delta/Delta.cpp", "#include \"Delta.h\"\nint delta() { return 6; }\n");
    write(
        "src/main.cpp",
        "#include <Arduino.h>\n#include <Alpha.h>\n\
         #if __has_include(<Beta.h>)\n#define B 20\n#else\n#define B 10\n#endif\n\
         #if __has_include(<Gamma.h>)\n#define G 300\n#else\n#define G 100\n#endif\n\
         #if __has_include(<Delta.h>)\n#define D 4000\n#else\n#define D 1000\n#endif\n\
         void setup() { Serial.begin(9600); Serial.println(alpha() + B + G + D); }\nvoid loop() {}\n",
    );
    let cache = tmp.path().join("cache");
    let mut distinct: Vec<Vec<u8>> = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        let env = format!("m{i}");
        let (want_hex, want_flash, want_ram) = pio_outcome(&project, &env, &[]).unwrap_or_else(|| panic!("lib_ldf_mode = {mode}: pio run fails"));
        let (hex, flash, ram) = fbuild_project(&cache, &project, &env, &tmp.path().join("out"));
        assert!(hex == want_hex, "lib_ldf_mode = {mode}: fbuild's firmware differs from pio run's");
        assert_eq!((flash, ram), (want_flash, want_ram), "lib_ldf_mode = {mode}: sizes");
        if !distinct.contains(&want_hex) {
            distinct.push(want_hex);
        }
    }
    assert!(distinct.len() >= 3, "the modes must make different firmware for this test to prove anything: {} kinds", distinct.len());
    let bad = tmp.path().join("badldf");
    write_project(&bad, "[env:uno]\nboard = uno\nframework = arduino\nlib_ldf_mode = deeper\n");
    std::fs::write(bad.join("src/main.cpp"), "void setup() {}\nvoid loop() {}\n").unwrap();
    let r = fbuild(&cache, &bad, &["build", "."]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("lib_ldf_mode = `deeper`; use off, chain, deep, chain+ or deep+") && r.stderr.trim().lines().count() == 1, "{}", r.stderr);
}

/// `__FILE__` in a project's `.ino` names the file in the project's `src/`, as
/// PlatformIO's converter writes it into the merged source, not fbuild's staged copy.
#[test]
fn file_macro_in_an_ino_names_the_project_source() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("where");
    write_project(&project, "[env:uno]\nboard = uno\nframework = arduino\n");
    std::fs::write(project.join("src/Where.ino"), "void setup() { Serial.begin(9600); Serial.println(__FILE__); }\nvoid loop() {}\n").unwrap();
    std::fs::write(project.join("src/more.ino"), "int more() { return __LINE__; }\n").unwrap();
    // The path is in the firmware, so pio runs in place (not on a remembered copy); its
    // .pio folder is then one more thing fbuild must not read.
    let pio = offline_pio();
    let o = Command::new(pio.join("venv/bin/pio")).args(["run", "-s"]).current_dir(&project).env("PLATFORMIO_CORE_DIR", pio.join("core")).output().expect("run pio");
    assert!(o.status.success(), "pio run: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let want_hex = std::fs::read(project.join(".pio/build/uno/firmware.hex")).unwrap();
    let (hex, _, _) = fbuild_project(&tmp.path().join("cache"), &project, "uno", &tmp.path().join("out"));
    assert!(hex == want_hex, "fbuild's firmware differs from pio run's (a staged path in __FILE__ changes its length)");
}

#[test]
fn build_unflags_match_pio_run() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("unflags");
    // C++14 only compiles once -std=gnu++11 is gone; -DSLOW is unflagged so the fast path builds.
    write_project(
        &project,
        "[env:uno]\nboard = uno\nframework = arduino\nbuild_flags = -std=gnu++14 -DSLOW\nbuild_unflags = -std=gnu++11 -DSLOW\n",
    );
    std::fs::write(
        project.join("src/main.cpp"),
        "#include <Arduino.h>\nconstexpr int mask() { int m = 0; for (int i = 0; i < 4; ++i) m |= 1 << i; return m; }\n\
         #ifdef SLOW\n#error build_unflags did not remove -DSLOW\n#endif\n\
         void setup() { DDRB = mask(); PORTB = 0b0000'1010; }\nvoid loop() {}\n",
    )
    .unwrap();
    let (want_hex, want_flash, want_ram) = pio_reference(&project, "uno");
    let (hex, flash, ram) = fbuild_project(&tmp.path().join("cache"), &project, "uno", &tmp.path().join("out"));
    assert!(hex == want_hex, "fbuild's firmware differs from pio run's");
    assert_eq!((flash, ram), (want_flash, want_ram));
}

#[test]
fn private_libraries_in_lib_match_pio_run() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("privlibs");
    write_project(&project, "[env:uno]\nboard = uno\nframework = arduino\n");
    // lib/Pattern needs lib/Leds; the sketch names both (flat folders; every layout is in
    // private_library_layouts_and_chains_match_pio_run_in_every_ldf_mode).
    let files = [
        ("lib/Leds/Leds.h", "#pragma once\nvoid leds_init();\nvoid leds_set(unsigned char v);\n"),
        ("lib/Leds/Leds.cpp", "#include <Arduino.h>\n#include \"Leds.h\"\nvoid leds_init() { for (int i = 2; i < 6; i++) pinMode(i, OUTPUT); }\nvoid leds_set(unsigned char v) { for (int i = 0; i < 4; i++) digitalWrite(i + 2, (v >> i) & 1); }\n"),
        ("lib/Pattern/Pattern.h", "#pragma once\nvoid pattern_step();\n"),
        ("lib/Pattern/Pattern.cpp", "#include <Leds.h>\n#include \"Pattern.h\"\nstatic unsigned char n;\nvoid pattern_step() { leds_set(n++); }\n"),
        ("src/main.cpp", "#include <Arduino.h>\n#include <Leds.h>\n#include <Pattern.h>\nvoid setup() { leds_init(); Serial.begin(9600); }\nvoid loop() { pattern_step(); Serial.println(millis()); delay(100); }\n"),
    ];
    for (rel, text) in files {
        std::fs::create_dir_all(project.join(rel).parent().unwrap()).unwrap();
        std::fs::write(project.join(rel), text).unwrap();
    }
    let (want_hex, want_flash, want_ram) = pio_reference(&project, "uno");
    let (hex, flash, ram) = fbuild_project(&tmp.path().join("cache"), &project, "uno", &tmp.path().join("out"));
    assert!(hex == want_hex, "fbuild's firmware differs from pio run's");
    assert_eq!((flash, ram), (want_flash, want_ram));
}

#[test]
fn bad_projects_exit_2_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let cases: [(&str, &str, &[&str], &str); 6] = [
        ("malformed", "[env:uno]\nboard = uno\nthis line is not an option\n", &[], "platformio.ini:3: "),
        ("unknown-env", "[env:uno]\nplatform = atmelavr\nboard = uno\n", &["-e", "nano"], "unknown env `nano`"),
        ("circular", "[env:a]\nextends = env:b\n[env:b]\nextends = env:a\n", &[], "circular `extends`"),
        ("registry", "[env:uno]\nplatform = atmelavr\nboard = uno\nlib_deps = someone/NotInstalledAnywhere@^2.1\n", &[], "no network"),
        ("no-src", "[platformio]\nsrc_dir = missing\n[env:uno]\nplatform = atmelavr\nboard = uno\n", &[], "src_dir"),
        ("build-type", "[env:uno]\nplatform = atmelavr\nboard = uno\nbuild_type = fastest\n", &[], "build_type = `fastest`; use release or debug"),
    ];
    for (name, ini, extra, expect) in cases {
        let project = tmp.path().join(name);
        std::fs::create_dir_all(project.join("src")).unwrap();
        std::fs::write(project.join("src/main.cpp"), "#include <Arduino.h>\nvoid setup(){}\nvoid loop(){}\n").unwrap();
        std::fs::write(project.join("platformio.ini"), ini).unwrap();
        let mut args = vec!["build", project.to_str().unwrap(), "--out", tmp.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        let r = fbuild(&cache, tmp.path(), &args);
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{name}: expected `{expect}` in {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{name}: {}", r.stderr);
    }
}

/// `lib` after the libraries it depends on (library.properties `depends`, library.json
/// `dependencies`), found among `libs` by name, recursively: dependencies first.
fn with_dependencies(libs: &Path, lib: &Path) -> Vec<PathBuf> {
    let name_of = |dir: &Path| -> String {
        let text = std::fs::read_to_string(dir.join("library.properties")).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("name=")).unwrap_or_default().trim().to_string()
    };
    let text = std::fs::read_to_string(lib.join("library.properties")).unwrap_or_default();
    let mut depends: Vec<String> =
        text.lines().find_map(|l| l.strip_prefix("depends=")).unwrap_or_default().split(',').map(|d| d.trim().to_string()).collect();
    let json: serde_json::Value = std::fs::read(lib.join("library.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    if let Some(map) = json.get("dependencies").and_then(|d| d.as_object()) {
        depends.extend(map.keys().map(|k| k.rsplit('/').next().unwrap_or(k).to_string()));
    }
    let mut out = Vec::new();
    for dep in depends.iter().map(String::as_str).filter(|d| !d.is_empty()) {
        let dir = std::fs::read_dir(libs).unwrap().flatten().map(|e| e.path()).find(|p| name_of(p) == dep);
        let dir = dir.unwrap_or_else(|| panic!("{}: depends on {dep}, not among {}", lib.display(), libs.display()));
        for d in with_dependencies(libs, &dir) {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out.push(lib.to_path_buf());
    out
}

/// The examples of ../shared/libraries as projects, against `pio run`: byte-identical
/// firmware and sizes where it builds, a failure where it fails. A deterministic subset
/// keeps CI's budget (each `pio run` takes seconds, cold): every library's first example
/// (by name), twice. Libraries alternate (by name) between (uno with `lib_deps =
/// symlink://` + megaatmega2560 with `lib_extra_dirs`) and the other two pairings, so each
/// board meets each way of naming libraries.
#[test]
fn shared_library_examples_match_pio_run() {
    let libs = shared_libraries();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&libs).unwrap().flatten().map(|e| e.path()).filter(|p| p.join("examples").is_dir()).collect();
    names.sort();
    assert!(names.len() >= 10, "expected the shared libraries at {}", libs.display());
    let (mut built, mut failed) = (0, 0);
    for (i, lib) in names.iter().enumerate() {
        let mut examples: Vec<PathBuf> = std::fs::read_dir(lib.join("examples")).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        examples.sort();
        let example = &examples[0];
        // The library's `depends` too: pio would fetch them from its registry otherwise.
        let chain = with_dependencies(&libs, lib);
        let symlink = format!("lib_deps = {}", chain.iter().map(|l| format!("symlink://{}", l.display())).collect::<Vec<_>>().join(", "));
        let extra = format!("lib_extra_dirs = {}", libs.display());
        // A library.json dependency names an owner (`paulstoffregen/OneWire`), which pio
        // fetches from its registry even beside a symlinked OneWire: lib_extra_dirs only.
        let registry_deps = std::fs::read_to_string(lib.join("library.json")).is_ok_and(|t| t.contains("\"dependencies\""));
        let cases = if registry_deps {
            [("uno", &extra), ("megaatmega2560", &extra)]
        } else if i % 2 == 0 {
            [("uno", &symlink), ("megaatmega2560", &extra)]
        } else {
            [("uno", &extra), ("megaatmega2560", &symlink)]
        };
        for (board, libs_line) in cases {
            let label = format!("{}/{} on {board} with {}", lib.file_name().unwrap().to_string_lossy(), example.file_name().unwrap().to_string_lossy(), libs_line.split(' ').next().unwrap());
            let project = tmp.path().join(format!("{}-{board}", example.file_name().unwrap().to_string_lossy()));
            write_project(&project, &format!("[env:b]\nboard = {board}\nframework = arduino\n{libs_line}\n"));
            copy_dir(example, &project.join("src"));
            let inputs: Vec<&Path> = if libs_line.starts_with("lib_deps") { chain.iter().map(PathBuf::as_path).collect() } else { vec![libs.as_path()] };
            let want = pio_outcome(&project, "b", &inputs);
            let got = fbuild_outcome(&cache, &project, "b", &tmp.path().join("out").join(project.file_name().unwrap()));
            match (want, got) {
                (Some((want_hex, want_flash, want_ram)), Ok((hex, flash, ram))) => {
                    assert!(hex == want_hex, "{label}: fbuild's firmware differs from pio run's");
                    assert_eq!((flash, ram), (want_flash, want_ram), "{label}: sizes");
                    built += 1;
                }
                (None, Err(_)) => failed += 1,
                (Some(_), Err(e)) => panic!("{label}: pio run builds it, fbuild fails: {e}"),
                (None, Ok(_)) => panic!("{label}: pio run fails, fbuild builds it"),
            }
        }
    }
    // Both outcomes must occur, or the comparison proves less than it claims.
    assert!(built >= 10 && failed >= 2, "built {built}, failed {failed}");
}

/// Every example of ../shared/libraries as a project (`lib_extra_dirs`) on uno, all in one
/// `compile-many` (so across projects that share a core): each builds where `pio run`
/// builds, byte for byte with the same sizes, and fails where it fails. `pio run` goes
/// two at a time; its outcomes are remembered outside the clone.
#[test]
fn every_shared_library_example_matches_pio_run_in_one_compile_many() {
    let libs = shared_libraries();
    let tmp = tempfile::tempdir().unwrap();
    // Some examples print __FILE__: the projects live at one path outside the clone, so
    // pio run can build them there and its outcome be remembered.
    let home = reference_cache_root().join("projects/shared-libraries-uno");
    let mut examples: Vec<PathBuf> = Vec::new();
    for lib in std::fs::read_dir(&libs).unwrap().flatten().map(|e| e.path()) {
        if let Ok(rd) = std::fs::read_dir(lib.join("examples")) {
            examples.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    examples.sort();
    assert!(examples.len() >= 80, "expected the 86 examples at {}", libs.display());
    let projects: Vec<PathBuf> = examples
        .iter()
        .map(|ex| {
            let lib = ex.parent().unwrap().parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
            let p = home.join(format!("{lib}-{}", ex.file_name().unwrap().to_string_lossy()));
            let _ = std::fs::remove_dir_all(p.join("src"));
            write_project(&p, &format!("[env:b]\nboard = uno\nframework = arduino\nlib_extra_dirs = {}\n", libs.display()));
            copy_dir(ex, &p.join("src"));
            p
        })
        .collect();
    let want = on_two_workers(&projects, |p| pio_outcome_in_place(p, "b", &[libs.as_path()]));
    let results = compile_many_projects(tmp.path(), &projects);
    let sketches = results["sketches"].as_array().unwrap();
    let (mut built, mut failed) = (0, 0);
    for (i, want) in want.into_iter().enumerate() {
        let name = format!("{}:b", projects[i].file_name().unwrap().to_string_lossy());
        let s = sketches.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no result for {name}"));
        match want {
            Some((want_hex, want_flash, want_ram)) => {
                assert_eq!(s["status"], "ok", "{name}: pio run builds it, fbuild fails: {}", s["first_error"]);
                let hex = std::fs::read(s["firmware"]["hex"].as_str().unwrap()).unwrap();
                assert!(hex == want_hex, "{name}: fbuild's firmware differs from pio run's");
                assert_eq!((s["flash_used"].as_u64().unwrap(), s["ram_used"].as_u64().unwrap()), (want_flash, want_ram), "{name}: sizes");
                built += 1;
            }
            None => {
                assert_eq!(s["status"], "failed", "{name}: pio run fails, fbuild builds it");
                failed += 1;
            }
        }
    }
    assert!(built >= 60 && failed >= 5, "built {built}, failed {failed}");
}

#[test]
fn build_src_filter_matches_pio_run() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("filtered");
    // Both variants define variant(): only the filter keeps the link from failing, and
    // broken/ does not compile at all.
    write_project(
        &project,
        "[env]\nframework = arduino\nbuild_src_filter =\n  +<*>\n  -<broken/>\n  -<variant_b.cpp>\n\n[env:uno]\nboard = uno\n\n[env:mega]\nboard = megaatmega2560\n",
    );
    let files = [
        ("src/main.cpp", "#include <Arduino.h>\nint variant();\nvoid setup() { Serial.begin(9600); }\nvoid loop() { Serial.println(variant()); delay(500); }\n"),
        ("src/variant_a.cpp", "int variant() { return 11; }\n"),
        ("src/variant_b.cpp", "int variant() { return 22; }\n"),
        ("src/broken/broken.cpp", "#error build_src_filter did not leave out broken/\n"),
        ("src/kept/helper.c", "int helper_c(void) { return 3; }\n"),
    ];
    for (rel, text) in files {
        std::fs::create_dir_all(project.join(rel).parent().unwrap()).unwrap();
        std::fs::write(project.join(rel), text).unwrap();
    }
    for env in ["uno", "mega"] {
        let (want_hex, want_flash, want_ram) = pio_reference(&project, env);
        let (hex, flash, ram) = fbuild_project(&tmp.path().join("cache"), &project, env, &tmp.path().join("out"));
        assert!(hex == want_hex, "env {env}: fbuild's firmware differs from pio run's");
        assert_eq!((flash, ram), (want_flash, want_ram), "env {env}: sizes");
    }
    // The same project with no filter: both variants are compiled, and the link fails.
    let ini = std::fs::read_to_string(project.join("platformio.ini")).unwrap();
    std::fs::write(project.join("platformio.ini"), ini.replace("  -<variant_b.cpp>\n", "")).unwrap();
    std::fs::remove_dir_all(project.join("src/broken")).unwrap();
    let r = fbuild(&tmp.path().join("cache"), &project, &["build", ".", "-e", "uno", "--out", tmp.path().join("out2").to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("variant"), "{}", r.stderr);
}

#[test]
fn lib_ignore_matches_pio_run() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("ignoring");
    // Two private libraries offer Blinker.h; each env ignores one, so the other is used.
    write_project(
        &project,
        "[env]\nframework = arduino\nboard = uno\n\n[env:fast]\nlib_ignore = SlowBlink\n\n[env:slow]\nlib_ignore = FastBlink\n",
    );
    let files = [
        ("lib/FastBlink/Blinker.h", "#pragma once\nvoid blink();\n"),
        ("lib/FastBlink/Blinker.cpp", "#include <Arduino.h>\n#include \"Blinker.h\"\nvoid blink() { digitalWrite(13, !digitalRead(13)); delay(50); }\n"),
        ("lib/SlowBlink/Blinker.h", "#pragma once\nvoid blink();\n"),
        ("lib/SlowBlink/Blinker.cpp", "#include <Arduino.h>\n#include \"Blinker.h\"\nvoid blink() { digitalWrite(13, HIGH); delay(900); digitalWrite(13, LOW); delay(900); }\n"),
        ("src/main.cpp", "#include <Arduino.h>\n#include <Blinker.h>\nvoid setup() { pinMode(13, OUTPUT); }\nvoid loop() { blink(); }\n"),
    ];
    for (rel, text) in files {
        std::fs::create_dir_all(project.join(rel).parent().unwrap()).unwrap();
        std::fs::write(project.join(rel), text).unwrap();
    }
    let mut firmwares = Vec::new();
    for env in ["fast", "slow"] {
        let (want_hex, want_flash, want_ram) = pio_reference(&project, env);
        let (hex, flash, ram) = fbuild_project(&tmp.path().join("cache"), &project, env, &tmp.path().join("out"));
        assert!(hex == want_hex, "env {env}: fbuild's firmware differs from pio run's");
        assert_eq!((flash, ram), (want_flash, want_ram), "env {env}: sizes");
        firmwares.push(hex);
    }
    assert_ne!(firmwares[0], firmwares[1], "each env must link the library it did not ignore");
}

#[test]
fn extra_scripts_warn_by_name_and_fail_with_strict() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("scripted");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("src/main.cpp"), "#include <Arduino.h>\nvoid setup(){}\nvoid loop(){}\n").unwrap();
    std::fs::write(project.join("platformio.ini"), "[env:uno]\nplatform = atmelavr\nframework = arduino\nboard = uno\nextra_scripts = pre:tools/stamp_version.py\n").unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out");
    let r = fbuild(&cache, &project, &["build", ".", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(warnings[0].contains("pre:tools/stamp_version.py") && warnings[0].contains("[env:uno]"), "{}", warnings[0]);

    let r = fbuild(&cache, &project, &["build", ".", "--strict", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("pre:tools/stamp_version.py") && r.stderr.contains("--strict"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "nothing is built: {}", r.stdout);
}

#[test]
fn build_type_debug_matches_pio_run() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("debugging");
    write_project(
        &project,
        "[env]\nframework = arduino\n\n[env:mega_release]\nboard = megaatmega2560\n\n[env:mega_debug]\nboard = megaatmega2560\nbuild_type = debug\n\n[env:uno_debug]\nboard = uno\nbuild_type = debug\n",
    );
    std::fs::copy(example("04.Communication/ASCIITable").join("ASCIITable.ino"), project.join("src/ASCIITable.ino")).unwrap();
    std::fs::write(project.join("src/flags.cpp"), "#ifndef __PLATFORMIO_BUILD_DEBUG__\nint release_only = 1;\n#endif\n").unwrap();
    let mut firmwares = Vec::new();
    for env in ["mega_release", "mega_debug", "uno_debug"] {
        let (want_hex, want_flash, want_ram) = pio_reference(&project, env);
        let (hex, flash, ram) = fbuild_project(&tmp.path().join("cache"), &project, env, &tmp.path().join("out"));
        assert!(hex == want_hex, "env {env}: fbuild's firmware differs from pio run's");
        assert_eq!((flash, ram), (want_flash, want_ram), "env {env}: sizes");
        firmwares.push(hex);
    }
    assert_ne!(firmwares[0], firmwares[1], "-Og must change the firmware");
}

/// Private library layouts as PlatformIO reads them: `flat` (headers and sources in the
/// folder, no manifest), `src` (a `src/` folder, no manifest), `json` (library.json with
/// `srcDir` and `includeDir`) and `include` (`include/` beside `src/`).
const LAYOUTS: [&str; 4] = ["flat", "src", "json", "include"];

/// How a library reaches the next one of its chain: 0 its header includes the next's,
/// 1 its same-named source does, 2 another of its sources does, under a conditional that
/// is never true (the classic modes follow it, the `+` modes do not; `chain` reads that
/// source only of a library the project's files reached).
const CHAINS: [(usize, usize); 8] = [(0, 1), (1, 2), (2, 0), (2, 2), (0, 0), (1, 1), (0, 2), (1, 0)];

/// Write library `name` into `project/lib` in `layout`, using `next` (its name and how
/// it is reached) if any; `value` makes its result its own.
fn write_layout_library(project: &Path, name: &str, layout: &str, next: Option<(&str, usize)>, value: usize) {
    let dir = project.join("lib").join(name);
    let (header_dir, source_dir) = match layout {
        "flat" => (dir.clone(), dir.clone()),
        "src" => (dir.join("src"), dir.join("src")),
        "json" => (dir.join("api"), dir.join("code")),
        "include" => (dir.join("include"), dir.join("src")),
        other => panic!("layout {other}"),
    };
    let write = |path: PathBuf, text: String| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    if layout == "json" {
        write(dir.join("library.json"), format!("{{\"name\": \"{name}\", \"version\": \"1.0.0\", \"build\": {{\"srcDir\": \"code\", \"includeDir\": \"api\"}}}}\n"));
    }
    let include_next = |how: usize| match next {
        Some((n, h)) if h == how => format!("#include <{n}.h>\n"),
        _ => String::new(),
    };
    write(header_dir.join(format!("{name}.h")), format!("#pragma once\n{}int {name}_value();\n", include_next(0)));
    let call = match next {
        Some((n, 0 | 1)) => format!(" + {n}_value()"),
        _ => String::new(),
    };
    write(source_dir.join(format!("{name}.cpp")), format!("#include \"{name}.h\"\n{}int {name}_value() {{ return {value}{call}; }}\n", include_next(1)));
    if let Some((n, 2)) = next {
        write(source_dir.join(format!("{name}_more.cpp")), format!("#ifdef FBUILD_TEST_NEVER_DEFINED\n#include <{n}.h>\n#endif\nint {name}_more() {{ return {value}; }}\n"));
    }
}

/// One project per `lib_ldf_mode`, each with envs for uno and megaatmega2560 and eight
/// chains of three libraries (`C{chain}{H,M,T}`) whose layouts walk a de Bruijn sequence,
/// so every ordered pair of layouts is one link of a chain (the same pair in every
/// mode). The project includes each chain's head; its `main.cpp` prints each chain's
/// value and a mask of the libraries whose headers its own compile can see.
fn write_layout_projects(root: &Path) -> Vec<PathBuf> {
    // De Bruijn B(4, 2) closed into a circuit: its 16 steps are the 16 ordered pairs.
    let walk = [0, 0, 1, 0, 2, 0, 3, 1, 1, 2, 1, 3, 2, 2, 3, 3, 0];
    let modes = ["off", "chain", "deep", "chain+", "deep+"];
    let mut names = Vec::new();
    let mut projects = Vec::new();
    for (m, mode) in modes.iter().enumerate() {
        let project = root.join(format!("libs-{}", mode.replace('+', "plus")));
        let _ = std::fs::remove_dir_all(&project);
        let mut libs_tails_first: Vec<[String; 3]> = Vec::new();
        let mut main = String::from("#include <Arduino.h>\n");
        let mut body = String::new();
        let mut mask = String::new();
        for (c, &(head_how, mid_how)) in CHAINS.iter().enumerate() {
            let layouts = [walk[2 * c], walk[2 * c + 1], walk[2 * c + 2]];
            let lib = |pos: usize| format!("C{c}{}", ["H", "M", "T"][pos]);
            write_layout_library(&project, &lib(0), LAYOUTS[layouts[0]], Some((&lib(1), head_how)), 100 * c + 1);
            write_layout_library(&project, &lib(1), LAYOUTS[layouts[1]], Some((&lib(2), mid_how)), 100 * c + 10);
            write_layout_library(&project, &lib(2), LAYOUTS[layouts[2]], None, 100 * c + 50);
            main.push_str(&format!("#include <{}.h>\n", lib(0)));
            body.push_str(&format!("  Serial.println({}_value());\n", lib(0)));
            for pos in 0..3 {
                let bit = 3 * c + pos;
                mask.push_str(&format!("#if __has_include(<{}.h>)\n  m |= 1UL << {bit};\n#endif\n", lib(pos)));
            }
            libs_tails_first.push([lib(2), lib(1), lib(0)]);
            if m == 0 {
                names.push(format!("chain {c}: {} -> {} -> {}", LAYOUTS[layouts[0]], LAYOUTS[layouts[1]], LAYOUTS[layouts[2]]));
            }
        }
        // `off` follows no include: lib_deps names every library, each after those it uses.
        let lib_deps = if *mode == "off" {
            let all: Vec<String> = (0..3).flat_map(|pos| libs_tails_first.iter().map(move |l| l[pos].clone())).collect();
            format!("lib_deps = {}\n", all.join(", "))
        } else {
            String::new()
        };
        let envs: String = [("uno", "uno"), ("mega", "megaatmega2560")]
            .iter()
            .map(|(env, board)| format!("[env:{env}]\nboard = {board}\nframework = arduino\nlib_ldf_mode = {mode}\n{lib_deps}\n"))
            .collect();
        write_project(&project, &envs);
        std::fs::write(
            project.join("src/main.cpp"),
            format!("{main}void setup() {{\n  Serial.begin(9600);\n{body}  unsigned long m = 0;\n{mask}  Serial.println(m);\n}}\nvoid loop() {{}}\n"),
        )
        .unwrap();
        projects.push(project);
    }
    assert_eq!(names.len(), CHAINS.len());
    projects
}

/// Private libraries that include one another, in every pairing of layouts, three deep,
/// in each `lib_ldf_mode`, on uno and megaatmega2560: one compile-many over the five
/// projects, every env byte for byte `pio run`'s (issue 25: a flat library including
/// `<B.h>` of a `lib/B/src` library did not compile).
#[test]
fn private_library_layouts_and_chains_match_pio_run_in_every_ldf_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let projects = write_layout_projects(tmp.path());
    let jobs: Vec<(usize, &str)> = (0..projects.len()).flat_map(|p| [(p, "uno"), (p, "mega")]).collect();
    let want = on_two_workers(&jobs, |&(p, env)| pio_outcome(&projects[p], env, &[]));
    let results = compile_many_projects(tmp.path(), &projects);
    let sketches = results["sketches"].as_array().unwrap();
    let mut distinct: Vec<Vec<u8>> = Vec::new();
    for (&(p, env), want) in jobs.iter().zip(want) {
        let name = format!("{}:{env}", projects[p].file_name().unwrap().to_string_lossy());
        let s = sketches.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no result for {name}"));
        let (want_hex, want_flash, want_ram) = want.unwrap_or_else(|| panic!("{name}: pio run fails on the fixture"));
        assert_eq!(s["status"], "ok", "{name}: pio run builds it, fbuild fails: {}", s["first_error"]);
        let hex = std::fs::read(s["firmware"]["hex"].as_str().unwrap()).unwrap();
        assert!(hex == want_hex, "{name}: fbuild's firmware differs from pio run's");
        assert_eq!((s["flash_used"].as_u64().unwrap(), s["ram_used"].as_u64().unwrap()), (want_flash, want_ram), "{name}: sizes");
        if env == "uno" && !distinct.contains(&want_hex) {
            distinct.push(want_hex);
        }
    }
    // off (every library) and deep find all; chain misses a tail; the + modes skip the
    // dead conditionals' libraries.
    assert!(distinct.len() >= 3, "the modes must find different libraries for this test to prove anything: {} kinds", distinct.len());
}

/// `f` of each item on two threads (pio run uses both cores itself only in part), the
/// results in the items' order.
fn on_two_workers<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut got: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut got = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(item) = items.get(i) else { return got };
                        got.push((i, f(item)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    got.sort_by_key(|(i, _)| *i);
    got.into_iter().map(|(_, r)| r).collect()
}

/// `fbuild compile-many --out out PROJECT...` in `dir` (its cache beside): results.json,
/// whether or not some env failed.
fn compile_many_projects(dir: &Path, projects: &[PathBuf]) -> serde_json::Value {
    let mut args = vec!["compile-many".to_string(), "--out".into(), "out".into()];
    args.extend(projects.iter().map(|p| p.display().to_string()));
    let r = fbuild(&dir.join("cache"), dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r.code == 0 || r.code == 1, "{}{}", r.stdout, r.stderr);
    read_json(&dir.join("out/results.json"))
}
