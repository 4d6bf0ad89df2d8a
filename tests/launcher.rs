//! --compiler-launcher with a real distccd on 127.0.0.1: firmware identical to a
//! local build, the jobs in distccd's log, the cache in front of the launcher, and
//! a distccd killed mid-run falling back to local compiles.
//!
//! distcc 3.4 declines to distribute `-flto` compiles ("LTO cc invocations are not
//! worth distributing") and the AVR platform compiles with -flto, so these tests
//! build with the platform's flags minus -flto (the local builds they compare with
//! use the same flags). With the stock flags distcc compiles everything locally.

mod common;
mod servers;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NO_LTO: [&str; 4] = [
    "--build-property",
    "compiler.c.flags=-c -g -Os {compiler.warning_flags} -std=gnu11 -ffunction-sections -fdata-sections -MMD",
    "--build-property",
    "compiler.cpp.flags=-c -g -Os {compiler.warning_flags} -std=gnu++11 -fpermissive -fno-exceptions -ffunction-sections -fdata-sections -fno-threadsafe-statics -Wno-error=narrowing -MMD",
];

fn sketches() -> Vec<PathBuf> {
    ["01.Basics/Blink", "01.Basics/Fade", "02.Digital/Button", "03.Analog/AnalogInput"].iter().map(|s| example(s)).collect()
}

fn args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["compile-many".into(), "--out".into(), out.display().to_string()];
    a.extend(NO_LTO.iter().chain(extra).map(|s| s.to_string()));
    a.extend(sketches().iter().map(|p| p.display().to_string()));
    a
}

/// compile-many through `distcc` with DISTCC_HOSTS naming only our distccd.
fn distcc_command(cache: &Path, out: &Path, port: u16) -> Command {
    // distcc keeps host state (locks, back-off after failures) here; it must exist.
    let state = cache.parent().unwrap().join("distcc-state");
    std::fs::create_dir_all(&state).unwrap();
    let mut c = Command::new(fbuild_bin());
    c.args(args(out, &["--compiler-launcher", "distcc", "--sketch-jobs", "4"]))
        .env("FBUILD_CACHE_DIR", cache)
        .env("DISTCC_HOSTS", format!("127.0.0.1:{port}/8"))
        .env("DISTCC_DIR", &state)
        .env("CI", "true")
        // Its own working directory, so a depfile written in the wrong place shows.
        .current_dir(cache.parent().unwrap());
    c
}

fn jobs_in_log(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("distccd.log")).unwrap_or_default().matches("COMPILE_OK").count()
}

/// distccd logs a job's summary after the client has its result: wait until the
/// count holds still before comparing.
fn settled_jobs(dir: &Path) -> usize {
    let mut n = jobs_in_log(dir);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let m = jobs_in_log(dir);
        if m == n {
            return n;
        }
        n = m;
    }
}

fn local_build(t: &Path) -> Value {
    let out = t.join("local-out");
    let a = args(&out, &[]);
    let argv: Vec<&str> = a.iter().map(String::as_str).collect();
    let r = fbuild(&t.join("local-cache"), t, &argv);
    assert_eq!(r.code, 0, "{}", r.stderr);
    read_json(&out.join("results.json"))
}

#[test]
fn distcc_builds_identical_firmware_and_the_cache_stays_in_front() {
    let t = tempfile::tempdir().unwrap();
    let distccd = servers::distccd(&t.path().join("distccd"));
    let local = local_build(t.path());
    let out = t.path().join("d-out");
    let o = distcc_command(&t.path().join("d-cache"), &out, distccd.port).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let r = read_json(&out.join("results.json"));
    assert_eq!(ok_hexes(&r), ok_hexes(&local), "distributed firmware equals local firmware");
    let compiled = r["totals"]["objects_compiled"].as_u64().unwrap() as usize;
    let jobs = jobs_in_log(&distccd.dir);
    assert!(jobs > compiled / 2, "distccd ran {jobs} of {compiled} compiles");
    // The launcher shows in the build log, never on the link line.
    let blink = r["sketches"].as_array().unwrap().iter().find(|s| s["name"] == "Blink").unwrap();
    let build_log = std::fs::read_to_string(blink["log"].as_str().unwrap()).unwrap();
    assert!(build_log.lines().any(|l| l.starts_with("distcc ") && l.contains("avr-g++")), "{build_log}");
    assert!(build_log.lines().any(|l| l.contains("avr-gcc") && l.contains("-o") && l.contains(".elf") && !l.starts_with("distcc ")));

    // Distributed objects are cached like local ones (their depfiles were found):
    // a fresh output folder on the same cache compiles nothing.
    let strays: Vec<_> = std::fs::read_dir(t.path()).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "d")).collect();
    assert!(strays.is_empty(), "depfiles in the working directory: {strays:?}");
    let o = distcc_command(&t.path().join("d-cache"), &t.path().join("d-out3"), distccd.port).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(read_json(&t.path().join("d-out3/results.json"))["totals"]["objects_compiled"], 0);

    // Keys ignore the launcher: the local build's cache serves a distcc run fully,
    // and no compile reaches distccd.
    let before = settled_jobs(&distccd.dir);
    let out2 = t.path().join("d-out2");
    let o = distcc_command(&t.path().join("local-cache"), &out2, distccd.port).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let r2 = read_json(&out2.join("results.json"));
    assert_eq!(r2["totals"]["objects_compiled"], 0);
    assert_eq!(settled_jobs(&distccd.dir), before, "a cache hit never reaches the launcher");
}

