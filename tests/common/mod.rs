//! Shared helpers for integration tests: they drive the real `fbuild` binary,
//! the real avr-gcc and, for differential tests, the real arduino-builder.
#![allow(dead_code)]

pub mod arm_kits;

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

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
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

/// The .hex of every sketch that built, by sketch path.
pub fn ok_hexes(results: &serde_json::Value) -> std::collections::BTreeMap<String, Vec<u8>> {
    results["sketches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "ok")
        .map(|s| (s["path"].as_str().unwrap().to_string(), std::fs::read(s["firmware"]["hex"].as_str().unwrap()).unwrap()))
        .collect()
}

/// A folder of the shared test data: `../shared` beside the clone, as CI lays it out
/// (falling back to /work/shared for a clone made elsewhere).
pub fn shared(rel: &str) -> PathBuf {
    let beside = repo().join("../shared").join(rel);
    if beside.exists() {
        return beside.canonicalize().unwrap_or(beside);
    }
    PathBuf::from("/work/shared").join(rel)
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

/// The shared SAMD kit: Arduino's SAMD core laid out as the Arduino tools install it,
/// with CMSIS (see its README). `FBUILD_SAMD_KIT` points elsewhere.
pub fn samd_kit() -> PathBuf {
    let p = std::env::var_os("FBUILD_SAMD_KIT").map(PathBuf::from).unwrap_or_else(|| shared("platforms/samd"));
    assert!(p.join("hardware/arduino/samd/boards.txt").is_file(), "SAMD kit missing at {}", p.display());
    p
}

/// The `runtime.tools.*` properties the SAMD core's platform.txt needs, as its kit's
/// README gives them: Debian's compiler under /usr, CMSIS from the kit.
pub fn samd_tool_properties() -> Vec<String> {
    let kit = samd_kit();
    vec![
        "runtime.tools.arm-none-eabi-gcc-7-2017q4.path=/usr".into(),
        format!("runtime.tools.CMSIS-4.5.0.path={}", kit.join("tools/CMSIS-4.5.0").display()),
        format!("runtime.tools.CMSIS-Atmel-1.2.0.path={}", kit.join("tools/CMSIS-Atmel-1.2.0").display()),
    ]
}

/// fbuild's arguments for the SAMD kit given by hand, as a new user would: `--hardware`
/// and the `runtime.tools.*` properties the reference builder is given too.
pub fn samd_kit_args() -> Vec<String> {
    let mut args = vec!["--hardware".to_string(), samd_kit().join("hardware").display().to_string()];
    for p in samd_tool_properties() {
        args.push("--build-property".into());
        args.push(p);
    }
    args
}

/// The third-party libraries of the shared test corpus (read-only).
pub fn shared_libraries() -> PathBuf {
    let p = std::env::var_os("FBUILD_SHARED_LIBRARIES").map(PathBuf::from).unwrap_or_else(|| shared("libraries"));
    assert!(p.is_dir(), "shared libraries missing at {}", p.display());
    p
}

/// Outcome of the reference builder for one sketch.
pub struct Reference {
    pub ok: bool,
    /// Its build folder: `NAME.ino.hex` etc. at the top, `sketch/NAME.ino.cpp` below.
    pub dir: PathBuf,
    /// Everything arduino-builder printed (it runs with `-verbose`).
    pub log: String,
}

impl Reference {
    /// The libraries it used, in its order: the `Using library NAME at version V in
    /// folder: DIR` lines of its verbose output, as (name, folder).
    pub fn libraries(&self) -> Vec<(String, PathBuf)> {
        self.log
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Using library "))
            .filter_map(|rest| {
                let (name, rest) = rest.split_once(" at version ").or_else(|| rest.split_once(" in folder: ").map(|(n, d)| (n, d)))?;
                let dir = rest.split_once(" in folder: ").map(|(_, d)| d).unwrap_or(rest);
                let dir = dir.trim().trim_end_matches(" (legacy)");
                Some((name.to_string(), PathBuf::from(dir)))
            })
            .collect()
    }
}

/// Everything that shapes arduino-builder's output besides the sketch: the board, the
/// hardware, tools and library folders (by content), the `-prefs`, the compilers (by
/// `--version` and file identity) and arduino-builder itself.
pub struct ReferenceSpec {
    pub fqbn: String,
    pub hardware: Vec<PathBuf>,
    pub tools: Vec<PathBuf>,
    pub libraries: Vec<PathBuf>,
    pub prefs: Vec<String>,
    /// Compiler programs whose identity goes into the key.
    pub compilers: Vec<PathBuf>,
}

impl ReferenceSpec {
    /// Debian's AVR stack, as scripts/setup.sh installs it. The DECIMAL_DIG property
    /// is what the Arduino IDE needs on Debian's avr-gcc 5.4 too (see docs/design.md).
    pub fn avr(fqbn: &str) -> ReferenceSpec {
        ReferenceSpec {
            fqbn: fqbn.to_string(),
            hardware: vec!["/usr/share/arduino/hardware".into(), "/usr/share/arduino-builder".into()],
            tools: vec!["/usr/bin".into()],
            libraries: Vec::new(),
            prefs: vec!["compiler.cpp.extra_flags=-DDECIMAL_DIG=__DECIMAL_DIG__".into()],
            compilers: vec!["/usr/bin/avr-gcc".into(), "/usr/bin/avr-g++".into()],
        }
    }

    /// Arduino's SAMD core from the shared test kit with Debian's arm-none-eabi
    /// toolchain (scripts/setup.sh), its tools given as properties (see `samd_kit`).
    pub fn samd(fqbn: &str) -> ReferenceSpec {
        let kit = samd_kit();
        ReferenceSpec {
            fqbn: fqbn.to_string(),
            hardware: vec![kit.join("hardware"), "/usr/share/arduino-builder".into()],
            tools: vec!["/usr/bin".into()],
            libraries: Vec::new(),
            prefs: samd_tool_properties(),
            compilers: vec!["/usr/bin/arm-none-eabi-gcc".into(), "/usr/bin/arm-none-eabi-g++".into()],
        }
    }

    pub fn with_libraries(mut self, dir: &Path) -> ReferenceSpec {
        self.libraries.push(dir.to_path_buf());
        self
    }

    /// The key of everything but the sketch, hashed once per spec.
    pub fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"fbuild-reference-v2\0");
        let version = Command::new("arduino-builder").arg("-version").output().expect("arduino-builder is installed (scripts/setup.sh)");
        h.update(&version.stdout);
        h.update(self.fqbn.as_bytes());
        for p in &self.prefs {
            h.update(b"\0pref\0").update(p.as_bytes());
        }
        for c in &self.compilers {
            h.update(b"\0compiler\0").update(c.to_string_lossy().as_bytes());
            if let Ok(o) = Command::new(c).arg("--version").output() {
                h.update(&o.stdout);
            }
            if let Ok(m) = std::fs::metadata(c) {
                h.update(&m.len().to_le_bytes());
                h.update(&m.modified().map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()).unwrap_or(0).to_le_bytes());
            }
        }
        for (tag, dirs) in [("hardware", &self.hardware), ("libraries", &self.libraries)] {
            for d in dirs {
                h.update(tag.as_bytes()).update(d.to_string_lossy().as_bytes());
                hash_tree(&mut h, d);
            }
        }
        for d in &self.tools {
            h.update(b"\0tools\0").update(d.to_string_lossy().as_bytes());
        }
        h.finalize().to_hex()[..24].to_string()
    }
}

