//! bench/bench.sh times only builds that built: a case whose build is broken is
//! named and fails the bench instead of showing up as a fast time.

mod common;

use common::*;
use std::process::Command;

/// Fault injection a real fbuild cannot produce on demand: this stand-in runs the
/// real binary, except for the bench's narrow cold case (`--framework-jobs 1`),
/// where it exits 0 at once without building anything, as a broken build might.
fn fbuild_broken_for_one_case(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("fbuild");
    let script = format!("#!/bin/sh\ncase \" $* \" in *' --framework-jobs 1 '*) exit 0 ;; esac\nexec '{}' \"$@\"\n", fbuild_bin().display());
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn a_broken_case_fails_the_bench_and_the_others_report_what_they_built() {
    let t = tempfile::tempdir().unwrap();
    let corpus = t.path().join("corpus");
    // Two sketches that build on uno and one that cannot (no Serial1).
    for rel in ["01.Basics/Blink", "01.Basics/Fade", "04.Communication/MultiSerial"] {
        copy_dir(&example(rel), &corpus.join(rel));
    }
    let fake = fbuild_broken_for_one_case(t.path());
    let o = Command::new("bash")
        .arg(repo().join("bench/bench.sh"))
        .arg("--corpus")
        .arg(&corpus)
        .arg("--fbuild")
        .arg(&fake)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "a broken case must fail the bench\n{stdout}\n{stderr}");
    let rows: Vec<Vec<&str>> = stdout.lines().map(|l| l.split('\t').collect()).filter(|r: &Vec<&str>| r.len() == 6).collect();
    assert_eq!(rows.first().map(|r| r[0]), Some("case"), "{stdout}");
    let row = |name: &str| rows.iter().find(|r| r[0].starts_with(name)).unwrap_or_else(|| panic!("no row {name}:\n{stdout}"));
    // The broken case: named, in the table and on stderr.
    let b = row("b_");
    assert!(b[5].starts_with("BROKEN"), "{b:?}");
    assert!(stderr.contains("case b_compile_many_fj1_sj2_cold is broken"), "{stderr}");
    // Every other case checked its exit status and built what arduino-builder built.
    for name in ["a_", "c_", "d_", "e_", "f_", "g_", "h_"] {
        let r = row(name);
        assert_eq!((r[4], r[5]), ("2", "ok"), "{r:?}\n{stdout}\n{stderr}");
    }
    assert_eq!(row("a_")[3], "1", "compile-many exits 1 when a sketch failed");
    assert_eq!((row("i_")[4], row("i_")[5]), ("1", "ok"));
    assert_eq!(rows.len(), 10, "a header and nine cases:\n{stdout}");
}
