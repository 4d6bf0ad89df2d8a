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

/// One tool process fbuild started, from an `strace -f -ttt` trace: when it was
/// exec'd, when it exited, and its command line.
struct ToolSpan {
    start: f64,
    end: f64,
    argv: String,
}

/// Processes started by fbuild itself (any of its threads), not by the tools: a
/// compiler driver counts once, its cc1plus/as/ld do not.
fn tool_spans(trace: &Path) -> Vec<ToolSpan> {
    let text = std::fs::read_to_string(trace).unwrap();
    let field = |l: &str, i: usize| l.split_whitespace().nth(i).map(str::to_string).unwrap_or_default();
    let ret = |l: &str| l.rsplit("= ").next().and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse::<i64>().ok());
    let mut fbuild_tasks: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut children: Vec<String> = Vec::new();
    // A child's execve can come before its parent's clone returns (vfork-style
    // spawning), so exec and exit times are gathered per pid and joined at the end.
    let mut execs: std::collections::HashMap<String, (f64, String)> = std::collections::HashMap::new();
    let mut exits: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    let mut pending_thread: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut pending_exec: std::collections::HashMap<String, (f64, String)> = std::collections::HashMap::new();
    for l in text.lines() {
        let (pid, time) = (field(l, 0), field(l, 1).parse::<f64>().unwrap_or(0.0));
        if fbuild_tasks.is_empty() && l.contains("execve(") {
            fbuild_tasks.insert(pid.clone()); // the traced program: fbuild
            continue;
        }
        let is_clone = l.contains("clone") || l.contains("vfork") || l.contains("fork(");
        if is_clone && l.contains("<unfinished") {
            // The flags are on this line, the new task's id on its "resumed" line.
            pending_thread.insert(pid.clone(), l.contains("CLONE_THREAD"));
            continue;
        }
        if is_clone && fbuild_tasks.contains(&pid) {
            if let Some(child) = ret(l).filter(|&c| c > 0) {
                let thread = if l.contains("resumed>") { pending_thread.remove(&pid).unwrap_or(false) } else { l.contains("CLONE_THREAD") };
                if thread {
                    fbuild_tasks.insert(child.to_string());
                } else {
                    children.push(child.to_string());
                }
            }
        } else if l.contains("execve(") && l.contains("<unfinished") {
            pending_exec.insert(pid, (time, l.to_string()));
        } else if l.contains("execve resumed>") && l.trim_end().ends_with("= 0") {
            if let Some(e) = pending_exec.remove(&pid) {
                execs.entry(pid).or_insert(e);
            }
        } else if l.contains("execve(") && l.trim_end().ends_with("= 0") {
            execs.entry(pid).or_insert((time, l.to_string()));
        } else if l.contains("+++ exited") || l.contains("+++ killed") {
            exits.insert(pid, time);
        }
    }
    children
        .iter()
        .filter_map(|c| {
            let (start, argv) = execs.get(c)?.clone();
            Some(ToolSpan { start, end: exits.get(c).copied().unwrap_or(f64::MAX), argv })
        })
        .collect()
}

