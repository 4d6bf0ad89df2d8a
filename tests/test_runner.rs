//! scripts/cargo-tests.sh, the runner behind scripts/test.sh, counts every test of
//! every binary honestly: a real cargo project with a passing, a failing, an
//! aborting, a skipping and a non-compiling test binary goes through it.

mod common;

use std::path::Path;
use std::process::Command;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A cargo project with no dependencies (so no registry is needed) whose binaries
/// cover every way a test binary can end.
fn scratch_project(root: &Path) {
    write(root, "Cargo.toml", "[package]\nname = \"scratch\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[lib]\ndoctest = false\n");
    write(root, "src/lib.rs", "pub fn one() -> i32 { 1 }\n#[cfg(test)]\nmod t {\n    #[test]\n    fn adds() { assert_eq!(super::one(), 1); }\n    #[test]\n    #[ignore]\n    fn slow() {}\n}\n");
    write(root, "tests/pass.rs", "#[test]\nfn p1() {}\n#[test]\nfn p2() {}\n");
    write(root, "tests/fail.rs", "#[test]\nfn boom() { panic!(\"boom\") }\n#[test]\nfn fine() {}\n");
    // Dies mid-run: neither test reports (the other waits until the abort lands).
    write(
        root,
        "tests/abort.rs",
        "#[test]\nfn dies() { std::process::abort() }\n#[test]\nfn waits() { std::thread::sleep(std::time::Duration::from_secs(30)); }\n",
    );
    // Passes as far as libtest knows, but says it could not run here.
    write(
        root,
        "tests/skip.rs",
        "extern \"C\" { fn write(fd: i32, b: *const u8, n: usize) -> isize; }\n#[test]\nfn needs_something() {\n    let m = b\"fbuild-test-skipped: needs_something: not on this machine\\n\";\n    unsafe { write(2, m.as_ptr(), m.len()) };\n}\n",
    );
    write(root, "tests/broken.rs", "#[test]\nfn nope() { let _x: i32 = \"not a number\"; }\n");
}

fn run_script(root: &Path) -> (i32, String) {
    let o = Command::new("bash")
        .arg(common::repo().join("scripts/cargo-tests.sh"))
        .args(["--", "--test-threads", "2"])
        .current_dir(root)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .output()
        .expect("run bash");
    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), text)
}

#[test]
fn every_binary_runs_and_the_last_line_counts_every_test() {
    let t = tempfile::tempdir().unwrap();
    scratch_project(t.path());
    let (code, text) = run_script(t.path());
    assert_ne!(code, 0, "failures must fail the run:\n{text}");
    let last = text.lines().last().unwrap_or("");
    // passed: adds, p1, p2, fine; failed: boom, the 2 never-reported tests of abort.rs,
    // and broken.rs (did not compile); skipped: slow (#[ignore]) and needs_something.
    assert_eq!(last, "tests: 4 passed, 4 failed, 2 skipped", "\n{text}");
    assert!(text.contains("problem: tests/broken.rs did not compile"), "{text}");
    assert!(text.contains("problem: tests/abort.rs died before finishing") && text.contains("2 of its 2 tests never reported"), "{text}");
    // Binaries after the broken and the failing ones still ran (alphabetical: skip.rs is last).
    assert!(text.contains("Running tests/skip.rs"), "{text}");
}

#[test]
fn a_project_whose_only_binary_fails_to_compile_is_no_success() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "Cargo.toml", "[package]\nname = \"scratch\"\nversion = \"0.1.0\"\nedition = \"2021\"\n");
    write(t.path(), "tests/broken.rs", "#[test]\nfn nope() { let _x: i32 = \"not a number\"; }\n");
    let (code, text) = run_script(t.path());
    assert_ne!(code, 0, "{text}");
    assert_eq!(text.lines().last().unwrap_or(""), "tests: 0 passed, 1 failed, 0 skipped", "\n{text}");
}

#[test]
fn all_passing_exits_zero() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "Cargo.toml", "[package]\nname = \"scratch\"\nversion = \"0.1.0\"\nedition = \"2021\"\n");
    write(t.path(), "tests/pass.rs", "#[test]\nfn p1() {}\n#[test]\n#[ignore]\nfn later() {}\n");
    let (code, text) = run_script(t.path());
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.lines().last().unwrap_or(""), "tests: 1 passed, 0 failed, 1 skipped", "\n{text}");
}
