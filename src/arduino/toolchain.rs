//! The compiler a platform names: whether it is installed, what it is (identity for
//! cache keys), its GCC major version, and its system include folders.

use crate::cache::Namespace;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::cache::keys;
use crate::exec::{RawOutput, Runner};
use crate::cache::store::Store;

#[derive(Debug, Clone)]
pub struct Compiler {
    pub path: PathBuf,
    /// `--version` output: the part of the identity a rebuilt compiler changes.
    pub version: String,
    /// Hash of resolved path, size, mtime and version, and of every file in the
    /// compiler's own include folders (name, size, mtime): the compiler's share of
    /// every key. Those headers (avr-libc) are not in `-MMD` depfiles, so an avr-libc
    /// upgrade must change the identity itself.
    pub identity: [u8; 32],
    /// The compiler's own include folders, in search order.
    pub system_dirs: Vec<PathBuf>,
}

impl Compiler {
    /// GCC major version when the compiler says it is GCC.
    pub fn gcc_major(&self) -> Option<u32> {
        let first = self.version.lines().next()?;
        if !first.contains("GCC") && !first.contains("gcc") && !first.contains("g++") {
            return None;
        }
        // "avr-gcc (GCC) 5.4.0": the last whitespace token that looks like a version.
        first
            .split_whitespace()
            .filter_map(|tok| {
                let major = tok.split('.').next()?;
                (tok.contains('.') && tok.chars().next()?.is_ascii_digit()).then(|| major.parse().ok())?
            })
            .next_back()
    }

    /// GCC 7 and later expand `__DATE__` and `__TIME__` from SOURCE_DATE_EPOCH when
    /// it is set; older GCC (avr-gcc 5.4) and compilers that are not GCC read the clock.
    pub fn honours_source_date_epoch(&self) -> bool {
        self.gcc_major().is_some_and(|m| m >= 7)
    }
}

/// Debian packages that provide well-known tool names, for "not installed" errors.
pub fn debian_package_for(cmd: &str) -> Option<&'static str> {
    let name = Path::new(cmd).file_name()?.to_str()?;
    Some(match name {
        "avr-gcc" | "avr-g++" | "avr-gcc-ar" | "avr-cpp" => "gcc-avr",
        "avr-objcopy" | "avr-size" | "avr-ar" | "avr-objdump" => "binutils-avr",
        "arm-none-eabi-gcc" | "arm-none-eabi-g++" | "arm-none-eabi-gcc-ar" => "gcc-arm-none-eabi",
        "arm-none-eabi-objcopy" | "arm-none-eabi-size" => "binutils-arm-none-eabi",
        "avrdude" => "avrdude",
        _ => return None,
    })
}

/// A tool named by a recipe is missing: say which and how to get it.
pub fn not_installed(path: &Path) -> Error {
    let hint = match debian_package_for(&path.to_string_lossy()) {
        Some(pkg) => format!("install Debian package {pkg} (apt-get install {pkg}) or set --build-property compiler.path=DIR/"),
        None => "install it or point --build-property compiler.path=DIR/ at it".to_string(),
    };
    Error::usage(format!("compiler {} is not installed; {hint}", path.display()))
}

/// Probes compilers once per run, and across runs through the store (keyed by path,
/// size and mtime), so a warm build starts no process just to identify the compiler.
/// The probes run through the build's runner (Ctrl-C, `--verbose`). A session's
/// targets share one memo (`scope`): a board matrix probes each compiler once.
pub struct Toolchain {
    runner: Arc<Runner>,
    probed: Arc<Mutex<HashMap<PathBuf, Compiler>>>,
    /// Predefined macros per compiler identity and machine flags.
    macros: Arc<Mutex<HashMap<[u8; 32], String>>>,
    /// Whether a compiler uses a precompiled header, per identity and flags.
    pch: Arc<Mutex<HashMap<[u8; 32], bool>>>,
    /// Compilers identified (memo misses), over every scope: each distinct path once.
    identified: Arc<AtomicUsize>,
    /// Probe processes started (`--version`, `-E -v`, `-dM -E`): part of the run's
    /// `tool_processes`, which promises to count every process fbuild starts.
    started: AtomicUsize,
}

