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
    fn wait_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
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

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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

// ---------------------------------------------------------------- SIGINT

#[test]
fn sigint_in_stage1_and_stage2_exits_130_and_leaves_a_resumable_state() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("sigint-out-7c1e");
    let cache = tmp.path().join("cache");
    let out_s = out.to_str().unwrap().to_string();
    let (want_code, want, _) = clean_build(tmp.path(), "sigint", &all_corpus(), &[]);
    let want_ok = want.values().filter(|(st, _)| st == "ok").count();

    // 1. SIGINT while the framework (stage 1) compiles, from a fresh cache.
    let live = Live::spawn(compile_many(&cache, &out, &all_corpus()));
    assert!(live.wait_line(Duration::from_secs(20), |l| l.contains("stage 1")), "never reached stage 1");
    std::thread::sleep(Duration::from_millis(60));
    live.signal(libc::SIGINT);
    let (code, sig, lines, took) = live.finish(Duration::from_secs(10));
    assert_eq!(code, Some(130), "SIGINT in stage 1 must exit 130 (signal {sig:?}); stderr:\n{}", lines.join("\n"));
    assert!(took < Duration::from_secs(5), "took {took:?} to stop after SIGINT");
    assert!(!lines.iter().any(|l| l.contains("stage 2")), "the signal was meant to land in stage 1:\n{}", lines.join("\n"));
    assert!(!lines.iter().any(|l| l.contains("panicked")), "{}", lines.join("\n"));
    let left = wait_no_processes(&out_s, 1.0);
    assert!(left.is_empty(), "tool processes still running after SIGINT in stage 1: {left:#?}");
    assert!(!out.join("results.json").exists(), "an interrupted run must not write results.json");

    // 2. SIGINT while sketches (stage 2) build: same out folder and cache.
    let live = Live::spawn(compile_many(&cache, &out, &all_corpus()));
    assert!(live.wait_line(Duration::from_secs(30), |l| l.starts_with('[')), "no sketch finished");
    live.signal(libc::SIGINT);
    let (code, sig, lines, took) = live.finish(Duration::from_secs(10));
    assert_eq!(code, Some(130), "SIGINT in stage 2 must exit 130 (signal {sig:?}); stderr:\n{}", lines.join("\n"));
    assert!(took < Duration::from_secs(5), "took {took:?} to stop after SIGINT");
    let built = lines.iter().filter(|l| l.starts_with('[') && l.contains("] ok")).count();
    assert!(built < want_ok, "the signal was meant to land while sketches were still building");
    let left = wait_no_processes(&out_s, 1.0);
    assert!(left.is_empty(), "tool processes still running after SIGINT in stage 2: {left:#?}");
    assert!(!out.join("results.json").exists(), "an interrupted run must not write results.json");

    // 3. The next run completes and matches a clean build byte for byte.
    let r = run(compile_many(&cache, &out, &all_corpus()));
    assert_eq!(r.code, want_code, "the run after the interruptions should end like a clean build\n{}", r.describe());
    assert_same_firmware(&hex_map(&results(&out.join("results.json")), tmp.path()), &want);
}

// ---------------------------------------------------------------- SIGKILL

