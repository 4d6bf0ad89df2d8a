//! Output files get the mode any other tool would give them (0666 less the umask,
//! executables 0777 less the umask), cold and from the cache, so CI artifact
//! uploaders and web servers running as another user can read them.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// Run fbuild under `umask`, with its own cache folder.
fn fbuild_under_umask(umask: u32, cache: &Path, cwd: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(fbuild_bin());
    cmd.args(args).current_dir(cwd).env("FBUILD_CACHE_DIR", cache).env("CI", "true");
    // SAFETY: umask is async-signal-safe and touches nothing but the child.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(umask as libc::mode_t);
            Ok(())
        });
    }
    let o = cmd.output().expect("run fbuild");
    Run { code: o.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&o.stdout).into_owned(), stderr: String::from_utf8_lossy(&o.stderr).into_owned() }
}

/// An ELF file a linker marks executable (ET_EXEC or ET_DYN, little-endian here).
fn is_executable_elf(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.starts_with(b"\x7fELF") && bytes.len() > 17 && matches!(u16::from_le_bytes([bytes[16], bytes[17]]), 2 | 3)
}

/// Every file under `out` whose mode is not what another tool would give it,
/// and the names of all the files checked.
fn wrong_modes(out: &Path, umask: u32) -> (Vec<String>, Vec<String>) {
    let files = files_under(out);
    let mut wrong = Vec::new();
    for f in &files {
        let mode = std::fs::symlink_metadata(f).unwrap().permissions().mode() & 0o777;
        let want = if is_executable_elf(f) { 0o777 } else { 0o666 } & !umask;
        if mode != want {
            wrong.push(format!("{:o} (want {want:o}) {}", mode, f.strip_prefix(out).unwrap().display()));
        }
    }
    let names = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    (wrong, names)
}

#[test]
fn every_output_of_a_board_matrix_gets_the_usual_mode_under_any_umask() {
    let t = tempfile::tempdir().unwrap();
    let sketch = t.path().join("Modes");
    std::fs::create_dir_all(&sketch).unwrap();
    std::fs::write(sketch.join("Modes.ino"), "#include <EEPROM.h>\nvoid setup() { EEPROM.write(0, 1); pinMode(13, OUTPUT); }\nvoid loop() { digitalWrite(13, HIGH); }\n").unwrap();
    for umask in [0o022, 0o077] {
        let cache = t.path().join(format!("cache-{umask:o}"));
        // Cold, then warm into a fresh folder: every output placed from the cache.
        for run in ["cold", "warm"] {
            let out = t.path().join(format!("out-{umask:o}-{run}"));
            let (o, s) = (out.display().to_string(), sketch.display().to_string());
            let mut args = vec!["compile-many".to_string(), "--out".into(), o, "--board".into(), "uno".into(), "--board".into(), "mega".into(), s];
            if run == "warm" {
                let cold = t.path().join(format!("out-{umask:o}-cold/results.json"));
                args.extend(["--compare-to".into(), cold.display().to_string(), "--report-md".into(), out.join("report.md").display().to_string()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = fbuild_under_umask(umask, &cache, t.path(), &args);
            assert_eq!(r.code, 0, "{run} under umask {umask:o}: {}{}", r.stdout, r.stderr);
            if run == "warm" {
                let results = read_json(&out.join("results.json"));
                let links: Vec<&str> = results["sketches"].as_array().unwrap().iter().map(|s| s["link"].as_str().unwrap()).collect();
                assert_eq!(links, ["cached", "cached"], "the warm run's firmware comes from the cache");
            }
            let (wrong, names) = wrong_modes(&out, umask);
            assert!(wrong.is_empty(), "{run} under umask {umask:o}:\n{}", wrong.join("\n"));
            // A warm run writes no build log (nothing ran); its report compares with the cold one.
            let own = if run == "warm" { "report.md" } else { "build.log" };
            for want in [
                own,
                "results.json",
                "phases.tsv",
                "compile_commands.json",
                ".fbuild-link",
                "Modes.ino.cpp",
                "Modes.ino.hex",
                "Modes.ino.eep",
                "Modes.ino.elf",
                "Modes.ino.with_bootloader.hex",
            ] {
                assert!(names.iter().any(|n| n == want), "{run} under umask {umask:o}: no {want} among {names:?}");
            }
            let elf = names.iter().filter(|n| n.ends_with(".elf")).count();
            assert_eq!(elf, 2, "one firmware per board");
        }
    }
}
