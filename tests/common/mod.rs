//! Shared helpers for integration tests: they drive the real `fbuild` binary,
//! the real avr-gcc and, for differential tests, the real arduino-builder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fbuild_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fbuild"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The 81 built-in examples (scripts/setup.sh extracts them).
pub fn corpus() -> PathBuf {
    let p = std::env::var_os("FBUILD_CORPUS").map(PathBuf::from).unwrap_or_else(|| repo().join("corpus/examples"));
    assert!(p.is_dir(), "example corpus missing at {}: run scripts/setup.sh", p.display());
    p
}

pub fn library_examples() -> PathBuf {
    let p = corpus().parent().unwrap().join("library-examples");
    assert!(p.is_dir(), "library examples missing at {}: run scripts/setup.sh", p.display());
    p
}

pub fn example(rel: &str) -> PathBuf {
    corpus().join(rel)
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Run fbuild with its own cache folder, in `cwd`.
pub fn fbuild(cache: &Path, cwd: &Path, args: &[&str]) -> Run {
    let o = Command::new(fbuild_bin())
        .args(args)
        .current_dir(cwd)
        .env("FBUILD_CACHE_DIR", cache)
        .env("CI", "true")
        .output()
        .expect("run fbuild");
    Run::from(o)
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid json")
}

/// Sketch results keyed by sketch path.
pub fn sketches_by_path(results: &serde_json::Value) -> std::collections::BTreeMap<String, serde_json::Value> {
    results["sketches"]
        .as_array()
        .expect("sketches array")
        .iter()
        .map(|s| (s["path"].as_str().unwrap().to_string(), s.clone()))
        .collect()
}

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Every sketch folder below `root` (folders holding NAME/NAME.ino), sorted.
pub fn sketch_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        if d.join(format!("{name}.ino")).is_file() {
            out.push(d);
            continue;
        }
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Outcome of the reference builder for one sketch.
pub struct Reference {
    pub ok: bool,
    pub dir: PathBuf,
    pub log: String,
}

/// Build sketches with arduino-builder (two at a time), remembering results under
/// target/ so re-runs are instant. The DECIMAL_DIG property is what the Arduino
/// IDE needs on Debian's avr-gcc 5.4 too (see docs/design.md).
pub fn reference_builds(fqbn: &str, sketches: &[PathBuf]) -> Vec<Reference> {
    let version = Command::new("arduino-builder").arg("-version").output().expect("arduino-builder is installed (scripts/setup.sh)");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let stamp_key = blake3::hash(format!("{fqbn}\n{version}").as_bytes()).to_hex().to_string();
    let root = repo().join("target/fbuild-reference").join(&stamp_key[..16]);
    let core_cache = root.join("core-cache");
    std::fs::create_dir_all(&core_cache).unwrap();
    let work: Vec<(usize, &PathBuf)> = sketches.iter().enumerate().collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Reference>>> = sketches.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= work.len() {
                    break;
                }
                let sketch = work[i].1;
                let key = blake3::hash(sketch.to_string_lossy().as_bytes()).to_hex().to_string();
                let dir = root.join(&key[..16]);
                let status = dir.join("status");
                if !status.is_file() {
                    let build = dir.join("build");
                    let _ = std::fs::remove_dir_all(&build);
                    std::fs::create_dir_all(&build).unwrap();
                    let name = sketch.file_name().unwrap().to_string_lossy().into_owned();
                    let o = Command::new("arduino-builder")
                        .args(["-compile", "-hardware", "/usr/share/arduino/hardware", "-hardware", "/usr/share/arduino-builder", "-tools", "/usr/bin", "-fqbn", fqbn])
                        .arg("-build-path")
                        .arg(&build)
                        .arg("-build-cache")
                        .arg(&core_cache)
                        .arg("-prefs=compiler.cpp.extra_flags=-DDECIMAL_DIG=__DECIMAL_DIG__")
                        .arg(sketch.join(format!("{name}.ino")))
                        .output()
                        .expect("run arduino-builder");
                    let mut log = String::from_utf8_lossy(&o.stdout).into_owned();
                    log.push_str(&String::from_utf8_lossy(&o.stderr));
                    std::fs::write(dir.join("log"), &log).unwrap();
                    std::fs::write(&status, if o.status.success() { "ok" } else { "failed" }).unwrap();
                }
                let ok = std::fs::read_to_string(&status).unwrap() == "ok";
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                *results[i].lock().unwrap() = Some(Reference { ok, dir: dir.join("build"), log });
            });
        }
    });
    results.into_iter().map(|m| m.into_inner().unwrap().unwrap()).collect()
}
