//! Issue 5, faults: interruption (SIGINT), sudden death (SIGKILL), compilers that
//! crash underneath us, unwritable output and cache folders, and 1,000 sketches in
//! one call under a tight file-descriptor limit.

mod support_faults;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support_faults::*;
use tempfile::TempDir;

/// A running fbuild whose stderr lines arrive on a channel (and are kept).
struct Live {
    child: Child,
    lines: Receiver<String>,
    reader: Option<JoinHandle<Vec<String>>>,
}

impl Live {
    fn spawn(mut cmd: Command) -> Live {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn fbuild");
        let err = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                all.push(line);
            }
            all
        });
        Live { child, lines: rx, reader: Some(reader) }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Wait for a stderr line satisfying `pred`; false on timeout or end of output.
    fn wait_line(&self, timeout: Duration, mut pred: impl FnMut(&str) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if pred(&l) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }

    fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Wait up to `timeout` for exit: (exit code, all stderr lines). Kills it on timeout.
    fn finish(mut self, timeout: Duration) -> (Option<i32>, Option<i32>, Vec<String>, Duration) {
        let start = Instant::now();
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break Some(s);
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = start.elapsed();
        let lines = self.reader.take().unwrap().join().unwrap_or_default();
        use std::os::unix::process::ExitStatusExt;
        (status.and_then(|s| s.code()), status.and_then(|s| s.signal()), lines, took)
    }
}

fn compile_many(cache: &Path, out: &Path, sketches: &[PathBuf]) -> Command {
    let mut c = fbuild(cache);
    c.arg("compile-many").arg("--out").arg(out).args(sketches);
    c
}

/// A clean build (fresh out folder and cache) of `sketches`: (exit code, firmware map).
fn clean_build(tmp: &Path, tag: &str, sketches: &[PathBuf], extra: &[&str]) -> (Option<i32>, std::collections::BTreeMap<String, (String, Option<Vec<u8>>)>, Duration) {
    let out = tmp.join(format!("clean-out-{tag}"));
    let cache = tmp.join(format!("clean-cache-{tag}"));
    let mut c = compile_many(&cache, &out, sketches);
    c.args(extra);
    let t = Instant::now();
    let r = run(c);
    let took = t.elapsed();
    assert!(matches!(r.code, Some(0) | Some(1)), "clean build failed outright\n{}", r.describe());
    std::fs::write(tmp.join(format!("clean-stderr-{tag}")), &r.stderr).unwrap();
    (r.code, hex_map(&results(&out.join("results.json")), tmp), took)
}

/// Sketches that build on uno today, a mix of plain core users and library users,
/// so stage 1 has library units as well as the core.
fn kill_subset() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [
        "01.Basics/AnalogReadSerial",
        "01.Basics/Blink",
        "01.Basics/Fade",
        "02.Digital/BlinkWithoutDelay",
        "02.Digital/Debounce",
        "02.Digital/toneMelody",
        "03.Analog/Smoothing",
        "04.Communication/ASCIITable",
        "05.Control/Arrays",
        "08.Strings/StringConstructors",
    ]
    .iter()
    .map(|s| corpus_sketch(s))
    .collect();
    for lib in ["SoftwareSerial/examples/SoftwareSerialExample", "Wire/examples/master_writer", "EEPROM/examples/eeprom_read"] {
        let p = Path::new(AVR).join("libraries").join(lib);
        if p.is_dir() {
            v.push(p);
        }
    }
    v
}

fn all_corpus() -> Vec<PathBuf> {
    vec![corpus()]
}

