//! Helpers shared by tests/bad_input.rs and tests/faults.rs (issue 5).
//!
//! Every run gets its own cache folder (FBUILD_CACHE_DIR) and its own --out folder,
//! so the tests can run in parallel.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub const AVR: &str = "/usr/share/arduino/hardware/arduino/avr";

/// The fbuild binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fbuild")
}

/// The 81 built-in examples: $FBUILD_CORPUS, else <repo>/corpus/examples.
pub fn corpus() -> PathBuf {
    let dir = match std::env::var_os("FBUILD_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join("examples"),
    };
    if !dir.is_dir() {
        panic!("example corpus missing: run scripts/setup.sh");
    }
    dir
}

/// One corpus sketch by its relative path, e.g. "01.Basics/Blink".
pub fn corpus_sketch(rel: &str) -> PathBuf {
    let p = corpus().join(rel);
    assert!(p.is_dir(), "corpus sketch {} missing", p.display());
    p
}

/// An fbuild command with its own cache folder; stdin closed, output captured.
pub fn fbuild(cache: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env("FBUILD_CACHE_DIR", cache).env_remove("CI").stdin(Stdio::null());
    c
}

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn describe(&self) -> String {
        format!("exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

pub fn run(mut cmd: Command) -> Run {
    let out: Output = cmd.output().expect("fbuild runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run fbuild with `args` and a private cache.
pub fn fb<I, S>(cache: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = fbuild(cache);
    c.args(args);
    run(c)
}

/// Exit 2, exactly one stderr line starting `error:` that holds every needle, no panic.
pub fn assert_usage_error(r: &Run, needles: &[&str]) {
    assert_eq!(r.code, Some(2), "expected exit 2 (unusable input)\n{}", r.describe());
    assert_single_error_line(r, needles);
}

pub fn assert_single_error_line(r: &Run, needles: &[&str]) {
    assert!(!r.stderr.contains("panicked"), "panic text on stderr\n{}", r.describe());
    assert!(!r.stderr.contains("RUST_BACKTRACE"), "panic text on stderr\n{}", r.describe());
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected exactly one line on stderr\n{}", r.describe());
    assert!(lines[0].starts_with("error:"), "stderr line must start with `error:`\n{}", r.describe());
    for n in needles {
        assert!(lines[0].contains(n), "stderr line should mention {n:?}\n{}", r.describe());
    }
}

/// results.json must not exist, or at least must not claim success.
pub fn assert_no_success_claim(results: &Path) {
    if let Ok(text) = std::fs::read_to_string(results) {
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let all_ok = v["sketches"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|s| s["status"] == "ok"));
        assert!(!all_ok, "{} claims success after an unusable-input error", results.display());
    }
}

/// Write `<parent>/<name>/<name>.ino` and return the sketch folder.
pub fn write_sketch(parent: &Path, name: &str, code: impl AsRef<[u8]>) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.ino")), code).unwrap();
    dir
}

pub const BLINKY: &str = "void setup() {\n  pinMode(13, OUTPUT);\n}\n\nvoid loop() {\n  digitalWrite(13, HIGH);\n  delay(500);\n  digitalWrite(13, LOW);\n  delay(500);\n}\n";
pub const BARE: &str = "void setup() {\n}\n\nvoid loop() {\n}\n";

/// A copy of the installed AVR platform as `<hw>/<vendor>/avr`: boards.txt and
/// platform.txt copied (so tests can edit them), cores and variants symlinked.
pub fn fake_platform(hw: &Path, vendor: &str) -> PathBuf {
    let dir = hw.join(vendor).join("avr");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["boards.txt", "platform.txt"] {
        std::fs::copy(Path::new(AVR).join(f), dir.join(f)).unwrap();
    }
    for d in ["cores", "variants"] {
        std::os::unix::fs::symlink(Path::new(AVR).join(d), dir.join(d)).unwrap();
    }
    dir
}

/// results.json parsed.
pub fn results(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The result of the sketch whose path ends with `tail` (a folder name or relative path).
pub fn sketch_result<'a>(v: &'a Value, tail: &str) -> &'a Value {
    let all = v["sketches"].as_array().expect("sketches array");
    let hits: Vec<&Value> = all
        .iter()
        .filter(|s| Path::new(s["path"].as_str().unwrap_or("")).ends_with(tail))
        .collect();
    assert_eq!(hits.len(), 1, "expected one result for {tail} in {v:#}");
    hits[0]
}

/// A result's firmware file of `kind` (hex/eep/elf), resolved against `cwd` if relative.
pub fn firmware(s: &Value, kind: &str, cwd: &Path) -> PathBuf {
    let p = PathBuf::from(s["firmware"][kind].as_str().unwrap_or_else(|| panic!("no {kind} firmware in {s:#}")));
    if p.is_absolute() {
        p
    } else {
        cwd.join(p)
    }
}

/// Sketch path -> (status, .hex bytes if ok) from a results.json.
pub fn hex_map(v: &Value, cwd: &Path) -> BTreeMap<String, (String, Option<Vec<u8>>)> {
    let mut m = BTreeMap::new();
    for s in v["sketches"].as_array().expect("sketches array") {
        let status = s["status"].as_str().unwrap_or("?").to_string();
        let hex = (status == "ok").then(|| {
            let p = firmware(s, "hex", cwd);
            std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        });
        m.insert(s["path"].as_str().unwrap_or("?").to_string(), (status, hex));
    }
    m
}

/// Compare two hex maps: same sketches, same statuses, byte-identical .hex files.
pub fn assert_same_firmware(got: &BTreeMap<String, (String, Option<Vec<u8>>)>, want: &BTreeMap<String, (String, Option<Vec<u8>>)>) {
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "different sketch sets");
    for (k, (st, hex)) in want {
        let (gst, ghex) = &got[k];
        assert_eq!(gst, st, "{k}: status differs from the clean build");
        assert!(ghex == hex, "{k}: .hex differs from the clean build's");
    }
}

