//! The shared remote cache, against real servers on 127.0.0.1 (redis-server, nginx
//! with WebDAV PUT): two "machines" (two local cache folders) share one server;
//! then the server killed mid-run, stopped (slow), full, holding a corrupt entry,
//! and a read-only run.

mod common;
mod servers;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// compile-many with its own cache folder and output folder; returns the run and results.json.
fn many(t: &Path, machine: &str, extra: &[&str], sketches: &[PathBuf]) -> (Run, Value) {
    let out = t.join(format!("{machine}-out"));
    let mut args: Vec<String> = vec!["compile-many".into(), "--out".into(), out.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(&t.join(format!("{machine}-cache")), t, &argv);
    assert!(run.code <= 1, "exit {}: {}", run.code, run.stderr);
    let results = read_json(&out.join("results.json"));
    (run, results)
}

fn total(r: &Value, field: &str) -> u64 {
    r["totals"][field].as_u64().unwrap()
}

fn remote(r: &Value, field: &str) -> u64 {
    r["cache"]["remote"][field].as_u64().unwrap_or_else(|| panic!("cache.remote.{field} in {}", r["cache"]))
}

fn warnings(run: &Run) -> usize {
    run.stderr.lines().filter(|l| l.starts_with("warning: remote cache")).count()
}

fn few() -> Vec<PathBuf> {
    ["01.Basics/Blink", "01.Basics/Fade", "02.Digital/Button", "03.Analog/AnalogInput", "04.Communication/ASCIITable"]
        .iter()
        .map(|s| example(s))
        .collect()
}

#[test]
fn second_machine_compiles_nothing_from_a_shared_redis() {
    let t = tempfile::tempdir().unwrap();
    let redis = servers::redis(&t.path().join("redis"), &[]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let sketches = vec![corpus(), library_examples()];
    let (_, a) = many(t.path(), "a", &["--remote-cache", &url], &sketches);
    assert_eq!(total(&a, "sketches"), 100);
    assert!(total(&a, "objects_compiled") > 100);
    assert!(remote(&a, "stores") > 100, "machine a shares what it built");
    let (run, b) = many(t.path(), "b", &["--remote-cache", &url], &sketches);
    assert_eq!(warnings(&run), 0, "{}", run.stderr);
    assert_eq!(total(&b, "objects_compiled"), 0, "the second machine compiles nothing");
    assert_eq!(total(&b, "links_run"), 0, "and links nothing");
    // Only the toolchain probes (--version, -E -v, -dM -E of the compilers) run: facts
    // about this machine's own tools stay local by design. Discovery, compiles, links
    // and sizes all come from the shared cache.
    assert!(total(&b, "tool_processes") <= 6, "{}", total(&b, "tool_processes"));
    assert!(b["sketches"].as_array().unwrap().iter().all(|s| s["discover_runs"] == 0), "discovery answers come from the shared cache");
    assert_eq!(total(&b, "failed"), total(&a, "failed"), "failures come from the shared cache too");
    assert_eq!(ok_hexes(&b), ok_hexes(&a), "identical firmware");
    assert!(remote(&b, "hits") > 100 && remote(&b, "bytes_read") > 0);
    assert_eq!(remote(&b, "rejected"), 0);
    let phases = std::fs::read_to_string(t.path().join("b-out/phases.tsv")).unwrap();
    assert!(phases.lines().any(|l| l.starts_with("remote_cache\t")), "{phases}");
}

#[test]
fn http_webdav_server_is_shared_the_same_way() {
    let t = tempfile::tempdir().unwrap();
    let nginx = servers::nginx(&t.path().join("nginx"));
    let url = format!("http://127.0.0.1:{}/cache", nginx.port);
    let (_, a) = many(t.path(), "a", &["--remote-cache", &url], &few());
    assert!(remote(&a, "stores") > 20);
    assert!(t.path().join("nginx/root/cache/fbuild-v1/object").is_dir(), "entries are files under the prefix");
    let (run, b) = many(t.path(), "b", &["--remote-cache", &url], &few());
    assert_eq!(warnings(&run), 0, "{}", run.stderr);
    assert_eq!(total(&b, "objects_compiled"), 0);
    assert_eq!(total(&b, "links_run"), 0);
    assert_eq!(ok_hexes(&b), ok_hexes(&a));
    let log = std::fs::read_to_string(t.path().join("nginx/access.log")).unwrap();
    assert!(log.contains("\"PUT /cache/fbuild-v1/object/") && log.contains("\"GET /cache/fbuild-v1/object/"));
}

#[test]
fn server_killed_mid_run_falls_back_to_local_with_one_warning() {
    let t = tempfile::tempdir().unwrap();
    let mut redis = servers::redis(&t.path().join("redis"), &[]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let out = t.path().join("out");
    // From the folder the rerun below uses too: paths under the working folder enter
    // keys relative to it (--base-dir), so both runs key the sketches alike.
    let child = Command::new(fbuild_bin())
        .current_dir(t.path())
        .args(["compile-many", "--remote-cache", &url, "--out"])
        .arg(&out)
        .args(few())
        .env("FBUILD_CACHE_DIR", t.path().join("cache"))
        .env("CI", "true")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once the build has started writing to it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while servers::redis_dbsize(redis.port) < 3 {
        assert!(Instant::now() < deadline, "the build never wrote to the server");
        std::thread::sleep(Duration::from_millis(10));
    }
    redis.kill();
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("warning: remote cache")).count(), 1, "{stderr}");
    assert!(stderr.contains("building with the local cache only"), "{stderr}");
    let r = read_json(&out.join("results.json"));
    assert_eq!(total(&r, "ok"), 5);
    assert!(remote(&r, "errors") >= 1);
    assert!(r["cache"]["remote"]["disabled"].as_str().unwrap().contains("unreachable"));
    // The local cache still got everything: a rerun elsewhere needs no server.
    let again = fbuild(&t.path().join("cache"), t.path(), &["compile-many", "--out", &t.path().join("out2").display().to_string(), &example("01.Basics/Blink").display().to_string()]);
    assert_eq!(again.code, 0);
    assert_eq!(read_json(&t.path().join("out2/results.json"))["totals"]["objects_compiled"], 0);
}

#[test]
fn stopped_server_times_out_once_and_the_build_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let redis = servers::redis(&t.path().join("redis"), &[]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    // SIGSTOP: the kernel still accepts connections, but nothing ever answers.
    redis.signal(libc::SIGSTOP);
    // One job at a time, so exactly one lookup is in flight when the first times out.
    let one = ["--remote-cache", &url, "--framework-jobs", "1", "--sketch-jobs", "1"];
    let (run, r) = many(t.path(), "a", &one, &[example("01.Basics/Blink")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(warnings(&run), 1, "{}", run.stderr);
    assert_eq!(total(&r, "ok"), 1);
    assert!(r["cache"]["remote"]["disabled"].as_str().unwrap().contains("unreachable"));
    assert_eq!(remote(&r, "errors"), 1, "one timeout turns the tier off; no lookup waits again");
}

#[test]
fn corrupt_or_truncated_entries_on_the_server_are_misses_and_get_repaired() {
    let t = tempfile::tempdir().unwrap();
    let redis = servers::redis(&t.path().join("redis"), &[]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let sketches = [example("01.Basics/Blink")];
    let (_, a) = many(t.path(), "a", &["--remote-cache", &url], &sketches);
    let mut objects = servers::redis_keys(redis.port, "fbuild-v1/object/*");
    objects.sort();
    assert!(objects.len() > 2);
    // One entry with a flipped byte, one cut short.
    let flipped = &objects[0];
    let value = servers::redis_cmd(redis.port, &[b"GET", flipped.as_bytes()]);
    let mut bad = value.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    servers::redis_cmd(redis.port, &[b"SET", flipped.as_bytes(), &bad]);
    let cut = &objects[1];
    let value = servers::redis_cmd(redis.port, &[b"GET", cut.as_bytes()]);
    servers::redis_cmd(redis.port, &[b"SET", cut.as_bytes(), &value[..value.len() / 2]]);

    let (run, b) = many(t.path(), "b", &["--remote-cache", &url], &sketches);
    assert_eq!(warnings(&run), 0, "a bad entry is a miss, not server trouble: {}", run.stderr);
    assert_eq!(remote(&b, "rejected"), 2);
    assert_eq!(total(&b, "objects_compiled"), 2, "exactly the two damaged objects are rebuilt");
    assert_eq!(ok_hexes(&b), ok_hexes(&a));
    // Machine b stored the good objects back: a third machine compiles nothing.
    let (_, c) = many(t.path(), "c", &["--remote-cache", &url], &sketches);
    assert_eq!(total(&c, "objects_compiled"), 0);
    assert_eq!(remote(&c, "rejected"), 0);
}

#[test]
fn full_server_refuses_writes_and_the_build_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let redis = servers::redis(&t.path().join("redis"), &["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let (run, r) = many(t.path(), "a", &["--remote-cache", &url], &few());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(warnings(&run), 1, "{}", run.stderr);
    assert!(run.stderr.contains("refused a write") && run.stderr.contains("OOM"), "{}", run.stderr);
    assert_eq!(total(&r, "ok"), 5);
    assert!(r["cache"]["remote"]["disabled"].as_str().unwrap().contains("refused"));
    // Reads go on: a second machine takes what fitted.
    let (run, b) = many(t.path(), "b", &["--remote-cache", &url], &few());
    assert_eq!(run.code, 0);
    assert!(remote(&b, "hits") > 0, "{}", b["cache"]);
    assert_eq!(ok_hexes(&b), ok_hexes(&r));
}

#[test]
fn read_only_run_reads_but_never_writes() {
    let t = tempfile::tempdir().unwrap();
    let redis = servers::redis(&t.path().join("redis"), &[]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    many(t.path(), "a", &["--remote-cache", &url], &[example("01.Basics/Blink")]);
    let before = servers::redis_dbsize(redis.port);
    // An untrusted pull request: Blink from the shared cache, Fade built but not shared.
    let (_, b) = many(t.path(), "b", &["--remote-cache", &url, "--remote-cache-readonly"], &[example("01.Basics/Blink"), example("01.Basics/Fade")]);
    assert_eq!(total(&b, "ok"), 2);
    assert_eq!(total(&b, "objects_compiled"), 1, "only Fade's sketch compiles");
    assert_eq!(remote(&b, "stores"), 0);
    assert_eq!(b["cache"]["remote"]["read_only"], true);
    assert_eq!(servers::redis_dbsize(redis.port), before, "nothing written to the server");
}

#[test]
fn bad_remote_urls_are_one_line_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    for url in ["ftp://127.0.0.1/x", "redis://127.0.0.1:notaport", "https://example.invalid/x"] {
        let r = fbuild(&t.path().join("c"), t.path(), &["build", "--remote-cache", url, &example("01.Basics/Blink").display().to_string()]);
        assert_eq!(r.code, 2, "{url}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert!(r.stderr.contains("--remote-cache") && r.stderr.contains("redis://HOST:PORT"), "{}", r.stderr);
    }
}

#[test]
fn warm_local_runs_never_ask_the_server() {
    let t = tempfile::tempdir().unwrap();
    let redis = servers::redis(&t.path().join("redis"), &[]);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    // A failing sketch too: its compile has no manifest, and its remembered failure
    // must be found locally before the server is asked for one.
    let mut sketches = few();
    sketches.push(example("09.USB/Keyboard/KeyboardMessage"));
    let (_, cold) = many(t.path(), "a", &["--remote-cache", &url], &sketches);
    assert_eq!(total(&cold, "failed"), 1);
    // Same output folder, then a fresh one: every lookup hits the local cache.
    for (pass, out) in ["a-out", "fresh-out"].iter().enumerate() {
        let out = t.path().join(out);
        let mut args = vec!["compile-many".to_string(), "--remote-cache".into(), url.clone(), "--out".into(), out.display().to_string()];
        args.extend(sketches.iter().map(|p| p.display().to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = fbuild(&t.path().join("a-cache"), t.path(), &argv);
        assert_eq!(run.code, 1, "{}", run.stderr);
        let warm = read_json(&out.join("results.json"));
        assert_eq!(total(&warm, "objects_compiled"), 0);
        for field in ["hits", "misses", "stores", "errors"] {
            assert_eq!(remote(&warm, field), 0, "pass {pass}: {field}: {}", warm["cache"]["remote"]);
        }
    }
}