/// fbuild's default --sketch-jobs.
fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Wait until some process mentions `needle` (a tool working in a test's folder).
fn wait_for_processes(needle: &str, secs: f64) -> bool {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        if !processes_mentioning(needle).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

// ---------------------------------------------------------------- SIGINT

#[test]
fn sigint_in_stage1_and_stage2_exits_130_and_leaves_a_resumable_state() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("sigint-out-7c1e");
    let cache = tmp.path().join("cache");
    let out_s = out.to_str().unwrap().to_string();
    let (want_code, want, _) = clean_build(tmp.path(), "sigint", &all_corpus(), &[]);
    let want_ok = want.values().filter(|(st, _)| st == "ok").count();

    // Time bounds below only guard against a hang (a loaded machine is slow, not
    // wrong); what proves a prompt stop is what did not happen after the signal.
    // 1. SIGINT while the framework (stage 1) compiles, from a fresh cache: sent once
    // a stage-1 compiler is running, and it must stop before any sketch links (sketch
    // compiles may run beside stage 1; links wait for it).
    let live = Live::spawn(compile_many(&cache, &out, &all_corpus()));
    assert!(live.wait_line(Duration::from_secs(300), |l| l.contains("stage 1")), "never reached stage 1");
    assert!(wait_for_processes(&out_s, 300.0), "no stage-1 tool started");
    live.signal(libc::SIGINT);
    let (code, sig, lines, _) = live.finish(Duration::from_secs(300));
    assert_eq!(code, Some(130), "SIGINT in stage 1 must exit 130 (signal {sig:?}); stderr:\n{}", lines.join("\n"));
    assert!(!lines.iter().any(|l| l.starts_with('[')), "a sketch finished after SIGINT in stage 1:\n{}", lines.join("\n"));
    assert!(!lines.iter().any(|l| l.contains("panicked")), "{}", lines.join("\n"));
    let left = wait_no_processes(&out_s, 5.0);
    assert!(left.is_empty(), "tool processes still running after SIGINT in stage 1: {left:#?}");
    assert!(!out.join("results.json").exists(), "an interrupted run must not write results.json");

    // 2. SIGINT while sketches (stage 2) build, sent as the first sketch finishes:
    // same out folder and cache. It must stop with most sketches never reported.
    let live = Live::spawn(compile_many(&cache, &out, &all_corpus()));
    assert!(live.wait_line(Duration::from_secs(300), |l| l.starts_with('[')), "no sketch finished");
    live.signal(libc::SIGINT);
    let (code, sig, lines, _) = live.finish(Duration::from_secs(300));
    assert_eq!(code, Some(130), "SIGINT in stage 2 must exit 130 (signal {sig:?}); stderr:\n{}", lines.join("\n"));
    // Only sketches whose last tool was already done when the signal landed can
    // still build; every other one is stopped, or never starts.
    let built = lines.iter().filter(|l| l.starts_with('[') && l.contains("] ok")).count();
    assert!(built <= 1 + num_cpus() && built < want_ok, "{built} of {want_ok} sketches built after SIGINT: it did not stop");
    let left = wait_no_processes(&out_s, 5.0);
    assert!(left.is_empty(), "tool processes still running after SIGINT in stage 2: {left:#?}");
    assert!(!out.join("results.json").exists(), "an interrupted run must not write results.json");

    // 3. The next run completes and matches a clean build byte for byte.
    let r = run(compile_many(&cache, &out, &all_corpus()));
    assert_eq!(r.code, want_code, "the run after the interruptions should end like a clean build\n{}", r.describe());
    assert_same_firmware(&hex_map(&results(&out.join("results.json")), tmp.path()), &want);
}

// ---------------------------------------------------------------- SIGKILL

/// A line `--verbose` prints for a tool it is about to start (tools run from /usr/bin).
fn is_command(line: &str) -> bool {
    line.starts_with("/usr/bin/")
}

#[test]
fn sigkill_at_many_moments_then_a_final_run_matches_a_clean_build() {
    let tmp = TempDir::new().unwrap();
    let sketches = kill_subset();
    // The clean build, verbose: its command lines are the clock the kills are set by.
    let (want_code, want, _) = clean_build(tmp.path(), "kill", &sketches, &["-v"]);
    let failed: Vec<&String> = want.iter().filter(|(_, (st, _))| st != "ok").map(|(k, _)| k).collect();
    assert_eq!(want_code, Some(0), "the kill subset must build cleanly; failed: {failed:?}");
    let clean_lines = std::fs::read_to_string(tmp.path().join("clean-stderr-kill")).unwrap();
    let total = clean_lines.lines().filter(|l| is_command(l)).count();
    let stage1 = clean_lines.lines().take_while(|l| !l.starts_with("stage 2")).filter(|l| is_command(l)).count();
    assert!(total > 40 && stage1 > 10 && total - stage1 > 20, "a clean build runs {total} commands, {stage1} in stage 1");

    let out = tmp.path().join("kill-out-3f9a");
    let cache = tmp.path().join("cache");
    let out_s = out.to_str().unwrap().to_string();
    // Kill moments are set by progress, not by the clock: round i is killed as it
    // starts its k-th tool, k spread over a whole build's commands in a scrambled
    // order, so a loaded machine only slows the rounds down. Two rounds in three use
    // their own build.extra_flags, so they have a whole build's work and every kill
    // lands in a running fbuild; every third uses the plain configuration, so the
    // final run resumes from several killed runs of its own configuration (those may
    // have less left to do than their kill moment, and then simply finish).
    let slots = 20;
    let (mut live_kills, mut fresh_rounds, mut fresh_kills) = (0, 0, 0);
    let (mut in_stage1, mut in_stage2) = (0, 0);
    for i in 0..30 {
        let fresh_config = i % 3 != 0;
        // Fresh rounds take the 20 slots in a scrambled order (7 is coprime to 20).
        let slot = if fresh_config { (fresh_rounds * 7) % slots } else { (i * 7) % slots };
        let k = 1 + slot * (total * 9 / 10) / slots;
        let mut cmd = compile_many(&cache, &out, &sketches);
        cmd.arg("-v");
        if fresh_config {
            cmd.arg("--build-property").arg(format!("build.extra_flags=-DFBUILD_FAULT_ROUND={i}"));
            fresh_rounds += 1;
        }
        let live = Live::spawn(cmd);
        let mut seen = 0;
        live.wait_line(Duration::from_secs(300), |l| {
            seen += usize::from(is_command(l));
            seen >= k
        });
        live.signal(libc::SIGKILL);
        let (_code, sig, lines, _) = live.finish(Duration::from_secs(60));
        if sig == Some(libc::SIGKILL) {
            live_kills += 1;
            fresh_kills += usize::from(fresh_config);
            let stage = lines.iter().rev().find(|l| l.starts_with("stage ")).cloned().unwrap_or_default();
            if stage.starts_with("stage 1") {
                in_stage1 += 1;
            } else if stage.starts_with("stage 2") {
                in_stage2 += 1;
            }
        } else {
            assert!(!fresh_config, "round {i} (its own configuration, killed at command {k} of {total}) finished before its kill");
        }
        // The tools die with fbuild (PR_SET_PDEATHSIG); wait until they are gone so
        // rounds with different flags never write the same object at once.
        let left = wait_no_processes(&out_s, 60.0);
        assert!(left.is_empty(), "orphaned tools never finished: {left:#?}");
    }
    eprintln!("SIGKILL: {live_kills} live kills (stage 1: {in_stage1}, stage 2: {in_stage2}), {total} commands in a clean build");
    assert_eq!((fresh_rounds, fresh_kills), (20, 20), "every round with a whole build's work is killed while running");
    assert!(in_stage1 >= 3 && in_stage2 >= 3, "kills should land in both stages: stage 1 {in_stage1}, stage 2 {in_stage2}");

    let r = run(compile_many(&cache, &out, &sketches));
    assert_eq!(r.code, Some(0), "the run after {live_kills} kills should build everything\n{}", r.describe());
    assert_same_firmware(&hex_map(&results(&out.join("results.json")), tmp.path()), &want);
    // And once more from the (now settled) state: still identical, nothing rebuilt.
    let r = run(compile_many(&cache, &out, &sketches));
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let v = results(&out.join("results.json"));
    assert_same_firmware(&hex_map(&v, tmp.path()), &want);
    assert_eq!(v["totals"]["tool_processes"], 0, "a settled state runs nothing");
}

// ---------------------------------------------------------------- crashing compilers

/// A compiler wrapper folder. This is fault injection a real compiler cannot
/// produce on demand: while `<dir>/armed` exists, avr-g++ kills itself with SIGSEGV
/// when its arguments mention `segv_on`, and avr-gcc kills itself with SIGKILL when
/// its arguments mention `kill_on`; otherwise both exec the real tools. The wrapper
/// stays the same file whether armed or not, so the compiler identity (and every
/// cache key) is the same in the crashing run and the rerun.
fn wrapper_dir(root: &Path, segv_on: &str, kill_on: &str, segv_in_gcc: bool) -> PathBuf {
    let dir = root.join("wrap");
    std::fs::create_dir_all(&dir).unwrap();
    let armed = dir.join("armed");
    let script = |real: &str, pattern: &str, sig: &str| {
        format!(
            "#!/bin/sh\nif [ -e '{armed}' ]; then\n  case \"$*\" in *{pattern}*) kill -{sig} $$ ;; esac\nfi\nexec /usr/bin/{real} \"$@\"\n",
            armed = armed.display()
        )
    };
    let gpp = script("avr-g++", segv_on, "SEGV");
    let gcc = if segv_in_gcc { script("avr-gcc", segv_on, "SEGV") } else { script("avr-gcc", kill_on, "KILL") };
    for (name, body) in [("avr-g++", gpp), ("avr-gcc", gcc)] {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for t in ["avr-gcc-ar", "avr-objcopy", "avr-size"] {
        std::os::unix::fs::symlink(Path::new("/usr/bin").join(t), dir.join(t)).unwrap();
    }
    std::fs::write(&armed, "").unwrap();
    dir
}

#[test]
fn compiler_killed_by_signal_fails_that_sketch_and_poisons_nothing() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let crashy = write_sketch(&src, "Crashy", BLINKY);
    let killed = write_sketch(&src, "Killed", BARE);
    let fine = write_sketch(&src, "Fine", "void setup() { Serial.begin(9600); }\nvoid loop() { Serial.println(millis()); }\n");
    let sketches = vec![crashy, killed, fine];
    // SEGV while compiling Crashy's sketch file; SIGKILL while linking Killed.ino.elf.
    let wrap = wrapper_dir(tmp.path(), "Crashy.ino.cpp", "Killed.ino.elf", false);
    let prop = format!("compiler.path={}/", wrap.display());
    let out = tmp.path().join("out");
    let cache = tmp.path().join("cache");

    let mut c = compile_many(&cache, &out, &sketches);
    c.arg("--build-property").arg(&prop);
    let r = run(c);
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(!r.stderr.contains("panicked"), "{}", r.describe());
    let v = results(&out.join("results.json"));
    for (name, sig) in [("Crashy", "SIGSEGV"), ("Killed", "SIGKILL")] {
        let s = sketch_result(&v, name);
        assert_eq!(s["status"], "failed", "{s:#}");
        let first = s["first_error"].as_str().unwrap_or("");
        assert!(first.contains("signal"), "{name}: first_error should say the tool died from a signal: {first:?}");
        assert!(first.contains(sig), "{name}: first_error should name {sig}: {first:?}");
        assert!(s["firmware"].as_object().is_none_or(|m| m.is_empty()), "no firmware for a failed sketch: {s:#}");
    }
    assert_eq!(sketch_result(&v, "Fine")["status"], "ok");

    // Disarm: the very same compiler (same identity, same keys) now works.
    std::fs::remove_file(wrap.join("armed")).unwrap();
    let mut c = compile_many(&cache, &out, &sketches);
    c.arg("--build-property").arg(&prop);
    let r = run(c);
    assert_eq!(r.code, Some(0), "rerun with a working compiler\n{}", r.describe());
    let got = hex_map(&results(&out.join("results.json")), tmp.path());
    let (want_code, want, _) = clean_build(tmp.path(), "crash", &sketches, &[]);
    assert_eq!(want_code, Some(0));
    assert_same_firmware(&got, &want);
}

#[test]
fn core_compiler_crash_fails_every_sketch_naming_the_core_and_recovers() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let sketches = vec![write_sketch(&src, "A", BLINKY), write_sketch(&src, "B", BARE)];
    // wiring_digital.c is compiled by avr-gcc in stage 1.
    let wrap = wrapper_dir(tmp.path(), "wiring_digital.c", "-never-", true);
    let prop = format!("compiler.path={}/", wrap.display());
    let out = tmp.path().join("out");
    let cache = tmp.path().join("cache");
    let mut c = compile_many(&cache, &out, &sketches);
    c.arg("--build-property").arg(&prop);
    let r = run(c);
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(!r.stderr.contains("panicked"), "{}", r.describe());
    let v = results(&out.join("results.json"));
    for name in ["A", "B"] {
        let s = sketch_result(&v, name);
        assert_eq!(s["status"], "failed", "{s:#}");
        let first = s["first_error"].as_str().unwrap_or("");
        assert!(first.contains("core"), "{name}: first_error should name the core: {first:?}");
        assert!(first.contains("signal"), "{name}: first_error should say a tool died from a signal: {first:?}");
    }
    // One clear message for the whole batch, not one per sketch.
    assert_eq!(r.stdout.matches("The core failed to compile").count(), 1, "{}", r.describe());
    assert!(!r.stdout.contains("Failed sketches:"), "{}", r.describe());
    std::fs::remove_file(wrap.join("armed")).unwrap();
    let mut c = compile_many(&cache, &out, &sketches);
    c.arg("--build-property").arg(&prop);
    let r = run(c);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let (_, want, _) = clean_build(tmp.path(), "core", &sketches, &[]);
    assert_same_firmware(&hex_map(&results(&out.join("results.json")), tmp.path()), &want);
}