fn file_stamp(path: &Path) -> Result<keys::Stamp> {
    let resolved = std::fs::canonicalize(path).map_err(|_| not_installed(path))?;
    let meta = std::fs::metadata(&resolved).map_err(|_| not_installed(path))?;
    if !meta.is_file() {
        return Err(not_installed(path));
    }
    Ok((resolved, meta.len(), mtime_nanos(&meta)))
}

/// Modification time in nanoseconds since the epoch (0 when unavailable).
fn mtime_nanos(meta: &std::fs::Metadata) -> i128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl Toolchain {
    /// Probes run by `runner`, which the build's tools share.
    pub fn new(runner: Arc<Runner>) -> Toolchain {
        Toolchain { runner, probed: Arc::default(), macros: Arc::default(), pch: Arc::default(), identified: Arc::default(), started: AtomicUsize::new(0) }
    }

    /// A handle on the same memo, probing through `runner` and counting its own probe
    /// processes (each target of a session reports what it started).
    pub fn scope(&self, runner: Arc<Runner>) -> Toolchain {
        Toolchain { runner, probed: self.probed.clone(), macros: self.macros.clone(), pch: self.pch.clone(), identified: self.identified.clone(), started: AtomicUsize::new(0) }
    }

    /// Compilers identified so far by this memo (every scope): one per distinct path.
    pub fn compilers_identified(&self) -> usize {
        self.identified.load(Ordering::SeqCst)
    }

    /// Processes started so far through this handle, counted once: the session's own
    /// handle gives its probes to the first report of a build.
    pub fn take_started(&self) -> usize {
        self.started.swap(0, Ordering::SeqCst)
    }

    /// The runner the probes use.
    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    /// Processes the probes have started so far.
    pub fn processes_started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// Run a probe of `program` with `args`, counting it (see `Runner::run_probe`).
    fn output(&self, program: &Path, args: &[&str]) -> std::io::Result<RawOutput> {
        let cmd: Vec<String> = std::iter::once(program.display().to_string()).chain(args.iter().map(|a| a.to_string())).collect();
        let out = self.runner.run_probe(&cmd);
        // Counted as before the seam: every start tried, not one refused after Ctrl-C.
        if !matches!(&out, Err(e) if e.kind() == std::io::ErrorKind::Interrupted) {
            self.started.fetch_add(1, Ordering::SeqCst);
        }
        out
    }

    pub fn probe(&self, path: &Path, store: Option<&Store>) -> Result<Compiler> {
        if let Some(c) = self.probed.lock().unwrap().get(path) {
            return Ok(c.clone());
        }
        let stamp = file_stamp(path)?;
        let record_key = keys::compiler_version(&stamp);
        let cached = store.and_then(|s| s.get_record(Namespace::Toolchain, &record_key)).and_then(|b| String::from_utf8(b).ok());
        let version = match cached {
            Some(v) => v,
            None => {
                let out = self.output(path, &["--version"]).map_err(|e| interrupted_or(e, || not_installed(path)))?;
                let v = String::from_utf8_lossy(&out.stdout_bytes).into_owned();
                if let Some(s) = store {
                    let _ = s.put_record(Namespace::Toolchain, &record_key, v.as_bytes());
                }
                v
            }
        };
        let binary = keys::compiler_binary(&stamp, &version);
        let system_dirs = self.search_dirs(path, &binary, store)?;
        let folders: Vec<_> = system_dirs.iter().map(|d| (d.clone(), tree_stamps(d))).collect();
        let identity = keys::compiler_identity(&binary, &folders);
        let compiler = Compiler { path: path.to_path_buf(), version, identity, system_dirs };
        self.identified.fetch_add(1, Ordering::SeqCst);
        self.probed.lock().unwrap().insert(path.to_path_buf(), compiler.clone());
        Ok(compiler)
    }
}