/// Every file below `dir` (sorted), by relative path and content.
fn hash_tree(h: &mut blake3::Hasher, dir: &Path) {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        h.update(b"\0file\0").update(f.strip_prefix(dir).unwrap_or(&f).to_string_lossy().as_bytes());
        if let Ok(bytes) = std::fs::read(&f) {
            h.update(&(bytes.len() as u64).to_le_bytes()).update(&bytes);
        }
    }
}

/// Where reference builds are remembered: outside the clone, so a fresh clone (CI)
/// reuses them; keyed by content, so sharing the folder is safe.
pub fn reference_cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("FBUILD_REFERENCE_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| repo().join("target"));
    base.join("fbuild-reference")
}

/// Build sketches with the reference builder for Debian's AVR stack.
pub fn reference_builds(fqbn: &str, sketches: &[PathBuf]) -> Vec<Reference> {
    reference_builds_with(&ReferenceSpec::avr(fqbn), sketches)
}

/// Build sketches with arduino-builder (two at a time, `-verbose`), remembering each
/// result under a key of the spec and the sketch's files (names and bytes), so
/// re-runs are instant and any change to what shapes the reference rebuilds it.
pub fn reference_builds_with(spec: &ReferenceSpec, sketches: &[PathBuf]) -> Vec<Reference> {
    let root = reference_cache_root().join(spec.key());
    let core_cache = root.join("core-cache");
    std::fs::create_dir_all(&core_cache).unwrap();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Reference>>> = sketches.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= sketches.len() {
                    break;
                }
                let sketch = &sketches[i];
                let name = sketch.file_name().unwrap().to_string_lossy().into_owned();
                let mut h = blake3::Hasher::new();
                h.update(name.as_bytes());
                hash_tree(&mut h, sketch);
                let dir = root.join(format!("{}-{}", name, &h.finalize().to_hex()[..16]));
                if !dir.join("status").is_file() {
                    // Build in a temporary folder, keep what the tests read, then rename:
                    // an interrupted run leaves no half entry.
                    let tmp = root.join(format!(".tmp-{}-{}", std::process::id(), i));
                    let _ = std::fs::remove_dir_all(&tmp);
                    let build = tmp.join("build");
                    std::fs::create_dir_all(&build).unwrap();
                    let mut cmd = Command::new("arduino-builder");
                    cmd.args(["-compile", "-verbose"]);
                    for d in &spec.hardware {
                        cmd.arg("-hardware").arg(d);
                    }
                    for d in &spec.tools {
                        cmd.arg("-tools").arg(d);
                    }
                    for d in &spec.libraries {
                        cmd.arg("-libraries").arg(d);
                    }
                    cmd.args(["-fqbn", &spec.fqbn]).arg("-build-path").arg(&build).arg("-build-cache").arg(&core_cache);
                    for p in &spec.prefs {
                        cmd.arg(format!("-prefs={p}"));
                    }
                    let o = cmd.arg(sketch.join(format!("{name}.ino"))).output().expect("run arduino-builder");
                    let mut log = String::from_utf8_lossy(&o.stdout).into_owned();
                    log.push_str(&String::from_utf8_lossy(&o.stderr));
                    let keep = tmp.join("keep");
                    std::fs::create_dir_all(keep.join("sketch")).unwrap();
                    for e in std::fs::read_dir(&build).unwrap().filter_map(|e| e.ok()) {
                        let f = e.file_name().to_string_lossy().into_owned();
                        if f.starts_with(&format!("{name}.ino.")) && e.path().is_file() {
                            std::fs::copy(e.path(), keep.join(&f)).unwrap();
                        }
                    }
                    let merged = build.join("sketch").join(format!("{name}.ino.cpp"));
                    if merged.is_file() {
                        std::fs::copy(&merged, keep.join("sketch").join(format!("{name}.ino.cpp"))).unwrap();
                    }
                    std::fs::write(keep.join("log"), &log).unwrap();
                    std::fs::write(keep.join("status"), if o.status.success() { "ok" } else { "failed" }).unwrap();
                    let _ = std::fs::remove_dir_all(&dir);
                    std::fs::rename(&keep, &dir).unwrap();
                    let _ = std::fs::remove_dir_all(&tmp);
                }
                let ok = std::fs::read_to_string(dir.join("status")).unwrap() == "ok";
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                *results[i].lock().unwrap() = Some(Reference { ok, dir: dir.clone(), log });
            });
        }
    });
    results.into_iter().map(|m| m.into_inner().unwrap().unwrap()).collect()
}