/// The most spans alive at one moment.
fn max_concurrent<'a>(spans: impl Iterator<Item = &'a ToolSpan>) -> usize {
    let mut events: Vec<(f64, i32)> = spans.flat_map(|s| [(s.start, 1), (s.end, -1)]).collect();
    events.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

/// Issue 9: with --framework-jobs 1 --sketch-jobs 2, stage 1 never runs more than one
/// tool and all stages together never more than two, counted from outside by strace;
/// and sketch compiles do run while stage 1 still works (no idle core).
#[test]
fn scheduler_keeps_its_job_limits_and_overlaps_the_stages() {
    if !strace_works() {
        report_skipped("scheduler_keeps_its_job_limits_and_overlaps_the_stages", "strace is not installed or cannot trace here (scripts/setup.sh installs it)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let trace = t.path().join("run.trace");
    let sketches = ["01.Basics/Blink", "01.Basics/Fade", "02.Digital/Button", "04.Communication/ASCIITable", "08.Strings/StringAdditionOperator", "05.Control/Arrays"];
    let o = Command::new("strace")
        .args(["-f", "-q", "-ttt", "-v", "-s", "4096", "-e", "trace=execve,clone,clone3,vfork,fork", "-o"])
        .arg(&trace)
        .arg(fbuild_bin())
        .args(["compile-many", "--no-cache", "--framework-jobs", "1", "--sketch-jobs", "2", "--out"])
        .arg(&out)
        .args(sketches.iter().map(|s| example(s)))
        .env("CI", "true")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let spans = tool_spans(&trace);
    let counted = processes(&read_json(&out.join("results.json")));
    assert_eq!(spans.len(), counted, "strace saw {} tools started by fbuild, fbuild counted {counted}", spans.len());
    let framework = format!("\"{}/framework/", out.display());
    let stage1: Vec<&ToolSpan> = spans.iter().filter(|s| s.argv.contains(&framework) && !s.argv.contains("\"-E\"")).collect();
    assert!(stage1.len() >= 20, "only {} stage-1 tools seen (the core alone has more sources)", stage1.len());
    assert_eq!(max_concurrent(stage1.iter().copied()), 1, "stage 1 ran more than --framework-jobs 1 tools at once");
    assert!(max_concurrent(spans.iter()) <= 2, "more than max(--framework-jobs, --sketch-jobs) = 2 tools at once");
    let stage1_end = stage1.iter().map(|s| s.end).fold(0.0, f64::max);
    let sketch_compiles_during_stage1 = spans
        .iter()
        .filter(|s| !s.argv.contains(&framework) && s.argv.contains(".ino.cpp\"") && s.argv.contains("\"-c\"") && s.start < stage1_end)
        .count();
    assert!(sketch_compiles_during_stage1 > 0, "no sketch compiled while stage 1 ran: a core idled");
}

/// The cores a process may run on, as /proc shows them, in shell.
const CPUS_ALLOWED: &str = "$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)";

fn cores_of(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap().lines().map(|l| l.split_once(' ').unwrap().1.to_string()).collect()
}

/// With as many workers as cores, each worker keeps its tools on a core of its own
/// (exec::affinity): every tool may run on exactly one core, and the cores share
/// the work. FBUILD_NO_PIN=1 leaves every tool free to run anywhere.
#[test]
fn tools_stay_on_their_worker_s_core_when_the_workers_fill_the_cores() {
    let nproc = Command::new("nproc").output().unwrap();
    let cores: usize = String::from_utf8_lossy(&nproc.stdout).trim().parse().unwrap();
    if cores < 2 {
        report_skipped("tools_stay_on_their_worker_s_core_when_the_workers_fill_the_cores", "needs at least 2 cores");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let sketches = vec![example("01.Basics/Blink"), example("01.Basics/Fade"), example("02.Digital/Button"), library_examples().join("EEPROM/eeprom_clear")];
    let jobs = cores.to_string();
    let run = |name: &str, no_pin: bool| {
        let log = t.path().join(format!("{name}.log"));
        let bin = recording_toolchain_of(&t.path().join(format!("{name}-bin")), &log, CPUS_ALLOWED);
        let prop = format!("compiler.path={}/", bin.display());
        let out = t.path().join(name);
        let mut c = Command::new(fbuild_bin());
        c.args(["compile-many", "--out", out.to_str().unwrap(), "--build-property", &prop, "--framework-jobs", "1", "--sketch-jobs", &jobs])
            .args(&sketches)
            .env("FBUILD_CACHE_DIR", t.path().join(format!("{name}-cache")))
            .env("CI", "true");
        if no_pin {
            c.env("FBUILD_NO_PIN", "1");
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        cores_of(&log)
    };

    let pinned = run("pinned", false);
    // The toolchain probes run before the scheduler, where nothing is pinned.
    let probes = pinned.iter().take_while(|c| c.contains(['-', ','])).count();
    let in_graph = &pinned[probes..];
    assert!(!in_graph.is_empty() && in_graph.iter().all(|c| !c.contains(['-', ','])), "every tool after the probes runs on one core: {pinned:?}");
    let distinct: std::collections::BTreeSet<&String> = in_graph.iter().collect();
    assert!(distinct.len() >= 2, "the workers' cores share the tools: {pinned:?}");

    let free = run("free", true);
    let all = String::from_utf8_lossy(&Command::new("sh").args(["-c", &format!("echo {CPUS_ALLOWED}")]).output().unwrap().stdout).trim().to_string();
    assert!(free.iter().all(|c| *c == all), "FBUILD_NO_PIN=1 leaves every tool on all cores ({all}): {free:?}");
}