// ---------------------------------------------------------------- unwritable places

#[test]
fn unwritable_output_folder_is_a_clear_error() {
    let tmp = TempDir::new().unwrap();
    let sk = write_sketch(&tmp.path().join("src"), "Blinky", BLINKY);
    let cache = tmp.path().join("cache");
    // chmod 555 does not stop root; a regular file where the folder should be stops everyone.
    let out = if is_root() {
        let f = tmp.path().join("outfile");
        std::fs::write(&f, "not a folder").unwrap();
        f
    } else {
        use std::os::unix::fs::PermissionsExt;
        let d = tmp.path().join("readonly");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
        d
    };
    for sub in ["build", "compile-many"] {
        let mut c = fbuild(&cache);
        c.arg(sub).arg("--out").arg(&out).arg(&sk);
        let r = run(c);
        assert!(matches!(r.code, Some(2) | Some(3)), "{sub}: expected exit 2 or 3\n{}", r.describe());
        assert_single_error_line(&r, &[out.file_name().unwrap().to_str().unwrap()]);
    }
}

#[test]
fn unwritable_cache_folder_warns_once_and_still_builds() {
    let tmp = TempDir::new().unwrap();
    let sk = write_sketch(&tmp.path().join("src"), "Blinky", BLINKY);
    let file = tmp.path().join("plainfile");
    std::fs::write(&file, "x").unwrap();
    let cache = file.join("cache"); // under a regular file: unusable even for root
    let out = tmp.path().join("out");
    let mut c = fbuild(&cache);
    c.arg("build").arg("--out").arg(&out).arg(&sk);
    let r = run(c);
    assert_eq!(r.code, Some(0), "a broken cache must not stop the build\n{}", r.describe());
    assert!(!r.stderr.contains("panicked"), "{}", r.describe());
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected exactly one warning line\n{}", r.describe());
    assert!(lines[0].starts_with("warning:"), "{}", r.describe());
    assert!(lines[0].contains("cache"), "the warning should mention the cache\n{}", r.describe());
    assert!(r.stdout.contains("Firmware:"), "{}", r.describe());

    // compile-many too, with every sketch ok in results.json.
    let mut c = fbuild(&cache);
    c.arg("compile-many").arg("--quiet").arg("--out").arg(&out).arg(&sk);
    let r = run(c);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let warnings = r.stderr.lines().filter(|l| l.starts_with("warning:")).count();
    assert_eq!(warnings, 1, "one cache warning per run\n{}", r.describe());
    let v = results(&out.join("results.json"));
    assert_eq!(v["sketches"][0]["status"], "ok");
}