#[test]
fn distccd_killed_mid_run_falls_back_to_local_compiles() {
    let t = tempfile::tempdir().unwrap();
    let mut distccd = servers::distccd(&t.path().join("distccd"));
    let local = local_build(t.path());
    let out = t.path().join("d-out");
    let child = distcc_command(&t.path().join("d-cache"), &out, distccd.port).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while jobs_in_log(&distccd.dir) < 2 {
        assert!(Instant::now() < deadline, "no job reached distccd");
        std::thread::sleep(Duration::from_millis(10));
    }
    distccd.kill();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "no failed sketch: {}", String::from_utf8_lossy(&o.stderr));
    let r = read_json(&out.join("results.json"));
    assert_eq!(r["totals"]["failed"], 0);
    assert_eq!(ok_hexes(&r), ok_hexes(&local));
}

#[test]
fn missing_launcher_is_a_usage_error() {
    let t = tempfile::tempdir().unwrap();
    let r = fbuild(&t.path().join("c"), t.path(), &["build", "--compiler-launcher", "no-such-launcher", &example("01.Basics/Blink").display().to_string()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1);
    assert!(r.stderr.contains("compiler launcher no-such-launcher is not installed"), "{}", r.stderr);
}

/// fbuild with `args` from `dir`, DISTCC_HOSTS naming only the distccd on `port`;
/// it must exit 0. Returns its stderr.
fn fbuild_through_distcc(args: &[String], cache: &Path, port: u16, dir: &Path) -> String {
    let state = dir.join("distcc-state");
    std::fs::create_dir_all(&state).unwrap();
    let o = Command::new(fbuild_bin())
        .args(args)
        .env("FBUILD_CACHE_DIR", cache)
        .env("DISTCC_HOSTS", format!("127.0.0.1:{port}/8"))
        .env("DISTCC_DIR", &state)
        .env("CI", "true")
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    stderr
}

/// The AVR platform's own flags (`-flto`): distcc runs every compile here, and fbuild
/// says so in one line instead of looking distributed.
#[test]
fn distcc_declining_lto_compiles_is_said_once() {
    let t = tempfile::tempdir().unwrap();
    let distccd = servers::distccd(&t.path().join("distccd"));
    let cache = t.path().join("d-cache");
    let out = t.path().join("lto-out");
    let mut a: Vec<String> = vec!["compile-many".into(), "--out".into(), out.display().to_string(), "--compiler-launcher".into(), "distcc".into()];
    a.extend(sketches().iter().map(|p| p.display().to_string()));
    let stderr = fbuild_through_distcc(&a, &cache, distccd.port, t.path());
    let r = read_json(&out.join("results.json"));
    let compiled = r["totals"]["objects_compiled"].as_u64().unwrap();
    assert!(compiled > 20);
    let notes: Vec<&str> = stderr.lines().filter(|l| l.contains("declined")).collect();
    assert_eq!(notes, vec![format!("note: distcc declined {compiled} of {compiled} compiles: -flto (they ran on this machine)").as_str()], "{stderr}");
    assert_eq!(settled_jobs(&distccd.dir), 0, "distccd received no job");
    // Stock flags, local build: the same firmware.
    let local_out = t.path().join("local-lto");
    let mut l: Vec<String> = vec!["compile-many".into(), "--out".into(), local_out.display().to_string()];
    l.extend(sketches().iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = l.iter().map(String::as_str).collect();
    let local = fbuild(&t.path().join("local-cache"), t.path(), &argv);
    assert_eq!(local.code, 0);
    assert!(!local.stderr.contains("declined"), "no launcher, no note");
    assert_eq!(ok_hexes(&r), ok_hexes(&read_json(&local_out.join("results.json"))));
}

/// The SAMD kit compiles without `-flto`: distcc distributes its compiles (the
/// daemon's log shows them arriving), no note is printed, and the firmware equals a
/// local build's.
#[test]
fn distcc_distributes_samd_compiles_with_identical_firmware() {
    let t = tempfile::tempdir().unwrap();
    let distccd = servers::distccd(&t.path().join("distccd"));
    let build = |out: &Path, cache: &Path, launcher: bool| {
        let mut a: Vec<String> = vec!["compile-many".into(), "--board".into(), "arduino:samd:arduino_zero_native".into(), "--out".into(), out.display().to_string()];
        a.extend(["--hardware".to_string(), samd_kit().join("hardware").display().to_string()]);
        for p in samd_tool_properties() {
            a.extend(["--build-property".to_string(), p]);
        }
        if launcher {
            a.extend(["--compiler-launcher", "distcc", "--sketch-jobs", "4"].map(String::from));
        }
        a.extend(sketches()[..2].iter().map(|p| p.display().to_string()));
        let stderr = fbuild_through_distcc(&a, cache, distccd.port, t.path());
        (read_json(&out.join("results.json")), stderr)
    };
    let (local, _) = build(&t.path().join("local"), &t.path().join("local-cache"), false);
    let (dist, stderr) = build(&t.path().join("dist"), &t.path().join("dist-cache"), true);
    assert!(!stderr.contains("declined"), "{stderr}");
    let compiled = dist["totals"]["objects_compiled"].as_u64().unwrap() as usize;
    let jobs = settled_jobs(&distccd.dir);
    assert!(compiled > 20 && jobs > compiled / 2, "distccd ran {jobs} of {compiled} compiles");
    assert_eq!(ok_hexes(&dist).values().collect::<Vec<_>>(), ok_hexes(&local).values().collect::<Vec<_>>());
    assert_eq!(ok_hexes(&dist).len(), 2);
}