/// One compile-many for `fqbn` over `sketches` into `tmp/out` with the cache in
/// `tmp/cache` (exit 0 or 1: sketches may fail), and its results.json.
pub fn compile_many(tmp: &Path, fqbn: &str, extra: &[String], sketches: &[PathBuf]) -> (Run, serde_json::Value) {
    let out = tmp.join("out");
    let mut args: Vec<String> = vec!["compile-many".into(), "--board".into(), fqbn.into(), "--out".into(), out.display().to_string()];
    args.extend(extra.iter().cloned());
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(&tmp.join("cache"), tmp, &argv);
    assert!(run.code == 0 || run.code == 1, "fbuild exit {}: {}", run.code, run.stderr);
    let results = read_json(&out.join("results.json"));
    (run, results)
}

/// A compiler error's place in a log: the file's name (not its folder: the two
/// builders build in different folders), the line and the message.
pub fn first_error_site(log: &str) -> Option<(String, String, String)> {
    let re = regex::Regex::new(r"^(.+?):(\d+):(?:\d+:)? (?:fatal )?error: (.*)$").unwrap();
    log.lines().find_map(|l| {
        let c = re.captures(l.trim())?;
        let name = Path::new(&c[1]).file_name()?.to_string_lossy().into_owned();
        Some((name, c[2].to_string(), c[3].to_string()))
    })
}