// ---------------------------------------------------------------- scale

#[test]
fn thousand_sketches_in_one_call_under_256_file_descriptors() {
    let tmp = TempDir::new().unwrap();
    let blink = std::fs::read(corpus_sketch("01.Basics/Blink").join("Blink.ino")).unwrap();
    let parent = tmp.path().join("many");
    for i in 1..=1000 {
        write_sketch(&parent, &format!("Blink{i:04}"), &blink);
    }
    let out = tmp.path().join("out");
    let cache = tmp.path().join("cache");
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
        .arg(bin())
        .arg("compile-many")
        .arg("--quiet")
        .arg("--out")
        .arg(&out)
        .arg(&parent)
        .env("FBUILD_CACHE_DIR", &cache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = c.spawn().unwrap();
    let pid = child.id();
    // Sample the process's open descriptors while it runs (after `exec`, sh's pid is fbuild's).
    let sampler = std::thread::spawn(move || {
        let mut max = 0usize;
        let fd_dir = format!("/proc/{pid}/fd");
        while let Ok(rd) = std::fs::read_dir(&fd_dir) {
            max = max.max(rd.count());
            std::thread::sleep(Duration::from_millis(20));
        }
        max
    });
    let mut stdout = String::new();
    let mut stderr = String::new();
    {
        use std::io::Read;
        let mut o = child.stdout.take().unwrap();
        let mut e = child.stderr.take().unwrap();
        let t = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        });
        let _ = o.read_to_string(&mut stdout);
        stderr.push_str(&t.join().unwrap());
    }
    let status = child.wait().unwrap();
    let took = start.elapsed();
    let max_fds = sampler.join().unwrap();
    assert_eq!(status.code(), Some(0), "1000 sketches under ulimit -n 256\nstdout:\n{stdout}\nstderr (tail):\n{}", tail(&stderr, 20));
    assert!(max_fds < 256, "fbuild held {max_fds} descriptors at once");
    let v = results(&out.join("results.json"));
    let all = v["sketches"].as_array().unwrap();
    assert_eq!(all.len(), 1000);
    assert!(all.iter().all(|s| s["status"] == "ok"), "every copy of Blink should build");
    // Same code, same firmware, 1000 times (and 1000 distinct output folders).
    let first = std::fs::read(firmware(&all[0], "hex", tmp.path())).unwrap();
    let mut dirs = std::collections::BTreeSet::new();
    for s in all {
        assert!(std::fs::read(firmware(s, "hex", tmp.path())).unwrap() == first, "{} differs", s["path"]);
        dirs.insert(s["output_dir"].as_str().unwrap().to_string());
    }
    assert_eq!(dirs.len(), 1000, "output folders collide");
    eprintln!("1000 sketches: {took:?}, at most {max_fds} open descriptors");
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------- output vanishing