#[test]
fn sigkill_at_many_moments_then_a_final_run_matches_a_clean_build() {
    let tmp = TempDir::new().unwrap();
    let sketches = kill_subset();
    let (want_code, want, clean_took) = clean_build(tmp.path(), "kill", &sketches, &[]);
    let failed: Vec<&String> = want.iter().filter(|(_, (st, _))| st != "ok").map(|(k, _)| k).collect();
    assert_eq!(want_code, Some(0), "the kill subset must build cleanly; failed: {failed:?}");

    let out = tmp.path().join("kill-out-3f9a");
    let cache = tmp.path().join("cache");
    let out_s = out.to_str().unwrap().to_string();
    // Spread the kills over the whole length of a clean build (both stages), in a
    // scrambled order. Most rounds use their own build.extra_flags so they have real
    // work to interrupt; every third round uses the plain configuration, so the final
    // run resumes from several killed runs of its own configuration.
    let mut span = clean_took.as_secs_f64().clamp(0.4, 2.5);
    let slots = 24;
    let mut live_kills = 0;
    let (mut in_stage1, mut in_stage2) = (0, 0);
    let mut moments = Vec::new();
    let mut i = 0;
    while live_kills < 24 && i < 90 {
        let frac = (((i * 7) % slots) as f64 + 0.5) / slots as f64;
        let delay = Duration::from_secs_f64(span * frac);
        let fresh_config = i % 3 != 0;
        let mut cmd = compile_many(&cache, &out, &sketches);
        if fresh_config {
            cmd.arg("--build-property").arg(format!("build.extra_flags=-DFBUILD_FAULT_ROUND={i}"));
        }
        i += 1;
        let started = Instant::now();
        let mut live = Live::spawn(cmd);
        let mut exited_at = None;
        while started.elapsed() < delay {
            if !live.running() {
                exited_at = Some(started.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        live.signal(libc::SIGKILL);
        let (_code, _sig, lines, _) = live.finish(Duration::from_secs(10));
        match exited_at {
            None => {
                live_kills += 1;
                moments.push(delay);
                let stage = lines.iter().rev().find(|l| l.starts_with("stage ")).cloned().unwrap_or_default();
                if stage.starts_with("stage 1") {
                    in_stage1 += 1;
                } else if stage.starts_with("stage 2") {
                    in_stage2 += 1;
                }
            }
            // A full-work run finished before its kill: the machine is faster than the
            // clean build suggested; spread later kills over the time a run really takes.
            Some(t) if fresh_config => span = span.min(t.as_secs_f64()).max(0.1),
            Some(_) => {}
        }
        // SIGKILL leaves the compilers it started running (they are in their own
        // process groups); let them finish before the next round so rounds with
        // different flags never write the same object at once.
        let left = wait_no_processes(&out_s, 20.0);
        assert!(left.is_empty(), "orphaned tools never finished: {left:#?}");
    }
    let rounds = i;
    eprintln!("SIGKILL: {live_kills} live kills in {rounds} rounds (stage 1: {in_stage1}, stage 2: {in_stage2}, span {span:.2}s)");
    assert!(live_kills >= 20, "only {live_kills} of {rounds} kills hit a running fbuild (span {span:.2}s)");
    assert!(in_stage1 >= 3 && in_stage2 >= 3, "kills should land in both stages: stage 1 {in_stage1}, stage 2 {in_stage2}, moments {moments:?}");

    let r = run(compile_many(&cache, &out, &sketches));
    assert_eq!(r.code, Some(0), "the run after {live_kills} kills should build everything\n{}", r.describe());
    assert_same_firmware(&hex_map(&results(&out.join("results.json")), tmp.path()), &want);
    // And once more from the (now settled) state: still identical, nothing rebuilt.
    let r = run(compile_many(&cache, &out, &sketches));
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let v = results(&out.join("results.json"));
    assert_same_firmware(&hex_map(&v, tmp.path()), &want);
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
    let mut c = compile_many(&cache, &out, &all_corpus());
    c.arg("--no-cache");
    let live = Live::spawn(c);
    assert!(live.wait_line(Duration::from_secs(30), |l| l.starts_with('[')), "no sketch finished");
    std::fs::remove_dir_all(&out).ok();
    let (code, _sig, lines, _) = live.finish(Duration::from_secs(60));
    assert!(matches!(code, Some(1) | Some(3)), "exit {code:?}:\n{}", lines.join("\n"));
    assert!(!lines.iter().any(|l| l.contains("panicked")), "{}", lines.join("\n"));
    // The next run rebuilds what went missing and matches a clean build.
    let (want_code, want, _) = clean_build(tmp.path(), "vanish", &all_corpus(), &[]);
    let r = run(compile_many(&cache, &out, &all_corpus()));
    assert_eq!(r.code, want_code, "{}", r.describe());
    assert_same_firmware(&hex_map(&results(&out.join("results.json")), tmp.path()), &want);
}
