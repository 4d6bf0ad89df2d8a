//! The emulator is part of every build: the fbuild under test runs firmware, the
//! build script finds libsimavr however it was installed, and a build without it
//! fails in one line until the library appears (then cargo runs the script again).

mod common;

#[path = "../build/find_simavr.rs"]
#[allow(dead_code)] // `for_this_build` is the build script's
mod find_simavr;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// sim_avr.h's modification time as Debian installs it: 2019-08-29, long before
/// any build script ran.
fn debian_mtime() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_567_051_146)
}

/// Put a file at `path` with Debian's old modification time.
fn install_old(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::File::options().write(true).open(path).unwrap().set_modified(debian_mtime()).unwrap();
}

/// The binary `scripts/run.sh` and `scripts/test.sh` build (setup.sh, then cargo
/// build with the default features) is this one: it must run firmware.
#[test]
fn this_fbuild_runs_firmware() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("Hello");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Hello.ino"), "void setup() { Serial.begin(115200); Serial.println(\"emulated\"); }\nvoid loop() {}\n").unwrap();
    let out = t.path().join("out").display().to_string();
    let r = fbuild(&t.path().join("cache"), t.path(), &["run", "--out", &out, "--timeout", "1s", "--expect", "emulated", dir.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("emulated"), "the firmware's serial output: {}", r.stdout);
    assert!(!r.stderr.contains("without the emulator"), "{}", r.stderr);
}

#[test]
fn finds_the_library_in_any_folder_it_searches_whatever_its_mtime() {
    let t = tempfile::tempdir().unwrap();
    let (inc, local_inc) = (t.path().join("usr/include/simavr"), t.path().join("local/include/simavr"));
    let (multiarch, local_lib) = (t.path().join("usr/lib/x86_64-linux-gnu"), t.path().join("local/lib"));
    let includes = vec![inc.clone(), local_inc.clone()];
    let libs = vec![multiarch.clone(), local_lib.clone()];

    let missing = find_simavr::find(&includes, &libs).err().expect("nothing installed yet");
    assert!(!missing.contains('\n'), "one line: {missing}");
    assert!(missing.contains("no sim_avr.h in") && missing.contains(&inc.display().to_string()), "{missing}");
    assert!(missing.contains("scripts/setup.sh") && missing.contains("--no-default-features"), "{missing}");

    // Headers only: the archive is named as missing.
    install_old(&local_inc.join("sim_avr.h"), "");
    let missing = find_simavr::find(&includes, &libs).err().expect("no archive yet");
    assert!(missing.contains("no libsimavr.a in") && missing.contains(&multiarch.display().to_string()), "{missing}");

    install_old(&multiarch.join("libsimavr.a"), "!<arch>\n");
    let found = find_simavr::find(&includes, &libs).expect("installed");
    assert_eq!((found.include, found.lib_dir), (local_inc, multiarch.clone()));

    // The system search covers Debian's multiarch folder, where this machine has it.
    let (includes, libs) = find_simavr::search_dirs(None, None);
    assert!(includes.contains(&PathBuf::from("/usr/include/simavr")));
    let found = find_simavr::find(&includes, &libs).expect("scripts/setup.sh installed libsimavr-dev");
    assert!(found.lib_dir.join("libsimavr.a").is_file());
    // FBUILD_SIMAVR_* name the one folder to use.
    let (includes, libs) = find_simavr::search_dirs(Some(inc.clone()), Some(multiarch.clone()));
    assert_eq!((includes, libs), (vec![inc], vec![multiarch]));
}

/// A crate whose build script is fbuild's library search, run by the real cargo:
/// it prints where the build script found libsimavr.
fn probe_crate(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let search = repo().join("build/find_simavr.rs");
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"simavr-probe\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[features]\ndefault = [\"emulator\"]\nemulator = []\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("build.rs"),
        format!(
            "#[path = {search:?}]\nmod find_simavr;\nfn main() {{\n    if let Some(s) = find_simavr::for_this_build() {{\n        println!(\"cargo:rustc-env=PROBE_FOUND={{}}\", s.lib_dir.display());\n    }}\n}}\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() { println!(\"{}\", option_env!(\"PROBE_FOUND\").unwrap_or(\"none\")); }\n").unwrap();
}

#[test]
fn a_build_without_the_library_fails_in_one_line_and_the_next_build_after_installing_it_uses_it() {
    let t = tempfile::tempdir().unwrap();
    let krate = t.path().join("probe");
    probe_crate(&krate);
    let (inc, lib) = (t.path().join("include/simavr"), t.path().join("lib"));
    std::fs::create_dir_all(&inc).unwrap();
    std::fs::create_dir_all(&lib).unwrap();
    let cargo = |args: &[&str]| {
        let o = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .args(["--offline", "--quiet"])
            .current_dir(&krate)
            .env("CARGO_TARGET_DIR", t.path().join("target"))
            .env("FBUILD_SIMAVR_INCLUDE", &inc)
            .env("FBUILD_SIMAVR_LIB", &lib)
            .env_remove("CARGO_FEATURE_EMULATOR")
            .output()
            .unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    };

    // `cargo build` before scripts/setup.sh: no binary, one line saying what to do.
    let (ok, _, stderr) = cargo(&["build"]);
    assert!(!ok, "built without the library: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("the emulator needs libsimavr-dev")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("run scripts/setup.sh") && errors[0].contains("--no-default-features"), "{stderr}");

    // Installed afterwards, with files older than the build script's last run
    // (as dpkg installs them): the next build finds and uses them.
    install_old(&inc.join("sim_avr.h"), "");
    install_old(&lib.join("libsimavr.a"), "!<arch>\n");
    let (ok, stdout, stderr) = cargo(&["run"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), lib.display().to_string(), "the build found the library just installed");

    // Without the feature nothing is looked for, on purpose only.
    std::fs::remove_file(lib.join("libsimavr.a")).unwrap();
    let (ok, stdout, stderr) = cargo(&["run", "--no-default-features"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "none");
    // And with it again, the missing library is noticed, not remembered.
    let (ok, _, stderr) = cargo(&["build"]);
    assert!(!ok && stderr.contains("no libsimavr.a in"), "{stderr}");
}