#[test]
fn output_folder_disappearing_mid_run_fails_cleanly_and_recovers() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("out");
    let cache = tmp.path().join("cache");
    // The first run fills the cache as it goes, so the rerun below resumes from the
    // interrupted run's state rather than building from nothing.
    let live = Live::spawn(compile_many(&cache, &out, &all_corpus()));
    assert!(live.wait_line(Duration::from_secs(300), |l| l.starts_with('[')), "no sketch finished");
    std::fs::remove_dir_all(&out).ok();
    let (code, _sig, lines, _) = live.finish(Duration::from_secs(300));
    assert!(matches!(code, Some(1) | Some(3)), "exit {code:?}:\n{}", lines.join("\n"));
    assert!(!lines.iter().any(|l| l.contains("panicked")), "{}", lines.join("\n"));
    // The next run rebuilds what went missing and matches a clean build.
    let (want_code, want, _) = clean_build(tmp.path(), "vanish", &all_corpus(), &[]);
    let r = run(compile_many(&cache, &out, &all_corpus()));
    assert_eq!(r.code, want_code, "{}", r.describe());
    let v = results(&out.join("results.json"));
    assert_same_firmware(&hex_map(&v, tmp.path()), &want);
    // It resumed: the core and the sketches finished before the folder vanished came
    // from the cache the first run filled.
    assert!(v["totals"]["objects_cached"].as_u64().unwrap() >= 20, "the rerun reused nothing: {}", v["totals"]);
}