/// The bytes an Intel HEX file programs, in address order (gaps filled with 0xFF).
pub fn hex_bytes(text: &str) -> Vec<u8> {
    let mut mem: BTreeMap<u32, u8> = BTreeMap::new();
    let mut base: u32 = 0;
    for line in text.lines().map(str::trim).filter(|l| l.starts_with(':')) {
        let raw: Vec<u8> = (1..line.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex digit"))
            .collect();
        let len = raw[0] as usize;
        let addr = u32::from(raw[1]) << 8 | u32::from(raw[2]);
        match raw[3] {
            0 => {
                for (i, b) in raw[4..4 + len].iter().enumerate() {
                    mem.insert(base + addr + i as u32, *b);
                }
            }
            2 => base = (u32::from(raw[4]) << 8 | u32::from(raw[5])) << 4,
            4 => base = (u32::from(raw[4]) << 8 | u32::from(raw[5])) << 16,
            _ => {}
        }
    }
    let Some((&lo, _)) = mem.iter().next() else { return Vec::new() };
    let hi = *mem.keys().last().unwrap();
    (lo..=hi).map(|a| *mem.get(&a).unwrap_or(&0xFF)).collect()
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every whole number in a text.
pub fn numbers(s: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            cur.push(c);
        } else if c == ',' && !cur.is_empty() {
            // thousands separators, e.g. "32,256"
        } else if !cur.is_empty() {
            out.push(cur.parse().unwrap_or(0));
            cur.clear();
        }
    }
    out
}

/// Processes whose command line mentions `needle` (e.g. a test's unique out folder).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return found };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            // A zombie has an empty cmdline, so it never matches: only live processes count.
            found.push(format!("{name}: {cmd}"));
        }
    }
    found
}

/// Wait until no process mentions `needle`, up to `secs`; returns what is left.
pub fn wait_no_processes(needle: &str, secs: f64) -> Vec<String> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() || std::time::Instant::now() > end {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}