/// The differential verdict on one sketch's outcome, when that decides it: `Some`
/// (with the problems, none when alike) if either side failed, `None` when both built
/// and the firmware remains to compare. A sketch that failed must fail at the
/// reference's first compiler error: the same file, line and message.
pub fn outcome_problems(name: &str, r: &serde_json::Value, reference: &Reference) -> Option<Vec<String>> {
    let ours_ok = r["status"] == "ok";
    let first = r["first_error"].as_str().unwrap_or("");
    if ours_ok != reference.ok {
        return Some(vec![format!(
            "{name}: fbuild {} / arduino-builder {}\n  fbuild: {first}\n  reference: {}",
            r["status"],
            if reference.ok { "ok" } else { "failed" },
            reference.log.lines().find(|l| l.contains("error")).unwrap_or("")
        )]);
    }
    if ours_ok {
        return None;
    }
    Some(match (first_error_site(&reference.log), first_error_site(first)) {
        (Some((file, line, msg)), Some((f, l, m))) if f == file && l == line && m.starts_with(&msg) => Vec::new(),
        (Some(site), ours) => vec![format!("{name}: fbuild fails with {ours:?}, arduino-builder with {site:?}")],
        (None, _) => vec![format!("{name}: arduino-builder failed without a compiler error:\n{}", reference.log)],
    })
}

/// Say that a test could not run on this machine. libtest has no runtime skip, so
/// the test passes as far as libtest knows; scripts/cargo-tests.sh counts this line
/// (written past libtest's output capture) as a skipped test instead of a passed one.
pub fn report_skipped(test: &str, why: &str) {
    let line = format!("fbuild-test-skipped: {test}: {why}\n");
    // SAFETY: writes a valid buffer to stderr.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
    }
}

/// A compiler.path folder whose tools (avr-gcc, avr-g++, avr-gcc-ar, avr-objcopy,
/// avr-size) each append one line (`TOOL ARGS`) to `log`, then exec the real tool
/// in /usr/bin: a record of every toolchain process, kept outside fbuild.
pub fn recording_toolchain(dir: &Path, log: &Path) -> PathBuf {
    recording_toolchain_of(dir, log, "$*")
}

/// As [`recording_toolchain`], each line `TOOL WHAT`, where `WHAT` is expanded by
/// the tool's shell (`$*` for its arguments).
pub fn recording_toolchain_of(dir: &Path, log: &Path, what: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    for tool in ["avr-gcc", "avr-g++", "avr-gcc-ar", "avr-objcopy", "avr-size"] {
        let p = dir.join(tool);
        let script = format!("#!/bin/sh\necho \"{tool} {what}\" >> '{}'\nexec /usr/bin/{tool} \"$@\"\n", log.display());
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir.to_path_buf()
}

/// Lines in a file (0 when it does not exist).
pub fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|s| s.lines().count()).unwrap_or(0)
}
pub mod avr_kits;
