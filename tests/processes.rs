//! "Starts no process", proved from outside fbuild: `totals.tool_processes` must
//! count every process fbuild starts (the toolchain probes included), and a warm run
//! must start none, as seen by a recording compiler.path and by strace.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn many(cache: &Path, out: &Path, extra: &[&str], sketches: &[PathBuf], want_code: i32) -> Value {
    let mut args: Vec<String> = vec!["compile-many".into(), "--out".into(), out.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(cache, out.parent().unwrap(), &argv);
    assert_eq!(run.code, want_code, "{}\n{}", run.stdout, run.stderr);
    read_json(&out.join("results.json"))
}

fn processes(r: &Value) -> usize {
    r["totals"]["tool_processes"].as_u64().unwrap() as usize
}

#[test]
fn tool_processes_counts_every_process_and_warm_runs_start_none() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let log = t.path().join("tools.log");
    let bin = recording_toolchain(&t.path().join("bin"), &log);
    let prop = format!("compiler.path={}/", bin.display());
    let flags = ["--build-property", prop.as_str()];
    // A core-only sketch, a library user, and one that fails (no Serial1 on uno).
    let sketches = vec![example("01.Basics/Blink"), library_examples().join("EEPROM/eeprom_clear"), example("04.Communication/MultiSerial")];

    let cold = many(&cache, &t.path().join("out"), &flags, &sketches, 1);
    assert_eq!((cold["totals"]["ok"].as_u64(), cold["totals"]["failed"].as_u64()), (Some(2), Some(1)), "{cold}");
    let started = std::fs::read_to_string(&log).unwrap();
    for probe in ["avr-g++ --version", "-E -v -", "-dM -E"] {
        assert!(started.lines().any(|l| l.contains(probe)), "the toolchain probe {probe:?} ran:\n{started}");
    }
    assert_eq!(processes(&cold), line_count(&log), "tool_processes must count every tool start the wrapper saw:\n{started}");

    // Nothing changed, same output folder: not one tool starts.
    let before = line_count(&log);
    let warm = many(&cache, &t.path().join("out"), &flags, &sketches, 1);
    assert_eq!(line_count(&log), before, "a warm run started tools:\n{}", std::fs::read_to_string(&log).unwrap());
    assert_eq!(processes(&warm), 0);
    assert_eq!(warm["totals"]["ok"], 2);

    // A fresh output folder (a second checkout) with the warm cache: still none.
    let fresh = many(&cache, &t.path().join("out2"), &flags, &sketches, 1);
    assert_eq!(line_count(&log), before, "a warm cache into a fresh folder started tools");
    assert_eq!(processes(&fresh), 0);
    assert_eq!(fresh["totals"]["ok"], 2);

    // `fbuild build` of an unchanged sketch: none either.
    let single = t.path().join("single");
    let b = fbuild(&cache, t.path(), &["build", "--out", single.to_str().unwrap(), "--build-property", &prop, sketches[0].to_str().unwrap()]);
    assert_eq!(b.code, 0, "{}", b.stderr);
    assert_eq!(line_count(&log), before, "a warm `fbuild build` started tools");
}

/// execve lines in an `strace -f -e trace=execve` output that succeeded.
fn execs(trace: &Path) -> Vec<String> {
    std::fs::read_to_string(trace).unwrap().lines().filter(|l| l.contains("execve(") && l.trim_end().ends_with("= 0")).map(String::from).collect()
}

fn strace_works() -> bool {
    Command::new("strace").args(["-f", "-qq", "-e", "trace=execve", "-o", "/dev/null", "true"]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn warm_runs_exec_nothing_under_strace() {
    if !strace_works() {
        report_skipped("warm_runs_exec_nothing_under_strace", "strace is not installed or cannot trace here (scripts/setup.sh installs it)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let blink = example("01.Basics/Blink");
    let traced = |out: &Path, trace: &Path, sub: &str| {
        let o = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=execve", "-o"])
            .arg(trace)
            .arg(fbuild_bin())
            .args([sub, "--out"])
            .arg(out)
            .arg(&blink)
            .env("FBUILD_CACHE_DIR", &cache)
            .env("CI", "true")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        execs(trace)
    };
    // The instrument sees tools: a cold run execs fbuild and far more (every tool and
    // the compiler's own passes).
    let cold = traced(&t.path().join("out"), &t.path().join("cold.trace"), "compile-many");
    let counted = processes(&read_json(&t.path().join("out/results.json")));
    assert!(counted >= 30 && cold.len() > counted, "strace saw {} execs, fbuild counted {counted}", cold.len());
    // Warm runs: the only exec is fbuild's own.
    for (name, out, sub) in [("same-out", "out", "compile-many"), ("fresh-out", "out2", "compile-many"), ("build", "out3", "build")] {
        let warm = traced(&t.path().join(out), &t.path().join(format!("{name}.trace")), sub);
        assert_eq!(warm.len(), 1, "{name}: a warm run exec'd more than fbuild:\n{}", warm.join("\n"));
        assert!(warm[0].contains(&fbuild_bin().display().to_string()), "{}", warm[0]);
    }
}