impl Toolchain {
    /// Ask the compiler for its include search list once (`-E -v` on an empty input);
    /// remembered in the store under the compiler binary's identity.
    fn search_dirs(&self, path: &Path, binary: &[u8; 32], store: Option<&Store>) -> Result<Vec<PathBuf>> {
        let key = keys::system_includes(binary);
        let text = match store.and_then(|s| s.get_record(Namespace::Toolchain, &key)) {
            Some(b) => String::from_utf8_lossy(&b).into_owned(),
            None => {
                let out = self.output(path, &["-x", "c++", "-E", "-v", "-"]);
                // After Ctrl-C nothing is stored: an empty list is not the compiler's answer.
                let text = match out {
                    Ok(o) => o.stderr,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Err(Error::Interrupted),
                    Err(_) => String::new(),
                };
                let dirs = parse_search_list(&text).join("\n");
                if let Some(s) = store {
                    let _ = s.put_record(Namespace::Toolchain, &key, dirs.as_bytes());
                }
                dirs
            }
        };
        Ok(text.lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect())
    }
}

/// A probe that did not start: `Error::Interrupted` after Ctrl-C, else `other`.
fn interrupted_or(e: std::io::Error, other: impl FnOnce() -> Error) -> Error {
    if e.kind() == std::io::ErrorKind::Interrupted {
        Error::Interrupted
    } else {
        other()
    }
}

/// Every file below `dir` with its size and mtime, in path order, for the compiler's
/// identity (a few hundred stats for avr-libc: about a millisecond).
fn tree_stamps(dir: &Path) -> Vec<keys::Stamp> {
    let mut stack = vec![dir.to_path_buf()];
    let mut files: Vec<(PathBuf, u64, i128)> = Vec::new();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.filter_map(|e| e.ok()) {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                files.push((e.path(), meta.len(), mtime_nanos(&meta)));
            }
        }
    }
    files.sort();
    files
}

impl Toolchain {
    /// The compiler's predefined macros for these machine flags (`-mmcu=...`), asked
    /// once (`-dM -E` on an empty input) and remembered in the store.
    pub fn predefined_macros(&self, compiler: &Compiler, flags: &[String], store: Option<&Store>) -> String {
        let key = keys::predefined_macros(&compiler.identity, flags);
        if let Some(m) = self.macros.lock().unwrap().get(&key) {
            return m.clone();
        }
        if let Some(b) = store.and_then(|s| s.get_record(Namespace::Toolchain, &key)) {
            let text = String::from_utf8_lossy(&b).into_owned();
            self.macros.lock().unwrap().insert(key, text.clone());
            return text;
        }
        let args: Vec<&str> = flags.iter().map(String::as_str).chain(["-dM", "-E", "-x", "c++", "-"]).collect();
        let text = match self.output(&compiler.path, &args) {
            Ok(o) if o.success => String::from_utf8_lossy(&o.stdout_bytes).into_owned(),
            _ => return String::new(), // unknown: scanning just stays a superset
        };
        if let Some(s) = store {
            let _ = s.put_record(Namespace::Toolchain, &key, text.as_bytes());
        }
        self.macros.lock().unwrap().insert(key, text.clone());
        text
    }
}

impl Toolchain {
    /// Whether the compiler, given `flags` (a compile's, without its include folders,
    /// source, output and depfile options), uses a precompiled header: a one-line
    /// header is precompiled and a file including it is compiled with `-H`, which
    /// marks a used `.gch` with `!`. avr-gcc 5.4 says no (its `-g` is stabs, which GCC
    /// will not combine with a PCH); Debian's arm-none-eabi-gcc 12 says yes. Asked
    /// once per compiler and flags, remembered in the store.
    pub fn uses_pch(&self, compiler: &Compiler, flags: &[String], store: Option<&Store>) -> bool {
        let key = keys::pch_probe(&compiler.identity, flags);
        if let Some(&yes) = self.pch.lock().unwrap().get(&key) {
            return yes;
        }
        let remembered = store.and_then(|s| s.get_record(Namespace::Toolchain, &key)).map(|b| b == b"yes");
        let yes = match remembered {
            Some(yes) => yes,
            None => {
                let Some(yes) = self.probe_pch(compiler, flags) else { return false };
                if let Some(s) = store {
                    let _ = s.put_record(Namespace::Toolchain, &key, if yes { b"yes" } else { b"no" });
                }
                yes
            }
        };
        self.pch.lock().unwrap().insert(key, yes);
        yes
    }

    /// `None` when the probe could not run (no temporary folder, Ctrl-C): not remembered.
    fn probe_pch(&self, compiler: &Compiler, flags: &[String]) -> Option<bool> {
        let dir = tempfile::Builder::new().prefix("fbuild-pch-probe").tempdir().ok()?;
        let header = dir.path().join("fbuild_pch_probe.h");
        let source = dir.path().join("fbuild_pch_probe.cpp");
        std::fs::write(&header, "int fbuild_pch_probe;\n").ok()?;
        std::fs::write(&source, "#include <fbuild_pch_probe.h>\n").ok()?;
        let gch = dir.path().join("fbuild_pch_probe.h.gch");
        let path = |p: &Path| p.display().to_string();
        let mut build: Vec<String> = flags.to_vec();
        build.extend(["-x".into(), "c++-header".into(), path(&header), "-o".into(), path(&gch)]);
        let args: Vec<&str> = build.iter().map(String::as_str).collect();
        match self.output(&compiler.path, &args) {
            Ok(o) if o.success && gch.is_file() => {}
            Ok(_) => return Some(false),
            Err(_) => return None,
        }
        let mut compile: Vec<String> = flags.to_vec();
        let object = dir.path().join("fbuild_pch_probe.o");
        compile.extend(["-I".into(), path(dir.path()), "-H".into(), "-Winvalid-pch".into(), "-c".into(), path(&source), "-o".into(), path(&object)]);
        let args: Vec<&str> = compile.iter().map(String::as_str).collect();
        let out = self.output(&compiler.path, &args).ok()?;
        let used = format!("! {}", path(&gch));
        Some(out.success && out.stderr.lines().any(|l| l.trim_end() == used))
    }
}

/// The `#include <...> search starts here:` block of `gcc -v` output.
fn parse_search_list(text: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("#include <...> search starts here:") || line.starts_with("#include \"...\" search starts here:") {
            inside = true;
            continue;
        }
        if line.starts_with("End of search list.") {
            break;
        }
        if inside && line.starts_with(' ') {
            dirs.push(line.trim().to_string());
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiler(version: &str) -> Compiler {
        Compiler { path: PathBuf::from("/x"), version: version.to_string(), identity: [0; 32], system_dirs: Vec::new() }
    }

    #[test]
    fn gcc_major_from_version_line() {
        assert_eq!(compiler("avr-gcc (GCC) 5.4.0\nCopyright").gcc_major(), Some(5));
        assert_eq!(compiler("g++ (Debian 12.2.0-14) 12.2.0\n").gcc_major(), Some(12));
        assert_eq!(compiler("clang version 14.0.6\n").gcc_major(), None);
        assert!(!compiler("avr-gcc (GCC) 5.4.0\n").honours_source_date_epoch());
        assert!(compiler("arm-none-eabi-g++ (15:12.2.rel1-1) 12.2.1 20221205\n").honours_source_date_epoch());
        assert!(!compiler("clang version 14.0.6\n").honours_source_date_epoch());
    }

    #[test]
    fn search_list_parsing() {
        let text = "junk\n#include \"...\" search starts here:\n#include <...> search starts here:\n /usr/lib/gcc/avr/5.4.0/include\n /usr/lib/avr/include\nEnd of search list.\n";
        assert_eq!(parse_search_list(text), vec!["/usr/lib/gcc/avr/5.4.0/include", "/usr/lib/avr/include"]);
    }

    #[test]
    fn identity_changes_when_a_system_header_changes() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("stdio.h"), "1").unwrap();
        let fp = || keys::compiler_identity(&[0; 32], &[(t.path().to_path_buf(), tree_stamps(t.path()))]);
        let a = fp();
        assert_eq!(a, fp(), "stable");
        std::fs::write(t.path().join("stdio.h"), "12").unwrap();
        assert_ne!(a, fp(), "size or mtime of a header changes the identity");
    }

    #[test]
    fn missing_compiler_names_debian_package() {
        let e = Toolchain::new(Arc::new(Runner::new(false))).probe(Path::new("/nonexistent/bin/avr-g++"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "compiler /nonexistent/bin/avr-g++ is not installed; install Debian package gcc-avr (apt-get install gcc-avr) or set --build-property compiler.path=DIR/"
        );
        assert_eq!(e.exit_code(), 2);
    }
}
